"""How far a network looks: the receptive-field radius in low-resolution pixels.

Tiled inference is exact when every kept output pixel sees only real pixels,
never a tile's zero padding; that needs `radius` LR pixels of context around
each tile. The radius follows from the architecture's arguments: each k x k
convolution widens the field by k // 2 pixels *at the resolution it runs at*,
and a pixel shuffle by s maps HR pixel p to LR pixel p // s. Residual skips
are shorter paths than the body they skip, so only the longest chain counts;
parallel branches (WDSR's 5x5 skip) are chains of their own.
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


Layer = Conv | Shuffle


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
    worst = 0
    for position in range(total_scale):
        low = high = position
        for layer in reversed(chain):
            if isinstance(layer, Conv):
                low -= layer.kernel_size // 2
                high += layer.kernel_size // 2
            else:
                low, high = low // layer.factor, high // layer.factor
        centre = position // total_scale
        worst = max(worst, centre - low, high - centre)
    return worst


def _convs_and_shuffles(module: nn.Module) -> list[Layer]:
    """The convolutions and shuffles of a purely sequential module, in order."""
    chain: list[Layer] = []
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            if layer.kernel_size[0] != layer.kernel_size[1] or layer.stride != (1, 1) or layer.dilation != (1, 1):
                raise SisrError(f"receptive_field: {layer} is not a square, unstrided, undilated convolution")
            chain.append(Conv(layer.kernel_size[0]))
        elif isinstance(layer, nn.PixelShuffle):
            chain.append(Shuffle(layer.upscale_factor))
    return chain


def layer_chains(model: nn.Module) -> list[list[Layer]]:
    """The longest paths from input to output of the networks sisr knows."""
    from ..models import EDSR, WDSR, Bicubic, SRResNet
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
        return [main, _convs_and_shuffles(model.skip)]
    if isinstance(model, MSRResNet):
        # Its shuffles are functional calls, so the chain is spelled out; the bilinear skip reaches 1 pixel.
        main = [Conv(model.conv_first.kernel_size[0]), *_convs_and_shuffles(model.body)]
        for k, stage in enumerate(model.stages, start=1):
            main += _convs_and_shuffles(getattr(model, f"upconv{k}")) + [Shuffle(stage)]
        main += _convs_and_shuffles(model.conv_hr) + _convs_and_shuffles(model.conv_last)
        return [main, [Conv(3), Shuffle(model.scale)]]
    if isinstance(model, Bicubic):
        # MATLAB's cubic kernel is 4 input pixels wide: taps reach 2 pixels either side when enlarging.
        return [[Conv(5), Shuffle(model.scale)]]
    raise SisrError(f"receptive_field: unknown network {type(model).__name__}; give the tile overlap explicitly")


def receptive_field(model: nn.Module) -> int:
    """Context in LR pixels that makes tiled output identical to untiled output."""
    return max(chain_radius(chain) for chain in layer_chains(model))
