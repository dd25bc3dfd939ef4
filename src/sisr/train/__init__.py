"""Training with pixel losses: `sisr.train.train(config) -> TrainResult`; `sisr train` wraps it."""

from .config import TrainConfig, load_config
from .trainer import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "load_config", "train"]
