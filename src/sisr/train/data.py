"""What a run trains and validates on: the configuration's training pairs as patches, and the validation set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data.degradations import fixed_degradation, training_recipe
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
    recipe = training_recipe(data.degradation, data.degradation_args)
    if not recipe.is_identity:
        what += f", LR patches degraded by the {recipe.name!r} recipe"
    samples = PatchSamples(images, hr_patch, seed=config.train.seed, augment=data.augment, degradation=recipe)
    validation = None
    if config.val.set:
        validation = distributed.on_main(
            context,
            lambda: degraded_validation(
                load_validation_set(
                    config.val.set,
                    scale,
                    limit=config.val.limit,
                    root=data.root,
                    downgrade=data.downgrade,
                    download=data.download,
                ),
                config.val.degradation,
            ),
        )
    return TrainingData(samples, what, validation)


def degraded_validation(validation: ValidationSet, degradation: str) -> ValidationSet:
    """The validation set with its LR images made by a fixed degradation (`val.degradation`), so a run that
    learns JPEG inputs is watched on JPEG inputs; "" keeps the set as it is."""
    if not degradation:
        return validation
    import numpy as np
    import torch

    fixed = fixed_degradation(degradation, "val.degradation")
    pairs = []
    for name, lr, hr in validation.pairs:
        # The LR tensor holds 8-bit values / 255, so this gives the stored image back exactly.
        lr8 = lr[0].mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        made = fixed.degrade(hr, validation.scale, lr=lr8, key=name).image
        tensor = torch.from_numpy(np.ascontiguousarray(made.transpose(2, 0, 1))).unsqueeze(0).float().div_(255)
        pairs.append((name, tensor, hr))
    return ValidationSet(f"{validation.name} ({fixed.name})", validation.scale, pairs)
