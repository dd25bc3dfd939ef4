"""Import PyTorch checkpoints: official EDSR-PyTorch `.pt` and BasicSR `.pth` (EDSR, MSRResNet).

Checkpoints are read with `torch.load(weights_only=True)`: tensors and plain
containers only, so a weight file cannot run code. Zip checkpoints are mapped
rather than read, and every tensor's declared size is checked against
`sisr.weights.limits` before it is converted. The layout is recognised by its
keys; sizes are read off the shapes, which must be those of convolutions.
"""

from __future__ import annotations

import math
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import SisrError
from ..models.common import DIV2K_RGB_MEAN, upsample_stages
from .imported import ImportedWeights, res_scale_convention
from .limits import check_file_size, check_weight_sizes

RGB = 3
# Where training code nests the state dict (BasicSR: params / params_ema).
_CONTAINER_KEYS = ("params_ema", "params", "state_dict", "model")
_WRAPPER_PREFIXES = ("module.", "model.")
_FLOAT_TYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_INTEGER_TYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
# Longer names are no layer's; a key of thousands of digits would also break int() of its index.
_MAX_KEY_LENGTH = 256


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def _load(path: Path) -> Any:
    """torch.load, bounded: no larger than the weight limit, its records mapped rather than read where it can.

    A zip checkpoint (PyTorch 1.6 and later) is mapped (`mmap=True`), so a
    tensor's data is read only when used, and each record must be stored
    uncompressed, as torch.save writes them, so that no record is larger than
    the file. A legacy checkpoint (the official EDSR files of 2018) is read
    whole; torch reserves each storage at its declared size before checking
    it against the data that follows, address space that is never touched.
    """
    import zipfile

    check_file_size(str(path), path.stat().st_size)
    with open(path, "rb") as handle:
        is_zip = handle.read(4) == b"PK\x03\x04"
    if is_zip:
        try:
            with zipfile.ZipFile(path) as archive:
                compressed = [info.filename for info in archive.infolist() if info.compress_type != zipfile.ZIP_STORED]
        except (zipfile.BadZipFile, NotImplementedError, ValueError, EOFError, OSError) as error:
            raise SisrError(f"{path}: a damaged zip archive ({error})") from None
        if compressed:
            raise SisrError(f"{path}: compressed records ({', '.join(compressed[:3])}); torch.save stores them plain")
    try:
        with warnings.catch_warnings():  # a damaged pickle's protocol warnings say nothing a user can act on
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as error:
        raise SisrError(
            f"{path}: the checkpoint holds Python objects besides tensors, which sisr does not unpickle "
            f"(weights_only): {str(error).splitlines()[0]}"
        ) from None
    except Exception as error:  # torch raises RuntimeError, EOFError, ... for damaged files
        first_line = (str(error).splitlines() or [""])[0]
        raise SisrError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {first_line})") from None


def _check_tensors(state: dict[Any, Any], path: Path) -> None:
    """Names that are short strings; tensors of numbers, dense, within `sisr.weights.limits` by their shapes.

    The shapes are what counts, not the storage: a 4-byte storage with zero
    strides can pose as a tensor of terabytes, which `.float()` would then
    allocate.
    """
    nbytes = 0
    for key, value in state.items():
        if not isinstance(key, str) or len(key) > _MAX_KEY_LENGTH:
            raise SisrError(f"{path}: a state dict key {key!r:.60} that is not a name")
        if value.layout != torch.strided or not (value.is_floating_point() or value.dtype in _INTEGER_TYPES):
            raise SisrError(f"{path}: {key} is a {value.dtype} {value.layout} tensor, not a dense tensor of numbers")
        if value.is_floating_point() and value.dtype not in _FLOAT_TYPES:
            raise SisrError(f"{path}: {key} is a {value.dtype} tensor; sisr reads float16/32/64 and bfloat16")
        nbytes += value.numel() * value.element_size()
    check_weight_sizes(str(path), len(state), nbytes)


def read_torch_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, where in the checkpoint it was), unwrapping BasicSR's `params_ema` / `params`.

    BasicSR keeps both when training with EMA; the EMA weights are the ones it
    evaluates and publishes, so they win.
    """
    path = Path(path)
    checkpoint = _load(path)
    where = "state dict"
    if isinstance(checkpoint, dict) and not _is_state_dict(checkpoint):
        for key in _CONTAINER_KEYS:
            if _is_state_dict(checkpoint.get(key)):
                checkpoint, where = checkpoint[key], f"state dict under {key!r}"
                break
    if not _is_state_dict(checkpoint):
        found = (
            ", ".join(f"{key!s:.40}" for key in list(checkpoint)[:8])
            if isinstance(checkpoint, dict)
            else type(checkpoint).__name__
        )
        raise SisrError(f"{path}: a PyTorch checkpoint without a state dict of tensors (found {found})")
    _check_tensors(checkpoint, path)
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


def _check_convolutions(state: dict[str, torch.Tensor], source: str) -> None:
    """Every layer of the three layouts is a convolution: 4-d weights, 1-d biases, no empty dimension."""
    for key, value in state.items():
        ndim = {"weight": 4, "bias": 1}.get(key.rpartition(".")[2])
        if ndim is not None and (value.dim() != ndim or value.numel() == 0):
            raise SisrError(
                f"{source}: {key} has shape {tuple(value.shape)}, not that of a convolution's {key.rpartition('.')[2]}"
            )


def _mean_shift(state: dict[str, torch.Tensor], source: str) -> tuple[dict[str, Any], list[str]]:
    """EDSR arguments that reproduce the official `sub_mean` conv: bias = -rgb_range * mean."""
    if "sub_mean.bias" not in state:
        return {"input_scale": 255.0}, ["no sub_mean in the file: DIV2K mean and range 255 assumed"]
    weight, bias = state.get("sub_mean.weight", torch.empty(0)), state["sub_mean.bias"]
    if tuple(weight.shape) != (RGB, RGB, 1, 1) or tuple(bias.shape) != (RGB,):
        raise SisrError(f"{source}: sub_mean is not a 1x1 convolution of RGB to RGB")
    if not bool(torch.isfinite(bias).all()):
        raise SisrError(f"{source}: sub_mean.bias holds NaN or infinity")
    if not torch.allclose(weight.reshape(RGB, RGB), torch.eye(RGB), atol=1e-6):
        raise SisrError(f"{source}: sub_mean.weight is not the identity (a per-channel std); sisr's EDSR has none")
    subtracted = -bias.double()
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
        layout = "official EDSR"
    elif {"conv_first.weight", "conv_after_body.weight", "upsample.0.weight"} <= set(state):
        layout = "BasicSR EDSR"
    elif {"conv_first.weight", "upconv1.weight", "conv_hr.weight", "conv_last.weight"} <= set(state):
        layout = "BasicSR MSRResNet"
    else:
        keys = list(state)
        raise SisrError(
            f"{source}: a PyTorch {where} with keys {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''} "
            f"({len(keys)} in all): not an official EDSR, BasicSR EDSR or BasicSR MSRResNet layout"
        )
    _check_convolutions(state, source)
    if layout == "official EDSR":
        return _official_edsr(state, source)
    if layout == "BasicSR EDSR":
        return _basicsr_edsr(state, where, source)
    return _basicsr_msrresnet(state, where, source)
