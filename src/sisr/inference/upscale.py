"""`upscale`: one image (or a batch) through a network, whole or tile by tile."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import SisrError
from ..model import ModelInfo, SRModel
from .image_kinds import Canvas, SourceImage, to_source
from .prepared import PreparedModel, prepare_model
from .tiling import Tile, plan_tiles, recomputed_fraction, run_tiles

# Whatever names a network for `upscale`: see its docstring.
ModelLike = PreparedModel | SRModel | nn.Module | str

log = logging.getLogger("sisr")

# Smaller inputs are not images worth enlarging, and a 1-pixel axis makes
# MATLAB's bicubic degenerate; say so instead of returning a smear.
MIN_SIZE = 2

# MATLAB's cubic kernel reaches 2 LR pixels either side: the alpha channel's tiles need that much context.
ALPHA_OVERLAP = 2


def check_size(source: SourceImage, name: str) -> None:
    if source.height < MIN_SIZE or source.width < MIN_SIZE:
        raise SisrError(
            f"{name}: {source.width}x{source.height} pixels is too small to upscale "
            f"(at least {MIN_SIZE}x{MIN_SIZE} is needed)"
        )


def progress_bar(total: int, enabled: bool, name: str) -> Any:
    """A tqdm bar over tiles on a terminal, else `TileProgressLines`: a large image is not minutes of silence in a log."""
    if not enabled or total <= 1:
        return None
    if not sys.stderr.isatty():
        return TileProgressLines(total, name)
    from tqdm import tqdm

    return tqdm(total=total, desc=name, unit="tile", leave=False)


class TileProgressLines:
    """`photo.png: 12/48 tiles, 0.8 tiles/s, 45s left` on the sisr logger every few seconds; tqdm's update/close."""

    def __init__(self, total: int, name: str, interval: float = 5.0) -> None:
        from ..batch import ProgressLines

        self.name = name
        self.done = 0
        self.lines = ProgressLines(total, interval, unit="tiles")

    def update(self, count: int = 1) -> None:
        self.done += count
        if (line := self.lines.update(self.done)) is not None:
            log.info("%s: %s", self.name, line)

    def close(self) -> None:
        pass


# Without a tile size, images of more LR pixels than this are tiled anyway, in
# tiles of AUTO_TILE pixels: a whole 2000 x 2000 image through EDSR-baseline
# would need 64-channel float feature maps of 1 GB each. The overlap is the
# receptive field, so the result is the same as untiled; the price is the
# recomputed context (`recomputed_fraction`: about 30 % more work with
# EDSR-baseline's 36 pixels, 15 % with default-x4's 18 on a 2000 x 1500
# photo). Larger tiles recompute less but did not run faster on the CPU
# (`benchmarks/bench_whole_call.py --tiles`).
# Smaller images run whole: tiling a 256 x 256 image exactly costs 2.3x (tile
# 128) to 10x (tile 32) the work, more than any cache gain (measured in
# benchmarks/bench_inference.py --tiles).
WHOLE_IMAGE_PIXELS = 1024 * 1024
AUTO_TILE = 512


def auto_tile(info: ModelInfo, height: int, width: int) -> int | None:
    """The tile size `upscale` uses when none is given: None (whole image) unless the image is large."""
    if height * width <= WHOLE_IMAGE_PIXELS:
        return None
    if info.receptive_field is None:  # an unknown network: no exact overlap, so no silent tiling
        return None
    return AUTO_TILE


@dataclass
class UpscaleRun:
    """An image planned for upscaling: its source planes, the prepared network and the tile plan."""

    source: SourceImage
    model: PreparedModel
    scale: int
    color_tiles: list[Tile]
    alpha_tiles: list[Tile]
    tile_batch: int
    label: str
    tile_overlap: int = 0  # LR pixels of context each side of a colour tile's core

    def fill(self, canvas: Canvas, color_tiles: list[Tile], alpha_tiles: list[Tile], update=None) -> None:
        """Run the network over `color_tiles` (bicubic over `alpha_tiles`) and store the cores in `canvas`."""
        device = self.model.device

        def read_window(rows, columns) -> torch.Tensor:
            return self.source.color_window(rows, columns, device)

        with torch.inference_mode():
            run_tiles(
                self.model,
                read_window,
                canvas.write_color,
                color_tiles,
                self.scale,
                self.tile_batch,
                progress=update,
            )
            if self.source.alpha is not None:
                _upscale_alpha(self.source, canvas, self.scale, alpha_tiles, self.tile_batch)

    def describe_tiles(self) -> str | None:
        """`12 tiles of up to 500x500 LR pixels, 18 px of context each side: 14.9% of the network's work recomputed`.

        None for an untiled image.
        """
        if len(self.color_tiles) <= 1:
            return None
        height = max(tile.rows.core_stop - tile.rows.core_start for tile in self.color_tiles)
        width = max(tile.columns.core_stop - tile.columns.core_start for tile in self.color_tiles)
        return (
            f"{len(self.color_tiles)} tiles of up to {width}x{height} LR pixels, {self.tile_overlap} px of context "
            f"each side: {recomputed_fraction(self.color_tiles):.1%} of the network's work recomputed"
        )

    def band_count(self) -> int:
        """Rows of tiles: what `bands` yields."""
        return len(_rows_of_tiles(self.color_tiles))

    def bands(self) -> Iterator[tuple[tuple[int, int], list[Tile], list[Tile]]]:
        """(LR core rows, colour tiles, alpha tiles) per row of tiles, top to bottom.

        Colour and alpha tiles differ in context but share their cores, so
        their rows of tiles pair up.
        """
        color = _rows_of_tiles(self.color_tiles)
        alpha = _rows_of_tiles(self.alpha_tiles)
        for rows, tiles in color.items():
            yield rows, tiles, alpha.get(rows, [])


def _rows_of_tiles(tiles: list[Tile]) -> dict[tuple[int, int], list[Tile]]:
    groups: dict[tuple[int, int], list[Tile]] = {}
    for tile in tiles:
        groups.setdefault((tile.rows.core_start, tile.rows.core_stop), []).append(tile)
    return groups


def plan_upscale(
    model: ModelLike,
    image: Any,
    *,
    tile: int | None,
    tile_overlap: int | None,
    tile_batch: int,
    precision: str,
    device: str | torch.device,
    name: str | None,
) -> UpscaleRun:
    """Check the image and the network, prepare the network, and plan the tiles (see `upscale`)."""
    if isinstance(image, (str, os.PathLike)):
        name = name or os.fspath(image)
    label = name or "image"
    prepared = prepare_model(model, precision, device)
    source = to_source(image)
    check_size(source, label)
    if tile is None:
        tile = auto_tile(prepared.info, source.height, source.width)
    if tile is not None and tile_overlap is None:
        tile_overlap = prepared.info.receptive_field
        if tile_overlap is None:
            raise SisrError(
                f"{prepared.name}: its receptive field is unknown, so tiles cannot overlap exactly; give the tile overlap explicitly"
            )
    color_tiles = plan_tiles(source.height, source.width, tile, tile_overlap or 0)
    alpha_tiles = plan_tiles(source.height, source.width, tile, ALPHA_OVERLAP) if source.alpha is not None else []
    return UpscaleRun(source, prepared, prepared.scale, color_tiles, alpha_tiles, tile_batch, label, tile_overlap or 0)


def upscale(
    model: ModelLike,
    image: Any,
    *,
    tile: int | None = None,
    tile_overlap: int | None = None,
    tile_batch: int = 1,
    precision: str = "auto",
    device: str | torch.device = "auto",
    progress: bool = False,
    name: str | None = None,
    on_tile: Callable[[int, int], None] | None = None,
) -> Any:
    """Enlarge `image` by the network's scale; the result is of the same kind as the input.

    * `model`: a prepared model (`prepare_model`, `SRModel.prepare`: prepare
      once for many images), a model (`load_model`, `create_model`), a bare
      network with an integer `scale`, or a name as `sisr upscale --model`
      takes it ("default-x4", a weight file, a pretrained zoo name).
    * `image`: a path to an image file (read as `sisr upscale` reads it, EXIF
      orientation applied; the result is a PIL image), a PIL image (L, LA,
      RGB, RGBA, I;16; EXIF orientation applied, as for files), a numpy
      uint8/uint16 array (HxW, HxWx3, HxWx4; HxWx1 and grey + alpha HxWx2
      too), or a float NCHW tensor in [0, 1]. numpy comes back with the same
      dtype and layout, PIL in the same mode, a tensor as a float tensor of
      the same dtype and device, clipped to [0, 1]. Integer outputs are
      rounded half up and assembled in their integer type.
    * Grey is upscaled as RGB and averaged back to grey. Alpha is enlarged with
      MATLAB's bicubic (in float, clipped), not by the network.
    * `tile`: process cores of at most `tile` x `tile` LR pixels, each with
      `tile_overlap` pixels of context per side (default: the network's
      receptive field, which makes the result identical to an untiled run
      on the CPU, and on a GPU up to cuDNN's shape-dependent rounding);
      `tile_batch` windows go through the network together. Without `tile`,
      images of more than `WHOLE_IMAGE_PIXELS` LR pixels are tiled in tiles of
      `AUTO_TILE` (same result, bounded memory); smaller ones run whole.
    * `precision`: "auto" (fp16 on CUDA, bf16 on a CPU with bf16
      instructions, else fp32: see `resolve_precision`), "fp32", "bf16" or
      "fp16" (CUDA only); `device`: "auto", "cpu", "cuda", "cuda:N". A
      prepared model keeps its own unless these ask for something else.
    * `name` is used in error messages (e.g. the file name).
    * `on_tile(done, total)` is called after each batch of colour tiles (a
      server's progress bar); an exception raised from it stops the run there
      and propagates (a cancelled job).

    To write the result to a file, encoded while the network runs, see
    `upscale_to_file`; to write one too large for memory, `upscale_to_tiff`.
    """
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
    canvas = Canvas(run.source, run.scale, device=run.model.device, pinned=run.model.pinned_memory)
    update, bar = tile_updates(run, progress, on_tile)
    try:
        run.fill(canvas, run.color_tiles, run.alpha_tiles, update)
    finally:
        if bar is not None:
            bar.close()
    return canvas.result()


def tile_updates(
    run: UpscaleRun, progress: bool, on_tile: Callable[[int, int], None] | None
) -> tuple[Callable[[int], Any] | None, Any]:
    """The `update(count)` to call after each batch of colour tiles (bar and `on_tile`), and the bar to close."""
    bar = progress_bar(len(run.color_tiles), progress, run.label)
    if progress and (tiles := run.describe_tiles()) is not None:
        log.info("%s: %s", run.label, tiles)
    update = bar.update if bar is not None else None
    if on_tile is not None:
        update = _counting(len(run.color_tiles), on_tile, update)
    return update, bar


def _counting(
    total: int, on_tile: Callable[[int, int], None], then: Callable[[int], Any] | None
) -> Callable[[int], None]:
    """A tqdm-style `update(count)` that also reports (done, total) to `on_tile`."""
    done = 0

    def update(count: int = 1) -> None:
        nonlocal done
        done += count
        if then is not None:
            then(count)
        on_tile(done, total)

    return update


def _upscale_alpha(source: SourceImage, canvas: Canvas, scale: int, tiles: list[Tile], tile_batch: int) -> None:
    """Alpha is coverage, not picture content: bicubic keeps it smooth where a network would invent texture."""
    from ..imaging import matlab_imresize

    def enlarge(window: torch.Tensor) -> torch.Tensor:
        return matlab_imresize(window, scale=scale)

    run_tiles(enlarge, source.alpha_window, canvas.write_alpha, tiles, scale, tile_batch)
