"""Export a sisr network for runtimes without sisr: ONNX and TorchScript.

Both take [0, 1] RGB NCHW float32 and return the upscaled image in the same
units, exactly as the sisr model's forward (normalisation included, no clamp).
Weight normalization is folded into plain convolution kernels first: it only
matters for training, and a runtime should not recompute norms on every call.

ONNX uses PyTorch's `torch.export`-based exporter (the default since 2.9;
the TorchScript-based one is deprecated), which needs the `onnx` and
`onnxscript` packages: `pip install 'sisr[onnx]'`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ..errors import SisrError
from ..files import atomic_path, check_writable
from ..model import SRModel, as_model
from ..models.common import fold_weight_norm

INPUT_NAME = "lr"
OUTPUT_NAME = "sr"
# Traced at this size; batch, height and width are dynamic in the exported graph.
_EXAMPLE_SIZE = 24


def prepare_for_export(model: SRModel | nn.Module) -> nn.Module:
    """CPU float32 eval-mode copy of the network with weight norm folded."""
    return fold_weight_norm(as_model(model).network).to("cpu", torch.float32).eval()


def _example(model: nn.Module) -> torch.Tensor:
    channels = next((m.in_channels for m in model.modules() if isinstance(m, nn.Conv2d)), 3)
    return torch.rand(1, channels, _EXAMPLE_SIZE, _EXAMPLE_SIZE + 4)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Hide the exporters' deprecation warnings and notes (e.g. 'torchvision is not installed')."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _sisr_metadata(model: SRModel) -> dict[str, str]:
    """What a consumer of the exported file needs to know: input units, scale, sisr's description."""
    metadata = {"sisr_input": "RGB float32 NCHW in [0, 1]", "sisr_scale": str(model.scale)}
    if model.spec is not None:
        metadata |= {"sisr_arch": model.spec.arch, "sisr_args": json.dumps(model.spec.args, sort_keys=True)}
    return metadata


def export_onnx(
    model: SRModel | nn.Module, path: str | os.PathLike, *, opset: int | None = None, overwrite: bool = False
) -> Path:
    """Write `model` as one self-contained ONNX file with dynamic batch, height and width.

    `opset=None` takes the exporter's default (opset 20 in PyTorch 2.13).
    """
    path = check_writable(path, overwrite)  # before the slow export, not after
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise SisrError(
            f"ONNX export needs the onnx and onnxscript packages ({error.name} is missing): pip install 'sisr[onnx]'"
        ) from None
    model = as_model(model)
    prepared = prepare_for_export(model)
    dynamic = torch.export.Dim.DYNAMIC
    with _quiet_exporter(), torch.no_grad():
        try:
            program = torch.onnx.export(
                prepared,
                (_example(prepared),),
                None,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: dynamic, 2: dynamic, 3: dynamic},),
                opset_version=opset,
                verbose=False,
                external_data=False,
            )
        except Exception as error:  # the exporter raises its own zoo of types
            raise SisrError(f"ONNX export of {model.name} failed: {type(error).__name__}: {error}") from None
    assert program is not None  # the dynamo exporter returns the program it built
    for key, value in _sisr_metadata(model).items():
        program.model.metadata_props[key] = value
    with atomic_path(path, overwrite=overwrite) as tmp:
        program.save(tmp, external_data=False)
    return path


def export_torchscript(model: SRModel | nn.Module, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write `model` as a traced TorchScript module (`torch.jit.load` runs it without sisr).

    The networks have no data-dependent control flow, so a trace at one size
    is valid at every size.
    """
    path = check_writable(path, overwrite)
    model = as_model(model)
    prepared = prepare_for_export(model)
    with _quiet_exporter(), torch.no_grad():
        traced = torch.jit.trace(prepared, (_example(prepared),))
    extra = {f"{key}.txt": value for key, value in _sisr_metadata(model).items()}
    with atomic_path(path, overwrite=overwrite) as tmp:
        torch.jit.save(traced, str(tmp), _extra_files=extra)
    return path


def export_model(
    model: SRModel | nn.Module, path: str | os.PathLike, *, opset: int | None = None, overwrite: bool = False
) -> Path:
    """ONNX for `.onnx`, TorchScript for `.pt` / `.pth`, by the output's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        return export_onnx(model, path, opset=opset, overwrite=overwrite)
    if suffix in (".pt", ".pth", ".torchscript"):
        if opset is not None:
            raise SisrError("--opset applies to ONNX export only; the output is TorchScript (.pt)")
        return export_torchscript(model, path, overwrite=overwrite)
    raise SisrError(f"{path}: export to .onnx (ONNX) or .pt (TorchScript), not {suffix or 'no suffix'!r}")
