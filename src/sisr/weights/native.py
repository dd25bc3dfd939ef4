"""sisr's own weight files: safetensors that say which network they belong to.

The metadata holds the architecture, its arguments, the scale and a format
version, so `load_model(path)` rebuilds the network with nothing else given.
Loading is strict: every tensor must be there with the right shape.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import SisrError
from ..files import atomic_path
from ..model import SRModel
from ..models import ModelSpec, build_model

FORMAT = "sisr"
FORMAT_VERSION = "1"


def save_model(
    model: SRModel | nn.Module,
    path: str | os.PathLike[str],
    *,
    spec: ModelSpec | None = None,
    dtype: torch.dtype | None = None,
    metadata: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `model` as a self-describing safetensors file, atomically.

    An `SRModel` records its own spec; a bare network needs `spec=`.
    `dtype=torch.float16` halves the file; loading casts back to float32.
    `metadata` adds free-form strings (source, training command, licence).
    """
    from safetensors.torch import save_file

    network = model.network if isinstance(model, SRModel) else model
    if spec is None and isinstance(model, SRModel):
        spec = model.spec
    if spec is None:
        raise SisrError(
            f"{type(network).__name__}: its architecture is unknown, so the file could not rebuild it; "
            "pass spec=ModelSpec(arch, args) to save_model"
        )
    tensors = {}
    for key, value in network.state_dict().items():
        value = value.detach().to("cpu")
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value.contiguous()
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": spec.arch,
        "args": json.dumps(spec.args, sort_keys=True),
        "scale": str(spec.args.get("scale", "")),
        **(metadata or {}),
    }
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


def read_weight_file(path: str | os.PathLike[str]) -> tuple[ModelSpec, dict[str, torch.Tensor], dict[str, str]]:
    """(spec, tensors, metadata) of a sisr weight file, with errors that name the file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise SisrError(f"{path}: weight file not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as error:  # safetensors raises several types for a bad header
        raise SisrError(
            f"{path}: not a safetensors weight file ({error}); "
            "weights from other implementations are imported with `sisr convert`"
        ) from None
    if metadata.get("format") != FORMAT:
        raise SisrError(
            f"{path}: a safetensors file without sisr metadata (no architecture recorded); "
            "import it with `sisr convert` or save it with sisr.save_model"
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        raise SisrError(
            f"{path}: sisr weight format version {metadata.get('format_version')!r}; this sisr reads {FORMAT_VERSION}"
        )
    try:
        spec = ModelSpec(metadata["arch"], json.loads(metadata["args"]))
    except (KeyError, json.JSONDecodeError) as error:
        raise SisrError(f"{path}: damaged sisr metadata ({error})") from None
    return spec, tensors, metadata


def load_state_dict_strict(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict that refuses partial matches and says exactly what differs."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = [
        f"{key}: file {tuple(tensors[key].shape)}, model {tuple(expected[key].shape)}"
        for key in expected
        if key in tensors and tensors[key].shape != expected[key].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
    if mismatched:
        problems.append(f"shape mismatch {'; '.join(mismatched[:5])}{' ...' if len(mismatched) > 5 else ''}")
    if problems:
        raise SisrError(f"{source}: weights do not fit {type(model).__name__}: " + " | ".join(problems))
    model.load_state_dict(tensors, strict=True)


# Keys of a sisr file's metadata that describe the format, not the network's history.
FORMAT_KEYS = ("format", "format_version", "arch", "args", "scale")


def load_weight_file(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    *,
    name: str | None = None,
    source: str = "file",
    licence: str | None = None,
) -> SRModel:
    """The network a sisr weight file describes, with its weights, in eval mode."""
    spec, tensors, metadata = read_weight_file(path)
    if spec.scale is None:
        raise SisrError(f"{path}: weights of a {spec.arch} network, not of a super-resolution network")
    network = build_model(spec)
    load_state_dict_strict(network, tensors, str(path))
    network.to(device).eval()
    return SRModel.from_network(
        network,
        name=name or Path(path).name,
        spec=spec,
        source=source,
        path=path,
        licence=licence or metadata.get("licence"),
        metadata=metadata,
    )
