"""Large images: tiles assembled as integers, streamed to a tiled TIFF, automatic tiling; all equal to in-memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sisr import SisrError, create_model
from sisr.cli import main
from sisr.image_io import read_image, write_image
from sisr.inference import prepare_model, upscale, upscale_to_tiff

tifffile = pytest.importorskip("tifffile")


@pytest.fixture(scope="module")
def tiny():
    """A tiny trained-looking x2 network, prepared once (fused CPU blocks included)."""
    torch.manual_seed(0)
    model = create_model("edsr-baseline-x2", num_blocks=1, num_filters=8).eval()
    with torch.no_grad():
        for module in model.network.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.bias.uniform_(-0.05, 0.05)
    return prepare_model(model, "fp32", "cpu")


def photo(height: int, width: int, channels: int = 3, dtype=np.uint8) -> np.ndarray:
    """Smooth gradients plus noise: edges and texture that a flat field would lack."""
    rng = np.random.default_rng(height * 7 + width)
    rows, columns = np.mgrid[0:height, 0:width]
    planes = [(rows * (3 + c) + columns * (5 - c)) % 256 for c in range(channels)]
    image = np.clip(np.stack(planes, axis=2) + rng.integers(-30, 31, (height, width, channels)), 0, 255)
    if dtype == np.uint16:
        return (image * 257).astype(np.uint16)
    return image.astype(np.uint8)


def test_a_600x500_image_streamed_to_tiff_equals_the_in_memory_result(tiny, tmp_path):
    image = photo(500, 600)
    expected = upscale(tiny, image, tile=128, device="cpu")
    path = upscale_to_tiff(tiny, image, tmp_path / "big.tif", tile=128, device="cpu")
    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages[0]
        assert page.is_tiled and page.shape == (1000, 1200, 3) and page.dtype == np.uint8
        np.testing.assert_array_equal(page.asarray(), expected)
    np.testing.assert_array_equal(read_image(path), expected)  # Pillow reads the tiled file too
    # Tiled with the receptive field as overlap: the same as one untiled pass (to within rounding).
    untiled = upscale(tiny, image, device="cpu")
    assert np.abs(expected.astype(int) - untiled).max() <= 1 and (expected != untiled).mean() < 1e-4


@pytest.mark.parametrize(
    "channels, dtype", [(1, np.uint8), (2, np.uint8), (4, np.uint8), (3, np.uint16), (4, np.uint16)]
)
def test_grey_alpha_and_16_bit_stream_too(tiny, tmp_path, channels, dtype):
    image = photo(45, 70, channels, dtype)
    if channels == 1:
        image = image[:, :, 0]
    path = upscale_to_tiff(tiny, image, tmp_path / "out.tiff", tile=32, device="cpu")  # 2 x 3 tiles
    expected = upscale(tiny, image, tile=32, device="cpu")
    back = tifffile.imread(path)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, expected)


def test_streaming_refuses_what_it_cannot_write(tiny, tmp_path):
    image = photo(20, 20)
    with pytest.raises(SisrError, match="must be a TIFF"):
        upscale_to_tiff(tiny, image, tmp_path / "out.png", device="cpu")
    with pytest.raises(SisrError, match="not tensors"):
        upscale_to_tiff(tiny, torch.rand(1, 3, 20, 20), tmp_path / "out.tif", device="cpu")
    (tmp_path / "there.tif").write_bytes(b"old")
    with pytest.raises(SisrError, match="already exists"):
        upscale_to_tiff(tiny, image, tmp_path / "there.tif", device="cpu")
    assert (tmp_path / "there.tif").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["there.tif"]  # no half-written files left


def test_band_canvas_holds_only_its_rows(tiny):
    from sisr.inference.image_kinds import Canvas, to_source

    source = to_source(photo(40, 30))
    band = Canvas(source, 2, rows=(16, 24))
    assert band.pixels.shape == (16, 60, 3)  # 8 LR rows of output, not 40


def test_large_images_are_tiled_automatically_and_identically(tiny, monkeypatch):
    import importlib

    upscale_module = importlib.import_module("sisr.inference.upscale")  # the package's `upscale` is the function
    image = photo(50, 60)
    untiled = upscale(tiny, image, device="cpu")
    calls = []
    forward = tiny.network.forward
    monkeypatch.setattr(tiny.network, "forward", lambda x: calls.append(x.shape) or forward(x))
    monkeypatch.setattr(upscale_module, "WHOLE_IMAGE_PIXELS", 40 * 40)
    monkeypatch.setattr(upscale_module, "AUTO_TILE", 32)
    auto = upscale(tiny, image, device="cpu")
    assert len(calls) == 4  # 2 x 2 tiles of at most 32 x 32
    assert np.abs(auto.astype(int) - untiled).max() <= 1 and (auto != untiled).mean() < 1e-3
    calls.clear()
    upscale(tiny, photo(40, 40), device="cpu")
    assert len(calls) == 1  # at the limit: whole


def test_cli_streams_tiff_when_asked_and_refuses_other_formats(tmp_path, capsys):
    from sisr import save_model

    torch.manual_seed(0)
    weights = save_model(create_model("edsr-baseline-x2", num_blocks=1, num_filters=8), tmp_path / "tiny.safetensors")
    image = photo(90, 70)
    write_image(tmp_path / "in.png", image)
    assert (
        main(
            [
                "upscale",
                str(tmp_path / "in.png"),
                "-o",
                str(tmp_path / "out.tif"),
                "--model",
                str(weights),
                "--tile",
                "32",
                "--stream",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    with tifffile.TiffFile(tmp_path / "out.tif") as tiff:
        assert tiff.pages[0].is_tiled
        streamed = tiff.asarray()
    from sisr import load_model

    expected = upscale(load_model(str(weights)), image, tile=32, device="cpu")
    np.testing.assert_array_equal(streamed, expected)
    status = main(
        [
            "upscale",
            str(tmp_path / "in.png"),
            "-o",
            str(tmp_path / "out.png"),
            "--model",
            str(weights),
            "--stream",
            "--device",
            "cpu",
        ]
    )
    assert status == 1 and "--stream writes tiled TIFF only" in capsys.readouterr().err


def test_cli_streams_large_tiff_outputs_without_being_asked(tmp_path, monkeypatch):
    import sisr.inference.streaming as streaming

    write_image(tmp_path / "in.png", photo(30, 40))
    monkeypatch.setattr(streaming, "STREAM_BYTES", 30 * 2 * 40 * 2 * 3 - 1)  # one byte less than the output
    assert (
        main(
            [
                "upscale",
                str(tmp_path / "in.png"),
                "-o",
                str(tmp_path / "out.tif"),
                "--model",
                "bicubic",
                "--scale",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    with tifffile.TiffFile(tmp_path / "out.tif") as tiff:
        assert tiff.pages[0].is_tiled
    monkeypatch.setattr(streaming, "STREAM_BYTES", 30 * 2 * 40 * 2 * 3)
    assert (
        main(
            [
                "upscale",
                str(tmp_path / "in.png"),
                "-o",
                str(tmp_path / "small.tif"),
                "--model",
                "bicubic",
                "--scale",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    with tifffile.TiffFile(tmp_path / "small.tif") as tiff:
        assert not tiff.pages[0].is_tiled  # written whole, by Pillow


def test_cli_self_ensemble_is_the_mean_of_eight_passes(tmp_path):
    from sisr import save_model
    from sisr.inference.ensemble import self_ensemble

    torch.manual_seed(0)
    model = create_model("edsr-baseline-x2", num_blocks=1, num_filters=8)
    weights = save_model(model, tmp_path / "tiny.safetensors")
    image = photo(12, 15)
    write_image(tmp_path / "in.png", image)
    assert (
        main(
            [
                "upscale",
                str(tmp_path / "in.png"),
                "-o",
                str(tmp_path / "plus.png"),
                "--model",
                str(weights),
                "--self-ensemble",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    ensemble = self_ensemble(model.eval())
    assert ensemble.name == "edsr-baseline-x2+" and ensemble.info.receptive_field == model.info.receptive_field
    expected = upscale(ensemble, image, device="cpu")
    plain = upscale(model, image, device="cpu")
    result = read_image(tmp_path / "plus.png")
    np.testing.assert_array_equal(result, expected)
    assert (result != plain).mean() > 0.1  # the ensemble is not the single pass
