"""Import PyTorch checkpoints: official EDSR-PyTorch `.pt` and BasicSR `.pth` (EDSR, MSRResNet).

Checkpoints are read with `torch.load(weights_only=True)`: tensors and plain
containers only, so a weight file cannot run code. The layout is recognised
by its keys; sizes are read off the shapes.
"""

from __future__ import annotations

import math
import os
import pickle
import re
from typing import Any

import torch

from ..errors import SisrError
from ..models.common import DIV2K_RGB_MEAN, upsample_stages
from .imported import ImportedWeights, res_scale_convention

RGB = 3
# Where training code nests the state dict (BasicSR: params / params_ema).
_CONTAINER_KEYS = ("params_ema", "params", "state_dict", "model")
_WRAPPER_PREFIXES = ("module.", "model.")


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def read_torch_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, where in the checkpoint it was), unwrapping BasicSR's `params_ema` / `params`.

    BasicSR keeps both when training with EMA; the EMA weights are the ones it
    evaluates and publishes, so they win.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise SisrError(
            f"{path}: the checkpoint holds Python objects besides tensors, which sisr does not unpickle "
            f"(weights_only): {str(error).splitlines()[0]}"
        ) from None
    except Exception as error:  # torch raises RuntimeError, EOFError, ... for damaged files
        raise SisrError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error})") from None
    where = "state dict"
    if isinstance(checkpoint, dict) and not _is_state_dict(checkpoint):
        for key in _CONTAINER_KEYS:
            if _is_state_dict(checkpoint.get(key)):
                checkpoint, where = checkpoint[key], f"state dict under {key!r}"
                break
    if not _is_state_dict(checkpoint):
        found = ", ".join(map(str, list(checkpoint)[:8])) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise SisrError(f"{path}: a PyTorch checkpoint without a state dict of tensors (found {found})")
    for prefix in _WRAPPER_PREFIXES:  # DataParallel / EDSR's Model wrapper
        if all(key.startswith(prefix) for key in checkpoint):
            checkpoint = {key[len(prefix) :]: value for key, value in checkpoint.items()}
    return {key: value.float() if value.is_floating_point() else value for key, value in checkpoint.items()}, where


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    return sum(1 for key in state if re.fullmatch(pattern, key))


def _numbered(state: dict[str, torch.Tensor], pattern: str) -> list[str]:
    """Keys matching `pattern` (one numeric group) in numeric order: `tail.0.10` after `tail.0.2`."""
    numbered = {}
    for key in state:
        match = re.fullmatch(pattern, key)
        if match:
            numbered[int(match.group(1))] = key
    return [numbered[number] for number in sorted(numbered)]


def _stages(state: dict[str, torch.Tensor], keys: list[str], filters: int, source: str) -> int:
    """The scale from upsampling convs filters -> filters*s*s, checked against sisr's stages."""
    stages = []
    for key in keys:
        out_channels = state[key].shape[0]
        stage = int(round(math.sqrt(out_channels / filters)))
        if stage * stage * filters != out_channels:
            raise SisrError(f"{source}: {key} has {out_channels} outputs, not {filters}*s*s for a pixel shuffle")
        stages.append(stage)
    scale = math.prod(stages)
    try:
        ok = bool(stages) and upsample_stages(scale) == stages
    except ValueError:
        ok = False
    if not ok:
        raise SisrError(f"{source}: upsampling stages {stages} are not a sisr upsampler")
    return scale


def _check_rgb(state: dict[str, torch.Tensor], key: str, source: str) -> int:
    weight = state[key]
    if weight.shape[1] != RGB:
        raise SisrError(f"{source}: {key} takes {weight.shape[1]} input channels; sisr imports RGB networks")
    return int(weight.shape[0])


def _mean_shift(state: dict[str, torch.Tensor], source: str) -> tuple[dict[str, Any], list[str]]:
    """EDSR arguments that reproduce the official `sub_mean` conv: bias = -rgb_range * mean."""
    if "sub_mean.bias" not in state:
        return {"input_scale": 255.0}, ["no sub_mean in the file: DIV2K mean and range 255 assumed"]
    weight = state["sub_mean.weight"].reshape(RGB, RGB)
    if not torch.allclose(weight, torch.eye(RGB), atol=1e-6):
        raise SisrError(f"{source}: sub_mean.weight is not the identity (a per-channel std); sisr's EDSR has none")
    subtracted = -state["sub_mean.bias"].double()
    div2k = torch.tensor(DIV2K_RGB_MEAN, dtype=torch.float64)
    if torch.allclose(subtracted / 255, div2k, atol=1e-4):
        return {"input_scale": 255.0}, []
    if torch.allclose(subtracted, div2k, atol=1e-4):
        return {"input_scale": 1.0}, ["sub_mean says rgb_range 1"]
    mean = tuple(round(float(v), 6) for v in subtracted / 255)
    return {"input_scale": 255.0, "rgb_mean": mean}, [f"sub_mean holds a non-DIV2K mean {mean} (range 255 assumed)"]


def _official_edsr(state: dict[str, torch.Tensor], source: str) -> ImportedWeights:
    filters = _check_rgb(state, "head.0.weight", source)
    num_blocks = _count(state, r"body\.\d+\.body\.0\.weight")
    upsampling = _numbered(state, r"tail\.0\.(\d+)\.weight")
    res_scale, note = res_scale_convention(filters)
    mean_args, mean_notes = _mean_shift(state, source)
    args = {
        "scale": _stages(state, upsampling, filters, source),
        "num_filters": filters,
        "num_blocks": num_blocks,
        "res_scale": res_scale,
        **mean_args,
    }
    tensors = {k: v for k, v in state.items() if not k.startswith(("sub_mean.", "add_mean."))}
    return ImportedWeights("edsr", args, tensors, "pytorch: official EDSR-PyTorch", [note, *mean_notes])


def _basicsr_edsr(state: dict[str, torch.Tensor], where: str, source: str) -> ImportedWeights:
    filters = _check_rgb(state, "conv_first.weight", source)
    num_blocks = _count(state, r"body\.\d+\.conv1\.weight")
    upsampling = _numbered(state, r"upsample\.(\d+)\.weight")
    res_scale, note = res_scale_convention(filters)
    renames = [
        (r"conv_first\.", "head.0."),
        (r"body\.(\d+)\.conv1\.", r"body.\1.body.0."),
        (r"body\.(\d+)\.conv2\.", r"body.\1.body.2."),
        (r"conv_after_body\.", f"body.{num_blocks}."),
        (r"upsample\.(\d+)\.", r"tail.0.\1."),
        (r"conv_last\.", "tail.1."),
    ]
    tensors = {}
    for key, value in state.items():
        for pattern, replacement in renames:
            if re.match(pattern, key):
                key = re.sub(pattern, replacement, key, count=1)
                break
        tensors[key] = value
    # BasicSR keeps the mean out of the state dict: its defaults (DIV2K mean, img_range 255) apply.
    args = {
        "scale": _stages(state, upsampling, filters, source),
        "num_filters": filters,
        "num_blocks": num_blocks,
        "res_scale": res_scale,
        "input_scale": 255.0,
    }
    notes = [note, "BasicSR defaults assumed: DIV2K rgb_mean, img_range 255"]
    return ImportedWeights("edsr", args, tensors, f"pytorch: BasicSR EDSR ({where})", notes)


def _basicsr_msrresnet(state: dict[str, torch.Tensor], where: str, source: str) -> ImportedWeights:
    filters = _check_rgb(state, "conv_first.weight", source)
    upsampling = _numbered(state, r"upconv(\d+)\.weight")
    args = {
        "scale": _stages(state, upsampling, filters, source),
        "num_filters": filters,
        "num_blocks": _count(state, r"body\.\d+\.conv1\.weight"),
    }
    return ImportedWeights("msrresnet", args, dict(state), f"pytorch: BasicSR MSRResNet ({where})")


def import_torch_checkpoint(path: str | os.PathLike) -> ImportedWeights:
    """A sisr architecture, arguments and state dict from an official EDSR or BasicSR checkpoint."""
    source = str(path)
    state, where = read_torch_state(path)
    if "head.0.weight" in state and "tail.1.weight" in state:
        return _official_edsr(state, source)
    if {"conv_first.weight", "conv_after_body.weight", "upsample.0.weight"} <= set(state):
        return _basicsr_edsr(state, where, source)
    if {"conv_first.weight", "upconv1.weight", "conv_hr.weight", "conv_last.weight"} <= set(state):
        return _basicsr_msrresnet(state, where, source)
    keys = list(state)
    raise SisrError(
        f"{source}: a PyTorch {where} with keys {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''} "
        f"({len(keys)} in all): not an official EDSR, BasicSR EDSR or BasicSR MSRResNet layout"
    )
