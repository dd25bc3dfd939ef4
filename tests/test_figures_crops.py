"""Crops: typed as X,Y,W,H, checked against the image, or found where the detail is."""

from __future__ import annotations

import numpy as np
import pytest

from sisr.errors import SisrError
from sisr.figures.crops import CropBox, check_crop, most_detailed_crop, parse_crop


def test_parse_crop_reads_four_integers_and_rejects_anything_else():
    assert parse_crop("10, 20,30,40") == CropBox(10, 20, 30, 40)
    for bad in ("10,20,30", "a,b,c,d", "1,2,3,4,5", ""):
        with pytest.raises(SisrError, match="--crop"):
            parse_crop(bad)


@pytest.mark.parametrize("crop", [(90, 0, 20, 20), (0, 0, 0, 5), (-1, 0, 10, 10), (0, 50, 10, 11)])
def test_a_crop_outside_the_image_is_an_error_naming_the_image_size(crop):
    with pytest.raises(SisrError, match="100x60|positive"):
        check_crop(CropBox(*crop), 100, 60)


def test_most_detailed_crop_finds_the_textured_square():
    rng = np.random.default_rng(0)
    image = np.full((120, 160, 3), 128, np.uint8)
    image[64:96, 96:128] = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    crop = most_detailed_crop(image, 32, 32, align=4)
    assert crop == CropBox(96, 64, 32, 32)
    assert crop.x % 4 == 0 and crop.y % 4 == 0
