"""The model object: a network together with a typed description of it.

`sisr.load_model` (any name `--model` takes) and `sisr.create_model` (a
fresh preset) return an `SRModel`: the plain `nn.Module` as `.network` and a
`ModelInfo` that says what it is (architecture and arguments, scale, where it
came from, its licence, the precisions it runs in, its receptive field).
Nothing is attached to the module itself. `SRModel.prepare` makes the
inference copy (`PreparedModel`) that `sisr.upscale` runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .errors import SisrError
from .models.spec import ModelSpec

if TYPE_CHECKING:
    from .inference.prepared import PreparedModel

# Where a model came from: a bundled default, a weight file, the pretrained zoo,
# a fresh preset, the bicubic baseline, or a network the caller built.
SOURCES = ("bundled", "file", "zoo", "preset", "bicubic", "module")
ALL_PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class ModelInfo:
    """What a network is, for messages, tiling and precision choices."""

    name: str
    scale: int
    spec: ModelSpec | None = None  # None for a network sisr did not build
    source: str = "module"
    path: Path | None = None
    licence: str | None = None
    precisions: tuple[str, ...] = ALL_PRECISIONS
    receptive_field: int | None = None  # LR pixels of context for exact tiling; None: unknown, no auto tiling
    metadata: Mapping[str, str] = field(default_factory=dict)  # a weight file's free-form strings

    @property
    def arch(self) -> str | None:
        return None if self.spec is None else self.spec.arch

    def summary(self) -> str:
        """One line: name, architecture and scale, e.g. `default-x4 (wdsr, x4)`."""
        kind = self.arch or "network"
        return f"{self.name} ({kind}, x{self.scale})"


def network_scale(network: nn.Module) -> int:
    scale = getattr(network, "scale", None)
    if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
        raise SisrError(f"{type(network).__name__} has no integer `scale` attribute: sisr cannot tell its output size")
    return scale


def _receptive_field(network: nn.Module) -> int | None:
    from .inference.receptive_field import receptive_field

    try:
        return receptive_field(network)
    except SisrError:
        return None


class SRModel:
    """A super-resolution network and its `ModelInfo`. Not an `nn.Module`: `.network` is.

    Calling it runs the network on a float NCHW batch in [0, 1]; `to`, `eval`
    and `train` act on the network and return the model, so calls chain.
    """

    def __init__(self, network: nn.Module, info: ModelInfo) -> None:
        self.network = network
        self.info = info

    @classmethod
    def from_network(
        cls,
        network: nn.Module,
        *,
        name: str | None = None,
        spec: ModelSpec | None = None,
        source: str = "module",
        path: str | os.PathLike[str] | None = None,
        licence: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> SRModel:
        """Describe `network`: its scale and receptive field are read off the module itself."""
        if source not in SOURCES:
            raise ValueError(f"source {source!r}: expected one of {', '.join(SOURCES)}")
        if isinstance(network, SRModel):
            raise TypeError("from_network takes an nn.Module; this is an SRModel already")
        scale = network_scale(network)
        precisions = ("fp32",) if spec is not None and spec.arch == "bicubic" else ALL_PRECISIONS
        info = ModelInfo(
            name=name or (spec.arch if spec is not None else type(network).__name__),
            scale=scale,
            spec=spec,
            source=source,
            path=None if path is None else Path(path),
            licence=licence,
            precisions=precisions,
            receptive_field=_receptive_field(network),
            metadata=dict(metadata or {}),
        )
        return cls(network, info)

    @property
    def scale(self) -> int:
        return self.info.scale

    @property
    def spec(self) -> ModelSpec | None:
        return self.info.spec

    @property
    def name(self) -> str:
        return self.info.name

    def renamed(self, name: str) -> SRModel:
        """The same network under another display name (the same module, not a copy)."""
        return SRModel(self.network, replace(self.info, name=name))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def to(self, device: str | torch.device) -> SRModel:
        self.network.to(device)
        return self

    def eval(self) -> SRModel:
        self.network.eval()
        return self

    def train(self, mode: bool = True) -> SRModel:
        self.network.train(mode)
        return self

    def prepare(
        self,
        precision: str = "auto",
        device: str | torch.device = "auto",
        *,
        compile: bool = False,
        fuse: bool = True,
        native_kernels: bool | None = None,
        pinned_memory: bool = True,
    ) -> PreparedModel:
        """The inference copy for `precision` and `device` (see `sisr.inference.prepare_model`)."""
        from .inference.prepared import prepare_model

        return prepare_model(
            self,
            precision,
            device,
            compile=compile,
            fuse=fuse,
            native_kernels=native_kernels,
            pinned_memory=pinned_memory,
        )

    def __repr__(self) -> str:
        return f"SRModel({self.info.summary()}, source={self.info.source})"


def create_model(name: str, **overrides: Any) -> SRModel:
    """A freshly initialised network from a preset, e.g. `create_model("wdsr-b-16-x4", num_blocks=8)`."""
    from .models.registry import build_model, preset_spec

    spec = preset_spec(name, **overrides)
    return SRModel.from_network(build_model(spec), name=name, spec=spec, source="preset")


def as_model(model: SRModel | nn.Module) -> SRModel:
    """An `SRModel` for a model or a bare network (described as well as the module allows)."""
    if isinstance(model, SRModel):
        return model
    if isinstance(model, nn.Module):
        return SRModel.from_network(model)
    raise SisrError(f"expected a model (sisr.load_model) or an nn.Module, not a {type(model).__name__}")
