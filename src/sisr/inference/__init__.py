"""Running a trained network on images: whole or tiled, in fp32, bf16 or fp16.

`upscale(model, image)` is the entry point; `upscale_to_tiff` writes results
larger than memory; `prepare_model` makes an inference copy once for many
images (with the CPU's fused blocks, see `fast`); `receptive_field` says how
much tile overlap makes tiled output identical to untiled output.
"""

from .precision import PRECISIONS, fold_weight_norm, prepare_model, resolve_device
from .receptive_field import receptive_field
from .streaming import upscale_to_tiff
from .tiling import Span, Tile, plan_tiles, split_axis
from .upscale import AUTO_TILE, MIN_SIZE, WHOLE_IMAGE_PIXELS, auto_tile, upscale

__all__ = [
    "AUTO_TILE",
    "MIN_SIZE",
    "PRECISIONS",
    "WHOLE_IMAGE_PIXELS",
    "Span",
    "Tile",
    "auto_tile",
    "fold_weight_norm",
    "plan_tiles",
    "prepare_model",
    "receptive_field",
    "resolve_device",
    "split_axis",
    "upscale",
    "upscale_to_tiff",
]
