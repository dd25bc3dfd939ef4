"""Tiled inference: the tile plan, the receptive field, and tiled == untiled."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from sisr import SisrError, create_model
from sisr.inference import plan_tiles, receptive_field, split_axis, upscale
from sisr.inference.ensemble import SelfEnsemble
from sisr.models import build_model


def network(name: str, **overrides):
    """The plain nn.Module of a preset: tiling works on networks as they are."""
    return create_model(name, **overrides).network


def astronaut(height: int, width: int) -> np.ndarray:
    """A real photo (face, suit, flag): edges and texture that random images lack."""
    data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(data.astronaut()[60 : 60 + height, 160 : 160 + width])


# --- the plan -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "length, tile, overlap", list(itertools.product([1, 5, 31, 64, 130], [1, 4, 16, 64, 200], [0, 3, 10]))
)
def test_tiles_cover_the_image_with_full_context(length, tile, overlap):
    spans = split_axis(length, tile, overlap)
    assert spans[0].core_start == 0 and spans[-1].core_stop == length
    for before, after in zip(spans, spans[1:]):
        assert before.core_stop == after.core_start  # no gaps, no double writes
    sizes = [s.core_stop - s.core_start for s in spans]
    assert max(sizes) <= tile and max(sizes) - min(sizes) <= 1  # balanced, never larger than asked
    window = min(max(sizes) + 2 * overlap, length)
    for span in spans:
        assert span.window_stop - span.window_start == window  # one size: tiles batch together
        assert 0 <= span.window_start <= span.core_start < span.core_stop <= span.window_stop <= length
        # Context on each side: the full overlap, or everything up to the image's own edge.
        assert span.core_start - span.window_start >= overlap or span.window_start == 0
        assert span.window_stop - span.core_stop >= overlap or span.window_stop == length


def test_windows_at_the_edges_shift_inside_the_image():
    spans = split_axis(130, 128, 4)
    assert [(s.core_start, s.core_stop) for s in spans] == [(0, 65), (65, 130)]
    assert [(s.window_start, s.window_stop) for s in spans] == [(0, 73), (57, 130)]


def test_no_tile_is_one_window_over_the_whole_image():
    (only,) = plan_tiles(37, 51, None, 8)
    assert (only.rows.window_start, only.rows.window_stop, only.columns.window_stop) == (0, 37, 51)


def test_bad_tile_settings_are_errors():
    with pytest.raises(SisrError, match="tile size 0"):
        split_axis(10, 0, 2)
    with pytest.raises(SisrError, match="tile overlap -1"):
        split_axis(10, 4, -1)


# --- the receptive field ------------------------------------------------------------------------

SMALL_NETWORKS = {
    "edsr-x2": lambda: network("edsr-baseline-x2", num_blocks=2),
    "edsr-x3": lambda: network("edsr-baseline-x3", num_blocks=1),
    "edsr-x4": lambda: network("edsr-baseline-x4", num_blocks=1, num_filters=16),
    "wdsr-a-x2": lambda: network("wdsr-a-16-x2", num_blocks=2),
    "wdsr-b-x3": lambda: network("wdsr-b-16-x3", num_blocks=3),
    "wdsr-skip-only-x4": lambda: network("wdsr-b-16-x4", num_blocks=0),
    "srresnet-x4": lambda: network("srresnet-x4", num_blocks=1, num_filters=16),
    "msrresnet-x4": lambda: build_model("msrresnet", {"scale": 4, "num_blocks": 1, "num_filters": 16}),
    "bicubic-x3": lambda: build_model("bicubic", {"scale": 3}),
    "self-ensemble-wdsr-x2": lambda: SelfEnsemble(network("wdsr-a-16-x2", num_blocks=1)),
}


def test_receptive_field_of_the_published_architectures():
    # EDSR baseline: head 1 + 16 blocks x 2 convs + body conv 1 + upsampler conv 1 + tail (1 HR pixel) -> 36.
    assert receptive_field(network("edsr-baseline-x4")) == 36
    assert receptive_field(network("edsr-x2")) == 68  # 32 blocks
    # WDSR-B: head 1 + one 3x3 per block + tail conv 1.
    assert receptive_field(network("wdsr-b-32-x4")) == 34
    # SRResNet: 9x9 head 4 + 32 + 1 + stage conv 1, then a 9x9 conv at x4 (4 HR pixels) and one at x2.
    assert receptive_field(network("srresnet-x4")) == 40
    assert receptive_field(build_model("bicubic", {"scale": 4})) == 2


def measured_receptive_field(model: nn.Module) -> int:
    """Change one LR pixel; the farthest output pixel that moves, in LR pixels."""
    radius = receptive_field(model)
    size = 2 * radius + 9
    centre = size // 2
    torch.manual_seed(0)
    model = model.double().eval()
    image = torch.rand(1, 3, size, size, dtype=torch.float64) * 0.8 + 0.1
    changed = image.clone()
    changed[0, :, centre, centre] += 0.05
    with torch.inference_mode():
        moved = (model(image) != model(changed)).any(dim=1)[0]
    rows, columns = torch.nonzero(moved, as_tuple=True)
    scale = model.scale
    return int(max((rows // scale - centre).abs().max(), (columns // scale - centre).abs().max()))


@pytest.mark.parametrize("name", sorted(SMALL_NETWORKS))
def test_receptive_field_is_what_one_changed_pixel_reaches(name):
    torch.manual_seed(0)
    model = SMALL_NETWORKS[name]()
    assert measured_receptive_field(model) == receptive_field(model)


def test_unknown_networks_need_an_explicit_overlap():
    class Doubler(nn.Module):
        scale = 2

        def forward(self, x):
            return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)

    with pytest.raises(SisrError, match="Doubler.*give the tile overlap"):
        upscale(Doubler(), np.zeros((8, 8, 3), np.uint8), tile=4, device="cpu")
    result = upscale(Doubler(), np.full((8, 8, 3), 7, np.uint8), tile=4, tile_overlap=0, device="cpu")
    assert result.shape == (16, 16, 3) and (result == 7).all()


# --- tiled == untiled ---------------------------------------------------------------------------

TILED_NETWORKS = ["edsr-x2", "edsr-x3", "wdsr-a-x2", "wdsr-b-x3", "srresnet-x4"]


@pytest.mark.parametrize("name", TILED_NETWORKS)
def test_tiled_equals_untiled_on_a_photo(name):
    torch.manual_seed(0)
    model = SMALL_NETWORKS[name]().eval()
    image = astronaut(33, 41)
    whole = upscale(model, image, device="cpu")
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    whole_float = upscale(model, tensor, device="cpu")
    assert len(np.unique(whole)) > 15  # not a flat field that any tiling would trivially reproduce
    for tile in (9, 23, 100):  # 9 and 23 divide neither side; 100 is larger than the image
        tiled = upscale(model, image, tile=tile, tile_batch=8, device="cpu")
        assert np.abs(tiled.astype(int) - whole).max() <= 1, tile
        assert (tiled != whole).mean() < 1e-3, tile
    tiled_float = upscale(model, tensor, tile=16, tile_batch=8, device="cpu")
    assert (tiled_float - whole_float).abs().max() < 1e-4


def test_tiled_equals_untiled_on_a_benchmark_image(benchmarks_dir):
    from sisr.image_io import read_image

    image = read_image(benchmarks_dir / "Set5" / "LR_bicubic" / "X4" / "butterfly.png")
    image = image[:40, :52]
    model = network("edsr-baseline-x4", num_blocks=2, num_filters=16).eval()
    whole = upscale(model, image, device="cpu")
    tiled = upscale(model, image, tile=17, device="cpu")
    assert np.abs(tiled.astype(int) - whole).max() <= 1


def test_too_little_overlap_shows_at_the_seams():
    # The check above can fail: with less context than the receptive field the tiles disagree.
    torch.manual_seed(0)
    model = SMALL_NETWORKS["edsr-x2"]().eval()
    image = astronaut(33, 41)
    whole = upscale(model, image, device="cpu")
    tiled = upscale(model, image, tile=8, tile_overlap=1, tile_batch=32, device="cpu")
    assert np.abs(tiled.astype(int) - whole).max() > 3


def test_the_network_never_sees_more_than_a_batch_of_windows():
    seen: list[tuple[int, ...]] = []

    class Spy(nn.Module):
        scale = 2

        def forward(self, x):
            seen.append(tuple(x.shape))
            return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)

    image = astronaut(50, 70)
    result = upscale(Spy(), image, tile=16, tile_overlap=3, tile_batch=2, device="cpu")
    np.testing.assert_array_equal(result[::2, ::2], image)
    # 4 x 5 tiles (cores of 12-13 x 14 pixels, balanced), with 3 pixels of context per side, two per call.
    assert seen == [(2, 3, 19, 20)] * 10
