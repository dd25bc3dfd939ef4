"""Upscaling straight into a tiled TIFF, one row of tiles at a time, for results larger than memory.

`upscale` assembles the whole result in memory (as uint8: 768 MB for a
16000 x 16000 RGB image). `upscale_to_tiff` never does: it upscales one row
of network tiles (a band of `tile` LR rows), cuts the finished rows into TIFF
tiles, hands those to tifffile as they are done, and forgets them. Memory is
about two bands of output (a band is `tile * scale` rows of the full output
width) plus the network's own tile.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import SisrError
from ..files import atomic_path
from .image_kinds import Canvas
from .upscale import ModelLike, plan_upscale, progress_bar

# Side of the TIFF's own tiles, in output pixels (TIFF wants a multiple of 16).
TIFF_TILE = 256
# `sisr upscale` streams .tif outputs larger than this (uncompressed bytes) when a tile size is given.
STREAM_BYTES = 512 * 1024 * 1024
TIFF_SUFFIXES = (".tif", ".tiff")


def output_bytes(height: int, width: int, channels: int, scale: int, itemsize: int) -> int:
    """Size of the uncompressed output of a height x width LR image: what `upscale` would hold in memory."""
    return height * scale * width * scale * channels * itemsize


class _TileCutter:
    """Collects finished output rows and cuts them into TIFF tiles, row of tiles by row of tiles."""

    def __init__(self, width: int, channels: int, dtype: np.dtype, side: int) -> None:
        self.width = width
        self.side = side
        self.pending = np.zeros((0, width, channels), dtype)

    def add(self, rows: np.ndarray) -> Iterator[np.ndarray]:
        self.pending = np.concatenate([self.pending, rows]) if len(self.pending) else rows
        while len(self.pending) >= self.side:
            yield from self._cut(self.pending[: self.side])
            self.pending = self.pending[self.side :]

    def finish(self) -> Iterator[np.ndarray]:
        if len(self.pending):
            yield from self._cut(self.pending)

    def _cut(self, rows: np.ndarray) -> Iterator[np.ndarray]:
        side = self.side
        for left in range(0, self.width, side):
            piece = rows[:, left : left + side]
            if piece.shape[0] != side or piece.shape[1] != side:  # the image's right or bottom edge
                padded = np.zeros((side, side, rows.shape[2]), rows.dtype)
                padded[: piece.shape[0], : piece.shape[1]] = piece
                piece = padded
            yield np.ascontiguousarray(piece)


def _tiff_layout(channels: int) -> dict[str, Any]:
    """photometric / extrasamples for grey, grey + alpha, RGB and RGBA."""
    photometric = "minisblack" if channels <= 2 else "rgb"
    extra = {"extrasamples": ["unassalpha"]} if channels in (2, 4) else {}
    return {"photometric": photometric, **extra}


def upscale_to_tiff(
    model: ModelLike,
    image: Any,
    path: str | os.PathLike,
    *,
    tile: int = 256,
    tile_overlap: int | None = None,
    tile_batch: int = 1,
    precision: str = "auto",
    device: str | torch.device = "auto",
    overwrite: bool = False,
    progress: bool = False,
    name: str | None = None,
    compression: str | None = None,
) -> Path:
    """Upscale `image` (numpy uint8/uint16 or PIL) into a tiled TIFF at `path`, without holding the output.

    The pixels equal `upscale(model, image, tile=tile, ...)` written as TIFF;
    the file is written atomically (an existing one needs `overwrite=True`).
    `compression` is passed to tifffile (e.g. "zlib"); the default is none,
    as `write_image` does.
    """
    import tifffile

    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        raise SisrError(f"{path}: streamed output must be a TIFF file (.tif or .tiff)")
    if tile is None or tile < 1:
        raise SisrError(f"tile size {tile}: streaming to TIFF needs a tile size of at least 1 pixel")
    run = plan_upscale(
        model,
        image,
        tile=tile,
        tile_overlap=tile_overlap,
        tile_batch=tile_batch,
        precision=precision,
        device=device,
        name=name,
    )
    if run.source.kind == "tensor":
        raise SisrError(f"{run.label}: streaming to TIFF takes numpy or PIL images (uint8/uint16), not tensors")
    if run.source.color.shape[0] != 1:
        raise SisrError(f"{run.label}: streaming to TIFF takes one image, not a batch")
    channels = run.source.color.shape[1] + (0 if run.source.alpha is None else 1)
    dtype = np.dtype(np.uint8 if run.source.maximum == 255 else np.uint16)
    height, width = run.source.height * run.scale, run.source.width * run.scale
    cutter = _TileCutter(width, channels, dtype, TIFF_TILE)
    bar = progress_bar(len(run.color_tiles), progress, run.label)

    def tiff_tiles() -> Iterator[np.ndarray]:
        for rows, color_tiles, alpha_tiles in run.bands():
            band = Canvas(run.source, run.scale, rows)
            run.fill(band, color_tiles, alpha_tiles, bar.update if bar is not None else None)
            assert isinstance(band.pixels, np.ndarray)  # tensor sources are refused above
            yield from cutter.add(band.pixels)
        yield from cutter.finish()

    shape = (height, width) if channels == 1 else (height, width, channels)

    def pieces() -> Iterator[np.ndarray]:
        for piece in tiff_tiles():
            yield piece[:, :, 0] if channels == 1 else piece

    try:
        with atomic_path(path, overwrite=overwrite) as tmp:
            tifffile.imwrite(
                tmp,
                pieces(),
                shape=shape,
                dtype=dtype,
                tile=(TIFF_TILE, TIFF_TILE),
                compression=compression,
                metadata=None,
                **_tiff_layout(channels),
            )
    finally:
        if bar is not None:
            bar.close()
    return path
