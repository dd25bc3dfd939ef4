"""Weight files: sisr's native format, importing other implementations', export, and `--model` arguments."""

from .convert import convert, detect_format, load_foreign
from .export import export_model
from .native import load_model, load_state_dict_strict, model_spec, read_weight_file, save_model
from .resolve import resolve_model

__all__ = [
    "convert", "detect_format", "export_model", "load_foreign", "load_model", "load_state_dict_strict", "model_spec",
    "read_weight_file", "resolve_model", "save_model",
]
