"""SRResNet, the generator of SRGAN (Ledig et al., 2017), and SRGAN's discriminator."""

from __future__ import annotations

import torch
from torch import nn

from .common import conv3x3, upsample_stages


class ResBlockBN(nn.Module):
    """conv-BN-PReLU-conv-BN plus the input, as in the SRGAN paper."""

    def __init__(self, channels: int, momentum: float = 0.2) -> None:
        super().__init__()
        # Keras' momentum 0.8 (weight of the old statistics) is PyTorch's 0.2.
        self.body = nn.Sequential(
            conv3x3(channels, channels),
            nn.BatchNorm2d(channels, momentum=momentum),
            nn.PReLU(channels),
            conv3x3(channels, channels),
            nn.BatchNorm2d(channels, momentum=momentum),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRResNet(nn.Module):
    """9x9 head + PReLU, BN residual blocks, conv + BN, skip, x2 shuffle stages with PReLU, 9x9 tail.

    Inputs are [0, 1]; the tail's tanh gives [-1, 1], mapped back to [0, 1].
    """

    def __init__(self, scale: int = 4, num_filters: int = 64, num_blocks: int = 16, num_channels: int = 3) -> None:
        super().__init__()
        self.scale = scale
        self.head = nn.Sequential(conv3x3(num_channels, num_filters, 9), nn.PReLU(num_filters))
        self.body = nn.Sequential(
            *[ResBlockBN(num_filters) for _ in range(num_blocks)],
            conv3x3(num_filters, num_filters),
            nn.BatchNorm2d(num_filters, momentum=0.2),
        )
        upsampler: list[nn.Module] = []
        for stage in upsample_stages(scale):
            upsampler += [
                conv3x3(num_filters, num_filters * stage * stage),
                nn.PixelShuffle(stage),
                nn.PReLU(num_filters),
            ]
        self.upsampler = nn.Sequential(*upsampler)
        self.tail = nn.Sequential(conv3x3(num_filters, num_channels, 9), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        x = x + self.body(x)
        return (self.tail(self.upsampler(x)) + 1) / 2


class Discriminator(nn.Module):
    """SRGAN's discriminator: eight 3x3 conv blocks (64..512, strides 1/2), dense 1024 -> 1.

    Returns logits (no sigmoid), for a numerically safe BCE-with-logits loss.
    The paper's dense layer sees the 6x6 map of a 96x96 patch; an adaptive
    average pool to `feature_size` keeps that exact for 96 and lets any other
    patch size through.
    """

    def __init__(self, num_channels: int = 3, num_filters: int = 64, feature_size: int = 6) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = num_channels
        for i in range(8):
            out_channels = num_filters * 2 ** (i // 2)
            stride = 2 if i % 2 else 1
            layers.append(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1))
            if i > 0:
                layers.append(nn.BatchNorm2d(out_channels, momentum=0.2))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(feature_size)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * feature_size * feature_size, 1024),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(1024, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The discriminator sees [-1, 1] images, as in the reference code.
        return self.classifier(self.pool(self.features(x * 2 - 1)))
