"""Importing PyTorch checkpoints: official EDSR-PyTorch `.pt`, BasicSR `.pth` (EDSR, MSRResNet).

The writers name keys as those projects do (their key tables written out
here), and MSRResNet is checked against BasicSR's forward pass restated with
torch.nn.functional, so the import is compared with the other projects'
meaning, not with itself.
"""

from __future__ import annotations

import argparse
import collections
import re
from collections.abc import Callable

import pytest
import torch
from torch.nn import functional as F

from sisr.errors import SisrError
from sisr.models import ModelSpec, build_model
from sisr.models.common import DIV2K_RGB_MEAN
from sisr.weights import load_model
from sisr.weights.convert import convert, detect_format, load_foreign

# A network or an SRModel: both map an NCHW batch to its upscaled batch.
Network = Callable[[torch.Tensor], torch.Tensor]


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model.eval()


def max_difference(a: Network, b: Network, size: tuple[int, int] = (10, 13)) -> float:
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return float((a(x) - b(x)).abs().max())


# --- official EDSR-PyTorch ------------------------------------------------------------------


def official_edsr_state(model: torch.nn.Module, rgb_range: float = 255.0) -> dict[str, torch.Tensor]:
    """The official state dict: sisr's keys plus the MeanShift 1x1 convs (bias = sign * rgb_range * mean)."""
    state = collections.OrderedDict()
    mean = torch.tensor(DIV2K_RGB_MEAN)
    state["sub_mean.weight"] = torch.eye(3).view(3, 3, 1, 1)
    state["sub_mean.bias"] = -rgb_range * mean
    state.update(model.state_dict())
    state["add_mean.weight"] = torch.eye(3).view(3, 3, 1, 1)
    state["add_mean.bias"] = rgb_range * mean
    return state


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_official_edsr_round_trip(tmp_path, scale):
    model = randomise(build_model("edsr", {"scale": scale, "num_filters": 8, "num_blocks": 3, "input_scale": 255.0}))
    torch.save(official_edsr_state(model), tmp_path / f"edsr_baseline_x{scale}.pt")
    imported = load_foreign(tmp_path / f"edsr_baseline_x{scale}.pt")
    assert imported.spec == ModelSpec(
        "edsr", {"scale": scale, "num_filters": 8, "num_blocks": 3, "res_scale": 1.0, "input_scale": 255.0}
    )
    assert max_difference(model, imported) < 1e-5


def test_official_edsr_keeps_the_0_255_working_range(tmp_path):
    """The official network works on 0..255: the same weights read as [0, 1] values give another image."""
    model = randomise(build_model("edsr", {"scale": 2, "num_filters": 8, "num_blocks": 1, "input_scale": 255.0}))
    torch.save(official_edsr_state(model), tmp_path / "edsr.pt")
    other_range = build_model("edsr", {"scale": 2, "num_filters": 8, "num_blocks": 1, "input_scale": 2.0})
    other_range.load_state_dict(model.state_dict())
    assert max_difference(load_foreign(tmp_path / "edsr.pt"), other_range.eval()) > 1e-2


def test_official_edsr_rgb_range_1_and_wrapper_prefix(tmp_path):
    model = randomise(build_model("edsr", {"scale": 2, "num_filters": 8, "num_blocks": 1, "input_scale": 1.0}))
    state = {f"model.{key}": value for key, value in official_edsr_state(model, rgb_range=1.0).items()}
    torch.save(state, tmp_path / "model_latest.pt")
    imported = load_foreign(tmp_path / "model_latest.pt")
    assert imported.spec is not None and imported.spec.args["input_scale"] == 1.0
    assert max_difference(model, imported) < 1e-5


def test_official_edsr_with_256_filters_gets_the_papers_residual_scaling(tmp_path):
    model = randomise(build_model("edsr", {"scale": 2, "num_filters": 256, "num_blocks": 1, "res_scale": 0.1}))
    torch.save(official_edsr_state(model), tmp_path / "edsr_x2.pt")
    imported = load_foreign(tmp_path / "edsr_x2.pt")
    assert imported.spec is not None and imported.spec.args["res_scale"] == 0.1
    assert max_difference(model, imported, (6, 6)) < 1e-4


def test_official_edsr_with_a_per_channel_std_is_refused(tmp_path):
    model = build_model("edsr", {"scale": 2, "num_filters": 8, "num_blocks": 1})
    state = official_edsr_state(model)
    state["sub_mean.weight"] = torch.diag(torch.tensor([1 / 0.2, 1 / 0.3, 1 / 0.25])).view(3, 3, 1, 1)
    torch.save(state, tmp_path / "edsr.pt")
    with pytest.raises(SisrError, match="sub_mean.weight is not the identity"):
        load_foreign(tmp_path / "edsr.pt")


# --- BasicSR ---------------------------------------------------------------------------------


BASICSR_EDSR_NAMES = [  # sisr key pattern -> BasicSR's
    (r"^head\.0\.", "conv_first."),
    (r"^body\.(\d+)\.body\.0\.", r"body.\1.conv1."),
    (r"^body\.(\d+)\.body\.2\.", r"body.\1.conv2."),
    (r"^tail\.0\.(\d+)\.", r"upsample.\1."),
    (r"^tail\.1\.", "conv_last."),
]


def basicsr_edsr_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    num_blocks = len(model.body) - 1
    state = {}
    for key, value in model.state_dict().items():
        key = re.sub(rf"^body\.{num_blocks}\.", "conv_after_body.", key)
        for pattern, replacement in BASICSR_EDSR_NAMES:
            key = re.sub(pattern, replacement, key)
        state[key] = value.clone()
    assert "conv_after_body.weight" in state and "upsample.0.weight" in state
    return state


def test_basicsr_edsr_prefers_the_ema_weights(tmp_path):
    args = {"scale": 4, "num_filters": 8, "num_blocks": 2, "input_scale": 255.0}
    ema = randomise(build_model("edsr", args), seed=1)
    plain = randomise(build_model("edsr", args), seed=2)
    torch.save({"params": basicsr_edsr_state(plain), "params_ema": basicsr_edsr_state(ema)}, tmp_path / "EDSR_Mx4.pth")
    imported = load_foreign(tmp_path / "EDSR_Mx4.pth")
    assert imported.spec == ModelSpec("edsr", {**args, "res_scale": 1.0})
    assert max_difference(ema, imported) < 1e-5
    assert "params_ema" in imported.info.metadata["source_format"]


def test_basicsr_edsr_params_only(tmp_path):
    model = randomise(build_model("edsr", {"scale": 3, "num_filters": 8, "num_blocks": 1, "input_scale": 255.0}))
    torch.save({"params": basicsr_edsr_state(model)}, tmp_path / "edsr.pth")
    assert max_difference(model, load_foreign(tmp_path / "edsr.pth")) < 1e-5


def basicsr_msrresnet_reference(state: dict[str, torch.Tensor], x: torch.Tensor, upscale: int) -> torch.Tensor:
    """BasicSR's MSRResNet.forward, restated with functional ops on its state dict."""

    def conv(name, t):
        return F.conv2d(t, state[f"{name}.weight"], state[f"{name}.bias"], padding=1)

    def lrelu(t):
        return F.leaky_relu(t, 0.1)

    feat = lrelu(conv("conv_first", x))
    blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("body.")})
    for i in blocks:
        feat = feat + conv(f"body.{i}.conv2", F.relu(conv(f"body.{i}.conv1", feat)))
    if upscale == 4:
        feat = lrelu(F.pixel_shuffle(conv("upconv1", feat), 2))
        feat = lrelu(F.pixel_shuffle(conv("upconv2", feat), 2))
    else:
        feat = lrelu(F.pixel_shuffle(conv("upconv1", feat), upscale))
    out = conv("conv_last", lrelu(conv("conv_hr", feat)))
    return out + F.interpolate(x, scale_factor=upscale, mode="bilinear", align_corners=False)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_basicsr_msrresnet_matches_basicsr_forward(tmp_path, scale):
    generator = torch.Generator().manual_seed(scale)
    filters, stages = 8, ([2, 2] if scale == 4 else [scale])
    state = {"conv_first.weight": torch.randn(filters, 3, 3, 3, generator=generator) * 0.1}
    for i in range(2):
        for name in ("conv1", "conv2"):
            state[f"body.{i}.{name}.weight"] = torch.randn(filters, filters, 3, 3, generator=generator) * 0.1
    for k, stage in enumerate(stages, start=1):
        state[f"upconv{k}.weight"] = torch.randn(filters * stage * stage, filters, 3, 3, generator=generator) * 0.1
    state["conv_hr.weight"] = torch.randn(filters, filters, 3, 3, generator=generator) * 0.1
    state["conv_last.weight"] = torch.randn(3, filters, 3, 3, generator=generator) * 0.1
    for key in [k for k in state if k.endswith(".weight")]:
        state[key.replace(".weight", ".bias")] = torch.randn(state[key].shape[0], generator=generator) * 0.1
    torch.save({"params": state}, tmp_path / "MSRResNet.pth")

    imported = load_foreign(tmp_path / "MSRResNet.pth")
    args = {"scale": scale, "num_filters": filters, "num_blocks": 2}
    assert imported.spec == ModelSpec("msrresnet", args)
    x = torch.rand(1, 3, 9, 11, generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(imported(x), basicsr_msrresnet_reference(state, x, scale), atol=1e-5, rtol=0)


# --- unknown and unsafe files ------------------------------------------------------------------


def test_unknown_state_dict_names_its_first_keys(tmp_path):
    torch.save({"encoder.0.weight": torch.zeros(4, 3, 3, 3), "encoder.0.bias": torch.zeros(4)}, tmp_path / "x.pth")
    with pytest.raises(SisrError, match=r"keys encoder\.0\.weight, encoder\.0\.bias .*not an official EDSR"):
        load_foreign(tmp_path / "x.pth")


class NotATensor:
    pass


def test_checkpoint_with_python_objects_is_not_unpickled(tmp_path):
    torch.save({"params": {"conv_first.weight": torch.zeros(1)}, "obj": NotATensor()}, tmp_path / "bad.pth")
    with pytest.raises(SisrError, match="Python objects besides tensors"):
        load_foreign(tmp_path / "bad.pth")


def test_file_of_no_known_format_is_refused(tmp_path):
    (tmp_path / "weights.pt").write_bytes(b"GIF89a not weights at all")
    with pytest.raises(SisrError, match="not a weight file sisr can read"):
        detect_format(tmp_path / "weights.pt")
    with pytest.raises(SisrError, match="not found"):
        load_foreign(tmp_path / "missing.pth")


def test_keras3_archive_is_named(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "model.keras", "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("model.weights.h5", b"")
    with pytest.raises(SisrError, match="Keras 3"):
        load_foreign(tmp_path / "model.keras")


# --- convert, the CLI and --model --------------------------------------------------------------


def run_cli(module, argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    module.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_convert_records_provenance_and_fp16(tmp_path):
    model = randomise(build_model("edsr", {"scale": 2, "num_filters": 8, "num_blocks": 1, "input_scale": 255.0}))
    torch.save(official_edsr_state(model), tmp_path / "edsr_baseline_x2.pt")
    from sisr.cli import convert as convert_command

    assert (
        run_cli(
            convert_command,
            ["convert", str(tmp_path / "edsr_baseline_x2.pt"), "-o", str(tmp_path / "edsr.safetensors"), "--fp16"],
        )
        == 0
    )
    from safetensors import safe_open

    with safe_open(str(tmp_path / "edsr.safetensors"), framework="pt") as handle:
        assert handle.get_tensor("head.0.weight").dtype == torch.float16
        metadata = handle.metadata()
    assert metadata["source_file"] == "edsr_baseline_x2.pt"
    assert metadata["source_format"] == "pytorch: official EDSR-PyTorch"
    assert len(metadata["source_sha256"]) == 64
    assert max_difference(model, load_model(tmp_path / "edsr.safetensors")) < 1e-2  # float16 weights
    with pytest.raises(SisrError, match="already exists"):
        run_cli(
            convert_command,
            ["convert", str(tmp_path / "edsr_baseline_x2.pt"), "-o", str(tmp_path / "edsr.safetensors")],
        )


def test_convert_round_trips_exactly_in_float32(tmp_path):
    model = randomise(build_model("msrresnet", {"scale": 2, "num_filters": 8, "num_blocks": 1}))
    torch.save({"params_ema": model.state_dict()}, tmp_path / "msr.pth")
    convert(tmp_path / "msr.pth", tmp_path / "msr.safetensors")
    assert max_difference(model, load_model(tmp_path / "msr.safetensors")) == 0.0


def test_load_model_converts_foreign_files_in_memory(tmp_path):
    model = randomise(build_model("edsr", {"scale": 3, "num_filters": 8, "num_blocks": 1, "input_scale": 255.0}))
    torch.save(official_edsr_state(model), tmp_path / "edsr.pt")
    loaded = load_model(tmp_path / "edsr.pt", scale=3)
    assert max_difference(model, loaded) < 1e-5
    assert loaded.info.source == "file" and loaded.info.path == tmp_path / "edsr.pt"
    assert loaded.info.metadata["source_format"] == "pytorch: official EDSR-PyTorch"
    with pytest.raises(SisrError, match="x3, but x4"):
        load_model(tmp_path / "edsr.pt", scale=4)
