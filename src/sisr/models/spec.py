"""What a network is, independent of its weights: an architecture name and its constructor's arguments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelSpec:
    """An architecture (a key of `ARCHITECTURES`) and the arguments that build it.

    Weight files record it, so a file rebuilds its own network; a preset is a
    named spec.
    """

    arch: str
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def scale(self) -> int | None:
        scale = self.args.get("scale")
        return int(scale) if scale is not None else None
