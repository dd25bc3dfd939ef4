"""Upscaling straight into a file: encoded while the network runs, or tile by tile for results larger than memory.

`upscale_to_file` is what `sisr upscale` does with one image: the rows of
network tiles (bands of `tile` LR rows) go to an encoder thread as the
network finishes them, so that encoding a PNG or TIFF costs little more than
the CPU time it takes beside the network, instead of a second wait after
it. The file has the same bytes as `write_image` of `upscale`'s result.

`upscale` assembles the whole result in memory (as uint8: 768 MB for a
16000 x 16000 RGB image). `upscale_to_tiff` never does: it upscales one row
of network tiles, cuts the finished rows into TIFF tiles, hands those to
tifffile as they are done, and forgets them. Memory is about two bands of
output (a band is `tile * scale` rows of the full output width) plus the
network's own tile.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import SisrError
from ..files import atomic_path, check_writable
from ..image_io import STREAMED_SUFFIXES, tiff_layout, write_image, write_image_rows
from ..model import ModelInfo
from ..png_writer import DEFAULT_PNG_LEVEL
from .image_kinds import Canvas
from .pipeline import ConsumerThread
from .tiling import split_axis
from .upscale import ModelLike, UpscaleRun, auto_tile, plan_upscale, progress_bar, tile_updates

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
                **tiff_layout(channels),
            )
    finally:
        if bar is not None:
            bar.close()
    return path


def upscale_to_file(
    model: ModelLike,
    image: Any,
    path: str | os.PathLike,
    *,
    tile: int | None = None,
    tile_overlap: int | None = None,
    tile_batch: int = 1,
    precision: str = "auto",
    device: str | torch.device = "auto",
    overwrite: bool = False,
    progress: bool = False,
    name: str | None = None,
    on_tile: Callable[[int, int], None] | None = None,
    png_level: int = DEFAULT_PNG_LEVEL,
    quality: int = 95,
    icc_profile: bytes | None = None,
) -> tuple[int, int]:
    """Upscale `image` (numpy uint8/uint16, PIL or a file's path) into the file `path`; its (width, height).

    The file equals `write_image(path, upscale(model, image, ...), ...)`
    with the same options (the image's own colour profile unless
    `icc_profile` is given). A PNG or TIFF of several rows of tiles is
    encoded while the network runs: each finished row of tiles goes to an
    encoder thread (zlib and numpy release the GIL). JPEG, WebP, BMP and PPM
    are encoded after the network, whole: Pillow's encoders take a whole
    image. The write is atomic; an existing file needs `overwrite=True`;
    options as `upscale` and `write_image` take them.
    """
    path = Path(path)
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
        raise SisrError(f"{run.label}: writing to a file takes numpy or PIL images (uint8/uint16), not tensors")
    if run.source.color.shape[0] != 1:
        raise SisrError(f"{run.label}: writing to a file takes one image, not a batch")
    check_writable(path, overwrite)  # before the network runs, not after
    if icc_profile is None:
        icc_profile = run.source.icc_profile
    update, bar = tile_updates(run, progress, on_tile)
    try:
        if path.suffix.lower() in STREAMED_SUFFIXES and run.band_count() > 1:
            _encode_while_computing(run, path, update, overwrite, png_level, icc_profile)
        else:
            canvas = Canvas(run.source, run.scale, device=run.model.device, pinned=run.model.pinned_memory)
            run.fill(canvas, run.color_tiles, run.alpha_tiles, update)
            assert isinstance(canvas.pixels, np.ndarray)  # tensor sources are refused above
            write_image(path, canvas.pixels, overwrite, quality, icc_profile, png_level)
    finally:
        if bar is not None:
            bar.close()
    return run.source.width * run.scale, run.source.height * run.scale


def encodes_while_computing(
    path: str | os.PathLike, info: ModelInfo, height: int, width: int, tile: int | None
) -> bool:
    """Whether `upscale_to_file` encodes a height x width image while the network runs.

    It does for a PNG or TIFF of several rows of tiles (`tile`, else what `auto_tile` chooses).
    """
    if Path(path).suffix.lower() not in STREAMED_SUFFIXES:
        return False
    tile = tile or auto_tile(info, height, width)
    return tile is not None and len(split_axis(height, tile, 0)) > 1


def _encode_while_computing(
    run: UpscaleRun,
    path: Path,
    update: Callable[[int], Any] | None,
    overwrite: bool,
    png_level: int,
    icc_profile: bytes | None,
) -> None:
    """Each row of tiles to `write_image_rows` in a thread as soon as the network has filled it."""
    channels = run.source.color.shape[1] + (0 if run.source.alpha is None else 1)
    dtype = np.dtype(np.uint8 if run.source.maximum == 255 else np.uint16)
    height, width = run.source.height * run.scale, run.source.width * run.scale

    def encode(bands: Iterator[np.ndarray]) -> Path:
        return write_image_rows(
            path, bands, height, width, channels, dtype, overwrite, png_level=png_level, icc_profile=icc_profile
        )

    encoder = ConsumerThread(encode)
    try:
        for rows, color_tiles, alpha_tiles in run.bands():
            band = Canvas(run.source, run.scale, rows, device=run.model.device, pinned=run.model.pinned_memory)
            run.fill(band, color_tiles, alpha_tiles, update)
            encoder.put(band.pixels)
    except BaseException:
        encoder.abandon()  # its temporary file is deleted; the network's error is the one to see
        raise
    encoder.finish()
