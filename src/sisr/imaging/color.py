"""MATLAB's `rgb2ycbcr` / `ycbcr2rgb` (ITU-R BT.601, studio swing).

SR papers report PSNR/SSIM on the luma channel as MATLAB computes it: Y in
[16, 235] for 8-bit images (not the full-range JPEG YCbCr of Pillow or
OpenCV). The same matrix is used here, with MATLAB's semantics per type:

* uint8 in -> uint8 out, computed in float64 and rounded half away from zero,
  saturated (MATLAB's `imlincomb`);
* float in [0, 1] -> float out with Y in [16/255, 235/255], not clipped.

The channel axis is the last one for numpy arrays (HxWx3, NxHxWx3) and -3 for
torch tensors (3xHxW, Nx3xHxW).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from sisr.errors import SisrError

# MATLAB's rgb2ycbcr: rows Y, Cb, Cr; for R, G, B in [0, 1] the result is in 0..255 units.
RGB_TO_YCBCR = np.array(
    [
        [65.481, 128.553, 24.966],
        [-37.797, -74.203, 112.0],
        [112.0, -93.786, -18.214],
    ]
)
YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])  # in 0..255 units

# Both directions map [0, 1] (float) or 0..255 (uint8) to the same units.
_FORWARD = RGB_TO_YCBCR / 255.0
_INVERSE = np.linalg.inv(_FORWARD)


def rgb_to_ycbcr(image: Any) -> Any:
    """MATLAB `rgb2ycbcr`: uint8 -> uint8 (Y in 16..235), float [0, 1] -> float."""
    return _convert(image, _FORWARD, offset_before=None, offset_after=YCBCR_OFFSET, what="rgb_to_ycbcr")


def ycbcr_to_rgb(image: Any) -> Any:
    """MATLAB `ycbcr2rgb`: uint8 -> uint8 (rounded, saturated), float -> float (not clipped)."""
    return _convert(image, _INVERSE, offset_before=YCBCR_OFFSET, offset_after=None, what="ycbcr_to_rgb")


def rgb_to_y(image: Any) -> Any:
    """The Y plane of `rgb_to_ycbcr`, computed alone.

    numpy HxWx3 -> HxW (NxHxWx3 -> NxHxW); torch keeps a channel dimension of
    one (3xHxW -> 1xHxW, Nx3xHxW -> Nx1xHxW) so that the result is still an
    image tensor a model can take.
    """
    y = _convert(image, _FORWARD[:1], offset_before=None, offset_after=YCBCR_OFFSET[:1], what="rgb_to_y")
    return y if _is_torch(image) else y[..., 0]


def _is_torch(image: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(image, torch.Tensor)


def _convert(
    image: Any,
    matrix: np.ndarray,
    offset_before: np.ndarray | None,
    offset_after: np.ndarray | None,
    what: str,
) -> Any:
    """out = matrix @ (pixel - offset_before / s) + offset_after / s per pixel, s = 255 for floats."""
    is_torch = _is_torch(image)
    if not is_torch and not isinstance(image, np.ndarray):
        raise SisrError(f"{what}: expected a numpy array or a torch tensor, got {type(image).__name__}")
    channel_axis = -3 if is_torch else -1
    if image.ndim < 3 or image.shape[channel_axis] != 3:
        layout = "3xHxW or Nx3xHxW" if is_torch else "HxWx3 or NxHxWx3"
        raise SisrError(f"{what}: image of shape {tuple(image.shape)} is not {layout}")
    integer = _is_uint8(image, is_torch)
    if not integer and not _is_float(image, is_torch):
        raise SisrError(f"{what}: unsupported dtype {image.dtype} (use uint8 or a float type in [0, 1])")
    # uint8 values are 0..255 and the offsets are in those units; floats are in [0, 1].
    units = 1.0 if integer else 1.0 / 255.0
    before = None if offset_before is None else offset_before * units
    after = None if offset_after is None else offset_after * units
    if is_torch:
        return _convert_torch(image, matrix, before, after, integer)
    return _convert_numpy(image, matrix, before, after, integer)


def _is_uint8(image: Any, is_torch: bool) -> bool:
    if is_torch:
        return image.dtype == sys.modules["torch"].uint8
    return image.dtype == np.uint8


def _is_float(image: Any, is_torch: bool) -> bool:
    return image.dtype.is_floating_point if is_torch else np.issubdtype(image.dtype, np.floating)


def _convert_numpy(
    image: np.ndarray, matrix: np.ndarray, before: np.ndarray | None, after: np.ndarray | None, integer: bool
) -> np.ndarray:
    pixels = image.astype(np.float64).reshape(-1, 3)
    if before is not None:
        pixels -= before
    out = (pixels @ matrix.T).reshape(image.shape[:-1] + (len(matrix),))
    if after is not None:
        out += after
    if integer:
        return _round_half_away_to_uint8(out)
    return out.astype(image.dtype, copy=False)


def _round_half_away_to_uint8(values: np.ndarray) -> np.ndarray:
    """MATLAB's double -> uint8: saturate, then round half away from zero."""
    return np.floor(np.clip(values, 0.0, 255.0) + 0.5).astype(np.uint8)


def _convert_torch(
    image: Any, matrix: np.ndarray, before: np.ndarray | None, after: np.ndarray | None, integer: bool
) -> Any:
    import torch

    # float64 as MATLAB for uint8 (MPS has none); a float tensor keeps its dtype.
    if integer:
        work = torch.float32 if image.device.type == "mps" else torch.float64
    else:
        work = image.dtype
    pixels = image.to(work)
    weights = torch.tensor(matrix, dtype=work, device=image.device)
    if before is not None:
        pixels = pixels - torch.tensor(before, dtype=work, device=image.device)[:, None, None]
    out = torch.einsum("ij,...jhw->...ihw", weights, pixels)
    if after is not None:
        out = out + torch.tensor(after, dtype=work, device=image.device)[:, None, None]
    if integer:
        return torch.floor(out.clamp(0.0, 255.0) + 0.5).to(torch.uint8)
    return out
