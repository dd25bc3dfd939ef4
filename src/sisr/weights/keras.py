"""Import Keras 2 HDF5 weights of Krasser's TensorFlow `super-resolution` models.

The file (`model.save_weights`, or `model.save` with its `model_weights`
group) is read with h5py alone; TensorFlow is not needed. Architecture and
hyper-parameters are read off the layers' shapes, in the model order the
file's `layer_names` attribute records (numbered names such as `conv2d_12`
depend on what else the Keras session had built, so they say nothing).

Three things differ between Keras and PyTorch and are converted here:
kernels are HWIO (PyTorch: OIHW); `tf.nn.depth_to_space` reads its input
channels as `(i*s + j)*C + c` where `nn.PixelShuffle` reads `c*s*s + i*s + j`,
so every convolution feeding a shuffle has its output channels permuted; and
Keras batch norm adds epsilon 1e-3 to the variance where PyTorch adds 1e-5,
which is folded into the stored variance.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import SisrError
from ..models.common import upsample_stages
from .imported import ImportedWeights, res_scale_convention
from .limits import check_file_size, check_weight_sizes, max_weight_tensors

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
KERAS_BN_EPSILON = 1e-3
TORCH_BN_EPSILON = 1e-5
RGB = 3


@dataclass
class KerasLayer:
    """One layer with weights: its name and arrays by short name (`kernel`, `bias`, `g`, ...)."""

    name: str
    weights: dict[str, np.ndarray]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        names = set(self.weights)
        if {"g", "kernel"} <= names and self.weights["kernel"].ndim == 4:
            return "weightnorm-conv"
        if "kernel" in names and self.weights["kernel"].ndim == 4:
            return "conv"
        if "moving_mean" in names:
            return "batchnorm"
        if names == {"alpha"}:
            return "prelu"
        if "kernel" in names and self.weights["kernel"].ndim == 2:
            return "dense"
        return "+".join(sorted(names)) or "empty"

    @property
    def is_conv(self) -> bool:
        return self.kind in ("conv", "weightnorm-conv")

    @property
    def kernel_size(self) -> int:
        return int(self.weights["kernel"].shape[0])

    @property
    def in_channels(self) -> int:
        return int(self.weights["kernel"].shape[2])

    @property
    def out_channels(self) -> int:
        return int(self.weights["kernel"].shape[3])

    def check(self, source: str) -> None:
        """Arrays that agree with each other, so that the conversions can index them without failing."""
        weights, kind = self.weights, self.kind
        if kind in ("conv", "weightnorm-conv"):
            sizes = dict.fromkeys(("bias", "g"), self.out_channels) | {"initialized": 1}
        elif kind == "batchnorm":
            sizes = dict.fromkeys(("gamma", "beta", "moving_mean", "moving_variance"), weights["moving_mean"].size)
            if "moving_variance" not in weights:
                raise SisrError(f"{source}: batch norm {self.name} has a moving_mean but no moving_variance")
            epsilon = self.config.get("epsilon", KERAS_BN_EPSILON)
            if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not 0 <= epsilon < 1:
                raise SisrError(f"{source}: batch norm {self.name} has epsilon {epsilon!r:.40} in its config")
        else:
            return
        for name, size in sizes.items():
            if name in weights and weights[name].size != size:
                raise SisrError(f"{source}: {self.describe()}: {name} should hold {size} values")

    def describe(self) -> str:
        shapes = ", ".join(f"{key} {tuple(value.shape)}" for key, value in self.weights.items())
        return f"{self.name} ({shapes})"


def is_hdf5(path: str | os.PathLike) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE


def _text(value: Any) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _layer_configs(root_attrs: Any) -> dict[str, dict[str, Any]]:
    """Per-layer Keras config by name, where a full-model save kept it (for BN epsilon)."""
    if "model_config" not in root_attrs:
        return {}
    try:
        config = json.loads(_text(root_attrs["model_config"]))
        layers = config["config"]["layers"]
        configs = {layer["config"]["name"]: layer["config"] for layer in layers}
    except (ValueError, KeyError, TypeError, RecursionError):
        return {}
    return {name: value for name, value in configs.items() if isinstance(value, dict)}


def _names(node: Any, attribute: str, path: Path) -> list[str]:
    """A list-of-names attribute (`layer_names`, `weight_names`), its length checked before it is read."""
    if attribute not in node.attrs:
        return []
    length = math.prod(node.attrs.get_id(attribute).shape or ())
    if length > max_weight_tensors():
        raise SisrError(f"{path}: {attribute} lists {length} names, over the limit of {max_weight_tensors()}")
    values = node.attrs[attribute]
    return [_text(value) for value in (values.reshape(-1) if isinstance(values, np.ndarray) else [values])]


def _check_hard_link(group: Any, name: str, path: Path) -> None:
    """Soft and external links can lead out of the file (to a FIFO that blocks, a file of any size): not followed."""
    import h5py

    link = group.get(name, getlink=True)
    if link is not None and not isinstance(link, h5py.HardLink):
        raise SisrError(f"{path}: {name!r} is a {type(link).__name__}, not an object in the file")


def _weight_datasets(root: Any, path: Path) -> list[tuple[str, list[tuple[str, Any]]]]:
    """(layer name, [(weight name, dataset)]) in model order, every dataset checked but none read.

    Each must be a dataset (not a group), of numbers, not empty, with at most
    four dimensions; together within `sisr.weights.limits`. HDF5 states a
    dataset's shape apart from its data (a 59 KB file can declare 50 GB of
    fill values), so the shapes are what is checked.
    """
    import h5py

    layers: list[tuple[str, list[tuple[str, Any]]]] = []
    count = nbytes = 0
    for name in _names(root, "layer_names", path):
        _check_hard_link(root, name, path)
        group = root.get(name)
        if group is None:
            raise SisrError(f"{path}: layer {name!r} is listed in layer_names but has no group in the file")
        if not isinstance(group, h5py.Group):
            raise SisrError(f"{path}: layer {name!r} is a {type(group).__name__}, not a group of weights")
        datasets = []
        for weight_name in _names(group, "weight_names", path):
            _check_hard_link(group, weight_name, path)
            dataset = group.get(weight_name)
            if dataset is None:
                raise SisrError(f"{path}: layer {name!r} lists weight {weight_name!r}, which the file lacks")
            if not isinstance(dataset, h5py.Dataset):
                raise SisrError(f"{path}: weight {weight_name!r} is a {type(dataset).__name__}, not a dataset")
            if dataset.external or dataset.is_virtual:
                raise SisrError(
                    f"{path}: weight {weight_name!r} keeps its data in other files, which sisr does not read"
                )
            if dataset.dtype.kind not in "fiub" or dataset.ndim > 4 or dataset.size == 0:
                raise SisrError(
                    f"{path}: weight {weight_name!r} is {dataset.dtype} of shape {dataset.shape}, "
                    "not a non-empty array of numbers with at most 4 dimensions"
                )
            count += 1
            nbytes += dataset.size * dataset.dtype.itemsize
            datasets.append((weight_name, dataset))
        layers.append((name, datasets))
    check_weight_sizes(str(path), count, nbytes)
    return layers


def read_keras_layers(path: str | os.PathLike) -> list[KerasLayer]:
    """The layers with weights, in model order, from a Keras 2 HDF5 weight file."""
    import h5py

    path = Path(path)
    check_file_size(str(path), path.stat().st_size)
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise SisrError(f"{path}: not a readable HDF5 file ({error})") from None
    try:
        with handle:
            return _read_layers(handle, path)
    # h5py reports a damaged file as any of these, from wherever the damage is met
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as error:
        raise SisrError(f"{path}: a damaged HDF5 file ({type(error).__name__}: {error})") from None


def _read_layers(handle: Any, path: Path) -> list[KerasLayer]:
    configs = _layer_configs(handle.attrs)
    root = handle["model_weights"] if "model_weights" in handle else handle
    if "layer_names" not in root.attrs:
        if "layers" in root:  # Keras 3 writes layers/<name>/vars/<index>
            raise SisrError(f"{path}: a Keras 3 `.weights.h5` file; only the Keras 2 HDF5 layout is read")
        raise SisrError(
            f"{path}: HDF5 without a Keras `layer_names` attribute (top-level entries: "
            f"{', '.join(list(root.keys())[:8]) or 'none'}): not a Keras weight file"
        )
    layers: list[KerasLayer] = []
    for name, datasets in _weight_datasets(root, path):
        weights: dict[str, np.ndarray] = {}
        prefix = None
        for weight_name, dataset in datasets:
            layer_prefix, _, short = weight_name.rpartition("/")
            short = short.split(":")[0]
            # A nested model saves all its layers under one name: split them by their own names.
            if weights and (layer_prefix != prefix or short in weights):
                layers.append(KerasLayer(name, weights, configs.get(name, {})))
                weights = {}
            prefix = layer_prefix
            weights[short] = np.asarray(dataset[()])
        if weights:
            layers.append(KerasLayer(name, weights, configs.get(name, {})))
    return layers


# --- conversions --------------------------------------------------------------------


def pixel_shuffle_order(channels: int, scale: int) -> np.ndarray:
    """Index into a depth_to_space conv's outputs for each nn.PixelShuffle input channel.

    PixelShuffle channel `c*s*s + i*s + j` must hold what depth_to_space reads
    from channel `(i*s + j)*C + c`, so `torch_weight = keras_weight[order]`.
    """
    torch_channel = np.arange(channels * scale * scale)
    colour, offset = np.divmod(torch_channel, scale * scale)
    return offset * channels + colour


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _conv_weights(layer: KerasLayer, order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    kernel = layer.weights["kernel"].transpose(3, 2, 0, 1)  # HWIO -> OIHW
    bias = layer.weights.get("bias", np.zeros(kernel.shape[0], np.float32))
    if order is not None:
        kernel, bias = kernel[order], bias[order]
    return kernel, bias


def _plain_conv(prefix: str, layer: KerasLayer, order: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    kernel, bias = _conv_weights(layer, order)
    return {f"{prefix}.weight": _tensor(kernel), f"{prefix}.bias": _tensor(bias)}


def _norms(kernel: np.ndarray) -> np.ndarray:
    return np.sqrt((kernel.reshape(kernel.shape[0], -1).astype(np.float64) ** 2).sum(axis=1))


def _weightnorm_conv(prefix: str, layer: KerasLayer, order: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """weight_v / weight_g for sisr's WeightNormConv2d, from either kind of Keras conv.

    tfa's WeightNormalization keeps `g` (one per output channel, the norm taken
    over H, W and input channels) and `kernel` = v, as sisr does. A layer whose
    `initialized` flag is false would set g = ||v|| on its first call, so that
    is what it gets here. A plain conv becomes v = kernel, g = ||kernel||: the
    same effective kernel.
    """
    kernel, bias = _conv_weights(layer, order)
    norms = _norms(kernel)
    if layer.kind == "weightnorm-conv" and bool(layer.weights.get("initialized", True)):
        g = layer.weights["g"].reshape(-1)
        if order is not None:
            g = g[order]
    else:
        g = norms
        # An all-zero filter has no direction; any v with g = 0 gives the same zero kernel.
        kernel = kernel.copy()
        kernel[norms == 0] = 1.0
    return {
        f"{prefix}.weight_g": _tensor(g.reshape(-1, 1, 1, 1)),
        f"{prefix}.weight_v": _tensor(kernel),
        f"{prefix}.bias": _tensor(bias),
    }


def _batchnorm(prefix: str, layer: KerasLayer) -> dict[str, torch.Tensor]:
    weights = layer.weights
    channels = weights["moving_mean"].shape[0]
    epsilon = float(layer.config.get("epsilon", KERAS_BN_EPSILON))
    # (x - m) / sqrt(v + eps_keras) == (x - m) / sqrt((v + eps_keras - eps_torch) + eps_torch)
    variance = weights["moving_variance"].astype(np.float64) + epsilon - TORCH_BN_EPSILON
    return {
        f"{prefix}.weight": _tensor(weights.get("gamma", np.ones(channels))),
        f"{prefix}.bias": _tensor(weights.get("beta", np.zeros(channels))),
        f"{prefix}.running_mean": _tensor(weights["moving_mean"]),
        f"{prefix}.running_var": _tensor(variance),
        f"{prefix}.num_batches_tracked": torch.tensor(0, dtype=torch.long),
    }


def _prelu(prefix: str, layer: KerasLayer, channels: int, source: str) -> dict[str, torch.Tensor]:
    alpha = layer.weights["alpha"]
    if alpha.size != channels:
        raise SisrError(
            f"{source}: PReLU {layer.name} has alpha of shape {alpha.shape}; SRResNet shares it over "
            f"height and width (shape (1, 1, {channels}))"
        )
    return {f"{prefix}.weight": _tensor(alpha.reshape(-1))}


def _stage_scale(conv: KerasLayer, filters: int) -> int | None:
    """The shuffle factor of an upsampling conv (filters -> filters*s*s), or None."""
    ratio = conv.out_channels / filters
    stage = int(round(math.sqrt(ratio)))
    return stage if stage >= 2 and stage * stage == ratio and conv.in_channels == filters else None


def _scale_of(stages: list[int], source: str) -> int:
    scale = math.prod(stages)
    try:
        expected = upsample_stages(scale)
    except ValueError:
        expected = None
    if expected != stages:
        raise SisrError(f"{source}: upsampling stages x{' x'.join(map(str, stages))} are not a sisr upsampler")
    return scale


# --- the architectures ----------------------------------------------------------------


def _edsr(convs: list[KerasLayer], source: str) -> ImportedWeights:
    """conv, (conv, conv) * B, conv, upsampling convs, conv F -> 3."""
    head, tail = convs[0], convs[-1]
    filters = head.out_channels
    upsampling: list[KerasLayer] = []
    for conv in reversed(convs[1:-1]):
        if _stage_scale(conv, filters) is None:
            break
        upsampling.insert(0, conv)
    body = convs[1 : len(convs) - 1 - len(upsampling)]
    if not upsampling or len(body) % 2 != 1:
        raise SisrError(
            f"{source}: plain convolutions ending in {filters} -> 3 channels look like EDSR, but "
            f"{len(body)} body convs and {len(upsampling)} upsampling convs do not make one"
        )
    stages = [_stage_scale(conv, filters) or 0 for conv in upsampling]
    scale = _scale_of(stages, source)
    num_blocks = (len(body) - 1) // 2
    res_scale, note = res_scale_convention(filters)
    tensors = _plain_conv("head.0", head)
    for i in range(num_blocks):
        tensors |= _plain_conv(f"body.{i}.body.0", body[2 * i])
        tensors |= _plain_conv(f"body.{i}.body.2", body[2 * i + 1])
    tensors |= _plain_conv(f"body.{num_blocks}", body[-1])
    for k, (conv, stage) in enumerate(zip(upsampling, stages)):
        tensors |= _plain_conv(f"tail.0.{2 * k}", conv, pixel_shuffle_order(filters, stage))
    tensors |= _plain_conv("tail.1", tail)
    args = {
        "scale": scale,
        "num_filters": filters,
        "num_blocks": num_blocks,
        "res_scale": res_scale,
        "input_scale": 2.0,
    }
    return ImportedWeights("edsr", args, tensors, "keras-h5: EDSR", [note])


def _wdsr(convs: list[KerasLayer], source: str) -> ImportedWeights:
    """head conv, wide blocks (2 convs for A, 3 for B), main conv F -> 3*s*s, 5x5 skip conv 3 -> 3*s*s."""
    head = convs[0]
    filters = head.out_channels
    main, skip = convs[-2], convs[-1]
    if main.in_channels == RGB and skip.in_channels == filters:
        main, skip = skip, main
    out = main.out_channels
    scale = int(round(math.sqrt(out / RGB)))
    if skip.in_channels != RGB or skip.out_channels != out or RGB * scale * scale != out:
        raise SisrError(
            f"{source}: last two convs {main.describe()} and {skip.describe()} are not WDSR's main and "
            f"skip branches (F -> 3*s*s and 3 -> 3*s*s)"
        )
    body = convs[1:-2]
    block = "b" if body and body[0].kernel_size == 1 else "a"
    per_block = 3 if block == "b" else 2
    if not body or len(body) % per_block:
        raise SisrError(f"{source}: {len(body)} body convs do not make WDSR-{block.upper()} blocks of {per_block}")
    wide = body[0].out_channels
    args: dict[str, Any] = {
        "scale": scale,
        "block": block,
        "num_filters": filters,
        "num_blocks": len(body) // per_block,
        "expansion": wide // filters,
    }
    if block == "b":
        low_rank = body[1].out_channels
        args["linear"] = 0.8 if int(filters * 0.8) == low_rank else low_rank / filters
    weightnorm = all(conv.kind == "weightnorm-conv" for conv in convs)
    tensors = _weightnorm_conv("head.0", head)
    for i in range(args["num_blocks"]):
        indices = (0, 2, 3) if block == "b" else (0, 2)
        for index, conv in zip(indices, body[i * per_block : (i + 1) * per_block]):
            tensors |= _weightnorm_conv(f"body.{i}.body.{index}", conv)
    order = pixel_shuffle_order(RGB, scale)
    tensors |= _weightnorm_conv("tail.0", main, order)
    tensors |= _weightnorm_conv("skip.0", skip, order)
    kind = "weight normalization" if weightnorm else "plain convolutions, imported as weight normalization"
    return ImportedWeights("wdsr", args, tensors, f"keras-h5: WDSR-{block.upper()} ({kind})")


def _srresnet(layers: list[KerasLayer], source: str) -> ImportedWeights:
    """conv9, prelu, (conv, bn, prelu, conv, bn) * B, conv, bn, (conv, prelu) * U, conv9."""
    kinds = [layer.kind for layer in layers]
    filters = layers[0].out_channels if layers and layers[0].is_conv else 0

    def mismatch(index: int, expected: str) -> SisrError:
        found = f"{layers[index].name} ({kinds[index]})" if index < len(layers) else "the end of the file"
        return SisrError(
            f"{source}: not an SRResNet (SRGAN generator): weight layer {index} is {found}, expected {expected}"
        )

    if kinds[:2] != ["conv", "prelu"]:
        raise mismatch(0 if kinds[:1] != ["conv"] else 1, "a 9x9 conv and a PReLU")
    tensors = _plain_conv("head.0", layers[0]) | _prelu("head.1", layers[1], filters, source)
    i, num_blocks = 2, 0
    while kinds[i : i + 5] == ["conv", "batchnorm", "prelu", "conv", "batchnorm"]:
        prefix = f"body.{num_blocks}.body"
        tensors |= _plain_conv(f"{prefix}.0", layers[i]) | _batchnorm(f"{prefix}.1", layers[i + 1])
        tensors |= _prelu(f"{prefix}.2", layers[i + 2], filters, source)
        tensors |= _plain_conv(f"{prefix}.3", layers[i + 3]) | _batchnorm(f"{prefix}.4", layers[i + 4])
        i, num_blocks = i + 5, num_blocks + 1
    if kinds[i : i + 2] != ["conv", "batchnorm"]:
        raise mismatch(i + (kinds[i : i + 1] == ["conv"]), "a residual block or the body's conv + batch norm")
    tensors |= _plain_conv(f"body.{num_blocks}", layers[i]) | _batchnorm(f"body.{num_blocks + 1}", layers[i + 1])
    i += 2
    stages: list[int] = []
    while kinds[i : i + 2] == ["conv", "prelu"]:
        stage = _stage_scale(layers[i], filters)
        if stage is None:
            raise SisrError(f"{source}: {layers[i].describe()} is not an upsampling conv of {filters} filters")
        k = len(stages)
        tensors |= _plain_conv(f"upsampler.{3 * k}", layers[i], pixel_shuffle_order(filters, stage))
        tensors |= _prelu(f"upsampler.{3 * k + 2}", layers[i + 1], filters, source)
        stages.append(stage)
        i += 2
    if not stages:
        raise mismatch(i, "an upsampling conv + PReLU")
    if i != len(layers) - 1 or kinds[i] != "conv":
        raise mismatch(i if kinds[i : i + 1] != ["conv"] else i + 1, "the final 9x9 conv, last")
    tensors |= _plain_conv("tail.0", layers[i])
    args = {"scale": _scale_of(stages, source), "num_filters": filters, "num_blocks": num_blocks}
    return ImportedWeights(
        "srresnet",
        args,
        tensors,
        "keras-h5: SRResNet (SRGAN generator)",
        ["Keras batch-norm epsilon folded into running_var"],
    )


def import_keras_h5(path: str | os.PathLike) -> ImportedWeights:
    """A sisr architecture, arguments and state dict from one of Krasser's Keras weight files."""
    source = str(path)
    layers = read_keras_layers(path)
    for layer in layers:
        layer.check(source)
    kinds = Counter(layer.kind for layer in layers)
    convs = [layer for layer in layers if layer.is_conv]
    if not layers or not convs:
        found = ", ".join(f"{kind} ({count})" for kind, count in kinds.items()) or "no weights"
        raise SisrError(f"{source}: HDF5 with layers {found}: not a known super-resolution layout")
    if set(kinds) <= {"conv", "batchnorm", "prelu"} and kinds["batchnorm"]:
        return _srresnet(layers, source)
    if set(kinds) <= {"conv", "weightnorm-conv"} and convs[0].in_channels == RGB:
        if convs[-1].out_channels == RGB and kinds["weightnorm-conv"] == 0:
            return _edsr(convs, source)
        if len(convs) >= 4 and any(conv.kernel_size == 5 and conv.in_channels == RGB for conv in convs[-2:]):
            return _wdsr(convs, source)
    found = ", ".join(f"{kind} ({count})" for kind, count in kinds.items())
    raise SisrError(
        f"{source}: HDF5 with layers {found}: not a known super-resolution layout "
        "(Keras EDSR, WDSR-A/B or SRResNet of Krasser's super-resolution code)"
    )
