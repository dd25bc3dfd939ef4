"""`upscale`: one image (or a batch) through a network, whole or tile by tile."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import SisrError
from .image_kinds import Canvas, SourceImage, to_source
from .precision import prepared_for
from .receptive_field import receptive_field
from .tiling import Tile, plan_tiles, run_tiles

log = logging.getLogger("sisr")

# Smaller inputs are not images worth enlarging, and a 1-pixel axis makes
# MATLAB's bicubic degenerate; say so instead of returning a smear.
MIN_SIZE = 2

# MATLAB's cubic kernel reaches 2 LR pixels either side: the alpha channel's tiles need that much context.
ALPHA_OVERLAP = 2


def network_scale(model: nn.Module) -> int:
    scale = getattr(model, "scale", None)
    if not isinstance(scale, int) or scale < 1:
        raise SisrError(f"{type(model).__name__} has no integer `scale` attribute: sisr cannot tell its output size")
    return scale


def check_size(source: SourceImage, name: str) -> None:
    if source.height < MIN_SIZE or source.width < MIN_SIZE:
        raise SisrError(
            f"{name}: {source.width}x{source.height} pixels is too small to upscale "
            f"(at least {MIN_SIZE}x{MIN_SIZE} is needed)"
        )


def _progress_bar(total: int, enabled: bool, name: str) -> Any:
    """A tqdm bar over tiles on a terminal, else nothing: logs and pipes stay clean."""
    if not enabled or total <= 1 or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=name, unit="tile", leave=False)


def _checked_forward(model: nn.Module, scale: int, label: str) -> Callable[[torch.Tensor], torch.Tensor]:
    settings = model.sisr_inference
    warned = False

    def forward(batch: torch.Tensor) -> torch.Tensor:
        nonlocal warned
        inputs = settings.to_input(batch)
        with settings.autocast():
            output = model(inputs)
        if settings.precision == "fp16" and not bool(torch.isfinite(output).all()):
            # fp16 tops out at 65504: a network with large activations (or an
            # unusual input) can overflow where bf16 and fp32 do not. Redo
            # this batch in fp32 rather than write infinities as white.
            if not warned:
                log.warning("%s: fp16 overflowed in %s; running those tiles in fp32", label, type(model).__name__)
                warned = True
            output = model(inputs)
        expected = (batch.shape[0], 3, batch.shape[2] * scale, batch.shape[3] * scale)
        if tuple(output.shape) != expected:
            raise SisrError(
                f"{type(model).__name__} returned {tuple(output.shape)} for an input of "
                f"{tuple(batch.shape)}; expected {expected} at scale x{scale}"
            )
        return output

    return forward


# Without a tile size, images of more LR pixels than this are tiled anyway, in
# tiles of AUTO_TILE pixels: a whole 2000 x 2000 image through EDSR-baseline
# would need 64-channel float feature maps of 1 GB each. The overlap is the
# receptive field, so the result is the same as untiled; the price is the
# recomputed context (about 30 % more work with EDSR-baseline's 36 pixels).
# Smaller images run whole: tiling a 256 x 256 image exactly costs 2.3x (tile
# 128) to 10x (tile 32) the work, more than any cache gain (measured in
# benchmarks/bench_inference.py --tiles).
WHOLE_IMAGE_PIXELS = 1024 * 1024
AUTO_TILE = 512


def auto_tile(model: nn.Module, height: int, width: int) -> int | None:
    """The tile size `upscale` uses when none is given: None (whole image) unless the image is large."""
    if height * width <= WHOLE_IMAGE_PIXELS:
        return None
    try:
        receptive_field(model)
    except SisrError:  # an unknown network: no exact overlap, so no silent tiling
        return None
    return AUTO_TILE


@dataclass
class UpscaleRun:
    """An image planned for upscaling: its source planes, the prepared network and the tile plan."""

    source: SourceImage
    model: nn.Module
    scale: int
    color_tiles: list[Tile]
    alpha_tiles: list[Tile]
    tile_batch: int
    label: str

    def fill(self, canvas: Canvas, color_tiles: list[Tile], alpha_tiles: list[Tile], update=None) -> None:
        """Run the network over `color_tiles` (bicubic over `alpha_tiles`) and store the cores in `canvas`."""
        device = self.model.sisr_inference.device

        def read_window(rows, columns) -> torch.Tensor:
            return self.source.color_window(rows, columns, device)

        with torch.inference_mode():
            run_tiles(
                _checked_forward(self.model, self.scale, self.label),
                read_window,
                canvas.write_color,
                color_tiles,
                self.scale,
                self.tile_batch,
                progress=update,
            )
            if self.source.alpha is not None:
                _upscale_alpha(self.source, canvas, self.scale, alpha_tiles, self.tile_batch)

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
    model: nn.Module | str,
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
    label = name or "image"
    if isinstance(model, str):  # a name as `--model` takes it: "default-x4", a weight file, a zoo name
        from ..weights import resolve_model

        model = resolve_model(model)
    source = to_source(image)
    check_size(source, label)
    scale = network_scale(model)
    if tile is None:
        tile = auto_tile(model, source.height, source.width)
    if tile is not None and tile_overlap is None:
        tile_overlap = receptive_field(model)
    prepared = prepared_for(model, precision, device)
    color_tiles = plan_tiles(source.height, source.width, tile, tile_overlap or 0)
    alpha_tiles = plan_tiles(source.height, source.width, tile, ALPHA_OVERLAP) if source.alpha is not None else []
    return UpscaleRun(source, prepared, scale, color_tiles, alpha_tiles, tile_batch, label)


def upscale(
    model: nn.Module | str,
    image: Any,
    *,
    tile: int | None = None,
    tile_overlap: int | None = None,
    tile_batch: int = 1,
    precision: str = "auto",
    device: str | torch.device = "auto",
    progress: bool = False,
    name: str | None = None,
) -> Any:
    """Enlarge `image` by the network's scale; the result is of the same kind as the input.

    * `model`: a network, or a name as `sisr upscale --model` takes it
      ("default-x4", a weight file, a pretrained zoo name).

    * `image`: a numpy uint8/uint16 array (HxW, HxWx3, HxWx4; HxWx1 and grey +
      alpha HxWx2 too), a PIL image (L, LA, RGB, RGBA, I;16), or a float NCHW
      tensor in [0, 1]. numpy comes back with the same dtype and layout, PIL in
      the same mode, a tensor as a float tensor of the same dtype and device,
      clipped to [0, 1]. Integer outputs are rounded half up, and assembled in
      their integer type: a 16000 x 16000 RGB result takes 768 MB, not 3 GB.
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
      "fp16" (CUDA only); `device`: "auto", "cpu", "cuda", "cuda:N". Pass a model from `prepare_model` to skip
      preparing it again for every image.
    * `name` is used in error messages (e.g. the file name).

    To write a result too large for memory, see `upscale_to_tiff`.
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
    canvas = Canvas(run.source, run.scale, device=run.model.sisr_inference.device)
    bar = _progress_bar(len(run.color_tiles), progress, run.label)
    try:
        run.fill(canvas, run.color_tiles, run.alpha_tiles, bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    return canvas.result()


def _upscale_alpha(source: SourceImage, canvas: Canvas, scale: int, tiles: list[Tile], tile_batch: int) -> None:
    """Alpha is coverage, not picture content: bicubic keeps it smooth where a network would invent texture."""
    from ..imaging import matlab_imresize

    def enlarge(window: torch.Tensor) -> torch.Tensor:
        return matlab_imresize(window, scale=scale)

    run_tiles(enlarge, source.alpha_window, canvas.write_alpha, tiles, scale, tile_batch)
