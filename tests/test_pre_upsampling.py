"""SRCNN and VDSR: the papers' sizes, bicubic inside, HR-space layers, exact tiling, self-describing files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sisr import count_parameters, create_model, load_model, save_model
from sisr.imaging import matlab_imresize
from sisr.inference import prepare_model, receptive_field, upscale
from sisr.models import SRCNN, VDSR, build_model, get_preset


def weights(network: nn.Module) -> int:
    """Kernel entries only: the papers count weights, without the biases."""
    return sum(p.numel() for p in network.parameters() if p.ndim == 4)


def paper_weights(channels: int, layers: list[tuple[int, int]]) -> int:
    """Weights of a plain stack of convolutions from the papers' layer lists: (kernel size, filters) per layer."""
    total, inputs = 0, channels
    for kernel, filters in layers:
        total += kernel * kernel * inputs * filters
        inputs = filters
    return total


# --- the papers' sizes --------------------------------------------------------------------------


def test_srcnn_base_network_has_the_2014_papers_8032_weights():
    # Dong et al. 2014: f1 = 9, f2 = 1, f3 = 5, n1 = 64, n2 = 32, one (Y) channel: "8,032 parameters".
    srcnn = SRCNN(3, kernel_sizes=(9, 1, 5), num_filters=64, mapping_filters=32, num_channels=1)
    assert weights(srcnn) == paper_weights(1, [(9, 64), (1, 32), (5, 1)]) == 8_032
    assert count_parameters(srcnn) == 8_032 + 64 + 32 + 1 == 8_129  # with the three layers' biases


def test_srcnn_955_has_the_papers_57184_weights():
    # The larger 9-5-5 network of the journal version (its best), as the srcnn presets build it.
    srcnn = SRCNN(3, kernel_sizes=(9, 5, 5), num_filters=64, mapping_filters=32, num_channels=1)
    assert weights(srcnn) == paper_weights(1, [(9, 64), (5, 32), (5, 1)]) == 57_184
    assert count_parameters(srcnn) == 57_184 + 97 == 57_281


def test_vdsr_has_the_papers_665k_weights():
    # Kim et al. 2016: d = 20 layers; the first reads the image, 18 are 64 filters of 3 x 3 x 64, the last one
    # 3 x 3 x 64 filter: 664,704 weights, the "665K" of later papers' tables; 1,217 biases.
    vdsr = VDSR(2, num_channels=1)
    assert weights(vdsr) == paper_weights(1, [(3, 64)] * 19 + [(3, 1)]) == 664_704
    assert count_parameters(vdsr) == 664_704 + 19 * 64 + 1 == 665_921


def test_the_rgb_presets_sizes():
    # sisr works on RGB: three input and output channels instead of Y alone.
    for scale in (2, 3, 4):
        assert count_parameters(create_model(f"srcnn-x{scale}").network) == 69_251
        assert count_parameters(create_model(f"vdsr-x{scale}").network) == 668_227
    assert weights(create_model("srcnn-x4").network) == paper_weights(3, [(9, 64), (5, 32), (5, 3)])
    assert weights(create_model("vdsr-x4").network) == paper_weights(3, [(3, 64)] * 19 + [(3, 3)])


# --- pre-upsampling -----------------------------------------------------------------------------


def small(arch: str, scale: int) -> nn.Module:
    torch.manual_seed(scale)
    if arch == "srcnn":
        return SRCNN(scale, kernel_sizes=(9, 5, 5), num_filters=8, mapping_filters=4).eval()
    return VDSR(scale, num_filters=8, num_layers=5).eval()


@pytest.mark.parametrize("arch", ["srcnn", "vdsr"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_is_scale_times_the_lr_input(arch, scale):
    with torch.inference_mode():
        for height, width in [(5, 7), (2, 2)]:
            assert small(arch, scale)(torch.rand(1, 3, height, width)).shape == (1, 3, height * scale, width * scale)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_vdsr_learns_the_residual_over_matlab_bicubic(scale):
    vdsr = small("vdsr", scale)
    x = torch.rand(2, 3, 6, 5)
    last = vdsr.body[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        torch.testing.assert_close(vdsr(x), matlab_imresize(x, scale=scale), rtol=0, atol=0)
        vdsr.global_skip = False
        assert vdsr(x).abs().max() == 0  # without the skip, the layers' own (here zero) output alone


def test_srcnn_runs_on_the_matlab_bicubic_image():
    # 1x1 kernels passing each colour straight through: the network's output is its bicubic input (clipped at 0).
    srcnn = SRCNN(4, kernel_sizes=(1, 1, 1), num_filters=3, mapping_filters=3)
    with torch.no_grad():
        for conv in (srcnn.conv1, srcnn.conv2, srcnn.conv3):
            conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            conv.bias.zero_()
        x = torch.rand(1, 3, 7, 6)
        torch.testing.assert_close(srcnn(x), matlab_imresize(x, scale=4).clamp(min=0), rtol=0, atol=0)


@pytest.mark.parametrize("arch", ["srcnn", "vdsr"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_receptive_field_counts_the_bicubic_kernel_and_hr_layers(arch, scale):
    network = small(arch, scale).double()
    radius = receptive_field(network)
    size = 2 * radius + 9
    centre = size // 2
    torch.manual_seed(0)
    image = torch.rand(1, 3, size, size, dtype=torch.float64) * 0.8 + 0.1
    changed = image.clone()
    changed[0, :, centre, centre] += 0.05
    with torch.inference_mode():
        moved = (network(image) != network(changed)).any(dim=1)[0]
    rows, columns = torch.nonzero(moved, as_tuple=True)
    reach = max((rows // scale - centre).abs().max(), (columns // scale - centre).abs().max())
    assert reach == radius


def test_receptive_field_of_the_presets():
    # 9-5-5 reaches 4 + 2 + 2 = 8 HR pixels, 20 3x3 layers 20: 8 / s and 20 / s LR pixels (rounded by where
    # they land), then bicubic's taps up to 2 LR pixels further, fewer where a sample falls on a pixel (x3).
    assert [receptive_field(create_model(f"srcnn-x{s}").network) for s in (2, 3, 4)] == [6, 4, 4]
    assert [receptive_field(create_model(f"vdsr-x{s}").network) for s in (2, 3, 4)] == [12, 8, 7]


def gradient_photo(height: int, width: int) -> np.ndarray:
    rows, columns = np.mgrid[0:height, 0:width]
    channels = [128 + 90 * np.sin(rows / 2.5 + k) * np.cos(columns / 3.5 - k) + 9 * (rows % 5) for k in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("arch", ["srcnn", "vdsr"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_tiled_equals_untiled_with_the_default_overlap(arch, scale):
    prepared = prepare_model(small(arch, scale), "fp32", "cpu")
    image = gradient_photo(21, 17)
    whole = upscale(prepared, image)
    assert len(np.unique(whole)) > 15
    for tile in (5, 8):
        tiled = upscale(prepared, image, tile=tile, tile_batch=4)
        assert np.abs(tiled.astype(int) - whole).max() <= 1, tile
        assert (tiled != whole).mean() < 1e-3, tile


# --- presets and files --------------------------------------------------------------------------


def test_presets_are_registered_for_each_scale():
    for scale in (2, 3, 4):
        assert get_preset(f"srcnn-x{scale}").spec.args == {
            "scale": scale,
            "kernel_sizes": [9, 5, 5],
            "num_filters": 64,
            "mapping_filters": 32,
        }
        assert get_preset(f"vdsr-x{scale}").spec.args == {"scale": scale, "num_filters": 64, "num_layers": 20}


@pytest.mark.parametrize(
    "preset, overrides",
    [
        ("srcnn-x3", {"num_filters": 16, "mapping_filters": 8}),
        ("vdsr-x2", {"num_filters": 8, "num_layers": 4, "global_skip": False}),
    ],
)
def test_weight_file_round_trip(preset, overrides, tmp_path):
    model = create_model(preset, **overrides)
    path = save_model(model, tmp_path / "net.safetensors")
    loaded = load_model(path)
    assert type(loaded.network) is type(model.network) and loaded.spec == model.spec
    assert loaded.info.receptive_field == receptive_field(model.network)
    x = torch.rand(1, 3, 5, 6)
    with torch.inference_mode():
        assert torch.equal(loaded.network(x), model.network.eval()(x))


def test_bad_arguments_are_errors_naming_them():
    from sisr import SisrError

    with pytest.raises(SisrError, match="three odd kernel sizes.*not \\[9, 5\\]"):
        build_model("srcnn", {"scale": 2, "kernel_sizes": [9, 5]})
    with pytest.raises(SisrError, match="three odd kernel sizes.*not \\[9, 4, 5\\]"):
        build_model("srcnn", {"scale": 2, "kernel_sizes": [9, 4, 5]})
    with pytest.raises(SisrError, match="at least 2 layers"):
        build_model("vdsr", {"scale": 2, "num_layers": 1})
