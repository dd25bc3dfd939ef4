"""Training losses, chosen by name in the training config.

Pixel losses compare the network's output with the HR patch directly, both as
[0, 1] tensors. EDSR and WDSR train with L1 (the EDSR paper found it converges
better than L2 for PSNR); SRResNet, pre-trained as SRGAN's generator, with MSE.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .errors import SisrError

PIXEL_LOSSES: dict[str, Callable[[], nn.Module]] = {
    "l1": nn.L1Loss,
    "l2": nn.MSELoss,
    "mse": nn.MSELoss,
}


def pixel_loss(name: str) -> nn.Module:
    """The mean-reduced pixel loss called `name` ("l1", "l2" or its alias "mse")."""
    key = name.strip().lower()
    if key not in PIXEL_LOSSES:
        raise SisrError(f"unknown loss {name!r}; known: {', '.join(PIXEL_LOSSES)}")
    return PIXEL_LOSSES[key]()
