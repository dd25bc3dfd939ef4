"""What a run trains and validates on: the configuration's training pairs as patches, and the validation set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data.training import PatchSamples, TrainingPair
from . import distributed
from .config import TrainConfig
from .distributed import DistributedContext
from .validation import ValidationSet, load_validation_set


def training_pairs(config: TrainConfig, scale: int, progress: bool) -> tuple[list[TrainingPair], str]:
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


@dataclass
class TrainingData:
    """The patches a run trains on, what they are (for the log), and the validation set (rank 0 only)."""

    samples: PatchSamples
    description: str
    validation: ValidationSet | None


def load_training_data(config: TrainConfig, context: DistributedContext, scale: int, hr_patch: int) -> TrainingData:
    """Training patches and the validation set; rank 0 first, so only it downloads and fills the decoded cache."""
    from ..data.training import prepare_training_images

    data = config.data

    def prepare() -> tuple[Any, str]:
        pairs, what = training_pairs(config, scale, progress=context.is_main)
        images = prepare_training_images(
            pairs, scale, hr_patch, cache=data.cache, cache_dir=data.cache_dir or None, skip_small=data.skip_small
        )
        return images, what

    prepared = distributed.on_main(context, prepare)
    if prepared is None:  # the other ranks, once rank 0 is done
        prepared = prepare()
    images, what = prepared
    samples = PatchSamples(images, hr_patch, seed=config.train.seed, augment=data.augment)
    validation = None
    if config.val.set:
        validation = distributed.on_main(
            context,
            lambda: load_validation_set(
                config.val.set,
                scale,
                limit=config.val.limit,
                root=data.root,
                downgrade=data.downgrade,
                download=data.download,
            ),
        )
    return TrainingData(samples, what, validation)
