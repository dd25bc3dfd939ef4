"""Upscaling a large image tile by tile, so memory grows with the tile and not with the image.

Each tile has a *core* (the LR pixels whose output it writes) and a *window*
(the core plus `overlap` pixels of context on each side, the part the network
sees). Windows at the image's edges are shifted inside the image rather than
padded: every kept output pixel then sees real pixels as far as the
network's receptive field reaches, exactly as in an untiled run, and only the
image's own border meets the network's zero padding. With an overlap of at
least `receptive_field(model)` the tiled result equals the untiled one.

All windows of one image have the same size, so they batch together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from ..errors import SisrError


@dataclass(frozen=True)
class Span:
    """One axis of a tile: the core [core_start, core_stop) inside the window [window_start, window_stop)."""

    core_start: int
    core_stop: int
    window_start: int
    window_stop: int


@dataclass(frozen=True)
class Tile:
    rows: Span
    columns: Span


def split_axis(length: int, tile: int, overlap: int) -> list[Span]:
    """Cores of at most `tile` pixels covering [0, length), each in a window `overlap` pixels wider per side.

    The cores are balanced (130 pixels with tile 128 give 65 + 65, not 128 + 2),
    and windows that would leave the image are shifted back inside it.
    """
    if tile < 1:
        raise SisrError(f"tile size {tile}: must be at least 1 pixel")
    if overlap < 0:
        raise SisrError(f"tile overlap {overlap}: must not be negative")
    count = math.ceil(length / tile)
    bounds = [round(i * length / count) for i in range(count + 1)]
    largest_core = max(stop - start for start, stop in zip(bounds[:-1], bounds[1:]))
    window = min(largest_core + 2 * overlap, length)
    spans = []
    for core_start, core_stop in zip(bounds[:-1], bounds[1:]):
        window_start = min(max(core_start - overlap, 0), length - window)
        spans.append(Span(core_start, core_stop, window_start, window_start + window))
    return spans


def plan_tiles(height: int, width: int, tile: int | None, overlap: int) -> list[Tile]:
    """Tiles in row-major order; `tile=None` is one tile holding the whole image."""
    if tile is None:
        return [Tile(Span(0, height, 0, height), Span(0, width, 0, width))]
    rows = split_axis(height, tile, overlap)
    columns = split_axis(width, tile, overlap)
    return [Tile(r, c) for r in rows for c in columns]


def recomputed_fraction(tiles: Sequence[Tile]) -> float:
    """The network's work spent on context: pixels of all windows over pixels of all cores, less one.

    The cores cover the image once; each window adds its overlap, which
    neighbouring tiles compute again. Small tiles of a deep network spend
    most of their time there (tile 64 with an overlap of 18: 2.4x the work).
    """
    cores = sum(_area(tile, core=True) for tile in tiles)
    windows = sum(_area(tile, core=False) for tile in tiles)
    return windows / cores - 1 if cores else 0.0


def _area(tile: Tile, core: bool) -> int:
    if core:
        return (tile.rows.core_stop - tile.rows.core_start) * (tile.columns.core_stop - tile.columns.core_start)
    return (tile.rows.window_stop - tile.rows.window_start) * (tile.columns.window_stop - tile.columns.window_start)


def _batches(tiles: Sequence[Tile], size: int) -> Iterator[Sequence[Tile]]:
    for start in range(0, len(tiles), size):
        yield tiles[start : start + size]


def run_tiles(
    forward: Callable[[torch.Tensor], torch.Tensor],
    read_window: Callable[[Span, Span], torch.Tensor],
    write_core: Callable[[Tile, torch.Tensor], None],
    tiles: Sequence[Tile],
    scale: int,
    tile_batch: int = 1,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Run `forward` over the tiles, `tile_batch` windows per call, and hand each core's output on.

    `read_window(rows, columns)` gives the (N, C, h, w) input of a window;
    `write_core(tile, output)` receives the (N, C', core_h * scale, core_w * scale)
    output of its core, cropped out of the window's output. The caller owns
    the output storage (a preallocated array on the CPU), so only
    `tile_batch` windows are ever in flight.
    """
    if tile_batch < 1:
        raise SisrError(f"tile_batch {tile_batch}: must be at least 1")
    for batch in _batches(tiles, tile_batch):
        inputs = [read_window(tile.rows, tile.columns) for tile in batch]
        images_per_window = inputs[0].shape[0]
        outputs = forward(torch.cat(inputs) if len(inputs) > 1 else inputs[0])
        for index, tile in enumerate(batch):
            output = outputs[index * images_per_window : (index + 1) * images_per_window]
            top = (tile.rows.core_start - tile.rows.window_start) * scale
            left = (tile.columns.core_start - tile.columns.window_start) * scale
            bottom = top + (tile.rows.core_stop - tile.rows.core_start) * scale
            right = left + (tile.columns.core_stop - tile.columns.core_start) * scale
            write_core(tile, output[:, :, top:bottom, left:right])
        if progress is not None:
            progress(len(batch))
