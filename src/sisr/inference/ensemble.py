"""Self-ensemble (EDSR's "+"): average the outputs for the 8 flips and rotations of the input."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from ..model import SRModel

# The 8 symmetries of the square: an optional transpose, then flips of none, one or both axes.
TRANSFORMS = [(transpose, flips) for transpose in (False, True) for flips in ((), (-1,), (-2,), (-2, -1))]


class SelfEnsemble(nn.Module):
    """Wraps a network; costs exactly 8 forward passes and one running sum.

    Each of the 8 dihedral transforms is applied to the input, the network run,
    and the inverse transform applied to the output; the mean is returned. It is
    a module, so tiling, precision and devices treat it as any network. Besides
    the passes, it holds one output-sized sum and copies only the (3-channel)
    inputs and outputs, never a feature map.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.scale = getattr(model, "scale", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A transposed view of a channels-last input is no longer channels-last;
        # the network's fast paths want it back in that layout (a copy of the small input).
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else None
        total: torch.Tensor | None = None
        for transpose, flips in TRANSFORMS:
            y = x.transpose(-2, -1) if transpose else x
            y = torch.flip(y, flips) if flips else y
            if layout is not None:
                y = y.contiguous(memory_format=layout)
            y = self.model(y)
            y = torch.flip(y, flips) if flips else y
            y = y.transpose(-2, -1) if transpose else y
            if total is None:
                total = y.clone()  # the network's own output may be a view it still uses
            else:
                total += y
        assert total is not None  # TRANSFORMS is not empty
        return total / 8


def self_ensemble(model: SRModel) -> SRModel:
    """`model` with its network wrapped in `SelfEnsemble`, named with EDSR's "+"."""
    return SRModel(SelfEnsemble(model.network), replace(model.info, name=model.name + "+"))
