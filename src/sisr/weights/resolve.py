"""Turn what a user typed after `--model` into a network."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from torch import nn

from ..errors import SisrError
from ..models import PRESETS, build_model
from .bundled import BUNDLED, is_bundled_name, load_bundled
from .convert import detect_format, load_foreign
from .native import load_model
from .zoo import close_pretrained_names, is_zoo_name, list_pretrained, load_pretrained


def resolve_model(name: str | os.PathLike, scale: int | None = None, device: str = "cpu") -> nn.Module:
    """A bundled default (`default-x4`), a weight file path, a zoo name (`edsr-baseline-x4@official`), or `bicubic`.

    `bicubic` is the MATLAB bicubic baseline at `scale` (default 4). Weight
    files of other implementations (Keras .h5, official EDSR .pt, BasicSR
    .pth) are converted in memory, as `sisr convert` would. A zoo name is
    downloaded and converted on first use, then loaded from the cache.

    `scale`, when given, must match the network's: a x2 network asked for x4 is
    an error, not a silently different output size.
    """
    text = str(name)
    if text == "bicubic":
        return build_model("bicubic", {"scale": scale or 4}).to(device).eval()
    path = Path(text)
    if is_bundled_name(text) and not path.exists():
        model = load_bundled(text, device=device)
    elif is_zoo_name(text) and not path.exists():
        model = load_pretrained(text, device=device)
    elif path.suffix or path.exists() or os.sep in text:
        if path.is_file() and detect_format(path) != "sisr":
            model = load_foreign(path).to(device).eval()
        else:
            model = load_model(path, device=device)
    elif text in PRESETS:
        pretrained = [entry.name for entry in list_pretrained() if entry.preset == text]
        hint = f"; pretrained weights of it: {', '.join(pretrained)}" if pretrained else ""
        raise SisrError(
            f"{text!r} is an untrained preset (random weights): pass a weight file made by `sisr train` "
            f"or `sisr convert`, a pretrained model name (`sisr models --pretrained`), or `bicubic`{hint}"
        )
    else:
        close = close_pretrained_names(text)
        close += difflib.get_close_matches(text, list(BUNDLED), n=1, cutoff=0.8)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SisrError(
            f"--model {text!r}: no such weight file, and not `bicubic`, a bundled default "
            f"({', '.join(BUNDLED)}) or a pretrained model name{hint}"
        )
    model_scale = getattr(model, "scale", None)
    if scale is not None and model_scale is not None and int(model_scale) != int(scale):
        raise SisrError(f"{text}: the network upscales x{model_scale}, but x{scale} was asked for")
    return model
