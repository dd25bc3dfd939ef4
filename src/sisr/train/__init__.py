"""Training: pixel losses with `sisr.train.train(config)` (`sisr train`), then SRGAN-style perceptual
fine-tuning with `sisr.train.finetune(config)` (`sisr finetune`); both return a TrainResult."""

from .config import TrainConfig, load_config
from .gan import FinetuneConfig, finetune, load_finetune_config
from .trainer import TrainResult, train

__all__ = ["FinetuneConfig", "TrainConfig", "TrainResult", "finetune", "load_config", "load_finetune_config", "train"]
