"""The networks as the papers specify them: sizes, shapes, and the building blocks' definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from sisr import SisrError, SRModel, build_model, count_parameters, create_model, list_presets
from sisr.models import Discriminator, ModelSpec, Upsampler, WeightNormConv2d, preset_spec
from sisr.models.edsr import ResBlock

# Published parameter counts (EDSR paper / official code, WDSR reference code, SRGAN).
PARAMETERS = {
    "edsr-baseline-x2": 1_369_859,
    "edsr-baseline-x3": 1_554_499,
    "edsr-baseline-x4": 1_517_571,
    "wdsr-a-16-x2": 1_190_100,
    "wdsr-b-32-x4": 615_088,
    "srresnet-x4": 1_550_659,
}
LARGE_EDSR = {"edsr-x2": 40_729_603, "edsr-x3": 43_680_003, "edsr-x4": 43_089_923}


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_parameter_counts_match_the_published_models(name):
    assert count_parameters(create_model(name).network) == PARAMETERS[name]


def test_srresnet_counts_batch_norm_statistics_separately():
    model = create_model("srresnet-x4").network
    statistics = sum(v.numel() for k, v in model.state_dict().items() if k.endswith(("running_mean", "running_var")))
    # 33 batch norms (2 per block + 1 after the body) of 64 channels, mean and variance each.
    assert statistics == 33 * 64 * 2
    assert count_parameters(model) + statistics == 1_554_883


@pytest.mark.parametrize("name", sorted(LARGE_EDSR))
def test_large_edsr_size_and_output_shape(name):
    model = create_model(name).eval()
    assert count_parameters(model.network) == LARGE_EDSR[name]
    scale = int(name[-1])
    with torch.inference_mode():
        output = model(torch.rand(1, 3, 3, 2))
    assert output.shape == (1, 3, 3 * scale, 2 * scale)


# Networks of residual blocks, cut to one block; SRCNN and VDSR (no blocks) are in test_pre_upsampling.py.
SMALL_PRESETS = [p for p in list_presets() if p.name not in LARGE_EDSR and "num_blocks" in p.args]


@pytest.mark.parametrize("preset", SMALL_PRESETS, ids=lambda p: p.name)
def test_every_preset_enlarges_by_its_scale(preset):
    # The output shape comes from the upsampling stages; one residual block keeps the test fast.
    model = create_model(preset.name, num_blocks=1).eval()
    with torch.inference_mode():
        output = model(torch.rand(2, 3, 5, 7))
    assert output.shape == (2, 3, 5 * preset.scale, 7 * preset.scale)
    assert torch.isfinite(output).all()


def pixel_shuffle_by_definition(x: np.ndarray, s: int) -> np.ndarray:
    """out[c, h*s + i, w*s + j] = in[c*s*s + i*s + j, h, w], one element at a time."""
    channels, height, width = x.shape
    out = np.zeros((channels // (s * s), height * s, width * s), dtype=x.dtype)
    for c in range(channels // (s * s)):
        for h in range(height):
            for w in range(width):
                for i in range(s):
                    for j in range(s):
                        out[c, h * s + i, w * s + j] = x[c * s * s + i * s + j, h, w]
    return out


@pytest.mark.parametrize("scale", [2, 3])
def test_pixel_shuffle_follows_its_definition(scale):
    x = np.random.default_rng(scale).standard_normal((2 * scale * scale, 3, 4)).astype(np.float32)
    upsampler = Upsampler(scale, channels=2)
    shuffle = upsampler[1]
    assert isinstance(shuffle, torch.nn.PixelShuffle)
    np.testing.assert_array_equal(shuffle(torch.from_numpy(x)[None])[0].numpy(), pixel_shuffle_by_definition(x, scale))


def test_upsampler_builds_x4_and_x8_from_x2_stages():
    assert [m.upscale_factor for m in Upsampler(4, 8) if isinstance(m, torch.nn.PixelShuffle)] == [2, 2]
    assert [m.upscale_factor for m in Upsampler(8, 8) if isinstance(m, torch.nn.PixelShuffle)] == [2, 2, 2]
    assert [m.upscale_factor for m in Upsampler(3, 8) if isinstance(m, torch.nn.PixelShuffle)] == [3]


@pytest.mark.parametrize("patch", [64, 96, 128])
def test_discriminator_gives_one_logit_per_image(patch):
    model = Discriminator().eval()
    with torch.inference_mode():
        logits = model(torch.rand(2, 3, patch, patch))
    assert logits.shape == (2, 1)


def test_discriminator_sees_a_6x6_map_of_a_96_patch():
    # Four stride-2 convolutions: 96 / 16 = 6, the size the paper's dense layer was built for.
    model = Discriminator().eval()
    with torch.inference_mode():
        features = model.features(torch.rand(1, 3, 96, 96))
    assert features.shape == (1, 512, 6, 6)
    assert model.classifier[1].in_features == 512 * 6 * 6


def test_weight_norm_kernel_is_g_times_v_over_its_norm():
    torch.manual_seed(0)
    conv = WeightNormConv2d(4, 5, 3)
    with torch.no_grad():
        conv.weight_g.mul_(torch.linspace(0.5, 2.0, 5).view(-1, 1, 1, 1))
    v = conv.weight_v.detach().numpy().astype(np.float64)
    g = conv.weight_g.detach().numpy().astype(np.float64)
    expected = g * v / np.sqrt((v**2).sum(axis=(1, 2, 3), keepdims=True))
    np.testing.assert_allclose(conv.weight.detach().numpy(), expected, rtol=1e-5, atol=1e-7)
    x = torch.rand(1, 4, 6, 6)
    reference = F.conv2d(x, torch.from_numpy(expected).float(), conv.bias, padding=1)
    torch.testing.assert_close(conv(x), reference, rtol=1e-5, atol=1e-6)


def test_weight_norm_starts_as_the_plain_initial_kernel():
    conv = WeightNormConv2d(3, 8, 5)
    torch.testing.assert_close(conv.weight_g.detach().flatten(), conv.weight_v.detach().flatten(1).norm(dim=1))
    torch.testing.assert_close(conv.weight.detach(), conv.weight_v.detach(), rtol=1e-6, atol=1e-7)
    assert {name for name, _ in conv.named_parameters()} == {"weight_g", "weight_v", "bias"}


def test_edsr_residual_scaling_is_applied():
    torch.manual_seed(0)
    block = ResBlock(8, res_scale=0.1).eval()
    x = torch.rand(1, 8, 5, 5)
    with torch.no_grad():
        body = block.body(x)
        torch.testing.assert_close(block(x), x + 0.1 * body)
    large = create_model("edsr-x2", num_blocks=1, num_filters=8)
    assert large.network.body[0].res_scale == 0.1
    assert create_model("edsr-baseline-x2").network.body[0].res_scale == 1.0


# --- the model object -------------------------------------------------------------------------


def test_create_model_describes_the_preset_with_its_overrides():
    model = create_model("wdsr-b-16-x4", num_blocks=2)
    assert isinstance(model, SRModel) and not isinstance(model, torch.nn.Module)
    assert (
        model.spec
        == preset_spec("wdsr-b-16-x4", num_blocks=2)
        == ModelSpec(
            "wdsr", {"scale": 4, "block": "b", "num_filters": 32, "num_blocks": 2, "expansion": 6, "linear": 0.8}
        )
    )
    assert (model.name, model.scale, model.info.source, model.info.path) == ("wdsr-b-16-x4", 4, "preset", None)
    assert model.info.summary() == "wdsr-b-16-x4 (wdsr, x4)"
    assert len(model.network.body) == 2
    assert model.eval() is model and not model.network.training
    assert model.train() is model and model.network.training


def test_build_model_gives_a_plain_network_for_a_spec():
    spec = preset_spec("edsr-baseline-x2", num_blocks=1)
    network = build_model(spec)
    assert isinstance(network, torch.nn.Module) and not hasattr(network, "sisr_spec")
    assert count_parameters(network) == count_parameters(build_model(spec.arch, spec.args))
    assert spec.scale == network.scale == 2
    with pytest.raises(SisrError, match="unknown architecture 'nope'"):
        build_model("nope", {})
    with pytest.raises(SisrError, match="unknown model preset 'edsr-basline-x2'.*edsr-baseline-x2"):
        create_model("edsr-basline-x2")


def test_the_papers_presets_use_the_papers_upsampler_and_skip():
    # The ablation's arguments are left to their defaults, so preset specs (and files saved from them) are unchanged.
    for preset in list_presets():
        assert "upsampler" not in preset.args and "global_skip" not in preset.args, preset.name
    edsr = create_model("edsr-baseline-x2", num_blocks=1).network
    wdsr = create_model("wdsr-b-16-x2", num_blocks=1).network
    assert edsr.global_skip and isinstance(edsr.tail[0], Upsampler)
    assert wdsr.skip is not None and isinstance(wdsr.tail[1], torch.nn.PixelShuffle)
