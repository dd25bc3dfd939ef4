"""One image straight to its file: encoded while the network runs, with the bytes of a write after it."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from sisr import SisrError, create_model, load_model, save_model
from sisr.cli import main
from sisr.image_io import read_image, write_image
from sisr.inference import prepare_model, streaming, upscale
from sisr.inference.pipeline import ConsumerThread
from sisr.inference.streaming import encodes_while_computing, upscale_to_file


@pytest.fixture(scope="module")
def tiny():
    """A small x2 network with biases, prepared once."""
    torch.manual_seed(0)
    model = create_model("edsr-baseline-x2", num_blocks=1, num_filters=8).eval()
    with torch.no_grad():
        for module in model.network.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.bias.uniform_(-0.05, 0.05)
    return prepare_model(model, "fp32", "cpu")


def photo(height: int, width: int, channels: int = 3, dtype=np.uint8) -> np.ndarray:
    rng = np.random.default_rng(height * 7 + width + channels)
    rows, columns = np.mgrid[0:height, 0:width]
    planes = [(rows * (3 + c) + columns * (5 - c)) % 256 for c in range(channels)]
    image = np.clip(np.stack(planes, axis=2) + rng.integers(-30, 31, (height, width, channels)), 0, 255)
    image = (image * 257).astype(np.uint16) if dtype == np.uint16 else image.astype(np.uint8)
    return image[:, :, 0] if channels == 1 else image


@pytest.mark.parametrize(
    "suffix, channels, dtype",
    [
        (".png", 3, np.uint8),
        (".png", 4, np.uint8),
        (".png", 1, np.uint16),
        (".png", 3, np.uint16),
        (".tif", 2, np.uint16),
        (".tif", 3, np.uint8),
        (".jpg", 3, np.uint8),
        (".webp", 4, np.uint8),
    ],
)
def test_the_file_has_the_bytes_of_write_image_after_upscale(tiny, tmp_path, suffix, channels, dtype):
    image = photo(70, 45, channels, dtype)
    expected = write_image(tmp_path / f"after{suffix}", upscale(tiny, image, tile=16), png_level=4)
    width, height = upscale_to_file(tiny, image, tmp_path / f"during{suffix}", tile=16, png_level=4)
    assert (width, height) == (90, 140)
    assert (tmp_path / f"during{suffix}").read_bytes() == expected.read_bytes()


def test_rows_of_tiles_reach_the_encoder_before_the_network_is_done(tiny, tmp_path, monkeypatch):
    events: list[str] = []
    real = streaming.write_image_rows

    def watched(path, bands, *args, **kwargs):
        def logged():
            for number, band in enumerate(bands):
                events.append(f"encode {number}")
                yield band

        return real(path, logged(), *args, **kwargs)

    monkeypatch.setattr(streaming, "write_image_rows", watched)
    image = photo(100, 30)  # 5 rows of tiles
    upscale_to_file(tiny, image, tmp_path / "out.png", tile=20, on_tile=lambda done, total: events.append("tile"))
    # At most two finished rows wait for the encoder, so it has the first before the fifth is computed.
    assert events.index("encode 0") < len(events) - 1 - events[::-1].index("tile")
    assert events.count("tile") == 10 and events.count("encode 0") == 1
    assert np.array_equal(read_image(tmp_path / "out.png"), upscale(tiny, image, tile=20))


def test_a_stopped_run_leaves_no_file(tiny, tmp_path):
    def cancel(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        upscale_to_file(tiny, photo(100, 30), tmp_path / "out.png", tile=20, on_tile=cancel)
    assert list(tmp_path.iterdir()) == []


def test_an_encoder_that_fails_stops_the_network(tiny, tmp_path, monkeypatch):
    def failing(path, bands, *args, **kwargs):
        next(iter(bands))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(streaming, "write_image_rows", failing)
    tiles: list[int] = []
    with pytest.raises(OSError, match="No space left"):
        upscale_to_file(tiny, photo(200, 20), tmp_path / "out.tif", tile=10, on_tile=lambda d, t: tiles.append(d))
    assert len(tiles) < 20  # it did not compute every row of tiles for nobody


def test_profiles_and_refusals(tiny, tmp_path):
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    pil = Image.fromarray(photo(60, 20))
    pil.info["icc_profile"] = profile
    upscale_to_file(tiny, pil, tmp_path / "kept.png", tile=16)
    with Image.open(tmp_path / "kept.png") as written:
        assert written.info["icc_profile"] == profile
    with pytest.raises(SisrError, match="not tensors"):
        upscale_to_file(tiny, torch.rand(1, 3, 20, 20), tmp_path / "t.png")
    write_image(tmp_path / "exists.png", photo(4, 4))
    with pytest.raises(SisrError, match="already exists"):
        upscale_to_file(tiny, photo(60, 20), tmp_path / "exists.png", tile=16)


def test_which_outputs_are_encoded_during_the_network(tiny):
    info = tiny.info
    assert encodes_while_computing("a.png", info, 100, 30, 20)
    assert encodes_while_computing("a.TIFF", info, 100, 30, 20)
    assert not encodes_while_computing("a.jpg", info, 100, 30, 20)
    assert not encodes_while_computing("a.png", info, 100, 30, None)  # small: untiled, one band
    assert not encodes_while_computing("a.png", info, 20, 3000, 20)  # one row of tiles


def test_consumer_thread_hands_items_on_in_order_and_returns_errors():
    got: list[int] = []
    consumer = ConsumerThread(lambda items: got.extend(items) or len(got))
    for number in range(50):
        consumer.put(number)
    assert consumer.finish() == 50 and got == list(range(50))

    def picky(items):
        for item in items:
            if item == 3:
                raise ValueError("three")

    consumer = ConsumerThread(picky, depth=1)
    with pytest.raises(ValueError, match="three"):
        for number in range(1000):
            consumer.put(number)
    assert number < 10

    cleaned = threading.Event()

    def tidy(items):
        try:
            for _ in items:
                pass
        finally:
            cleaned.set()

    consumer = ConsumerThread(tidy)
    consumer.put(1)
    consumer.abandon()
    assert cleaned.is_set()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("edsr-baseline-x2", num_blocks=1, num_filters=8)
    return save_model(model, tmp_path_factory.mktemp("weights") / "tiny-x2.safetensors")


def cli(*args) -> int:
    return main(["-q", "upscale", *map(str, args), "--precision", "fp32", "--device", "cpu"])


def test_cli_png_level_and_tiles_give_the_library_s_file(weights, tmp_path, capsys):
    source = write_image(tmp_path / "in.png", photo(64, 40))
    assert cli(source, "-o", tmp_path / "out.png", "--model", weights, "--tile", "16", "--png-level", "3") == 0
    model = prepare_model(load_model(weights), "fp32", "cpu")
    expected = write_image(tmp_path / "expected.png", upscale(model, read_image(source), tile=16), png_level=3)
    assert (tmp_path / "out.png").read_bytes() == expected.read_bytes()
    assert cli(source, "-o", tmp_path / "bad.png", "--model", weights, "--png-level", "10") == 1
    assert "--png-level=10: expected a PNG compression level from 0" in capsys.readouterr().err


def test_cli_overlapped_batches_write_what_sequential_ones_do(weights, tmp_path):
    folder = tmp_path / "in"
    for number in range(8):
        image = photo(20 + 9 * number, 30 - number, 4 if number == 3 else 3)
        write_image(folder / f"image-{number}.{('png', 'jpg', 'tif', 'png')[number % 4]}", image)
    runs = {}
    for way in ("--overlap", "--no-overlap"):
        out = tmp_path / way.strip("-")
        assert cli(folder, "-o", out, "--model", weights, "--tile", "24", way) == 0  # the larger ones stream
        runs[way] = {path.name: path.read_bytes() for path in sorted(out.iterdir())}
    assert len(runs["--overlap"]) == 8 and runs["--overlap"] == runs["--no-overlap"]
