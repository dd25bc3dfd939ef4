"""Comparison figures: labels, enlargement, and where each panel's crop lands in the layout."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sisr.errors import SisrError
from sisr.figures.compare import (
    LABEL_GAP,
    LABEL_SIZE,
    TITLE_SIZE,
    Panel,
    compose_comparison,
    default_columns,
    metrics_label,
    nearest_enlarge,
)
from sisr.figures.crops import CropBox
from sisr.figures.style import CROP_BOX_COLOR, font, line_height


def test_metrics_label_prints_psnr_to_hundredths_and_ssim_to_four_places():
    assert metrics_label(31.234567, 0.912345) == "PSNR 31.23 dB / SSIM 0.9123"
    assert metrics_label(28.0049, None) == "PSNR 28.00 dB"
    assert metrics_label(None, None) == ""
    assert metrics_label(math.inf, 1.0) == "PSNR inf / SSIM 1.0000"


def test_nearest_enlarge_repeats_each_pixel_as_a_block():
    image = np.array([[1, 2], [3, 4]], np.uint8)
    assert nearest_enlarge(image, 2).tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]


def test_default_columns_keep_rows_short_and_even():
    assert [default_columns(n) for n in (1, 4, 5, 6, 7, 10, 11)] == [1, 4, 5, 3, 4, 5, 4]


def _noise_panels(count: int, height: int = 60, width: int = 80) -> list[Panel]:
    rng = np.random.default_rng(1)
    return [
        Panel(f"panel {i}", rng.integers(0, 256, (height, width, 3), dtype=np.uint8), psnr=30.0 + i, ssim=0.9)
        for i in range(count)
    ]


def test_composed_panels_show_the_same_crop_of_each_image_enlarged_by_zoom():
    panels = _noise_panels(3)
    crop = CropBox(10, 20, 24, 16)
    figure = compose_comparison(panels, crop, zoom=3, columns=2, overview=panels[0].image, caption="a caption")
    pixels = np.asarray(figure)
    # Two columns of cells: overview + 3 panels -> 2 rows; each image cell is the crop x zoom.
    assert figure.mode == "RGB"
    found = []
    for panel in panels:
        expected = np.repeat(np.repeat(panel.image[20:36, 10:34], 3, axis=0), 3, axis=1)
        candidates = zip(*np.nonzero((pixels[:-47, :-71] == expected[0, 0]).all(axis=-1)))
        hits = [(y, x) for y, x in candidates if np.array_equal(pixels[y : y + 48, x : x + 72], expected)]
        assert len(hits) == 1, panel.title
        found.append(hits[0])
    # Reading order: panel 0 top-right (after the overview), then the second row.
    (y0, x0), (y1, x1), (y2, x2) = found
    assert y0 < y1 == y2 and x1 < x0 and x2 > x1
    # Background is white and the crop is outlined in the overview.
    assert tuple(pixels[0, 0]) == (255, 255, 255) and tuple(pixels[-1, -1]) == (255, 255, 255)
    assert (pixels == CROP_BOX_COLOR).all(axis=-1).sum() > 20


def test_figure_size_follows_the_layout():
    panels = _noise_panels(4, height=60, width=120)
    # Crops 100x30 at zoom 2 make 200x60 images, wider than any label, so they set the cell width.
    one_row = compose_comparison(panels, CropBox(0, 0, 100, 30), zoom=2, overview=None)
    two_rows = compose_comparison(panels, CropBox(0, 0, 100, 30), zoom=2, columns=2, overview=None)
    margin, gap = 16, 14
    cell_height = 60 + LABEL_GAP + line_height(font(TITLE_SIZE)) + line_height(font(LABEL_SIZE))
    assert one_row.size == (2 * margin + 4 * 200 + 3 * gap, 2 * margin + cell_height)
    assert two_rows.size == (2 * margin + 2 * 200 + gap, 2 * margin + 2 * cell_height + gap)


def test_panels_of_different_sizes_are_an_error():
    panels = _noise_panels(2)
    panels[1].image = panels[1].image[:50]
    with pytest.raises(SisrError, match="panel 1"):
        compose_comparison(panels, CropBox(0, 0, 10, 10))
