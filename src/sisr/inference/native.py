"""Hand-written CPU kernels (`kernels/*.c`), compiled with the machine's C compiler on first use.

Why: two layers run far below the machine's peak in PyTorch's own kernels.
WDSR-B spends most of its time in the 1x1 pair expand -> ReLU -> reduce
(32 -> 192 -> 25 channels); `kernels/wdsr_b.c` keeps the wide activation in
the cache, starts the accumulators at the bias, applies the ReLU in
registers, wastes no work on padded outputs and adds the previous block's
skip on the way in. EDSR's last layer, a 3x3 convolution from 64 channels to
3 at the output's size, is one long dot product per pixel that oneDNN runs
far below the peak; `kernels/narrow_conv.c` runs four pixels at a time.
`benchmarks/bench_native.py` times each kernel and whole networks both ways
(figures in docs/benchmarks.md).

Why compiled here and not shipped built: the package stays pure Python (one
wheel for every machine, nothing to build at install), the source is one
small file each, compiled in a second or two, and the build is cached in
`cache_dir()/kernels` under a hash of the source, compiler and flags. Where
there is no compiler, no AVX2/FMA or not x86-64 Linux, or SISR_NATIVE_KERNELS=0,
`library()` is None and the PyTorch path runs instead, with the same results
up to the order of float additions. Whether a prepared model uses them is its
own setting (`prepare_model(..., native_kernels=...)`), not a switch of this
module: by default `sisr.inference.autotune` times both forms on the machine
and keeps the faster (on a CPU with AVX-512, PyTorch's kernels work with twice
these AVX2 kernels' vector width, yet the kernels were measured faster on one
such CPU and slower on another: a rule could not say). SISR_NATIVE_KERNELS=1
uses them without measuring, SISR_NATIVE_KERNELS=0 never loads them.

The library is linked with -fopenmp and loaded after torch, so its
`libgomp.so.1` is the copy torch already loaded: one OpenMP thread pool. With
two pools each one's idle threads spin on the cores the other needs, so a
second runtime in the process makes the kernels unavailable.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger("sisr")

KERNELS = Path(__file__).with_name("kernels")
FLAGS = ("-O3", "-mavx2", "-mfma", "-fopenmp", "-shared", "-fPIC", "-std=c11")
REQUIRED_CPU_FLAGS = ("avx2", "fma")
# Tile widths of kernels/wdsr_b.c: both products write 24 channels at a time; up to
# SIDE_COLUMNS outputs past a multiple of 24 are summed by the expand product instead.
TILE = 24
SIDE_COLUMNS = 2

_P, _L, _I = ctypes.c_void_p, ctypes.c_long, ctypes.c_int


def cpu_flags() -> set[str]:
    """The instruction-set flags the Linux kernel reports for this CPU (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def sources_digest() -> str:
    """A hash of the kernels' source files: a new version means a new build and new measurements."""
    texts = [f"{source.name}\0{source.read_text()}" for source in sorted(KERNELS.glob("*.c"))]
    return hashlib.sha256("\0".join(texts).encode()).hexdigest()[:16]


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and (path := shutil.which(name)):
            return path
    return None


def _openmp_runtimes() -> set[str]:
    """Names of the OpenMP runtimes mapped into this process (Linux)."""
    names = set()
    with open("/proc/self/maps") as handle:
        for line in handle:
            path = line.split()[-1] if line.strip() else ""
            base = os.path.basename(path)
            if base.startswith(("libgomp", "libiomp", "libomp")):
                names.add(os.path.realpath(path))
    return names


def _build(compiler: str, sources: list[Path], target: Path) -> None:
    """Compile `sources` to `target` through a temporary file: concurrent builds never see half a library."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=target.stem, suffix=".tmp")
    os.close(handle)
    try:
        result = subprocess.run(
            [compiler, *FLAGS, *map(str, sources), "-o", temporary], capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise OSError(
                f"{compiler} failed on {', '.join(source.name for source in sources)}: {result.stderr.strip()[-500:]}"
            )
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


class _Unavailable(Exception):
    """Why the kernels cannot be used; `by_design` for settings and machines they are not meant for
    (logged at DEBUG), not for what a user could fix, such as a missing compiler (logged at INFO)."""

    def __init__(self, reason: str, by_design: bool = False) -> None:
        super().__init__(reason)
        self.by_design = by_design


def _load() -> ctypes.CDLL:
    setting = os.environ.get("SISR_NATIVE_KERNELS", "").strip()
    if setting == "0":
        raise _Unavailable("SISR_NATIVE_KERNELS=0", by_design=True)
    if not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "AMD64"):
        raise _Unavailable(f"written for x86-64 Linux, not {sys.platform} {platform.machine()}", by_design=True)
    flags = cpu_flags()
    missing = [flag for flag in REQUIRED_CPU_FLAGS if flag not in flags]
    if missing:
        raise _Unavailable(f"the CPU lacks {', '.join(missing)}", by_design=True)
    if "OpenMP" not in torch.__config__.parallel_info():
        raise _Unavailable("this torch does not run on OpenMP", by_design=True)
    compiler = _compiler()
    if compiler is None:
        raise _Unavailable("no C compiler (cc, gcc, clang or $CC) on PATH")
    from ..download import cache_dir

    sources = sorted(KERNELS.glob("*.c"))
    if not sources:
        raise _Unavailable(f"no kernel sources in {KERNELS}")
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    key = hashlib.sha256("\0".join([sources_digest(), compiler, version, *FLAGS]).encode()).hexdigest()[:16]
    target = cache_dir() / "kernels" / f"sisr_kernels-{key}.so"
    if not target.exists():
        log.debug("compiling %s with %s", ", ".join(source.name for source in sources), compiler)
        _build(compiler, sources, target)
    before = _openmp_runtimes()
    library = ctypes.CDLL(str(target))
    added = _openmp_runtimes() - before  # none when the library's libgomp.so.1 is the one torch loaded
    if added:
        raise _Unavailable(
            f"loading them brought an OpenMP runtime of their own ({', '.join(sorted(added))}) "
            f"beside torch's ({', '.join(sorted(before)) or 'none found'})"
        )
    library.sisr_wdsr_pair.argtypes = [
        _P,
        _P,
        ctypes.c_float,
        _P,
        _L,
        _I,
        _I,
        _P,
        _P,
        _I,
        _P,
        _P,
        _I,
        _P,
        _P,
        _P,
        _I,
        _I,
    ]
    library.sisr_wdsr_pair.restype = _I
    library.sisr_conv3x3_to3.argtypes = [_P, _L, _L, _I, _P, _P, _P, _I]
    library.sisr_conv3x3_to3.restype = None
    return library


@functools.cache
def _library_or_reason() -> ctypes.CDLL | str:
    try:
        library = _load()
    except (_Unavailable, OSError, subprocess.SubprocessError) as error:
        level = logging.DEBUG if getattr(error, "by_design", False) else logging.INFO
        log.log(level, "sisr's native CPU kernels are not used: %s; PyTorch runs those layers instead", error)
        return str(error)
    log.debug("native CPU kernels loaded")
    return library


def library() -> ctypes.CDLL | None:
    """The compiled kernels, or None where they cannot be built or loaded (see `unavailable_reason`)."""
    found = _library_or_reason()
    return None if isinstance(found, str) else found


def unavailable_reason() -> str | None:
    """Why `library()` is None, or None when it is not."""
    found = _library_or_reason()
    return found if isinstance(found, str) else None


@dataclass(frozen=True)
class PackedPair:
    """WDSR-B's 1x1 pair in the layouts of kernels/wdsr_b.c (see its header)."""

    inputs: int
    hidden: int  # padded to TILE
    outputs: int
    tiles: int  # reduce tiles of TILE columns
    side: int  # outputs summed by the expand product
    expand: torch.Tensor  # [hidden / 24][inputs][24]
    expand_bias: torch.Tensor  # [hidden]
    reduce: torch.Tensor  # [tiles][hidden][24]
    reduce_bias: torch.Tensor  # [tiles * 24]
    side_weights: torch.Tensor  # [max(side, 1)][hidden]
    side_bias: torch.Tensor  # [max(side, 1)]


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def pack_pair(
    expand: torch.Tensor, expand_bias: torch.Tensor, reduce: torch.Tensor, reduce_bias: torch.Tensor
) -> PackedPair:
    """Pack `expand` [in, hidden] and `reduce` [hidden, out] (products on pixel rows) with zero padding.

    Padded hidden channels have zero weights and bias, so ReLU gives 0 and
    their (zero) reduce rows add nothing; padded outputs are never stored.
    """
    inputs, hidden = expand.shape
    outputs = reduce.shape[1]
    side = outputs % TILE if outputs >= TILE and outputs % TILE <= SIDE_COLUMNS else 0
    main = outputs - side
    tiles = -(-main // TILE)
    padded = _round_up(hidden, TILE)
    w1 = expand.new_zeros(inputs, padded)
    w1[:, :hidden] = expand
    b1 = expand.new_zeros(padded)
    b1[:hidden] = expand_bias
    w2 = expand.new_zeros(padded, tiles * TILE)
    w2[:hidden, :main] = reduce[:, :main]
    b2 = expand.new_zeros(tiles * TILE)
    b2[:main] = reduce_bias[:main]
    side_weights = expand.new_zeros(max(side, 1), padded)
    side_weights[:side, :hidden] = reduce[:, main:].t()
    side_bias = expand.new_zeros(max(side, 1))
    side_bias[:side] = reduce_bias[main:]
    return PackedPair(
        inputs,
        padded,
        outputs,
        tiles,
        side,
        w1.view(inputs, padded // TILE, TILE).permute(1, 0, 2).contiguous(),
        b1.contiguous(),
        w2.view(padded, tiles, TILE).permute(1, 0, 2).contiguous(),
        b2.contiguous(),
        side_weights.contiguous(),
        side_bias.contiguous(),
    )


def _check_rows(name: str, tensor: torch.Tensor, rows: int, columns: int) -> None:
    if (
        tensor.dtype != torch.float32
        or tensor.device.type != "cpu"
        or not tensor.is_contiguous()
        or tensor.dim() != 2
        or tensor.shape[1] != columns
    ):
        raise ValueError(
            f"{name}: expected a contiguous float32 CPU tensor [n, {columns}], got "
            f"{tensor.dtype} {tuple(tensor.shape)} on {tensor.device}"
        )
    if tensor.shape[0] != rows:
        raise ValueError(f"{name} has {tensor.shape[0]} rows, pixels {rows}")


def wdsr_pair(
    pixels: torch.Tensor,
    packed: PackedPair,
    out: torch.Tensor,
    skip: torch.Tensor | None = None,
    skip_scale: float = 1.0,
    summed: torch.Tensor | None = None,
) -> torch.Tensor:
    """out[n, outputs] = reduce(relu(expand(p))) for p = pixels[n, inputs], on torch's number of threads.

    With `skip`, p = pixels + skip_scale * skip (the previous block's residual
    addition), which is also written to `summed`.
    """
    found = library()
    if found is None:
        raise RuntimeError(f"native kernels unavailable: {unavailable_reason()}")
    rows = pixels.shape[0]
    _check_rows("pixels", pixels, rows, packed.inputs)
    _check_rows("out", out, rows, packed.outputs)
    if (skip is None) != (summed is None):
        raise ValueError("skip and summed go together")
    if skip is not None and summed is not None:
        _check_rows("skip", skip, rows, packed.inputs)
        _check_rows("summed", summed, rows, packed.inputs)
    if rows == 0:
        return out
    status = found.sisr_wdsr_pair(
        pixels.data_ptr(),
        None if skip is None else skip.data_ptr(),
        skip_scale,
        None if summed is None else summed.data_ptr(),
        rows,
        packed.inputs,
        packed.hidden,
        packed.expand.data_ptr(),
        packed.expand_bias.data_ptr(),
        packed.tiles,
        packed.reduce.data_ptr(),
        packed.reduce_bias.data_ptr(),
        packed.side,
        packed.side_weights.data_ptr(),
        packed.side_bias.data_ptr(),
        out.data_ptr(),
        packed.outputs,
        torch.get_num_threads(),
    )
    if status != 0:
        raise MemoryError("the native WDSR-B kernel could not allocate its buffers")
    return out


def conv3x3_to3_applies(conv: torch.nn.Conv2d) -> bool:
    """Whether `conv3x3_to3` can run `conv`: 3x3, 3 outputs, inputs a multiple of 8, plain, with a bias."""
    return (
        conv.kernel_size == (3, 3)
        and conv.out_channels == 3
        and conv.in_channels % 8 == 0
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.bias is not None
        and conv.padding_mode == "zeros"
        and conv.weight.dtype == torch.float32
    )


def conv3x3_to3(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """conv2d(rows, weight, bias, padding=(0, 1)) for 3 outputs: rows carry their vertical context.

    `rows` is a float32 CPU tensor [n, cin, h + 2, width]; the result is
    [n, 3, h, width] in channels-last memory, as oneDNN would return it.
    """
    found = library()
    if found is None:
        raise RuntimeError(f"native kernels unavailable: {unavailable_reason()}")
    batch, channels, height, width = rows.shape
    if rows.dtype != torch.float32 or rows.device.type != "cpu" or channels % 8 or height < 3:
        raise ValueError(f"rows: expected float32 CPU [n, 8k, h + 2 >= 3, w], got {rows.dtype} {tuple(rows.shape)}")
    if tuple(weight.shape) != (3, channels, 3, 3):
        raise ValueError(f"weight: expected (3, {channels}, 3, 3), got {tuple(weight.shape)}")
    pixels = rows.permute(0, 2, 3, 1).contiguous()  # a view when rows are channels-last already
    packed = weight.detach().permute(0, 2, 3, 1).contiguous()  # [3][ky][kx][cin]
    bias = bias.detach().contiguous()
    out = torch.empty((batch, height - 2, width, 3))
    for image in range(batch):
        found.sisr_conv3x3_to3(
            pixels[image].data_ptr(),
            height - 2,
            width,
            channels,
            packed.data_ptr(),
            bias.data_ptr(),
            out[image].data_ptr(),
            torch.get_num_threads(),
        )
    return out.permute(0, 3, 1, 2)
