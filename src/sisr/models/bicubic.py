"""MATLAB-style bicubic upsampling wrapped as a model: the classic baseline."""

from __future__ import annotations

import torch
from torch import nn


class Bicubic(nn.Module):
    """Upsample with `matlab_imresize`, so the baseline goes through every code path a network does."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from ..imaging import matlab_imresize

        return matlab_imresize(x, scale=self.scale)
