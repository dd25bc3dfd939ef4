"""WDSR-A and WDSR-B (Yu et al., 2018): wide activation, weight normalization."""

from __future__ import annotations

import torch
from torch import nn

from .common import DIV2K_RGB_MEAN, MeanShift, WeightNormConv2d


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


class WDSR(nn.Module):
    """Main branch (head, wide blocks, conv to 3*s*s, shuffle) + 5x5 skip branch (conv, shuffle).

    Both branches end in a pixel shuffle of their own and are summed in HR
    space, so the body needs no upsampling stages and no features at HR size.
    """

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
    ) -> None:
        super().__init__()
        if block not in ("a", "b"):
            raise ValueError(f"WDSR block must be 'a' or 'b', not {block!r}")
        self.scale = scale
        self.normalize = MeanShift(rgb_mean, input_scale)
        out = num_channels * scale * scale
        self.head = nn.Sequential(WeightNormConv2d(num_channels, num_filters, 3))
        blocks: list[nn.Module]
        if block == "a":
            blocks = [WideBlockA(num_filters, expansion, res_scale) for _ in range(num_blocks)]
        else:
            blocks = [WideBlockB(num_filters, expansion, linear, res_scale) for _ in range(num_blocks)]
        self.body = nn.Sequential(*blocks)
        self.tail = nn.Sequential(WeightNormConv2d(num_filters, out, 3), nn.PixelShuffle(scale))
        self.skip = nn.Sequential(WeightNormConv2d(num_channels, out, 5), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        y = self.tail(self.body(self.head(x))) + self.skip(x)
        return self.normalize.inverse(y)
