"""Training: pixel losses with `sisr.train.train(config)` (`sisr train`), then SRGAN-style perceptual
fine-tuning with `sisr.train.finetune(config)` (`sisr finetune`); both return a TrainResult.

`run.py` holds what the two share (output folder, checkpoints and resuming, validation, logging,
DDP, Ctrl-C) and `data.py` their data; `trainer.py` and `gan.py` hold their set-up and their step.
"""

from .config import FinetuneConfig, TrainConfig, load_config, load_finetune_config
from .gan import finetune
from .result import TrainResult
from .trainer import train

__all__ = ["FinetuneConfig", "TrainConfig", "TrainResult", "finetune", "load_config", "load_finetune_config", "train"]
