"""Comparison figures: the same crop of every method's result side by side, labelled with its metrics.

The LR input is enlarged with nearest neighbour so its pixels stay visible,
then come bicubic, each model and HR, each labelled with PSNR / SSIM of the
*whole* image, beside a small overview that shows where the crop lies.
`compare_models` runs the models; `compose_comparison` only lays out images
that are already made.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import numpy as np

from ..errors import SisrError
from ..image_io import to_rgb8
from .crops import CropBox, check_crop, pick_crop
from .style import (
    BACKGROUND,
    CROP_BOX_COLOR,
    FRAME_COLOR,
    GAP,
    MARGIN,
    MUTED_TEXT_COLOR,
    TEXT_COLOR,
    font,
    line_height,
    text_width,
    wrap_text,
)

if TYPE_CHECKING:
    from PIL import Image
    from torch import nn

    from ..model import SRModel

log = logging.getLogger("sisr")


@dataclass
class Panel:
    """One image of a comparison, at the HR frame's size (the LR panel already enlarged)."""

    title: str
    image: np.ndarray
    psnr: float | None = None
    ssim: float | None = None
    note: str = ""  # the second line where there are no metrics, e.g. the input's size

    @property
    def label(self) -> str:
        return metrics_label(self.psnr, self.ssim) or self.note


def metrics_label(psnr: float | None, ssim: float | None) -> str:
    """The second line under a panel: PSNR to 0.01 dB and SSIM to 4 places, as papers print them."""
    parts = []
    if psnr is not None:
        parts.append("PSNR inf" if math.isinf(psnr) else f"PSNR {psnr:.2f} dB")
    if ssim is not None:
        parts.append(f"SSIM {ssim:.4f}")
    return " / ".join(parts)


def nearest_enlarge(image: np.ndarray, factor: int) -> np.ndarray:
    """Each pixel becomes a factor x factor block: shows pixels as they are, adds nothing."""
    if factor == 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def _to_pil(image: np.ndarray) -> Image.Image:
    from PIL import Image

    pixels = np.ascontiguousarray(image)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    return Image.fromarray(pixels).convert("RGB")


@dataclass
class ComparisonLayout:
    """Where everything goes, computed before drawing (and checked by the tests)."""

    size: tuple[int, int]
    columns: int
    image_boxes: list[tuple[int, int, int, int]]  # (left, top, width, height) of each cell's image, overview first
    caption_top: int
    caption_lines: list[str] = field(default_factory=list)


# Spacing and type sizes of comparison figures, in pixels.
LABEL_GAP = 6
TITLE_SIZE = 16
LABEL_SIZE = 14
CAPTION_SIZE = 14


def default_columns(cells: int) -> int:
    """Up to five cells in one row; more are spread evenly over as few rows as needed."""
    rows = math.ceil(cells / 5)
    return math.ceil(cells / rows)


def overview_size(frame_width: int, frame_height: int, box_width: int, box_height: int) -> tuple[int, int]:
    """The whole image shrunk to fit a panel's box, aspect ratio kept."""
    ratio = min(box_width / frame_width, box_height / frame_height)
    return max(1, round(frame_width * ratio)), max(1, round(frame_height * ratio))


def comparison_layout(
    panel_count: int,
    panel_size: tuple[int, int],
    *,
    overview: bool,
    columns: int | None,
    labels: Sequence[str],
    caption: str | None,
) -> ComparisonLayout:
    """Cells of equal size in a grid: image on top, then the title and a metrics line.

    A cell is as wide as its image or its widest label, whichever is wider, so
    text never runs into the next cell.
    """
    title_font, label_font, caption_font = font(TITLE_SIZE), font(LABEL_SIZE), font(CAPTION_SIZE)
    cells = panel_count + (1 if overview else 0)
    columns = max(1, min(columns or default_columns(cells), cells))
    rows = math.ceil(cells / columns)
    image_width, image_height = panel_size
    cell_width = max(
        [
            image_width,
            *(text_width(t, title_font) for t in labels[::2]),
            *(text_width(t, label_font) for t in labels[1::2]),
        ]
    )
    text_height = line_height(title_font) + line_height(label_font)
    cell_height = image_height + LABEL_GAP + text_height
    width = 2 * MARGIN + columns * cell_width + (columns - 1) * GAP
    boxes = []
    for index in range(cells):
        row, col = divmod(index, columns)
        left = MARGIN + col * (cell_width + GAP) + (cell_width - image_width) // 2
        top = MARGIN + row * (cell_height + GAP)
        boxes.append((left, top, image_width, image_height))
    caption_top = MARGIN + rows * cell_height + (rows - 1) * GAP + GAP
    caption_lines = wrap_text(caption, caption_font, width - 2 * MARGIN) if caption else []
    height = caption_top + len(caption_lines) * line_height(caption_font) + MARGIN - (0 if caption_lines else GAP)
    return ComparisonLayout((width, height), columns, boxes, caption_top, caption_lines)


def compose_comparison(
    panels: Sequence[Panel],
    crop: CropBox,
    *,
    zoom: int = 1,
    columns: int | None = None,
    overview: np.ndarray | None = None,
    overview_title: str = "whole image",
    caption: str | None = None,
) -> Image.Image:
    """Lay out the same crop of every panel, enlarged `zoom` x with nearest neighbour.

    `overview` (any resolution of the same picture) is shown first, shrunk to a
    panel's size, with the crop outlined. All panels must share one frame size.
    """
    from PIL import Image, ImageDraw

    if not panels:
        raise SisrError("a comparison needs at least one image")
    frame_height, frame_width = panels[0].image.shape[:2]
    for panel in panels:
        if panel.image.shape[:2] != (frame_height, frame_width):
            raise SisrError(
                f"panel {panel.title!r} is {panel.image.shape[1]}x{panel.image.shape[0]}, "
                f"the others {frame_width}x{frame_height}"
            )
    crop = check_crop(crop, frame_width, frame_height)
    if zoom < 1:
        raise SisrError(f"zoom {zoom}: must be 1 or more")
    panel_size = (crop.width * zoom, crop.height * zoom)
    labels: list[str] = []
    if overview is not None:
        labels += [overview_title, f"{frame_width}x{frame_height}, crop outlined"]
    for panel in panels:
        labels += [panel.title, panel.label]
    layout = comparison_layout(
        len(panels), panel_size, overview=overview is not None, columns=columns, labels=labels, caption=caption
    )
    figure = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(figure)
    boxes = iter(layout.image_boxes)
    if overview is not None:
        left, top, width, height = next(boxes)
        thumb_width, thumb_height = overview_size(frame_width, frame_height, width, height)
        thumb = _to_pil(overview).resize((thumb_width, thumb_height), Image.Resampling.LANCZOS)
        thumb_left, thumb_top = left + (width - thumb_width) // 2, top + (height - thumb_height) // 2
        figure.paste(thumb, (thumb_left, thumb_top))
        sx, sy = thumb_width / frame_width, thumb_height / frame_height
        outline = [
            thumb_left + crop.x * sx,
            thumb_top + crop.y * sy,
            thumb_left + (crop.x + crop.width) * sx - 1,
            thumb_top + (crop.y + crop.height) * sy - 1,
        ]
        draw.rectangle(outline, outline=CROP_BOX_COLOR, width=2)
    for panel in panels:
        left, top, width, height = next(boxes)
        crop_pixels = nearest_enlarge(panel.image[crop.slices()], zoom)
        figure.paste(_to_pil(crop_pixels), (left, top))
    title_font, label_font, caption_font = font(TITLE_SIZE), font(LABEL_SIZE), font(CAPTION_SIZE)
    for (left, top, width, height), title, label in zip(layout.image_boxes, labels[::2], labels[1::2]):
        draw.rectangle([left - 1, top - 1, left + width, top + height], outline=FRAME_COLOR)
        centre = left + width // 2
        text_top = top + height + LABEL_GAP
        draw.text((centre, text_top), title, fill=TEXT_COLOR, font=title_font, anchor="ma")
        draw.text(
            (centre, text_top + line_height(title_font)), label, fill=MUTED_TEXT_COLOR, font=label_font, anchor="ma"
        )
    for number, line in enumerate(layout.caption_lines):
        draw.text(
            (MARGIN, layout.caption_top + number * line_height(caption_font)),
            line,
            fill=MUTED_TEXT_COLOR,
            font=caption_font,
        )
    return figure


def hr_to_lr(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The standard SR degradation: crop HR at the top-left to a multiple of `scale`, MATLAB bicubic down."""
    from ..imaging import bicubic_downgrade

    return bicubic_downgrade(hr, scale)


@dataclass
class Comparison:
    """A comparison figure and what it was made from."""

    figure: Image.Image
    panels: list[Panel]
    crop: CropBox
    zoom: int
    scale: int


def default_zoom(crop: CropBox) -> int:
    """Enlarge small crops to about 256 px so single pixels are visible."""
    return max(1, 256 // max(crop.width, crop.height))


def compare_models(
    image: np.ndarray,
    models: Sequence[str | os.PathLike | SRModel | nn.Module],
    scale: int,
    *,
    lr_input: bool = False,
    hr: np.ndarray | None = None,
    crop: CropBox | str | None = None,
    crop_size: tuple[int, int] | None = None,
    zoom: int | None = None,
    columns: int | None = None,
    overview: bool = True,
    caption: str | None = None,
    names: Sequence[str] | None = None,
    tile: int | None = None,
    tile_overlap: int | None = None,
    precision: str = "fp32",
    device: str = "auto",
) -> Comparison:
    """Upscale one image with bicubic and each model, and lay out the same crop of each.

    `image` is HR (the LR input is made with the MATLAB bicubic downgrade)
    unless `lr_input`; then `hr`, if given, is the matching ground truth. With
    HR known, each panel is labelled with PSNR / SSIM of the whole image (Y
    channel, `scale` pixels of border excluded, as the papers measure).
    `crop` is a CropBox in HR pixels, "detail" (default: the most detailed
    region, by gradient energy) or "centre". Models given by name are loaded
    with `sisr.load_model` at `scale`.
    """
    from torch import nn

    from ..evaluation import model_label
    from ..imaging import psnr, ssim
    from ..inference import upscale
    from ..model import SRModel
    from ..weights import load_model

    if scale < 1:
        raise SisrError(f"scale {scale}: must be a positive integer")
    image = to_rgb8(image)
    if lr_input:
        lr = image
        if hr is not None:
            hr = to_rgb8(hr)
            want = (lr.shape[0] * scale, lr.shape[1] * scale)
            if hr.shape[0] < want[0] or hr.shape[1] < want[1]:
                raise SisrError(
                    f"HR image is {hr.shape[1]}x{hr.shape[0]}, smaller than x{scale} the "
                    f"{lr.shape[1]}x{lr.shape[0]} LR image ({want[1]}x{want[0]})"
                )
            hr = hr[: want[0], : want[1]]  # the benchmark convention: HR cropped at the top-left
    else:
        hr, lr = hr_to_lr(image, scale)

    model_names = (
        list(names) if names is not None else [m.name if isinstance(m, SRModel) else model_label(m) for m in models]
    )
    if len(model_names) != len(models):
        raise SisrError(f"{len(model_names)} names for {len(models)} models")
    entries = [("bicubic", "bicubic")] + [(m, n) for m, n in zip(models, model_names) if str(m) != "bicubic"]

    lr_enlarged = nearest_enlarge(lr, scale)
    # Settle the crop before running any network: a typo in --crop should not cost a 2K upscale.
    box = pick_crop(hr if hr is not None else lr_enlarged, crop, crop_size, scale)
    panels = [Panel(f"LR (nearest x{scale})", lr_enlarged, note=f"{lr.shape[1]}x{lr.shape[0]} input")]
    for entry, title in entries:
        model = entry if isinstance(entry, (SRModel, nn.Module)) else load_model(entry, scale=scale)
        sr = upscale(model, lr, tile=tile, tile_overlap=tile_overlap, precision=precision, device=device)
        panel = Panel(title, sr)
        if hr is not None:
            panel.psnr = cast(float, psnr(sr, hr, crop_border=scale, y_channel=True))  # one image: one number
            try:
                panel.ssim = cast(float, ssim(sr, hr, crop_border=scale, y_channel=True))
            except SisrError as error:  # an image smaller than SSIM's window: PSNR alone still says something
                log.warning("%s: no SSIM (%s)", title, error)
        panels.append(panel)
    if hr is not None:
        panels.append(Panel("HR (original)", hr, note=f"{hr.shape[1]}x{hr.shape[0]} ground truth"))

    reference = hr if hr is not None else panels[1].image
    zoom = zoom or default_zoom(box)
    if caption is None:
        caption = comparison_caption(box, zoom, scale, with_metrics=hr is not None)
    figure = compose_comparison(
        panels, box, zoom=zoom, columns=columns, overview=reference if overview else None, caption=caption
    )
    return Comparison(figure, panels, box, zoom, scale)


def comparison_caption(crop: CropBox, zoom: int, scale: int, *, with_metrics: bool) -> str:
    """Say what the reader is looking at: which crop, how enlarged, and where the numbers come from."""
    text = f"x{scale} super-resolution. Crop {crop.width}x{crop.height} at ({crop.x}, {crop.y}) in HR pixels"
    text += f", shown x{zoom} (nearest neighbour)." if zoom > 1 else "."
    if with_metrics:
        text += (
            f" PSNR / SSIM of the whole image, not the crop: Y channel (BT.601), "
            f"{scale}-pixel border excluded. LR made with MATLAB bicubic."
        )
    else:
        text += " No ground truth, so no PSNR / SSIM."
    return text
