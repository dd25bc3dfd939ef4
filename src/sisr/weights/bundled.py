"""The default networks that ship inside the package: usable offline, right after install.

`default-x2`, `default-x3` and `default-x4` are 16-block WDSR-B networks that
sisr's own `sisr train` made from the "291" images (configs/default-x*.toml
record how: two stages on a CPU, then, for x2 and x4, a third on a GPU).
They are stored in fp16 (about 0.6 MB each) under `sisr/pretrained/` and load
as float32. They are the out-of-the-box choice; DIV2K-trained networks (the
zoo, or `sisr train` on DIV2K) reach the papers' numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from ..errors import SisrError
from ..model import SRModel
from .native import load_weight_file

DEFAULT_SCALE = 4


@dataclass(frozen=True)
class BundledModel:
    name: str
    scale: int
    preset: str
    recipe: tuple[str, ...]  # the training configs in the repository that made it, in order

    @property
    def config(self) -> str:
        """The config of the last stage: the one the weight file records."""
        return self.recipe[-1]

    @property
    def path(self) -> Path:
        return Path(str(resources.files("sisr.pretrained") / f"{self.name}.safetensors"))


# Each scale: a first stage (x3 and x4 start from x2's first stage), then a
# second one from the first's weights with a restarted learning rate; x2 and x4
# a third, with larger patches and batches (x3 met its quality bar after two).
_STAGES = {2: ("", "-stage2", "-stage3"), 3: ("", "-stage2"), 4: ("", "-stage2", "-stage3")}
BUNDLED: dict[str, BundledModel] = {
    f"default-x{scale}": BundledModel(
        f"default-x{scale}",
        scale,
        f"wdsr-b-16-x{scale}",
        tuple(f"configs/default-x{scale}{stage}.toml" for stage in stages),
    )
    for scale, stages in _STAGES.items()
}


def is_bundled_name(name: str) -> bool:
    return name in BUNDLED


def default_model_name(scale: int | None = None) -> str:
    """The bundled network for `scale` (x4 when not given)."""
    scale = DEFAULT_SCALE if scale is None else int(scale)
    name = f"default-x{scale}"
    if name not in BUNDLED:
        scales = ", ".join(f"x{entry.scale}" for entry in BUNDLED.values())
        raise SisrError(
            f"no default network for x{scale} (sisr ships {scales}); pass --model: a weight file, "
            f"a pretrained model name (`sisr models --pretrained`) or `bicubic`"
        )
    return name


# The bundled networks are this project's own work, under its licence.
BUNDLED_LICENCE = "MIT (sisr)"


def load_bundled(name: str, device: str | torch.device = "cpu") -> SRModel:
    entry = BUNDLED[name]
    if not entry.path.is_file():
        raise SisrError(
            f"{name}: the bundled weight file {entry.path} is missing from this installation "
            f"(reinstall sisr, or pass --model with another network)"
        )
    return load_weight_file(entry.path, device, name=name, source="bundled", licence=BUNDLED_LICENCE)
