"""MATLAB's `imresize` (bicubic), bit-exact, for numpy arrays and torch tensors.

Every published SR benchmark made its low-resolution inputs with MATLAB's
`imresize(hr, 1/s, 'bicubic')`, and its bicubic baseline with the same call
upwards. Pillow, OpenCV and `torch.nn.functional.interpolate` all differ from it
(another kernel constant, no antialiasing, other pixel centres or other
rounding), which is enough to move PSNR by tenths of a dB. This module follows
MATLAB's `contributions()` step by step:

* the cubic kernel with a = -0.5 (Keys), pixel centres at ``(i + 0.5) / scale``;
* when shrinking, the kernel is stretched by ``1 / scale`` (antialiasing), so a
  x1/4 downscale averages a 16-pixel-wide window instead of sampling 4 pixels;
* the weights of each output pixel are normalised to sum to one;
* the two dimensions are resized one after the other (the one with the smaller
  scale first, height first on ties: "height first" for uniform scales), and
  an integer image is rounded back to its type after *each* pass. That
  intermediate rounding is what makes the shared MATLAB-made LR images come out
  identical to the last bit.

Weights are computed once per call with numpy (they are small: output length x
a few taps) and turned into dense weight matrices for short bands of output
pixels; each pass is then a handful of matrix products in the array's own
library, so a CUDA tensor never leaves its device.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from sisr.errors import SisrError

BORDERS = ("replicate", "symmetric")

# Integer types: MATLAB rounds to the type after each pass and saturates.
_INTEGER_RANGES_NUMPY = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}

# Output pixels per dense weight block. Larger blocks mean fewer, bigger matrix
# products but more zeros multiplied; 64 is a good trade-off from x1/4 to x4.
_BLOCK_OUTPUTS = 64


def bicubic_kernel(x: np.ndarray | float) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5, as MATLAB's `cubic()`.

    (OpenCV uses a = -0.75, one reason its bicubic differs from MATLAB's.)
    """
    absx = np.abs(np.asarray(x, dtype=np.float64))
    absx2 = absx * absx
    absx3 = absx2 * absx
    inner = (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1.0)
    outer = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * ((absx > 1.0) & (absx <= 2.0))
    return inner + outer


def contributions(
    in_length: int, out_length: int, scale: float, antialiasing: bool = True, border: str = "replicate"
) -> tuple[np.ndarray, np.ndarray]:
    """Weights and 0-based input indices of each output pixel along one axis.

    Returns ``(weights, indices)``, both of shape (out_length, taps); the indices
    are already folded back into the image by `border`. This is MATLAB's
    `contributions()`; only the border rule is selectable, because the
    MATLAB-made benchmark images need the edge-replicating one (see
    `matlab_imresize`).
    """
    _check_border(border)
    shrinking_with_antialiasing = scale < 1.0 and antialiasing
    kernel_width = 4.0 / scale if shrinking_with_antialiasing else 4.0
    # MATLAB's 1-based output coordinates mapped to input coordinates: the
    # centre of output pixel x lands at x/scale + (1 - 1/scale)/2.
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    distance = u[:, None] - indices
    if shrinking_with_antialiasing:
        weights = scale * bicubic_kernel(scale * distance)
    else:
        weights = bicubic_kernel(distance)
    weights = weights / weights.sum(axis=1, keepdims=True)
    zero_based = indices.astype(np.int64) - 1
    return weights, _fold_indices(zero_based, in_length, border)


def _fold_indices(indices: np.ndarray, length: int, border: str) -> np.ndarray:
    if border == "replicate":
        return np.clip(indices, 0, length - 1)
    # MATLAB's aux = [1:n, n:-1:1]: a mirror that repeats the edge pixel.
    mirror = np.concatenate([np.arange(length), np.arange(length - 1, -1, -1)])
    return mirror[np.mod(indices, 2 * length)]


@dataclass(frozen=True)
class _WeightBlock:
    """Output rows [out_start, out_stop) = matrix @ input rows [in_start, in_stop)."""

    out_start: int
    out_stop: int
    in_start: int
    in_stop: int
    matrix: np.ndarray  # (out_stop - out_start, in_stop - in_start), float64


@dataclass(frozen=True)
class _AxisPlan:
    in_length: int
    out_length: int
    blocks: tuple[_WeightBlock, ...]


@functools.lru_cache(maxsize=64)
def _axis_plan(in_length: int, out_length: int, scale: float, antialiasing: bool, border: str) -> _AxisPlan:
    """Band the (out x in) resampling matrix into small dense blocks.

    The full matrix is mostly zeros (a few taps per row); a block of
    consecutive output pixels only reads a short contiguous run of input
    pixels, so each block is a small dense matrix and a pass is a few matrix
    products instead of a gather per tap. Border taps that fold onto the same
    input pixel are summed into one entry.
    """
    weights, indices = contributions(in_length, out_length, scale, antialiasing, border)
    blocks = []
    for out_start in range(0, out_length, _BLOCK_OUTPUTS):
        out_stop = min(out_start + _BLOCK_OUTPUTS, out_length)
        block_weights = weights[out_start:out_stop]
        block_indices = indices[out_start:out_stop]
        used = block_weights != 0.0
        in_start = int(block_indices[used].min())
        in_stop = int(block_indices[used].max()) + 1
        matrix = np.zeros((out_stop - out_start, in_stop - in_start))
        rows = np.broadcast_to(np.arange(out_stop - out_start)[:, None], block_indices.shape)
        np.add.at(matrix, (rows[used], block_indices[used] - in_start), block_weights[used])
        matrix.setflags(write=False)
        blocks.append(_WeightBlock(out_start, out_stop, in_start, in_stop, matrix))
    return _AxisPlan(in_length, out_length, tuple(blocks))


def _check_border(border: str) -> None:
    if border not in BORDERS:
        raise SisrError(f"matlab_imresize: border={border!r} is not one of {', '.join(BORDERS)}")


def _is_torch(image: Any) -> bool:
    torch = _torch_if_loaded()
    return torch is not None and isinstance(image, torch.Tensor)


def _torch_if_loaded():
    """torch, if it is importable; numpy-only callers never pay for importing it."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency, but keep numpy usable alone
        return None
    return torch


# ---------------------------------------------------------------------------
# Layout: every image becomes a stack of planes (B, H, W) and back again.


@dataclass(frozen=True)
class _Layout:
    """How to go from the caller's layout to (N, C, H, W) and back."""

    ndim: int
    torch: bool


def to_nchw(image: Any) -> tuple[Any, _Layout]:
    """View/copy any supported image layout as (N, C, H, W) in its own library.

    numpy images are stored channels last (HxW, HxWxC, NxHxWxC); torch tensors
    are channels first as models use them (HxW, CxHxW, NxCxHxW).
    """
    is_torch = _is_torch(image)
    if not is_torch and not isinstance(image, np.ndarray):
        raise SisrError(f"expected a numpy array or a torch tensor as image, got {type(image).__name__}")
    ndim = image.ndim
    if ndim not in (2, 3, 4):
        kind = "HxW, CxHxW or NxCxHxW" if is_torch else "HxW, HxWxC or NxHxWxC"
        raise SisrError(f"image of shape {tuple(image.shape)}: expected {kind}")
    if ndim == 2:
        nchw = image[None, None]
    elif is_torch:
        nchw = image[None] if ndim == 3 else image
    else:
        nhwc = image[None] if ndim == 3 else image
        nchw = nhwc.transpose(0, 3, 1, 2)
    return nchw, _Layout(ndim, is_torch)


def from_nchw(nchw: Any, layout: _Layout) -> Any:
    """Inverse of `to_nchw` for an (N, C, H', W') result."""
    if layout.ndim == 2:
        return nchw[0, 0]
    if layout.torch:
        return nchw[0] if layout.ndim == 3 else nchw
    nhwc = nchw.transpose(0, 2, 3, 1)
    return nhwc[0] if layout.ndim == 3 else nhwc


# ---------------------------------------------------------------------------
# The two libraries: the same operations, each in its own array type.


@dataclass(frozen=True)
class _Backend:
    """What a pass needs from numpy or torch: planes in, planes out."""

    work_dtype: Any  # dtype of the computation
    integer_max: float | None  # round-and-clip between passes for integer images
    matrix: Callable[[np.ndarray], Any]  # float64 numpy weights -> library array
    empty: Callable[[tuple[int, ...]], Any]
    round_half_away: Callable[[Any], Any]
    clip: Callable[[Any, float], Any]  # in place, to [0, max]


def _numpy_backend(image: np.ndarray) -> tuple[_Backend, Any]:
    dtype = image.dtype
    if dtype in _INTEGER_RANGES_NUMPY:
        work, integer_max = np.dtype(np.float64), _INTEGER_RANGES_NUMPY[dtype]
    elif dtype in (np.float32, np.float64):
        work, integer_max = dtype, None
    elif dtype == np.float16:
        work, integer_max = np.dtype(np.float32), None
    else:
        raise SisrError(f"matlab_imresize: unsupported dtype {dtype} (use uint8, uint16 or a float type)")

    def round_half_away(x: np.ndarray) -> np.ndarray:
        floor = np.floor(x)
        return floor + (x - floor >= 0.5)

    backend = _Backend(
        work_dtype=work,
        integer_max=integer_max,
        matrix=lambda weights: weights.astype(work, copy=False),
        empty=lambda shape: np.empty(shape, dtype=work),
        round_half_away=round_half_away,
        clip=lambda x, top: np.clip(x, 0.0, top, out=x),
    )
    return backend, dtype


def _torch_backend(image: Any) -> tuple[_Backend, Any]:
    torch = _torch_if_loaded()
    dtype = image.dtype
    integer_ranges = {torch.uint8: 255.0}
    if hasattr(torch, "uint16"):
        integer_ranges[torch.uint16] = 65535.0
    if dtype in integer_ranges:
        # float64 reproduces MATLAB's double arithmetic; Apple's MPS has no float64.
        work = torch.float32 if image.device.type == "mps" else torch.float64
        integer_max = integer_ranges[dtype]
    elif dtype in (torch.float32, torch.float64):
        work, integer_max = dtype, None
    elif dtype in (torch.float16, torch.bfloat16):
        work, integer_max = torch.float32, None
    else:
        raise SisrError(f"matlab_imresize: unsupported dtype {dtype} (use uint8 or a float type)")
    device = image.device

    def round_half_away(x: Any) -> Any:
        floor = torch.floor(x)
        return floor + (x - floor >= 0.5).to(x.dtype)

    backend = _Backend(
        work_dtype=work,
        integer_max=integer_max,
        matrix=lambda weights: torch.from_numpy(np.ascontiguousarray(weights)).to(device=device, dtype=work),
        empty=lambda shape: torch.empty(shape, dtype=work, device=device),
        round_half_away=round_half_away,
        clip=lambda x, top: x.clamp_(0.0, top),
    )
    return backend, dtype


# ---------------------------------------------------------------------------
# The passes.


def _resize_height(planes: Any, plan: _AxisPlan, backend: _Backend) -> Any:
    batch, _, width = planes.shape
    out = backend.empty((batch, plan.out_length, width))
    for block in plan.blocks:
        out[:, block.out_start : block.out_stop, :] = backend.matrix(block.matrix) @ planes[
            :, block.in_start : block.in_stop, :
        ]
    return out


def _resize_width(planes: Any, plan: _AxisPlan, backend: _Backend) -> Any:
    batch, height, _ = planes.shape
    out = backend.empty((batch, height, plan.out_length))
    for block in plan.blocks:
        out[:, :, block.out_start : block.out_stop] = (
            planes[:, :, block.in_start : block.in_stop] @ backend.matrix(block.matrix).T
        )
    return out


def _round_to_integer_levels(planes: Any, backend: _Backend) -> Any:
    """MATLAB casts each pass's result back to uint8/uint16: round half away, saturate."""
    return backend.clip(backend.round_half_away(planes), backend.integer_max)


def _output_length(in_length: int, scale: float) -> int:
    """MATLAB's ceil(in * scale), guarded against 1/3 * 255 = 85.00000000000001."""
    exact = in_length * scale
    nearest = round(exact)
    if abs(exact - nearest) < 1e-9 * max(1.0, abs(exact)):
        return max(1, int(nearest))
    return max(1, int(math.ceil(exact)))


def _sizes_and_scales(
    in_size: tuple[int, int], scale: float | None, output_size: tuple[int, int] | None
) -> tuple[tuple[int, int], tuple[float, float]]:
    if (scale is None) == (output_size is None):
        raise SisrError("matlab_imresize: give exactly one of scale= and output_size=")
    if scale is not None:
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise SisrError(f"matlab_imresize: scale={scale!r} must be a positive number")
        out_size = (_output_length(in_size[0], scale), _output_length(in_size[1], scale))
        return out_size, (float(scale), float(scale))
    try:
        rows, cols = (int(n) for n in output_size)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise SisrError(f"matlab_imresize: output_size={output_size!r} must be (rows, cols)") from None
    if rows < 1 or cols < 1:
        raise SisrError(f"matlab_imresize: output_size={output_size!r} must be positive")
    # As MATLAB: an explicit size means per-axis scales out/in.
    return (rows, cols), (rows / in_size[0], cols / in_size[1])


def matlab_imresize(
    image: Any,
    scale: float | None = None,
    output_size: tuple[int, int] | None = None,
    border: str = "replicate",
    antialiasing: bool = True,
) -> Any:
    """MATLAB `imresize(image, scale, 'bicubic')`, or to `output_size` (rows, cols).

    Accepts numpy arrays (HxW, HxWxC, NxHxWxC) and torch tensors (HxW, CxHxW,
    NxCxHxW, any device) and returns the same kind, layout, dtype and device.

    * ``scale``: any positive factor; the output is ceil(in * scale) per axis, and
      the kernel uses `scale` itself (not out/in), as MATLAB does.
    * uint8/uint16 images are computed in float64 and rounded back to the type
      after each of the two passes, as MATLAB does: with that, the benchmark
      LR images are reproduced exactly. Float images are computed in float64
      (numpy float64) or in the tensor's dtype, and are *not* clipped: bicubic
      overshoots slightly outside [0, 1] at edges.
    * ``border="replicate"`` repeats the edge pixel, which is what the shared
      MATLAB-made LR images need; ``"symmetric"`` mirrors the image as current
      MATLAB's `contributions()` does. They differ only in the outer pixels.
    * ``antialiasing=False`` samples with the plain kernel when shrinking.

    The standard SR degradation is ``matlab_imresize(hr[:h - h % s, :w - w % s], 1 / s)``.
    """
    _check_border(border)
    nchw, layout = to_nchw(image)
    backend, original_dtype = _torch_backend(image) if layout.torch else _numpy_backend(image)
    n, c, height, width = nchw.shape
    if height == 0 or width == 0:
        raise SisrError(f"matlab_imresize: image of shape {tuple(image.shape)} is empty")
    (out_height, out_width), (scale_h, scale_w) = _sizes_and_scales((height, width), scale, output_size)

    planes = nchw.reshape(n * c, height, width)
    planes = planes.to(backend.work_dtype) if layout.torch else planes.astype(backend.work_dtype)
    height_pass = (_resize_height, _axis_plan(height, out_height, scale_h, antialiasing, border))
    width_pass = (_resize_width, _axis_plan(width, out_width, scale_w, antialiasing, border))
    # MATLAB resizes the dimension with the smaller scale first (stable sort: height on ties).
    passes = (width_pass, height_pass) if scale_w < scale_h else (height_pass, width_pass)
    for resize_axis, plan in passes:
        if plan.in_length == plan.out_length and _is_identity(plan):
            continue
        planes = resize_axis(planes, plan, backend)
        if backend.integer_max is not None:
            planes = _round_to_integer_levels(planes, backend)

    result = planes.reshape(n, c, out_height, out_width)
    if layout.torch:
        return from_nchw(result.to(original_dtype), layout)
    return np.ascontiguousarray(from_nchw(result, layout), dtype=original_dtype)


def _is_identity(plan: _AxisPlan) -> bool:
    """Scale 1 gives an identity weight matrix; skip the pass (MATLAB does too)."""
    return all(
        block.in_start == block.out_start
        and block.in_stop == block.out_stop
        and np.array_equal(block.matrix, np.eye(block.matrix.shape[0]))
        for block in plan.blocks
    )
