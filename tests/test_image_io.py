"""Image files round-trip as stored: bit depth, channels and alpha kept; errors name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sisr.errors import SisrError
from sisr.image_io import read_image, write_image

SHAPES = [(9, 11), (9, 11, 3), (9, 11, 4)]


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_lossless_formats_round_trip_exactly(tmp_path: Path, suffix: str, shape: tuple, dtype) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)
    path = write_image(tmp_path / f"image{suffix}", image)
    back = read_image(path)
    assert back.dtype == dtype and back.shape == shape
    np.testing.assert_array_equal(back, image)


def test_sixteen_bit_to_an_eight_bit_format_is_scaled_not_truncated(tmp_path: Path) -> None:
    image = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)  # 0, 1, 255, 128 in 8 bits
    back = read_image(write_image(tmp_path / "image.bmp", image))
    np.testing.assert_array_equal(back, [[0, 1, 255, 128]])


def test_existing_file_is_kept_unless_asked(tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(SisrError, match="already exists"):
        write_image(path, np.ones((4, 4), np.uint8))
    assert read_image(path).max() == 0
    write_image(path, np.ones((4, 4), np.uint8), overwrite=True)
    assert read_image(path).max() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temporary files left


def test_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(SisrError, match="missing.png: no such file"):
        read_image(tmp_path / "missing.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(SisrError, match="broken.png: not a readable image"):
        read_image(broken)
    with pytest.raises(SisrError, match="unknown image format"):
        write_image(tmp_path / "x.xyz", np.zeros((2, 2), np.uint8))
    with pytest.raises(SisrError, match="JPEG cannot hold an alpha channel"):
        write_image(tmp_path / "x.jpg", np.zeros((2, 2, 4), np.uint8))


def test_written_files_get_ordinary_permissions(tmp_path: Path) -> None:
    import os

    umask = os.umask(0o022)
    try:
        path = write_image(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0o600


def _srgb_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize(
    "suffix,dtype",
    [
        (".png", np.uint8),
        (".png", np.uint16),
        (".jpg", np.uint8),
        (".webp", np.uint8),
        (".tif", np.uint8),
        (".tif", np.uint16),
    ],
)
def test_a_colour_profile_is_written_where_the_format_holds_one(tmp_path: Path, suffix: str, dtype) -> None:
    from sisr.image_io import read_icc_profile

    profile = _srgb_profile()
    image = (np.random.default_rng(0).integers(0, 256, (9, 7, 3)) * (257 if dtype == np.uint16 else 1)).astype(dtype)
    path = write_image(tmp_path / f"profiled{suffix}", image, icc_profile=profile)
    assert read_icc_profile(path) == profile
    if suffix not in (".jpg", ".webp"):  # lossy
        assert np.array_equal(read_image(path), image)  # the profile changes no pixel
    assert read_icc_profile(write_image(tmp_path / f"plain{suffix}", image)) is None
    # BMP has no place for a profile: written without one, not refused.
    assert read_icc_profile(write_image(tmp_path / "profiled.bmp", image.astype(np.uint8), icc_profile=profile)) is None


@pytest.mark.parametrize(
    "orientation,turn",
    [
        (1, lambda a: a),
        (3, lambda a: np.rot90(a, 2)),
        (6, lambda a: np.rot90(a, -1)),
        (8, lambda a: np.rot90(a, 1)),
        (2, lambda a: a[:, ::-1]),
    ],
)
def test_exif_orientation_is_applied_as_viewers_do(tmp_path: Path, orientation: int, turn) -> None:
    """A phone photo stored sideways with an EXIF Orientation tag is read upright."""
    from PIL import Image

    stored = np.random.default_rng(orientation).integers(0, 256, (6, 10, 3)).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "phone.png", exif=exif)  # lossless, so pixels can be compared
    assert np.array_equal(read_image(tmp_path / "phone.png"), turn(stored))


def test_a_16_bit_tiff_that_stores_white_as_zero_is_read_as_viewers_show_it(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    grey = np.array([[0, 1000, 65535]], dtype=np.uint16)
    tifffile.imwrite(tmp_path / "inverted.tif", 65535 - grey, photometric="miniswhite")
    np.testing.assert_array_equal(read_image(tmp_path / "inverted.tif"), grey)  # as Pillow does for 8-bit
