"""Writing a finished figure to a file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image


def write_figure(figure: Image.Image, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Save in the format the suffix names (PNG for an unknown one), atomically: never half a figure."""
    from PIL import Image

    from ..files import atomic_path

    path = Path(path)
    image_format = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    with atomic_path(path, overwrite=overwrite) as tmp:
        figure.save(tmp, format=image_format)
    return path
