"""The kinds of image `upscale` accepts, mapped to one form and back.

Networks see float RGB in [0, 1], NCHW. Callers hold numpy arrays as files
store them (uint8/uint16; HxW, HxWx2, HxWx3, HxWx4), PIL images, or float
tensors. Here each becomes a `SourceImage` (colour and alpha planes as NCHW
tensors in their stored type, read window by window) and the result is
written into a preallocated `Canvas` of the caller's kind.

Grey images go through the network as RGB (the grey value replicated), and
the three output channels are averaged back to one: the networks were trained
on colour, and for a grey input their output channels are nearly equal anyway.
Alpha is not an image the networks know; it is enlarged with MATLAB's bicubic
(see `upscale`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import SisrError
from .tiling import Span, Tile

# Stored maximum of each integer type: [0, max] maps to [0, 1].
INTEGER_MAX = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}
PIL_MODES = ("L", "LA", "RGB", "RGBA", "I;16")


@dataclass
class SourceImage:
    """An input as (N, C, H, W) tensors in their stored type: C = 1 (grey) or 3 (RGB), plus alpha."""

    color: torch.Tensor
    alpha: torch.Tensor | None
    maximum: float  # 255, 65535, or 1.0 for float tensors
    kind: str  # "numpy", "pil" or "tensor"
    numpy_ndim: int = 3
    pil_mode: str | None = None
    icc_profile: bytes | None = None  # a PIL input's or a file's colour profile, given back where it fits

    @property
    def height(self) -> int:
        return self.color.shape[2]

    @property
    def width(self) -> int:
        return self.color.shape[3]

    @property
    def grey(self) -> bool:
        return self.color.shape[1] == 1

    def color_window(self, rows: Span, columns: Span, device: torch.device | None = None) -> torch.Tensor:
        """A float32 RGB window in [0, 1] (on `device` if given); grey is replicated to three channels.

        The window travels in its stored type and is converted on the device:
        a quarter of the bytes of float32 for 8-bit images.
        """
        window = _window(self.color, rows, columns)
        if device is not None and window.device != device:
            window = window.to(device)
        window = window.to(torch.float32) / self.maximum
        return window.expand(-1, 3, -1, -1) if self.grey else window

    def alpha_window(self, rows: Span, columns: Span) -> torch.Tensor:
        assert self.alpha is not None
        return _window(self.alpha, rows, columns).to(torch.float32) / self.maximum


def _window(planes: torch.Tensor, rows: Span, columns: Span) -> torch.Tensor:
    return planes[:, :, rows.window_start : rows.window_stop, columns.window_start : columns.window_stop]


def _from_numpy(array: np.ndarray, kind: str = "numpy", pil_mode: str | None = None) -> SourceImage:
    if array.dtype not in INTEGER_MAX:
        raise SisrError(
            f"numpy images must be uint8 or uint16 (as stored in files), not {array.dtype}; "
            "pass floats as a torch tensor in [0, 1]"
        )
    if array.ndim == 2:
        planes = array[:, :, None]
    elif array.ndim == 3 and array.shape[2] in (1, 2, 3, 4):
        planes = array
    else:
        raise SisrError(f"numpy image of shape {array.shape}: expected HxW, or HxWxC with C = 1, 2, 3 or 4")
    planes = np.ascontiguousarray(planes)
    if not planes.flags.writeable:  # torch cannot view read-only memory (PIL's arrays are)
        planes = planes.copy()
    nchw = torch.from_numpy(planes).permute(2, 0, 1)[None]
    channels = planes.shape[2]
    color_channels = 1 if channels <= 2 else 3
    alpha = nchw[:, color_channels:] if channels in (2, 4) else None
    return SourceImage(nchw[:, :color_channels], alpha, float(INTEGER_MAX[array.dtype]), kind, array.ndim, pil_mode)


def _from_tensor(tensor: torch.Tensor) -> SourceImage:
    if not tensor.is_floating_point():
        raise SisrError(f"tensor images must be float in [0, 1], not {tensor.dtype}")
    if tensor.ndim != 4 or tensor.shape[1] not in (1, 2, 3, 4):
        raise SisrError(
            f"tensor image of shape {tuple(tensor.shape)}: expected NCHW with C = 1, 2, 3 or 4 "
            "(add a batch dimension with .unsqueeze(0))"
        )
    channels = tensor.shape[1]
    color_channels = 1 if channels <= 2 else 3
    alpha = tensor[:, color_channels:] if channels in (2, 4) else None
    return SourceImage(tensor[:, :color_channels].detach(), None if alpha is None else alpha.detach(), 1.0, "tensor")


def _from_pil(image: Any) -> SourceImage:
    from ..image_io import upright

    image = upright(image)  # as a file read by `sisr upscale` is
    if image.mode not in PIL_MODES:
        raise SisrError(
            f"PIL image in mode {image.mode!r}: use one of {', '.join(PIL_MODES)} (e.g. image.convert('RGB') first)"
        )
    profile = image.info.get("icc_profile")
    source = _from_numpy(np.asarray(image), "pil", image.mode)
    source.icc_profile = bytes(profile) if profile else None
    return source


def _from_file(path: str | os.PathLike[str]) -> SourceImage:
    """A file as `sisr upscale` reads it; 8-bit and grey 16-bit images come back as PIL, 16-bit colour as numpy."""
    from ..image_io import read_icc_profile, read_image

    array = read_image(path)
    mode: str | None = None  # None: 16-bit colour, which PIL cannot hold
    if array.dtype == np.uint8:
        mode = "L" if array.ndim == 2 else {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[2]]
    elif array.ndim == 2:
        mode = "I;16"
    source = _from_numpy(array, "pil" if mode is not None else "numpy", mode)
    source.icc_profile = read_icc_profile(path)
    return source


def to_source(image: Any) -> SourceImage:
    """Accept a numpy array, a PIL image, a float NCHW tensor or the path of an image file."""
    if isinstance(image, torch.Tensor):
        return _from_tensor(image)
    if isinstance(image, np.ndarray):
        return _from_numpy(image)
    if isinstance(image, (str, os.PathLike)):
        return _from_file(image)
    from PIL import Image

    if isinstance(image, Image.Image):
        return _from_pil(image)
    raise SisrError(
        f"cannot upscale a {type(image).__name__}: pass an image file's path, a PIL image, "
        "a numpy array or a float NCHW tensor"
    )


# From a GPU, results come to the host through page-locked (pinned) memory
# (when the prepared model asks for it): the GPU's copy engine writes it
# directly, where a copy into ordinary memory goes through the driver's
# staging buffers. An 8-bit result of up to PINNED_CANVAS_BYTES is assembled
# in pinned memory itself, from torch's cache of pinned blocks.
PINNED_CANVAS_BYTES = 256 * 2**20  # larger results: pageable canvas, pinned staging per tile


def _pinned_empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor | None:
    """A page-locked host tensor from torch's cache, or None where the system refuses to pin more memory."""
    try:
        return torch.empty(shape, dtype=dtype, pin_memory=True)
    except RuntimeError:
        return None


def _to_pinned_host(levels: torch.Tensor) -> torch.Tensor:
    """`levels` (on a GPU) copied into page-locked host memory (or plain memory, if none can be pinned)."""
    staging = _pinned_empty(tuple(levels.shape), levels.dtype)
    if staging is None:
        return levels.cpu()
    staging.copy_(levels.contiguous())
    return staging


class Canvas:
    """The preallocated output, of the input's kind; cores are written into it as they are done.

    Integer outputs are rounded half up (floor(x * max + 0.5)) after clipping
    to [0, 1]; tensors are clipped and stay float.
    """

    pixels: torch.Tensor | np.ndarray  # a tensor for tensor inputs, else an (H, W, C) uint8 or uint16 array

    def __init__(
        self,
        source: SourceImage,
        scale: int,
        rows: tuple[int, int] | None = None,
        device: torch.device | None = None,
        pinned: bool = False,
    ) -> None:
        """`rows`: only the output of these LR rows [start, stop) is held (a band, for streaming);
        `device`: where the network's outputs come from; `pinned`: stage CUDA results in page-locked memory."""
        self.source = source
        self.scale = scale
        self.pinned = pinned and device is not None and device.type == "cuda"
        batch = source.color.shape[0]
        self.first_row = 0 if rows is None else rows[0]
        last_row = source.height if rows is None else rows[1]
        height, width = (last_row - self.first_row) * scale, source.width * scale
        self.color_channels = source.color.shape[1]
        channels = self.color_channels + (0 if source.alpha is None else 1)
        if source.kind == "tensor":
            self.pixels = torch.empty(
                (batch, channels, height, width), dtype=source.color.dtype, device=source.color.device
            )
        else:
            pinned_pixels = None
            if (
                source.maximum == 255
                and device is not None
                and self.pinned
                and height * width * channels <= PINNED_CANVAS_BYTES
            ):
                pinned_pixels = _pinned_empty((height, width, channels), torch.uint8)
            if pinned_pixels is not None:
                self.pixels = pinned_pixels.numpy()
            else:
                dtype = np.uint8 if source.maximum == 255 else np.uint16
                self.pixels = np.empty((height, width, channels), dtype=dtype)

    def _store(self, rows: slice, columns: slice, channels: slice, values: torch.Tensor) -> None:
        values = values.to(torch.float32).clamp(0.0, 1.0)  # a new tensor: the caller's stays as it was
        if isinstance(self.pixels, torch.Tensor):  # a tensor input
            self.pixels[:, channels, rows, columns] = values.to(self.pixels.device, self.pixels.dtype)
            return
        # Rounding half up: x * max + 0.5 is >= 0.5 after the clip, so the integer conversion's
        # truncation is floor(). In place, and on the CPU cast straight into the canvas: one
        # pass fewer per step over the HR-sized output than separate floor() and to().
        levels = values.mul_(self.source.maximum).add_(0.5)[0].permute(1, 2, 0)
        if self.source.maximum == 255:
            target = torch.from_numpy(self.pixels[rows, columns, channels])
            if levels.is_cuda:
                levels = levels.to(torch.uint8)
                if self.pinned and not (target.is_pinned() and target.is_contiguous()):
                    levels = _to_pinned_host(levels)  # then a host copy into the canvas
            target.copy_(levels)
        else:  # 16-bit: numpy casts the int32 levels into the uint16 canvas
            levels = levels.to(torch.int32)
            if levels.is_cuda and self.pinned:
                levels = _to_pinned_host(levels)
            self.pixels[rows, columns, channels] = levels.cpu().numpy()

    def _hr_slices(self, tile: Tile) -> tuple[slice, slice]:
        s = self.scale
        return (
            slice((tile.rows.core_start - self.first_row) * s, (tile.rows.core_stop - self.first_row) * s),
            slice(tile.columns.core_start * s, tile.columns.core_stop * s),
        )

    def write_color(self, tile: Tile, rgb: torch.Tensor) -> None:
        """Store a core's network output (N, 3, h, w); grey inputs get the mean of the three channels."""
        if self.color_channels == 1:
            rgb = rgb.to(torch.float32).mean(dim=1, keepdim=True)
        rows, columns = self._hr_slices(tile)
        self._store(rows, columns, slice(0, self.color_channels), rgb)

    def write_alpha(self, tile: Tile, alpha: torch.Tensor) -> None:
        rows, columns = self._hr_slices(tile)
        self._store(rows, columns, slice(self.color_channels, self.color_channels + 1), alpha)

    def result(self) -> Any:
        """The output in the input's kind: same dtype and layout (numpy), mode (PIL), or float tensor."""
        if isinstance(self.pixels, torch.Tensor):  # a tensor input
            return self.pixels
        pixels = self.pixels
        if self.source.numpy_ndim == 2 or (self.source.kind == "pil" and pixels.shape[2] == 1):
            pixels = pixels[:, :, 0]
        if self.source.kind == "pil":
            from PIL import Image

            from ..image_io import profile_fits

            image = Image.fromarray(pixels)
            if profile_fits(self.source.icc_profile, self.pixels.shape[2]):
                image.info["icc_profile"] = self.source.icc_profile
            return image
        return pixels
