"""One weight update: optimizer, learning-rate schedule, gradient scaling and clipping.

The schedule is the papers' step decay: the rate is multiplied by `gamma` at
each milestone (EDSR and WDSR: halved at step 200k of 300k), stepped once per
training step. fp16 needs a gradient scaler (small gradients underflow in
fp16); bf16 and fp32 do not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from .config import TrainConfig


class WeightUpdate:
    """Adam/AdamW + MultiStepLR (+ GradScaler for fp16, + gradient-norm clipping)."""

    def __init__(self, config: TrainConfig, parameters: Iterable[nn.Parameter]) -> None:
        optim = config.optim
        self.parameters = list(parameters)
        kind = torch.optim.AdamW if optim.name == "adamw" else torch.optim.Adam
        self.optimizer = kind(
            self.parameters,
            lr=optim.lr,
            betas=(optim.betas[0], optim.betas[1]),
            eps=optim.eps,
            weight_decay=optim.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, list(optim.milestones), optim.gamma)
        self.scaler = torch.amp.GradScaler("cuda") if config.train.precision == "fp16" else None
        self.grad_clip = optim.grad_clip

    @property
    def learning_rate(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def apply(self, loss: torch.Tensor) -> None:
        """Backward from `loss`, then one optimizer and one schedule step."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if self.grad_clip:
                self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
                torch.nn.utils.clip_grad_norm_(self.parameters, self.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            if self.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.parameters, self.grad_clip)
            self.optimizer.step()
        self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
