"""sisr.png_writer: PNG written band by band, read back by Pillow and pypng, the same bytes however it is cut."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import png
import pytest
from PIL import Image, ImageCms

from sisr import SisrError
from sisr.png_writer import DEFAULT_PNG_LEVEL, PngWriter, check_png_level


def enlarged_photo(height: int, width: int, channels: int, dtype=np.uint8) -> np.ndarray:
    """Smooth, like a network's x4 output, with noise: what the Average filter is chosen for, and what it is not."""
    rng = np.random.default_rng(height * 31 + width + channels)
    rows, columns = np.mgrid[0:height, 0:width]
    planes = [np.sin(rows / (7 + c)) * 60 + np.cos(columns / (5 + c)) * 60 + 128 for c in range(channels)]
    image = np.stack(planes, axis=2) + rng.normal(0, 6, (height, width, channels))
    maximum = np.iinfo(dtype).max
    image = np.clip(image * (maximum / 255), 0, maximum).astype(dtype)
    return image[:, :, 0] if channels == 1 else image


def encode(image: np.ndarray, level: int = DEFAULT_PNG_LEVEL, cuts: list[int] | None = None, icc=None) -> bytes:
    channels = 1 if image.ndim == 2 else image.shape[2]
    buffer = io.BytesIO()
    writer = PngWriter(buffer, image.shape[1], image.shape[0], channels, image.dtype, level, icc)
    for band in np.split(image, cuts or []):
        writer.write_rows(band)
    writer.close()
    return buffer.getvalue()


def pypng_pixels(data: bytes) -> np.ndarray:
    """Decoded by pypng (which, unlike Pillow, keeps 16-bit colour), as HxW or HxWxC."""
    width, height, rows, info = png.Reader(bytes=data).asDirect()
    dtype = np.uint16 if info["bitdepth"] == 16 else np.uint8
    pixels = np.vstack([np.asarray(row, dtype) for row in rows]).reshape(height, width, info["planes"])
    return pixels[:, :, 0] if info["planes"] == 1 else pixels


def chunks(data: bytes, with_crc: bool = False) -> list:
    """(type, data) of each chunk after the signature; (type, data, CRC) with `with_crc`."""
    found, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        found.append((kind, body, crc) if with_crc else (kind, body))
        offset += 12 + length
    return found


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_every_kind_of_pixel_reads_back_exactly(channels, dtype):
    image = enlarged_photo(37, 53, channels, dtype)
    data = encode(image, cuts=[5, 6, 30])
    assert np.array_equal(pypng_pixels(data), image)
    if dtype == np.uint8 or channels == 1:  # Pillow reads 16-bit grey, not 16-bit colour
        with Image.open(io.BytesIO(data)) as decoded:
            decoded.load()
            assert decoded.size == (53, 37)
            pixels = np.asarray(decoded)
        assert np.array_equal(pixels.reshape(image.shape), image)


@pytest.mark.parametrize("level", range(10))
def test_the_bytes_do_not_depend_on_how_the_rows_arrive(level):
    image = enlarged_photo(90, 70, 3)
    whole = encode(image, level)
    rng = np.random.default_rng(level)
    for _ in range(3):
        cuts = sorted(set(rng.integers(1, 90, 6).tolist()))
        assert encode(image, level, cuts) == whole
    assert encode(image, level, list(range(1, 90))) == whole  # a row at a time
    assert np.array_equal(pypng_pixels(whole), image)


def test_pixels_equal_what_pillow_writes_and_levels_trade_size():
    image = enlarged_photo(120, 160, 3)
    pillow = io.BytesIO()
    Image.fromarray(image).save(pillow, "PNG")
    assert np.array_equal(pypng_pixels(encode(image)), pypng_pixels(pillow.getvalue()))
    sizes = [len(encode(image, level)) for level in (0, 1, 9)]
    assert sizes[0] > image.nbytes  # stored, not compressed
    assert sizes[0] > sizes[1] > sizes[2]


def test_rows_are_average_filtered_and_stored_unfiltered_at_level_0():
    image = enlarged_photo(12, 9, 3)
    for level, filter_type in ((0, 0), (1, 3), (9, 3)):
        data = encode(image, level)
        raw = zlib.decompress(b"".join(body for kind, body in chunks(data) if kind == b"IDAT"))
        stride = 9 * 3 + 1
        assert len(raw) == 12 * stride
        assert {raw[row * stride] for row in range(12)} == {filter_type}


def test_idat_chunks_have_a_fixed_size_and_the_chunk_order_is_png_s():
    from sisr.png_writer import IDAT_BYTES

    image = enlarged_photo(300, 400, 3)
    data = encode(image, 0)  # stored: several chunks' worth
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    kinds = [kind for kind, _ in chunks(data)]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and set(kinds[1:-1]) == {b"IDAT"}
    sizes = [len(body) for kind, body in chunks(data) if kind == b"IDAT"]
    assert len(sizes) > 2 and set(sizes[:-1]) == {IDAT_BYTES} and 0 < sizes[-1] <= IDAT_BYTES
    assert all(crc == zlib.crc32(kind + body) for kind, body, crc in chunks(data, with_crc=True))


def test_a_colour_profile_goes_in_an_iccp_chunk_pillow_reads():
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode(enlarged_photo(8, 8, 3), icc=profile)
    assert [kind for kind, _ in chunks(data)][:2] == [b"IHDR", b"iCCP"]
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.info["icc_profile"] == profile


def test_wrong_rows_and_levels_are_refused():
    writer = PngWriter(io.BytesIO(), 10, 4, 3, np.uint8)
    with pytest.raises(SisrError, match="expected"):
        writer.write_rows(np.zeros((2, 11, 3), np.uint8))
    with pytest.raises(SisrError, match="expected"):
        writer.write_rows(np.zeros((2, 10, 3), np.uint16))
    writer.write_rows(np.zeros((3, 10, 3), np.uint8))
    with pytest.raises(SisrError, match="5 rows for a PNG of height 4"):
        writer.write_rows(np.zeros((2, 10, 3), np.uint8))
    with pytest.raises(SisrError, match="got 3 rows"):
        writer.close()
    for level in (-1, 10, 1.5, True, "1"):
        with pytest.raises(SisrError, match="0 \\(none, fastest\\) to 9"):
            check_png_level(level)  # type: ignore[arg-type]
    with pytest.raises(SisrError, match="1 to 4 channels"):
        PngWriter(io.BytesIO(), 4, 4, 5, np.uint8)


@pytest.mark.parametrize("level", [0, 1, 6])
def test_pieces_deflated_apart_make_one_stream_whatever_the_cuts(level, monkeypatch):
    """Pieces of a few rows each (primed with the bytes before them): one zlib stream, the same for any bands."""
    import sisr.png_writer

    monkeypatch.setattr(sisr.png_writer, "PIECE_BYTES", 700)  # 3 rows of 70 RGB pixels a piece
    image = enlarged_photo(50, 70, 3)
    whole = encode(image, level)
    assert encode(image, level, [1, 2, 3, 17, 18, 30, 49]) == whole
    stream = b"".join(body for kind, body in chunks(whole) if kind == b"IDAT")
    assert len(zlib.decompress(stream)) == 50 * (70 * 3 + 1)  # one stream, its Adler-32 checked by zlib
    assert np.array_equal(pypng_pixels(whole), image)


def test_pieces_primed_with_the_window_before_them_compress_as_one_stream_does():
    image = enlarged_photo(400, 800, 3)  # four pieces
    data = encode(image, 1)
    stream = b"".join(body for kind, body in chunks(data) if kind == b"IDAT")
    assert len(stream) < 1.005 * len(zlib.compress(zlib.decompress(stream), 1))


def test_adler32_of_pieces_combines_into_that_of_the_whole():
    from sisr.png_writer import adler32_combine

    rng = np.random.default_rng(0)
    for first_length, second_length in ((0, 0), (1, 0), (0, 5), (7, 65521), (100000, 70000), (65520, 65522)):
        first, second = rng.bytes(first_length), rng.bytes(second_length)
        combined = adler32_combine(zlib.adler32(first), zlib.adler32(second), second_length)
        assert combined == zlib.adler32(first + second)
