"""image_io.write_image_rows: PNG and TIFF written band by band are the files write_image writes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from sisr.errors import OutputExistsError, SisrError
from sisr.image_io import TIFF_STRIP_BYTES, read_icc_profile, read_image, write_image, write_image_rows

tifffile = pytest.importorskip("tifffile")


def image_of(height: int, width: int, channels: int, dtype=np.uint8) -> np.ndarray:
    rng = np.random.default_rng(height + width * 7 + channels)
    image = rng.integers(0, np.iinfo(dtype).max, (height, width, channels), dtype=dtype, endpoint=True)
    return image[:, :, 0] if channels == 1 else image


def srgb() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_bands_give_the_bytes_of_a_whole_write(tmp_path: Path, suffix, dtype, channels):
    image = image_of(301, 97, channels, dtype)
    whole = write_image(tmp_path / f"whole{suffix}", image)
    banded = write_image_rows(tmp_path / f"bands{suffix}", np.split(image, [1, 40, 41, 300]), 301, 97, channels, dtype)
    assert banded.read_bytes() == whole.read_bytes()
    back = read_image(banded)
    if channels == 2 and dtype == np.uint8:  # read as RGBA, as every 8-bit grey + alpha image is
        assert np.array_equal(back[:, :, 0], image[:, :, 0]) and np.array_equal(back[:, :, 3], image[:, :, 1])
    else:
        assert np.array_equal(back, image)


def test_tiff_is_written_in_strips_that_tifffile_and_pillow_read(tmp_path: Path):
    image = image_of(700, 300, 3)
    path = write_image(tmp_path / "strips.tif", image, icc_profile=srgb())
    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages[0]
        assert page.rowsperstrip == TIFF_STRIP_BYTES // (300 * 3) and len(page.dataoffsets) > 1
        assert page.compression == 1 and np.array_equal(page.asarray(), image)
    with Image.open(path) as pillow:
        assert np.array_equal(np.asarray(pillow), image)
    assert read_icc_profile(path) == srgb()


def test_pixels_equal_pillows_own_png_and_the_level_changes_the_size(tmp_path: Path):
    rows, columns = np.mgrid[0:200, 0:240]
    smooth = np.stack([(rows + columns) % 256, rows % 256, columns % 256], axis=2).astype(np.uint8)
    pillow = io.BytesIO()
    Image.fromarray(smooth).save(pillow, "PNG")
    fast = write_image(tmp_path / "fast.png", smooth, png_level=1)
    small = write_image(tmp_path / "small.png", smooth, png_level=9)
    with Image.open(pillow) as reference:
        assert np.array_equal(read_image(fast), np.asarray(reference))
    assert np.array_equal(read_image(small), smooth)
    assert small.stat().st_size < fast.stat().st_size
    with pytest.raises(SisrError, match="png_level=12"):
        write_image(tmp_path / "bad.png", smooth, png_level=12)


def test_bands_that_stop_early_or_fail_leave_no_file(tmp_path: Path):
    image = image_of(50, 20, 3)
    for suffix in (".png", ".tif"):
        target = tmp_path / f"short{suffix}"
        with pytest.raises(SisrError, match="got 30 rows"):
            write_image_rows(target, [image[:30]], 50, 20, 3, np.uint8)

        def failing():
            yield image[:10]
            raise RuntimeError("the network failed")

        with pytest.raises(RuntimeError, match="network failed"):
            write_image_rows(target, failing(), 50, 20, 3, np.uint8)
        with pytest.raises(SisrError, match="expected"):
            write_image_rows(target, [image[:, :10]], 50, 20, 3, np.uint8)
    assert list(tmp_path.iterdir()) == []


def test_only_png_and_tiff_are_written_by_rows_and_nothing_is_replaced(tmp_path: Path):
    image = image_of(10, 10, 3)
    with pytest.raises(SisrError, match="only as PNG or TIFF"):
        write_image_rows(tmp_path / "a.jpg", [image], 10, 10, 3, np.uint8)
    write_image_rows(tmp_path / "a.png", [image], 10, 10, 3, np.uint8)
    with pytest.raises(OutputExistsError):
        write_image_rows(tmp_path / "a.png", [image], 10, 10, 3, np.uint8)
    write_image_rows(tmp_path / "a.png", [image[::-1]], 10, 10, 3, np.uint8, overwrite=True)
    assert np.array_equal(read_image(tmp_path / "a.png"), image[::-1])
