"""A JPEG's quality read back from its quantization tables: exact for libjpeg's tables, closest otherwise."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sisr.errors import SisrError
from sisr.imaging.jpeg import STANDARD_CHROMA, STANDARD_LUMA, estimate_quality, ijg_tables, jpeg_quality


def _picture() -> np.ndarray:
    """Texture and edges, so the encoder has something to quantize (the tables do not depend on it)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:64]
    smooth = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1)
    return np.clip(smooth + rng.integers(-20, 20, smooth.shape), 0, 255).astype(np.uint8)


def _pillow_jpeg(image: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", **options)
    return buffer.getvalue()


@pytest.mark.parametrize("quality", range(10, 101))
def test_every_pillow_quality_is_recovered_exactly(quality: int):
    colour = jpeg_quality(_pillow_jpeg(_picture(), quality=quality))
    assert colour is not None and (colour.quality, colour.exact, colour.mismatch) == (quality, True, 0.0)
    grey = jpeg_quality(_pillow_jpeg(_picture()[:, :, 0], quality=quality))  # one table: luma only
    assert grey is not None and (grey.quality, grey.exact) == (quality, True)


def test_pillow_options_that_keep_the_tables_keep_the_quality(tmp_path: Path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(_pillow_jpeg(_picture(), quality=83, subsampling=0, progressive=True, optimize=True))
    assert jpeg_quality(path).quality == 83
    assert jpeg_quality(_pillow_jpeg(_picture())).quality == 75  # Pillow's default


def test_quality_50_is_the_standards_tables_and_100_is_all_ones():
    assert ijg_tables(50) == (STANDARD_LUMA, STANDARD_CHROMA)
    assert ijg_tables(100) == ((1,) * 64, (1,) * 64)
    assert len({ijg_tables(q) for q in range(1, 101)}) == 100  # no two qualities share tables


def test_tables_of_another_kind_get_the_closest_quality_not_an_exact_one():
    """A camera-style encoder: IJG quality 80's tables with a few entries nudged, written by Pillow's `qtables`."""
    luma, chroma = (list(table) for table in ijg_tables(80))
    luma[5] += 2
    luma[40] -= 1
    chroma[63] += 3
    estimate = jpeg_quality(_pillow_jpeg(_picture(), qtables=[luma, chroma]))
    assert estimate is not None and estimate.quality == 80 and not estimate.exact
    assert 0 < estimate.mismatch < 0.05
    # Coarser tables read as a lower quality, finer ones as a higher one.
    coarser, finer = (
        estimate_quality(
            {slot: [max(1, round(v * factor)) for v in table] for slot, table in enumerate(ijg_tables(60))}
        )
        for factor in (1.3, 0.7)
    )
    assert coarser.quality < 60 < finer.quality and not coarser.exact and not finer.exact


def test_opencv_jpegs_are_recovered_exactly():
    cv2 = pytest.importorskip("cv2", reason="OpenCV (cv2) is not installed: no second encoder to read")
    image = _picture()
    for quality in (20, 55, 75, 95):
        ok, encoded = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        estimate = jpeg_quality(encoded.tobytes())
        assert estimate is not None and (estimate.quality, estimate.exact) == (quality, True)


def test_lossless_files_have_no_quality_and_broken_ones_are_named(tmp_path: Path):
    png = tmp_path / "a.png"
    Image.fromarray(_picture()).save(png)
    assert jpeg_quality(png) is None
    broken = tmp_path / "b.jpg"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(SisrError, match=r"b\.jpg: cannot read it as an image"):
        jpeg_quality(broken)
    with pytest.raises(SisrError, match="no such file"):
        jpeg_quality(tmp_path / "missing.jpg")
    with pytest.raises(SisrError, match="64 positive entries"):
        estimate_quality({0: [1] * 10})
