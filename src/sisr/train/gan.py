"""SRGAN-style perceptual fine-tuning: `finetune(config) -> TrainResult`; `sisr finetune` wraps it.

The second stage of the article's recipe. A pixel-trained generator (SRResNet,
EDSR or WDSR weight file) is trained on VGG content loss + 1e-3 x adversarial
loss against SRGAN's discriminator, the two networks updated alternately each
step: first the generator (against the current discriminator), then the
discriminator on the real HR patches and the generator's output, detached.

Everything around the step is the pixel trainer's: data, validation (PSNR),
DDP, precision, Ctrl-C handling, the run log. Checkpoints hold both networks,
both optimizers and schedulers, the step, the data position and every random
generator, so a resumed run ends bit for bit where an uninterrupted one does
(CPU). LPIPS-VGG is added to validation when its two weight files are on disk
(`gan.lpips_vgg16_weights` / `gan.lpips_weights`, their env vars or the cache;
see `sisr.lpips`); it is never downloaded here.

Output folder: the pixel trainer's files (generator as `best.safetensors` /
`last.safetensors`), plus `discriminator.safetensors` and `samples/step_N.png`
(a fixed validation crop: LR nearest-neighbour enlarged, SR, HR side by side).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import SisrError
from ..lpips import LPIPS, lpips_weights_available
from ..models import build_model
from ..losses import PIXEL_LOSSES, SRGAN_FEATURE_SCALE, ContentLoss, PerceptualLoss, discriminator_loss
from . import distributed
from .checkpoint import check_same_network, restore_rng_state
from .config import TrainConfig, _merge_into, parse_override, read_toml, set_dotted
from .ema import WeightAverage
from .optimization import WeightUpdate
from .trainer import (
    Progress,
    TrainResult,
    _autocast,
    _check_precision,
    _Run,
    _RunFiles,
    run_in_context,
    seed_everything,
)
from .validation import ValidationSet, to_uint8_image

DISCRIMINATOR_NAME = "discriminator.safetensors"
SAMPLES_DIR = "samples"
DISCRIMINATOR_ARCH = "srgan-discriminator"
GENERATOR_ARCHS = ("srresnet", "msrresnet", "edsr", "wdsr")
SOURCE = "sisr finetune"


@dataclass
class GanSection:
    content_layer: str = "vgg54"  # VGG19 features of the content loss: "vgg22" or "vgg54" (SRGAN)
    before_activation: bool = False  # features before the ReLU (ESRGAN) instead of after (SRGAN)
    feature_scale: float = SRGAN_FEATURE_SCALE  # VGG features x this before the MSE (SRGAN: 1/12.75)
    vgg19_weights: str = ""  # torchvision vgg19 file; "" = $SISR_VGG19_WEIGHTS, the cache, or a download
    # LPIPS at validation: torchvision vgg16 file and lpips' weights/v0.1/vgg.pth; "" = $SISR_VGG16_WEIGHTS /
    # $SISR_LPIPS_WEIGHTS, else the cache; skipped when not found (never downloaded during training)
    lpips_vgg16_weights: str = ""
    lpips_weights: str = ""
    adversarial_weight: float = 1e-3
    pixel_weight: float = 0.0  # weight of an extra pixel-loss term; 0 = none (SRGAN)
    pixel_loss: str = "l1"  # "l1" or "mse"
    discriminator_filters: int = 64
    sample_every: int = 1000  # steps between sample images (samples/step_N.png); 0 = none


@dataclass
class FinetuneConfig(TrainConfig):
    """The pixel trainer's options plus [gan]; `model.init` (the generator) is required."""

    gan: GanSection = field(default_factory=GanSection)

    def validate(self) -> None:
        super().validate()
        gan, problems = self.gan, []
        if not self.model.init:
            problems.append("model.init (--init) must name the pixel-trained generator's sisr weight file")
        if gan.pixel_loss not in PIXEL_LOSSES:
            problems.append(f"gan.pixel_loss must be one of {', '.join(PIXEL_LOSSES)}, not {gan.pixel_loss!r}")
        for key in ("adversarial_weight", "pixel_weight", "sample_every"):
            if getattr(gan, key) < 0:
                problems.append(f"gan.{key} must not be negative, not {getattr(gan, key)}")
        if gan.discriminator_filters < 1 or gan.feature_scale <= 0:
            problems.append("gan.discriminator_filters and gan.feature_scale must be positive")
        if problems:
            raise SisrError("invalid fine-tuning configuration: " + "; ".join(problems))


# SRGAN's fine-tuning recipe (as in the article): Adam 1e-4 for 100k steps, then 1e-5 for 100k more,
# batch 16, HR patches of 96 pixels.
FINETUNE_DEFAULTS: dict[str, Any] = {
    "model": {"preset": "srgan"},
    "data": {"patch_size": 96, "batch_size": 16},
    "optim": {"lr": 1e-4, "milestones": [100000], "gamma": 0.1},
    "train": {"steps": 200000},
}


def load_finetune_config(
    path: str | os.PathLike | None = None, overrides: Sequence[str] = (), values: dict[str, Any] | None = None
) -> FinetuneConfig:
    """SRGAN defaults < TOML file `path` < `values` (nested dict) < `--set` style `overrides`.

    `model.preset` is only a label here (it names the default output folder,
    runs/<preset>): the generator's architecture comes from `model.init`.
    """
    config = FinetuneConfig()
    _merge_into(config, FINETUNE_DEFAULTS, "defaults")
    if path is not None:
        _merge_into(config, read_toml(path), str(path))
    if values:
        _merge_into(config, values, "options")
    if overrides:
        collected: dict[str, Any] = {}
        for text in overrides:
            key, value = parse_override(text)
            set_dotted(collected, key, value)
        _merge_into(config, collected, "--set")
    config.validate()
    return config


def _as_config(config: FinetuneConfig | dict | str | os.PathLike) -> FinetuneConfig:
    if isinstance(config, FinetuneConfig):
        return config
    if isinstance(config, dict):
        return load_finetune_config(values=config)
    return load_finetune_config(config)


# --- the pieces --------------------------------------------------------------


def load_generator(path: str | os.PathLike) -> nn.Module:
    """The pixel-trained generator of a sisr weight file; only SR networks qualify."""
    from ..weights import load_state_dict_strict, read_weight_file

    spec, tensors, _ = read_weight_file(path)
    if spec["arch"] not in GENERATOR_ARCHS:
        raise SisrError(
            f"model.init {path}: weights of a {spec['arch']} network; fine-tuning needs a generator "
            f"({', '.join(GENERATOR_ARCHS)})"
        )
    model = build_model(spec["arch"], spec["args"])
    load_state_dict_strict(model, tensors, f"model.init {path}")
    return model


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


def sample_crop(validation: ValidationSet, lr_side: int) -> tuple[torch.Tensor, np.ndarray]:
    """A fixed centre crop of the first validation image: (LR 1x3xhxw in [0, 1], HR uint8)."""
    _, lr, hr = validation.pairs[0]
    scale = validation.scale
    height, width = min(lr_side, lr.shape[2]), min(lr_side, lr.shape[3])
    top, left = (lr.shape[2] - height) // 2, (lr.shape[3] - width) // 2
    lr_crop = lr[:, :, top : top + height, left : left + width]
    hr_crop = hr[top * scale : (top + height) * scale, left * scale : (left + width) * scale]
    return lr_crop, np.ascontiguousarray(hr_crop)


def side_by_side(lr: torch.Tensor, sr: np.ndarray, hr: np.ndarray, scale: int) -> np.ndarray:
    """LR (enlarged by pixel repetition, so its pixels show), SR and HR in one row."""
    lr_image = to_uint8_image(lr)
    enlarged = np.repeat(np.repeat(lr_image, scale, axis=0), scale, axis=1)
    return np.concatenate([enlarged, sr, hr], axis=1)


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
    with _autocast(precision, device):
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
    with _autocast(precision, device):
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


def _tensorboard(run_log) -> Any:
    """The run log's TensorBoard writer, or None (not installed / not rank 0)."""
    return getattr(run_log, "_writer", None)


# --- the run -----------------------------------------------------------------


def finetune(
    config: FinetuneConfig | dict | str | os.PathLike,
    *,
    resume: bool | str | os.PathLike = True,
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
    config = _as_config(config)
    return run_in_context(
        config,
        lambda context: _GanRun(
            config,
            context,
            resume=False if fresh else resume,
            fresh=fresh,
            progress_bar=progress_bar,
            extractor=content_extractor,
        ).run(),
    )


class _GanRun(_Run):
    """The pixel trainer's run with a second network: set-up and data are inherited, the loop is GAN's."""

    def __init__(
        self,
        config: FinetuneConfig,
        context: distributed.DistributedContext,
        *,
        resume: bool | str | os.PathLike,
        fresh: bool,
        progress_bar: bool | None,
        extractor: nn.Module | None,
    ) -> None:
        super().__init__(config, context, resume=resume, fresh=fresh, progress_bar=progress_bar)
        self.extractor = extractor

    def _weight_metadata(self) -> dict[str, str]:
        return {"source": SOURCE, "generator_init": self.config.model.init}

    def run(self) -> TrainResult:
        config, context, device = self.config, self.context, self.device
        gan = config.gan
        started = time.perf_counter()
        _check_precision(config.train.precision, device)
        # The VGG (and any LPIPS) weights first: a missing file is reported before any data is prepared.
        loss_fn = build_perceptual_loss(gan, extractor=self.extractor, download=config.data.download)
        lpips_metric = optional_lpips(gan) if config.val.set and context.is_main else None
        seed_everything(config.train.seed)
        generator = load_generator(config.model.init)
        scale = int(generator.sisr_spec["args"]["scale"])
        discriminator = build_model(DISCRIMINATOR_ARCH, {"num_filters": gan.discriminator_filters})
        hr_patch = config.data.patch_size or 96
        if hr_patch % scale:
            raise SisrError(f"data.patch_size {hr_patch} is not a multiple of the generator's scale {scale}")
        spec = generator.sisr_spec

        state, state_path = self._resume_state()
        if state is not None:
            if state.get("discriminator") is None:
                raise SisrError(
                    f"{state_path}: a pixel-training checkpoint, not a fine-tuning one; "
                    f"use another --out folder, or --fresh to start over there"
                )
            check_same_network(state, spec, state_path)
        samples, data_description = self._prepare_data(scale, hr_patch)
        validation = self._load_validation(scale)

        generator.to(device)
        discriminator.to(device)
        loss_fn.to(device)
        ema = WeightAverage(generator, config.train.ema) if config.train.ema > 0 else None
        g_update = WeightUpdate(config, generator.parameters())
        d_update = WeightUpdate(config, discriminator.parameters())
        progress = Progress()
        if state is not None:
            generator.load_state_dict(state["model"])
            discriminator.load_state_dict(state["discriminator"])
            g_update.load_state_dict(state)
            d_update.load_state_dict(state["discriminator_update"])
            if ema is not None:
                ema = WeightAverage(generator, config.train.ema)
                if state.get("ema") is not None:
                    ema.load_state_dict(state["ema"])
            restore_rng_state(state["rng"])
            progress = Progress.from_state(state)
            self._warn_about_changes(state, samples.epoch_length)
        resumed_from = progress.step if state is not None else None
        final = ema.model if ema is not None else generator

        train_g = distributed.wrap(generator, context)
        train_d = distributed.wrap(discriminator, context)
        if config.train.compile:
            train_g, train_d = torch.compile(train_g), torch.compile(train_d)
        global_batch = config.data.batch_size * context.world_size
        loader = self._loader(samples, progress)
        run_log = self._open_log(progress)
        run_log.message(
            f"fine-tuning {spec['arch']} x{scale} from {config.model.init} with VGG "
            f"{gan.content_layer if self.extractor is None else '(given extractor)'} content loss + "
            f"{gan.adversarial_weight:g} x adversarial"
            + (f" + {gan.pixel_weight:g} x {gan.pixel_loss}" if gan.pixel_weight else "")
            + f" on {samples.epoch_length} images: {data_description}; HR patch {hr_patch}, batch "
            f"{config.data.batch_size} x {context.world_size} process(es) = {global_batch}, "
            f"{config.train.steps} steps, {config.train.precision}, device {device}; output in {self.out_dir}"
        )
        if validation is not None:
            run_log.message(
                "validation: PSNR and LPIPS-VGG"
                if lpips_metric is not None
                else "validation: PSNR only (LPIPS skipped: its weights are not on disk; see sisr.lpips)"
            )
        if resumed_from is not None:
            run_log.message(f"resuming from step {resumed_from} ({state_path})")
        run_log.record(
            "start",
            step=progress.step,
            resumed=resumed_from is not None,
            stage="gan",
            world_size=context.world_size,
            global_batch=global_batch,
            config=config.to_dict(),
            lpips=lpips_metric is not None,
        )

        files = _RunFiles(checkpoint=self.checkpoint_path if state is not None else None)
        fixed_crop = sample_crop(validation, max(hr_patch // scale, 1) * 2) if validation is not None else None

        def write_checkpoint() -> None:
            if context.is_main:
                self._write_checkpoint(
                    files,
                    progress.state(samples, global_batch),
                    {
                        "stage": "gan",
                        "model_spec": spec,
                        "model": generator.state_dict(),
                        **g_update.state_dict(),
                        "discriminator_spec": discriminator.sisr_spec,
                        "discriminator": discriminator.state_dict(),
                        "discriminator_update": d_update.state_dict(),
                        "ema": ema.state_dict() if ema is not None else None,
                    },
                )

        def save_networks() -> None:
            self._save_last(final, progress, validation, files)
            self._save_weights(discriminator, self.out_dir / DISCRIMINATOR_NAME, progress.step, None, None)

        def validate_and_save() -> None:
            if context.is_main:
                if validation is not None:
                    self._validate(final, validation, progress, run_log, files)
                    if lpips_metric is not None:
                        distance = validation_lpips(final, validation, lpips_metric, device)
                        run_log.record("val_lpips", step=progress.step, lpips=distance, set=validation.name)
                        run_log.message(f"step {progress.step}: validation LPIPS {distance:.4f} on {validation.name}")
                save_networks()
            distributed.barrier(context)

        @torch.no_grad()
        def write_sample() -> None:
            if not context.is_main or fixed_crop is None:
                return
            lr, hr = fixed_crop
            was_training = final.training
            final.eval()
            try:
                sr = to_uint8_image(final(lr.to(device)).float())
            finally:
                final.train(was_training)
            image = side_by_side(lr, sr, hr, scale)
            from ..image_io import write_image

            path = write_image(self.out_dir / SAMPLES_DIR / f"step_{progress.step}.png", image, overwrite=True)
            run_log.record("sample", step=progress.step, path=str(path))
            writer = _tensorboard(run_log)
            if writer is not None:
                writer.add_image("samples/lr_sr_hr", image, progress.step, dataformats="HWC")

        precision = config.train.precision

        def step(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
            lr = batch[0].to(device, non_blocking=True).float().div_(255)
            hr = batch[1].to(device, non_blocking=True).float().div_(255)
            sr, parts = generator_step(train_g, train_d, g_update, loss_fn, lr, hr, precision, device)
            if ema is not None:
                ema.update(generator)
            d_parts = discriminator_step(train_d, d_update, hr, sr, precision, device)
            return {
                **{k: v for k, v in parts.items() if k != "total"},
                "generator_loss": parts["total"],
                **d_parts,
                "mse": F.mse_loss(sr, hr),
            }

        session_start = time.perf_counter()
        generator.train()
        discriminator.train()
        interrupted = self._loop(
            loader,
            progress,
            run_log,
            global_batch,
            step=step,
            log_interval=lambda done, report: self._log_interval(run_log, done, report, g_update.learning_rate),
            validate_and_save=validate_and_save,
            write_checkpoint=write_checkpoint,
            save_on_stop=save_networks,
            extra=[(gan.sample_every, write_sample)],
        )
        result = self._finish(
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
        result.discriminator = discriminator.eval()  # type: ignore[attr-defined]
        return result

    @staticmethod
    def _log_interval(run_log, step: int, report: dict[str, float], lr: float) -> None:
        """One JSON line (and TensorBoard scalars) with every loss and D's mean outputs."""
        if not run_log.enabled:
            return
        run_log.record("train", step=step, lr=lr, **report)
        writer = _tensorboard(run_log)
        if writer is not None:
            for key, value in report.items():
                writer.add_scalar(f"train/{key}", value, step)
            writer.add_scalar("train/lr", lr, step)
        if getattr(run_log, "_bar", None) is not None:
            return  # the progress bar is on screen; the JSON lines hold the numbers
        run_log.message(
            f"step {step}/{run_log.total_steps}  content {report.get('content', 0):.5f}  adversarial "
            f"{report.get('adversarial', 0):.4f}  D loss {report.get('discriminator_loss', 0):.4f}  "
            f"D(x) {report.get('d_real', 0):.3f}  D(G(z)) {report.get('d_fake', 0):.3f}  "
            f"patch PSNR {report['psnr_rgb']:.2f} dB  lr {lr:.3g}  {report['steps_per_s']:.2f} steps/s"
        )


__all__ = [
    "DISCRIMINATOR_NAME",
    "FinetuneConfig",
    "GanSection",
    "build_perceptual_loss",
    "discriminator_step",
    "finetune",
    "generator_step",
    "load_finetune_config",
    "load_generator",
]
