"""sisr: single-image super-resolution with deep residual networks.

The library comes first; the `sisr` command is a thin layer over it.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import SisrError
from .evaluation import evaluate
from .inference import upscale
from .models import build_model, count_parameters, create_model, list_presets
from .weights import load_model, resolve_model, save_model

__all__ = [
    "SisrError",
    "__version__",
    "build_model",
    "count_parameters",
    "create_model",
    "evaluate",
    "list_presets",
    "load_model",
    "resolve_model",
    "save_model",
    "upscale",
]
