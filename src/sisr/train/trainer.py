"""Training with a pixel loss (`sisr train`): `train(config) -> TrainResult`.

One step: a batch of aligned LR/HR patches, the network's output, an L1 or L2
loss, backward, optimizer and scheduler step, EMA update. Everything around
the step (output folder, validation, checkpoints and exact resumption, DDP,
Ctrl-C) is the shared `TrainingRun`'s; see `sisr.train.run`.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import SisrError
from ..losses import PixelLoss, pixel_loss
from ..models import ModelSpec, build_model, get_preset
from . import distributed
from .checkpoint import Checkpoint
from .config import TrainConfig, load_config
from .data import load_training_data
from .distributed import DistributedContext
from .ema import WeightAverage
from .logging import RunLog
from .optimization import WeightUpdate
from .result import TrainResult
from .run import (
    Batch,
    RunOptions,
    TrainingRun,
    autocast_for,
    check_precision,
    read_checkpoint,
    run_in_context,
    seed_everything,
    spec_scale,
    to_unit_range,
)

log = logging.getLogger("sisr")

SOURCE = "sisr train"  # the `source` of the weight files a run writes


def train(
    config: TrainConfig | dict[str, Any] | str | os.PathLike[str],
    *,
    resume: bool | str | os.PathLike[str] = True,
    fresh: bool = False,
    progress_bar: bool | None = None,
) -> TrainResult:
    """Train the network the configuration describes; returns where things are and the final network.

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
    options = RunOptions(resume=resume, fresh=fresh, progress_bar=progress_bar)
    return run_in_context(config, lambda context: train_in_context(config, context, options))


def train_in_context(config: TrainConfig, context: DistributedContext, options: RunOptions) -> TrainResult:
    """`train` in one process: set-up, then the loop."""
    started = time.perf_counter()
    spec, hr_patch = network_spec(config)
    check_precision(config.train.precision, context.device)
    loss_fn = pixel_loss(config.train.loss)
    checkpoint = read_checkpoint(config, context, options)
    network = build_network(config, spec, resuming=checkpoint is not None)
    if checkpoint is not None:
        checkpoint.check_network(spec)
    data = load_training_data(config, context, spec_scale(spec), hr_patch)
    stage = PixelStage(config, context, network, loss_fn, checkpoint)

    run = TrainingRun(
        config,
        context,
        spec=spec,
        data=data,
        checkpoint=checkpoint,
        options=options,
        metadata={"source": SOURCE},
        started=started,
    )
    run.start([describe(run, network)])
    interrupted = run.loop(stage)
    return run.finish(stage.network, interrupted)


# --- set-up ----------------------------------------------------------------------


def network_spec(config: TrainConfig) -> tuple[ModelSpec, int]:
    """The spec of the network to train (the preset's arguments with `model.args` over them), and the HR patch."""
    preset = get_preset(config.model.preset)
    spec = ModelSpec(preset.arch, {**preset.args, **config.model.args})
    hr_patch = config.data.patch_size or preset.patch_size
    if hr_patch % spec_scale(spec):
        raise SisrError(f"data.patch_size {hr_patch} is not a multiple of the scale {spec.scale}")
    return spec, hr_patch


def build_network(config: TrainConfig, spec: ModelSpec, *, resuming: bool) -> nn.Module:
    """The network, initialised from the seed (every rank alike) or from `model.init`.

    A resumed run takes its weights from the checkpoint, so `model.init` is not read: it may
    have been moved or deleted since, or the run continues on another machine without it.
    """
    seed_everything(config.train.seed)
    network = build_model(spec)
    if config.model.init and not resuming:
        load_initial_weights(network, spec, config.model.init)
    return network


def load_initial_weights(network: nn.Module, spec: ModelSpec, path: str) -> None:
    """Start from a weight file; from another scale, take what fits (the EDSR paper's x2 -> x3/x4 start).

    Only the upsampling layers depend on the scale (tail, skip branch); the
    rest, which is nearly all of the network, transfers as it is.
    """
    from ..weights import load_model, load_state_dict_strict

    initial = load_model(path)
    saved = initial.spec
    if saved is None or saved.arch != spec.arch:
        what = saved.arch if saved is not None else type(initial.network).__name__
        raise SisrError(f"model.init {path}: weights of a {what} network, but the model is {spec.arch}")
    tensors = initial.network.state_dict()
    saved_args = {k: v for k, v in saved.args.items() if k != "scale"}
    model_args = {k: v for k, v in spec.args.items() if k != "scale"}
    if saved.scale == spec.scale or saved_args != model_args:
        load_state_dict_strict(network, tensors, f"model.init {path}")
        return
    own = network.state_dict()  # same arguments but the scale: what does not fit is the upsampling
    fitting = {k: v for k, v in tensors.items() if k in own and own[k].shape == v.shape}
    left = sorted(set(own) - set(fitting))
    network.load_state_dict({**own, **fitting}, strict=True)
    log.info(
        "model.init: %d of %d tensors from the x%s network %s; newly initialised for x%s: %s",
        len(fitting),
        len(own),
        saved.scale,
        path,
        spec.scale,
        ", ".join(left),
    )


def describe(run: TrainingRun, network: nn.Module) -> str:
    """The run's first log line: what is trained on what, how, and where the files go."""
    config, data = run.config, run.data
    parameters = sum(p.numel() for p in network.parameters())
    return (
        f"training {config.model.preset} x{run.spec.scale} ({parameters / 1e6:.2f}M parameters) on "
        f"{data.samples.epoch_length} images: {data.description}; HR patch {data.samples.hr_patch}, batch "
        f"{config.data.batch_size} x {run.context.world_size} process(es) = {run.global_batch}, "
        f"{config.train.steps} steps, {config.train.loss} loss, {config.train.precision}, device {run.device}; "
        f"output in {run.out_dir}"
    )


# --- the step --------------------------------------------------------------------


class PixelStage:
    """The network, its optimizer and EMA, and one pixel-loss step: what `TrainingRun.loop` drives."""

    def __init__(
        self,
        config: TrainConfig,
        context: DistributedContext,
        network: nn.Module,
        loss_fn: PixelLoss,
        checkpoint: Checkpoint | None,
    ) -> None:
        """Move the network to the device, restore the checkpoint's states, wrap it for DDP and compile."""
        train = config.train
        self.device = context.device
        self.precision = train.precision
        self.loss_fn = loss_fn
        self.model = network.to(self.device)
        self.update = WeightUpdate(config, network.parameters())
        self.ema_decay = train.ema
        self.ema = WeightAverage(network, train.ema) if train.ema > 0 else None
        if checkpoint is not None:
            self.load_state(checkpoint.state)
        # What is validated and saved: the average when there is one.
        self.network: nn.Module = self.ema.model if self.ema is not None else self.model
        # The network as the step runs it: under DDP, and compiled when asked.
        self.wrapped: nn.Module = distributed.wrap(self.model, context)
        if train.compile:
            self.wrapped = torch.compile(self.wrapped)  # type: ignore[assignment]
        self.model.train()

    def load_state(self, state: dict[str, Any]) -> None:
        """The network, optimizer and EMA of a checkpoint."""
        self.model.load_state_dict(state["model"])
        self.update.load_state_dict(state)
        if self.ema is not None:
            self.ema = WeightAverage(self.model, self.ema_decay)  # a checkpoint without EMA: start it here
            if state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Output under autocast, float32 loss, one update, the EMA after it."""
        lr, hr = to_unit_range(batch, self.device)
        with autocast_for(self.precision, self.device):
            sr = self.wrapped(lr)
        sr = sr.float()
        loss = self.loss_fn(sr, hr)
        self.update.apply(loss)
        if self.ema is not None:
            self.ema.update(self.model)
        return {"loss": loss, "mse": F.mse_loss(sr.detach(), hr)}

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            **self.update.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
        }

    def log_interval(self, run_log: RunLog, step: int, report: dict[str, float]) -> None:
        run_log.interval(step, **report, lr=self.update.learning_rate)
