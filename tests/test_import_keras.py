"""Importing Keras 2 HDF5 weights (Krasser's TF super-resolution layout).

The writers here go the other way, sisr -> Keras, with their own statement of
each transform (HWIO kernels, TF depth_to_space channel order, Keras BN
epsilon), so a wrong transform in the importer cannot cancel against itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from sisr.errors import SisrError
from sisr.models import ModelSpec, build_model
from sisr.models.common import DIV2K_RGB_MEAN
from sisr.weights import load_model
from sisr.weights.convert import convert, load_foreign
from sisr.weights.keras import import_keras_h5, pixel_shuffle_order

h5py = pytest.importorskip("h5py", reason="h5py reads Keras weight files: pip install 'sisr[keras]'")

KERAS_BN_EPSILON, TORCH_BN_EPSILON = 1e-3, 1e-5

# A network or an SRModel: both map an NCHW batch to its upscaled batch.
Network = Callable[[torch.Tensor], torch.Tensor]


# --- a Keras save_weights writer ------------------------------------------------------


class KerasFile:
    """Layers in model order, written as Keras 2 `save_weights` does (with weightless layers between)."""

    def __init__(self, counter_start: int = 7) -> None:
        # Names numbered from an arbitrary offset, as in a Keras session that built other models first.
        self.counters: dict[str, int] = {}
        self.start = counter_start
        self.layers: list[tuple[str, dict[str, np.ndarray]]] = []

    def name(self, kind: str) -> str:
        n = self.counters.get(kind, self.start)
        self.counters[kind] = n + 1
        return f"{kind}_{n}"

    def add(self, kind: str, weights: dict[str, np.ndarray], name: str | None = None) -> None:
        self.layers.append((name or self.name(kind), weights))

    def weightless(self, kind: str) -> None:
        self.layers.append((self.name(kind), {}))

    def save(self, path: Path, model_config: dict | None = None) -> Path:
        """`save_weights` layout; with `model_config`, the `model.save` layout (weights under model_weights)."""
        with h5py.File(path, "w") as handle:
            root = handle
            if model_config is not None:
                handle.attrs["model_config"] = json.dumps(model_config).encode()
                root = handle.create_group("model_weights")
            root.attrs["backend"] = b"tensorflow"
            root.attrs["keras_version"] = b"2.4.0"
            root.attrs["layer_names"] = np.array([name.encode() for name, _ in self.layers])
            # Groups created in reverse order: the importer must follow layer_names, not the file.
            for name, weights in reversed(self.layers):
                group = root.create_group(name)
                group.attrs["weight_names"] = np.array([f"{name}/{key}:0".encode() for key in weights])
                for key, value in weights.items():
                    group.create_dataset(f"{name}/{key}:0", data=value)
        return path


def keras_kernel(weight: torch.Tensor) -> np.ndarray:
    """OIHW -> HWIO."""
    return weight.detach().numpy().transpose(2, 3, 1, 0).copy()


def depth_to_space_outputs(values: np.ndarray, channels: int, scale: int) -> np.ndarray:
    """Reorder a PixelShuffle conv's outputs (last axis) into the order tf.nn.depth_to_space reads.

    PixelShuffle takes output pixel (i, j) of colour c from channel c*s*s + i*s + j;
    depth_to_space takes it from channel (i*s + j)*C + c.
    """
    out = np.empty_like(values)
    for c in range(channels):
        for i in range(scale):
            for j in range(scale):
                out[..., (i * scale + j) * channels + c] = values[..., c * scale * scale + i * scale + j]
    return out


def conv_weights(conv: torch.nn.Module, shuffle: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    kernel, bias = keras_kernel(conv.weight), conv.bias.detach().numpy().copy()
    if shuffle:
        kernel, bias = depth_to_space_outputs(kernel, *shuffle), depth_to_space_outputs(bias, *shuffle)
    return {"kernel": kernel, "bias": bias}


def weightnorm_weights(conv: torch.nn.Module, shuffle: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    g = conv.weight_g.detach().numpy().reshape(-1).copy()
    v, bias = keras_kernel(conv.weight_v), conv.bias.detach().numpy().copy()
    if shuffle:
        g, v, bias = (depth_to_space_outputs(a, *shuffle) for a in (g, v, bias))
    return {"g": g, "kernel": v, "bias": bias, "initialized": np.array(True)}


def write_edsr(model: torch.nn.Module, path: Path) -> Path:
    out = KerasFile()
    out.weightless("input")
    out.weightless("lambda")
    out.add("conv2d", conv_weights(model.head[0]))
    blocks = list(model.body)[:-1]
    for block in blocks:
        out.add("conv2d", conv_weights(block.body[0]))
        out.add("conv2d", conv_weights(block.body[2]))
        out.weightless("add")
    out.add("conv2d", conv_weights(model.body[-1]))
    out.weightless("add")
    filters = model.head[0].out_channels
    convs = [m for m in model.tail[0] if isinstance(m, torch.nn.Conv2d)]
    for k, conv in enumerate(convs, start=1):
        stage = int(round((conv.out_channels / filters) ** 0.5))
        out.add("conv2d", conv_weights(conv, (filters, stage)), name=f"conv2d_{k}_scale_{stage}")
        out.weightless("lambda")
    out.add("conv2d", conv_weights(model.tail[1]))
    out.weightless("lambda")
    return out.save(path)


def write_wdsr(model: torch.nn.Module, path: Path, weightnorm: bool) -> Path:
    out = KerasFile()
    kind = "weight_normalization" if weightnorm else "conv2d"

    def add(conv, shuffle=None, name=None):
        if weightnorm:
            out.add(kind, weightnorm_weights(conv, shuffle))
        else:  # a plain Keras conv holds the effective kernel
            out.add(kind, conv_weights(_plain(conv), shuffle), name=name)

    out.weightless("input")
    out.weightless("lambda")
    add(model.head[0])
    for block in model.body:
        for layer in block.body:
            if not isinstance(layer, torch.nn.ReLU):
                add(layer)
        out.weightless("add")
    scale = model.scale
    add(model.tail[0], (3, scale), f"conv2d_main_scale_{scale}")
    add(model.skip[0], (3, scale), f"conv2d_skip_scale_{scale}")
    for _ in range(2):
        out.weightless("lambda")
    return out.save(path)


def _plain(conv: torch.nn.Module) -> torch.nn.Conv2d:
    plain = torch.nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size)
    v, g = conv.weight_v.detach(), conv.weight_g.detach()
    plain.weight.data = v * g / v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    plain.bias.data = conv.bias.detach().clone()
    return plain


def write_srresnet(model: torch.nn.Module, path: Path, epsilon: float | None = None) -> Path:
    """`epsilon=None`: save_weights with Keras' default BN epsilon; else model.save recording that epsilon."""
    out = KerasFile()
    filters = model.head[0].out_channels
    keras_epsilon = KERAS_BN_EPSILON if epsilon is None else epsilon

    def prelu(module):
        out.add("p_re_lu", {"alpha": module.weight.detach().numpy().reshape(1, 1, -1).copy()})

    def batchnorm(module):
        out.add(
            "batch_normalization",
            {
                "gamma": module.weight.detach().numpy().copy(),
                "beta": module.bias.detach().numpy().copy(),
                "moving_mean": module.running_mean.numpy().copy(),
                # Keras divides by sqrt(var + epsilon), PyTorch by sqrt(var + 1e-5).
                "moving_variance": (module.running_var.double().numpy() - keras_epsilon + TORCH_BN_EPSILON).astype(
                    np.float32
                ),
            },
        )

    out.weightless("input")
    out.add("conv2d", conv_weights(model.head[0]))
    prelu(model.head[1])
    for block in list(model.body)[:-2]:
        out.add("conv2d", conv_weights(block.body[0]))
        batchnorm(block.body[1])
        prelu(block.body[2])
        out.add("conv2d", conv_weights(block.body[3]))
        batchnorm(block.body[4])
        out.weightless("add")
    out.add("conv2d", conv_weights(model.body[-2]))
    batchnorm(model.body[-1])
    out.weightless("add")
    for k in range(0, len(model.upsampler), 3):
        out.add("conv2d", conv_weights(model.upsampler[k], (filters, 2)))
        out.weightless("lambda")
        prelu(model.upsampler[k + 2])
    out.add("conv2d", conv_weights(model.tail[0]))
    if epsilon is None:
        return out.save(path)
    layers = [
        {"class_name": "BatchNormalization", "name": name, "config": {"name": name, "epsilon": epsilon}}
        for name, _ in out.layers
        if name.startswith("batch_normalization")
    ]
    return out.save(path, {"class_name": "Functional", "config": {"name": "srresnet", "layers": layers}})


# --- helpers ---------------------------------------------------------------------------


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter and BN statistic random, so nothing is at a value that would hide a mix-up."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if name.endswith(("num_batches_tracked", ".mean")) or not tensor.is_floating_point():
                continue
            if name.endswith(("running_var", "weight_g")):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
    return model.eval()


def same_output(a: Network, b: Network, size: tuple[int, int] = (11, 13)) -> float:
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return float((a(x) - b(x)).abs().max())


# --- the depth_to_space permutation -------------------------------------------------------


def tf_depth_to_space(x: np.ndarray, scale: int) -> np.ndarray:
    """tf.nn.depth_to_space (NHWC, DCR) as its documentation defines it."""
    n, h, w, depth = x.shape
    channels = depth // (scale * scale)
    blocks = x.reshape(n, h, w, scale, scale, channels).transpose(0, 1, 3, 2, 4, 5)
    return blocks.reshape(n, h * scale, w * scale, channels)


@pytest.mark.parametrize(("channels", "scale"), [(3, 2), (3, 4), (8, 2), (5, 3)])
def test_permuted_conv_then_pixel_shuffle_equals_keras_conv_then_depth_to_space(channels, scale):
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((3, 3, 4, channels * scale * scale)).astype(np.float32)  # HWIO
    bias = rng.standard_normal(channels * scale * scale).astype(np.float32)
    x = rng.standard_normal((1, 4, 6, 7)).astype(np.float32)
    oihw = torch.from_numpy(kernel.transpose(3, 2, 0, 1))
    keras_conv = F.conv2d(torch.from_numpy(x), oihw, torch.from_numpy(bias), padding=1)
    expected = tf_depth_to_space(keras_conv.numpy().transpose(0, 2, 3, 1), scale)
    order = pixel_shuffle_order(channels, scale)
    weight = torch.from_numpy(kernel.transpose(3, 2, 0, 1)[order].copy())
    actual = F.pixel_shuffle(F.conv2d(torch.from_numpy(x), weight, torch.from_numpy(bias[order]), padding=1), scale)
    np.testing.assert_allclose(actual.numpy().transpose(0, 2, 3, 1), expected, atol=1e-5)
    # and the unpermuted weights give a different image, so the test can tell
    wrong = F.pixel_shuffle(torch.from_numpy(keras_conv.numpy()), scale).numpy().transpose(0, 2, 3, 1)
    assert np.abs(wrong - expected).max() > 0.1


def test_order_is_the_inverse_of_the_writers_reordering():
    torch_order = np.arange(4 * 3 * 3)
    keras = depth_to_space_outputs(torch_order, 4, 3)
    np.testing.assert_array_equal(keras[pixel_shuffle_order(4, 3)], torch_order)


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_edsr_round_trip(tmp_path, scale):
    args = {"scale": scale, "num_filters": 8, "num_blocks": 2, "input_scale": 2.0}
    model = randomise(build_model("edsr", args))
    imported = load_foreign(write_edsr(model, tmp_path / "edsr.h5"))
    assert imported.spec == ModelSpec("edsr", {**args, "res_scale": 1.0})
    assert imported.info.source == "file"
    assert same_output(model, imported) < 1e-5


@pytest.mark.parametrize("block", ["a", "b"])
@pytest.mark.parametrize("weightnorm", [True, False], ids=["weightnorm", "plainconv"])
def test_wdsr_round_trip(tmp_path, block, weightnorm):
    args = {"scale": 3, "block": block, "num_filters": 10, "num_blocks": 2, "expansion": 3}
    if block == "b":
        args["linear"] = 0.8
    model = randomise(build_model("wdsr", args))
    imported = load_foreign(write_wdsr(model, tmp_path / "wdsr.h5", weightnorm))
    assert imported.spec == ModelSpec("wdsr", args)
    assert same_output(model, imported) < 1e-5
    if weightnorm:  # g and v are kept as they are, not only the kernel they make
        torch.testing.assert_close(imported.network.tail[0].weight_g, model.tail[0].weight_g)
        torch.testing.assert_close(imported.network.body[1].body[0].weight_v, model.body[1].body[0].weight_v)


def test_srresnet_round_trip(tmp_path):
    model = randomise(build_model("srresnet", {"scale": 4, "num_filters": 8, "num_blocks": 2}))
    imported = load_foreign(write_srresnet(model, tmp_path / "srgan.h5"))
    assert imported.spec == ModelSpec("srresnet", {"scale": 4, "num_filters": 8, "num_blocks": 2})
    assert same_output(model, imported) < 1e-5


def test_full_model_save_with_its_own_batchnorm_epsilon(tmp_path):
    model = randomise(build_model("srresnet", {"scale": 2, "num_filters": 8, "num_blocks": 1}))
    imported = load_foreign(write_srresnet(model, tmp_path / "srgan.h5", epsilon=0.01))
    assert same_output(model, imported) < 1e-5


def test_uninitialized_weightnorm_starts_from_the_norm_of_v(tmp_path):
    """tfa's WeightNormalization(data_init=False) sets g = ||v|| on first call when not yet initialised."""
    args = {"scale": 2, "block": "a", "num_filters": 4, "num_blocks": 1, "expansion": 2}
    model = randomise(build_model("wdsr", args))
    path = write_wdsr(model, tmp_path / "w.h5", weightnorm=True)
    with h5py.File(path, "r+") as handle:
        name = handle.attrs["layer_names"][2].decode()
        handle[f"{name}/{name}/initialized:0"][()] = False
    imported = load_foreign(path)
    v = model.head[0].weight_v
    torch.testing.assert_close(imported.network.head[0].weight, v)
    torch.testing.assert_close(imported.network.body[0].body[0].weight, model.body[0].body[0].weight)


# --- against Keras semantics, computed here ----------------------------------------------------


def _keras_conv(x: np.ndarray, layer: h5py.Group, name: str, relu: bool = False) -> np.ndarray:
    """A Keras (weight-normalized) 'same' conv on NHWC, from the file's raw arrays."""
    kernel = layer[f"{name}/kernel:0"][()]
    if f"{name}/g:0" in layer:
        norm = np.sqrt((kernel.astype(np.float64) ** 2).sum(axis=(0, 1, 2)))
        kernel = (kernel * layer[f"{name}/g:0"][()] / norm).astype(np.float32)
    y = F.conv2d(
        torch.from_numpy(x.transpose(0, 3, 1, 2)),
        torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()),
        torch.from_numpy(layer[f"{name}/bias:0"][()]),
        padding=kernel.shape[0] // 2,
    ).numpy()
    y = y.transpose(0, 2, 3, 1)
    return np.maximum(y, 0) if relu else y


def keras_wdsr_b(path: Path, lr_uint8: np.ndarray, scale: int) -> np.ndarray:
    """Krasser's wdsr_b forward pass, NHWC on 0..255 values, from the HDF5 file alone."""
    mean = np.array(DIV2K_RGB_MEAN) * 255
    with h5py.File(path, "r") as handle:
        names = [n.decode() for n in handle.attrs["layer_names"] if len(handle[n.decode()].attrs["weight_names"])]
        conv = lambda x, n, relu=False: _keras_conv(x, handle[n], n, relu)  # noqa: E731
        x = ((lr_uint8[None].astype(np.float32) - mean) / 127.5).astype(np.float32)
        m = conv(x, names[0])
        for i in range((len(names) - 3) // 3):
            a, b, c = names[1 + 3 * i : 4 + 3 * i]
            m = m + conv(conv(conv(m, a, relu=True), b), c)
        m = tf_depth_to_space(conv(m, names[-2]), scale)
        s = tf_depth_to_space(conv(x, names[-1]), scale)
    return (m + s) * 127.5 + mean


def test_wdsr_b_matches_a_keras_forward_pass_written_from_the_file(tmp_path):
    args = {"scale": 2, "block": "b", "num_filters": 8, "num_blocks": 2, "expansion": 4}
    model = randomise(build_model("wdsr", args), seed=3)
    path = write_wdsr(model, tmp_path / "w.h5", weightnorm=True)
    lr = np.random.default_rng(0).integers(0, 256, (9, 12, 3)).astype(np.uint8)
    expected = keras_wdsr_b(path, lr, 2)[0]
    with torch.no_grad():
        sr = load_foreign(path)(torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255)
    np.testing.assert_allclose(sr[0].permute(1, 2, 0).numpy() * 255, expected, atol=1e-3)


# --- files that are not what they should be ----------------------------------------------------


def test_hdf5_of_another_network_is_refused_with_what_it_holds(tmp_path):
    out = KerasFile()
    out.add("dense", {"kernel": np.zeros((4, 2), np.float32), "bias": np.zeros(2, np.float32)})
    out.add("dense", {"kernel": np.zeros((2, 1), np.float32), "bias": np.zeros(1, np.float32)})
    with pytest.raises(SisrError, match=r"dense \(2\).*not a known super-resolution layout"):
        load_foreign(out.save(tmp_path / "classifier.h5"))


def test_hdf5_that_is_not_keras_is_refused(tmp_path):
    with h5py.File(tmp_path / "data.h5", "w") as handle:
        handle.create_dataset("images", data=np.zeros(3))
    with pytest.raises(SisrError, match="layer_names.*images"):
        load_foreign(tmp_path / "data.h5")


def test_srresnet_with_a_missing_layer_is_refused(tmp_path):
    model = randomise(build_model("srresnet", {"scale": 2, "num_filters": 4, "num_blocks": 1}))
    path = write_srresnet(model, tmp_path / "g.h5")
    with h5py.File(path, "r+") as handle:
        names = list(handle.attrs["layer_names"])
        handle.attrs["layer_names"] = np.array([n for n in names if n != b"batch_normalization_8"])
    with pytest.raises(SisrError, match=r"not an SRResNet.*weight layer 4 is p_re_lu_8"):
        import_keras_h5(path)


# --- the real files in shared/ --------------------------------------------------------------------


def _keras_file(shared_dir: Path, name: str) -> Path:
    path = shared_dir / "weights" / "keras" / name
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


def test_real_wdsr_b_file_is_read_as_wdsr_b_32_blocks(shared_dir, tmp_path):
    path = _keras_file(shared_dir, "wdsr-b-32-x4.h5")
    converted = convert(path, tmp_path / "wdsr.safetensors")
    model = load_model(converted)
    assert model.spec == ModelSpec(
        "wdsr", {"scale": 4, "block": "b", "num_filters": 32, "num_blocks": 32, "expansion": 6, "linear": 0.8}
    )
    assert model.info.metadata["source_file"] == "wdsr-b-32-x4.h5"
    assert model.info.metadata["source_format"].startswith("keras-h5: WDSR-B (weight normalization)")
    with pytest.raises(SisrError, match="already exists"):
        convert(path, converted)


def set5_psnr(model: Network, benchmarks: Path) -> float:
    from sisr.image_io import read_image
    from sisr.imaging import psnr

    scores = []
    for hr_path in sorted((benchmarks / "Set5" / "HR").glob("*.png")):
        hr = read_image(hr_path)
        lr = read_image(benchmarks / "Set5" / "LR_bicubic" / "X4" / hr_path.name)
        with torch.no_grad():
            sr = model(torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255)[0]
        sr = (sr.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
        scores.append(psnr(sr, hr[: sr.shape[0], : sr.shape[1]], 4, y_channel=True))
    return float(np.mean(scores))


# Measured: wdsr-b-32 32.09 dB; plain conv 32 / 16 / 8 blocks 31.73 / 31.61 / 30.96 dB
# (MATLAB bicubic: 28.42 dB).
@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "minimum"),
    [
        ("wdsr-b-32-x4.h5", 32.0),
        ("plainconv-wdsr-b-32-x4.h5", 31.0),
        ("plainconv-wdsr-b-16-x4.h5", 31.0),
        ("plainconv-wdsr-b-8-x4.h5", 30.9),
    ],
)
def test_real_keras_weights_score_on_set5_x4(shared_dir, benchmarks_dir, name, minimum):
    model = load_foreign(_keras_file(shared_dir, name))
    assert set5_psnr(model, benchmarks_dir) >= minimum


def test_nested_model_layers_are_split_by_their_own_names(tmp_path):
    """A Keras model used as a layer of another saves all its weights under the outer name."""
    model = randomise(build_model("edsr", {"scale": 2, "num_filters": 4, "num_blocks": 1, "input_scale": 2.0}))
    flat = write_edsr(model, tmp_path / "flat.h5")
    with h5py.File(flat, "r") as source, h5py.File(tmp_path / "nested.h5", "w") as target:
        target.attrs["layer_names"] = np.array([b"input_1", b"edsr"])
        target.create_group("input_1").attrs["weight_names"] = np.array([], dtype="S1")
        outer = target.create_group("edsr")
        names = []
        for layer in source.attrs["layer_names"]:
            for weight in source[layer.decode()].attrs["weight_names"]:
                outer.create_dataset(weight.decode(), data=source[layer.decode()][weight.decode()][()])
                names.append(weight)
        outer.attrs["weight_names"] = np.array(names)
    assert same_output(model, load_foreign(tmp_path / "nested.h5")) < 1e-5
