"""What an importer reads off another implementation's weight file: the types the importers and `convert` share.

A leaf module, so that `convert` can call the importers and the importers can
return these without importing `convert` back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class ImportedWeights:
    """What an importer read off a foreign file: a sisr architecture with its state dict."""

    arch: str
    args: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    source_format: str
    # Assumptions the file could not settle (e.g. a residual scaling convention).
    notes: list[str] = field(default_factory=list)


def res_scale_convention(num_filters: int) -> tuple[float, str]:
    """Residual scaling for an EDSR file: it is not stored, so follow the published models.

    The EDSR paper trains its large model (256 filters) with 0.1 and the
    baseline (64 filters) with 1.0; the official and BasicSR releases do the same.
    """
    res_scale = 0.1 if num_filters >= 256 else 1.0
    return res_scale, f"res_scale {res_scale} assumed for {num_filters} filters (EDSR paper convention)"
