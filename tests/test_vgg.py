"""sisr.models.vgg: torchvision's VGG19 `features`, rebuilt, loaded by key name, frozen.

Weight files here are made by the test (random weights in torchvision's
layout); downloads go to a server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from httpserver import closed_port_url, serve_directory
from sisr.download import Resource
from sisr.errors import SisrError
from sisr.models import vgg
from sisr.models.vgg import (
    VGG19_LAYER_INDICES,
    VGG19FeatureExtractor,
    cached_weights_path,
    feature_layer_index,
    find_vgg19_weights,
)

# torchvision's vgg19().features: the convolutions' indices per block, written
# out by hand (each conv is followed by its ReLU, each block by a max-pool).
CONV_INDICES_PER_BLOCK = [[0, 2], [5, 7], [10, 12, 14, 16], [19, 21, 23, 25], [28, 30, 32, 34]]
CHANNELS_PER_BLOCK = [64, 128, 256, 512, 512]
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
CONV2_2, CONV5_4 = 7, 34


def torchvision_layout_state_dict(last_conv: int = CONV5_4, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random He-initialised convs up to `last_conv`, keyed as torchvision's file is, plus classifier keys."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    in_channels = 3
    for convs, channels in zip(CONV_INDICES_PER_BLOCK, CHANNELS_PER_BLOCK):
        for index in convs:
            if index > last_conv:
                break
            std = (2 / (9 * in_channels)) ** 0.5
            state[f"features.{index}.weight"] = torch.randn(channels, in_channels, 3, 3, generator=generator) * std
            state[f"features.{index}.bias"] = torch.randn(channels, generator=generator) * 0.1
            in_channels = channels
    # The real classifier is 25088 -> 4096 -> 4096 -> 1000; small stand-ins suffice: it is never loaded.
    state["classifier.0.weight"] = torch.randn(16, 8, generator=generator)
    state["classifier.0.bias"] = torch.randn(16, generator=generator)
    state["classifier.6.weight"] = torch.randn(10, 16, generator=generator)
    return state


def reference_features(x: torch.Tensor, state: dict[str, torch.Tensor], last_conv: int, relu: bool) -> torch.Tensor:
    """VGG19 written out with torch.nn.functional, stopping at conv `last_conv` (with or without its ReLU)."""
    x = (x - IMAGENET_MEAN) / IMAGENET_STD
    for convs in CONV_INDICES_PER_BLOCK:
        for index in convs:
            x = F.conv2d(x, state[f"features.{index}.weight"], state[f"features.{index}.bias"], padding=1)
            if index == last_conv:
                return F.relu(x) if relu else x
            x = F.relu(x)
        x = F.max_pool2d(x, kernel_size=2, stride=2)
    raise AssertionError(f"no convolution at index {last_conv}")


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """An empty sisr cache and no $SISR_VGG19_WEIGHTS."""
    monkeypatch.setenv("SISR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SISR_VGG19_WEIGHTS", raising=False)
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def full_weights(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """All sixteen convolutions (80 MB): only for tests that need conv5_4."""
    state = torchvision_layout_state_dict()
    path = tmp_path_factory.mktemp("vgg") / "vgg19-test.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def shallow_weights(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """The convolutions up to conv2_2, enough for vgg22."""
    state = torchvision_layout_state_dict(last_conv=CONV2_2, seed=2)
    path = tmp_path_factory.mktemp("vgg") / "vgg19-shallow.pth"
    torch.save(state, path)
    return path, state


# --- layers ------------------------------------------------------------------


def test_layer_indices_are_torchvisions():
    expected = {
        "conv1_1": 0,
        "relu1_1": 1,
        "pool1": 4,
        "relu2_1": 6,
        "conv2_2": 7,
        "relu2_2": 8,
        "pool2": 9,
        "relu3_1": 11,
        "conv3_4": 16,
        "pool3": 18,
        "relu4_1": 20,
        "pool4": 27,
        "relu5_1": 29,
        "conv5_4": 34,
        "relu5_4": 35,
        "pool5": 36,
    }
    assert {name: VGG19_LAYER_INDICES[name] for name in expected} == expected
    assert len(VGG19_LAYER_INDICES) == 37  # torchvision's vgg19().features has 37 modules


@pytest.mark.parametrize(
    "layer, before_activation, index, last_type, channels",
    [
        ("vgg22", False, 8, nn.ReLU, 128),
        ("vgg22", True, 7, nn.Conv2d, 128),
        ("vgg54", False, 35, nn.ReLU, 512),
        ("vgg54", True, 34, nn.Conv2d, 512),
    ],
)
def test_only_the_layers_up_to_the_chosen_one_are_built(layer, before_activation, index, last_type, channels):
    assert feature_layer_index(layer, before_activation) == index
    features = VGG19FeatureExtractor(layer, before_activation).features
    assert len(features) == index + 1
    assert isinstance(features[-1], last_type)
    assert isinstance(features[4], nn.MaxPool2d)
    convs = [module for module in features if isinstance(module, nn.Conv2d)]
    assert convs[-1].out_channels == channels


@pytest.mark.parametrize("layer", ["vgg13", "vgg25", "vgg61", "vgg", "conv5_4", "vgg540"])
def test_a_layer_that_vgg19_lacks_is_refused_by_name(layer):
    with pytest.raises(SisrError, match=layer):
        VGG19FeatureExtractor(layer)


@pytest.mark.parametrize(
    "layer, before_activation, shape",
    [
        ("vgg22", False, (1, 128, 48, 48)),
        ("vgg22", True, (1, 128, 48, 48)),
        ("vgg54", False, (1, 512, 6, 6)),
    ],
)
def test_output_shapes_of_a_96_pixel_patch(layer, before_activation, shape):
    extractor = VGG19FeatureExtractor(layer, before_activation)
    with torch.no_grad():
        assert extractor(torch.rand(1, 3, 96, 96)).shape == shape


def test_before_activation_keeps_the_negative_responses(shallow_weights):
    path, _ = shallow_weights
    x = torch.rand(2, 3, 32, 32)
    before = VGG19FeatureExtractor.pretrained("vgg22", before_activation=True, weights=path)(x)
    after = VGG19FeatureExtractor.pretrained("vgg22", before_activation=False, weights=path)(x)
    assert (before < 0).any() and (after >= 0).all()
    torch.testing.assert_close(after, before.clamp(min=0))


def test_non_rgb_input_is_refused():
    with pytest.raises(ValueError, match=r"\(1, 1, 8, 8\)"):
        VGG19FeatureExtractor("vgg22")(torch.rand(1, 1, 8, 8))


# --- loading torchvision's layout ---------------------------------------------


@pytest.mark.parametrize("layer, last_conv", [("vgg22", CONV2_2), ("vgg54", CONV5_4)])
@pytest.mark.parametrize("before_activation", [False, True])
def test_features_equal_a_functional_vgg19_with_the_same_weights(full_weights, layer, last_conv, before_activation):
    path, state = full_weights
    extractor = VGG19FeatureExtractor.pretrained(layer, before_activation, weights=path)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    expected = reference_features(x, state, last_conv, relu=not before_activation)
    actual = extractor(x)
    assert expected.abs().max() > 0.1  # not a vanishing signal that would hide errors
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())


def test_the_state_dict_holds_torchvisions_keys_only():
    keys = set(VGG19FeatureExtractor("vgg22").state_dict())
    assert keys == {f"features.{i}.{kind}" for i in (0, 2, 5, 7) for kind in ("weight", "bias")}


def test_a_missing_key_is_named_with_the_file(tmp_path, shallow_weights):
    _, state = shallow_weights
    state = {key: value for key, value in state.items() if key != "features.7.bias"}
    path = tmp_path / "truncated.pth"
    torch.save(state, path)
    with pytest.raises(SisrError, match=r"features\.7\.bias is missing") as caught:
        VGG19FeatureExtractor.pretrained("vgg22", weights=path)
    assert str(path) in str(caught.value)


def test_only_the_keys_of_the_chosen_depth_are_required(shallow_weights):
    _, state = shallow_weights  # nothing beyond conv2_2
    VGG19FeatureExtractor("vgg22").load_torchvision_state_dict(state)
    with pytest.raises(SisrError, match=r"features\.10\.weight is missing"):
        VGG19FeatureExtractor("vgg54").load_torchvision_state_dict(state)


def test_a_mis_shaped_key_is_named_with_both_shapes(tmp_path, shallow_weights):
    _, state = shallow_weights
    state = {**state, "features.7.weight": torch.zeros(128, 64, 3, 3)}
    path = tmp_path / "misshaped.pth"
    torch.save(state, path)
    expected = r"features\.7\.weight has shape \(128, 64, 3, 3\), VGG19 needs \(128, 128, 3, 3\)"
    with pytest.raises(SisrError, match=expected):
        VGG19FeatureExtractor.pretrained("vgg22", weights=path)


def test_a_pickled_module_is_refused_not_executed(tmp_path):
    path = tmp_path / "module.pth"
    torch.save(nn.Conv2d(3, 64, 3), path)
    with pytest.raises(SisrError, match="not a readable PyTorch state dict"):
        VGG19FeatureExtractor.pretrained("vgg22", weights=path)


@pytest.mark.parametrize("content", [b"not a torch file", None])
def test_a_file_that_is_no_state_dict_is_refused(tmp_path, content):
    path = tmp_path / "bad.pth"
    if content is None:
        torch.save([torch.zeros(1)], path)
    else:
        path.write_bytes(content)
    with pytest.raises(SisrError, match=str(path)):
        VGG19FeatureExtractor.pretrained("vgg22", weights=path)


# --- frozen ------------------------------------------------------------------


def test_frozen_no_gradient_reaches_vgg_but_the_input_gets_one(shallow_weights):
    path, _ = shallow_weights
    extractor = VGG19FeatureExtractor.pretrained("vgg22", weights=path)
    assert all(not parameter.requires_grad for parameter in extractor.parameters())
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    extractor(x).square().mean().backward()
    assert all(parameter.grad is None for parameter in extractor.parameters())
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_stays_in_eval_mode_when_the_parent_trains():
    parent = nn.ModuleDict({"generator": nn.Conv2d(3, 3, 1), "vgg": VGG19FeatureExtractor("vgg22")})
    parent.train()
    assert parent["generator"].training
    assert not parent["vgg"].training
    assert not any(module.training for module in parent["vgg"].modules())


# --- where the weights come from ------------------------------------------------


def test_the_published_file_is_torchvisions_vgg19():
    weights = vgg.VGG19_WEIGHTS
    # torchvision names its files after the first 8 hex digits of their sha256.
    assert weights.filename == "vgg19-dcbb9e9d.pth"
    assert weights.sha256.startswith("dcbb9e9d") and len(weights.sha256) == 64
    assert weights.url == "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"


def test_the_cache_path_is_under_sisr_cache_weights(isolated_cache):
    assert cached_weights_path() == isolated_cache / "weights" / "vgg19-dcbb9e9d.pth"


def test_an_explicit_path_wins_over_the_environment(isolated_cache, monkeypatch, shallow_weights, tmp_path):
    path, _ = shallow_weights
    other = tmp_path / "other.pth"
    other.write_bytes(b"x")
    monkeypatch.setenv("SISR_VGG19_WEIGHTS", str(other))
    assert find_vgg19_weights(path) == path
    assert find_vgg19_weights() == other


def test_a_missing_explicit_or_environment_file_is_an_error_not_a_fallback(isolated_cache, monkeypatch, tmp_path):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(SisrError, match="nowhere.pth"):
        find_vgg19_weights(missing)
    monkeypatch.setenv("SISR_VGG19_WEIGHTS", str(missing))
    with pytest.raises(SisrError, match=r"\$SISR_VGG19_WEIGHTS=.*nowhere\.pth"):
        find_vgg19_weights()


@pytest.fixture
def served_weights(tmp_path):
    """A server offering a (vgg22-deep) torchvision-layout file under the published name."""
    site = tmp_path / "site"
    site.mkdir()
    state = torchvision_layout_state_dict(last_conv=CONV2_2, seed=3)
    torch.save(state, site / "vgg19-dcbb9e9d.pth")
    digest = hashlib.sha256((site / "vgg19-dcbb9e9d.pth").read_bytes()).hexdigest()
    with serve_directory(site) as server:
        yield server, state, digest


def test_downloads_into_the_cache_verifies_and_reuses(isolated_cache, monkeypatch, served_weights):
    server, state, digest = served_weights
    monkeypatch.setattr(vgg, "VGG19_WEIGHTS", Resource(server.url("vgg19-dcbb9e9d.pth"), digest, "vgg19-dcbb9e9d.pth"))
    extractor = VGG19FeatureExtractor.pretrained("vgg22")
    cached = isolated_cache / "weights" / "vgg19-dcbb9e9d.pth"
    assert cached.is_file()
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(extractor(x), reference_features(x, state, CONV2_2, relu=True))
    VGG19FeatureExtractor.pretrained("vgg22", before_activation=True)
    assert len(server.requests) == 1


def test_a_download_that_fails_its_checksum_leaves_nothing_in_the_cache(isolated_cache, monkeypatch, served_weights):
    server, _, digest = served_weights
    published = "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44"
    monkeypatch.setattr(
        vgg, "VGG19_WEIGHTS", Resource(server.url("vgg19-dcbb9e9d.pth"), published, "vgg19-dcbb9e9d.pth")
    )
    with pytest.raises(SisrError, match="checksum mismatch") as caught:
        VGG19FeatureExtractor.pretrained("vgg22")
    assert published in str(caught.value) and digest in str(caught.value)
    # Nothing but the (empty) lock file that downloads of this file take turns on.
    assert [path.name for path in (isolated_cache / "weights").iterdir()] == [".vgg19-dcbb9e9d.pth.lock"]


def test_offline_the_error_says_which_file_to_put_where(isolated_cache, monkeypatch):
    url = closed_port_url("vgg19-dcbb9e9d.pth")
    monkeypatch.setattr(vgg, "VGG19_WEIGHTS", Resource(url, vgg.VGG19_WEIGHTS.sha256, "vgg19-dcbb9e9d.pth"))
    with pytest.raises(SisrError) as caught:
        VGG19FeatureExtractor.pretrained("vgg54")
    message = str(caught.value)
    assert url in message
    assert str(isolated_cache / "weights" / "vgg19-dcbb9e9d.pth") in message
    assert "SISR_VGG19_WEIGHTS" in message


def test_with_downloads_off_nothing_is_requested(isolated_cache, monkeypatch, served_weights):
    server, _, digest = served_weights
    url = server.url("vgg19-dcbb9e9d.pth")
    monkeypatch.setattr(vgg, "VGG19_WEIGHTS", Resource(url, digest, "vgg19-dcbb9e9d.pth"))
    with pytest.raises(SisrError) as caught:
        find_vgg19_weights(download=False)
    message = str(caught.value)
    assert url in message and str(isolated_cache / "weights" / "vgg19-dcbb9e9d.pth") in message
    assert server.requests == []
