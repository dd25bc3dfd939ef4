"""MSRResNet, BasicSR's "modified SRResNet": SRResNet without batch norm, plus a bilinear skip.

Here so that BasicSR's published MSRResNet weights run in sisr. Submodule
names are BasicSR's (`conv_first`, `body.N.conv1`, `upconv1`, `conv_hr`,
`conv_last`), so its state dicts load key for key.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .common import conv3x3, upsample_stages


class ResidualBlockNoBN(nn.Module):
    """conv-ReLU-conv plus the input: EDSR's block, under BasicSR's names."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.conv2 = conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class MSRResNet(nn.Module):
    """conv + LeakyReLU, plain residual blocks, shuffle stages with LeakyReLU, two convs, + bilinear input.

    Inputs and outputs are [0, 1] with no mean subtraction; the network only
    learns the difference to a bilinear upsampling of its input.
    """

    def __init__(self, scale: int = 4, num_filters: int = 64, num_blocks: int = 16, num_channels: int = 3) -> None:
        super().__init__()
        self.scale = scale
        self.conv_first = conv3x3(num_channels, num_filters)
        self.body = nn.Sequential(*[ResidualBlockNoBN(num_filters) for _ in range(num_blocks)])
        self.stages = upsample_stages(scale)
        for k, stage in enumerate(self.stages, start=1):
            self.add_module(f"upconv{k}", conv3x3(num_filters, num_filters * stage * stage))
        self.conv_hr = conv3x3(num_filters, num_filters)
        self.conv_last = conv3x3(num_filters, num_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(F.leaky_relu(self.conv_first(x), 0.1))
        for k, stage in enumerate(self.stages, start=1):
            features = F.leaky_relu(F.pixel_shuffle(getattr(self, f"upconv{k}")(features), stage), 0.1)
        out = self.conv_last(F.leaky_relu(self.conv_hr(features), 0.1))
        return out + F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
