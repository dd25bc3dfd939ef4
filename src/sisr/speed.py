"""How fast a network upscales on this machine, and how close that is to what the machine can do.

`run_bench` times `upscale` on a random image and, in the same run and
interleaved with it, the machine's matrix-multiply peak (best of `torch.mm`
on square matrices), so that both see the same load; the network's FLOPs
(2 x the multiply-adds of its convolutions and matrix products, counted by
`torch.utils.flop_counter` on a meta-device copy, with no arithmetic done)
divided by the seconds give the fraction of that peak it reaches.
"""

from __future__ import annotations

import copy
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import SisrError
from .model import SRModel, as_model

# Side of the square matrices of the peak measurement: 2 x 2048^3 = 17 GFLOP,
# a fraction of a second on a laptop core, large enough for the BLAS to reach
# its best blocking (larger sides measured no higher on a CPU).
PEAK_MATRIX_SIDE = 2048
# On a GPU 2048^2 is far too small to fill the chip, so the peak would come out
# low and the fractions several times too high (docs/benchmarks.md, GPU).
CUDA_PEAK_MATRIX_SIDE = 8192
PEAK_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def count_flops(model: nn.Module, height: int, width: int, channels: int = 3) -> int:
    """FLOPs of one forward pass on a height x width image: 2 x multiply-adds of convolutions and products.

    Counted on a copy on the meta device: shapes only, no arithmetic, no memory.
    Element-wise work (ReLU, additions) is not counted, as is customary.
    """
    from torch.utils.flop_counter import FlopCounterMode

    meta = copy.deepcopy(model).to("meta")
    x = torch.empty(1, channels, height, width, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(x)
    return int(counter.get_total_flops())


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(function: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    _synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    _synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


class MatmulPeak:
    """Best-so-far FLOP rate of `torch.mm` on square matrices of `side`, one measurement per `measure()`."""

    def __init__(
        self, device: torch.device, dtype: torch.dtype, side: int = PEAK_MATRIX_SIDE, tf32: bool = False
    ) -> None:
        generator = torch.Generator().manual_seed(0)
        self.tf32 = tf32  # float32 products on TF32 tensor cores (CUDA), as cuDNN runs float32 convolutions
        self.a = torch.rand(side, side, generator=generator).to(device, dtype)
        self.b = torch.rand(side, side, generator=generator).to(device, dtype)
        self.out = torch.empty(side, side, device=device, dtype=dtype)
        self.device = device
        self.flops = 2 * side**3
        self.best = 0.0
        self.measure()  # warm-up: thread pool, first-touch of the output

    def measure(self) -> float:
        previous = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = self.tf32
        try:
            seconds, _ = _timed(lambda: torch.mm(self.a, self.b, out=self.out), self.device)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = previous
        self.best = max(self.best, self.flops / seconds)
        return self.best


@dataclass
class BenchResult:
    """One `sisr bench` measurement; `asdict` of it is the JSON output."""

    model: str
    scale: int
    input_size: list[int]  # LR height, width
    output_size: list[int]
    precision: str
    device: str
    threads: int
    tile: int | None  # the tile size used: given, or chosen by `upscale` for a large image
    fused: bool
    compiled: bool
    path: str  # the CPU form chosen for this machine, e.g. "bf16 onednn" (sisr.inference.autotune)
    tuning: dict[str, Any] | None  # how it was chosen: measured now or cached, the times behind it
    warm_up_seconds: float  # the first, untimed call (with compile=True: the compilation)
    repeat: int
    seconds: float  # best of `repeat`
    seconds_median: float
    cpu_seconds: float  # process CPU time of the best run (all threads)
    output_megapixels_per_second: float
    flops: int
    gflops_per_second: float
    matmul_peak_gflops: float
    matmul_peak_dtype: str
    matmul_peak_side: int
    fraction_of_peak: float
    cpu: str
    torch_version: str
    load_average: list[float] | None
    date: str


def cpu_name() -> str:
    """The processor's model name (Linux: /proc/cpuinfo), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench_model(name: str, scale: int | None = None) -> SRModel:
    """What `load_model` takes, or a preset name (random weights: speed does not depend on them)."""
    from .model import create_model
    from .models import PRESETS
    from .weights import load_model

    if name in PRESETS:
        model = create_model(name)
        if scale is not None and model.scale != int(scale):
            raise SisrError(f"{name}: the network upscales x{model.scale}, but --scale {scale} was asked for")
        return model
    return load_model(name, scale=scale)


def run_bench(
    model: SRModel | nn.Module | str,
    *,
    size: int | tuple[int, int] = 256,
    scale: int | None = None,
    precision: str = "fp32",
    device: str | torch.device = "cpu",
    tile: int | None = None,
    repeat: int = 3,
    threads: int | None = None,
    fuse: bool = True,
    compile: bool = False,
    label: str | None = None,
    peak_side: int | None = None,
    retune: bool = False,
) -> BenchResult:
    """Time `upscale` of a random size x size RGB uint8 image, best of `repeat` after one warm-up.

    `threads` sets torch's intra-op threads for the run (default: as torch
    has it, usually the number of cores). The matmul peak is measured once
    after each timed run, in the precision's dtype, and its best is kept; on
    CUDA, fp32 is compared with the TF32 peak when cuDNN may use TF32 for
    convolutions (PyTorch's default), and `peak_side` defaults to 8192.
    Preparing the model chooses its CPU path by measurement, or from this
    machine's cached decision (`retune=True` measures again); the result says
    which and how.
    """
    from .inference import auto_tile, prepare_model, upscale
    from .inference.precision import resolve_device

    if repeat < 1:
        raise SisrError(f"repeat {repeat}: must be at least 1")
    height, width = (size, size) if isinstance(size, int) else size
    if height < 2 or width < 2:
        raise SisrError(f"size {height}x{width}: the input must be at least 2x2 pixels")
    model = bench_model(model, scale) if isinstance(model, str) else as_model(model)
    target = resolve_device(device)
    if threads is not None:
        if threads < 1:
            raise SisrError(f"threads {threads}: must be at least 1")
        torch.set_num_threads(threads)  # before preparing: decisions are per thread count
    flops = count_flops(model.network, height, width)
    prepared = prepare_model(model, precision, target, fuse=fuse, compile=compile, retune=retune)
    precision = prepared.precision  # "auto": report what it chose
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)

    def once() -> Any:
        return upscale(prepared, image, tile=tile)

    started = time.perf_counter()
    output = once()  # warm-up: allocations, kernel choice, caches, compilation
    warm_up = time.perf_counter() - started
    if peak_side is None:
        peak_side = CUDA_PEAK_MATRIX_SIDE if target.type == "cuda" else PEAK_MATRIX_SIDE
    tf32 = target.type == "cuda" and precision == "fp32" and bool(torch.backends.cudnn.allow_tf32)
    peak = MatmulPeak(target, PEAK_DTYPES[precision], peak_side, tf32=tf32)
    runs = []
    for _ in range(repeat):
        runs.append(_timed(once, target))
        peak.measure()
    best_wall, best_cpu = min(runs)
    rate = flops / best_wall
    return BenchResult(
        model=label or model.name,
        scale=int(prepared.scale),
        input_size=[height, width],
        output_size=list(output.shape[:2]),
        precision=precision,
        device=str(target),
        threads=torch.get_num_threads(),
        tile=tile if tile is not None else auto_tile(prepared.info, height, width),
        fused=prepared.fused,
        compiled=compile,
        path=prepared.tuning.chosen.label if prepared.tuning else precision,
        tuning=prepared.tuning.as_dict() if prepared.tuning else None,
        warm_up_seconds=warm_up,
        repeat=repeat,
        seconds=best_wall,
        seconds_median=statistics.median(wall for wall, _ in runs),
        cpu_seconds=best_cpu,
        output_megapixels_per_second=output.shape[0] * output.shape[1] / best_wall / 1e6,
        flops=flops,
        gflops_per_second=rate / 1e9,
        matmul_peak_gflops=peak.best / 1e9,
        matmul_peak_dtype="tf32" if tf32 else str(PEAK_DTYPES[precision]).replace("torch.", ""),
        matmul_peak_side=peak_side,
        fraction_of_peak=rate / peak.best,
        cpu=cpu_name() if target.type == "cpu" else torch.cuda.get_device_name(target),
        torch_version=torch.__version__,
        load_average=[round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    )


def format_result(result: BenchResult) -> str:
    """The human-readable report of `sisr bench`."""
    lines = [
        f"{result.model} x{result.scale}, {result.precision} on {result.device} ({result.threads} threads"
        f"{', sisr fast paths' if result.fused else ''}{', torch.compile' if result.compiled else ''}), "
        f"{result.input_size[1]}x{result.input_size[0]} -> {result.output_size[1]}x{result.output_size[0]}"
        f"{f', tile {result.tile}' if result.tile else ''}",
        f"  seconds per image  {result.seconds:.3f} (best of {result.repeat}; median {result.seconds_median:.3f}; "
        f"{result.cpu_seconds:.3f} CPU s; first call {result.warm_up_seconds:.3f} s)",
        f"  output             {result.output_megapixels_per_second:.3f} megapixels/s",
        f"  model              {result.flops / 1e9:.1f} GFLOP per image -> {result.gflops_per_second:.1f} GFLOP/s",
        f"  matmul peak        {result.matmul_peak_gflops:.1f} GFLOP/s ({result.matmul_peak_dtype} torch.mm "
        f"{result.matmul_peak_side}x{result.matmul_peak_side}, best in this run)",
        f"  fraction of peak   {result.fraction_of_peak:.0%}",
        *_tuning_lines(result.tuning),
        f"  machine            {result.cpu}; torch {result.torch_version}"
        + (f"; load average {result.load_average[0]:.2f}" if result.load_average else ""),
    ]
    return "\n".join(lines)


def _tuning_lines(tuning: dict[str, Any] | None) -> list[str]:
    """The CPU path chosen for this machine and the measurement behind it (nothing off the CPU)."""
    if not tuning:
        return []
    lines = [f"  path               {tuning['chosen']} ({tuning['how']})"]
    if tuning["seconds"]:
        side = tuning["side"]
        cost = f", cost {tuning['tuning_seconds']:.2f} s" if tuning.get("tuning_seconds") is not None else ""
        lines.append(f"  measured on        {side}x{side}, {tuning['date']}{cost} (--retune measures again)")
        for label, seconds in sorted(tuning["seconds"].items(), key=lambda item: item[1]):
            mark = "*" if label == tuning["chosen"] else " "
            lines.append(f"    {mark} {label:<16} {seconds * 1e3:8.2f} ms")
    if tuning.get("file"):
        lines.append(f"  decisions kept in  {tuning['file']}")
    return lines


def result_dict(result: BenchResult) -> dict[str, Any]:
    return asdict(result)
