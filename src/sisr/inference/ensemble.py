"""Self-ensemble (EDSR's "+"): average the outputs for the 8 flips and rotations of the input."""

from __future__ import annotations

import torch
from torch import nn


class SelfEnsemble(nn.Module):
    """Wraps a network; costs exactly 8 forward passes and one running sum.

    Each of the 8 dihedral transforms is applied to the input, the network run,
    and the inverse transform applied to the output; the mean is returned. It is
    a module, so tiling, precision and devices treat it as any network.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.scale = getattr(model, "scale", None)
        spec = getattr(model, "sisr_spec", None)
        if spec is not None:
            self.sisr_spec = spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for transpose in (False, True):
            for flips in ((), (-1,), (-2,), (-2, -1)):
                y = x.transpose(-2, -1) if transpose else x
                y = torch.flip(y, flips) if flips else y
                y = self.model(y)
                y = torch.flip(y, flips) if flips else y
                y = y.transpose(-2, -1) if transpose else y
                total = y if total is None else total + y
        return total / 8
