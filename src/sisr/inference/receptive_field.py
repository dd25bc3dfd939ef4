"""How far a network looks: the receptive-field radius in low-resolution pixels.

Tiled inference is exact when every kept output pixel sees only real pixels,
never a tile's zero padding; that needs `radius` LR pixels of context around
each tile. The radius follows from the architecture's arguments: each k x k
convolution widens the field by k // 2 pixels *at the resolution it runs at*,
and a pixel shuffle by s maps HR pixel p to LR pixel p // s (so does a
nearest-neighbour enlargement by s). A transposed convolution of stride s
reaches back to the input pixels whose kernel footprint covers the output
pixel. Residual skips are shorter paths than the body they skip, so only the
longest chain counts; parallel branches (WDSR's 5x5 skip) are chains of
their own. Pre-upsampling networks (SRCNN, VDSR) start with MATLAB's bicubic
enlargement, whose taps reach 2 LR pixels either side, and then run every
layer at the output's size, where a k x k kernel reaches only k // 2 HR
pixels, i.e. (k // 2) / s LR pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..errors import SisrError


@dataclass(frozen=True)
class Conv:
    """A 'same'-padded convolution with a square kernel, at the current resolution."""

    kernel_size: int


@dataclass(frozen=True)
class Shuffle:
    """A pixel shuffle: the resolution grows by `factor`."""

    factor: int


@dataclass(frozen=True)
class Transposed:
    """A transposed convolution: output pixel o takes input pixels i with 0 <= o + padding - i * stride < kernel."""

    kernel_size: int
    stride: int
    padding: int


@dataclass(frozen=True)
class CubicResize:
    """MATLAB's bicubic enlargement by `factor`: output o samples the input at u = (o + 0.5) / factor - 0.5.

    The cubic kernel is zero from 2 pixels on, so o takes the input pixels j
    with |u - j| < 2: up to 2 either side, fewer where u falls on a pixel.
    """

    factor: int


Layer = Conv | Shuffle | Transposed | CubicResize


def bicubic_chain(scale: int) -> list[Layer]:
    """The layers of a bicubic enlargement, what pre-upsampling networks start with."""
    return [CubicResize(scale)]


def chain_radius(chain: list[Layer]) -> int:
    """Radius in input pixels of the field of one output pixel, for layers in forward order.

    Walks back from one output pixel, widening the interval of pixels it
    depends on; with shuffles the answer depends on the output pixel's
    position within its s x s block, so every position is tried and the worst
    one kept. The radius is measured from the LR pixel the output pixel lies
    over (p // total_scale).
    """
    total_scale = 1
    for layer in chain:
        if isinstance(layer, Shuffle):
            total_scale *= layer.factor
        elif isinstance(layer, Transposed):
            total_scale *= layer.stride
        elif isinstance(layer, CubicResize):
            total_scale *= layer.factor
    worst = 0
    for position in range(total_scale):
        low = high = position
        for layer in reversed(chain):
            if isinstance(layer, Conv):
                low -= layer.kernel_size // 2
                high += layer.kernel_size // 2
            elif isinstance(layer, Transposed):
                # i >= (o + padding - kernel + 1) / stride, rounded up; i <= (o + padding) / stride, rounded down.
                low = -((layer.kernel_size - 1 - layer.padding - low) // layer.stride)
                high = (high + layer.padding) // layer.stride
            elif isinstance(layer, CubicResize):
                # j > u - 2 and j < u + 2 with u = (2o + 1 - s) / 2s, in integers.
                double = 2 * layer.factor
                low = (2 * low + 1 - 5 * layer.factor) // double + 1
                high = -(-(2 * high + 1 + 3 * layer.factor) // double) - 1
            else:
                low, high = low // layer.factor, high // layer.factor
        centre = position // total_scale
        worst = max(worst, centre - low, high - centre)
    return worst


def _convs_and_shuffles(module: nn.Module) -> list[Layer]:
    """The convolutions, shuffles and enlargements of a purely sequential module, in order."""
    chain: list[Layer] = []
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            if layer.kernel_size[0] != layer.kernel_size[1] or layer.stride != (1, 1) or layer.dilation != (1, 1):
                raise SisrError(f"receptive_field: {layer} is not a square, unstrided, undilated convolution")
            chain.append(Conv(layer.kernel_size[0]))
        elif isinstance(layer, nn.ConvTranspose2d):
            chain.append(_transposed(layer))
        elif isinstance(layer, nn.PixelShuffle):
            chain.append(Shuffle(layer.upscale_factor))
        elif isinstance(layer, nn.Upsample):
            chain.append(Shuffle(_nearest_factor(layer)))
    return chain


def _transposed(layer: nn.ConvTranspose2d) -> Transposed:
    kernel, stride, padding = layer.kernel_size, layer.stride, layer.padding
    plain = not isinstance(padding, str) and layer.dilation == (1, 1) and layer.output_padding == (0, 0)
    if not plain or len({kernel[0], kernel[1]}) + len({stride[0], stride[1]}) + len(set(padding)) != 3:
        raise SisrError(f"receptive_field: {layer} is not a square, undilated transposed convolution")
    return Transposed(kernel[0], stride[0], int(padding[0]))


def _nearest_factor(layer: nn.Upsample) -> int:
    """The factor of a nearest-neighbour enlargement by a whole number: output p copies input p // s."""
    factor = layer.scale_factor
    if layer.mode != "nearest" or not isinstance(factor, (int, float)) or factor != int(factor) or factor < 1:
        raise SisrError(f"receptive_field: {layer} is not a nearest-neighbour enlargement by a whole factor")
    return int(factor)


def layer_chains(model: nn.Module) -> list[list[Layer]]:
    """The longest paths from input to output of the networks sisr knows."""
    from ..models import EDSR, SRCNN, VDSR, WDSR, Bicubic, SRResNet
    from ..models.msrresnet import MSRResNet
    from .ensemble import SelfEnsemble

    if isinstance(model, SelfEnsemble):
        # Flips and transposes of the input move no pixel farther from another: same field.
        return layer_chains(model.model)
    if isinstance(model, (EDSR, SRResNet)):
        # head, body (blocks then a conv; the global skip is shorter), upsampler, tail: all in series.
        return [_convs_and_shuffles(model)]
    if isinstance(model, WDSR):
        main = _convs_and_shuffles(model.head) + _convs_and_shuffles(model.body) + _convs_and_shuffles(model.tail)
        return [main] if model.skip is None else [main, _convs_and_shuffles(model.skip)]
    if isinstance(model, (SRCNN, VDSR)):
        # Bicubic first, then every convolution in HR space; VDSR's skip adds the bicubic image, a shorter path.
        return [bicubic_chain(model.scale) + _convs_and_shuffles(model)]
    if isinstance(model, MSRResNet):
        # Its shuffles are functional calls, so the chain is spelled out; the bilinear skip reaches 1 pixel.
        main = [Conv(model.conv_first.kernel_size[0]), *_convs_and_shuffles(model.body)]
        for k, stage in enumerate(model.stages, start=1):
            main += _convs_and_shuffles(getattr(model, f"upconv{k}")) + [Shuffle(stage)]
        main += _convs_and_shuffles(model.conv_hr) + _convs_and_shuffles(model.conv_last)
        return [main, [Conv(3), Shuffle(model.scale)]]
    if isinstance(model, Bicubic):
        return [bicubic_chain(model.scale)]
    raise SisrError(f"receptive_field: unknown network {type(model).__name__}; give the tile overlap explicitly")


def receptive_field(model: nn.Module) -> int:
    """Context in LR pixels that makes tiled output identical to untiled output."""
    return max(chain_radius(chain) for chain in layer_chains(model))
