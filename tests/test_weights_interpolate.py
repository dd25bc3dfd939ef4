"""Network interpolation: the ends are the networks themselves, the middle is linear in the kernels, and
networks of different specs are refused; the denoise strength table (a placeholder until measured)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from sisr import create_model
from sisr.errors import SisrError
from sisr.models.common import WeightNormConv2d
from sisr.weights.interpolate import (
    DENOISE_BY_QUALITY,
    denoise_strength_for_file,
    denoise_strength_for_quality,
    interpolate_networks,
)


def _pair(preset: str = "wdsr-b-16-x2", **args):
    torch.manual_seed(0)
    a = create_model(preset, **args)
    torch.manual_seed(1)
    return a, create_model(preset, **args)


def test_the_ends_are_the_networks_themselves():
    a, b = _pair(num_blocks=2)
    assert interpolate_networks(a, b, 0) is a
    assert interpolate_networks(a, b, 1.0) is b


def test_weight_normalised_kernels_and_plain_weights_move_on_a_straight_line():
    a, b = _pair(num_blocks=2)
    middle = interpolate_networks(a, b, 0.25)
    mine, first, second = (dict(m.network.named_modules()) for m in (middle, a, b))
    convs = [name for name, module in mine.items() if isinstance(module, WeightNormConv2d)]
    assert convs
    with torch.no_grad():
        for name in convs:
            expected = 0.75 * first[name].weight + 0.25 * second[name].weight
            torch.testing.assert_close(mine[name].weight, expected, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(mine[name].bias, 0.75 * first[name].bias + 0.25 * second[name].bias)
    assert middle.spec == a.spec and middle.scale == 2
    # The inputs are left as they were.
    assert not torch.equal(
        a.network.state_dict()[f"{convs[0]}.weight_v"], middle.network.state_dict()[f"{convs[0]}.weight_v"]
    )


def test_a_network_halfway_gives_outputs_between_the_two_ends():
    """Halfway, the output is nearer to each end's output than the two ends are to each other."""
    a, b = _pair("edsr-baseline-x2", num_blocks=1, num_filters=8)
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        ya, yb, ym = a(x), b(x), interpolate_networks(a, b, 0.5)(x)
    assert (ym - ya).abs().mean() < (yb - ya).abs().mean()
    assert (ym - yb).abs().mean() < (yb - ya).abs().mean()


def test_networks_of_different_specs_are_refused_with_the_difference_named():
    a = create_model("wdsr-b-16-x2", num_blocks=2)
    with pytest.raises(SisrError, match=r"differ in num_blocks 2 vs 3"):
        interpolate_networks(a, create_model("wdsr-b-16-x2", num_blocks=3), 0.5)
    with pytest.raises(SisrError, match=r"one is wdsr, the other edsr"):
        interpolate_networks(a, create_model("edsr-baseline-x2"), 0.5)
    with pytest.raises(SisrError, match="from 0 to 1"):
        interpolate_networks(a, a, 1.5)
    with pytest.raises(SisrError, match="from 0 to 1"):
        interpolate_networks(a, a, float("nan"))


def test_the_strength_follows_the_table_and_lossless_files_get_none(tmp_path):
    assert denoise_strength_for_quality(None) == 0.0
    for quality, strength in DENOISE_BY_QUALITY:
        assert denoise_strength_for_quality(quality) == pytest.approx(strength)
    strengths = [denoise_strength_for_quality(q) for q in range(1, 101)]
    assert all(a >= b for a, b in zip(strengths, strengths[1:]))  # coarser quantization, more denoising
    with pytest.raises(SisrError, match="from 1 to 100"):
        denoise_strength_for_quality(0)
    picture = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, "JPEG", quality=50)
    (tmp_path / "a.jpg").write_bytes(buffer.getvalue())
    Image.fromarray(picture).save(tmp_path / "a.png")
    assert denoise_strength_for_file(tmp_path / "a.jpg") == (denoise_strength_for_quality(50), 50)
    assert denoise_strength_for_file(tmp_path / "a.png") == (0.0, None)
