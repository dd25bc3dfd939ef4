"""Weight files: sisr's native format, importing other implementations', export, the pretrained zoo, `load_model`."""

from .bundled import BUNDLED, default_model_name, load_bundled
from .convert import convert, detect_format, load_foreign
from .export import export_model
from .load import load_model
from .native import load_state_dict_strict, load_weight_file, read_weight_file, save_model
from .zoo import ZooEntry, fetch_pretrained, get_pretrained, list_pretrained, load_pretrained

__all__ = [
    "BUNDLED",
    "ZooEntry",
    "convert",
    "default_model_name",
    "detect_format",
    "export_model",
    "fetch_pretrained",
    "get_pretrained",
    "list_pretrained",
    "load_bundled",
    "load_foreign",
    "load_model",
    "load_pretrained",
    "load_state_dict_strict",
    "load_weight_file",
    "read_weight_file",
    "save_model",
]
