"""EDSR's and WDSR's upsampler choice and global-skip switch: sizes, reach, tiling, weights, the ablation's exactness."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from sisr import SisrError, count_parameters, create_model, load_model, save_model
from sisr.inference import prepare_model, receptive_field, upscale
from sisr.models import UPSAMPLERS, build_model
from sisr.models.common import TransposedUpsampler

SCALES = [2, 3, 4]


def small(arch: str, scale: int, **args) -> nn.Module:
    """A network small enough for a test: EDSR with 2 blocks of 8 filters, WDSR-B with 2 blocks."""
    sizes = {"num_filters": 8, "num_blocks": 2} if arch == "edsr" else {"num_blocks": 2}
    torch.manual_seed(scale)
    return build_model(arch, {"scale": scale, **sizes, **args}).eval()


def randomized(network: nn.Module) -> nn.Module:
    """Weights moved away from their initial values, so no output hides behind a zero bias."""
    torch.manual_seed(7)
    with torch.no_grad():
        for tensor in network.parameters():
            tensor.add_(torch.randn_like(tensor) * 0.05)
    return network


def photo(height: int, width: int) -> np.ndarray:
    """A smooth image with edges and texture: a real photo's kind of content, made here."""
    rows, columns = np.mgrid[0:height, 0:width]
    channels = [
        128 + 100 * np.sin(rows / 3.0 + k) * np.cos(columns / 4.5 - k) + 20 * ((rows + 2 * columns + k) % 7)
        for k in range(3)
    ]
    return np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)


VARIANTS = list(itertools.product(["edsr", "wdsr"], UPSAMPLERS, SCALES))


@pytest.mark.parametrize("arch, upsampler, scale", VARIANTS)
def test_each_upsampler_enlarges_by_exactly_the_scale(arch, upsampler, scale):
    network = small(arch, scale, upsampler=upsampler)
    with torch.inference_mode():
        for height, width in [(5, 7), (1, 1), (6, 3)]:
            out = network(torch.rand(2, 3, height, width))
            assert out.shape == (2, 3, height * scale, width * scale)


def measured_reach(network: nn.Module, scale: int) -> int:
    """Change one LR pixel; how far (in LR pixels) the farthest output pixel that moves lies from it."""
    radius = receptive_field(network)
    size = 2 * radius + 9
    centre = size // 2
    network = network.double()
    torch.manual_seed(0)
    image = torch.rand(1, 3, size, size, dtype=torch.float64) * 0.8 + 0.1
    changed = image.clone()
    changed[0, :, centre, centre] += 0.05
    with torch.inference_mode():
        moved = (network(image) != network(changed)).any(dim=1)[0]
    rows, columns = torch.nonzero(moved, as_tuple=True)
    return int(max((rows // scale - centre).abs().max(), (columns // scale - centre).abs().max()))


@pytest.mark.parametrize("arch, upsampler, scale", VARIANTS)
def test_receptive_field_is_what_one_changed_pixel_reaches(arch, upsampler, scale):
    network = randomized(small(arch, scale, upsampler=upsampler))
    assert measured_reach(network, scale) == receptive_field(network)


def test_the_transposed_upsampler_reaches_as_far_as_the_subpixel_one():
    # Its kernel is 3s wide at stride s: one LR pixel either side, like the 3x3 sub-pixel conv.
    for scale in SCALES:
        assert receptive_field(small("edsr", scale, upsampler="transposed")) == receptive_field(small("edsr", scale))


@pytest.mark.parametrize("scale", [2, 3])
def test_a_transposed_stage_is_a_subpixel_conv_with_its_weights_rearranged(scale):
    # Shi et al. (2016): stride-s deconvolution with a 3s kernel == 3x3 conv to s*s*C channels + shuffle.
    # Output (q*s + r) takes input q + m - 1 through tap (2 - m) * s + r of the transposed kernel.
    torch.manual_seed(0)
    channels = 2
    (deconv,) = TransposedUpsampler(scale, channels)
    weight = deconv.weight.detach()  # (in, out, 3s, 3s)
    subpixel = torch.zeros(channels * scale * scale, channels, 3, 3)
    for out, row, column, m_row, m_column in itertools.product(
        range(channels), range(scale), range(scale), range(3), range(3)
    ):
        tap = weight[:, out, (2 - m_row) * scale + row, (2 - m_column) * scale + column]
        subpixel[out * scale * scale + row * scale + column, :, m_row, m_column] = tap
    bias = deconv.bias.detach().repeat_interleave(scale * scale)
    x = torch.rand(1, channels, 6, 5)
    expected = nn.functional.pixel_shuffle(nn.functional.conv2d(x, subpixel, bias, padding=1), scale)
    torch.testing.assert_close(deconv(x), expected, rtol=1e-5, atol=1e-6)


def plain(network: nn.Module) -> object:
    """The network prepared without the CPU's fused forms: tiling's exactness is the receptive field's."""
    return prepare_model(network, "fp32", "cpu", fuse=False)


@pytest.mark.parametrize("arch, upsampler, scale", VARIANTS)
def test_tiled_equals_untiled_with_the_default_overlap(arch, upsampler, scale):
    prepared = plain(randomized(small(arch, scale, upsampler=upsampler)))
    image = photo(23, 19)
    whole = upscale(prepared, image)
    assert len(np.unique(whole)) > 15  # not a flat field that any tiling would reproduce
    for tile in (5, 8):  # divide neither side: windows shifted at the edges
        tiled = upscale(prepared, image, tile=tile, tile_batch=4)
        # Equal up to the order of float additions, which convolutions of other sizes may change.
        assert np.abs(tiled.astype(int) - whole).max() <= 1, tile
        assert (tiled != whole).mean() < 1e-3, tile


@pytest.mark.parametrize("upsampler", UPSAMPLERS)
def test_edsr_runs_the_same_with_the_cpu_fast_paths(upsampler):
    network = randomized(small("edsr", 4, upsampler=upsampler))
    image = photo(20, 17)
    fused = upscale(prepare_model(network, "fp32", "cpu"), image)
    assert np.abs(fused.astype(int) - upscale(plain(network), image)).max() <= 1


@pytest.mark.parametrize("args", [{"upsampler": "transposed"}, {"upsampler": "nearest-conv"}, {"global_skip": False}])
def test_wdsr_variants_run_with_the_cpu_fast_paths(args):
    # Needs sisr.inference.fast._fold_wdsr_output to leave alone a WDSR whose branch ends are not conv + shuffle.
    network = randomized(small("wdsr", 2, **args))
    image = photo(12, 10)
    fused = upscale(prepare_model(network, "fp32", "cpu"), image)
    assert np.abs(fused.astype(int) - upscale(plain(network), image)).max() <= 1


# --- the default is today's network -------------------------------------------------------------


@pytest.mark.parametrize("arch", ["edsr", "wdsr"])
def test_the_default_keeps_the_published_keys_and_shapes(arch):
    default = small(arch, 4)
    explicit = small(arch, 4, upsampler="subpixel", global_skip=True)
    shapes = {key: tuple(value.shape) for key, value in default.state_dict().items()}
    assert shapes == {key: tuple(value.shape) for key, value in explicit.state_dict().items()}
    # The official EDSR keys of the x4 upsampler (two conv + shuffle stages) and WDSR's two branch ends.
    expected = {"tail.0.0.weight", "tail.0.2.weight", "tail.1.weight"} if arch == "edsr" else {"tail.0.weight_v"}
    assert expected <= set(shapes)
    if arch == "wdsr":
        assert shapes["skip.0.weight_v"] == (3 * 16, 3, 5, 5)


def test_the_bundled_weights_load_unchanged():
    model = load_model("default-x4")  # a file written before the choice existed: no upsampler in its spec
    assert "upsampler" not in model.spec.args and "global_skip" not in model.spec.args
    assert isinstance(model.network.tail[1], nn.PixelShuffle) and model.network.skip is not None
    assert receptive_field(model.network) == 1 + 16 + 1  # head, one 3x3 per WDSR-B block, tail


@pytest.mark.parametrize(
    "preset, args",
    [
        ("edsr-baseline-x3", {"upsampler": "transposed", "global_skip": False}),
        ("edsr-baseline-x2", {"upsampler": "nearest-conv"}),
        ("wdsr-b-16-x4", {"upsampler": "transposed"}),
        ("wdsr-a-16-x2", {"upsampler": "nearest-conv", "global_skip": False}),
    ],
)
def test_the_weight_file_records_the_choice(preset, args, tmp_path):
    model = create_model(preset, num_blocks=1, **args)
    randomized(model.network)
    path = save_model(model, tmp_path / "net.safetensors")
    loaded = load_model(path)
    assert loaded.spec == model.spec and {k: loaded.spec.args[k] for k in args} == args
    assert loaded.info.receptive_field == receptive_field(model.network)
    x = torch.rand(1, 3, 6, 5)
    with torch.inference_mode():
        assert torch.equal(loaded.network(x), model.network.eval()(x))


def test_an_unknown_upsampler_is_an_error_naming_the_choices():
    with pytest.raises(SisrError, match="upsampler must be one of subpixel, transposed, nearest-conv, not 'deconv'"):
        build_model("edsr", {"scale": 2, "upsampler": "deconv"})
    with pytest.raises(SisrError, match="upsampler"):
        create_model("wdsr-b-16-x2", upsampler="bilinear")


# --- the ablation switch ------------------------------------------------------------------------


@pytest.mark.parametrize("upsampler", UPSAMPLERS)
def test_edsr_without_global_skip_is_head_body_tail_in_series(upsampler):
    full = randomized(small("edsr", 2, upsampler=upsampler))
    ablated = small("edsr", 2, upsampler=upsampler, global_skip=False)
    ablated.load_state_dict(full.state_dict())  # the same tensors: the skip has none
    assert count_parameters(ablated) == count_parameters(full)
    x = torch.rand(1, 3, 7, 6)
    with torch.inference_mode():
        features = full.head(full.normalize(x))
        body_alone = full.normalize.inverse(full.tail(full.body(features)))
        with_skip = full.normalize.inverse(full.tail(features + full.body(features)))
        torch.testing.assert_close(ablated(x), body_alone, rtol=0, atol=0)
        torch.testing.assert_close(full(x), with_skip, rtol=0, atol=0)
        assert not torch.allclose(ablated(x), full(x), atol=1e-3)


@pytest.mark.parametrize("scale", SCALES)
def test_wdsr_without_global_skip_is_the_main_branch_alone(scale):
    full = randomized(small("wdsr", scale))
    ablated = small("wdsr", scale, global_skip=False)
    kept = {k: v for k, v in full.state_dict().items() if not k.startswith("skip.")}
    ablated.load_state_dict(kept)  # strict: exactly the skip's tensors are gone
    # The 5x5 branch: 3 -> 3*s*s channels, weight norm's v (the kernel) and g (one per output), and biases.
    outputs = 3 * scale * scale
    assert count_parameters(full) - count_parameters(ablated) == 5 * 5 * 3 * outputs + outputs + outputs
    x = torch.rand(1, 3, 6, 7)
    with torch.inference_mode():
        normalized = full.normalize(x)
        main = full.tail(full.body(full.head(normalized)))
        torch.testing.assert_close(ablated(x), full.normalize.inverse(main), rtol=0, atol=0)
        torch.testing.assert_close(full(x), full.normalize.inverse(main + full.skip(normalized)))
