"""The image formats the API answers in, and which format an upload is (its default answer)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OutputFormat:
    suffix: str  # what `sisr.image_io.write_image` picks the encoder by
    media_type: str
    lossy: bool  # takes a quality


OUTPUT_FORMATS = {
    "png": OutputFormat(".png", "image/png", False),
    "jpeg": OutputFormat(".jpg", "image/jpeg", True),
    "webp": OutputFormat(".webp", "image/webp", True),
    "tiff": OutputFormat(".tif", "image/tiff", False),
}
ALIASES = {"jpg": "jpeg", "tif": "tiff"}

# First bytes of each format the API can answer in; anything else sisr reads (BMP, GIF, PPM) is answered as PNG.
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\0", "tiff"),
    (b"MM\0*", "tiff"),
    (b"II+\0", "tiff"),
    (b"MM\0+", "tiff"),
)


def input_format(path: Path) -> str:
    """The upload's own format where the API writes it, else png: the answer's format when none is asked for."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name
    return "png"
