"""sisr.lpips: LPIPS-VGG rebuilt, loaded by key name from both published layouts, checked by hand.

Weight files are made by the test (random weights in torchvision's VGG16 layout
and in the lpips package's lin layout); downloads go to a server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from httpserver import serve_directory
from sisr import lpips as lpips_module
from sisr.download import Resource
from sisr.errors import SisrError
from sisr.lpips import LPIPS, find_lpips_weights, lpips_weights_available
from sisr.train import finetune

# The fine-tuning fixture (tiny generator, images, random VGG19) is test_finetune's.
from test_finetune import _values, setup  # noqa: F401

# torchvision's vgg16().features: convolution indices per block, written out by hand.
CONV_INDICES_PER_BLOCK = [[0, 2], [5, 7], [10, 12, 14], [17, 19, 21], [24, 26, 28]]
CHANNELS_PER_BLOCK = [64, 128, 256, 512, 512]
SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)


def vgg16_layout_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random He-initialised VGG16 convs keyed as torchvision's file, plus a classifier stand-in."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    in_channels = 3
    for convs, channels in zip(CONV_INDICES_PER_BLOCK, CHANNELS_PER_BLOCK):
        for index in convs:
            std = (2 / (9 * in_channels)) ** 0.5
            state[f"features.{index}.weight"] = torch.randn(channels, in_channels, 3, 3, generator=generator) * std
            state[f"features.{index}.bias"] = torch.randn(channels, generator=generator) * 0.1
            in_channels = channels
    state["classifier.0.weight"] = torch.randn(16, 8, generator=generator)
    return state


def lin_layout_state_dict(seed: int = 1) -> dict[str, torch.Tensor]:
    """Non-negative random 1x1 weights keyed as the lpips package's weights/v0.1/vgg.pth."""
    generator = torch.Generator().manual_seed(seed)
    return {
        f"lin{k}.model.1.weight": 0.2 * torch.rand(1, channels, 1, 1, generator=generator)  # like the real ones
        for k, channels in enumerate(CHANNELS_PER_BLOCK)
    }


def reference_lpips(x: torch.Tensor, y: torch.Tensor, vgg: dict, lins: dict) -> torch.Tensor:
    """LPIPS written out with torch.nn.functional: taps at the last ReLU of each block."""

    def taps(image: torch.Tensor) -> list[torch.Tensor]:
        h = ((2 * image - 1) - SHIFT) / SCALE
        found = []
        for block, convs in enumerate(CONV_INDICES_PER_BLOCK):
            if block:
                h = F.max_pool2d(h, 2, 2)
            for index in convs:
                h = F.relu(F.conv2d(h, vgg[f"features.{index}.weight"], vgg[f"features.{index}.bias"], padding=1))
            found.append(h)
        return found

    total = torch.zeros(x.shape[0])
    for k, (a, b) in enumerate(zip(taps(x), taps(y))):
        a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        weighted = ((a - b) ** 2 * lins[f"lin{k}.model.1.weight"]).sum(1)  # the 1x1 conv, by hand
        total += weighted.mean(dim=(1, 2))
    return total


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory) -> tuple[Path, Path, dict, dict]:
    folder = tmp_path_factory.mktemp("lpips")
    vgg, lins = vgg16_layout_state_dict(), lin_layout_state_dict()
    torch.save(vgg, folder / "vgg16-test.pth")
    torch.save(lins, folder / "vgg-lin-test.pth")
    return folder / "vgg16-test.pth", folder / "vgg-lin-test.pth", vgg, lins


@pytest.fixture(scope="module")
def metric(weight_files) -> LPIPS:
    return LPIPS.from_files(weight_files[0], weight_files[1])


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SISR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SISR_VGG16_WEIGHTS", raising=False)
    monkeypatch.delenv("SISR_LPIPS_WEIGHTS", raising=False)
    return tmp_path / "cache"


def images(seed: int, n: int = 2, side: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


# --- the metric --------------------------------------------------------------


def test_taps_are_torchvisions_relu_indices():
    features = LPIPS().features
    assert len(features) == 30  # up to relu5_3; torchvision's vgg16().features has 31 modules
    convs = [i for i, layer in enumerate(features) if isinstance(layer, torch.nn.Conv2d)]
    assert convs == [i for block in CONV_INDICES_PER_BLOCK for i in block]
    assert lpips_module.LPIPS_TAP_INDICES == (3, 8, 15, 22, 29)


def test_equals_a_hand_written_reference(metric, weight_files):
    _, _, vgg, lins = weight_files
    x, y = images(0), images(1)
    with torch.no_grad():
        got = metric(x, y)
    assert got.shape == (2,)
    torch.testing.assert_close(got, reference_lpips(x, y, vgg, lins), rtol=1e-5, atol=1e-5)


def test_zero_for_identical_images_symmetric_and_positive_otherwise(metric):
    x, y = images(2), images(3)
    with torch.no_grad():
        same, forward, backward = metric(x, x), metric(x, y), metric(y, x)
    assert torch.equal(same, torch.zeros(2))
    torch.testing.assert_close(forward, backward, rtol=1e-6, atol=1e-7)
    assert (forward > 0).all()


def test_a_slight_change_is_closer_than_a_different_image(metric):
    x = images(4, n=1)
    with torch.no_grad():
        near = metric(x, (x + 0.02 * images(5, n=1)).clamp(0, 1))
        far = metric(x, images(6, n=1))
    assert 0 < near.item() < far.item()


def test_frozen_eval_and_gradients_reach_the_input(metric):
    metric.train()
    assert not metric.training
    assert not any(parameter.requires_grad for parameter in metric.parameters())
    x = images(7, n=1).requires_grad_(True)
    metric(x, images(8, n=1)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_shapes_are_checked(metric):
    with pytest.raises(ValueError, match="one shape"):
        metric(images(0, side=32), images(0, side=16))
    with pytest.raises(ValueError, match="RGB"):
        metric(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16))


# --- loading -----------------------------------------------------------------


@pytest.mark.parametrize("layout, key", [("vgg", "features.26.weight"), ("lin", "lin3.model.1.weight")])
def test_a_missing_key_is_named(tmp_path, weight_files, layout, key):
    vgg_path, lin_path, vgg, lins = weight_files
    state = dict(vgg if layout == "vgg" else lins)
    del state[key]
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(SisrError, match=key.replace(".", r"\.")) as caught:
        LPIPS.from_files(broken, lin_path) if layout == "vgg" else LPIPS.from_files(vgg_path, broken)
    assert str(broken) in str(caught.value)


def test_a_wrong_shape_and_negative_lin_weights_are_refused(tmp_path, weight_files):
    vgg_path, _, _, lins = weight_files
    wrong = dict(lins, **{"lin1.model.1.weight": torch.ones(1, 64, 1, 1)})
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(SisrError, match=r"lin1\.model\.1\.weight has shape \(1, 64, 1, 1\)"):
        LPIPS.from_files(vgg_path, tmp_path / "wrong.pth")
    negative = dict(lins, **{"lin0.model.1.weight": -lins["lin0.model.1.weight"]})
    torch.save(negative, tmp_path / "negative.pth")
    with pytest.raises(SisrError, match="negative"):
        LPIPS.from_files(vgg_path, tmp_path / "negative.pth")


def test_missing_files_say_where_to_get_them_and_where_to_put_them(isolated_cache):
    assert not lpips_weights_available()
    with pytest.raises(SisrError) as caught:
        find_lpips_weights()
    message = str(caught.value)
    assert lpips_module.VGG16_WEIGHTS.url in message
    assert str(isolated_cache / "weights" / "vgg16-397923af.pth") in message
    assert "SISR_VGG16_WEIGHTS" in message and "downloading is off" in message


def test_missing_lin_file_is_named_after_the_vgg16_file_is_found(isolated_cache, weight_files, monkeypatch):
    monkeypatch.setenv("SISR_VGG16_WEIGHTS", str(weight_files[0]))
    with pytest.raises(SisrError) as caught:
        find_lpips_weights()
    message = str(caught.value)
    assert lpips_module.LPIPS_LIN_WEIGHTS.url in message
    assert str(isolated_cache / "weights" / "lpips-vgg-v0.1.pth") in message


def test_an_explicit_path_that_does_not_exist_is_an_error(isolated_cache, weight_files, tmp_path):
    with pytest.raises(SisrError, match="nowhere.pth"):
        find_lpips_weights(weight_files[0], tmp_path / "nowhere.pth")


def test_found_by_environment_and_cache(isolated_cache, weight_files, monkeypatch):
    vgg_path, lin_path, _, _ = weight_files
    monkeypatch.setenv("SISR_VGG16_WEIGHTS", str(vgg_path))
    monkeypatch.setenv("SISR_LPIPS_WEIGHTS", str(lin_path))
    assert find_lpips_weights() == (vgg_path, lin_path)
    monkeypatch.delenv("SISR_LPIPS_WEIGHTS")
    cached_lin = isolated_cache / "weights" / "lpips-vgg-v0.1.pth"
    cached_lin.parent.mkdir(parents=True)
    cached_lin.write_bytes(lin_path.read_bytes())
    assert find_lpips_weights() == (vgg_path, cached_lin)
    assert lpips_weights_available()


def test_downloads_only_when_asked(isolated_cache, weight_files, monkeypatch, tmp_path):
    vgg_path, lin_path, vgg, lins = weight_files
    site = tmp_path / "site"
    site.mkdir()
    (site / "vgg16.pth").write_bytes(vgg_path.read_bytes())
    (site / "vgg.pth").write_bytes(lin_path.read_bytes())
    digest = hashlib.sha256(vgg_path.read_bytes()).hexdigest()
    with serve_directory(site) as server:
        monkeypatch.setattr(
            lpips_module, "VGG16_WEIGHTS", Resource(server.url("vgg16.pth"), digest, "vgg16-397923af.pth")
        )
        monkeypatch.setattr(
            lpips_module, "LPIPS_LIN_WEIGHTS", Resource(server.url("vgg.pth"), None, "lpips-vgg-v0.1.pth")
        )
        with pytest.raises(SisrError, match="downloading is off"):
            LPIPS.pretrained()
        metric = LPIPS.pretrained(download=True)
    assert (isolated_cache / "weights" / "vgg16-397923af.pth").is_file()
    assert (isolated_cache / "weights" / "lpips-vgg-v0.1.pth.sha256").is_file()  # trust on first use
    x, y = images(9, n=1), images(10, n=1)
    with torch.no_grad():
        torch.testing.assert_close(metric(x, y), reference_lpips(x, y, vgg, lins), rtol=1e-5, atol=1e-5)


# --- fine-tuning validation --------------------------------------------------


def test_validation_lpips_is_the_mean_over_the_set_of_rounded_outputs(metric):
    from sisr.train.gan import validation_lpips
    from sisr.train.validation import ValidationSet

    hrs = [np.asarray(images(20 + i, n=1)[0].permute(1, 2, 0).mul(255).round().byte()) for i in range(2)]
    pairs = [(f"{i}", images(30 + i, n=1, side=16), hr) for i, hr in enumerate(hrs)]
    upscale = torch.nn.Upsample(scale_factor=2, mode="nearest")
    got = validation_lpips(upscale, ValidationSet("tiny", 2, pairs), metric, torch.device("cpu"))
    expected = []
    with torch.no_grad():
        for _, lr, hr in pairs:
            sr = upscale(lr).mul(255).round() / 255
            expected.append(metric(sr, torch.from_numpy(hr).permute(2, 0, 1)[None].float() / 255).item())
    assert got == pytest.approx(float(np.mean(expected)), rel=1e-6)


def test_finetune_logs_val_lpips_only_when_the_weights_are_given(setup, weight_files, isolated_cache, caplog):
    caplog.set_level("INFO", logger="sisr")
    vgg_path, lin_path, _, _ = weight_files
    finetune(
        _values(setup, gan={"lpips_vgg16_weights": str(vgg_path), "lpips_weights": str(lin_path)}), progress_bar=False
    )
    records = [json.loads(line) for line in (setup["out"] / "log.jsonl").read_text().splitlines()]
    assert records[0]["event"] == "start" and records[0]["lpips"] is True
    lpips_records = [r for r in records if r["event"] == "val_lpips"]
    assert [r["step"] for r in lpips_records] == [r["step"] for r in records if r["event"] == "val"] == [2, 4]
    assert all(0 < r["lpips"] < 10 and math.isfinite(r["lpips"]) for r in lpips_records)
    assert "LPIPS skipped" not in caplog.text and "validation LPIPS" in caplog.text


def test_finetune_with_a_missing_lpips_file_fails_before_training(setup, weight_files, isolated_cache, tmp_path):
    gan = {"lpips_vgg16_weights": str(weight_files[0]), "lpips_weights": str(tmp_path / "missing-lin.pth")}
    with pytest.raises(SisrError, match="missing-lin.pth: lin-layer weight file for LPIPS not found"):
        finetune(_values(setup, gan=gan), progress_bar=False)
    assert not (setup["out"] / "log.jsonl").exists()
