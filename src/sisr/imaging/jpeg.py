"""How hard a JPEG was compressed, read off its own quantization tables.

A JPEG file does not store the "quality" it was saved at, but it stores what
that number chose: the quantization tables (one 8x8 table of divisors for
luma, usually one for chroma). Almost every encoder people meet (libjpeg and
libjpeg-turbo, hence Pillow, OpenCV, ImageMagick, GIMP, most web services)
makes them the IJG way: the example tables of the JPEG standard (ITU-T T.81,
Annex K, Tables K.1 and K.2) scaled by a percentage that the quality sets,

    scale = 5000 / q        for q < 50
    scale = 200 - 2 q       for q >= 50
    entry = clamp((base * scale + 50) // 100, 1, 255)

(libjpeg's `jpeg_quality_scaling` and `jpeg_add_quant_table` with baseline
limits). So comparing a file's tables with those of every quality 1..100 gives
the quality back exactly for such files, and for any other encoder (cameras,
Photoshop) the IJG quality whose tables are closest, which is what an
automatic denoising strength needs: a measure of how coarse the quantization
was, on one familiar scale.

Tables are compared in natural (row-major) order, which is how Pillow 8.3 and
later give `Image.quantization`.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..errors import SisrError

# ITU-T T.81 Annex K, Table K.1 (luminance) and Table K.2 (chrominance), natural order.
STANDARD_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
STANDARD_CHROMA = (
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    *([99] * 32),
)  # fmt: skip


@dataclass(frozen=True)
class JpegQuality:
    """A JPEG's quality on the IJG scale (1-100) and how well the IJG tables fit its own.

    `exact` means the file's tables are the IJG tables of `quality` entry for
    entry (any libjpeg-based encoder); otherwise `quality` is the closest, and
    `mismatch` the mean |log2| ratio of the file's entries to that quality's
    (0 when exact; 1 would mean off by a factor of two on average).
    """

    quality: int
    exact: bool
    mismatch: float


def scaling_percent(quality: int) -> int:
    """libjpeg's `jpeg_quality_scaling`: the percentage the standard tables are scaled by."""
    if not 1 <= quality <= 100:
        raise SisrError(f"JPEG quality must be from 1 to 100, not {quality}")
    return 5000 // quality if quality < 50 else 200 - 2 * quality


@cache
def ijg_tables(quality: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(luma, chroma) quantization tables that libjpeg writes at `quality`, natural order, baseline limits."""
    scale = scaling_percent(quality)

    def scaled(base: Sequence[int]) -> tuple[int, ...]:
        return tuple(min(max((value * scale + 50) // 100, 1), 255) for value in base)

    return scaled(STANDARD_LUMA), scaled(STANDARD_CHROMA)


def estimate_quality(tables: Mapping[int, Sequence[int]]) -> JpegQuality:
    """The IJG quality whose tables are closest to `tables` (slot -> 64 entries, as `Image.quantization`).

    Slot 0 is compared with the luma table and slot 1 (when present) with the
    chroma one; other slots (rare: a third table for CMYK) are ignored.
    """
    if 0 not in tables:
        raise SisrError("a JPEG without a quantization table in slot 0 (luma): no quality to estimate")
    compared: list[tuple[Sequence[int], int]] = [(tables[0], 0)]
    if 1 in tables:
        compared.append((tables[1], 1))
    for table, slot in compared:
        if len(table) != 64 or any(int(value) < 1 for value in table):
            raise SisrError(f"JPEG quantization table {slot} must hold 64 positive entries, not {len(table)}")
    best: JpegQuality | None = None
    for quality in range(1, 101):
        reference = ijg_tables(quality)
        exact = all(tuple(int(v) for v in table) == reference[slot] for table, slot in compared)
        total = sum(
            abs(math.log2(int(value) / expected))
            for table, slot in compared
            for value, expected in zip(table, reference[slot])
        )
        mismatch = total / (64 * len(compared))
        if exact:
            return JpegQuality(quality, True, 0.0)
        if best is None or mismatch < best.mismatch:
            best = JpegQuality(quality, False, mismatch)
    assert best is not None
    return best


def jpeg_quality(source: str | os.PathLike | bytes) -> JpegQuality | None:
    """The quality of a JPEG file (a path or its bytes); None when it is not a JPEG (PNG, lossless WebP, ...).

    Only the header is read: Pillow parses the tables without decoding the pixels.
    """
    from PIL import Image, UnidentifiedImageError

    where = "the image bytes" if isinstance(source, bytes) else str(source)
    handle = io.BytesIO(source) if isinstance(source, bytes) else Path(source)
    try:
        with Image.open(handle) as image:
            if image.format != "JPEG":
                return None
            tables = getattr(image, "quantization", None)
    except FileNotFoundError:
        raise SisrError(f"{where}: no such file") from None
    except (UnidentifiedImageError, OSError) as error:
        raise SisrError(f"{where}: cannot read it as an image ({error})") from None
    if not tables:
        raise SisrError(f"{where}: a JPEG without quantization tables")
    return estimate_quality(tables)
