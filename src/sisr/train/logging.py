"""What a run reports: a progress bar or log lines, a JSON-lines file, TensorBoard.

The JSON-lines file (`log.jsonl` in the output folder) is always written, one
record per log interval and per validation, so a run can be plotted with
nothing but the standard library. TensorBoard scalars are written too when the
`tensorboard` package is installed (`pip install 'sisr[tensorboard]'`). Only
rank 0 reports; the other ranks get a silent log.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ..files import atomic_write

log = logging.getLogger("sisr")

LOG_NAME = "log.jsonl"


def truncate_after(path: Path, step: int) -> None:
    """Drop records of steps after `step`: a resumed run redoes them and logs them again."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a kill mid-write
        if record.get("step", 0) <= step:
            kept.append(line)
    with atomic_write(path, "w", overwrite=True) as handle:
        handle.write("".join(line + "\n" for line in kept))


def open_tensorboard(folder: Path) -> Any:
    """A TensorBoard SummaryWriter writing into `folder`, or None when the package is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # the optional extra is not installed
        return None
    return SummaryWriter(log_dir=str(folder))


class RunLog:
    """Reporting for one run; every method is a no-op where `enabled` is False (ranks > 0)."""

    def __init__(
        self, out_dir: Path, *, enabled: bool, total_steps: int, start_step: int, progress_bar: bool | None = None
    ) -> None:
        self.enabled = enabled
        self.total_steps = total_steps
        self.path = Path(out_dir) / LOG_NAME
        self._file: TextIO | None = None
        self._writer: Any = None  # a SummaryWriter, when TensorBoard is installed
        self._bar: Any = None  # a tqdm bar, when one is shown
        if not enabled:
            return
        truncate_after(self.path, start_step)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - open for the whole run, closed by close()
        self._writer = open_tensorboard(Path(out_dir) / "tensorboard")
        if progress_bar is None:
            progress_bar = sys.stderr.isatty()
        if progress_bar:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total_steps, initial=start_step, unit="step", file=sys.stderr, dynamic_ncols=True, smoothing=0.05
            )

    @property
    def tensorboard(self) -> bool:
        """Whether scalars and images also go to TensorBoard."""
        return self._writer is not None

    @property
    def has_progress_bar(self) -> bool:
        """Whether a progress bar is on screen (log lines would tear it; the JSON lines hold the numbers)."""
        return self._bar is not None

    def record(self, event: str, **fields: Any) -> None:
        """One JSON line: {"event": ..., "time": unix seconds, **fields}."""
        if not self.enabled or self._file is None:
            return
        self._file.write(json.dumps({"event": event, "time": round(time.time(), 3), **fields}) + "\n")
        self._file.flush()

    def scalars(self, step: int, values: dict[str, float], prefix: str = "train/") -> None:
        """TensorBoard scalars `prefix + name` (nothing without TensorBoard)."""
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(prefix + key, value, step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """An HxWx3 uint8 image in TensorBoard (nothing without TensorBoard)."""
        if self._writer is not None:
            self._writer.add_image(tag, image, step, dataformats="HWC")

    def step_done(self) -> None:
        """Advance the progress bar by one step."""
        if self._bar is not None:
            self._bar.update(1)

    def interval(
        self, step: int, loss: float, psnr_rgb: float, lr: float, steps_per_s: float, patches_per_s: float
    ) -> None:
        """The mean loss and patch PSNR (RGB, [0, 1]) since the last interval."""
        if not self.enabled:
            return
        self.record(
            "train",
            step=step,
            loss=loss,
            psnr_rgb=psnr_rgb,
            lr=lr,
            steps_per_s=steps_per_s,
            patches_per_s=patches_per_s,
        )
        if self._writer is not None:
            self._writer.add_scalar("train/loss", loss, step)
            self._writer.add_scalar("train/psnr_rgb", psnr_rgb, step)
            self._writer.add_scalar("train/lr", lr, step)
            self._writer.add_scalar("train/steps_per_s", steps_per_s, step)
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{loss:.4f}", psnr=f"{psnr_rgb:.2f}", lr=f"{lr:.2g}", refresh=False)
        else:
            log.info(
                "step %d/%d  loss %.5f  patch PSNR %.2f dB  lr %.3g  %.2f steps/s  %.0f patches/s",
                step,
                self.total_steps,
                loss,
                psnr_rgb,
                lr,
                steps_per_s,
                patches_per_s,
            )

    def validation(
        self, step: int, psnr: float, best_psnr: float, best_step: int, set_name: str, images: int, seconds: float
    ) -> None:
        if not self.enabled:
            return
        self.record(
            "val",
            step=step,
            psnr=psnr,
            best_psnr=best_psnr,
            best_step=best_step,
            set=set_name,
            images=images,
            seconds=round(seconds, 3),
        )
        if self._writer is not None:
            self._writer.add_scalar("val/psnr", psnr, step)
        self.message(
            f"step {step}: validation PSNR {psnr:.3f} dB on {set_name} ({images} images)"
            f"; best {best_psnr:.3f} dB at step {best_step}"
        )

    def message(self, text: str) -> None:
        """A line for the user that does not tear the progress bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            log.info("%s", text)

    def end_progress(self) -> None:
        """Close the bar, so that what follows (the summary) is printed below it."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        self.end_progress()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._file is not None:
            self._file.close()
            self._file = None
