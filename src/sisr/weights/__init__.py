"""Weight files: sisr's native format, and resolving `--model` arguments."""

from .native import load_model, load_state_dict_strict, model_spec, read_weight_file, save_model
from .resolve import resolve_model

__all__ = ["load_model", "load_state_dict_strict", "model_spec", "read_weight_file", "resolve_model", "save_model"]
