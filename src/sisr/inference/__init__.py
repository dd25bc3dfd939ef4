"""Running a trained network on images: whole or tiled, in fp32, bf16 or fp16.

`upscale(model, image)` is the entry point; `prepare_model` makes an
inference copy once for many images; `receptive_field` says how much tile
overlap makes tiled output identical to untiled output.
"""

from .precision import PRECISIONS, fold_weight_norm, prepare_model, resolve_device
from .receptive_field import receptive_field
from .tiling import Span, Tile, plan_tiles, split_axis
from .upscale import MIN_SIZE, upscale

__all__ = [
    "MIN_SIZE", "PRECISIONS", "Span", "Tile", "fold_weight_norm", "plan_tiles", "prepare_model",
    "receptive_field", "resolve_device", "split_axis", "upscale",
]
