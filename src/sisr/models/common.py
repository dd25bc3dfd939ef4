"""Building blocks shared by the networks: normalisation, upsampling, weight norm."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

# Mean RGB of the DIV2K training images: the networks subtract it on the way in
# and add it back on the way out, as EDSR and WDSR do.
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


class MeanShift(nn.Module):
    """Map [0, 1] images to the network's working range and back.

    `forward(x)` computes `(x - mean) * scale` and `inverse(y)` computes
    `y / scale + mean`. The official EDSR code works on 0..255 values
    (scale 255) while the WDSR and TensorFlow reference code use
    `(x - mean * 255) / 127.5` (scale 2); a model's `input_scale` argument
    says which, so imported weights see the inputs they were trained on.
    The mean is a buffer, not a parameter: it is fixed, not learnt.
    """

    mean: torch.Tensor

    def __init__(self, rgb_mean: tuple[float, ...] = DIV2K_RGB_MEAN, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(rgb_mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) * self.scale

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y / self.scale + self.mean.to(y.dtype)


def conv3x3(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Conv2d:
    """A 'same'-padded convolution, as every network here uses."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)


def upsample_stages(scale: int) -> list[int]:
    """Split a scale into pixel-shuffle stages: powers of two as x2 stages, x3 as one.

    EDSR builds x4 and x8 from x2 stages; a single x4 shuffle would need 16x the
    channels in one convolution for no gain in quality.
    """
    if scale == 3:
        return [3]
    if scale >= 2 and scale & (scale - 1) == 0:
        return [2] * int(math.log2(scale))
    raise ValueError(f"scale must be 2, 3, 4 or 8 (a power of two or 3), not {scale}")


class Upsampler(nn.Sequential):
    """Sub-pixel convolution: conv to `s*s*C` channels, then pixel shuffle, per stage.

    Indices in the Sequential are those of the official EDSR code (conv at 0,
    shuffle at 1, next conv at 2, ...), so its weight files load unchanged.
    """

    def __init__(self, scale: int, channels: int, activation: nn.Module | None = None) -> None:
        layers: list[nn.Module] = []
        for stage in upsample_stages(scale):
            layers.append(conv3x3(channels, stage * stage * channels))
            layers.append(nn.PixelShuffle(stage))
            if activation is not None:
                layers.append(activation)
        super().__init__(*layers)


# How a network enlarges its features, for the upsampler ablation (see `make_upsampler`).
UPSAMPLERS = ("subpixel", "transposed", "nearest-conv")


def check_upsampler(upsampler: str) -> str:
    """`upsampler` if it is one of UPSAMPLERS; a ValueError (a SisrError from `build_model`) otherwise."""
    if upsampler not in UPSAMPLERS:
        raise ValueError(f"upsampler must be one of {', '.join(UPSAMPLERS)}, not {upsampler!r}")
    return upsampler


def transposed_geometry(stage: int, kernel_size: int) -> tuple[int, int]:
    """(kernel, padding) of the transposed convolution that does what a `kernel_size` sub-pixel one does.

    A sub-pixel convolution with a k x k kernel in LR space equals a
    transposed convolution with a k*s x k*s kernel and stride s (Shi et al.,
    2016, "Is the deconvolution layer the same as a convolutional layer?"):
    the same weights, the same reach of k // 2 LR pixels. Padding s * (k // 2)
    crops the output to exactly s times the input: (n - 1) s - 2 p + k s = n s.
    The common 4x4, stride 2 deconvolution would reach less far; matching the
    sub-pixel layer keeps the ablation a comparison of the operation alone.
    """
    return kernel_size * stage, stage * (kernel_size // 2)


class TransposedUpsampler(nn.Sequential):
    """Learned deconvolution: one stride-s transposed convolution per stage (x4 as two x2 stages)."""

    def __init__(self, scale: int, channels: int) -> None:
        layers: list[nn.Module] = []
        for stage in upsample_stages(scale):
            kernel, padding = transposed_geometry(stage, 3)
            layers.append(nn.ConvTranspose2d(channels, channels, kernel, stride=stage, padding=padding))
        super().__init__(*layers)


class NearestConvUpsampler(nn.Sequential):
    """Resize-convolution (Odena et al., 2016): nearest-neighbour enlargement, then a 3x3 conv, per stage.

    Every output pixel is made by the same kernel from a copy of its LR
    neighbourhood, so no pattern can come from uneven kernel overlap or from
    s*s independently learnt sub-pixel filters: the checkerboard-free baseline.
    """

    def __init__(self, scale: int, channels: int) -> None:
        layers: list[nn.Module] = []
        for stage in upsample_stages(scale):
            layers.append(nn.Upsample(scale_factor=stage, mode="nearest"))
            layers.append(conv3x3(channels, channels))
        super().__init__(*layers)


def make_upsampler(upsampler: str, scale: int, channels: int) -> nn.Sequential:
    """The feature upsampler of EDSR's tail: `channels` in, `channels` out at `scale` times the size.

    All three do the same multiply-adds per output pixel (a 3x3 kernel's worth
    of C x C products per HR pixel); they differ in how weights are shared
    across the s x s positions of an LR pixel.
    """
    if check_upsampler(upsampler) == "transposed":
        return TransposedUpsampler(scale, channels)
    if upsampler == "nearest-conv":
        return NearestConvUpsampler(scale, channels)
    return Upsampler(scale, channels)


class WeightNormConv2d(nn.Conv2d):
    """A convolution whose kernel is `g * v / ||v||`, the norm taken per output channel.

    Weight normalization (Salimans & Kingma) as WDSR uses it, without the
    data-dependent initialisation: `g` starts at `||v||`, so the first kernel is
    the ordinary initial one. The parameters are named `weight_g` and `weight_v`,
    as in PyTorch's classic `weight_norm` and the official WDSR code.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int | None = None) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2 if padding is None else padding
        )
        weight = self.weight.detach()
        del self.weight
        self.weight_v = nn.Parameter(weight.clone())
        self.weight_g = nn.Parameter(weight.flatten(1).norm(dim=1).view(-1, 1, 1, 1))

    @property
    def weight(self) -> torch.Tensor:  # type: ignore[override]
        norm = self.weight_v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        return self.weight_v * (self.weight_g / norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=self.padding)


class WeightNormConvTranspose2d(nn.ConvTranspose2d):
    """A transposed convolution with weight normalization, for WDSR's "transposed" upsampler.

    The kernel is stored (in, out, k, k); the norm is taken per output channel
    (over input channels and taps), as `WeightNormConv2d` does, so each output
    unit's weight vector has length `g`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
        weight = self.weight.detach()
        del self.weight
        self.weight_v = nn.Parameter(weight.clone())
        self.weight_g = nn.Parameter(_output_norm(weight))

    @property
    def weight(self) -> torch.Tensor:  # type: ignore[override]
        return self.weight_v * (self.weight_g / _output_norm(self.weight_v))

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        return F.conv_transpose2d(x, self.weight, self.bias, stride=self.stride, padding=_int_pair(self.padding))


def _output_norm(weight: torch.Tensor) -> torch.Tensor:
    """The norm of a transposed kernel (in, out, k, k) per output channel, shaped (1, out, 1, 1)."""
    return weight.transpose(0, 1).flatten(1).norm(dim=1).view(1, -1, 1, 1)


def count_parameters(model: nn.Module) -> int:
    """Learnt parameters (weights and biases; frozen buffers such as the mean excluded)."""
    return sum(p.numel() for p in model.parameters())


def _pair(values: tuple[int, ...]) -> tuple[int, int]:
    """A 2-d convolution's size as the 2-tuple it is (torch types it as tuple[int, ...])."""
    first, second = values
    return first, second


def _int_pair(padding: str | tuple[int, ...]) -> tuple[int, int]:
    """A transposed convolution's padding, which torch types as possibly a string but which never is one."""
    if isinstance(padding, str):
        raise ValueError(f"a transposed convolution's padding is a number of pixels, not {padding!r}")
    return _pair(padding)


def _plain_conv(conv: WeightNormConv2d) -> nn.Conv2d:
    plain = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        _pair(conv.kernel_size),
        stride=_pair(conv.stride),
        padding=conv.padding if isinstance(conv.padding, str) else _pair(conv.padding),
        dilation=_pair(conv.dilation),
        groups=conv.groups,
        bias=conv.bias is not None,
    ).to(conv.weight_v.device, conv.weight_v.dtype)
    with torch.no_grad():
        plain.weight.copy_(conv.weight)
        if conv.bias is not None:
            assert plain.bias is not None  # built with bias=True above
            plain.bias.copy_(conv.bias)
    return plain


def _plain_transposed(conv: WeightNormConvTranspose2d) -> nn.ConvTranspose2d:
    plain = nn.ConvTranspose2d(
        conv.in_channels,
        conv.out_channels,
        _pair(conv.kernel_size),
        stride=_pair(conv.stride),
        padding=_int_pair(conv.padding),
        bias=conv.bias is not None,
    ).to(conv.weight_v.device, conv.weight_v.dtype)
    with torch.no_grad():
        plain.weight.copy_(conv.weight)
        if conv.bias is not None:
            assert plain.bias is not None  # built with bias=True above
            plain.bias.copy_(conv.bias)
    return plain


def fold_weight_norm(model: nn.Module) -> nn.Module:
    """A copy of `model` whose weight-normalised convolutions are plain ones with kernel g * v / ||v||.

    Weight normalization is a training device (it reparametrises the kernel for
    better conditioning); at inference the kernel is fixed, so computing it on
    every call only costs time. The original model is left untouched.
    """
    folded = copy.deepcopy(model)
    for parent in list(folded.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, WeightNormConv2d):
                setattr(parent, name, _plain_conv(child))
            elif isinstance(child, WeightNormConvTranspose2d):
                setattr(parent, name, _plain_transposed(child))
    return folded
