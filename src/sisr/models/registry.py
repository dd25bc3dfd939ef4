"""One registry of architectures and named presets.

A preset is a name for an architecture with its arguments, as the papers
define them; `create_model("edsr-baseline-x4")` builds it. Weight files
record the architecture and arguments themselves (see `sisr.weights`), so a
preset is only needed to create a fresh network.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import SisrError
from .bicubic import Bicubic
from .edsr import EDSR
from .msrresnet import MSRResNet
from .spec import ModelSpec
from .srcnn import SRCNN
from .srresnet import Discriminator, SRResNet
from .vdsr import VDSR
from .wdsr import WDSR

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "edsr": EDSR,
    "wdsr": WDSR,
    "srresnet": SRResNet,
    "msrresnet": MSRResNet,
    "srgan-discriminator": Discriminator,
    "bicubic": Bicubic,
    "srcnn": SRCNN,
    "vdsr": VDSR,
}


@dataclass(frozen=True)
class Preset:
    name: str
    arch: str
    args: dict[str, Any]
    description: str
    # HR patch size for training: 96 as in the article (EDSR's paper used
    # 48 LR pixels, i.e. 192 at x4; set train.patch_size for that).
    patch_size: int = 96
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def scale(self) -> int:
        return int(self.args["scale"])

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(self.arch, dict(self.args))


PRESETS: dict[str, Preset] = {}


def register(preset: Preset) -> Preset:
    if preset.name in PRESETS:
        raise ValueError(f"preset {preset.name!r} registered twice")
    PRESETS[preset.name] = preset
    return preset


for _s in (2, 3, 4, 8):
    register(
        Preset(
            f"edsr-baseline-x{_s}",
            "edsr",
            {"scale": _s, "num_filters": 64, "num_blocks": 16, "res_scale": 1.0},
            f"EDSR baseline, 16 blocks of 64 filters, x{_s}",
        )
    )
for _s in (2, 3, 4):
    register(
        Preset(
            f"edsr-x{_s}",
            "edsr",
            {"scale": _s, "num_filters": 256, "num_blocks": 32, "res_scale": 0.1},
            f"EDSR, 32 blocks of 256 filters, residual scaling 0.1, x{_s}",
        )
    )
    for _n in (16, 32):
        register(
            Preset(
                f"wdsr-a-{_n}-x{_s}",
                "wdsr",
                {"scale": _s, "block": "a", "num_filters": 32, "num_blocks": _n, "expansion": 4},
                f"WDSR-A, {_n} wide blocks, 32 filters, expansion 4, x{_s}",
            )
        )
        register(
            Preset(
                f"wdsr-b-{_n}-x{_s}",
                "wdsr",
                {"scale": _s, "block": "b", "num_filters": 32, "num_blocks": _n, "expansion": 6, "linear": 0.8},
                f"WDSR-B, {_n} wide blocks, 32 filters, expansion 6, linear 0.8, x{_s}",
            )
        )
for _s in (2, 4):
    register(
        Preset(
            f"srresnet-x{_s}",
            "srresnet",
            {"scale": _s, "num_filters": 64, "num_blocks": 16},
            f"SRResNet (SRGAN generator), 16 blocks with batch norm, x{_s}",
        )
    )
# Pre-upsampling networks: bicubic enlargement inside, every layer at the output's size.
for _s in (2, 3, 4):
    register(
        Preset(
            f"srcnn-x{_s}",
            "srcnn",
            {"scale": _s, "kernel_sizes": [9, 5, 5], "num_filters": 64, "mapping_filters": 32},
            f"SRCNN 9-5-5, 64/32 filters, on the bicubic-enlarged image ('same' padding), x{_s}",
        )
    )
    register(
        Preset(
            f"vdsr-x{_s}",
            "vdsr",
            {"scale": _s, "num_filters": 64, "num_layers": 20},
            f"VDSR, 20 layers of 64 filters, residual over the bicubic-enlarged image, x{_s}",
        )
    )
del _s, _n


def build_model(arch: str | ModelSpec, args: dict[str, Any] | None = None) -> nn.Module:
    """The plain network of an architecture with explicit arguments (or of a spec); bad ones are a SisrError."""
    if isinstance(arch, ModelSpec):
        args = arch.args
        arch = arch.arch
    args = dict(args or {})
    if arch not in ARCHITECTURES:
        raise SisrError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    try:
        model = ARCHITECTURES[arch](**args)
    except (TypeError, ValueError) as error:
        raise SisrError(f"architecture {arch!r} with arguments {args}: {error}") from None
    return model


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `sisr models` lists them"
        raise SisrError(f"unknown model preset {name!r}{hint}")
    return PRESETS[name]


def preset_spec(name: str, **overrides: Any) -> ModelSpec:
    """The spec of preset `name`, with some arguments replaced (`num_blocks=8`)."""
    preset = get_preset(name)
    return ModelSpec(preset.arch, {**preset.args, **overrides})


def list_presets() -> list[Preset]:
    return list(PRESETS.values())
