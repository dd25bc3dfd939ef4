"""Degradations that make LR images look like real photos: blur, resizing, noise and JPEG, in rounds.

The bundled networks learnt the one known degradation of the papers (MATLAB
bicubic of a lossless image), and real pictures are JPEGs, often noisy or
soft. The operations here are the classical degradation model as the blind-SR
papers compose it:

* Real-ESRGAN (Wang et al., "Real-ESRGAN: Training Real-World Blind
  Super-Resolution with Pure Synthetic Data", ICCVW 2021): Sec. 3.1, blur
  (isotropic and anisotropic Gaussian, generalized Gaussian and plateau
  kernels), resizing (area, bilinear, bicubic, a random scale up or down),
  Gaussian and Poisson noise (colour or grey) and JPEG; Sec. 3.2, a second
  round of the same ("second-order degradation"); Sec. 3.3, sinc filters for
  ringing and overshoot, in the blur and once more at the end. The `realesrgan`
  recipe takes the parameters of its published training options
  (`train_realesrgan_x4plus.yml`).
* BSRGAN (Zhang et al., "Designing a Practical Degradation Model for Deep
  Blind Image Super-Resolution", ICCV 2021), Sec. 3.4: the operations in a
  random order ("random shuffle"), here `shuffle = true`.

Images are float32 HxWxC arrays (C = 1 or 3) in [0, 1]; recipes take uint8
patches and give uint8. Everything is numpy (and Pillow's libjpeg for JPEG)
with no BLAS and no threads: the same seed gives the same LR patch in the
training process and in any loader worker, whatever the thread count, which
is what keeps a resumed training run bit-exact.

Three kinds of use:
* training recipes (`training_recipe`): random draws per patch from a
  generator seeded with (seed, sample number), selected by `data.degradation`
  (`bicubic`, `jpeg`, `realesrgan`, `custom`) and adjusted by
  `data.degradation_args`;
* fixed evaluation degradations (`fixed_degradation`): `bicubic`, `jpeg<Q>`,
  `noise<S>`, `realesrgan-<N>`, deterministic per image name, for
  `sisr degrade` and `sisr evaluate --degradation`;
* the operations themselves, as pure functions.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import SisrError

KERNEL_FAMILIES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")
SOURCES = ("lr", "hr")

# --- blur kernels (Real-ESRGAN Sec. 3.1 and 3.3) ---------------------------------


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) offsets from the centre of an odd `size` x `size` kernel; x along columns, y along rows."""
    if not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise SisrError(f"a blur kernel's size must be a positive odd number, not {size!r}")
    offsets = np.arange(size, dtype=np.float64) - size // 2
    return np.meshgrid(offsets, offsets)


def _quadratic_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """x^T S^-1 x on the kernel grid, S = R diag(sigma_x^2, sigma_y^2) R^T with R the rotation by `theta`."""
    if sigma_x <= 0 or sigma_y <= 0:
        raise SisrError(f"a blur kernel's sigmas must be positive, not {sigma_x}, {sigma_y}")
    x, y = _grid(size)
    cos, sin = math.cos(theta), math.sin(theta)
    # Coordinates in the kernel's own axes (rotated back by theta): there S is diagonal.
    u, v = cos * x + sin * y, -sin * x + cos * y
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def _normalised(kernel: np.ndarray) -> np.ndarray:
    """A blur keeps the mean brightness: its weights sum to one."""
    return (kernel / kernel.sum()).astype(np.float32)


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0) -> np.ndarray:
    """A Gaussian blur kernel, isotropic (`sigma_y` None) or anisotropic, rotated by `theta` radians."""
    return _normalised(np.exp(-0.5 * _quadratic_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)))


def generalized_gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> np.ndarray:
    """exp(-(x^T S^-1 x)^beta / 2): beta < 1 a sharper peak with heavier tails, beta > 1 flatter (Real-ESRGAN 3.1)."""
    return _normalised(np.exp(-0.5 * _quadratic_form(size, sigma_x, sigma_y, theta) ** beta))


def plateau_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> np.ndarray:
    """1 / (1 + (x^T S^-1 x)^beta): a flat top falling to half on the ellipse x^T S^-1 x = 1 (Real-ESRGAN 3.1)."""
    return _normalised(1.0 / (1.0 + _quadratic_form(size, sigma_x, sigma_y, theta) ** beta))


def sinc_kernel(size: int, cutoff: float) -> np.ndarray:
    """The ideal circular low-pass filter cut at `cutoff` radians per pixel, truncated to `size` (Real-ESRGAN 3.3).

    The impulse response of a disc of radius w in frequency is w J1(w r) / (2 pi r),
    with w^2 / (4 pi) at r = 0; cut to a small window it rings, the ringing and
    overshoot artefacts of real sharpening and resampling.
    """
    import torch

    if not 0 < cutoff <= math.pi:
        raise SisrError(f"a sinc kernel's cutoff must be in (0, pi] radians per pixel, not {cutoff}")
    x, y = _grid(size)
    radius = np.hypot(x, y)
    safe = np.where(radius == 0, 1.0, radius)
    bessel = torch.special.bessel_j1(torch.from_numpy(cutoff * safe)).numpy()
    kernel = np.where(radius == 0, cutoff**2 / (4 * math.pi), cutoff * bessel / (2 * math.pi * safe))
    return _normalised(kernel)


def blur(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """`image` (HxWxC float32) filtered by `kernel`, edges mirrored without repeating the edge pixel.

    Reflection is Real-ESRGAN's `filter2D` padding. The filter runs as a
    product of Fourier transforms of the padded image (numpy's FFT: one
    thread, no BLAS, so the same result in every process); of the circular
    result, the part that wraps around falls in the padding and is dropped.
    """
    size = kernel.shape[0]
    pad = size // 2
    widths = ((pad, pad), (pad, pad), (0, 0))
    if min(image.shape[:2]) > 1:
        padded = np.pad(image, widths, mode="reflect")
    else:  # a 1-pixel side has nothing to mirror
        padded = np.pad(image, widths, mode="edge")
    planes = np.ascontiguousarray(padded.transpose(2, 0, 1))  # each plane's transform over contiguous memory
    # Transforms of 2^a 3^b 5^c points are the fast ones (a large prime factor is slow); a longer transform
    # only wraps more of the padding around, never into the image.
    shape = (_fast_length(planes.shape[1]), _fast_length(planes.shape[2]))
    # Correlation is convolution with the kernel turned by 180 degrees.
    response = np.fft.rfft2(kernel[::-1, ::-1].astype(np.float32), s=shape)
    filtered = np.fft.irfft2(np.fft.rfft2(planes, s=shape) * response, s=shape)
    rows, columns = image.shape[:2]
    return np.ascontiguousarray(
        filtered[:, size - 1 : size - 1 + rows, size - 1 : size - 1 + columns].transpose(1, 2, 0), dtype=np.float32
    )


def _fast_length(length: int) -> int:
    """The least 2^a 3^b 5^c >= `length`."""
    best = 1 << max(length - 1, 0).bit_length()
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            candidate = power35
            while candidate < length:
                candidate *= 2
            best = min(best, candidate)
            power35 *= 3
        power5 *= 5
    return best


# --- resizing (Real-ESRGAN Sec. 3.1) ---------------------------------------------


def _cubic(distance: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Keys' cubic kernel with a = -0.75, PyTorch's and OpenCV's (MATLAB uses -0.5, see imaging.resize)."""
    d = np.abs(distance)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def _axis_weights(in_length: int, out_length: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(weights, input indices), each (out_length, taps), of one axis, as `torch.nn.functional.interpolate`.

    Pixel centres are aligned (align_corners=False), the ratio is in/out and
    there is no antialiasing, as in the PyTorch resizing Real-ESRGAN trains with.
    """
    outputs = np.arange(out_length)
    ratio = in_length / out_length
    if mode == "area":  # adaptive average pooling: each output averages the inputs its span touches
        start = (outputs * in_length) // out_length
        stop = ((outputs + 1) * in_length + out_length - 1) // out_length
        taps = int((stop - start).max())
        indices = start[:, None] + np.arange(taps)[None, :]
        weights = np.where(indices < stop[:, None], 1.0 / (stop - start)[:, None], 0.0)
    elif mode == "bilinear":
        source = np.maximum((outputs + 0.5) * ratio - 0.5, 0.0)  # PyTorch clamps linear sources at 0
        left = np.floor(source)
        fraction = source - left
        indices = left[:, None].astype(np.int64) + np.arange(2)[None, :]
        weights = np.stack([1.0 - fraction, fraction], axis=1)
    elif mode == "bicubic":
        source = (outputs + 0.5) * ratio - 0.5
        left = np.floor(source)
        fraction = source - left
        indices = left[:, None].astype(np.int64) + np.arange(-1, 3)[None, :]
        weights = _cubic(fraction[:, None] - np.arange(-1, 3)[None, :])
    else:
        raise SisrError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, not {mode!r}")
    return weights.astype(np.float32), np.clip(indices, 0, in_length - 1)


def _resize_axis(image: np.ndarray, out_length: int, mode: str, axis: int) -> np.ndarray:
    weights, indices = _axis_weights(image.shape[axis], out_length, mode)
    shape = [1] * image.ndim
    shape[axis] = out_length
    result = np.zeros(image.shape[:axis] + (out_length,) + image.shape[axis + 1 :], dtype=np.float32)
    for tap in range(weights.shape[1]):
        result += np.take(image, indices[:, tap], axis=axis) * weights[:, tap].reshape(shape)
    return result


def resize(image: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """`image` (HxWxC float32) resized to `size` (rows, columns): `area`, `bilinear` or `bicubic`.

    The arithmetic of `torch.nn.functional.interpolate` (float32, clamped
    borders); bicubic overshoots outside [0, 1] near edges, as it does there.
    """
    rows, columns = size
    if rows < 1 or columns < 1:
        raise SisrError(f"cannot resize to {columns}x{rows}")
    if (rows, columns) == image.shape[:2]:
        return image
    return _resize_axis(_resize_axis(image, rows, mode, 0), columns, mode, 1)


# --- noise (Real-ESRGAN Sec. 3.1) --------------------------------------------------


def _luma(image: np.ndarray) -> np.ndarray:
    """Grey of an RGB image (ITU-R BT.601 weights, as PyTorch's rgb_to_grayscale), HxWx1."""
    if image.shape[2] == 1:
        return image
    return (0.299 * image[:, :, :1] + 0.587 * image[:, :, 1:2] + 0.114 * image[:, :, 2:3]).astype(np.float32)


def add_gaussian_noise(image: np.ndarray, sigma: float, rng: np.random.Generator, gray: bool = False) -> np.ndarray:
    """Additive white Gaussian noise of standard deviation `sigma` (image units), clipped to [0, 1].

    `gray`: one noise value per pixel for all channels (luminance noise); else
    independent noise per channel (colour noise).
    """
    shape = (*image.shape[:2], 1) if gray else image.shape
    noise = rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(image + noise, 0.0, 1.0)


def add_poisson_noise(image: np.ndarray, scale: float, rng: np.random.Generator, gray: bool = False) -> np.ndarray:
    """Shot noise: photon counts drawn around the 8-bit values, the difference times `scale`, clipped.

    As Real-ESRGAN: the number of photon levels is the count of distinct 8-bit
    values rounded up to a power of two, so the noise's variance at value x is
    scale^2 * x / levels. `gray` draws it from the luminance, the same for all channels.
    """
    base = _luma(image) if gray else image
    quantized = np.clip(np.round(base * 255.0), 0, 255) / np.float32(255.0)
    levels = 2.0 ** math.ceil(math.log2(max(len(np.unique(quantized)), 1)))
    counts = rng.poisson(quantized.astype(np.float64) * levels)
    noise = ((counts / levels - quantized) * scale).astype(np.float32)
    return np.clip(image + noise, 0.0, 1.0)


# --- JPEG (Real-ESRGAN Sec. 3.1) -------------------------------------------------


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats to 8-bit values, rounded to nearest (halves to even, as torch.round)."""
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def jpeg_encode(image: np.ndarray, quality: int) -> bytes:
    """An HxWx1 / HxWx3 (or HxW) uint8 image as JPEG bytes, by Pillow's libjpeg with its defaults.

    Pillow's defaults are what a user's `save(..., quality=q)` does: the IJG
    tables scaled for `quality`, 4:2:0 chroma subsampling for colour.
    """
    from PIL import Image

    if not 1 <= int(quality) <= 100:
        raise SisrError(f"JPEG quality must be from 1 to 100, not {quality}")
    pixels = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="JPEG", quality=int(quality))
    return buffer.getvalue()


def jpeg_decode(data: bytes, channels: int) -> np.ndarray:
    """JPEG bytes back to an HxWx`channels` uint8 array."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        decoded = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    return decoded[:, :, None] if channels == 1 else decoded


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """`image` (float, [0, 1]) after a round trip through JPEG at `quality`: blocking, ringing, colour bleeding."""
    decoded = jpeg_decode(jpeg_encode(to_uint8(image), quality), image.shape[2])
    return decoded.astype(np.float32) / np.float32(255.0)


# --- recipes: random draws of the operations ---------------------------------


@dataclass(frozen=True)
class Round:
    """One round of degradation: blur, resize, noise, JPEG, each with its probability and ranges.

    Names and defaults are Real-ESRGAN's training options (first round); every
    probability defaults to 0 (`resize_prob` to keep), so a round does only
    what a recipe turns on. Noise levels are in 8-bit units, as published.
    """

    blur_prob: float = 0.0
    kernel_size: tuple[int, int] = (7, 21)  # odd sizes drawn from this range
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)  # over KERNEL_FAMILIES
    sinc_prob: float = 0.1  # of a blur: a sinc kernel instead of the families above
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)  # generalized Gaussian's beta
    betap_range: tuple[float, float] = (1.0, 2.0)  # plateau's beta
    resize_prob: tuple[float, float, float] = (0.0, 0.0, 1.0)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    noise_prob: float = 0.0
    gaussian_noise_prob: float = 0.5  # of noise: Gaussian, else Poisson
    noise_range: tuple[float, float] = (1.0, 30.0)  # Gaussian sigma, 8-bit levels
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_prob: float = 0.0
    jpeg_range: tuple[int, int] = (30, 95)

    @property
    def does_nothing(self) -> bool:
        return (
            self.blur_prob == 0
            and self.resize_prob[0] == 0
            and self.resize_prob[1] == 0
            and self.noise_prob == 0
            and self.jpeg_prob == 0
        )


@dataclass(frozen=True)
class Recipe:
    """How an LR patch is made: from the LR crop (`source="lr"`, the bicubic or paired LR) or from the HR
    patch (`"hr"`), through one or two rounds, ending at the LR size.

    The last round's resize to the LR size (with a sinc filter at
    `final_sinc_prob`) and its JPEG come in a random order, as Real-ESRGAN
    does (Sec. 3.2); rounds after the first resize relative to the LR size.
    """

    name: str
    source: str = "lr"
    first: Round = field(default_factory=Round)
    second: Round | None = None
    final_sinc_prob: float = 0.0
    shuffle: bool = False  # BSRGAN: each round's operations in a random order

    @property
    def is_identity(self) -> bool:
        """True when the LR patch is the LR crop unchanged (the `bicubic` recipe): no random draws at all."""
        return (
            self.source == "lr"
            and self.first.does_nothing
            and (self.second is None or self.second.does_nothing)
            and self.final_sinc_prob == 0
        )

    def degrade(self, hr: np.ndarray, lr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The LR patch (uint8, the shape of `lr`) from the HR and LR crops (uint8 HxWxC)."""
        if self.is_identity:
            return lr
        start = hr if self.source == "hr" else lr
        image = start.astype(np.float32) / np.float32(255.0)
        target = (int(lr.shape[0]), int(lr.shape[1]))
        rounds = [self.first] if self.second is None else [self.first, self.second]
        for number, params in enumerate(rounds):
            last = number == len(rounds) - 1
            image = _run_round(image, params, target, rng, first=number == 0, last=last, recipe=self)
        return to_uint8(image)


def _uniform(rng: np.random.Generator, bounds: Sequence[float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _random_beta(rng: np.random.Generator, bounds: Sequence[float]) -> float:
    """Below or above 1 with equal chances (Real-ESRGAN's draw): shapes both sides of a Gaussian alike."""
    if rng.random() < 0.5:
        return _uniform(rng, (bounds[0], min(1.0, bounds[1])))
    return _uniform(rng, (max(1.0, bounds[0]), bounds[1]))


def random_kernel(params: Round, rng: np.random.Generator) -> np.ndarray:
    """A blur kernel drawn as Real-ESRGAN draws it: a random odd size, then sinc or one of the six families."""
    sizes = [size for size in range(params.kernel_size[0], params.kernel_size[1] + 1) if size % 2]
    size = int(rng.choice(sizes))
    if rng.random() < params.sinc_prob:
        # Small kernels get only the milder cutoffs: a short window cannot hold a low one.
        cutoff = _uniform(rng, (math.pi / 3, math.pi)) if size < 13 else _uniform(rng, (math.pi / 5, math.pi))
        return sinc_kernel(size, cutoff)
    weights = np.asarray(params.kernel_prob, dtype=np.float64)
    family = KERNEL_FAMILIES[int(rng.choice(len(KERNEL_FAMILIES), p=weights / weights.sum()))]
    sigma_x = _uniform(rng, params.blur_sigma)
    if family.endswith("_iso") or family == "iso":
        sigma_y, theta = sigma_x, 0.0
    else:
        sigma_y, theta = _uniform(rng, params.blur_sigma), _uniform(rng, (-math.pi, math.pi))
    if family.startswith("generalized"):
        return generalized_gaussian_kernel(size, sigma_x, sigma_y, theta, _random_beta(rng, params.betag_range))
    if family.startswith("plateau"):
        return plateau_kernel(size, sigma_x, sigma_y, theta, _random_beta(rng, params.betap_range))
    return gaussian_kernel(size, sigma_x, sigma_y, theta)


def _random_noise(image: np.ndarray, params: Round, rng: np.random.Generator) -> np.ndarray:
    if rng.random() >= params.noise_prob:
        return image
    if rng.random() < params.gaussian_noise_prob:
        sigma = _uniform(rng, params.noise_range) / 255.0
        return add_gaussian_noise(image, sigma, rng, gray=rng.random() < params.gray_noise_prob)
    scale = _uniform(rng, params.poisson_scale_range)
    return add_poisson_noise(image, scale, rng, gray=rng.random() < params.gray_noise_prob)


def _random_resize(
    image: np.ndarray, params: Round, target: tuple[int, int], rng: np.random.Generator, first: bool
) -> np.ndarray:
    weights = np.asarray(params.resize_prob, dtype=np.float64)
    direction = int(rng.choice(3, p=weights / weights.sum()))
    if direction == 0:
        factor = _uniform(rng, (1.0, params.resize_range[1]))
    elif direction == 1:
        factor = _uniform(rng, (params.resize_range[0], 1.0))
    else:
        factor = 1.0
    mode = RESIZE_MODES[int(rng.integers(len(RESIZE_MODES)))]
    base = image.shape[:2] if first else target
    size = (max(int(base[0] * factor), 1), max(int(base[1] * factor), 1))
    return resize(image, size, mode)


def _random_jpeg(image: np.ndarray, params: Round, rng: np.random.Generator) -> np.ndarray:
    if rng.random() >= params.jpeg_prob:
        return image
    return jpeg(image, int(rng.integers(params.jpeg_range[0], params.jpeg_range[1] + 1)))


def _to_target(
    image: np.ndarray, target: tuple[int, int], final_sinc_prob: float, rng: np.random.Generator
) -> np.ndarray:
    """The resize to the LR size in a random mode, then (sometimes) a sinc filter: Real-ESRGAN's last step."""
    mode = RESIZE_MODES[int(rng.integers(len(RESIZE_MODES)))]
    image = resize(image, target, mode)
    if rng.random() < final_sinc_prob:
        size = int(rng.choice([size for size in range(7, 22) if size % 2]))
        image = blur(image, sinc_kernel(size, _uniform(rng, (math.pi / 3, math.pi))))
    return image


def _run_round(
    image: np.ndarray,
    params: Round,
    target: tuple[int, int],
    rng: np.random.Generator,
    *,
    first: bool,
    last: bool,
    recipe: Recipe,
) -> np.ndarray:
    def blur_step(x: np.ndarray) -> np.ndarray:
        return blur(x, random_kernel(params, rng)) if rng.random() < params.blur_prob else x

    steps = [
        blur_step,
        lambda x: _random_resize(x, params, target, rng, first),
        lambda x: _random_noise(x, params, rng),
    ]
    jpeg_step = [lambda x: _random_jpeg(x, params, rng)]
    if last:
        final = [lambda x: _to_target(x, target, recipe.final_sinc_prob, rng)]
        tail = final + jpeg_step if rng.random() < 0.5 else jpeg_step + final
    else:
        tail = jpeg_step
    if recipe.shuffle:  # BSRGAN: blur, resize, noise and JPEG in any order; the final resize stays last
        ordered = steps + jpeg_step
        steps = [ordered[index] for index in rng.permutation(len(ordered))]
        tail = [final[0]] if last else []
    for step in steps + tail:
        image = step(image)
    return image


# --- named recipes and their config -------------------------------------------------

# Real-ESRGAN's published training options (train_realesrgan_x4plus.yml): the first and the second round.
REALESRGAN_FIRST = Round(
    blur_prob=1.0,
    resize_prob=(0.2, 0.7, 0.1),
    resize_range=(0.15, 1.5),
    noise_prob=1.0,
    gaussian_noise_prob=0.5,
    noise_range=(1.0, 30.0),
    poisson_scale_range=(0.05, 3.0),
    gray_noise_prob=0.4,
    jpeg_prob=1.0,
    jpeg_range=(30, 95),
)
REALESRGAN_SECOND = Round(
    blur_prob=0.8,
    blur_sigma=(0.2, 1.5),
    resize_prob=(0.3, 0.4, 0.3),
    resize_range=(0.3, 1.2),
    noise_prob=1.0,
    gaussian_noise_prob=0.5,
    noise_range=(1.0, 25.0),
    poisson_scale_range=(0.05, 2.5),
    gray_noise_prob=0.4,
    jpeg_prob=1.0,
    jpeg_range=(30, 95),
)

RECIPES: dict[str, Recipe] = {
    # Today's LR patches: the crop of the MATLAB-bicubic (or paired) LR image, untouched.
    "bicubic": Recipe("bicubic"),
    # Bicubic, then mild Gaussian noise on 30 % of patches and JPEG at a quality of 30-95 on 90 %: the settings
    # of the trial in issue 17 that lifted default-x4 on JPEG inputs. noise_prob = 0 leaves JPEG alone.
    "jpeg": Recipe(
        "jpeg",
        first=Round(
            noise_prob=0.3, gaussian_noise_prob=1.0, noise_range=(1.0, 10.0), jpeg_prob=0.9, jpeg_range=(30, 95)
        ),
    ),
    "realesrgan": Recipe(
        "realesrgan", source="hr", first=REALESRGAN_FIRST, second=REALESRGAN_SECOND, final_sinc_prob=0.8
    ),
    # Nothing on: every operation comes from data.degradation_args.
    "custom": Recipe("custom"),
}

_ROUND_FIELDS = {item.name: item for item in dataclasses.fields(Round)}
_RECIPE_OPTIONS = ("source", "second_order", "final_sinc_prob", "shuffle")


def recipe_option_names() -> list[str]:
    """Every key `data.degradation_args` takes: a round's fields, the same with `2` for the second round,
    and the recipe's own options."""
    return [*_ROUND_FIELDS, *(f"{name}2" for name in _ROUND_FIELDS), *_RECIPE_OPTIONS]


def _check_round_value(name: str, value: Any) -> tuple[Any, str | None]:
    """`value` converted to the type of Round field `name`, or why it cannot be."""
    default = getattr(Round(), name)
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(item, (int, float)) and not isinstance(item, bool) for item in value
        ):
            return None, f"must be a list of numbers, not {value!r}"
        if name != "kernel_prob" and len(value) != len(default):
            return None, f"must hold {len(default)} numbers, not {len(value)}"
        if name == "kernel_prob" and len(value) != len(KERNEL_FAMILIES):
            return (
                None,
                f"must hold {len(KERNEL_FAMILIES)} numbers (for {', '.join(KERNEL_FAMILIES)}), not {len(value)}",
            )
        kind = type(default[0])
        if kind is int and not all(float(item).is_integer() for item in value):
            return None, f"must be whole numbers, not {list(value)!r}"
        converted = tuple(kind(item) for item in value)
        return converted, _range_problem(name, converted)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None, f"must be a number, not {value!r}"
    number = float(value)
    if not 0.0 <= number <= 1.0:
        return None, f"is a probability, from 0 to 1, not {value!r}"
    return number, None


def _range_problem(name: str, values: tuple) -> str | None:
    """What is wrong with a list-valued round option, if anything."""
    if not all(math.isfinite(item) for item in values):
        return f"must hold finite numbers, not {list(values)!r}"
    if name in ("kernel_prob", "resize_prob"):
        if any(item < 0 for item in values) or sum(values) <= 0:
            return f"must be chances (not negative, not all 0), not {list(values)!r}"
        return None
    low, high = values
    if low > high:
        return f"must be [low, high], not {list(values)!r}"
    if name == "kernel_size" and (low < 1 or high > 41 or not any(size % 2 for size in range(low, high + 1))):
        return f"must range over odd sizes from 1 to 41, not {list(values)!r}"
    if name == "jpeg_range" and not 1 <= low <= high <= 100:
        return f"must be qualities from 1 to 100, not {list(values)!r}"
    # Upper limits keep a config from asking for absurd work (a x1000 resize of every patch) or overflow.
    if name in _POSITIVE_UP_TO and not 0 < low <= high <= _POSITIVE_UP_TO[name]:
        return f"must be positive and at most {_POSITIVE_UP_TO[name]:g}, not {list(values)!r}"
    if name in _NON_NEGATIVE_UP_TO and not 0 <= low <= high <= _NON_NEGATIVE_UP_TO[name]:
        return f"must be from 0 to {_NON_NEGATIVE_UP_TO[name]:g}, not {list(values)!r}"
    return None


_POSITIVE_UP_TO = {"blur_sigma": 20.0, "betag_range": 10.0, "betap_range": 10.0, "resize_range": 4.0}
_NON_NEGATIVE_UP_TO = {"noise_range": 255.0, "poisson_scale_range": 10.0}


def recipe_problems(name: str, args: Mapping[str, Any], key: str = "data.degradation") -> list[tuple[str, str]]:
    """(option, what is wrong) for a recipe name and its `degradation_args`; empty when it builds."""
    problems: list[tuple[str, str]] = []
    if name not in RECIPES:
        problems.append((key, f"must be one of {', '.join(RECIPES)}, not {name!r}"))
    known = recipe_option_names()
    for option, value in args.items():
        dotted = f"{key}_args.{option}"
        if option not in known:
            close = difflib.get_close_matches(option, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
            problems.append((dotted, f"is not a degradation option{hint}"))
        elif option == "source":
            if value not in SOURCES:
                problems.append((dotted, f"must be 'lr' (the LR crop) or 'hr' (the HR patch), not {value!r}"))
        elif option in ("second_order", "shuffle"):
            if not isinstance(value, bool):
                problems.append((dotted, f"must be true or false, not {value!r}"))
        elif option == "final_sinc_prob":
            problem = _check_round_value("sinc_prob", value)[1]
            if problem:
                problems.append((dotted, problem))
        else:
            problem = _check_round_value(option.removesuffix("2") if option not in _ROUND_FIELDS else option, value)[1]
            if problem:
                problems.append((dotted, problem))
    return problems


def training_recipe(name: str = "bicubic", args: Mapping[str, Any] | None = None) -> Recipe:
    """The named recipe (`bicubic`, `jpeg`, `realesrgan`, `custom`) with `args` replacing its parameters.

    `args` keys are `Round` fields for the first round (`jpeg_range = [40, 95]`),
    the same with `2` for the second (`noise_range2`; giving one adds a second
    round that does only what is given), `second_order` (true: a second round,
    Real-ESRGAN's parameters if the recipe has none), `final_sinc_prob`,
    `shuffle` and `source` (`lr` or `hr`).
    """
    args = dict(args or {})
    problems = recipe_problems(name, args)
    if problems:
        raise SisrError("; ".join(f"{key} {text}" for key, text in problems))
    recipe = RECIPES[name]
    first_changes = {k: _check_round_value(k, v)[0] for k, v in args.items() if k in _ROUND_FIELDS}
    second_changes = {
        k[:-1]: _check_round_value(k[:-1], v)[0] for k, v in args.items() if k.endswith("2") and k[:-1] in _ROUND_FIELDS
    }
    second = recipe.second
    if args.get("second_order") is True and second is None:
        second = REALESRGAN_SECOND
    elif args.get("second_order") is False:
        second = None
    if second_changes:
        second = dataclasses.replace(second or Round(), **second_changes)
    return dataclasses.replace(
        recipe,
        first=dataclasses.replace(recipe.first, **first_changes),
        second=second,
        source=args.get("source", recipe.source),
        final_sinc_prob=float(args.get("final_sinc_prob", recipe.final_sinc_prob)),
        shuffle=bool(args.get("shuffle", recipe.shuffle)),
    )


# --- fixed degradations for evaluation ------------------------------------------

FIXED_EXAMPLES = ("bicubic", "jpeg90", "jpeg75", "jpeg50", "noise15", "realesrgan-0")
_FIXED = re.compile(r"^(?:(?P<bicubic>bicubic)|jpeg(?P<jpeg>\d+)|noise(?P<noise>\d+)|realesrgan-(?P<realesrgan>\d+))$")


@dataclass(frozen=True)
class Degraded:
    """An LR image as stored (HxW or HxWx3 uint8) and, when a JPEG made it last, that JPEG file's bytes."""

    image: np.ndarray
    jpeg: bytes | None = None


@dataclass(frozen=True)
class FixedDegradation:
    """A named, deterministic way to make an evaluation LR image from an HR one.

    * `bicubic`: MATLAB bicubic, the papers' LR (the set's own LR files where it has them);
    * `jpeg<Q>`: that LR saved by Pillow as JPEG at quality Q (1-100; jpeg90, jpeg75, jpeg50);
    * `noise<S>`: that LR plus Gaussian noise of sigma S 8-bit levels per channel, rounded (noise15);
    * `realesrgan-<N>`: the `realesrgan` training recipe on the whole HR image, its draws fixed by N.

    Random draws come from (N or S, seed, the image's name), never from the
    order images are visited in, so one image's LR is the same alone or in a set.
    """

    name: str
    kind: str
    value: int = 0

    @property
    def from_hr(self) -> bool:
        """True when the LR is made from the HR image, not from the bicubic LR."""
        return self.kind == "realesrgan"

    @property
    def jpeg_quality(self) -> int | None:
        """The JPEG quality when the LR is exactly a JPEG file (jpeg<Q>), else None."""
        return self.value if self.kind == "jpeg" else None

    def degrade(
        self, hr: np.ndarray, scale: int, *, lr: np.ndarray | None = None, key: str = "", seed: int = 0
    ) -> Degraded:
        """The LR image for `hr` (uint8 HxW or HxWxC, cropped to a multiple of `scale`).

        `lr` is the bicubic LR when the caller has it (a set's published files);
        otherwise it is made with MATLAB bicubic. `key` (the image's name) and
        `seed` fix the random draws.
        """
        if lr is None and not self.from_hr:
            from ..imaging import bicubic_downgrade

            hr, lr = bicubic_downgrade(hr, scale)
        if self.kind == "bicubic":
            assert lr is not None
            return Degraded(lr)
        if self.kind == "jpeg":
            assert lr is not None
            data = jpeg_encode(lr, self.value)
            decoded = jpeg_decode(data, 1 if lr.ndim == 2 else lr.shape[2])
            return Degraded(decoded[:, :, 0] if lr.ndim == 2 else decoded, data)
        rng = np.random.default_rng([self.value, int(seed), _name_hash(key)])
        if self.kind == "noise":
            assert lr is not None
            planes = lr[:, :, None] if lr.ndim == 2 else lr
            noisy = add_gaussian_noise(planes.astype(np.float32) / np.float32(255.0), self.value / 255.0, rng)
            result = to_uint8(noisy)
            return Degraded(result[:, :, 0] if lr.ndim == 2 else result)
        height, width = hr.shape[0] // scale * scale, hr.shape[1] // scale * scale
        if height == 0 or width == 0:
            raise SisrError(f"{key or 'an image'}: {hr.shape[1]}x{hr.shape[0]} is too small for x{scale}")
        planes = hr[:height, :width, None] if hr.ndim == 2 else hr[:height, :width]
        target = np.empty((height // scale, width // scale, planes.shape[2]), dtype=np.uint8)
        result = RECIPES["realesrgan"].degrade(planes, target, rng)
        return Degraded(result[:, :, 0] if hr.ndim == 2 else result)


def _name_hash(key: str) -> int:
    """A stable number for an image's name (Python's hash() changes between runs)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little")


def fixed_degradation(name: str, option: str = "degradation") -> FixedDegradation:
    """Parse a fixed degradation's name (`jpeg75`, `noise15`, `realesrgan-0`, `bicubic`); `option` names the
    option it came from in the error."""
    text = str(name).strip().lower()
    match = _FIXED.match(text)
    problem = None
    if match is None:
        problem = "is not a known degradation"
    elif match["jpeg"] is not None and not 1 <= int(match["jpeg"]) <= 100:
        problem = "has a JPEG quality outside 1-100"
    elif match["noise"] is not None and not 0 <= int(match["noise"]) <= 255:
        problem = "has a noise level outside 0-255"
    elif match["realesrgan"] is not None and int(match["realesrgan"]) >= 2**32:
        problem = "has a draw number past 2^32"
    if problem or match is None:
        raise SisrError(
            f"{option} {name!r} {problem}: use bicubic, jpeg<Q> (quality 1-100), noise<S> (sigma in 8-bit "
            f"levels) or realesrgan-<N> (fixed draws N), e.g. {', '.join(FIXED_EXAMPLES)}"
        )
    for kind in ("jpeg", "noise", "realesrgan"):
        if match[kind] is not None:
            return FixedDegradation(text, kind, int(match[kind]))
    return FixedDegradation("bicubic", "bicubic")
