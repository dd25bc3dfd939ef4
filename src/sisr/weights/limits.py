"""How much one weight file may ask for, checked before anything is allocated.

Weight files come from strangers, and each format states its sizes before its
data (a safetensors header, HDF5 dataspaces, a checkpoint's storage records),
so every reader checks those statements against these limits first: a 60 KB
file that declares a 50 GB tensor is refused in milliseconds, not after the
allocation.

- `MAX_WEIGHT_BYTES`, 4 GiB (environment: `SISR_MAX_WEIGHT_BYTES`, in bytes):
  one weight file, and the tensors in it at the sizes their shapes declare.
  EDSR, the largest network sisr has presets for, is 172 MB in float32.
- `MAX_WEIGHT_TENSORS`, 10 000 (environment: `SISR_MAX_WEIGHT_TENSORS`): the
  tensors (or HDF5 datasets) in one file. EDSR x4 has 138 (the official file
  142). It
  also bounds the work of building the network a file describes (see
  `sisr.weights.native.build_for_weights`).

The environment is read on every load, so a process can change them.
"""

from __future__ import annotations

import os

from ..errors import SisrError

MAX_WEIGHT_BYTES = 4 * 2**30
MAX_WEIGHT_TENSORS = 10_000


def _limit(variable: str, default: int) -> int:
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise SisrError(f"{variable}={text!r}: expected a positive whole number")
    return value


def max_weight_bytes() -> int:
    """`MAX_WEIGHT_BYTES`, or `$SISR_MAX_WEIGHT_BYTES` where set."""
    return _limit("SISR_MAX_WEIGHT_BYTES", MAX_WEIGHT_BYTES)


def max_weight_tensors() -> int:
    """`MAX_WEIGHT_TENSORS`, or `$SISR_MAX_WEIGHT_TENSORS` where set."""
    return _limit("SISR_MAX_WEIGHT_TENSORS", MAX_WEIGHT_TENSORS)


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def check_weight_sizes(source: str, tensors: int, nbytes: int) -> None:
    """Refuse a file whose declared tensors exceed the limits, naming the limit and how to raise it."""
    if tensors > max_weight_tensors():
        raise SisrError(
            f"{source}: declares {tensors} tensors, over the limit of {max_weight_tensors()} "
            "(SISR_MAX_WEIGHT_TENSORS raises it)"
        )
    if nbytes > max_weight_bytes():
        raise SisrError(
            f"{source}: declares {_size(nbytes)} of tensors, over the limit of {_size(max_weight_bytes())} "
            "(SISR_MAX_WEIGHT_BYTES raises it)"
        )


def check_file_size(source: str, nbytes: int) -> None:
    """A file larger than the weight limit cannot hold weights within it: refused before it is opened."""
    if nbytes > max_weight_bytes():
        raise SisrError(
            f"{source}: a {_size(nbytes)} file, over the weight limit of {_size(max_weight_bytes())} "
            "(SISR_MAX_WEIGHT_BYTES raises it)"
        )
