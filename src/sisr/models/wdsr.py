"""WDSR-A and WDSR-B (Yu et al., 2018): wide activation, weight normalization."""

from __future__ import annotations

import torch
from torch import nn

from .common import (
    DIV2K_RGB_MEAN,
    MeanShift,
    WeightNormConv2d,
    WeightNormConvTranspose2d,
    check_upsampler,
    transposed_geometry,
)


class WideBlockA(nn.Module):
    """3x3 expand -> ReLU -> 3x3: more channels before the ReLU, same parameters per block."""

    def __init__(self, channels: int, expansion: int, res_scale: float = 1.0) -> None:
        super().__init__()
        wide = channels * expansion
        self.body = nn.Sequential(
            WeightNormConv2d(channels, wide, 3), nn.ReLU(inplace=True), WeightNormConv2d(wide, channels, 3)
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


class WideBlockB(nn.Module):
    """1x1 expand -> ReLU -> 1x1 linear low-rank -> 3x3: wider still for the same cost."""

    def __init__(self, channels: int, expansion: int, linear: float = 0.8, res_scale: float = 1.0) -> None:
        super().__init__()
        wide = channels * expansion
        low_rank = int(channels * linear)
        self.body = nn.Sequential(
            WeightNormConv2d(channels, wide, 1),
            nn.ReLU(inplace=True),
            WeightNormConv2d(wide, low_rank, 1),
            WeightNormConv2d(low_rank, channels, 3),
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


def branch_end(upsampler: str, in_channels: int, out_channels: int, kernel_size: int, scale: int) -> nn.Sequential:
    """A WDSR branch's last layer: `in_channels` LR features to `out_channels` at `scale` times the size.

    "subpixel" is the paper's conv to out*s*s channels and one shuffle by s;
    "transposed" the deconvolution with the same weights and reach (one of
    stride s with a k*s kernel, see `transposed_geometry`); "nearest-conv" a
    nearest-neighbour enlargement by s and the k x k convolution in HR space.
    Each does what the paper's single shuffle does, in one stage.
    """
    if check_upsampler(upsampler) == "transposed":
        kernel, padding = transposed_geometry(scale, kernel_size)
        return nn.Sequential(WeightNormConvTranspose2d(in_channels, out_channels, kernel, scale, padding))
    if upsampler == "nearest-conv":
        return nn.Sequential(
            nn.Upsample(scale_factor=scale, mode="nearest"), WeightNormConv2d(in_channels, out_channels, kernel_size)
        )
    return nn.Sequential(
        WeightNormConv2d(in_channels, out_channels * scale * scale, kernel_size), nn.PixelShuffle(scale)
    )


class WDSR(nn.Module):
    """Main branch (head, wide blocks, conv to 3*s*s, shuffle) + 5x5 skip branch (conv, shuffle).

    Both branches end in a pixel shuffle of their own and are summed in HR
    space, so the body needs no upsampling stages and no features at HR size.

    `upsampler` replaces both branches' conv + shuffle ("transposed",
    "nearest-conv": see `branch_end`). `global_skip=False` drops the 5x5
    branch: it is WDSR's global skip, a learnt upsampling of the input image
    itself, so the blocks only add detail to it (the role bicubic plays in
    VDSR's residual learning). Without it the output is the main branch alone
    and the parameters shrink by the branch's (3 * 3 * s * s * 25 weights,
    their norms and biases).
    """

    skip: nn.Sequential | None

    def __init__(
        self,
        scale: int,
        block: str = "b",
        num_filters: int = 32,
        num_blocks: int = 16,
        expansion: int = 6,
        linear: float = 0.8,
        res_scale: float = 1.0,
        num_channels: int = 3,
        input_scale: float = 2.0,
        rgb_mean: tuple[float, ...] = DIV2K_RGB_MEAN,
        upsampler: str = "subpixel",
        global_skip: bool = True,
    ) -> None:
        super().__init__()
        if block not in ("a", "b"):
            raise ValueError(f"WDSR block must be 'a' or 'b', not {block!r}")
        self.scale = scale
        self.normalize = MeanShift(rgb_mean, input_scale)
        self.head = nn.Sequential(WeightNormConv2d(num_channels, num_filters, 3))
        blocks: list[nn.Module]
        if block == "a":
            blocks = [WideBlockA(num_filters, expansion, res_scale) for _ in range(num_blocks)]
        else:
            blocks = [WideBlockB(num_filters, expansion, linear, res_scale) for _ in range(num_blocks)]
        self.body = nn.Sequential(*blocks)
        self.tail = branch_end(upsampler, num_filters, num_channels, 3, scale)
        self.skip = branch_end(upsampler, num_channels, num_channels, 5, scale) if global_skip else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        y = self.tail(self.body(self.head(x)))
        if self.skip is not None:
            y = y + self.skip(x)
        return self.normalize.inverse(y)
