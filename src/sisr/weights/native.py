"""sisr's own weight files: safetensors that say which network they belong to.

The metadata holds the architecture, its arguments, the scale and a format
version, so `load_model(path)` rebuilds the network with nothing else given.
Loading is strict: every tensor must be there with the right shape, and
finite.

A file's statements are checked before they cost anything: its size and its
header's tensor count and bytes against `sisr.weights.limits`, its arguments'
types; then the network they describe is built within a budget its tensors
set and compared with them (`build_for_weights`, which the importers use
too); only then is a tensor read.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import SisrError
from ..files import atomic_path
from ..model import SRModel
from ..models import ModelSpec, build_model
from .limits import check_file_size, check_weight_sizes

FORMAT = "sisr"
FORMAT_VERSION = "1"
RGB = 3
# The side of the grey image `check_runs` tries: 1 x 1 would take a slow path of the CPU convolutions.
PROBE_SIZE = 2


def save_model(
    model: SRModel | nn.Module,
    path: str | os.PathLike[str],
    *,
    spec: ModelSpec | None = None,
    dtype: torch.dtype | None = None,
    metadata: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `model` as a self-describing safetensors file, atomically.

    An `SRModel` records its own spec; a bare network needs `spec=`.
    `dtype=torch.float16` halves the file; loading casts back to float32.
    `metadata` adds free-form strings (source, training command, licence).
    """
    from safetensors.torch import save_file

    network = model.network if isinstance(model, SRModel) else model
    if spec is None and isinstance(model, SRModel):
        spec = model.spec
    if spec is None:
        raise SisrError(
            f"{type(network).__name__}: its architecture is unknown, so the file could not rebuild it; "
            "pass spec=ModelSpec(arch, args) to save_model"
        )
    tensors = {}
    for key, value in network.state_dict().items():
        value = value.detach().to("cpu")
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value.contiguous()
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": spec.arch,
        "args": json.dumps(spec.args, sort_keys=True),
        "scale": str(spec.args.get("scale", "")),
        **(metadata or {}),
    }
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


# safetensors dtypes a weight can have, with their sizes; anything else (bool, float8, ...) is refused.
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1}
# Tensors and values a network may build beyond twice its file's (the mean buffer, a few scalars).
_BUDGET_MARGIN = 4096
# Constructor arguments a file may give: plain numbers, short strings (EDSR's block kind), short lists (a mean).
_MAX_ARG_LENGTH = 64


def _header(path: Path) -> tuple[dict[str, str], dict[str, tuple[str, tuple[int, ...]]]]:
    """(metadata, {key: (dtype, shape)}) from the safetensors header alone: no tensor is read."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            declared = {}
            for key in handle.keys():
                view = handle.get_slice(key)
                declared[key] = (view.get_dtype(), tuple(view.get_shape()))
    except Exception as error:  # safetensors raises several types for a bad header
        raise SisrError(
            f"{path}: not a safetensors weight file ({error}); "
            "weights from other implementations are imported with `sisr convert`"
        ) from None
    return metadata, declared


def _is_plain_number(value: object) -> bool:
    """A finite float or an integer within 64 bits (JSON has no limit; torch's sizes have)."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) and -(2**63) <= value < 2**63


def _check_args(args: object, source: str) -> dict[str, Any]:
    """The constructor arguments of a file's metadata, if they are what a sisr network takes.

    A JSON object of finite numbers, short strings and short lists of numbers:
    anything else could only fail later, further from its cause.
    """
    if not isinstance(args, dict):
        raise SisrError(f"{source}: damaged sisr metadata (args is a {type(args).__name__}, not an object)")
    for key, value in args.items():
        items = value if isinstance(value, list) else [value]
        numbers = all(_is_plain_number(v) for v in items)
        text = isinstance(value, str) and len(value) <= _MAX_ARG_LENGTH
        if not (numbers or text or value is None) or len(items) > _MAX_ARG_LENGTH:
            raise SisrError(f"{source}: damaged sisr metadata (argument {key}={value!r:.80} is not a plain value)")
    scale = args.get("scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int) or scale < 1):
        raise SisrError(f"{source}: damaged sisr metadata (scale={scale!r:.80} is not a positive whole number)")
    return args


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _read_header(path: Path) -> tuple[ModelSpec, dict[str, tuple[int, ...]], dict[str, str]]:
    """(spec, {key: shape}, metadata) of a sisr weight file, all checked, without reading a tensor."""
    if not path.is_file():
        raise SisrError(f"{path}: weight file not found")
    check_file_size(str(path), path.stat().st_size)  # safetensors' data is the file less its header
    metadata, declared = _header(path)
    if metadata.get("format") != FORMAT:
        raise SisrError(
            f"{path}: a safetensors file without sisr metadata (no architecture recorded); "
            "import it with `sisr convert` or save it with sisr.save_model"
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        raise SisrError(
            f"{path}: sisr weight format version {metadata.get('format_version')!r:.40}; this sisr reads {FORMAT_VERSION}"
        )
    try:
        args = json.loads(metadata["args"], parse_constant=_reject_constant)
        spec = ModelSpec(str(metadata["arch"]), _check_args(args, str(path)))
    except (KeyError, ValueError, RecursionError) as error:  # ValueError: bad JSON, NaN, a 5000-digit number
        raise SisrError(f"{path}: damaged sisr metadata ({type(error).__name__}: {error})") from None
    nbytes = 0
    for key, (dtype, shape) in declared.items():
        if dtype not in _DTYPE_BYTES:
            raise SisrError(f"{path}: tensor {key} is of type {dtype}, not a number type weights are stored in")
        nbytes += math.prod(shape) * _DTYPE_BYTES[dtype]
    check_weight_sizes(str(path), len(declared), nbytes)
    return spec, {key: shape for key, (_, shape) in declared.items()}, metadata


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as error:  # the file changed since its header was read
        raise SisrError(f"{path}: unreadable tensors ({error})") from None


def read_weight_file(path: str | os.PathLike[str]) -> tuple[ModelSpec, dict[str, torch.Tensor], dict[str, str]]:
    """(spec, tensors, metadata) of a sisr weight file, with errors that name the file.

    The header is checked (sizes against `sisr.weights.limits`, the arguments'
    types) before a tensor is read; whether the arguments fit the tensors is
    for `build_for_weights` to say.
    """
    path = Path(path)
    spec, _, metadata = _read_header(path)
    return spec, _read_tensors(path), metadata


def _shape_problems(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]) -> list[str]:
    """What differs between a network's tensors and a file's: missing, unexpected, both shapes of a mismatch."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = [
        f"{key}: file {found[key]}, model {expected[key]}"
        for key in expected
        if key in found and found[key] != expected[key]
    ]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
    if mismatched:
        problems.append(f"shape mismatch {'; '.join(mismatched[:5])}{' ...' if len(mismatched) > 5 else ''}")
    return problems


class _OverBudget(Exception):
    """Raised inside a network's constructor when it asks for more than its weight file holds."""


# The factories whose first arguments are a size: what nn.Conv2d and kin allocate their parameters with.
_SIZED_FACTORIES = frozenset({torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn})


def _requested_values(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """The values a sized factory call asks for: `empty(2, 3)`, `empty((2, 3))`, `full((2, 3), 0.0)`."""
    if "size" in kwargs:
        size = kwargs["size"]
    elif func is torch.full or (len(args) == 1 and not isinstance(args[0], int)):
        size = args[0]
    else:
        size = args
    return max(math.prod(int(n) for n in size), 0)


class _BuildBudget(TorchFunctionMode):
    """Refuses a tensor factory call that would take a network past its budget, before it allocates.

    Sized factories are checked before the call; `torch.tensor` (its data
    given, so already in memory) is counted after it. Other tensors a
    constructor makes derive from these (a clone, a norm), so are bounded with
    them. A TorchFunctionMode acts in its own thread only.
    """

    def __init__(self, tensors: int, values: int) -> None:
        super().__init__()
        self.tensors, self.values = tensors, values

    def _spend(self, values: int) -> None:
        self.tensors, self.values = self.tensors - 1, self.values - values
        if self.tensors < 0 or self.values < 0:
            raise _OverBudget

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in _SIZED_FACTORIES:
            self._spend(_requested_values(func, args, kwargs))
            return func(*args, **kwargs)
        result = func(*args, **kwargs)
        if func is torch.tensor:
            self._spend(result.numel())
        return result


def build_for_weights(spec: ModelSpec, shapes: Mapping[str, tuple[int, ...]], source: str) -> nn.Module:
    """The network `spec` describes, refused unless it has exactly these tensor shapes, without building a larger one.

    The constructor runs under a budget the file sets: twice its tensors and
    values (weight norm allocates a kernel it then replaces), plus a margin.
    So `num_blocks` = 10**7 stops after a few dozen modules and `num_filters`
    = 200000 before its first 1.4 TB convolution, whatever the architecture;
    a network within the budget is then compared with the shapes key by key.
    """
    values = sum(math.prod(shape) for shape in shapes.values())
    try:
        # torch warns of odd sizes (zero filters): the shapes' comparison says more, in one line
        with _BuildBudget(2 * len(shapes) + _BUDGET_MARGIN, 2 * values + _BUDGET_MARGIN), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            network = build_model(spec)
    except _OverBudget:
        raise SisrError(
            f"{source}: {spec.arch} with arguments {spec.args} is larger than the file's "
            f"{len(shapes)} tensors of {values} values; the arguments do not describe these weights"
        ) from None
    except SisrError as error:
        raise SisrError(f"{source}: {error}") from None
    except Exception as error:  # arguments from a file can fail anywhere in a constructor
        raise SisrError(
            f"{source}: {spec.arch} with arguments {spec.args} is not a network ({type(error).__name__}: {error})"
        ) from None
    expected = {key: tuple(value.shape) for key, value in network.state_dict().items()}
    problems = _shape_problems(expected, shapes)
    if problems:
        raise SisrError(f"{source}: weights do not fit {type(network).__name__}: " + " | ".join(problems))
    return network


def check_runs(network: nn.Module, scale: int, source: str) -> None:
    """Refuse a loaded network (eval mode, on the CPU) unless a tiny grey image gives a finite one `scale` times larger.

    What shapes cannot show shows here, for the price of a forward pass over
    four pixels: arguments that contradict each other (a mean of another
    length than the channels, an input scale of 0) and finite weights so
    large that the output overflows. (On the meta device the pass would be
    free, but its first use imports much of torch's compiler stack.)
    """
    try:
        with torch.no_grad():
            out = network(torch.full((1, RGB, PROBE_SIZE, PROBE_SIZE), 0.5))
    except Exception as error:  # a network whose arguments disagree fails in any of its layers
        raise SisrError(
            f"{source}: the network fails on a tiny test image ({type(error).__name__}: {str(error).splitlines()[0]})"
        ) from None
    expected = (1, RGB, PROBE_SIZE * scale, PROBE_SIZE * scale)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        found = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise SisrError(f"{source}: the network turns a 1 x {RGB} x {PROBE_SIZE} x {PROBE_SIZE} image into {found}")
    if not bool(torch.isfinite(out).all()):
        raise SisrError(f"{source}: the weights make the network output NaN or infinity for a grey image")


def load_state_dict_strict(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict that refuses partial matches and non-finite weights, and says exactly what differs.

    A single NaN or infinity in a weight makes every output pixel NaN, which
    an image file shows as black: refused here, by name, on every path that
    loads weights.
    """
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    problems = _shape_problems(expected, {key: tuple(value.shape) for key, value in tensors.items()})
    if problems:
        raise SisrError(f"{source}: weights do not fit {type(model).__name__}: " + " | ".join(problems))
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise SisrError(
                f"{source}: {key} holds {bad} NaN or infinite value{'s' if bad > 1 else ''} "
                f"(of {value.numel()}); the network would output NaN"
            )
    model.load_state_dict(tensors, strict=True)


# Keys of a sisr file's metadata that describe the format, not the network's history.
FORMAT_KEYS = ("format", "format_version", "arch", "args", "scale")


def load_weight_file(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    *,
    name: str | None = None,
    source: str = "file",
    licence: str | None = None,
) -> SRModel:
    """The network a sisr weight file describes, with its weights, in eval mode."""
    path = Path(path)
    spec, shapes, metadata = _read_header(path)
    if spec.scale is None:
        raise SisrError(f"{path}: weights of a {spec.arch} network, not of a super-resolution network")
    network = build_for_weights(spec, shapes, str(path))
    load_state_dict_strict(network, _read_tensors(path), str(path))
    check_runs(network.eval(), spec.scale, str(path))
    network.to(device)
    return SRModel.from_network(
        network,
        name=name or Path(path).name,
        spec=spec,
        source=source,
        path=path,
        licence=licence or metadata.get("licence"),
        metadata=metadata,
    )
