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

Weights are computed with numpy (small: output length x a few taps; cached per
size and scale) and cut into dense weight matrices for short bands of output
pixels; each pass is then a series of small matrix products in the array's
own library, so a CUDA tensor never leaves its device. For integer images the
weights are snapped to a grid on which float64 arithmetic is exact, so numpy,
torch and CUDA give the very same pixels whatever order they add in.
"""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from sisr.errors import SisrError

BORDERS = ("replicate", "symmetric")

# Integer types: MATLAB rounds to the type after each pass and saturates.
_INTEGER_RANGES_NUMPY = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}

# Narrowest band of columns (in memory elements) that one weight block reads.
_MIN_COLUMN_BAND = 24


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
    """Output positions [out_start, out_stop) = matrix @ input positions [in_start, in_stop)."""

    out_start: int
    out_stop: int
    in_start: int
    in_stop: int
    matrix: np.ndarray  # (out_stop - out_start, in_stop - in_start), float64, read-only


@dataclass(frozen=True)
class _AxisPlan:
    in_length: int
    out_length: int
    blocks: tuple[_WeightBlock, ...]

    @property
    def is_identity(self) -> bool:
        """Scale 1 gives an identity matrix: the pass can be skipped."""
        return self.in_length == self.out_length and all(
            block.in_start == block.out_start and np.array_equal(block.matrix, np.eye(len(block.matrix)))
            for block in self.blocks
        )


def _block_outputs(scale: float, min_band: int) -> int:
    """Output pixels per weight block.

    A block of b outputs reads about (b - 1) / scale + kernel width inputs, so
    it multiplies some zeros; about 2x the true number of taps keeps the
    products cheap. A band of columns is a strided slice, so it is also made at
    least `min_band` memory elements wide: narrower slices cost more to copy
    than to multiply.
    """
    kernel_width = 4.0 if scale >= 1 else 4.0 / scale
    outputs = max(4, int(round(4 * scale)))
    outputs_for_band = int(math.ceil((min_band - kernel_width) * scale)) + 1
    return max(outputs, outputs_for_band)


@functools.lru_cache(maxsize=64)
def _axis_plan(
    in_length: int,
    out_length: int,
    scale: float,
    antialiasing: bool,
    border: str,
    interleave: int = 1,
    min_band: int = 1,
    integer_bits: int | None = None,
) -> _AxisPlan:
    """Band the (out x in) resampling matrix into small dense blocks.

    The full matrix is mostly zeros (a few taps per row); a block of
    consecutive outputs only reads a short contiguous run of inputs, so each
    block is a small dense matrix and a pass is a series of matrix products
    (BLAS on CPU, one kernel each on a GPU) instead of a gather per tap. Border
    taps that fold onto the same input pixel are summed into one entry.

    `interleave` > 1 is for an axis whose pixels are interleaved with their
    channels (the width of an HxWxC array): the block matrix becomes
    kron(matrix, identity(channels)), which resizes that axis in place without
    transposing the image. `min_band` is the narrowest band of input memory
    elements that a block should read (see `_block_outputs`).

    `integer_bits` (8 for uint8) snaps every weight to a multiple of
    2**-(52 - bits). Then each product of a weight and an integer pixel, and
    every partial sum (|sum| <= 1.3 * 2**bits), is exact in float64, so the
    result no longer depends on the order in which BLAS, a GPU or MATLAB add
    the taps: numpy, torch and CUDA round exactly the same pixels, including
    the exact .5 ties that scales like 1.3 produce. The snap moves a weight by
    under 1e-13 (uint8), far below anything that changes a rounded pixel
    except such ties, which MATLAB itself resolves by its own float noise.
    """
    weights, indices = contributions(in_length, out_length, scale, antialiasing, border)
    step = _block_outputs(scale, math.ceil(min_band / interleave))
    channels = np.eye(interleave)
    blocks = []
    for out_start in range(0, out_length, step):
        out_stop = min(out_start + step, out_length)
        block_weights = weights[out_start:out_stop]
        block_indices = indices[out_start:out_stop]
        used = block_weights != 0.0
        in_start = int(block_indices[used].min())
        in_stop = int(block_indices[used].max()) + 1
        matrix: np.ndarray = np.zeros((out_stop - out_start, in_stop - in_start))
        rows = np.broadcast_to(np.arange(out_stop - out_start)[:, None], block_indices.shape)
        np.add.at(matrix, (rows[used], block_indices[used] - in_start), block_weights[used])
        if integer_bits is not None:
            quantum = 2.0 ** (52 - integer_bits)
            matrix = np.round(matrix * quantum) / quantum
        matrix = np.kron(matrix, channels) if interleave > 1 else matrix
        matrix.setflags(write=False)
        out_range = (out_start * interleave, out_stop * interleave)
        blocks.append(_WeightBlock(*out_range, in_start * interleave, in_stop * interleave, matrix))
    return _AxisPlan(in_length, out_length, tuple(blocks))


def _check_border(border: str) -> None:
    if border not in BORDERS:
        raise SisrError(f"matlab_imresize: border={border!r} is not one of {', '.join(BORDERS)}")


def _is_torch(image: Any) -> bool:
    """Whether `image` is a tensor; never imports torch for a numpy-only caller."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(image, torch.Tensor)


# ---------------------------------------------------------------------------
# Layouts: numpy stores images channels last, torch models want them channels first.


@dataclass(frozen=True)
class _Layout:
    """How the caller's array maps onto (N, C, H, W)."""

    ndim: int
    torch: bool


def to_nchw(image: Any) -> tuple[Any, _Layout]:
    """View any supported image layout as (N, C, H, W), without copying.

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
    """Inverse of `to_nchw`, for a result of another height and width."""
    if layout.ndim == 2:
        return nchw[0, 0]
    if layout.torch:
        return nchw[0] if layout.ndim == 3 else nchw
    nhwc = nchw.transpose(0, 2, 3, 1)
    return nhwc[0] if layout.ndim == 3 else nhwc


def _as_rows(image: Any, layout: _Layout) -> tuple[Any, int]:
    """The image as (planes, H, W * interleave) without copying, and the interleave.

    A resize only needs rows and columns: numpy's HxWxC keeps its channels
    interleaved along the row (resized with a Kronecker-expanded weight
    matrix), torch's channels-first planes are simply stacked.
    """
    shape = tuple(image.shape)
    if layout.ndim == 2:
        return image.reshape(1, shape[0], shape[1]), 1
    if layout.torch:
        return image.reshape(-1, shape[-2], shape[-1]), 1
    height, width, channels = shape[-3:]
    return image.reshape(-1, height, width * channels), channels


def _rows_to_layout(rows: Any, image: Any, out_height: int, out_width: int) -> Any:
    shape = list(image.shape)
    if image.ndim == 2 or not isinstance(image, np.ndarray):
        shape[-2:] = [out_height, out_width]
    else:
        shape[-3:-1] = [out_height, out_width]
    return rows.reshape(shape)


# ---------------------------------------------------------------------------
# The two libraries: the same few operations, each in its own array type.


class _NumpyBackend:
    work_dtype: np.dtype
    integer_max: float | None  # the largest level of an integer image type; None for float images

    def __init__(self, dtype: np.dtype) -> None:
        if dtype in _INTEGER_RANGES_NUMPY:
            self.work_dtype, self.integer_max = np.dtype(np.float64), _INTEGER_RANGES_NUMPY[dtype]
        elif dtype in (np.float32, np.float64):
            self.work_dtype, self.integer_max = dtype, None
        elif dtype == np.float16:
            self.work_dtype, self.integer_max = np.dtype(np.float32), None
        else:
            raise SisrError(f"matlab_imresize: unsupported dtype {dtype} (use uint8, uint16 or a float type)")
        # Between the passes an integer image is stored as its own type, as in MATLAB.
        self.storage_dtype = dtype if self.integer_max is not None else self.work_dtype

    def span(self, matrix_shape: tuple[int, int], across: int) -> int:
        """Rows or columns per product: at most 2**18 multiply-adds.

        OpenBLAS runs a product up to 65536 * 4 multiply-adds on the calling
        thread and wakes its thread pool above that. These band products are
        memory-bound, so the pool cannot speed them up, and on a busy machine
        (data-loader workers, parallel jobs) waiting for its threads made each
        call up to 100x slower.
        """
        return max(1, 2**18 // (matrix_shape[0] * matrix_shape[1]))

    def matrix(self, weights: np.ndarray) -> np.ndarray:
        return weights.astype(self.work_dtype, copy=False)

    def to_work(self, x: np.ndarray) -> np.ndarray:
        return x.astype(self.work_dtype, copy=False)

    def empty(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.empty(shape, dtype=self.storage_dtype)

    def empty_result(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.empty(shape, dtype=dtype)

    def round_and_clip_(self, x: np.ndarray) -> None:
        """Round half up (= half away from zero for what survives the clip) and saturate."""
        x += 0.5
        np.floor(x, out=x)
        np.clip(x, 0.0, self.integer_max, out=x)


class _TorchBackend:
    integer_max: float | None  # the largest level of an integer image type; None for float images

    def __init__(self, dtype: Any, device: Any) -> None:
        import torch

        integer_ranges = {torch.uint8: 255.0}
        if hasattr(torch, "uint16"):
            integer_ranges[torch.uint16] = 65535.0
        if dtype in integer_ranges:
            # float64 reproduces MATLAB's double arithmetic; Apple's MPS has no float64.
            self.work_dtype = torch.float32 if device.type == "mps" else torch.float64
            self.integer_max = integer_ranges[dtype]
        elif dtype in (torch.float32, torch.float64):
            self.work_dtype, self.integer_max = dtype, None
        elif dtype in (torch.float16, torch.bfloat16):
            self.work_dtype, self.integer_max = torch.float32, None
        else:
            raise SisrError(f"matlab_imresize: unsupported dtype {dtype} (use uint8 or a float type)")
        self.storage_dtype = dtype if self.integer_max is not None else self.work_dtype
        self.device = device
        self.torch = torch

    def span(self, matrix_shape: tuple[int, int], across: int) -> int:
        """One product per block: one kernel launch on a GPU.

        (Splitting like `_NumpyBackend.span` made torch's CPU path slower:
        its thread pool is woken per operation whatever the size.)
        """
        return across

    def matrix(self, weights: np.ndarray) -> Any:
        return self.torch.tensor(weights, dtype=self.work_dtype, device=self.device)

    def to_work(self, x: Any) -> Any:
        return x.to(self.work_dtype)

    def empty(self, shape: tuple[int, ...]) -> Any:
        return self.torch.empty(shape, dtype=self.storage_dtype, device=self.device)

    def empty_result(self, shape: tuple[int, ...], dtype: Any) -> Any:
        return self.torch.empty(shape, dtype=dtype, device=self.device)

    def round_and_clip_(self, x: Any) -> None:
        """Round half up (= half away from zero for what survives the clip) and saturate."""
        x.add_(0.5).floor_().clamp_(0.0, self.integer_max)


# ---------------------------------------------------------------------------
# The passes.


def _resize_axis(source: Any, destination: Any, plan: _AxisPlan, axis: int, backend: Any) -> None:
    """Resample `source` (planes, rows, columns) along `axis` (1: rows, 2: columns).

    Block by block: a band of input rows/columns is converted to the working
    dtype, multiplied by its weight block, rounded for integer images, and
    written into `destination`, so no full-size float temporary is ever made.
    On CPU a product is split along the other axis into spans small enough to
    run on the calling thread (see `_NumpyBackend.span`).
    """
    across = source.shape[3 - axis]  # the axis that is not resized
    for block in plan.blocks:
        weights = backend.matrix(block.matrix)
        inputs = slice(block.in_start, block.in_stop)
        outputs = slice(block.out_start, block.out_stop)
        step = backend.span(block.matrix.shape, across)
        for start in range(0, across, step):
            span = slice(start, start + step)
            if axis == 1:
                values = weights @ backend.to_work(source[:, inputs, span])
            else:
                values = backend.to_work(source[:, span, inputs]) @ weights.T
            if backend.integer_max is not None:
                backend.round_and_clip_(values)
            if axis == 1:
                destination[:, outputs, span] = values
            else:
                destination[:, span, outputs] = values


def _output_length(in_length: int, scale: float) -> int:
    """MATLAB's ceil(in * scale), guarded against 255 * (1/3) = 85.00000000000001."""
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
        is_number = isinstance(scale, (int, float)) and not isinstance(scale, bool)
        if not (is_number and math.isfinite(scale) and scale > 0):
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
      (numpy float64) or in their own dtype (float32 for half types), and
      are *not* clipped: bicubic overshoots slightly outside [0, 1] at edges.
    * ``border="replicate"`` repeats the edge pixel, which is what the shared
      MATLAB-made LR images need; ``"symmetric"`` mirrors the image as current
      MATLAB's `contributions()` does. They differ only in the outer pixels.
    * ``antialiasing=False`` samples with the plain kernel when shrinking.

    The standard SR degradation is ``matlab_imresize(hr[:h - h % s, :w - w % s], scale=1 / s)``.
    """
    _check_border(border)
    _, layout = to_nchw(image)  # validates the kind and the number of dimensions
    backend = _TorchBackend(image.dtype, image.device) if layout.torch else _NumpyBackend(image.dtype)
    source, interleave = _as_rows(image, layout)
    planes, height, width = source.shape[0], source.shape[1], source.shape[2] // interleave
    if planes == 0 or height == 0 or width == 0:
        raise SisrError(f"matlab_imresize: image of shape {tuple(image.shape)} is empty")
    (out_height, out_width), (scale_h, scale_w) = _sizes_and_scales((height, width), scale, output_size)

    bits = None if backend.integer_max is None else int(backend.integer_max).bit_length()
    row_pass = (1, _axis_plan(height, out_height, scale_h, antialiasing, border, 1, 1, bits))
    column_plan = _axis_plan(width, out_width, scale_w, antialiasing, border, interleave, _MIN_COLUMN_BAND, bits)
    column_pass = (2, column_plan)
    # MATLAB resizes the dimension with the smaller scale first (a stable sort:
    # rows first when the scales are equal).
    passes = [column_pass, row_pass] if scale_w < scale_h else [row_pass, column_pass]
    passes = [(axis, plan) for axis, plan in passes if not plan.is_identity]

    result = backend.empty_result((planes, out_height, out_width * interleave), image.dtype)
    if not passes:
        result[...] = source
    for number, (axis, plan) in enumerate(passes):
        shape = list(source.shape)
        shape[axis] = plan.out_length * (interleave if axis == 2 else 1)
        destination = result if number == len(passes) - 1 else backend.empty(tuple(shape))
        _resize_axis(source, destination, plan, axis, backend)
        source = destination
    return _rows_to_layout(result, image, out_height, out_width)


def bicubic_downgrade(hr: Any, scale: int) -> tuple[Any, Any]:
    """The known downgrade of DIV2K and the benchmark sets: (HR cropped, LR).

    HR is cropped at the top-left to a multiple of `scale`, then shrunk with
    MATLAB's bicubic `imresize`; this is how the published LR images were made.
    numpy images are HxW or HxWxC; tensors ...xHxW.
    """
    channels_last = not _is_torch(hr) and hr.ndim == 3
    height_axis = -3 if channels_last else -2
    height, width = hr.shape[height_axis] // scale * scale, hr.shape[height_axis + 1] // scale * scale
    if height == 0 or width == 0:
        from ..errors import SisrError

        raise SisrError(
            f"an image of {hr.shape[height_axis + 1]}x{hr.shape[height_axis]} is smaller than the scale x{scale}"
        )
    hr = hr[..., :height, :width, :] if channels_last else hr[..., :height, :width]
    return hr, matlab_imresize(hr, scale=1 / scale)
