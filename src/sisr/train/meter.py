"""Means over a log interval, summed on the device so that no step waits for a sync."""

from __future__ import annotations

import math
import time

import torch


class Meter:
    """Sums named scalars step by step; `report` gives their means, patch PSNR and the speed.

    A value named `mse` (the batch's mean squared error in [0, 1]) is reported
    as `psnr_rgb` instead.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.sums: dict[str, torch.Tensor] = {}
        self.steps = 0
        self.start = time.perf_counter()

    @torch.no_grad()
    def add(self, **values: torch.Tensor) -> None:
        for key, value in values.items():
            total = self.sums.setdefault(key, torch.zeros((), device=self.device))
            total += value.detach().float()
        self.steps += 1

    def restart_clock(self) -> None:
        """Leave out of the speed what is not training (validation, samples)."""
        self.start = time.perf_counter()

    def report(self, global_batch: int) -> dict[str, float]:
        """The interval's means and speeds; starts the next interval."""
        seconds = max(time.perf_counter() - self.start, 1e-9)
        steps = max(self.steps, 1)
        report = {key: float(value) / steps for key, value in self.sums.items()}
        if "mse" in report:
            mse = report.pop("mse")
            report["psnr_rgb"] = 10 * math.log10(1 / mse) if mse > 0 else math.inf
        report["steps_per_s"] = steps / seconds
        report["patches_per_s"] = steps * global_batch / seconds
        self.sums = {}
        self.steps = 0
        self.restart_clock()
        return report
