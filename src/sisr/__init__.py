"""sisr: single-image super-resolution with deep residual networks.

The library comes first; the `sisr` command is a thin layer over it.

The public names below are imported on first use (a module `__getattr__`),
so `import sisr` and the `sisr --help` that starts with it do not pay for
importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import SisrError

__version__ = "0.1.0"

# Public name -> the submodule that defines it, imported when the name is first asked for.
_LAZY = {
    "ModelInfo": ".model",
    "ModelSpec": ".models",
    "PreparedModel": ".inference",
    "SRModel": ".model",
    "build_model": ".models",
    "count_parameters": ".models",
    "create_model": ".model",
    "evaluate": ".evaluation",
    "list_presets": ".models",
    "load_model": ".weights",
    "prepare_model": ".inference",
    "save_model": ".weights",
    "upscale": ".inference",
}

if TYPE_CHECKING:
    from .evaluation import evaluate
    from .inference import PreparedModel, prepare_model, upscale
    from .model import ModelInfo, SRModel, create_model
    from .models import ModelSpec, build_model, count_parameters, list_presets
    from .weights import load_model, save_model

__all__ = [
    "ModelInfo",
    "ModelSpec",
    "PreparedModel",
    "SRModel",
    "SisrError",
    "__version__",
    "build_model",
    "count_parameters",
    "create_model",
    "evaluate",
    "list_presets",
    "load_model",
    "prepare_model",
    "save_model",
    "upscale",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sisr' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
