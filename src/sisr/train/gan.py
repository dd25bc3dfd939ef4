"""SRGAN-style perceptual fine-tuning (`sisr finetune`): `finetune(config) -> TrainResult`.

The second stage of the article's recipe. A pixel-trained generator (SRResNet,
EDSR or WDSR) is trained on VGG content loss + 1e-3 x adversarial loss against
SRGAN's discriminator, the two networks updated alternately each step: first
the generator (against the current discriminator), then the discriminator on
the real HR patches and the generator's output, detached.

Everything around the step is the shared `TrainingRun`'s, as for pixel
training (`sisr.train.run`); checkpoints hold both networks and both
optimizers. Validation adds LPIPS-VGG when its two weight files are on disk
(`gan.lpips_vgg16_weights` / `gan.lpips_weights`, their env vars or the
cache; see `sisr.lpips`); they are never downloaded here.

Output folder: the pixel trainer's files (the generator as `best.safetensors`
/ `last.safetensors`), plus `discriminator.safetensors` and
`samples/step_N.png` (a fixed validation crop: LR enlarged by pixel
repetition, SR, HR side by side).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import SisrError
from ..losses import ContentLoss, PerceptualLoss, discriminator_loss
from ..lpips import LPIPS, lpips_weights_available
from ..models import ModelSpec, build_model
from . import distributed
from .checkpoint import Checkpoint, spec_state
from .config import FinetuneConfig, GanSection, load_finetune_config
from .data import load_training_data
from .distributed import DistributedContext
from .ema import WeightAverage
from .logging import RunLog
from .optimization import WeightUpdate
from .result import TrainResult
from .run import (
    Batch,
    ExtraWeights,
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
from .validation import ValidationSet, to_uint8_image

DISCRIMINATOR_NAME = "discriminator.safetensors"
SAMPLES_DIR = "samples"
DISCRIMINATOR_ARCH = "srgan-discriminator"
GENERATOR_ARCHS = ("srresnet", "msrresnet", "edsr", "wdsr")
SOURCE = "sisr finetune"  # the `source` of the weight files a run writes


def finetune(
    config: FinetuneConfig | dict[str, Any] | str | os.PathLike[str],
    *,
    resume: bool | str | os.PathLike[str] = True,
    fresh: bool = False,
    progress_bar: bool | None = None,
    content_extractor: nn.Module | None = None,
) -> TrainResult:
    """Fine-tune `model.init` with SRGAN's perceptual and adversarial losses.

    `resume`, `fresh` and `progress_bar` as in `sisr.train.train`.
    `content_extractor` replaces the pretrained VGG19 of the content loss (any
    module mapping [0, 1] RGB images to features), e.g. one with random weights
    in tests. Under torchrun every process calls this; rank 0 writes the files.
    """
    if isinstance(config, dict):
        config = load_finetune_config(values=config)
    elif not isinstance(config, FinetuneConfig):
        config = load_finetune_config(config)
    options = RunOptions(resume=resume, fresh=fresh, progress_bar=progress_bar)
    return run_in_context(config, lambda context: finetune_in_context(config, context, options, content_extractor))


def finetune_in_context(
    config: FinetuneConfig,
    context: DistributedContext,
    options: RunOptions,
    content_extractor: nn.Module | None = None,
) -> TrainResult:
    """`finetune` in one process: set-up, then the loop."""
    started, gan = time.perf_counter(), config.gan
    check_precision(config.train.precision, context.device)
    # The VGG (and any LPIPS) weights first: a missing file is reported before any data is prepared.
    loss_fn = build_perceptual_loss(gan, extractor=content_extractor, download=config.data.download)
    lpips_metric = optional_lpips(gan) if config.val.set and context.is_main else None
    seed_everything(config.train.seed)
    generator, spec = load_generator(config.model.init)
    discriminator_spec = ModelSpec(DISCRIMINATOR_ARCH, {"num_filters": gan.discriminator_filters})
    discriminator = build_model(discriminator_spec)
    scale, hr_patch = spec_scale(spec), config.data.patch_size or 96
    if hr_patch % scale:
        raise SisrError(f"data.patch_size {hr_patch} is not a multiple of the generator's scale {scale}")
    checkpoint = read_checkpoint(config, context, options)
    if checkpoint is not None:
        check_gan_checkpoint(checkpoint, spec)
    data = load_training_data(config, context, scale, hr_patch)
    stage = GanStage(config, context, generator, discriminator, discriminator_spec, loss_fn, checkpoint)

    run = TrainingRun(
        config,
        context,
        spec=spec,
        data=data,
        checkpoint=checkpoint,
        options=options,
        metadata={"source": SOURCE, "generator_init": config.model.init},
        started=started,
    )
    run.start(describe(run, gan, content_extractor, lpips_metric), stage="gan", lpips=lpips_metric is not None)
    interrupted = run.loop(
        stage,
        extra_weights=[ExtraWeights(DISCRIMINATOR_NAME, discriminator, discriminator_spec)],
        after_validation=validation_extras(run, stage, lpips_metric),
        periodic=sample_schedule(run, stage, gan.sample_every),
    )
    return run.finish(stage.network, interrupted, discriminator=discriminator)


# --- set-up ----------------------------------------------------------------------


def load_generator(path: str | os.PathLike[str]) -> tuple[nn.Module, ModelSpec]:
    """The pixel-trained generator and its spec: anything `load_model` reads, as long as it is an SR network."""
    from ..weights import load_model

    model = load_model(path)
    spec = model.spec
    if spec is None or spec.arch not in GENERATOR_ARCHS:
        what = spec.arch if spec is not None else type(model.network).__name__
        raise SisrError(
            f"model.init {path}: weights of a {what} network; fine-tuning needs a generator "
            f"({', '.join(GENERATOR_ARCHS)})"
        )
    return model.network, spec


def check_gan_checkpoint(checkpoint: Checkpoint, spec: ModelSpec) -> None:
    """A checkpoint to resume must be a fine-tuning one, of this generator."""
    if checkpoint.state.get("discriminator") is None:
        raise SisrError(
            f"{checkpoint.path}: a pixel-training checkpoint, not a fine-tuning one; "
            f"use another --out folder, or --fresh to start over there"
        )
    checkpoint.check_network(spec)


def build_perceptual_loss(
    gan: GanSection, *, extractor: nn.Module | None = None, download: bool = True
) -> PerceptualLoss:
    """The generator's loss; `extractor` replaces the pretrained VGG19 (tests use random weights)."""
    content = ContentLoss(
        gan.content_layer,
        gan.before_activation,
        gan.feature_scale,
        extractor=extractor,
        weights=gan.vgg19_weights or None,
        download=download,
    )
    return PerceptualLoss(content, gan.adversarial_weight, gan.pixel_weight, gan.pixel_loss)


def optional_lpips(gan: GanSection) -> LPIPS | None:
    """LPIPS-VGG when its weights are on disk, else None; a path set in [gan] that is missing is an error."""
    explicit = bool(gan.lpips_vgg16_weights or gan.lpips_weights)
    if not explicit and not lpips_weights_available():
        return None
    return LPIPS.pretrained(gan.lpips_vgg16_weights or None, gan.lpips_weights or None, download=False)


def describe(run: TrainingRun, gan: GanSection, extractor: nn.Module | None, lpips_metric: LPIPS | None) -> list[str]:
    """The run's first log lines: what is fine-tuned on what, with which losses, and how it is validated."""
    config, data = run.config, run.data
    lines = [
        f"fine-tuning {run.spec.arch} x{run.spec.scale} from {config.model.init} with VGG "
        f"{gan.content_layer if extractor is None else '(given extractor)'} content loss + "
        f"{gan.adversarial_weight:g} x adversarial"
        + (f" + {gan.pixel_weight:g} x {gan.pixel_loss}" if gan.pixel_weight else "")
        + f" on {data.samples.epoch_length} images: {data.description}; HR patch {data.samples.hr_patch}, batch "
        f"{config.data.batch_size} x {run.context.world_size} process(es) = {run.global_batch}, "
        f"{config.train.steps} steps, {config.train.precision}, device {run.device}; output in {run.out_dir}"
    ]
    if data.validation is not None:
        lines.append(
            "validation: PSNR and LPIPS-VGG"
            if lpips_metric is not None
            else "validation: PSNR only (LPIPS skipped: its weights are not on disk; see sisr.lpips)"
        )
    return lines


# --- the step --------------------------------------------------------------------


def generator_step(
    generator: nn.Module,
    discriminator: nn.Module,
    update: WeightUpdate,
    loss_fn: PerceptualLoss,
    lr: torch.Tensor,
    hr: torch.Tensor,
    precision: str,
    device: torch.device,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One generator update against the current discriminator; returns SR (detached) and the loss parts.

    The discriminator's gradients from this backward pass are left behind and
    cleared by its own update before they could be used.
    """
    with autocast_for(precision, device):
        sr = generator(lr)
        fake_logits = discriminator(sr)
    sr = sr.float()
    loss, parts = loss_fn(sr, hr, fake_logits)
    update.apply(loss)
    return sr.detach(), parts


def discriminator_step(
    discriminator: nn.Module,
    update: WeightUpdate,
    hr: torch.Tensor,
    sr: torch.Tensor,
    precision: str,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """One discriminator update on real HR and generated SR patches; returns its loss and mean outputs.

    Real and generated patches go through in one batch (one forward, as DDP
    expects); SR is detached, so this step never reaches the generator.
    """
    with autocast_for(precision, device):
        logits = discriminator(torch.cat([hr, sr.detach()]))
    real_logits, fake_logits = logits.float().chunk(2)
    loss = discriminator_loss(real_logits, fake_logits)
    update.apply(loss)
    with torch.no_grad():
        return {
            "discriminator_loss": loss.detach(),
            "d_real": torch.sigmoid(real_logits).mean(),
            "d_fake": torch.sigmoid(fake_logits).mean(),
        }


class GanStage:
    """Generator, discriminator, their optimizers and the generator's EMA, and one alternating step."""

    def __init__(
        self,
        config: FinetuneConfig,
        context: DistributedContext,
        generator: nn.Module,
        discriminator: nn.Module,
        discriminator_spec: ModelSpec,
        loss_fn: PerceptualLoss,
        checkpoint: Checkpoint | None,
    ) -> None:
        """Move everything to the device, restore the checkpoint's states, wrap for DDP and compile."""
        train = config.train
        self.device = context.device
        self.precision = train.precision
        self.generator = generator.to(self.device)
        self.discriminator = discriminator.to(self.device)
        self.discriminator_spec = discriminator_spec
        self.loss_fn = loss_fn.to(self.device)
        self.ema_decay = train.ema
        self.ema = WeightAverage(generator, train.ema) if train.ema > 0 else None
        self.generator_update = WeightUpdate(config, generator.parameters())
        self.discriminator_update = WeightUpdate(config, discriminator.parameters())
        if checkpoint is not None:
            self.load_state(checkpoint.state)
        # What is validated and saved as best/last: the generator's average when there is one.
        self.network: nn.Module = self.ema.model if self.ema is not None else self.generator
        # The networks as the step runs them: under DDP, and compiled when asked.
        self.wrapped_generator: nn.Module = distributed.wrap(self.generator, context)
        self.wrapped_discriminator: nn.Module = distributed.wrap(self.discriminator, context)
        if train.compile:
            self.wrapped_generator = torch.compile(self.wrapped_generator)  # type: ignore[assignment]
            self.wrapped_discriminator = torch.compile(self.wrapped_discriminator)  # type: ignore[assignment]
        self.generator.train()
        self.discriminator.train()

    def load_state(self, state: dict[str, Any]) -> None:
        """Both networks, both optimizers and the EMA of a checkpoint."""
        self.generator.load_state_dict(state["model"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.generator_update.load_state_dict(state)
        self.discriminator_update.load_state_dict(state["discriminator_update"])
        if self.ema is not None:
            self.ema = WeightAverage(self.generator, self.ema_decay)  # a checkpoint without EMA: start it here
            if state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The generator's update, its EMA, then the discriminator's; every loss part for the log."""
        lr, hr = to_unit_range(batch, self.device)
        sr, parts = generator_step(
            self.wrapped_generator,
            self.wrapped_discriminator,
            self.generator_update,
            self.loss_fn,
            lr,
            hr,
            self.precision,
            self.device,
        )
        if self.ema is not None:
            self.ema.update(self.generator)
        d_parts = discriminator_step(
            self.wrapped_discriminator, self.discriminator_update, hr, sr, self.precision, self.device
        )
        return {
            **{k: v for k, v in parts.items() if k != "total"},
            "generator_loss": parts["total"],
            **d_parts,
            "mse": F.mse_loss(sr, hr),
        }

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "stage": "gan",
            "model": self.generator.state_dict(),
            **self.generator_update.state_dict(),
            "discriminator_spec": spec_state(self.discriminator_spec),
            "discriminator": self.discriminator.state_dict(),
            "discriminator_update": self.discriminator_update.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
        }

    def log_interval(self, run_log: RunLog, step: int, report: dict[str, float]) -> None:
        """One JSON line (and TensorBoard scalars) with every loss and D's mean outputs."""
        lr = self.generator_update.learning_rate
        run_log.record("train", step=step, lr=lr, **report)
        run_log.scalars(step, {**report, "lr": lr})
        if run_log.has_progress_bar:
            return  # the bar is on screen; the JSON lines hold the numbers
        run_log.message(
            f"step {step}/{run_log.total_steps}  content {report.get('content', 0):.5f}  adversarial "
            f"{report.get('adversarial', 0):.4f}  D loss {report.get('discriminator_loss', 0):.4f}  "
            f"D(x) {report.get('d_real', 0):.3f}  D(G(z)) {report.get('d_fake', 0):.3f}  "
            f"patch PSNR {report['psnr_rgb']:.2f} dB  lr {lr:.3g}  {report['steps_per_s']:.2f} steps/s"
        )


# --- what validation adds --------------------------------------------------------


@torch.no_grad()
def validation_lpips(model: nn.Module, validation: ValidationSet, metric: LPIPS, device: torch.device) -> float:
    """Mean LPIPS of `model`'s 8-bit-rounded output against HR over the set (as PSNR sees the images)."""
    was_training = model.training
    model.eval()
    metric.to(device)
    values = []
    try:
        for _, lr, hr in validation.pairs:
            sr = model(lr.to(device)).float().clamp(0, 1).mul(255).round().div(255)
            hr_tensor = torch.from_numpy(hr.transpose(2, 0, 1).copy()).unsqueeze(0).to(device).float().div(255)
            values.append(float(metric(sr, hr_tensor)[0]))
    finally:
        model.train(was_training)
    return float(np.mean(values))


def validation_extras(run: TrainingRun, stage: GanStage, metric: LPIPS | None) -> Callable[[], None] | None:
    """What follows each PSNR validation: LPIPS on the same set, logged beside it (when its weights are there)."""
    validation = run.validation
    if metric is None or validation is None:
        return None

    def log_lpips() -> None:
        distance = validation_lpips(stage.network, validation, metric, run.device)
        run.log.record("val_lpips", step=run.progress.step, lpips=distance, set=validation.name)
        run.log.message(f"step {run.progress.step}: validation LPIPS {distance:.4f} on {validation.name}")

    return log_lpips


SampleCrop = tuple[torch.Tensor, np.ndarray, int]  # LR 1x3xhxw in [0, 1], HR uint8, scale


def sample_crop(validation: ValidationSet, lr_side: int) -> SampleCrop:
    """A fixed centre crop of the first validation image: (LR 1x3xhxw in [0, 1], HR uint8, scale)."""
    _, lr, hr = validation.pairs[0]
    scale = validation.scale
    height, width = min(lr_side, lr.shape[2]), min(lr_side, lr.shape[3])
    top, left = (lr.shape[2] - height) // 2, (lr.shape[3] - width) // 2
    lr_crop = lr[:, :, top : top + height, left : left + width]
    hr_crop = hr[top * scale : (top + height) * scale, left * scale : (left + width) * scale]
    return lr_crop, np.ascontiguousarray(hr_crop), scale


def side_by_side(lr: torch.Tensor, sr: np.ndarray, hr: np.ndarray, scale: int) -> np.ndarray:
    """LR (enlarged by pixel repetition, so its pixels show), SR and HR in one row."""
    lr_image = to_uint8_image(lr)
    enlarged = np.repeat(np.repeat(lr_image, scale, axis=0), scale, axis=1)
    return np.concatenate([enlarged, sr, hr], axis=1)


def sample_schedule(run: TrainingRun, stage: GanStage, every: int) -> list[tuple[int, Callable[[], None]]]:
    """Sample images every `every` steps, of a fixed crop of the first validation image (rank 0; none without one)."""
    if run.validation is None:
        return []
    lr_side = max(run.data.samples.lr_patch, 1) * 2
    crop = sample_crop(run.validation, lr_side)
    return [(every, lambda: write_sample(run, stage.network, crop))]


@torch.no_grad()
def write_sample(run: TrainingRun, network: nn.Module, crop: SampleCrop) -> None:
    """`samples/step_N.png` and a TensorBoard image: the crop as LR, SR and HR, to watch artefacts grow."""
    from ..image_io import write_image

    lr, hr, scale = crop
    was_training = network.training
    network.eval()
    try:
        sr = to_uint8_image(network(lr.to(run.device)).float())
    finally:
        network.train(was_training)
    image = side_by_side(lr, sr, hr, scale)
    step = run.progress.step
    path = write_image(run.out_dir / SAMPLES_DIR / f"step_{step}.png", image, overwrite=True)
    run.log.record("sample", step=step, path=str(path))
    run.log.image("samples/lr_sr_hr", image, step)


__all__ = [
    "DISCRIMINATOR_NAME",
    "GanStage",
    "build_perceptual_loss",
    "discriminator_step",
    "finetune",
    "finetune_in_context",
    "generator_step",
    "load_generator",
    "validation_lpips",
]
