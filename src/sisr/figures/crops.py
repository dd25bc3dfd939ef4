"""Which part of an image a comparison shows: crop boxes, typed, checked, or found by detail."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import SisrError


class CropBox(NamedTuple):
    """A rectangle in HR pixels: left, top, width, height."""

    x: int
    y: int
    width: int
    height: int

    def slices(self) -> tuple[slice, slice]:
        return slice(self.y, self.y + self.height), slice(self.x, self.x + self.width)


def parse_crop(text: str) -> CropBox:
    """`X,Y,W,H` (HR pixels) as typed after --crop."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4:
        raise SisrError(f"--crop {text!r}: expected X,Y,W,H as four integers in HR pixels, e.g. 100,80,128,128")
    return CropBox(*values)


def check_crop(crop: CropBox, width: int, height: int) -> CropBox:
    """A crop must lie inside the image and be at least one pixel: else say which edge is wrong."""
    x, y, w, h = crop
    if w < 1 or h < 1:
        raise SisrError(f"crop {x},{y},{w},{h}: width and height must be positive")
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise SisrError(
            f"crop {x},{y},{w},{h} (x, y, width, height) reaches outside the {width}x{height} HR image "
            f"(right edge {x + w}, bottom edge {y + h})"
        )
    return CropBox(int(x), int(y), int(w), int(h))


def default_crop_size(width: int, height: int, align: int = 1) -> tuple[int, int]:
    """A square a quarter of the shorter side, 32 to 160 px, a multiple of `align`: small enough to zoom."""
    side = min(160, max(32, min(width, height) // 4))
    side = max(align, side // align * align)
    return min(side, width // align * align or width), min(side, height // align * align or height)


def centred_crop(width: int, height: int, crop_width: int, crop_height: int, align: int = 1) -> CropBox:
    """The crop in the middle of the image, its corner on a multiple of `align`."""
    x = (width - crop_width) // 2 // align * align
    y = (height - crop_height) // 2 // align * align
    return CropBox(x, y, crop_width, crop_height)


def gradient_energy(image: np.ndarray) -> np.ndarray:
    """Squared gradient magnitude of the luma, per pixel: where the detail is that SR has to restore."""
    pixels = image.astype(np.float64)
    if pixels.ndim == 3:
        pixels = pixels[..., :3] @ np.array([0.299, 0.587, 0.114])[: pixels.shape[2]]
    energy = np.zeros(pixels.shape, dtype=np.float64)
    energy[:, :-1] += np.diff(pixels, axis=1) ** 2
    energy[:-1, :] += np.diff(pixels, axis=0) ** 2
    return energy


def most_detailed_crop(image: np.ndarray, crop_width: int, crop_height: int, align: int = 1) -> CropBox:
    """The crop with the highest gradient energy, searched on a grid of `align`-multiples.

    Flat sky makes every method look alike; edges and texture are where
    networks differ, so that is what a comparison should show by default.
    """
    height, width = image.shape[:2]
    integral = np.zeros((height + 1, width + 1), dtype=np.float64)
    integral[1:, 1:] = gradient_energy(image).cumsum(0).cumsum(1)
    stride = max(align, min(crop_width, crop_height) // 8 // align * align)
    ys = np.arange(0, height - crop_height + 1, stride)
    xs = np.arange(0, width - crop_width + 1, stride)
    y0, x0 = np.meshgrid(ys, xs, indexing="ij")
    sums = (
        integral[y0 + crop_height, x0 + crop_width]
        - integral[y0, x0 + crop_width]
        - integral[y0 + crop_height, x0]
        + integral[y0, x0]
    )
    row, col = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return CropBox(int(xs[col]), int(ys[row]), crop_width, crop_height)


def pick_crop(
    reference: np.ndarray, crop: CropBox | str | None, crop_size: tuple[int, int] | None, scale: int
) -> CropBox:
    """The crop to show in `reference`: a box as given (checked), or "detail" (default) or "centre".

    Found crops are `crop_size` (default: `default_crop_size`) and aligned to
    `scale`, so they cover whole LR pixels.
    """
    height, width = reference.shape[:2]
    if isinstance(crop, CropBox) or (isinstance(crop, tuple) and len(crop) == 4):
        return check_crop(CropBox(*crop), width, height)
    if crop_size is not None:
        crop_width, crop_height = crop_size
        if not (0 < crop_width <= width and 0 < crop_height <= height):
            raise SisrError(f"crop size {crop_width}x{crop_height} does not fit in the {width}x{height} HR image")
    else:
        crop_width, crop_height = default_crop_size(width, height, scale)
    if crop in (None, "detail"):
        return most_detailed_crop(reference, crop_width, crop_height, align=scale)
    if crop in ("centre", "center"):
        return centred_crop(width, height, crop_width, crop_height, align=scale)
    raise SisrError(f"crop {crop!r}: expected X,Y,W,H, 'detail' or 'centre'")
