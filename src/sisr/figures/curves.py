"""A run's training curves as one image: `sisr plot-log`'s log reader feeding the chart drawing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import SisrError
from .charts import plot_curves
from .logs import chain_stages, find_log, log_series, read_log

if TYPE_CHECKING:
    from PIL import Image


def plot_log(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    fields: Sequence[str] | None = None,
    log_loss: bool = False,
    smooth: float = 0.0,
    columns: int | None = None,
    title: str | None = None,
) -> Image.Image:
    """Training curves of a run folder or its `log.jsonl`, as one image.

    Several runs are drawn as successive stages on one step axis (the second
    starting where the first ended), e.g. a network trained on from another
    run's weights.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths:
        raise SisrError("no training log given")
    log_paths = [find_log(one) for one in paths]
    curves = log_series(chain_stages([read_log(one) for one in log_paths]), fields=fields)
    if not curves:
        wanted = f" among {', '.join(fields)}" if fields else ""
        raise SisrError(f"{', '.join(map(str, log_paths))}: no numeric fields with a step{wanted} to plot")
    if title is None:
        title = " + ".join(one.parent.name if one.name == "log.jsonl" else one.stem for one in log_paths)
    image, _ = plot_curves(curves, log_loss=log_loss, smooth=smooth, columns=columns, title=title)
    return image
