"""Reading training logs: a run's `log.jsonl` records, and the curves (`Series`) in them.

Each record is one JSON object per line, as `sisr train` writes them; the
curves are the numeric fields of its "train" and "val" records against step.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SisrError

log = logging.getLogger("sisr")

# Fields that are not measurements of the model: never plotted.
BOOKKEEPING_FIELDS = {"step", "time", "seconds", "images", "epoch", "world_size", "event", "set"}
PLOTTED_EVENTS = {"train", "val"}


@dataclass
class Series:
    """One curve: a field of one kind of record (and one validation set) against step."""

    event: str
    name: str
    set_name: str | None
    steps: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        text = f"{self.event} {self.name}"
        return f"{text} ({self.set_name})" if self.set_name else text

    @property
    def chart(self) -> str:
        return chart_key(self.name)


def chart_key(name: str) -> str:
    """Which chart a field belongs to: quantities in the same unit share one."""
    lowered = name.lower()
    for key in ("loss", "psnr", "ssim"):
        if key in lowered:
            return key
    if lowered in ("lr", "learning_rate"):
        return "lr"
    return lowered


def find_log(path: str | os.PathLike) -> Path:
    """A run folder means its `log.jsonl`."""
    path = Path(path)
    if path.is_dir():
        path = path / "log.jsonl"
    if not path.is_file():
        raise SisrError(f"{path}: no such training log (give a run folder or its log.jsonl)")
    return path


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a JSON-lines log; lines that are not JSON objects are skipped with a warning.

    A run killed mid-write leaves a torn last line; that should not cost the
    plot of everything before it.
    """
    path = find_log(path)
    records = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                log.warning("%s:%d: skipped, not JSON (%s)", path, number, error.msg)
                continue
            if not isinstance(record, dict):
                log.warning("%s:%d: skipped, not a JSON object", path, number)
                continue
            records.append(record)
    if not records:
        raise SisrError(f"{path}: the training log holds no records")
    return records


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _event(record: dict[str, Any]) -> str:
    event = record.get("event")
    if isinstance(event, str):
        return event
    return "val" if any(str(k).startswith("val") for k in record) else "train"


def log_series(records: Iterable[dict[str, Any]], fields: Sequence[str] | None = None) -> list[Series]:
    """Every plottable curve in the records: numeric fields of train/val records against "step".

    A field is plotted when it varies, or when it is a loss or metric (a
    single validation point is still worth showing). Bookkeeping (time,
    counters, the running best) is left out. `fields` keeps only those names.
    """
    series: dict[tuple[str, str, str | None], Series] = {}
    for record in records:
        step = _number(record.get("step"))
        event = _event(record)
        if step is None or event not in PLOTTED_EVENTS:
            continue
        set_name = record.get("set") if isinstance(record.get("set"), str) else None
        for name, raw in record.items():
            value = _number(raw)
            if value is None or name in BOOKKEEPING_FIELDS or name.startswith("best_"):
                continue
            if fields is not None and name not in fields:
                continue
            key = (event, name, set_name)
            if key not in series:
                series[key] = Series(event, name, set_name)
            series[key].steps.append(step)
            series[key].values.append(value)
    kept = []
    for curve in series.values():
        headline = chart_key(curve.name) in ("loss", "psnr", "ssim")
        if headline or len(set(curve.values)) > 1:
            kept.append(curve)
    return kept


def chain_stages(stages: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The records of successive runs (a run continued from another's weights) on one step axis.

    Each stage's steps are shifted by the last step of the stages before it.
    """
    chained: list[dict[str, Any]] = []
    offset = 0.0
    for records in stages:
        last = 0.0
        for record in records:
            step = _number(record.get("step"))
            if step is not None:
                last = max(last, step)
                record = {**record, "step": step + offset}
            chained.append(record)
        offset += last
    return chained
