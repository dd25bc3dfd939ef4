"""Training checkpoints: everything needed to continue a run bit for bit.

A checkpoint holds the network, optimizer, scheduler, gradient scaler and EMA
states, the step, the data position (samples consumed; the order itself is a
pure function of the seed), and every random generator's state. It is written
atomically, so a kill during the write leaves the previous checkpoint intact,
and read with `weights_only=True`: a checkpoint is data, never code.
"""

from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from ..errors import SisrError
from ..files import atomic_write
from ..models import ModelSpec

FORMAT = "sisr-train-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"


def capture_rng_state() -> dict[str, Any]:
    """torch, CUDA, numpy and Python generator states, as plain tensors, lists and ints."""
    numpy_state = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state(legacy=True))
    kind, keys, position, has_gauss, cached_gauss = numpy_state
    version, python_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gauss),
        },
        "python": {"version": version, "state": list(python_state), "gauss_next": gauss_next},
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back the generator states `capture_rng_state` took."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss_next"]))


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write `state` (tensors, numbers, strings, lists, dicts) atomically, replacing the last one."""
    path = Path(path)
    with atomic_write(path, "wb", overwrite=True) as handle:
        torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **state}, handle)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The contents of a checkpoint file, checked to be one of this format and version."""
    path = Path(path)
    if not path.is_file():
        raise SisrError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # unpickling raises many types for damaged or foreign files
        raise SisrError(f"{path}: not a readable training checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SisrError(f"{path}: not a sisr training checkpoint")
    if state.get("format_version") != FORMAT_VERSION:
        raise SisrError(f"{path}: checkpoint format {state.get('format_version')}, this sisr reads {FORMAT_VERSION}")
    return state


def spec_state(spec: ModelSpec) -> dict[str, Any]:
    """A spec as checkpoints store it: plain dicts, which `weights_only` loading accepts."""
    return dataclasses.asdict(spec)


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read back for resuming: its contents and the file they came from (for messages)."""

    state: dict[str, Any]
    path: Path

    def check_network(self, spec: ModelSpec) -> None:
        """Refuse to resume a checkpoint of another architecture (or other arguments) with this network."""
        saved = self.state.get("model_spec") or {}
        if saved.get("arch") != spec.arch or saved.get("args") != spec.args:
            config = self.path.parent / "config.toml"
            hint = f"; `sisr train {config}` continues that run" if config.is_file() else ""
            raise SisrError(
                f"{self.path}: the checkpoint is of {saved.get('arch')} {saved.get('args')}, but the configuration "
                f"builds {spec.arch} {spec.args}; use another --out folder, or --fresh to start over there{hint}"
            )
