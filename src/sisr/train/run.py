"""What every training run shares, whatever it trains: `TrainingRun` and the pieces around it.

A run owns an output folder: `checkpoint.pt`, `best.safetensors`,
`last.safetensors`, `log.jsonl`, `config.toml` (the resolved configuration)
and, with the tensorboard extra, `tensorboard/`; one run at a time, which
holds the folder's `.lock` while it runs. It continues from its
checkpoint when started again, and a run that is killed and resumed ends with
the same weights, bit for bit on CPU, as one that never stopped: checkpoints
hold every random generator and the position in the data as well as the
networks and optimizers.

The trainers (`trainer.py`: pixel losses; `gan.py`: perceptual + adversarial)
do their set-up with the functions here and in `data.py`, put what differs
between them in a `TrainingStage` (the networks, one step, the checkpoint's
contents) and hand it to `TrainingRun.loop`, which keeps the schedule:
logging, validation, checkpoints and a clean stop on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ..data.training import PatchSamples, patch_loader
from ..errors import SisrError
from ..files import atomic_write, folder_lock, remove_stale_temporaries
from ..models import ModelSpec
from . import distributed
from .checkpoint import (
    CHECKPOINT_NAME,
    Checkpoint,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    spec_state,
)
from .config import FinetuneConfig, TrainConfig
from .data import TrainingData
from .distributed import DistributedContext
from .logging import LOG_NAME, RunLog
from .meter import Meter
from .result import RunFiles, TrainResult
from .stopping import StopRequest
from .validation import ValidationSet, evaluate

log = logging.getLogger("sisr")

BEST_NAME = "best.safetensors"
LAST_NAME = "last.safetensors"
CONFIG_NAME = "config.toml"
# Options a resumed run may change without changing what is learnt: no warning for these.
HARMLESS_CHANGES = (
    "train.steps",
    "train.out",
    "train.log_every",
    "train.checkpoint_every",
    "train.threads",
    "train.device",
    "val.",
    "data.workers",
    "data.cache",
    "data.root",
    "data.download",
)

# A batch from the loader: (LR, HR) uint8 NCHW patches.
Batch = tuple[torch.Tensor, torch.Tensor]


# --- precision, seeds, processes ----------------------------------------------


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of `train.precision`: none for fp32, bf16 or fp16 autocast otherwise."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def check_precision(precision: str, device: torch.device) -> None:
    """fp16 training needs a gradient scaler, which needs CUDA: refuse it elsewhere before any work."""
    if precision == "fp16" and device.type != "cuda":
        raise SisrError(
            f"train.precision=fp16 needs a CUDA device (it relies on a gradient scaler); "
            f"on {device.type} use bf16 or fp32"
        )


def to_unit_range(batch: Batch, device: torch.device) -> Batch:
    """uint8 (LR, HR) patches -> float32 in [0, 1] on the device."""
    lr, hr = batch
    return (
        lr.to(device, non_blocking=True).float().div_(255),
        hr.to(device, non_blocking=True).float().div_(255),
    )


def spec_scale(spec: ModelSpec) -> int:
    """The scale of an SR network's spec; a network without one cannot be trained here."""
    if spec.scale is None:
        raise SisrError(f"{spec.arch} {spec.args}: no scale, so not a super-resolution network sisr can train")
    return spec.scale


def seed_everything(seed: int) -> None:
    """Python's, NumPy's and torch's generators: every rank builds the same initial network."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_in_context(config: TrainConfig, run: Callable[[DistributedContext], TrainResult]) -> TrainResult:
    """`run(context)` with the config's thread count, a process group and the output folder's lock.

    The group is torn down only if this call set it up: a caller that
    initialised torch.distributed itself keeps it. Rank 0 holds the lock of
    the output folder for the whole run (see `claim_out_dir`); when another
    run holds it, every rank stops here.
    """
    owns_group = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    threads = torch.get_num_threads()
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    context = distributed.setup(config.train.device)
    try:
        with contextlib.ExitStack() as held:
            distributed.on_main(context, lambda: held.enter_context(claim_out_dir(config)))
            return run(context)
    finally:
        if owns_group:
            distributed.teardown(context)
        torch.set_num_threads(threads)


# --- the output folder and its checkpoint -------------------------------------


@dataclass(frozen=True)
class RunOptions:
    """How a run treats its output folder.

    `resume=True` continues from `<out>/checkpoint.pt` when it exists (so
    running the same command again continues); a path resumes from that
    checkpoint; False ignores checkpoints. `fresh=True` starts over in a folder
    that holds an earlier run, replacing its files. `progress_bar=None` shows a
    bar when stderr is a terminal.
    """

    resume: bool | str | os.PathLike[str] = True
    fresh: bool = False
    progress_bar: bool | None = None

    def checkpoint_path(self, out_dir: Path) -> Path | None:
        """The checkpoint to continue from, if any."""
        if self.fresh or self.resume is False:
            return None
        if self.resume is True:
            path = out_dir / CHECKPOINT_NAME
            return path if path.is_file() else None
        return Path(self.resume)


@contextlib.contextmanager
def claim_out_dir(config: TrainConfig) -> Iterator[Path]:
    """Hold the output folder's lock for the run, and clear what killed runs left in it.

    A second run into the same folder would mix its checkpoint, weights and
    log with the first's, and might resume the first's checkpoint under its own
    options: it is refused, naming the process that holds the folder. The lock
    of a killed run is taken over.
    """
    out_dir = config.out_dir
    command = "sisr finetune" if isinstance(config, FinetuneConfig) else "sisr train"
    advice = "wait for it to end (or stop it), or choose another --out (train.out)"
    with folder_lock(out_dir, command, advice):
        remove_stale_temporaries(out_dir)
        yield out_dir


def check_out_dir(out_dir: Path) -> None:
    """A new run may not silently replace what an earlier run left in its output folder."""
    earlier = [out_dir / name for name in (BEST_NAME, LAST_NAME, CHECKPOINT_NAME) if (out_dir / name).exists()]
    if earlier:
        raise SisrError(
            f"{out_dir}: holds files of an earlier run ({', '.join(p.name for p in earlier)}) that "
            f"this run would not continue from; pass --fresh to replace them, or choose another --out"
        )


def clear_earlier_run(out_dir: Path) -> None:
    """--fresh: forget the earlier run, so a kill before the first checkpoint cannot resume it."""
    for name in (CHECKPOINT_NAME, LOG_NAME):
        (out_dir / name).unlink(missing_ok=True)


def read_checkpoint(config: TrainConfig, context: DistributedContext, options: RunOptions) -> Checkpoint | None:
    """The checkpoint the run continues from, or None for a new run (its folder checked, or cleared with --fresh).

    Rank 0 reads it and every rank gets it: no shared disk needed.
    """
    out_dir = config.out_dir
    path = options.checkpoint_path(out_dir)

    def read() -> dict[str, Any] | None:
        if path is not None:
            return load_checkpoint(path)
        if options.fresh:
            clear_earlier_run(out_dir)
        else:
            check_out_dir(out_dir)
        return None

    state = distributed.broadcast_object(context, distributed.on_main(context, read))
    return None if state is None or path is None else Checkpoint(state, path)


def changed_options(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """`key: old -> new` for every option that differs between two configuration dicts."""
    changes = []
    for key in sorted(set(saved) | set(current)):
        old, new = saved.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict) and key != "args":
            changes += changed_options(old, new, f"{prefix}{key}.")
        elif old != new:
            changes.append(f"{prefix}{key}: {old!r} -> {new!r}")
    return changes


# --- where a run is -------------------------------------------------------------


@dataclass
class Progress:
    """Where the run is: steps, samples consumed and the validation results; saved in checkpoints."""

    step: int = 0
    samples_seen: int = 0
    best_psnr: float | None = None
    best_step: int | None = None
    last_psnr: float | None = None

    def advance(self, global_batch: int) -> None:
        self.step += 1
        self.samples_seen += global_batch

    def record_validation(self, psnr: float) -> bool:
        """Note a validation result; True when it is the best so far."""
        self.last_psnr = psnr
        if self.best_psnr is None or psnr > self.best_psnr:
            self.best_psnr, self.best_step = psnr, self.step
            return True
        return False

    def state(self, samples: PatchSamples, global_batch: int) -> dict[str, Any]:
        """The checkpoint's record of where the run is."""
        epoch, position = samples.locate(self.samples_seen)
        return {
            "step": self.step,
            "samples_seen": self.samples_seen,
            # The order itself is a function of (seed, sample number); these say where in it the run is.
            "data": {
                "seed": samples.seed,
                "epoch": epoch,
                "position": position,
                "epoch_length": samples.epoch_length,
                "global_batch": global_batch,
            },
            "best": {"psnr": self.best_psnr, "step": self.best_step, "last_psnr": self.last_psnr},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Progress:
        best = state["best"]
        return cls(int(state["step"]), int(state["samples_seen"]), best["psnr"], best["step"], best.get("last_psnr"))


# --- the run ---------------------------------------------------------------------


class TrainingStage(Protocol):
    """What differs between pixel and GAN training; `TrainingRun.loop` drives it.

    `network` is what is validated and saved as best/last (the EMA copy when
    EMA is on).
    """

    network: nn.Module

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One update; returns the scalars to average over a log interval (`mse` is logged as patch PSNR)."""
        ...

    def checkpoint_state(self) -> dict[str, Any]:
        """The networks, optimizers and EMA: this stage's part of a checkpoint."""
        ...

    def log_interval(self, run_log: RunLog, step: int, report: dict[str, float]) -> None:
        """Report the means of a log interval (from `Meter.report`)."""
        ...


@dataclass(frozen=True)
class ExtraWeights:
    """A second network saved beside `last.safetensors`, whenever that is (the GAN's discriminator)."""

    name: str
    network: nn.Module
    spec: ModelSpec


class TrainingRun:
    """One session of a run, from the end of its set-up to its result.

    It holds the spec of the network being trained (weight files and
    checkpoints record it), the data, where the run is (`progress`) and what
    it has written (`files`); `start` opens the log, `loop` trains, `finish`
    writes the last record and returns the TrainResult. Only rank 0 writes
    files and validates; every rank runs the loop.
    """

    def __init__(
        self,
        config: TrainConfig,
        context: DistributedContext,
        *,
        spec: ModelSpec,
        data: TrainingData,
        checkpoint: Checkpoint | None,
        options: RunOptions,
        metadata: dict[str, str],
        started: float,
    ) -> None:
        """`metadata`: what each saved weight file says about its origin; `started`: when set-up began."""
        self.config = config
        self.context = context
        self.device = context.device
        self.spec = spec
        self.data = data
        self.checkpoint = checkpoint
        self.options = options
        self.metadata = metadata
        self.started = started
        self.out_dir = config.out_dir
        self.checkpoint_path = self.out_dir / CHECKPOINT_NAME
        self.global_batch = config.data.batch_size * context.world_size
        self.progress = Progress.from_state(checkpoint.state) if checkpoint is not None else Progress()
        self.resumed_from = self.progress.step if checkpoint is not None else None
        self.files = RunFiles(checkpoint=self.checkpoint_path if checkpoint is not None else None)
        # Silent until `start`; the stop request is installed for the loop only, so that
        # during set-up (downloads, decoding) Ctrl-C stops at once.
        self.log = RunLog(self.out_dir, enabled=False, total_steps=config.train.steps, start_step=self.progress.step)
        self.stop = StopRequest()
        self.loop_started = started

    @property
    def validation(self) -> ValidationSet | None:
        return self.data.validation

    # -- start --

    def start(self, messages: Sequence[str], *, stage: str | None = None, **record: Any) -> None:
        """Restore the checkpoint's random generators, open the log, say what the run does.

        Call it after the stage has loaded the checkpoint's networks: from here
        on every random draw must be the one the uninterrupted run made.
        `stage` ("gan") and `record` go into the log's start record.
        """
        if self.checkpoint is not None:
            restore_rng_state(self.checkpoint.state["rng"])
            self.warn_about_changes(self.checkpoint.state)
        if self.context.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with atomic_write(self.out_dir / CONFIG_NAME, "w", overwrite=True) as handle:
                handle.write(self.config.to_toml())
        self.log = RunLog(
            self.out_dir,
            enabled=self.context.is_main,
            total_steps=self.config.train.steps,
            start_step=self.progress.step,
            progress_bar=self.options.progress_bar,
        )
        for message in messages:
            self.log.message(message)
        if self.checkpoint is not None:
            self.log.message(f"resuming from step {self.resumed_from} ({self.checkpoint.path})")
        self.log.record(
            "start",
            step=self.progress.step,
            resumed=self.checkpoint is not None,
            **({"stage": stage} if stage is not None else {}),
            world_size=self.context.world_size,
            global_batch=self.global_batch,
            config=self.config.to_dict(),
            **record,
        )

    def warn_about_changes(self, state: dict[str, Any]) -> None:
        """Options changed since the checkpoint that change what is learnt, and a changed training set."""
        if not self.context.is_main:
            return
        changes = [
            change
            for change in changed_options(state.get("config", {}), self.config.to_dict())
            if not change.startswith(HARMLESS_CHANGES)
        ]
        if changes:
            log.warning(
                "options changed since the checkpoint: %s. The optimizer and learning-rate "
                "schedule continue from the checkpoint's state",
                "; ".join(changes),
            )
        epoch_length = self.data.samples.epoch_length
        if state["data"]["epoch_length"] != epoch_length:
            log.warning(
                "the training set has %d images, the checkpoint's had %d: the sample order "
                "differs from the original run's from here on",
                epoch_length,
                state["data"]["epoch_length"],
            )

    # -- the loop --

    def loop(
        self,
        stage: TrainingStage,
        *,
        extra_weights: Sequence[ExtraWeights] = (),
        after_validation: Callable[[], None] | None = None,
        periodic: Sequence[tuple[int, Callable[[], None]]] = (),
    ) -> bool:
        """Run `stage.step` on batches up to `train.steps`, with logs, validation and checkpoints on schedule.

        `after_validation` runs on rank 0 after each PSNR validation;
        `periodic` holds (every, action) pairs run after the log line (every =
        0: never). Ctrl-C / SIGTERM on any rank stops every rank at the same
        step, with a checkpoint and the last weights. Returns whether the run
        was stopped early.
        """
        train = self.config.train
        meter = Meter(self.device)
        interrupted = False
        batches: Iterator[Batch] = iter(self._loader())
        self.loop_started = time.perf_counter()
        with self.stop:
            try:
                while self.progress.step < train.steps:
                    if distributed.any_rank(self.context, self.stop.requested):
                        interrupted = True
                        break
                    meter.add(**stage.step(next(batches)))
                    self.progress.advance(self.global_batch)
                    self.log.step_done()
                    done = self.progress.step
                    if self._due(train.log_every):
                        stage.log_interval(self.log, done, meter.report(self.global_batch))
                    for every, action in periodic:
                        if every and self._due(every):
                            action()
                    if self._due(self.config.val.every):
                        self.validate_and_save(stage.network, extra_weights, after_validation)
                        meter.restart_clock()  # validation time is not training speed
                    if self._due(train.checkpoint_every):
                        self.write_checkpoint(stage)
            except KeyboardInterrupt:
                self.log.close()
                raise
            finally:
                del batches  # ends DataLoader workers
        if interrupted:
            self.log.message(f"stopping at step {self.progress.step} ({self.stop.signal_name})")
            self.write_checkpoint(stage)
            if self.context.is_main:
                self.save_last(stage.network, extra_weights)
        return interrupted

    def _due(self, every: int) -> bool:
        """Whether something done every `every` steps is due now; everything is at the last step."""
        step = self.progress.step
        return step % every == 0 or step == self.config.train.steps

    def _loader(self) -> Any:
        """This rank's batches, from the sample the run has reached (so a resumed run sees what it would have)."""
        data = self.config.data
        return patch_loader(
            self.data.samples,
            data.batch_size,
            start_sample=self.progress.samples_seen,
            rank=self.context.rank,
            world_size=self.context.world_size,
            workers=data.workers,
            pin_memory=self.device.type == "cuda",
        )

    # -- what the loop writes --

    def save_weights(self, network: nn.Module, spec: ModelSpec, name: str, psnr: float | None = None) -> Path:
        """`network` as `<out>/<name>`, with the step, the config and (given `psnr`) the validation result."""
        from ..weights import save_model

        metadata = {"training_step": str(self.progress.step), "training_config": self.config.to_toml(), **self.metadata}
        if psnr is not None and self.validation is not None:
            metadata["validation_psnr"] = f"{psnr:.4f}"
            metadata["validation_set"] = self.validation.name
        return save_model(network, self.out_dir / name, spec=spec, metadata=metadata, overwrite=True)

    def validate(self, network: nn.Module) -> float:
        """PSNR on the validation set, logged; `best.safetensors` when it is the best so far (rank 0 only)."""
        validation = self.validation
        if validation is None:
            raise SisrError("validate: this run has no validation set (val.set is empty)")
        psnr, seconds = evaluate(network, validation, self.device)
        if self.progress.record_validation(psnr):
            self.files.best = self.save_weights(network, self.spec, BEST_NAME, psnr)
        best_psnr, best_step = self.progress.best_psnr, self.progress.best_step
        assert best_psnr is not None and best_step is not None  # just recorded
        self.log.validation(self.progress.step, psnr, best_psnr, best_step, validation.name, len(validation), seconds)
        return psnr

    def save_last(self, network: nn.Module, extra_weights: Sequence[ExtraWeights] = ()) -> None:
        """`last.safetensors` and the extra weight files (rank 0 only)."""
        self.files.last = self.save_weights(network, self.spec, LAST_NAME, self.progress.last_psnr)
        for extra in extra_weights:
            self.save_weights(extra.network, extra.spec, extra.name)

    def validate_and_save(
        self,
        network: nn.Module,
        extra_weights: Sequence[ExtraWeights] = (),
        after_validation: Callable[[], None] | None = None,
    ) -> None:
        """Validation (when there is a set) and the last weights on rank 0; the other ranks wait for it."""
        if self.context.is_main:
            if self.validation is not None:
                self.validate(network)
                if after_validation is not None:
                    after_validation()
            self.save_last(network, extra_weights)
        distributed.barrier(self.context)

    def write_checkpoint(self, stage: TrainingStage) -> None:
        """The stage's networks and optimizers + spec, data position, RNG states, config: all a resume needs."""
        if not self.context.is_main:
            return
        save_checkpoint(
            self.checkpoint_path,
            {
                "model_spec": spec_state(self.spec),
                **stage.checkpoint_state(),
                **self.progress.state(self.data.samples, self.global_batch),
                "rng": capture_rng_state(),
                "config": self.config.to_dict(),
                "world_size": self.context.world_size,
            },
        )
        self.files.checkpoint = self.checkpoint_path

    # -- the end --

    def finish(self, network: nn.Module, interrupted: bool, *, discriminator: nn.Module | None = None) -> TrainResult:
        """The result, the log's last record and the summary."""
        files, progress = self.files, self.progress
        if self.context.is_main:  # best and last may have been written by an earlier session of this run
            if files.best is None and (self.out_dir / BEST_NAME).exists():
                files.best = self.out_dir / BEST_NAME
            if files.last is None and (self.out_dir / LAST_NAME).exists():
                files.last = self.out_dir / LAST_NAME
        result = TrainResult(
            out_dir=self.out_dir,
            step=progress.step,
            total_steps=self.config.train.steps,
            interrupted=interrupted,
            resumed_from=self.resumed_from,
            best_psnr=progress.best_psnr,
            best_step=progress.best_step,
            last_psnr=progress.last_psnr,
            best_weights=files.best,
            last_weights=files.last,
            checkpoint=files.checkpoint,
            log_file=self.log.path,
            elapsed_s=time.perf_counter() - self.loop_started,
            validation_set=self.validation.name if self.validation is not None else None,
            model=network.eval(),
            spec=self.spec,
            discriminator=discriminator.eval() if discriminator is not None else None,
            stop_signal=self.stop.signum if interrupted else None,
        )
        self.log.record(
            "end",
            step=progress.step,
            interrupted=interrupted,
            best_psnr=progress.best_psnr,
            best_step=progress.best_step,
            last_psnr=progress.last_psnr,
            elapsed_s=round(result.elapsed_s, 3),
            setup_s=round(self.loop_started - self.started, 3),
        )
        self.log.end_progress()
        self.log.message(result.summary())
        self.log.close()
        return result
