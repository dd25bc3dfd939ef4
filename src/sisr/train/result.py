"""What a run produced: `TrainResult`, returned by `sisr.train.train` and `sisr.train.finetune`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ..models import ModelSpec


@dataclass
class RunFiles:
    """The files a run has written so far (or an earlier session of it), for its TrainResult."""

    checkpoint: Path | None = None
    best: Path | None = None
    last: Path | None = None


@dataclass
class TrainResult:
    """What a run produced; `model` holds the final weights (the EMA ones when EMA is on)."""

    out_dir: Path
    step: int
    total_steps: int
    interrupted: bool
    resumed_from: int | None
    best_psnr: float | None
    best_step: int | None
    last_psnr: float | None
    best_weights: Path | None
    last_weights: Path | None
    checkpoint: Path | None
    log_file: Path
    elapsed_s: float
    validation_set: str | None
    model: nn.Module = field(repr=False)
    spec: ModelSpec
    discriminator: nn.Module | None = field(default=None, repr=False)  # the GAN stage's
    stop_signal: int | None = None  # the signal that interrupted the run (SIGINT, SIGTERM), where one did

    @property
    def completed(self) -> bool:
        return self.step >= self.total_steps

    def summary(self) -> str:
        """A few lines for the end of a run: where it stopped, the best PSNR, the files."""
        lines = []
        status = "interrupted at" if self.interrupted else "finished at"
        rate = (self.step - (self.resumed_from or 0)) / self.elapsed_s if self.elapsed_s > 0 else 0.0
        lines.append(
            f"{status} step {self.step} of {self.total_steps} after {duration(self.elapsed_s)} "
            f"this session ({rate:.2f} steps/s)"
            + (f", resumed from step {self.resumed_from}" if self.resumed_from else "")
        )
        if self.best_psnr is not None:
            last = f"; last {self.last_psnr:.3f} dB" if self.last_psnr is not None else ""
            border = f"{self.spec.scale} px cropped" if self.spec.scale else "cropped"
            lines.append(
                f"best PSNR {self.best_psnr:.3f} dB (Y, border {border}) on {self.validation_set}"
                f" at step {self.best_step}{last}"
            )
        files = [p for p in (self.best_weights, self.last_weights, self.checkpoint, self.log_file) if p]
        lines.append("files: " + ", ".join(str(p) for p in files))
        if self.interrupted:
            lines.append("run the same command again to continue from the checkpoint")
        return "\n".join(lines)


def duration(seconds: float) -> str:
    """`1h02m03s` or `2m03s`."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"
