"""Running a trained network on images: whole or tiled, in fp32, bf16 or fp16.

`upscale(model, image)` is the entry point; `prepare_model` (or
`SRModel.prepare`) makes the `PreparedModel` it runs, once for many images;
`upscale_to_tiff` writes results larger than memory; `receptive_field` says
how much tile overlap makes tiled output identical to untiled output.
"""

from .precision import PRECISIONS, resolve_device, resolve_precision
from .prepared import PreparedModel, prepare_model
from .receptive_field import receptive_field
from .streaming import upscale_to_tiff
from .tiling import Span, Tile, plan_tiles, split_axis
from .upscale import AUTO_TILE, MIN_SIZE, WHOLE_IMAGE_PIXELS, auto_tile, upscale

__all__ = [
    "AUTO_TILE",
    "MIN_SIZE",
    "PRECISIONS",
    "WHOLE_IMAGE_PIXELS",
    "PreparedModel",
    "Span",
    "Tile",
    "auto_tile",
    "plan_tiles",
    "prepare_model",
    "receptive_field",
    "resolve_device",
    "resolve_precision",
    "split_axis",
    "upscale",
    "upscale_to_tiff",
]
