"""An exponential moving average of the weights, an optional by-product of training.

The average of the last few thousand steps' weights is often a little better
than the weights of the last step (the noise of the final steps averages out);
when it is on, validation, `best` and `last` use it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """`average = decay * average + (1 - decay) * weights`, after every optimizer step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards `model`'s current weights."""
        for average, current in zip(self.model.parameters(), model.parameters()):
            average.lerp_(current.detach(), 1.0 - self.decay)
        for average_buffer, buffer in zip(self.model.buffers(), model.buffers()):
            average_buffer.copy_(buffer)  # running statistics (batch norm) follow the model

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights, for the checkpoint."""
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state, strict=True)
