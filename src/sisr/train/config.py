"""The training configuration: every option, its default, and where values come from.

Values are layered: the defaults of the model's family (the papers' and
Krasser's article's settings), then a TOML file, then command-line flags and
`--set section.key=value` overrides. Unknown keys and values of the wrong type
are errors that name the key, so a typo never silently trains the wrong thing.

`sisr finetune` reads the same options plus a [gan] section (`FinetuneConfig`).

A config file may come from anywhere, so reading it cannot crash or
exhaust memory: a file over MAX_CONFIG_BYTES, bytes that are not UTF-8, bad
syntax, a table where a value belongs, integers outside 64 bits (or the
range a key allows) and floats that are not finite are each one SisrError
naming the file and the key.

Batch size: `data.batch_size` is per process. With DDP on W processes a step
uses W x batch_size patches (the papers' 16 = 1 GPU x 16, or 2 x 8, ...).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SisrError
from ..losses import PIXEL_LOSSES, SRGAN_FEATURE_SCALE

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the `tomli` backport, if installed, reads TOML the same way
    try:
        import tomli as tomllib
    except ImportError:  # pragma: no cover - depends on the environment
        tomllib = None

PRECISIONS = ("fp32", "bf16", "fp16")
CACHES = ("disk", "memory")

MAX_CONFIG_BYTES = 1 << 20  # a configuration is a few hundred bytes; a megabyte is not one
INT_RANGE = (-(2**63), 2**63 - 1)  # what every integer option must fit: torch, numpy and checkpoints store int64
SEED_RANGE = (0, 2**32 - 1)  # numpy.random.seed takes no more


@dataclass
class ModelSection:
    """[model]: the network to train and where its weights start."""

    preset: str = "edsr-baseline-x4"  # a name from `sisr models`
    args: dict[str, Any] = field(default_factory=dict)  # overrides of the preset's arguments, e.g. {num_blocks = 8}
    init: str = ""  # weights to start from (what --model takes: a file or model name); "" = random initialisation


@dataclass
class DataSection:
    """[data]: the training images, how patches are cut and batched, and where they are cached."""

    train: str = "div2k"  # "div2k", or a folder of HR images (LR made by MATLAB bicubic)
    train_lr: str = ""  # a folder of LR images paired with `train` by name (any degradation)
    downgrade: str = "bicubic"  # DIV2K's LR images: "bicubic" or "unknown"
    root: str = ""  # where data sets are found and downloaded; "" = the sisr cache
    limit: int = 0  # use only the first N training images; 0 = all
    patch_size: int = 0  # HR patch side in pixels; 0 = the preset's (96)
    skip_small: bool = False  # leave out images smaller than one patch (with a warning) instead of stopping
    batch_size: int = 16  # patches per step PER PROCESS (global batch = this x world size)
    augment: bool = True  # random horizontal flips and quarter turns
    # How LR patches are made (sisr.data.degradations): "bicubic" (the LR crop as it is, the papers' setting),
    # "jpeg" (then noise and JPEG), "realesrgan" (Real-ESRGAN's two rounds from the HR patch) or "custom"
    degradation: str = "bicubic"
    # the recipe's parameters replaced, e.g. {jpeg_range = [40, 95], noise_prob = 0}; see training_recipe
    degradation_args: dict[str, Any] = field(default_factory=dict)
    cache: str = "disk"  # decoded images: "disk" (memory-mapped .npy files) or "memory"
    cache_dir: str = ""  # "" = <sisr cache>/decoded
    workers: int = 2  # DataLoader worker processes; 0 = load in the training process
    download: bool = True  # download DIV2K / benchmark sets when missing


@dataclass
class ValSection:
    """[val]: the held-out images PSNR is measured on during training."""

    set: str = "DIV2K-valid"  # a benchmark name (Set5, DIV2K-valid, ...) or folder; "" = no validation
    limit: int = 10  # validate on the first N images; 0 = all
    every: int = 1000  # steps between validations
    # LR of the validation images made by a fixed degradation (jpeg75, noise15, realesrgan-0, ...); "" = as the set has it
    degradation: str = ""


@dataclass
class OptimSection:
    """[optim]: the optimizer and its learning-rate schedule."""

    name: str = "adam"  # "adam" or "adamw"
    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0
    milestones: list[int] = field(default_factory=lambda: [200000])  # steps where lr is multiplied by gamma
    gamma: float = 0.5
    grad_clip: float = 0.0  # maximum gradient norm; 0 = no clipping


@dataclass
class TrainSection:
    """[train]: the length of the run, its loss, precision, device and output."""

    steps: int = 300000
    loss: str = "l1"  # "l1", "l2" / "mse"
    seed: int = 0
    precision: str = "fp32"  # "fp32", "bf16" (autocast, CPU and CUDA) or "fp16" (autocast + GradScaler, CUDA)
    compile: bool = False  # torch.compile the network
    ema: float = 0.0  # decay of an exponential moving average of the weights (e.g. 0.999); 0 = off
    device: str = "auto"  # "auto" (CUDA if available), "cpu", "cuda", "cuda:1"
    out: str = ""  # output folder; "" = runs/<preset>
    log_every: int = 100
    checkpoint_every: int = 1000
    threads: int = 0  # CPU threads for torch; 0 = torch's default


@dataclass
class TrainConfig:
    """Every option of a run, by section; `load_config` builds one from its layers."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    val: ValSection = field(default_factory=ValSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)

    @property
    def out_dir(self) -> Path:
        """Where the run writes its files: `train.out`, else runs/<preset>."""
        return Path(self.train.out or Path("runs") / self.model.preset)

    def to_dict(self) -> dict[str, Any]:
        """The options as nested dicts (what checkpoints and the log record)."""
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """The whole configuration as TOML, loadable by `load_config`."""
        lines: list[str] = []
        for section, values in self.to_dict().items():
            lines.append(f"[{section}]")
            lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
            lines.append("")
        return "\n".join(lines)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """A checked configuration from nested dicts over the built-in defaults."""
        config = cls()
        merge_into(config, values, source)
        config.validate()
        return config

    def validate(self, sources: dict[str, str] | None = None) -> None:
        """Checks that need more than a type: ranges, choices; `sources` names where each key was set."""
        _raise_problems("invalid training configuration", self.problems(), sources)

    def problems(self) -> list[tuple[str, str]]:
        """(key, what is wrong with it) for every option out of its range or choices."""
        problems: list[tuple[str, str]] = []
        if self.train.precision not in PRECISIONS:
            problems.append(
                ("train.precision", f"must be one of {', '.join(PRECISIONS)}, not {_shown(self.train.precision)}")
            )
        if self.data.cache not in CACHES:
            problems.append(("data.cache", f"must be one of {', '.join(CACHES)}, not {_shown(self.data.cache)}"))
        if self.data.downgrade not in ("bicubic", "unknown"):
            problems.append(("data.downgrade", f"must be 'bicubic' or 'unknown', not {_shown(self.data.downgrade)}"))
        problems.extend(_degradation_problems(self.data.degradation, self.data.degradation_args, self.val.degradation))
        if self.optim.name not in ("adam", "adamw"):
            problems.append(("optim.name", f"must be 'adam' or 'adamw', not {_shown(self.optim.name)}"))
        if len(self.optim.betas) != 2:
            problems.append(("optim.betas", f"must hold two numbers, not {_shown(self.optim.betas)}"))
        for key, value in [
            ("train.steps", self.train.steps),
            ("data.batch_size", self.data.batch_size),
            ("val.every", self.val.every),
            ("train.log_every", self.train.log_every),
            ("train.checkpoint_every", self.train.checkpoint_every),
        ]:
            if value < 1:
                problems.append((key, f"must be at least 1, not {value}"))
        non_negative: list[tuple[str, float]] = [
            ("data.workers", self.data.workers),
            ("data.limit", self.data.limit),
            ("data.patch_size", self.data.patch_size),
            ("val.limit", self.val.limit),
            ("optim.grad_clip", self.optim.grad_clip),
            ("train.threads", self.train.threads),
        ]
        for key, number in non_negative:
            if number < 0:
                problems.append((key, f"must not be negative, not {number}"))
        if not SEED_RANGE[0] <= self.train.seed <= SEED_RANGE[1]:
            problems.append(("train.seed", f"must be from {SEED_RANGE[0]} to {SEED_RANGE[1]}, not {self.train.seed}"))
        if not 0.0 <= self.train.ema < 1.0:
            problems.append(("train.ema", f"must be in [0, 1) (0 = off), not {self.train.ema}"))
        if self.optim.lr <= 0:
            problems.append(("optim.lr", f"must be positive, not {self.optim.lr}"))
        if self.optim.gamma <= 0:
            problems.append(("optim.gamma", f"must be positive, not {self.optim.gamma}"))
        if not all(isinstance(m, int) and not isinstance(m, bool) for m in self.optim.milestones):
            problems.append(
                ("optim.milestones", f"must be step numbers (integers), not {_shown(self.optim.milestones)}")
            )
        elif list(self.optim.milestones) != sorted(self.optim.milestones):
            problems.append(("optim.milestones", f"must be increasing, not {_shown(self.optim.milestones)}"))
        return problems


def _degradation_problems(recipe: str, args: dict[str, Any], validation: str) -> list[tuple[str, str]]:
    """The training recipe, its arguments and the validation's fixed degradation, checked where they are defined."""
    from ..data.degradations import fixed_degradation, recipe_problems

    problems = recipe_problems(recipe, args)
    if validation:
        try:
            fixed_degradation(validation)
        except SisrError as error:
            problems.append(("val.degradation", str(error).removeprefix(f"degradation {validation!r} ")))
    return problems


def _raise_problems(what: str, problems: list[tuple[str, str]], sources: dict[str, str] | None) -> None:
    """One SisrError line for all problems, each naming its key and, where known, the file that set it."""
    if not problems:
        return
    sources = sources or {}
    parts = [f"{sources[key]}: {key} {text}" if key in sources else f"{key} {text}" for key, text in problems]
    if all(key in sources for key, _ in problems):
        raise SisrError("; ".join(parts))
    raise SisrError(f"{what}: " + "; ".join(parts))


def _shown(value: Any, limit: int = 80) -> str:
    """A value as the user wrote it, cut short: a hostile file's value may be a megabyte long."""
    return _cut(repr(value), limit)


def _cut(text: str, limit: int) -> str:
    """One line of at most `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(key))} = {_toml_value(item)}" for key, item in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _coerce(key: str, value: Any, default: Any, source: str) -> Any:
    """`value` converted to the type of the default, or a SisrError naming `key`."""
    expected = type(default)
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = _finite(key, value, source) if ok else value
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        value = _in_range(key, value, source) if ok else value
    elif expected is list:
        ok = isinstance(value, list)
        if ok and default and all(isinstance(item, float) for item in default):
            ok = all(isinstance(item, (int, float)) and not isinstance(item, bool) for item in value)
            value = [_finite(key, item, source) for item in value] if ok else value
        elif ok and default and all(isinstance(item, int) for item in default):
            ok = all(isinstance(item, int) and not isinstance(item, bool) for item in value)
            value = [_in_range(key, item, source) for item in value] if ok else value
    elif expected is dict:
        ok = isinstance(value, dict)
        # A recipe's ranges are lists ([low, high]); a network's arguments are plain values.
        value = _arguments(key, value, source, lists=key == "data.degradation_args") if ok else value
    else:
        ok = isinstance(value, expected)
    if ok and isinstance(value, str) and "\0" in value:
        raise SisrError(f"{source}: {key} holds a NUL character, which no name or path can")
    if not ok:
        raise SisrError(f"{source}: {key} must be {_type_name(default)}, not {_shown(value)}")
    return value


def _in_range(key: str, value: int, source: str) -> int:
    if not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise SisrError(f"{source}: {key} must fit in 64 bits ({INT_RANGE[0]} to {INT_RANGE[1]}), not {_shown(value)}")
    return value


def _finite(key: str, value: float, source: str) -> float:
    try:
        number = float(value)
    except OverflowError:  # an integer past float's range
        number = float("inf")
    if not math.isfinite(number):
        raise SisrError(f"{source}: {key} must be a finite number, not {_shown(value)}")
    return number


def _arguments(key: str, values: dict[str, Any], source: str, lists: bool = False) -> dict[str, Any]:
    """A table of constructor arguments (model.args): names to plain values, no tables inside, and lists
    (of numbers, strings or true/false) only with `lists`."""
    checked: dict[str, Any] = {}
    for name, value in values.items():
        dotted = f"{key}.{name}"
        if not name.isidentifier():
            raise SisrError(f"{source}: {_shown(dotted)} is not an argument name")
        if lists and isinstance(value, list):
            if len(value) > 64 or any(isinstance(item, (list, dict)) for item in value):
                raise SisrError(f"{source}: {dotted} must be a short flat list, not {_shown(value)}")
            checked[name] = [_arguments(dotted, {"item": item}, source)["item"] for item in value]
        elif isinstance(value, (bool, str)):
            checked[name] = _coerce(dotted, value, value, source)
        elif isinstance(value, int):
            checked[name] = _in_range(dotted, value, source)
        elif isinstance(value, float):
            checked[name] = _finite(dotted, value, source)
        else:
            raise SisrError(f"{source}: {dotted} must be a number, a string or true/false, not {_shown(value)}")
    return checked


def _type_name(default: Any) -> str:
    if isinstance(default, list):
        return "a list"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a table"}.get(
        type(default), type(default).__name__
    )


def _unknown(key: str, known: Sequence[str], source: str) -> SisrError:
    section, _, name = key.rpartition(".")
    close = difflib.get_close_matches(name, known, n=1)
    hint = (
        f"; did you mean {(section + '.' if section else '') + close[0]!r}?"
        if close
        else f"; known: {', '.join(known)}"
    )
    return SisrError(f"{source}: unknown option {_shown(key)}{hint}")


def merge_into(config: TrainConfig, values: dict[str, Any], source: str) -> None:
    """Set the options in `values` (nested by section) on `config`; `source` names them in errors."""
    sections = {f.name for f in dataclasses.fields(config)}
    for section_name, section_values in values.items():
        if section_name not in sections:
            raise _unknown(section_name, sorted(sections), source)
        if not isinstance(section_values, dict):
            raise SisrError(f"{source}: [{section_name}] must be a table of options, not {_shown(section_values)}")
        section = getattr(config, section_name)
        known = [f.name for f in dataclasses.fields(section)]
        for key, value in section_values.items():
            dotted = f"{section_name}.{key}"
            if key not in known:
                raise _unknown(dotted, known, source)
            setattr(section, key, _coerce(dotted, value, getattr(section, key), source))


# --- where values come from --------------------------------------------------


def family_defaults(preset: str) -> dict[str, Any]:
    """The training recipe of the preset's family, as the article and papers give it.

    EDSR: L1, Adam 1e-4 halved at 200k of 300k steps. WDSR: the same with 1e-3
    (weight normalization allows the higher rate). SRResNet pre-training for
    SRGAN: MSE, Adam 1e-4 for 1M steps. Batch 16 for all.
    """
    from ..models import get_preset

    arch = get_preset(preset).arch
    if arch == "edsr":
        train, optim = {"loss": "l1", "steps": 300000}, {"lr": 1e-4, "milestones": [200000], "gamma": 0.5}
    elif arch == "wdsr":
        train, optim = {"loss": "l1", "steps": 300000}, {"lr": 1e-3, "milestones": [200000], "gamma": 0.5}
    elif arch in ("srresnet", "msrresnet"):
        train, optim = {"loss": "mse", "steps": 1000000}, {"lr": 1e-4, "milestones": [], "gamma": 0.5}
    elif arch in ("srcnn", "vdsr"):
        # Both papers: MSE on the bicubic-enlarged image (with SGD there; Adam here, as for the others).
        train, optim = {"loss": "mse", "steps": 300000}, {"lr": 1e-4, "milestones": [200000], "gamma": 0.5}
    else:
        raise SisrError(f"model preset {preset!r} ({arch}) is not a network that sisr train can train")
    return {"model": {"preset": preset}, "train": train, "optim": optim}


def read_toml(path: str | os.PathLike) -> dict[str, Any]:
    """A TOML file as nested dicts, with errors that name the file (and, where TOML says, the line)."""
    path = Path(path)
    if tomllib is None:
        raise SisrError(
            f"{path}: reading TOML on Python {sys.version_info[0]}.{sys.version_info[1]} "
            "needs the `tomli` package (pip install tomli)"
        )
    if not path.is_file():
        raise SisrError(f"{path}: no such configuration file")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise SisrError(f"{path}: cannot read it ({error.strerror or error})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise SisrError(f"{path}: over {MAX_CONFIG_BYTES >> 20} MB, too large to be a configuration file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise SisrError(
            f"{path}: not UTF-8 text (byte {data[error.start]:#04x} on line {line}); TOML is UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SisrError(f"{path}: not valid TOML ({_cut(str(error), 200)})") from None
    except RecursionError:  # arrays or inline tables nested thousands deep
        raise SisrError(f"{path}: not valid TOML (nested too deeply)") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """`section.key=value` -> (["section", "key"], value); value in TOML syntax, else a plain string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or "." not in key:
        raise SisrError(f"--set {text!r}: expected section.key=value, e.g. optim.lr=2e-4")
    raw = raw.strip()
    value: Any = raw
    if tomllib is not None:
        try:
            value = tomllib.loads(f"value = {raw}")["value"]
        except (tomllib.TOMLDecodeError, RecursionError):
            value = raw  # a bare word or path: a string
    return key.split("."), value


def set_dotted(values: dict[str, Any], path: list[str], value: Any) -> None:
    """`values[path[0]][path[1]]... = value`, making the sections on the way."""
    target = values
    for part in path[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise SisrError(f"--set {'.'.join(path)}: {part} is not a section")
    target[path[-1]] = value


def overrides_to_values(overrides: Sequence[str]) -> dict[str, Any]:
    """`section.key=value` strings (as given to `--set`) as one nested dict."""
    values: dict[str, Any] = {}
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(values, key, value)
    return values


def config_layers(
    path: str | os.PathLike | None, overrides: Sequence[str], values: dict[str, Any] | None
) -> list[tuple[str, dict[str, Any]]]:
    """The layers a config is merged from, lowest first, each with the name its errors give."""
    layers: list[tuple[str, dict[str, Any]]] = []
    if path is not None:
        layers.append((str(path), read_toml(path)))
    if values:
        layers.append(("options", values))
    if overrides:
        layers.append(("--set", overrides_to_values(overrides)))
    return layers


def load_config(
    path: str | os.PathLike | None = None, overrides: Sequence[str] = (), values: dict[str, Any] | None = None
) -> TrainConfig:
    """Defaults of the preset's family < TOML file `path` < `values` (nested dict) < `overrides`.

    `overrides` are `section.key=value` strings as given to `--set`.
    """
    layers = config_layers(path, overrides, values)
    preset, preset_source = ModelSection().preset, ""
    for source, layer in layers:
        model = layer.get("model")
        if isinstance(model, dict) and "preset" in model:
            preset, preset_source = model["preset"], source
    if not isinstance(preset, str):
        raise SisrError(f"{preset_source}: model.preset must be a string, not {_shown(preset)}")
    try:
        defaults = family_defaults(preset)
    except SisrError as error:
        raise SisrError(f"{preset_source}: model.preset: {error}" if preset_source else str(error)) from None
    config = TrainConfig()
    merge_into(config, defaults, "defaults")
    for source, layer in layers:
        merge_into(config, layer, source)
    config.validate(_sources(layers))
    return config


def _sources(layers: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """`section.key` -> the last layer (file, "options", "--set") that set it, for messages."""
    sources: dict[str, str] = {}
    for source, layer in layers:
        for section, section_values in layer.items():
            if isinstance(section_values, dict):
                sources.update((f"{section}.{key}", source) for key in section_values)
    return sources


# --- the GAN stage (`sisr finetune`) -----------------------------------------


@dataclass
class GanSection:
    """[gan]: the perceptual and adversarial losses of fine-tuning, and what its validation adds."""

    content_layer: str = "vgg54"  # VGG19 features of the content loss: "vgg22" or "vgg54" (SRGAN)
    before_activation: bool = False  # features before the ReLU (ESRGAN) instead of after (SRGAN)
    feature_scale: float = SRGAN_FEATURE_SCALE  # VGG features x this before the MSE (SRGAN: 1/12.75)
    vgg19_weights: str = ""  # torchvision vgg19 file; "" = $SISR_VGG19_WEIGHTS, the cache, or a download
    # LPIPS at validation: torchvision vgg16 file and lpips' weights/v0.1/vgg.pth; "" = $SISR_VGG16_WEIGHTS /
    # $SISR_LPIPS_WEIGHTS, else the cache; skipped when not found (never downloaded during training)
    lpips_vgg16_weights: str = ""
    lpips_weights: str = ""
    adversarial_weight: float = 1e-3
    pixel_weight: float = 0.0  # weight of an extra pixel-loss term; 0 = none (SRGAN)
    pixel_loss: str = "l1"  # "l1" or "mse"
    discriminator_filters: int = 64
    sample_every: int = 1000  # steps between sample images (samples/step_N.png); 0 = none


@dataclass
class FinetuneConfig(TrainConfig):
    """The pixel trainer's options plus [gan]; `model.init` (the generator) is required."""

    gan: GanSection = field(default_factory=GanSection)

    def validate(self, sources: dict[str, str] | None = None) -> None:
        _raise_problems("invalid fine-tuning configuration", self.problems(), sources)

    def problems(self) -> list[tuple[str, str]]:
        gan, problems = self.gan, super().problems()
        if not self.model.init:
            problems.append(
                ("model.init", "(--init) must name the pixel-trained generator (a weight file or model name)")
            )
        if gan.pixel_loss not in PIXEL_LOSSES:
            problems.append(
                ("gan.pixel_loss", f"must be one of {', '.join(PIXEL_LOSSES)}, not {_shown(gan.pixel_loss)}")
            )
        for key in ("adversarial_weight", "pixel_weight", "sample_every"):
            if getattr(gan, key) < 0:
                problems.append((f"gan.{key}", f"must not be negative, not {getattr(gan, key)}"))
        if gan.discriminator_filters < 1:
            problems.append(("gan.discriminator_filters", f"must be positive, not {gan.discriminator_filters}"))
        if gan.feature_scale <= 0:
            problems.append(("gan.feature_scale", f"must be positive, not {gan.feature_scale}"))
        return problems


# SRGAN's fine-tuning recipe (as in the article): Adam 1e-4 for 100k steps, then 1e-5 for 100k more,
# batch 16, HR patches of 96 pixels.
FINETUNE_DEFAULTS: dict[str, Any] = {
    "model": {"preset": "srgan"},
    "data": {"patch_size": 96, "batch_size": 16},
    "optim": {"lr": 1e-4, "milestones": [100000], "gamma": 0.1},
    "train": {"steps": 200000},
}


def load_finetune_config(
    path: str | os.PathLike | None = None, overrides: Sequence[str] = (), values: dict[str, Any] | None = None
) -> FinetuneConfig:
    """SRGAN defaults < TOML file `path` < `values` (nested dict) < `--set` style `overrides`.

    `model.preset` is only a label here (it names the default output folder,
    runs/<preset>): the generator's architecture comes from `model.init`.
    """
    layers = config_layers(path, overrides, values)
    config = FinetuneConfig()
    merge_into(config, FINETUNE_DEFAULTS, "defaults")
    for source, layer in layers:
        merge_into(config, layer, source)
    config.validate(_sources(layers))
    return config
