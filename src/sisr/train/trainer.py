"""The training loop: `train(config) -> TrainResult`.

One step: a batch of aligned LR/HR patches, the network's output, a pixel loss,
backward, optimizer step, scheduler step, EMA update. Around it: validation
every `val.every` steps (best and last weights kept as sisr weight files),
atomic checkpoints every `train.checkpoint_every` steps and on Ctrl-C/SIGTERM,
and exact resumption from them: on CPU a run that is killed and resumed ends
with the same weights, bit for bit, as one that never stopped.

Output folder: `checkpoint.pt`, `best.safetensors`, `last.safetensors`,
`log.jsonl`, `config.toml` (the resolved configuration) and, with the
tensorboard extra, `tensorboard/`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..data.training import patch_loader
from ..errors import SisrError
from ..files import atomic_write
from ..losses import pixel_loss
from ..models import build_model, get_preset
from . import distributed
from .checkpoint import (
    CHECKPOINT_NAME,
    capture_rng_state,
    check_same_network,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from .config import TrainConfig, load_config
from .ema import WeightAverage
from .logging import RunLog
from .meter import Meter
from .optimization import WeightUpdate
from .stopping import StopRequest
from .validation import ValidationSet, evaluate, load_validation_set

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

    @property
    def completed(self) -> bool:
        return self.step >= self.total_steps

    def summary(self) -> str:
        lines = []
        status = "interrupted at" if self.interrupted else "finished at"
        rate = (self.step - (self.resumed_from or 0)) / self.elapsed_s if self.elapsed_s > 0 else 0.0
        lines.append(
            f"{status} step {self.step} of {self.total_steps} after {_duration(self.elapsed_s)} "
            f"this session ({rate:.2f} steps/s)"
            + (f", resumed from step {self.resumed_from}" if self.resumed_from else "")
        )
        if self.best_psnr is not None:
            last = f"; last {self.last_psnr:.3f} dB" if self.last_psnr is not None else ""
            lines.append(
                f"best PSNR {self.best_psnr:.3f} dB (Y, border {self._scale_hint()}) on {self.validation_set}"
                f" at step {self.best_step}{last}"
            )
        files = [p for p in (self.best_weights, self.last_weights, self.checkpoint, self.log_file) if p]
        lines.append("files: " + ", ".join(str(p) for p in files))
        if self.interrupted:
            lines.append("run the same command again to continue from the checkpoint")
        return "\n".join(lines)

    def _scale_hint(self) -> str:
        scale = getattr(self.model, "scale", None)
        return f"{scale} px cropped" if scale else "cropped"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


# --- building the pieces -----------------------------------------------------


def training_pairs(config: TrainConfig, scale: int, progress: bool) -> tuple[list, str]:
    """The training pairs the configuration names, and a description for the log."""
    from ..data.training import hr_only_pairs, paired_folders

    data = config.data
    if data.train.strip().lower() == "div2k":
        from ..data.div2k import div2k_pairs

        pairs = div2k_pairs(
            "train", scale, data.downgrade, data.root or None, download=data.download, progress=progress
        )
        what = f"DIV2K train ({data.downgrade} x{scale})"
    elif data.train_lr:
        pairs = paired_folders(data.train, data.train_lr, scale)
        what = f"{data.train} paired with {data.train_lr}"
    else:
        pairs = hr_only_pairs(data.train)
        what = f"{data.train} (LR by MATLAB bicubic x{scale})"
    if data.limit:
        pairs = pairs[: data.limit]
    return pairs, what


def _autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _check_precision(precision: str, device: torch.device) -> None:
    if precision == "fp16" and device.type != "cuda":
        raise SisrError(
            f"train.precision=fp16 needs a CUDA device (it relies on a gradient scaler); "
            f"on {device.type} use bf16 or fp32"
        )


def _load_init_weights(model: nn.Module, path: str, spec: dict[str, Any]) -> None:
    """Start from a weight file; from another scale, take what fits (the EDSR paper's x2 -> x3/x4 start).

    Only the upsampling layers depend on the scale (tail, skip branch); the
    rest, which is nearly all of the network, transfers as it is.
    """
    from ..weights import load_state_dict_strict, read_weight_file

    saved, tensors, _ = read_weight_file(path)
    if saved["arch"] != spec["arch"]:
        raise SisrError(f"model.init {path}: weights of a {saved['arch']} network, but the model is {spec['arch']}")
    saved_args = {k: v for k, v in saved["args"].items() if k != "scale"}
    model_args = {k: v for k, v in spec["args"].items() if k != "scale"}
    if int(saved["args"].get("scale", 0)) == int(spec["args"]["scale"]) or saved_args != model_args:
        load_state_dict_strict(model, tensors, f"model.init {path}")
        return
    own = model.state_dict()  # same arguments but the scale: what does not fit is the upsampling
    fitting = {k: v for k, v in tensors.items() if k in own and own[k].shape == v.shape}
    left = sorted(set(own) - set(fitting))
    model.load_state_dict({**own, **fitting}, strict=True)
    log.info(
        "model.init: %d of %d tensors from the x%s network %s; newly initialised for x%s: %s",
        len(fitting),
        len(own),
        saved["args"].get("scale"),
        path,
        spec["args"]["scale"],
        ", ".join(left),
    )


def _forward(
    network: nn.Module,
    lr_batch: torch.Tensor,
    hr_batch: torch.Tensor,
    loss_fn: nn.Module,
    precision: str,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint8 batches -> [0, 1] floats on the device -> output (under autocast) -> float32 loss."""
    lr = lr_batch.to(device, non_blocking=True).float().div_(255)
    hr = hr_batch.to(device, non_blocking=True).float().div_(255)
    with _autocast(precision, device):
        sr = network(lr)
    sr = sr.float()
    return loss_fn(sr, hr), sr, hr


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

    def state(self, samples, global_batch: int) -> dict[str, Any]:
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


def _check_out_dir(out_dir: Path) -> None:
    """A new run may not silently replace what an earlier run left in its output folder."""
    earlier = [out_dir / name for name in (BEST_NAME, LAST_NAME, CHECKPOINT_NAME) if (out_dir / name).exists()]
    if earlier:
        raise SisrError(
            f"{out_dir}: holds files of an earlier run ({', '.join(p.name for p in earlier)}) that "
            f"this run would not continue from; pass --fresh to replace them, or choose another --out"
        )


def _clear_earlier_run(out_dir: Path) -> None:
    """--fresh: forget the earlier run, so a kill before the first checkpoint cannot resume it."""
    from .logging import LOG_NAME

    for name in (CHECKPOINT_NAME, LOG_NAME):
        (out_dir / name).unlink(missing_ok=True)


# --- the run -----------------------------------------------------------------


def train(
    config: TrainConfig | dict | str | os.PathLike,
    *,
    resume: bool | str | os.PathLike = True,
    fresh: bool = False,
    progress_bar: bool | None = None,
) -> TrainResult:
    """Train the network the configuration describes; returns where things are and the final model.

    `config`: a TrainConfig, a nested dict of options, or a TOML file.
    `resume=True` continues from `<out>/checkpoint.pt` when it exists (so
    re-running the same command continues); a path resumes from that
    checkpoint; False ignores checkpoints. `fresh=True` starts over in an
    output folder that holds an earlier run, replacing its files.
    Under torchrun every process calls this; rank 0 writes the files.
    """
    if isinstance(config, dict):
        config = load_config(values=config)
    elif not isinstance(config, TrainConfig):
        config = load_config(config)
    return run_in_context(
        config,
        lambda context: _Run(
            config, context, resume=False if fresh else resume, fresh=fresh, progress_bar=progress_bar
        ).run(),
    )


def run_in_context(config: TrainConfig, run: Callable[[distributed.DistributedContext], TrainResult]) -> TrainResult:
    """`run(context)` with the config's thread count and a process group, both undone afterwards.

    The group is torn down only if this call set it up: a caller that
    initialised torch.distributed itself keeps it.
    """
    owns_group = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    threads = torch.get_num_threads()
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    context = distributed.setup(config.train.device)
    try:
        return run(context)
    finally:
        if owns_group:
            distributed.teardown(context)
        torch.set_num_threads(threads)


def seed_everything(seed: int) -> None:
    """Python's, NumPy's and torch's generators: every rank builds the same initial network."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class _RunFiles:
    """The files a run has written so far, for its TrainResult."""

    checkpoint: Path | None
    best: Path | None = None
    last: Path | None = None


class _Run:
    def __init__(
        self,
        config: TrainConfig,
        context: distributed.DistributedContext,
        *,
        resume: bool | str | os.PathLike,
        fresh: bool,
        progress_bar: bool | None,
    ) -> None:
        self.config = config
        self.context = context
        # Installed for the loop only: during set-up (downloads, decoding) Ctrl-C stops at once.
        self.stop = StopRequest()
        self.resume = resume
        self.fresh = fresh
        self.progress_bar = progress_bar
        self.device = context.device
        self.out_dir = config.out_dir
        self.checkpoint_path = self.out_dir / CHECKPOINT_NAME

    # -- set-up --

    def _resume_state(self) -> tuple[dict[str, Any] | None, Path | None]:
        """Rank 0 reads the checkpoint (if any) and every rank gets it: no shared disk needed."""
        path: Path | None = None
        if self.resume is True and self.checkpoint_path.is_file():
            path = self.checkpoint_path
        elif self.resume not in (True, False, None):
            path = Path(self.resume)

        def read() -> dict[str, Any] | None:
            if path is not None:
                return load_checkpoint(path)
            if self.fresh:
                _clear_earlier_run(self.out_dir)
            else:
                _check_out_dir(self.out_dir)
            return None

        state = distributed.on_main(self.context, read)
        return distributed.broadcast_object(self.context, state), path

    # -- bookkeeping both stages share --

    def _weight_metadata(self) -> dict[str, str]:
        """What a saved weight file says about where it came from (the GAN stage adds its start)."""
        return {"source": "sisr train"}

    def _save_weights(
        self, model: nn.Module, path: Path, step: int, psnr: float | None, validation: ValidationSet | None
    ) -> Path:
        from ..weights import save_model

        metadata = {"training_step": str(step), "training_config": self.config.to_toml(), **self._weight_metadata()}
        if psnr is not None and validation is not None:
            metadata["validation_psnr"] = f"{psnr:.4f}"
            metadata["validation_set"] = validation.name
        return save_model(model, path, metadata=metadata, overwrite=True)

    def _write_checkpoint(self, files: _RunFiles, position: dict[str, Any], networks: dict[str, Any]) -> None:
        """Networks and optimizers (`networks`) + data position, RNG states, config: all a resume needs."""
        save_checkpoint(
            self.checkpoint_path,
            {
                **networks,
                **position,
                "rng": capture_rng_state(),
                "config": self.config.to_dict(),
                "world_size": self.context.world_size,
            },
        )
        files.checkpoint = self.checkpoint_path

    def _validate(
        self, final: nn.Module, validation: ValidationSet, progress: Progress, run_log: Any, files: _RunFiles
    ) -> None:
        """PSNR on the validation set; `best.safetensors` when it is the best so far (main process only)."""
        psnr, seconds = evaluate(final, validation, self.device)
        if progress.record_validation(psnr):
            files.best = self._save_weights(final, self.out_dir / BEST_NAME, progress.step, psnr, validation)
        run_log.validation(
            progress.step, psnr, progress.best_psnr, progress.best_step, validation.name, len(validation), seconds
        )

    def _save_last(
        self, final: nn.Module, progress: Progress, validation: ValidationSet | None, files: _RunFiles
    ) -> None:
        files.last = self._save_weights(final, self.out_dir / LAST_NAME, progress.step, progress.last_psnr, validation)

    def _finish(
        self,
        final: nn.Module,
        progress: Progress,
        validation: ValidationSet | None,
        files: _RunFiles,
        run_log: Any,
        *,
        interrupted: bool,
        resumed_from: int | None,
        started: float,
        session_start: float,
    ) -> TrainResult:
        """The result, the log's last record and the summary line."""
        for attribute, name in (("best", BEST_NAME), ("last", LAST_NAME)):
            if self.context.is_main and getattr(files, attribute) is None and (self.out_dir / name).exists():
                setattr(files, attribute, self.out_dir / name)  # written by an earlier session of this run
        result = TrainResult(
            out_dir=self.out_dir,
            step=progress.step,
            total_steps=self.config.train.steps,
            interrupted=interrupted,
            resumed_from=resumed_from,
            best_psnr=progress.best_psnr,
            best_step=progress.best_step,
            last_psnr=progress.last_psnr,
            best_weights=files.best,
            last_weights=files.last,
            checkpoint=files.checkpoint,
            log_file=run_log.path,
            elapsed_s=time.perf_counter() - session_start,
            validation_set=validation.name if validation is not None else None,
            model=final.eval(),
        )
        run_log.record(
            "end",
            step=progress.step,
            interrupted=interrupted,
            best_psnr=progress.best_psnr,
            best_step=progress.best_step,
            last_psnr=progress.last_psnr,
            elapsed_s=round(result.elapsed_s, 3),
            setup_s=round(session_start - started, 3),
        )
        run_log.end_progress()
        run_log.message(result.summary())
        run_log.close()
        return result

    def _loop(
        self,
        loader: Any,
        progress: Progress,
        run_log: Any,
        global_batch: int,
        *,
        step: Callable[[Any], dict[str, torch.Tensor]],
        log_interval: Callable[[int, dict[str, float]], None],
        validate_and_save: Callable[[], None],
        write_checkpoint: Callable[[], None],
        save_on_stop: Callable[[], None],
        extra: Sequence[tuple[int, Callable[[], None]]] = (),
    ) -> bool:
        """Run `step` on batches up to `train.steps`, with logging, validation and checkpoints on schedule.

        `step(batch)` updates the networks and returns the scalars to average
        over a log interval; `extra` holds (every, action) pairs run after the
        log line (every = 0: never). Ctrl-C / SIGTERM on any rank stops every
        rank at the same step, with a checkpoint and `save_on_stop()` (main
        process). Returns whether the run was stopped early.
        """
        train = self.config.train
        meter = Meter(self.device)
        interrupted = False
        batches: Iterator = iter(loader)
        with self.stop:
            try:
                while progress.step < train.steps:
                    if distributed.any_rank(self.context, self.stop.requested):
                        interrupted = True
                        break
                    values = step(next(batches))
                    progress.advance(global_batch)
                    meter.add(**values)
                    run_log.step_done()
                    done = progress.step
                    last = done == train.steps
                    if done % train.log_every == 0 or last:
                        log_interval(done, meter.report(global_batch))
                    for every, action in extra:
                        if every and (done % every == 0 or last):
                            action()
                    if done % self.config.val.every == 0 or last:
                        validate_and_save()
                        meter.restart_clock()  # validation time is not training speed
                    if done % train.checkpoint_every == 0 or last:
                        write_checkpoint()
            except KeyboardInterrupt:
                run_log.close()
                raise
            finally:
                del batches  # ends DataLoader workers
        if interrupted:
            run_log.message(f"stopping at step {progress.step} ({self.stop.signal_name})")
            write_checkpoint()
            if self.context.is_main:
                save_on_stop()
        return interrupted

    def _prepare_data(self, scale: int, hr_patch: int):
        """Rank 0 first: it downloads and fills the decoded cache; the others then find them there."""
        from ..data.training import PatchSamples, prepare_training_images

        data = self.config.data

        def prepare():
            pairs, what = training_pairs(self.config, scale, progress=self.context.is_main)
            return prepare_training_images(
                pairs, scale, hr_patch, cache=data.cache, cache_dir=data.cache_dir or None, skip_small=data.skip_small
            ), what

        prepared = distributed.on_main(self.context, prepare)
        if not self.context.is_main:
            prepared = prepare()
        images, what = prepared
        return PatchSamples(images, hr_patch, seed=self.config.train.seed, augment=data.augment), what

    def _load_validation(self, scale: int) -> ValidationSet | None:
        """The validation set (main process only; None on the others or when `val.set` is empty)."""
        config = self.config
        if not config.val.set:
            return None
        return distributed.on_main(
            self.context,
            lambda: load_validation_set(
                config.val.set,
                scale,
                limit=config.val.limit,
                root=config.data.root,
                downgrade=config.data.downgrade,
                download=config.data.download,
            ),
        )

    def _loader(self, samples: Any, progress: Progress) -> Any:
        """This rank's batches, from the sample the run has reached (so a resumed run sees what it would have)."""
        data = self.config.data
        return patch_loader(
            samples,
            data.batch_size,
            start_sample=progress.samples_seen,
            rank=self.context.rank,
            world_size=self.context.world_size,
            workers=data.workers,
            pin_memory=self.device.type == "cuda",
        )

    def _open_log(self, progress: Progress) -> RunLog:
        """The output folder with the resolved config in it, and the run's log (silent on ranks > 0)."""
        if self.context.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with atomic_write(self.out_dir / CONFIG_NAME, "w", overwrite=True) as handle:
                handle.write(self.config.to_toml())
        return RunLog(
            self.out_dir,
            enabled=self.context.is_main,
            total_steps=self.config.train.steps,
            start_step=progress.step,
            progress_bar=self.progress_bar,
        )

    def _build_network(self, preset, args: dict[str, Any], *, resuming: bool) -> nn.Module:
        """The network, initialised from the seed (every rank alike) or from `model.init`.

        A resumed run takes its weights from the checkpoint, so `model.init` is not read: it may
        have been moved or deleted since, or the run continues on another machine without it.
        """
        seed_everything(self.config.train.seed)
        model = build_model(preset.arch, args)
        if self.config.model.init and not resuming:
            _load_init_weights(model, self.config.model.init, model.sisr_spec)
        return model

    def run(self) -> TrainResult:
        config, context = self.config, self.context
        started = time.perf_counter()
        preset = get_preset(config.model.preset)
        args = {**preset.args, **config.model.args}
        scale = int(args["scale"])
        hr_patch = config.data.patch_size or preset.patch_size
        if hr_patch % scale:
            raise SisrError(f"data.patch_size {hr_patch} is not a multiple of the scale {scale}")
        _check_precision(config.train.precision, self.device)
        loss_fn = pixel_loss(config.train.loss)
        state, state_path = self._resume_state()
        model = self._build_network(preset, args, resuming=state is not None)
        spec = model.sisr_spec
        if state is not None:
            check_same_network(state, spec, state_path)
        samples, data_description = self._prepare_data(scale, hr_patch)
        validation = self._load_validation(scale)

        model.to(self.device)
        ema = WeightAverage(model, config.train.ema) if config.train.ema > 0 else None
        update = WeightUpdate(config, model.parameters())
        progress = Progress()
        if state is not None:
            model.load_state_dict(state["model"])
            update.load_state_dict(state)
            if ema is not None:
                ema = WeightAverage(model, config.train.ema)  # a checkpoint without EMA: start it here
                if state.get("ema") is not None:
                    ema.load_state_dict(state["ema"])
            restore_rng_state(state["rng"])
            progress = Progress.from_state(state)
            self._warn_about_changes(state, samples.epoch_length)
        resumed_from = progress.step if state is not None else None
        final = ema.model if ema is not None else model  # what is validated and saved

        train_model = distributed.wrap(model, context)
        if config.train.compile:
            train_model = torch.compile(train_model)
        global_batch = config.data.batch_size * context.world_size
        loader = self._loader(samples, progress)
        run_log = self._open_log(progress)
        parameters = sum(p.numel() for p in model.parameters())
        run_log.message(
            f"training {config.model.preset} x{scale} ({parameters / 1e6:.2f}M parameters) on "
            f"{samples.epoch_length} images: {data_description}; HR patch {hr_patch}, batch "
            f"{config.data.batch_size} x {context.world_size} process(es) = {global_batch}, "
            f"{config.train.steps} steps, {config.train.loss} loss, {config.train.precision}, device {self.device}; "
            f"output in {self.out_dir}"
        )
        if resumed_from is not None:
            run_log.message(f"resuming from step {resumed_from} ({state_path})")
        run_log.record(
            "start",
            step=progress.step,
            resumed=resumed_from is not None,
            world_size=context.world_size,
            global_batch=global_batch,
            config=config.to_dict(),
        )

        files = _RunFiles(checkpoint=self.checkpoint_path if state is not None else None)

        def write_checkpoint() -> None:
            if context.is_main:
                self._write_checkpoint(
                    files,
                    progress.state(samples, global_batch),
                    {
                        "model_spec": spec,
                        "model": model.state_dict(),
                        **update.state_dict(),
                        "ema": ema.state_dict() if ema is not None else None,
                    },
                )

        def validate_and_save() -> None:
            if context.is_main:
                if validation is not None:
                    self._validate(final, validation, progress, run_log, files)
                self._save_last(final, progress, validation, files)
            distributed.barrier(context)

        def step(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
            loss, sr_batch, hr_batch = _forward(train_model, *batch, loss_fn, config.train.precision, self.device)
            update.apply(loss)
            if ema is not None:
                ema.update(model)
            return {"loss": loss, "mse": F.mse_loss(sr_batch.detach(), hr_batch)}

        session_start = time.perf_counter()
        model.train()
        interrupted = self._loop(
            loader,
            progress,
            run_log,
            global_batch,
            step=step,
            log_interval=lambda done, report: run_log.interval(done, **report, lr=update.learning_rate),
            validate_and_save=validate_and_save,
            write_checkpoint=write_checkpoint,
            save_on_stop=lambda: self._save_last(final, progress, validation, files),
        )
        return self._finish(
            final,
            progress,
            validation,
            files,
            run_log,
            interrupted=interrupted,
            resumed_from=resumed_from,
            started=started,
            session_start=session_start,
        )

    def _warn_about_changes(self, state: dict[str, Any], epoch_length: int) -> None:
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
        if state["data"]["epoch_length"] != epoch_length:
            log.warning(
                "the training set has %d images, the checkpoint's had %d: the sample order "
                "differs from the original run's from here on",
                epoch_length,
                state["data"]["epoch_length"],
            )
