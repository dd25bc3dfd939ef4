"""`load_model`: everything `--model` takes, as one `SRModel`."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import torch

from ..errors import SisrError
from ..model import SRModel
from ..models import PRESETS, build_model
from ..models.spec import ModelSpec
from .bundled import BUNDLED, is_bundled_name, load_bundled
from .convert import detect_format, load_foreign
from .native import load_weight_file
from .zoo import close_pretrained_names, is_zoo_name, list_pretrained, load_pretrained


def load_model(
    name: str | os.PathLike[str], *, scale: int | None = None, device: str | torch.device = "cpu"
) -> SRModel:
    """A bundled default (`default-x4`), a weight file, a zoo name (`edsr-baseline-x4@official`), or `bicubic`.

    Weight files are recognised by their first bytes: sisr safetensors, Keras
    .h5 (the TensorFlow reference), official EDSR .pt or BasicSR .pth (the
    last three converted in memory, as `sisr convert` would). A zoo name is
    downloaded and converted on first use, then loaded from the cache.
    `bicubic` is the MATLAB bicubic baseline at `scale` (default 4).

    `scale`, when given, must match the network's: a x2 network asked for x4
    is an error, not a silently different output size.
    """
    text = os.fspath(name)
    if text == "bicubic":
        spec = ModelSpec("bicubic", {"scale": scale or 4})
        network = build_model(spec).to(device).eval()
        return SRModel.from_network(network, name="bicubic", spec=spec, source="bicubic", licence="MIT (sisr)")
    path = Path(text)
    if is_bundled_name(text) and not path.exists():
        model = load_bundled(text, device=device)
    elif is_zoo_name(text) and not path.exists():
        model = load_pretrained(text, device=device)
    elif path.suffix or path.exists() or os.sep in text:
        if path.is_file() and detect_format(path) != "sisr":
            model = load_foreign(path, device).eval()
        else:
            model = load_weight_file(path, device)
    elif text in PRESETS:
        pretrained = [entry.name for entry in list_pretrained() if entry.preset == text]
        hint = f"; pretrained weights of it: {', '.join(pretrained)}" if pretrained else ""
        raise SisrError(
            f"{text!r} is an untrained preset (random weights): pass a weight file made by `sisr train` "
            f"or `sisr convert`, a pretrained model name (`sisr models`), or `bicubic`{hint}"
        )
    else:
        close = close_pretrained_names(text)
        close += difflib.get_close_matches(text, list(BUNDLED), n=1, cutoff=0.8)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SisrError(
            f"model {text!r}: no such weight file, and not `bicubic`, a bundled default "
            f"({', '.join(BUNDLED)}) or a pretrained model name{hint}"
        )
    if scale is not None and model.scale != int(scale):
        raise SisrError(f"{text}: the network upscales x{model.scale}, but x{scale} was asked for")
    return model
