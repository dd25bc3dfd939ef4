"""Pictures a person can judge: side-by-side crops of SR results, and training curves.

* `compare`: comparison figures (`sisr compare`); `crops` picks what they show.
* `logs`: reading a run's `log.jsonl` into curves; `charts`: drawing curves;
  `curves`: both together (`sisr plot-log`).
* `style`: the colours, spacing and font all figures share; `save`: writing a figure.

The names below are imported on first use, so `import sisr.figures.charts`
loads no more than the charts need (no torch: only `compare_models` runs models).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .charts import plot_curves
    from .compare import Comparison, Panel, compare_models, compose_comparison
    from .crops import CropBox, parse_crop
    from .curves import plot_log
    from .logs import Series, chain_stages, log_series, read_log
    from .save import write_figure

__all__ = [
    "Comparison",
    "CropBox",
    "Panel",
    "Series",
    "chain_stages",
    "compare_models",
    "compose_comparison",
    "log_series",
    "parse_crop",
    "plot_curves",
    "plot_log",
    "read_log",
    "write_figure",
]

_MODULE_OF = {
    "Comparison": "compare",
    "CropBox": "crops",
    "Panel": "compare",
    "Series": "logs",
    "chain_stages": "logs",
    "compare_models": "compare",
    "compose_comparison": "compare",
    "log_series": "logs",
    "parse_crop": "crops",
    "plot_curves": "charts",
    "plot_log": "curves",
    "read_log": "logs",
    "write_figure": "save",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
