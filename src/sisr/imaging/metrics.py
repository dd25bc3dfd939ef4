"""PSNR and SSIM as SR papers compute them (the EDSR / BasicSR MATLAB protocol).

The published numbers depend on details that are easy to get wrong:

* images are compared as 8-bit levels: a float image in [0, 1] is first
  rounded to round(x * 255), clipped, as it would be when saved;
* on the luma channel Y of MATLAB's `rgb2ycbcr` (BT.601, Y in [16, 235]),
  taken as an unrounded float (MATLAB `rgb2ycbcr(im2double(img))`, times 255),
  which reproduces the published bicubic tables; a Y rounded to uint8 first
  lands a little low;
* `crop_border` pixels (the scale factor, by convention) removed on every side;
* PSNR with peak 255; SSIM as Wang et al.'s reference `ssim.m`: an 11x11
  Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255, 'valid'
  filtering (no padding) and the mean of the SSIM map, without the automatic
  downsampling of the later `ssim.m`.

Inputs are numpy arrays (HxW, HxWxC, NxHxWxC) or torch tensors (HxW, CxHxW,
NxCxHxW, any device; computed there in float64). A single image gives a float;
a batch (4-D input) gives a list with one float per image.
Grayscale images (HxW or one channel) are compared as they are; with
``y_channel=False`` every channel counts (PSNR over all values, SSIM averaged
over channels).
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from sisr.errors import SisrError
from sisr.imaging.color import RGB_TO_YCBCR, YCBCR_OFFSET
from sisr.imaging.resize import to_nchw

PEAK = 255.0
SSIM_WINDOW_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def psnr(sr: Any, hr: Any, crop_border: int = 0, y_channel: bool = True) -> float | list[float]:
    """Peak signal-to-noise ratio in dB (inf for identical images); see the module docstring."""
    sr_levels, hr_levels, batched = _prepare(sr, hr, crop_border, y_channel, "psnr")
    values = []
    for sr_image, hr_image in zip(sr_levels, hr_levels):
        mse = float(((sr_image - hr_image) ** 2).mean())
        values.append(math.inf if mse == 0.0 else 10.0 * math.log10(PEAK**2 / mse))
    return values if batched else values[0]


def ssim(sr: Any, hr: Any, crop_border: int = 0, y_channel: bool = True) -> float | list[float]:
    """Structural similarity (1 for identical images); the mean over channels for colour."""
    sr_levels, hr_levels, batched = _prepare(sr, hr, crop_border, y_channel, "ssim")
    height, width = sr_levels.shape[-2:]
    if min(height, width) < SSIM_WINDOW_SIZE:
        raise SisrError(
            f"ssim: images of {height}x{width} pixels after cropping {crop_border} are smaller than "
            f"the {SSIM_WINDOW_SIZE}x{SSIM_WINDOW_SIZE} window"
        )
    maps = _ssim_map(sr_levels, hr_levels)
    values = [float(image_map.mean()) for image_map in maps]
    return values if batched else values[0]


def _ssim_map(x: Any, y: Any) -> Any:
    """Wang et al.'s SSIM map per pixel, (N, C, H - 10, W - 10), in the arrays' own library."""
    c1 = (SSIM_K1 * PEAK) ** 2
    c2 = (SSIM_K2 * PEAK) ** 2
    window = _gaussian_window(SSIM_WINDOW_SIZE, SSIM_SIGMA)
    mu_x = _filter_valid(x, window)
    mu_y = _filter_valid(y, window)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    sigma_xx = _filter_valid(x * x, window) - mu_xx
    sigma_yy = _filter_valid(y * y, window) - mu_yy
    sigma_xy = _filter_valid(x * y, window) - mu_xy
    return ((2 * mu_xy + c1) * (2 * sigma_xy + c2)) / ((mu_xx + mu_yy + c1) * (sigma_xx + sigma_yy + c2))


def _gaussian_window(size: int, sigma: float) -> list[float]:
    """One axis of MATLAB's fspecial('gaussian', size, sigma); the 2-D window is its outer product."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    weights = np.exp(-(offsets**2) / (2.0 * sigma**2))
    return list(weights / weights.sum())


def _filter_valid(image: Any, window: list[float]) -> Any:
    """MATLAB filter2(outer(window, window), image, 'valid') on the last two axes.

    Separable, by shifted slices, so that the same code runs on numpy arrays
    and on torch tensors of any device.
    """
    size = len(window)
    height, width = image.shape[-2:]
    rows = sum(weight * image[..., i : i + height - size + 1, :] for i, weight in enumerate(window))
    return sum(weight * rows[..., :, j : j + width - size + 1] for j, weight in enumerate(window))


def _is_torch(image: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(image, torch.Tensor)


def _prepare(sr: Any, hr: Any, crop_border: int, y_channel: bool, what: str) -> tuple[Any, Any, bool]:
    """Both images as float64 8-bit levels (N, C, H, W), Y if asked, cropped; and whether batched."""
    if _is_torch(sr) != _is_torch(hr):
        raise SisrError(f"{what}: sr is a {type(sr).__name__} but hr is a {type(hr).__name__}; give the same kind")
    if tuple(sr.shape) != tuple(hr.shape):
        raise SisrError(f"{what}: sr of shape {tuple(sr.shape)} and hr of shape {tuple(hr.shape)} differ")
    if isinstance(crop_border, bool) or not isinstance(crop_border, int) or crop_border < 0:
        raise SisrError(f"{what}: a border crop of {crop_border!r} pixels; it must be a non-negative integer")
    sr_nchw, layout = to_nchw(sr)
    hr_nchw, _ = to_nchw(hr)
    batched = layout.ndim == 4
    channels, height, width = sr_nchw.shape[1:]
    if 2 * crop_border >= min(height, width):
        raise SisrError(
            f"{what}: a border crop of {crop_border} pixels leaves nothing of images of shape {tuple(sr.shape)}"
        )
    if y_channel and channels not in (1, 3):
        raise SisrError(
            f"{what}: images of shape {tuple(sr.shape)} have {channels} channels; Y needs 1 or 3 "
            "(or measure on RGB: --rgb, y_channel=False in Python)"
        )
    if layout.torch and sr.device != hr.device:
        raise SisrError(f"{what}: sr is on {sr.device} but hr is on {hr.device}")
    levels = []
    for image in (sr_nchw, hr_nchw):
        image = _to_levels(image, layout.torch, what)
        if y_channel and channels == 3:
            image = _luma(image)
        if crop_border:
            image = image[..., crop_border:-crop_border, crop_border:-crop_border]
        levels.append(image)
    return levels[0], levels[1], batched


def _to_levels(image: Any, is_torch: bool, what: str) -> Any:
    """8-bit levels as float64: uint8 as they are, floats in [0, 1] rounded as when saved."""
    if is_torch:
        import torch

        work = torch.float32 if image.device.type == "mps" else torch.float64
        if image.dtype == torch.uint8:
            return image.to(work)
        if image.dtype.is_floating_point:
            return torch.floor(image.to(work).clamp(0.0, 1.0) * PEAK + 0.5)
    else:
        if image.dtype == np.uint8:
            return image.astype(np.float64)
        if np.issubdtype(image.dtype, np.floating):
            return np.floor(np.clip(image.astype(np.float64), 0.0, 1.0) * PEAK + 0.5)
    raise SisrError(f"{what}: unsupported dtype {image.dtype} (use uint8, or a float type in [0, 1])")


def _luma(levels: Any) -> Any:
    """Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 on 0..255 levels, not rounded (N, 1, H, W)."""
    red, green, blue = (float(c) / 255.0 for c in RGB_TO_YCBCR[0])
    # Python floats, never numpy scalars: those would pull a CUDA tensor to the host.
    return red * levels[:, 0:1] + green * levels[:, 1:2] + blue * levels[:, 2:3] + float(YCBCR_OFFSET[0])
