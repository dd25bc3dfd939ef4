"""Training logs as `sisr train` writes them, for the tests of reading and plotting them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_log(path: Path, records: list[dict[str, Any]], extra_lines: tuple[str, ...] | list[str] = ()) -> Path:
    """`records` as JSON lines, then `extra_lines` as they are (e.g. a torn last line)."""
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def run_records(steps: range = range(100, 2001, 100)) -> list[dict[str, Any]]:
    """A run's records: training every 100 steps (constant lr), validation on Set5 every 500."""
    records: list[dict[str, Any]] = [{"event": "start", "step": 0, "world_size": 1}]
    for step in steps:
        records.append(
            {
                "event": "train",
                "time": 1e9 + step,
                "step": step,
                "loss": 1.0 / step,
                "psnr_rgb": 20 + step / 200,
                "lr": 1e-4,
                "steps_per_s": 10.0 + step % 3,
            }
        )
        if step % 500 == 0:
            records.append(
                {
                    "event": "val",
                    "step": step,
                    "psnr": 30 + step / 1000,
                    "best_psnr": 30 + step / 1000,
                    "best_step": step,
                    "set": "Set5",
                    "images": 5,
                    "seconds": 1.5,
                }
            )
    return records
