"""VDSR (Kim et al., 2016): 20 convolutions on the bicubic-enlarged image, learning only the residual.

Pre-upsampling like SRCNN, but deep: the network predicts the difference
between the HR image and its bicubic enlargement, which the paper showed
trains many times faster than predicting the image. The enlargement is sisr's
MATLAB-exact `matlab_imresize`, inside the network, so it takes the LR image
like every other sisr network.
"""

from __future__ import annotations

import torch
from torch import nn

from .bicubic import Bicubic
from .common import conv3x3


class VDSR(nn.Module):
    """Bicubic x s, then `num_layers` 3x3 convolutions of `num_filters` (ReLU between), plus the bicubic image.

    The paper's network: 20 layers of 64 filters, the first reading the
    image, the last a single 3 x 3 x 64 filter per output channel, all
    zero-padded so every map keeps the image's size (664,704 weights for the
    paper's one Y channel). `global_skip=False` drops the residual learning
    (the output is the layers' alone), the paper's own ablation. The input
    stays in [0, 1], as in the paper.
    """

    def __init__(
        self,
        scale: int,
        num_filters: int = 64,
        num_layers: int = 20,
        num_channels: int = 3,
        global_skip: bool = True,
    ) -> None:
        super().__init__()
        if num_layers < 2:
            raise ValueError(f"VDSR needs at least 2 layers (one reading the image, one writing it), not {num_layers}")
        self.scale = scale
        self.global_skip = bool(global_skip)
        self.upsample = Bicubic(scale)
        layers: list[nn.Module] = [conv3x3(num_channels, num_filters), nn.ReLU(inplace=True)]
        for _ in range(num_layers - 2):
            layers += [conv3x3(num_filters, num_filters), nn.ReLU(inplace=True)]
        layers.append(conv3x3(num_filters, num_channels))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.upsample(x)
        return x + self.body(x) if self.global_skip else self.body(x)
