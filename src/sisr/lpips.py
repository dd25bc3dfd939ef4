"""LPIPS (Zhang et al. 2018), the VGG variant, as an optional perceptual metric.

"The Unreasonable Effectiveness of Deep Features as a Perceptual Metric":
both images go through VGG16; at five taps (after relu1_2, relu2_2, relu3_3,
relu4_3, relu5_3) each pixel's feature vector is scaled to unit length over
the channels, the two images' vectors are subtracted and squared, a learnt
non-negative 1x1 "lin" layer weighs the channels, the map is averaged over
space and the five numbers are summed. Lower means more alike.

Two published files are needed, both loaded by key name without the `lpips`
package or torchvision:
- torchvision's ImageNet VGG16 (`features.N.weight/bias`), and
- the lpips package's `weights/v0.1/vgg.pth` (`linK.model.1.weight`, (1, C, 1, 1)).

sisr ships neither; they are found by path, environment variable or cache
(`find_lpips_weights`) and downloaded only when asked.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .download import Resource, cache_dir
from .download import download as download_file
from .errors import SisrError
from .models.vgg import read_state_dict

log = logging.getLogger("sisr")

# Convolutions and channels per block: configuration "D" of Simonyan &
# Zisserman (2015), 13 convolutions in 5 blocks, each block ending in a max-pool.
VGG16_BLOCKS: tuple[tuple[int, int], ...] = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
# Indices in torchvision's `vgg16().features` of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
LPIPS_TAP_INDICES: tuple[int, ...] = (3, 8, 15, 22, 29)
LPIPS_TAP_CHANNELS: tuple[int, ...] = (64, 128, 256, 512, 512)

# LPIPS's own input scaling (its `ScalingLayer`), applied to images in [-1, 1]:
# ImageNet's mean and std carried over from [0, 1] to [-1, 1], rounded.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
# Added to the feature norm before dividing (the lpips package's `normalize_tensor`).
NORM_EPS = 1e-10

# torchvision's VGG16_Weights.IMAGENET1K_V1; the file name carries the sha256's
# first 8 hex digits, which the full digest below starts with.
VGG16_WEIGHTS = Resource(
    url="https://download.pytorch.org/models/vgg16-397923af.pth",
    sha256="397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
    filename="vgg16-397923af.pth",
)
# The lpips package's calibrated lin layers, v0.1. Its authors publish no checksum;
# this is the sha256 of lpips/weights/v0.1/vgg.pth in the authors' repository (7289 bytes, the file
# unchanged since commit c33f89e; read from a copy of the repository at 082bb24, 2026-12-06).
LPIPS_LIN_WEIGHTS = Resource(
    url="https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth",
    sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
    filename="lpips-vgg-v0.1.pth",
)
VGG16_ENV_VAR = "SISR_VGG16_WEIGHTS"
LIN_ENV_VAR = "SISR_LPIPS_WEIGHTS"


def vgg16_features(last_index: int = LPIPS_TAP_INDICES[-1]) -> nn.Sequential:
    """torchvision's `vgg16().features`, cut after module `last_index` (relu5_3 by default)."""
    layers: list[nn.Module] = []
    in_channels = 3
    for num_convs, channels in VGG16_BLOCKS:
        for _ in range(num_convs):
            # Not in place: the tapped activations must survive the next layer.
            layers += [nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU()]
            in_channels = channels
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers[: last_index + 1])


def unit_normalise_channels(features: torch.Tensor) -> torch.Tensor:
    """Each pixel's feature vector divided by its length over the channels."""
    norm = features.pow(2).sum(dim=1, keepdim=True).sqrt()
    return features / (norm + NORM_EPS)


class LPIPS(nn.Module):
    """LPIPS-VGG distance between two batches of [0, 1] RGB NCHW images; frozen, always eval.

    `model(sr, hr)` returns one distance per image, shape (N,). Gradients flow
    to the inputs (it can serve as a loss) but never to its own weights.
    """

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.features = vgg16_features()
        self.lins = nn.ParameterList(nn.Parameter(torch.zeros(1, channels, 1, 1)) for channels in LPIPS_TAP_CHANNELS)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        super().train(False)

    @classmethod
    def from_files(cls, vgg16_path: str | os.PathLike, lin_path: str | os.PathLike) -> LPIPS:
        """The metric with torchvision's VGG16 file and the lpips package's `vgg.pth`."""
        metric = cls()
        vgg16_path, lin_path = Path(vgg16_path), Path(lin_path)
        metric.load_vgg16_state_dict(read_state_dict(vgg16_path, "VGG16"), source=str(vgg16_path))
        metric.load_lin_state_dict(read_state_dict(lin_path, "LPIPS lin"), source=str(lin_path))
        log.info("LPIPS-VGG: VGG16 from %s, lin layers from %s", vgg16_path, lin_path)
        return metric

    @classmethod
    def pretrained(
        cls, vgg16: str | os.PathLike | None = None, lin: str | os.PathLike | None = None, *, download: bool = False
    ) -> LPIPS:
        """The metric with the weights `find_lpips_weights` finds."""
        return cls.from_files(*find_lpips_weights(vgg16, lin, download=download))

    def train(self, mode: bool = True) -> LPIPS:
        """Always eval: a metric must not change with its parent's mode."""
        return super().train(False)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        for name, image in (("sr", sr), ("hr", hr)):
            if image.ndim != 4 or image.shape[1] != 3:
                raise ValueError(f"LPIPS expects RGB images of shape (N, 3, H, W); {name} is {tuple(image.shape)}")
        if sr.shape != hr.shape:
            raise ValueError(f"LPIPS compares images of one shape; got {tuple(sr.shape)} and {tuple(hr.shape)}")
        distance = sr.new_zeros(sr.shape[0])
        for tap_sr, tap_hr, lin in zip(self._taps(sr), self._taps(hr), self.lins):
            difference = (unit_normalise_channels(tap_sr) - unit_normalise_channels(tap_hr)).pow(2)
            distance = distance + F.conv2d(difference, lin.to(difference.dtype)).mean(dim=(1, 2, 3))
        return distance

    def _taps(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images * 2 - 1 - self.shift.to(images.dtype)) / self.scale.to(images.dtype)
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in LPIPS_TAP_INDICES:
                taps.append(x)
        return taps

    def load_vgg16_state_dict(self, state: Mapping[str, object], source: str = "state dict") -> None:
        """Take `features.N.*` up to conv5_3 from a torchvision VGG16 state dict, checking keys and shapes."""
        selected = {
            key: _tensor(state, f"features.{key}", own.shape, source, "a torchvision VGG16 state dict")
            for key, own in self.features.state_dict().items()
        }
        self.features.load_state_dict(selected, strict=True)

    def load_lin_state_dict(self, state: Mapping[str, object], source: str = "state dict") -> None:
        """Take `lin0.model.1.weight` ... `lin4.model.1.weight` from the lpips package's file."""
        for index, lin in enumerate(self.lins):
            name = f"lin{index}.model.1.weight"
            tensor = _tensor(state, name, lin.shape, source, "the lpips package's weights/v0.1/vgg.pth")
            if (tensor < 0).any():
                # LPIPS keeps these non-negative so that a distance can never be negative.
                raise SisrError(f"{source}: {name} has negative weights; LPIPS lin weights are non-negative")
            lin.data.copy_(tensor)


def _tensor(state: Mapping[str, object], name: str, shape: torch.Size, source: str, expected: str) -> torch.Tensor:
    tensor = state.get(name)
    if not isinstance(tensor, torch.Tensor):
        raise SisrError(f"{source}: {name} is missing: not {expected}")
    if tensor.shape != shape:
        raise SisrError(f"{source}: {name} has shape {tuple(tensor.shape)}, LPIPS needs {tuple(shape)}")
    return tensor


def cached_lpips_paths() -> tuple[Path, Path]:
    """Where downloaded copies are kept: `<sisr cache>/weights/{vgg16-397923af,lpips-vgg-v0.1}.pth`."""
    folder = cache_dir() / "weights"
    return folder / VGG16_WEIGHTS.filename, folder / LPIPS_LIN_WEIGHTS.filename


def find_lpips_weights(
    vgg16: str | os.PathLike | None = None, lin: str | os.PathLike | None = None, *, download: bool = False
) -> tuple[Path, Path]:
    """(VGG16 file, lin file) for LPIPS; each from its argument, else its env var, else the cache.

    A path given explicitly (argument or `$SISR_VGG16_WEIGHTS` / `$SISR_LPIPS_WEIGHTS`)
    must exist. Otherwise the cached copy is used, or downloaded into the cache
    when `download` is true; without it a missing file is an error that says
    where to get it and where to put it.
    """
    cached_vgg16, cached_lin = cached_lpips_paths()
    return (
        _find_one(vgg16, VGG16_ENV_VAR, VGG16_WEIGHTS, cached_vgg16, "VGG16", download),
        _find_one(lin, LIN_ENV_VAR, LPIPS_LIN_WEIGHTS, cached_lin, "lin-layer", download),
    )


def _find_one(
    given: str | os.PathLike | None, env_var: str, resource: Resource, cached: Path, what: str, download: bool
) -> Path:
    if given is not None and str(given):
        path = Path(given).expanduser()
        if not path.is_file():
            raise SisrError(f"{path}: {what} weight file for LPIPS not found (download {resource.url})")
        return path
    if from_env := os.environ.get(env_var):
        path = Path(from_env).expanduser()
        if not path.is_file():
            raise SisrError(f"${env_var}={from_env}: {what} weight file for LPIPS not found (download {resource.url})")
        return path
    if not download:
        if cached.is_file():
            return cached
        raise SisrError(
            f"{what} weights for LPIPS are not available and downloading is off: download "
            f"{resource.url} and put it at {cached}, or set ${env_var} to its path"
        )
    try:
        return download_file(resource.url, cached, resource.sha256, progress=True)
    except SisrError as error:
        raise SisrError(
            f"{what} weights for LPIPS could not be fetched: {error} Or set ${env_var} to the path of a copy."
        ) from None


def lpips_weights_available(vgg16: str | os.PathLike | None = None, lin: str | os.PathLike | None = None) -> bool:
    """True when both files can be found locally (nothing is downloaded)."""
    try:
        find_lpips_weights(vgg16, lin, download=False)
    except SisrError:
        return False
    return True
