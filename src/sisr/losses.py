"""Training losses: pixel, perceptual (VGG content) and adversarial.

Pixel losses compare the network's output with the HR patch directly, both as
[0, 1] tensors. EDSR and WDSR train with L1 (the EDSR paper found it converges
better than L2 for PSNR); SRResNet, pre-trained as SRGAN's generator, with MSE.

SRGAN's perceptual loss (Ledig et al. 2017) replaces the pixel MSE by an MSE
between VGG19 feature maps, which rewards textures over the blurry mean that
pixel losses favour, and adds 1e-3 x the generator's adversarial loss. The
adversarial losses work on logits with BCE-with-logits: a saturated
discriminator (logits of +-100) gives finite losses and gradients, where
log(sigmoid(x)) would give -inf.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .errors import SisrError
from .models.vgg import VGG19FeatureExtractor

PixelLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
PIXEL_LOSSES: dict[str, PixelLoss] = {"l1": F.l1_loss, "l2": F.mse_loss, "mse": F.mse_loss}


def pixel_loss(name: str) -> PixelLoss:
    """The mean-reduced pixel loss called `name` ("l1", "l2" or its alias "mse")."""
    key = name.strip().lower()
    if key not in PIXEL_LOSSES:
        raise SisrError(f"unknown loss {name!r}; known: {', '.join(PIXEL_LOSSES)}")
    return PIXEL_LOSSES[key]


# SRGAN rescales the VGG features by 1/12.75 so that the content loss is of
# the same order as the pixel MSE it replaces (the reference implementation
# divides both feature maps by 12.75 before the MSE).
SRGAN_FEATURE_SCALE = 1 / 12.75
SRGAN_ADVERSARIAL_WEIGHT = 1e-3


class ContentLoss(nn.Module):
    """MSE between the scaled VGG19 features of the SR and the HR image ([0, 1] RGB NCHW).

    `extractor` replaces the pretrained VGG19 (any module mapping images to
    features; tests use small ones); `layer`, `before_activation`, `weights`
    and `download` are then unused. The HR features carry no gradient: HR is
    the target, and computing them without a graph saves memory.
    """

    def __init__(
        self,
        layer: str = "vgg54",
        before_activation: bool = False,
        feature_scale: float = SRGAN_FEATURE_SCALE,
        *,
        extractor: nn.Module | None = None,
        weights: str | os.PathLike | None = None,
        download: bool = True,
    ) -> None:
        super().__init__()
        if extractor is None:
            extractor = VGG19FeatureExtractor.pretrained(layer, before_activation, weights, download=download)
        self.extractor = extractor
        self.feature_scale = float(feature_scale)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        if sr.shape != hr.shape:
            raise ValueError(f"content loss: SR {tuple(sr.shape)} and HR {tuple(hr.shape)} differ in shape")
        sr_features = self.extractor(sr) * self.feature_scale
        with torch.no_grad():
            hr_features = self.extractor(hr) * self.feature_scale
        # In float32 even under autocast: a half-precision sum of squares overflows.
        return F.mse_loss(sr_features.float(), hr_features.float())


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(G(lr)): the generator is rewarded when its images are called real (label 1)."""
    return F.binary_cross_entropy_with_logits(fake_logits.float(), torch.ones_like(fake_logits, dtype=torch.float32))


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """BCE(real, 1) + BCE(fake, 0), each a batch mean, as in the reference implementation."""
    real = F.binary_cross_entropy_with_logits(real_logits.float(), torch.ones_like(real_logits, dtype=torch.float32))
    fake = F.binary_cross_entropy_with_logits(fake_logits.float(), torch.zeros_like(fake_logits, dtype=torch.float32))
    return real + fake


class PerceptualLoss(nn.Module):
    """The generator's loss: content + `adversarial_weight` x adversarial [+ `pixel_weight` x pixel].

    SRGAN uses content (vgg54) + 1e-3 x adversarial; ESRGAN adds an L1 pixel
    term (weight 1e-2) and takes features before activation. `forward`
    returns the total (to back-propagate) and the unweighted parts, detached,
    for logging. The VGG19 inside is frozen; build the generator's optimiser
    from the generator's parameters, not from this module's.
    """

    def __init__(
        self,
        content: ContentLoss | None = None,
        adversarial_weight: float = SRGAN_ADVERSARIAL_WEIGHT,
        pixel_weight: float = 0.0,
        pixel_loss: str = "l1",
    ) -> None:
        super().__init__()
        if pixel_loss not in PIXEL_LOSSES:
            raise SisrError(f"pixel loss {pixel_loss!r}: expected one of {', '.join(PIXEL_LOSSES)}")
        if adversarial_weight < 0 or pixel_weight < 0:
            raise SisrError(f"loss weights must be >= 0, got adversarial {adversarial_weight}, pixel {pixel_weight}")
        self.content = ContentLoss() if content is None else content
        self.adversarial_weight = float(adversarial_weight)
        self.pixel_weight = float(pixel_weight)
        self.pixel_loss = pixel_loss

    def forward(
        self, sr: torch.Tensor, hr: torch.Tensor, fake_logits: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`fake_logits` are the discriminator's logits for `sr` (with the graph through `sr`)."""
        content = self.content(sr, hr)
        adversarial = generator_adversarial_loss(fake_logits)
        total = content + self.adversarial_weight * adversarial
        parts = {"content": content.detach(), "adversarial": adversarial.detach()}
        if self.pixel_weight > 0:
            pixel = PIXEL_LOSSES[self.pixel_loss](sr.float(), hr.float())
            total = total + self.pixel_weight * pixel
            parts[f"pixel_{self.pixel_loss}"] = pixel.detach()
        parts["total"] = total.detach()
        return total, parts
