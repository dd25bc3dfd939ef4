"""The look every figure shares: colours, spacing, and text set in Pillow's bundled font.

Drawing with Pillow alone (no matplotlib) keeps figures in the base install
and makes them come out the same on every machine.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import ImageFont

BACKGROUND = (255, 255, 255)
TEXT_COLOR = (20, 20, 20)
MUTED_TEXT_COLOR = (90, 90, 90)
FRAME_COLOR = (200, 200, 200)
CROP_BOX_COLOR = (230, 25, 25)
# Tableau 10: distinguishable, and kind to the common colour-vision deficiencies.
PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]

# Space around a figure and between its cells, in pixels.
MARGIN = 16
GAP = 14


@functools.cache
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at `size` px: no font files to find, the same text on every machine.

    Sized fonts need Pillow >= 10.1 with FreeType; older ones get the small bitmap font.
    """
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def text_width(text: str, typeface: Any) -> int:
    """Width of `text` in whole pixels, rounded up so laid-out text never overlaps."""
    return int(math.ceil(typeface.getlength(text)))


def line_height(typeface: Any) -> int:
    """Height of one line of text including descenders, so stacked lines never touch."""
    try:
        ascent, descent = typeface.getmetrics()
        return int(ascent + descent)
    except AttributeError:  # the bitmap fallback font
        box = typeface.getbbox("Hg")
        return int(box[3] - box[1]) + 2


def wrap_text(text: str, typeface: Any, width: int) -> list[str]:
    """Greedy word wrap to `width` pixels; a single over-long word gets a line of its own."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        current = ""
        for word in paragraph.split(" "):
            candidate = f"{current} {word}" if current else word
            if current and text_width(candidate, typeface) > width:
                lines.append(current)
                current = word
            else:
                current = candidate
        lines.append(current)
    return lines
