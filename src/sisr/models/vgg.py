"""VGG19 features for the perceptual (content) loss of SRGAN, without torchvision.

The `features` stack has the module indices of torchvision's `vgg19().features`,
so its published ImageNet weights (`features.N.weight` / `features.N.bias`)
load by key name. Indices of the layers SR losses use:

    conv1_1  0    relu1_1  1      pool1  4
    conv2_2  7    relu2_2  8      pool2  9     ("vgg22": SRGAN's shallow loss)
    conv3_4 16    relu3_4 17      pool3 18
    conv4_4 25    relu4_4 26      pool4 27
    conv5_4 34    relu5_4 35      pool5 36     ("vgg54": SRGAN's loss)

SRGAN's "VGG_i,j" is the j-th convolution (after its ReLU) before the i-th
max-pool; ESRGAN takes the convolution's output before the ReLU instead
(`before_activation=True`), which keeps the negative responses the ReLU
would throw away. Only the layers up to the one asked for are built.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..download import Resource, cache_dir
from ..download import download as download_file
from ..errors import SisrError

log = logging.getLogger("sisr")

# Convolutions per block, channels per block: the "E" configuration of
# Simonyan & Zisserman (2015), 16 convolutions in 5 blocks, each block ending
# in a 2x2 max-pool.
VGG19_BLOCKS: tuple[tuple[int, int], ...] = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision's VGG19_Weights.IMAGENET1K_V1. Its file name carries the first
# 8 hex digits of the sha256; the full digest (and the size, 574,673,361
# bytes) are those recorded by several independent projects' checksum lists.
VGG19_WEIGHTS = Resource(
    url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
    sha256="dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44",
    filename="vgg19-dcbb9e9d.pth",
)
WEIGHTS_ENV_VAR = "SISR_VGG19_WEIGHTS"

_LAYER_PATTERN = re.compile(r"^vgg(\d)(\d)$")


def _layer_table() -> dict[str, int]:
    """`conv{block}_{i}`, `relu{block}_{i}` and `pool{block}` -> index in `features`."""
    table: dict[str, int] = {}
    index = 0
    for block, (num_convs, _) in enumerate(VGG19_BLOCKS, start=1):
        for conv in range(1, num_convs + 1):
            table[f"conv{block}_{conv}"] = index
            table[f"relu{block}_{conv}"] = index + 1
            index += 2
        table[f"pool{block}"] = index
        index += 1
    return table


VGG19_LAYER_INDICES: dict[str, int] = _layer_table()


def feature_layer_index(layer: str, before_activation: bool = False) -> int:
    """The index in `features` whose output is SRGAN's feature map `layer` ("vgg22", "vgg54", ...)."""
    match = _LAYER_PATTERN.match(layer)
    block, conv = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if not (1 <= block <= len(VGG19_BLOCKS) and 1 <= conv <= VGG19_BLOCKS[block - 1][0]):
        raise SisrError(
            f"VGG layer {layer!r}: expected 'vgg<block><conv>' naming a VGG19 convolution, "
            f"such as 'vgg22' or 'vgg54' (blocks 1-2 have 2 convolutions, blocks 3-5 have 4)"
        )
    kind = "conv" if before_activation else "relu"
    return VGG19_LAYER_INDICES[f"{kind}{block}_{conv}"]


def vgg19_features(last_index: int) -> nn.Sequential:
    """torchvision's `vgg19().features`, cut after module `last_index`."""
    layers: list[nn.Module] = []
    in_channels = 3
    for num_convs, channels in VGG19_BLOCKS:
        for _ in range(num_convs):
            layers += [nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
            in_channels = channels
        layers.append(nn.MaxPool2d(2, 2))
        if len(layers) > last_index:  # deeper layers would only cost memory and start-up time
            break
    del layers[last_index + 1 :]
    return nn.Sequential(*layers)


class VGG19FeatureExtractor(nn.Module):
    """A frozen VGG19 up to one layer; takes [0, 1] RGB NCHW images.

    ImageNet normalisation happens inside, so callers pass the same images
    the SR networks produce. It stays in eval mode and without gradients for
    its weights even when a parent module is trained: it is a fixed measure,
    not a network being learnt (the input still receives gradients).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, layer: str = "vgg54", before_activation: bool = False) -> None:
        super().__init__()
        self.layer = layer
        self.before_activation = before_activation
        self.features = vgg19_features(feature_layer_index(layer, before_activation))
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        # Not persistent: the state dict holds exactly torchvision's keys.
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.requires_grad_(False)
        super().train(False)

    @classmethod
    def pretrained(
        cls,
        layer: str = "vgg54",
        before_activation: bool = False,
        weights: str | os.PathLike | None = None,
        *,
        download: bool = True,
    ) -> VGG19FeatureExtractor:
        """The extractor with torchvision's ImageNet weights (see `find_vgg19_weights`)."""
        extractor = cls(layer, before_activation)
        extractor.load_torchvision_weights(find_vgg19_weights(weights, download=download))
        return extractor

    def train(self, mode: bool = True) -> VGG19FeatureExtractor:
        """Always eval: a loss network must not change with the generator's mode."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"VGG19 expects RGB images of shape (N, 3, H, W), got {tuple(x.shape)}")
        return self.features((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))

    def load_torchvision_weights(self, path: str | os.PathLike) -> None:
        """Load a torchvision-layout VGG19 file (`features.N.*`; `classifier.*` is ignored)."""
        path = Path(path)
        self.load_torchvision_state_dict(read_state_dict(path), source=str(path))
        log.info(
            "VGG19 %s%s: weights from %s", self.layer, " (before activation)" if self.before_activation else "", path
        )

    def load_torchvision_state_dict(self, state: Mapping[str, object], source: str = "state dict") -> None:
        """Take the tensors this extractor needs from `state`, checking every key and shape."""
        needed = self.features.state_dict()
        selected: dict[str, torch.Tensor] = {}
        for key, own in needed.items():
            name = f"features.{key}"
            tensor = state.get(name)
            if not isinstance(tensor, torch.Tensor):
                raise SisrError(
                    f"{source}: {name} is missing: not a torchvision VGG19 state dict "
                    f"(expected features.N.weight/bias for N up to {len(self.features) - 1})"
                )
            if tensor.shape != own.shape:
                raise SisrError(
                    f"{source}: {name} has shape {tuple(tensor.shape)}, VGG19 needs {tuple(own.shape)} "
                    f"(a different VGG, or one with batch norm?)"
                )
            selected[key] = tensor
        self.features.load_state_dict(selected, strict=True)


def read_state_dict(path: Path, what: str = "VGG19") -> Mapping[str, object]:
    """A torch state dict from `path`, read without executing pickled code; `what` names it in errors."""
    if not path.is_file():
        raise SisrError(f"{path}: {what} weight file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise SisrError(f"{path}: not a readable PyTorch state dict ({error})") from None
    if not isinstance(state, Mapping):
        raise SisrError(f"{path}: holds a {type(state).__name__}, not a state dict of named tensors")
    return state


def cached_weights_path() -> Path:
    """Where the downloaded VGG19 file is kept: `<sisr cache>/weights/vgg19-dcbb9e9d.pth`."""
    return cache_dir() / "weights" / VGG19_WEIGHTS.filename


def find_vgg19_weights(weights: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """The VGG19 weight file to use, downloading it into the cache if need be.

    In order: `weights` (a path), `$SISR_VGG19_WEIGHTS`, the cached copy
    (verified against the published sha256), else a download into the cache.
    A path given explicitly is used as it is (any torchvision-layout VGG19);
    a missing one is an error rather than a silent fallback to the cache.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise SisrError(f"{path}: VGG19 weight file not found")
        return path
    if from_env := os.environ.get(WEIGHTS_ENV_VAR):
        path = Path(from_env).expanduser()
        if not path.is_file():
            raise SisrError(f"${WEIGHTS_ENV_VAR}={from_env}: VGG19 weight file not found")
        return path
    dest = cached_weights_path()
    if not download and not dest.is_file():
        raise SisrError(
            f"VGG19 weights for the perceptual loss are not available and downloading is off: "
            f"download {VGG19_WEIGHTS.url} and put it at {dest}, or set ${WEIGHTS_ENV_VAR} to its path"
        )
    if not download:
        return dest
    try:
        return download_file(VGG19_WEIGHTS.url, dest, VGG19_WEIGHTS.sha256, progress=True)
    except SisrError as error:
        raise SisrError(
            f"VGG19 weights for the perceptual loss could not be fetched: {error} "
            f"Or set ${WEIGHTS_ENV_VAR} to the path of a copy of {VGG19_WEIGHTS.filename}."
        ) from None
