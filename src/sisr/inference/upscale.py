"""`upscale`: one image (or a batch) through a network, whole or tile by tile."""

from __future__ import annotations

import sys
from typing import Any, Callable

import torch
from torch import nn

from ..errors import SisrError
from .image_kinds import Canvas, SourceImage, to_source
from .precision import prepared_for
from .receptive_field import receptive_field
from .tiling import Tile, plan_tiles, run_tiles

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


def _checked_forward(model: nn.Module, scale: int) -> Callable[[torch.Tensor], torch.Tensor]:
    settings = model.sisr_inference

    def forward(batch: torch.Tensor) -> torch.Tensor:
        with settings.autocast():
            output = model(settings.to_input(batch))
        expected = (batch.shape[0], 3, batch.shape[2] * scale, batch.shape[3] * scale)
        if tuple(output.shape) != expected:
            raise SisrError(
                f"{type(model).__name__} returned {tuple(output.shape)} for an input of "
                f"{tuple(batch.shape)}; expected {expected} at scale x{scale}"
            )
        return output

    return forward


def upscale(
    model: nn.Module,
    image: Any,
    *,
    tile: int | None = None,
    tile_overlap: int | None = None,
    tile_batch: int = 1,
    precision: str = "fp32",
    device: str | torch.device = "auto",
    progress: bool = False,
    name: str | None = None,
) -> Any:
    """Enlarge `image` by the network's scale; the result is of the same kind as the input.

    * `image`: a numpy uint8/uint16 array (HxW, HxWx3, HxWx4; HxWx1 and grey +
      alpha HxWx2 too), a PIL image (L, LA, RGB, RGBA, I;16), or a float NCHW
      tensor in [0, 1]. numpy comes back with the same dtype and layout, PIL in
      the same mode, a tensor as a float tensor of the same dtype and device,
      clipped to [0, 1]. Integer outputs are rounded half up.
    * Grey is upscaled as RGB and averaged back to grey. Alpha is enlarged with
      MATLAB's bicubic (in float, clipped), not by the network.
    * `tile`: process cores of at most `tile` x `tile` LR pixels, each with
      `tile_overlap` pixels of context per side (default: the network's
      receptive field, which makes the result identical to an untiled run);
      `tile_batch` windows go through the network together.
    * `precision`: "fp32", "bf16" or "fp16" (CUDA only); `device`: "auto",
      "cpu", "cuda", "cuda:N". Pass a model from `prepare_model` to skip
      preparing it again for every image.
    * `name` is used in error messages (e.g. the file name).
    """
    label = name or "image"
    source = to_source(image)
    check_size(source, label)
    scale = network_scale(model)
    if tile is not None and tile_overlap is None:
        tile_overlap = receptive_field(model)
    prepared = prepared_for(model, precision, device)
    canvas = Canvas(source, scale)
    color_tiles = plan_tiles(source.height, source.width, tile, tile_overlap or 0)
    bar = _progress_bar(len(color_tiles), progress, label)
    try:
        with torch.inference_mode():
            run_tiles(
                _checked_forward(prepared, scale), source.color_window, canvas.write_color, color_tiles, scale,
                tile_batch, progress=bar.update if bar is not None else None,
            )
            if source.alpha is not None:
                _upscale_alpha(source, canvas, scale, tile, tile_batch)
    finally:
        if bar is not None:
            bar.close()
    return canvas.result()


def _upscale_alpha(source: SourceImage, canvas: Canvas, scale: int, tile: int | None, tile_batch: int) -> None:
    """Alpha is coverage, not picture content: bicubic keeps it smooth where a network would invent texture."""
    from ..imaging import matlab_imresize

    def enlarge(window: torch.Tensor) -> torch.Tensor:
        return matlab_imresize(window, scale=scale)

    tiles: list[Tile] = plan_tiles(source.height, source.width, tile, ALPHA_OVERLAP)
    run_tiles(enlarge, source.alpha_window, canvas.write_alpha, tiles, scale, tile_batch)
