"""SRCNN (Dong et al., 2014): three convolutions on the bicubic-enlarged image.

The first deep SR network, and the example of *pre-upsampling*: the LR image
is enlarged by bicubic interpolation first and every layer then runs at the
output's size. Here the enlargement is sisr's MATLAB-exact `matlab_imresize`,
inside the network, so it takes the LR image like every other sisr network
and trains, evaluates and upscales through the same commands.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .bicubic import Bicubic


class SRCNN(nn.Module):
    """Bicubic x s, then patch extraction, non-linear mapping and reconstruction: three convolutions in HR space.

    `kernel_sizes` are the paper's f1-f2-f3 (the name it gives a network, as
    in 9-5-5), `num_filters` and `mapping_filters` its n1 and n2. 9-1-5 with
    64/32 filters is the 2014 paper's base network (8,032 weights for one
    channel), 9-5-5 the larger one it found best (57,184). The paper trained
    on the Y channel with unpadded ("valid") convolutions, so its output was
    16 pixels smaller than its input (12 for 9-1-5); here the convolutions are
    zero-padded ("same") so that the output is exactly `scale` times the LR
    input, as sisr's tiling, evaluation and every other network expect. The
    input stays in [0, 1], as in the paper: no mean is subtracted.
    """

    def __init__(
        self,
        scale: int,
        kernel_sizes: Sequence[int] = (9, 5, 5),
        num_filters: int = 64,
        mapping_filters: int = 32,
        num_channels: int = 3,
    ) -> None:
        super().__init__()
        if len(kernel_sizes) != 3 or any(int(k) % 2 == 0 or int(k) < 1 for k in kernel_sizes):
            raise ValueError(f"SRCNN takes three odd kernel sizes (f1-f2-f3, 'same' padding), not {list(kernel_sizes)}")
        extraction, mapping, reconstruction = (int(k) for k in kernel_sizes)
        self.scale = scale
        self.upsample = Bicubic(scale)
        self.conv1 = nn.Conv2d(num_channels, num_filters, extraction, padding=extraction // 2)
        self.conv2 = nn.Conv2d(num_filters, mapping_filters, mapping, padding=mapping // 2)
        self.conv3 = nn.Conv2d(mapping_filters, num_channels, reconstruction, padding=reconstruction // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.upsample(x)
        return self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))
