"""EDSR (Lim et al., 2017): a plain residual network without batch norm."""

from __future__ import annotations

import torch
from torch import nn

from .common import DIV2K_RGB_MEAN, MeanShift, conv3x3, make_upsampler


class ResBlock(nn.Module):
    """conv-ReLU-conv with the output scaled before the skip.

    No batch norm: it normalises away the range flexibility SR needs. The
    scaling (0.1 in the large model) keeps training of wide networks stable.
    """

    def __init__(self, channels: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(conv3x3(channels, channels), nn.ReLU(inplace=True), conv3x3(channels, channels))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


class EDSR(nn.Module):
    """head (conv) -> body (residual blocks + conv, global skip) -> tail (upsampler + conv).

    Submodule names are those of the official EDSR-PyTorch code, so its
    published weight files map key for key.

    `upsampler` chooses how the tail enlarges the features: "subpixel" (the
    paper's conv + pixel shuffle, the default, with the official keys),
    "transposed" or "nearest-conv" (see `sisr.models.common.make_upsampler`).
    `global_skip=False` drops the long skip from the head's output to the
    body's end: EDSR has no image-level skip (it predicts the image, not a
    residual over bicubic), so this feature-level identity is its "global
    residual learning". It has no parameters; without it the tail sees the
    body's output alone, and the network must carry the input's low
    frequencies through every block.
    """

    def __init__(
        self,
        scale: int,
        num_filters: int = 64,
        num_blocks: int = 16,
        res_scale: float = 1.0,
        num_channels: int = 3,
        input_scale: float = 255.0,
        rgb_mean: tuple[float, ...] = DIV2K_RGB_MEAN,
        upsampler: str = "subpixel",
        global_skip: bool = True,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.global_skip = bool(global_skip)
        self.normalize = MeanShift(rgb_mean, input_scale)
        self.head = nn.Sequential(conv3x3(num_channels, num_filters))
        self.body = nn.Sequential(
            *[ResBlock(num_filters, res_scale) for _ in range(num_blocks)], conv3x3(num_filters, num_filters)
        )
        self.tail = nn.Sequential(make_upsampler(upsampler, scale, num_filters), conv3x3(num_filters, num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.normalize(x))
        x = x + self.body(x) if self.global_skip else self.body(x)
        return self.normalize.inverse(self.tail(x))
