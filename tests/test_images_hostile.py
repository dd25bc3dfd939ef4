"""Hostile and broken images and configs (issue 18): refused in one line naming the file, never a traceback.

A file may declare far more pixels than it holds (a 778 KB PNG of 20000 x
20000 16-bit pixels), hold several frames where sisr upscales one, carry a
colour profile of another colour space, or be a config with a value no
training can use. Each case is tried as a user would meet it; the fuzzing
targets at the end mutate small valid files of every format (tests/fuzzing.py).
"""

from __future__ import annotations

import struct
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fuzzing import fuzz
from sisr.cli import main
from sisr.errors import SisrError
from sisr.image_io import MAX_INPUT_PIXELS, read_icc_profile, read_image, write_image
from sisr.train.config import load_config

# --- files that declare more than they hold --------------------------------------------------------


def deflated_zeros(size: int, block: int) -> bytes:
    """A zlib stream of `size` zero bytes, made from one compressed block repeated (a bomb in a second).

    After a full flush deflate starts afresh, so the same block compresses to
    the same bytes each time; the stream ends with an empty final block and
    the Adler-32 of everything.
    """
    compressor = zlib.compressobj(9)
    zeros = bytes(block)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert first[2:] == again and size % block == 0
    adler = 1
    for _ in range(size // block):
        adler = zlib.adler32(zeros, adler)
    return first + again * (size // block - 1) + b"\x03\x00" + struct.pack(">I", adler)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A valid 16-bit grey PNG of zeros: 800 MB of pixels in a 780 KB file (the issue's)."""
    row = 1 + 2 * width  # the filter byte, then the pixels
    rows_per_block = next(n for n in range(100, 0, -1) if height % n == 0)
    pixels = deflated_zeros(row * height, row * rows_per_block)
    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", pixels) + png_chunk(b"IEND", b"")
    )
    return path


def tiff_bomb(path: Path, width: int = 40000, height: int = 40000, tile: int = 1024) -> Path:
    """A valid tiled, deflated 16-bit grey TIFF whose 1600 tiles all point at one compressed tile of zeros.

    3.2 GB of pixels in 15 KB: TIFF lets tiles share their bytes.
    """
    data = zlib.compress(bytes(tile * tile * 2), 9)
    count = -(-width // tile) * -(-height // tile)
    offsets_at = 8 + len(data)
    counts_at = offsets_at + 4 * count
    ifd_at = counts_at + 4 * count
    short, long = 3, 4
    tags = [  # (tag, type, count, value or offset)
        (256, long, 1, width),
        (257, long, 1, height),
        (258, short, 1, 16),  # bits per sample
        (259, short, 1, 8),  # deflate
        (262, short, 1, 1),  # grey, 0 is black
        (277, short, 1, 1),  # samples per pixel
        (284, short, 1, 1),  # planar configuration: chunky
        (322, short, 1, tile),
        (323, short, 1, tile),
        (324, long, count, offsets_at),
        (325, long, count, counts_at),
        (339, short, 1, 1),  # unsigned integers
    ]
    ifd = struct.pack("<H", len(tags))
    for tag, kind, number, value in tags:
        packed = struct.pack("<HH", value, 0) if kind == short else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, number) + packed
    ifd += struct.pack("<I", 0)  # no next page
    offsets = struct.pack(f"<{count}I", *[8] * count)
    counts = struct.pack(f"<{count}I", *[len(data)] * count)
    path.write_bytes(b"II*\0" + struct.pack("<I", ifd_at) + data + offsets + counts + ifd)
    return path


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bombs")
    return {"png": png_bomb(folder / "bomb.png"), "tiff": tiff_bomb(folder / "bomb.tif")}


@pytest.mark.parametrize("kind, size", [("png", "20000x20000"), ("tiff", "40000x40000")])
def test_a_16_bit_bomb_is_refused_from_its_header_before_a_pixel_is_decoded(bombs, kind, size):
    tracemalloc.start()
    try:
        with pytest.raises(SisrError) as raised:
            read_image(bombs[kind])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(raised.value)
    assert "\n" not in message
    for fragment in (bombs[kind].name, size, "over the limit of 200 megapixels", "--max-pixels", "SISR_MAX_PIXELS"):
        assert fragment in message, message
    assert peak < 20 << 20  # the header only: 800 MB (PNG) and 3.2 GB (TIFF) of pixels never allocated


def photo(height: int = 20, width: int = 24, channels: int = 3, dtype=np.uint8) -> np.ndarray:
    """A smooth picture with noise: compresses like a photo, so the decoders have work to do."""
    rng = np.random.default_rng(height * 1000 + width * 10 + channels)
    rows, columns = np.mgrid[0:height, 0:width]
    planes = [(rows * 9 + columns * c * 5) % 200 for c in range(1, channels + 1)]
    image = np.stack(planes, axis=2) + rng.integers(0, 50, (height, width, channels))
    image = image.astype(dtype) * (257 if dtype == np.uint16 else 1)
    return image[:, :, 0] if channels == 1 else image


# Every format and bit depth sisr reads: the limit is read from each one's header.
LIMITED = {
    "rgb8.png": lambda path: write_image(path, photo()),
    "rgb16.png": lambda path: write_image(path, photo(dtype=np.uint16)),
    "grey16.png": lambda path: write_image(path, photo(channels=1, dtype=np.uint16)),
    "photo.jpg": lambda path: write_image(path, photo()),
    "rgb8.tif": lambda path: write_image(path, photo()),
    "rgba16.tif": lambda path: write_image(path, photo(channels=4, dtype=np.uint16)),
    "photo.webp": lambda path: write_image(path, photo()),
    "photo.bmp": lambda path: write_image(path, photo()),
    "photo.ppm": lambda path: write_image(path, photo()),
    "photo.gif": lambda path: Image.fromarray(photo()).save(path),
}


@pytest.mark.parametrize("name", sorted(LIMITED))
def test_the_limit_holds_for_every_format_and_bit_depth_and_is_overridable(tmp_path, monkeypatch, name):
    path = tmp_path / name
    LIMITED[name](path)
    assert read_image(path).shape[:2] == (20, 24)
    with pytest.raises(SisrError, match=rf"{name}: 24x20 pixels \(0.0 megapixels\) is over the limit of 0.0004"):
        read_image(path, max_pixels=400)
    assert read_image(path, max_pixels=480).shape[:2] == (20, 24)  # at the limit is within it
    monkeypatch.setenv("SISR_MAX_PIXELS", "479")
    with pytest.raises(SisrError, match="over the limit"):
        read_image(path)
    assert read_image(path, max_pixels=0).shape[:2] == (20, 24)  # 0: no limit, whatever the environment says


def test_the_default_limit_and_bad_settings():
    assert MAX_INPUT_PIXELS == 200_000_000  # a 16000 x 12000 scan (192 MP) passes; the bombs above do not
    with pytest.raises(SisrError, match="max_pixels=-1: expected a whole number of pixels"):
        read_image(Path(__file__), max_pixels=-1)


def test_pillows_own_guard_does_not_overrule_sisrs_limit(tmp_path, monkeypatch):
    """Pillow refuses 8-bit images over 179 MP (twice its global), below sisr's 200; sisr's holds, Pillow's comes back."""
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = tmp_path / "photo.jpg"
    Image.fromarray(photo()).save(path, icc_profile=profile)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow would refuse this 480-pixel image
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nor Pillow's DecompressionBombWarning
        assert read_image(path).shape == (20, 24, 3)
        assert read_icc_profile(path) == profile
    assert Image.MAX_IMAGE_PIXELS == 100
    with pytest.raises(SisrError, match="over the limit of 0.0003 megapixels"):
        read_image(path, max_pixels=300)


def run_cli(capsys, *args) -> tuple[int, str]:
    status = main([str(arg) for arg in args])
    return status, capsys.readouterr().err


def test_sisr_upscale_takes_max_pixels_and_refuses_bad_limits_before_any_work(tmp_path, capsys, monkeypatch):
    source = write_image(tmp_path / "photo.png", photo())
    common = ("--model", "bicubic", "--scale", "2")
    status, err = run_cli(capsys, "upscale", source, "-o", tmp_path / "a.png", *common, "--max-pixels", 100)
    assert status == 1 and len(err.strip().splitlines()) == 1
    assert "photo.png: 24x20 pixels (0.0 megapixels) is over the limit of 0.0001 megapixels" in err
    status, err = run_cli(capsys, "upscale", source, "-o", tmp_path / "b.png", *common, "--max-pixels", 480)
    assert status == 0, err
    status, err = run_cli(capsys, "upscale", source, "-o", tmp_path / "c.png", *common, "--max-pixels", -5)
    assert status == 1 and "--max-pixels -5: must not be negative (0 = no limit)" in err
    monkeypatch.setenv("SISR_MAX_PIXELS", "lots")
    status, err = run_cli(capsys, "upscale", source, "-o", tmp_path / "d.png", *common)
    assert status == 1 and "SISR_MAX_PIXELS='lots': expected a whole number of pixels" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.png", "photo.png"]


def test_a_bomb_in_a_batch_is_reported_and_the_images_after_it_are_upscaled(tmp_path, capsys, bombs):
    folder = tmp_path / "in"
    write_image(folder / "a.png", photo())
    (folder / "b.png").write_bytes(bombs["png"].read_bytes())
    write_image(folder / "c.png", photo(12, 10))
    status, err = run_cli(capsys, "upscale", folder, "-o", tmp_path / "out", "--model", "bicubic", "--scale", "2")
    assert status == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a-x2.png", "c-x2.png"]
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in err
    assert "b.png: 20000x20000 pixels (400.0 megapixels) is over the limit" in lines[0]
    assert lines[1] == "sisr upscale: error: 1 of 3 images failed"


@pytest.mark.parametrize(
    "error, expected",
    [
        (MemoryError(), "b.png: out of memory; try --tile 256"),
        (RuntimeError("a fault of sisr's own"), "b.png: failed (RuntimeError: a fault of sisr's own)"),
    ],
)
def test_any_failure_of_one_image_costs_only_that_image(tmp_path, capsys, monkeypatch, error, expected):
    import sisr.image_io

    real = sisr.image_io.read_image

    def failing_on_b(path, **options):
        if Path(path).name == "b.png":
            raise error
        return real(path, **options)

    monkeypatch.setattr(sisr.image_io, "read_image", failing_on_b)
    folder = tmp_path / "in"
    for name in ("a.png", "b.png", "c.png"):
        write_image(folder / name, photo())
    status, err = run_cli(capsys, "upscale", folder, "-o", tmp_path / "out", "--model", "bicubic", "--scale", "2")
    assert status == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a-x2.png", "c-x2.png"]
    lines = err.strip().splitlines()
    assert len(lines) == 2 and expected in lines[0], err
    assert lines[1] == "sisr upscale: error: 1 of 3 images failed"


# --- images of several frames --------------------------------------------------------------------


def frames(count: int = 3) -> list[Image.Image]:
    return [Image.fromarray(np.roll(photo(), 5 * index, axis=1)) for index in range(count)]


def save_animation(path: Path) -> None:
    first, *rest = frames()
    options = {"lossless": True} if path.suffix == ".webp" else {}
    first.save(path, save_all=True, append_images=rest, duration=100, loop=0, **options)


def save_pages16(path: Path) -> None:
    import tifffile

    with tifffile.TiffWriter(path) as tiff:
        for _ in range(2):
            tiff.write(photo(dtype=np.uint16), photometric="rgb")


SEVERAL_FRAMES = {
    "anim.gif": (save_animation, "an animated GIF of 3 frames"),
    "anim.png": (save_animation, "an animated PNG of 3 frames"),
    "anim.webp": (save_animation, "an animated WebP of 3 frames"),
    "pages.tif": (save_animation, "a TIFF of 3 pages"),
    "pages16.tif": (save_pages16, "a TIFF of 2 pages"),
}


@pytest.mark.parametrize("name", sorted(SEVERAL_FRAMES))
def test_an_image_of_several_frames_is_refused_by_name_not_read_from_its_first(tmp_path, capsys, name):
    save, what = SEVERAL_FRAMES[name]
    save(tmp_path / name)
    with pytest.raises(SisrError, match=f"{name}: {what}; sisr upscales still images"):
        read_image(tmp_path / name)
    status, err = run_cli(
        capsys, "upscale", tmp_path / name, "-o", tmp_path / "up.png", "--model", "bicubic", "--scale", 2
    )
    assert status == 1 and len(err.strip().splitlines()) == 1 and what in err
    assert not (tmp_path / "up.png").exists()


def test_one_frame_gifs_and_tiffs_with_previews_are_read(tmp_path):
    import tifffile

    Image.fromarray(photo()).save(tmp_path / "still.gif")
    assert read_image(tmp_path / "still.gif").shape == (20, 24, 3)
    with tifffile.TiffWriter(tmp_path / "preview.tif") as tiff:
        tiff.write(photo(dtype=np.uint16), photometric="rgb")
        tiff.write(photo(10, 12, dtype=np.uint16), photometric="rgb", subfiletype=1)  # a reduced-size copy
    np.testing.assert_array_equal(read_image(tmp_path / "preview.tif"), photo(dtype=np.uint16))


def test_a_folder_with_a_gif_upscales_it_to_png_and_names_what_it_leaves_out(tmp_path, capsys, caplog):
    folder = tmp_path / "in"
    write_image(folder / "a.png", photo())
    Image.fromarray(photo()).save(folder / "b.gif")
    (folder / "notes.txt").write_text("not an image")
    with caplog.at_level("INFO", logger="sisr"):
        status, err = run_cli(capsys, "upscale", folder, "-o", tmp_path / "out", "--model", "bicubic", "--scale", 2)
    assert status == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a-x2.png", "b-x2.png"]
    assert read_image(tmp_path / "out" / "b-x2.png").shape == (40, 48, 3)
    assert f"{folder}: left out notes.txt (not image files sisr reads)" in caplog.messages


# --- colour profiles of another colour space ------------------------------------------------------


def icc_header(space: bytes) -> bytes:
    """The smallest ICC profile a reader accepts: the 128-byte header (colour space at bytes 16-19), no tags."""
    header = bytearray(128)
    struct.pack_into(">I", header, 0, 132)  # size, with the tag count
    header[8:12] = bytes([4, 0x30, 0, 0])  # version 4.3
    header[12:16] = b"prtr"  # an output (printer) profile, as CMYK ones are
    header[16:20] = space
    header[20:24] = b"Lab "  # the connection space
    header[36:40] = b"acsp"  # the signature every profile carries
    return bytes(header) + struct.pack(">I", 0)


def test_a_cmyk_jpegs_profile_is_not_put_on_its_rgb_upscale(tmp_path, capsys):
    cmyk_profile = icc_header(b"CMYK")
    source = tmp_path / "print.jpg"
    Image.fromarray(photo(channels=4), "CMYK").save(source, quality=95, icc_profile=cmyk_profile)
    with Image.open(source) as image:
        assert image.mode == "CMYK" and image.info["icc_profile"] == cmyk_profile
    for output in ("up.png", "up.jpg", "up.tif"):
        status, err = run_cli(capsys, "upscale", source, "-o", tmp_path / output, "--model", "bicubic", "--scale", 2)
        assert status == 0, err
        assert read_image(tmp_path / output).shape == (40, 48, 3)
        assert read_icc_profile(tmp_path / output) is None, output


def test_a_grey_jpegs_rgb_profile_is_not_put_on_its_grey_upscale(tmp_path, capsys):
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = tmp_path / "grey.jpg"
    Image.fromarray(photo(channels=1)).save(source, quality=95, icc_profile=srgb)
    assert read_icc_profile(source) == srgb
    for output in ("up.png", "up.jpg", "up.tif"):
        status, err = run_cli(capsys, "upscale", source, "-o", tmp_path / output, "--model", "bicubic", "--scale", 2)
        assert status == 0, err
        assert read_image(tmp_path / output).shape == (40, 48)
        assert read_icc_profile(tmp_path / output) is None, output


# --- configs --------------------------------------------------------------------------------------

HOSTILE_CONFIGS = {
    "syntax": (b"[train\nsteps = 3\n", "not valid TOML (Expected ']'"),
    "wrong type": (b'[train]\nsteps = "many"\n', "train.steps must be an integer, not 'many'"),
    "huge number": (b"[train]\nsteps = 1" + b"0" * 30 + b"\n", "train.steps must fit in 64 bits"),
    "huge float": (b"[optim]\nlr = 1e400\n", "optim.lr must be a finite number, not inf"),
    "not a number": (b"[optim]\nlr = nan\n", "optim.lr must be a finite number, not nan"),
    "table for a value": (b"[train]\nsteps = {a = 1}\n", "train.steps must be an integer, not {'a': 1}"),
    "table in the arguments": (b"[model]\nargs = {num_blocks = {a = 1}}\n", "model.args.num_blocks must be a number"),
    "list of tables": (b"[[train]]\nsteps = 1\n", "[train] must be a table of options"),
    "not UTF-8": (b'[train]\nout = "\xff\xfe"\n', "not UTF-8 text (byte 0xff on line 2)"),
    "NUL in a path": (b'[train]\nout = "a\\u0000b"\n', "train.out holds a NUL character"),
    "nested deep": (b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", "not valid TOML (nested too deeply)"),
    "seed numpy cannot take": (b"[train]\nseed = -1\n", "train.seed must be from 0 to 4294967295, not -1"),
    "preset not a name": (b'[model]\npreset = "edsr-x5"\n', "model.preset: unknown model preset 'edsr-x5'"),
    "out of range": (b"[train]\nema = 1.5\n", "train.ema must be in [0, 1)"),
    "too large": (b"#" * (2 << 20), "too large to be a configuration file"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_CONFIGS))
def test_a_broken_or_hostile_config_is_one_line_naming_the_file_and_the_key(tmp_path, capsys, case):
    data, expected = HOSTILE_CONFIGS[case]
    path = tmp_path / "run.toml"
    path.write_bytes(data)
    with pytest.raises(SisrError) as raised:
        load_config(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message, message
    status, err = run_cli(capsys, "train", path, "--print-config")
    assert status == 1 and err == f"sisr train: error: {message}\n"


# --- fuzzing: FUZZ_TARGETS (tests/fuzzing.py, benchmarks/fuzz_loaders.py) -------------------------


def _seeds(folder: Path, files: dict[str, object]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, write in files.items():
        path = folder / name
        write(path)  # type: ignore[operator]
        paths.append(path)
    return paths


def png_seeds(folder: Path) -> list[Path]:
    def palette(path: Path) -> None:
        Image.fromarray(photo()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(path, transparency=0)

    return _seeds(
        folder,
        {
            "rgb8.png": lambda path: write_image(path, photo()),
            "palette.png": palette,
            "grey16.png": lambda path: write_image(path, photo(channels=1, dtype=np.uint16)),
            "rgba16.png": lambda path: write_image(path, photo(channels=4, dtype=np.uint16)),
        },
    )


def jpeg_seeds(folder: Path) -> list[Path]:
    from PIL import ImageCms

    def phone(path: Path) -> None:
        exif = Image.Exif()
        exif[0x0112] = 6
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
        Image.fromarray(photo()).save(path, quality=90, exif=exif, icc_profile=srgb)

    def progressive_grey(path: Path) -> None:
        Image.fromarray(photo(channels=1)).save(path, quality=80, progressive=True)

    return _seeds(folder, {"phone.jpg": phone, "grey.jpg": progressive_grey})


def tiff_seeds(folder: Path) -> list[Path]:
    import tifffile

    def deflated16(path: Path) -> None:
        tifffile.imwrite(path, photo(dtype=np.uint16), photometric="rgb", compression="zlib", tile=(16, 16))

    return _seeds(
        folder,
        {
            "rgb8.tif": lambda path: write_image(path, photo()),
            "grey8.tif": lambda path: Image.fromarray(photo(channels=1)).save(path, compression="tiff_lzw"),
            "rgb16.tif": deflated16,
            "grey16.tif": lambda path: write_image(path, photo(channels=1, dtype=np.uint16)),
        },
    )


def webp_seeds(folder: Path) -> list[Path]:
    return _seeds(
        folder,
        {
            "lossy.webp": lambda path: Image.fromarray(photo()).save(path, quality=80),
            "lossless.webp": lambda path: Image.fromarray(photo(channels=4)).save(path, lossless=True),
        },
    )


def gif_seeds(folder: Path) -> list[Path]:
    return _seeds(folder, {"still.gif": lambda path: Image.fromarray(photo()).save(path), "anim.gif": save_animation})


def bmp_seeds(folder: Path) -> list[Path]:
    return _seeds(
        folder,
        {
            "rgb.bmp": lambda path: write_image(path, photo()),
            "palette.bmp": lambda path: Image.fromarray(photo()).convert("P", colors=16).save(path),
        },
    )


def toml_seeds(folder: Path) -> list[Path]:
    full = load_config(overrides=["model.args={num_blocks = 4}", "optim.milestones=[100, 200]"]).to_toml()
    short = '[model]\npreset = "wdsr-b-16-x2"\n\n[train]\nsteps = 1000  # short\nema = 0.999\n'
    return _seeds(
        folder,
        {"full.toml": lambda path: path.write_text(full), "short.toml": lambda path: path.write_text(short)},
    )


def read_config(path: Path) -> object:
    """What `sisr train CONFIG` does with the file before training."""
    return load_config(path)


FUZZ_TARGETS = {
    "png": (png_seeds, read_image),
    "jpeg": (jpeg_seeds, read_image),
    "tiff": (tiff_seeds, read_image),
    "webp": (webp_seeds, read_image),
    "gif": (gif_seeds, read_image),
    "bmp": (bmp_seeds, read_image),
    "toml": (toml_seeds, read_config),
}

# Mutants per seed file in the test suite, with seed 0: about 5 s for all formats on a 2-core CPU.
# benchmarks/fuzz_loaders.py runs the same targets longer, under the default limit of input pixels.
FUZZ_COUNT = 1000


@pytest.mark.parametrize("name", sorted(FUZZ_TARGETS))
def test_mutated_files_load_or_are_refused_in_one_line(tmp_path, monkeypatch, name):
    # A mutant may declare up to the limit and be decoded (a 20 x 8388632 TIFF of zeros is 1 GB); the
    # checks are the same under a lower limit, which keeps the suite's memory small.
    monkeypatch.setenv("SISR_MAX_PIXELS", "4000000")
    make_seeds, load = FUZZ_TARGETS[name]
    report = fuzz(make_seeds, load, tmp_path, count=FUZZ_COUNT, seed=0)
    assert report.tracebacks == []
    assert report.files >= 2 * FUZZ_COUNT and report.refused > 0 and report.loaded > 0
