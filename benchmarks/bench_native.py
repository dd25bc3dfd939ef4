"""sisr's native CPU kernels against the PyTorch forms they replace, interleaved, in one run.

    python benchmarks/bench_native.py [--threads N] [--repeat 15] [--size 256] [--json FILE]

Each line runs both forms alternately (best of --repeat each, after checking
that they agree) and gives their FLOPs over seconds as a fraction of the
fp32 `torch.mm` peak measured between the rounds:

* WDSR-B-32's 1x1 pair (32 -> 192 -> ReLU -> 25) on a size x size map: the
  native kernel against the BLAS products over cache-sized runs of pixels;
* EDSR's last 3x3 convolution (64 -> 3) on one strip of 32 output rows at 4x
  the input's width, as the streamed upsampler runs it: the native kernel
  against oneDNN;
* whole networks on a size x size input (the network's forward, not a whole
  `upscale` call): wdsr-b-32-x4, the bundled default-x4 (a WDSR-B) and
  edsr-baseline-x4 with their native kernels and with PyTorch's layers in
  their place (prepared with `native_kernels=False`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from sisr import SRModel
from sisr.inference import native, prepare_model
from sisr.inference.fast import FusedWideBlockB
from sisr.speed import MatmulPeak, bench_model, count_flops, cpu_name


def interleaved(forms: dict[str, Callable[[], object]], repeat: int, peak: MatmulPeak) -> dict[str, float]:
    """Best seconds of each form, the forms taking turns (one warm-up call each first)."""
    with torch.inference_mode():
        for form in forms.values():
            form()
        times: dict[str, list[float]] = {name: [] for name in forms}
        for _ in range(repeat):
            for name, form in forms.items():
                started = time.perf_counter()
                form()
                times[name].append(time.perf_counter() - started)
            peak.measure()
    return {name: min(values) for name, values in times.items()}


def first_wide_block(model: SRModel, native_kernels: bool) -> FusedWideBlockB:
    """The first fused WDSR-B block of `model` prepared for the CPU, with or without the native kernels."""
    network = prepare_model(model, "fp32", "cpu", native_kernels=native_kernels).network
    return next(m for m in network.modules() if isinstance(m, FusedWideBlockB))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if native.library() is None:
        print(f"sisr's native kernels are not available here: {native.unavailable_reason()}", file=sys.stderr)
        return 1
    torch.manual_seed(0)
    peak = MatmulPeak(torch.device("cpu"), torch.float32)
    rows = []

    def record(name: str, flops: int, seconds: dict[str, float], difference: float) -> None:
        for form, value in seconds.items():
            rows.append(
                {
                    "part": name,
                    "form": form,
                    "seconds": value,
                    "gflops_per_second": flops / value / 1e9,
                    "max_difference": difference,
                }
            )

    size = args.size
    wdsr = bench_model("wdsr-b-32-x4")
    block, blas_block = first_wide_block(wdsr, True), first_wide_block(wdsr, False)
    x = torch.randn(1, 32, size, size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        difference = (block.low_rank(x) - blas_block.low_rank(x)).abs().max().item()
    pair = {"native": lambda: block.low_rank(x), "BLAS products": lambda: blas_block.low_rank(x)}
    record(
        f"WDSR-B 1x1 pair, {size}x{size}",
        2 * size * size * (32 * 192 + 192 * 25),
        interleaved(pair, args.repeat, peak),
        difference,
    )

    width = 4 * size
    rows_in = torch.randn(1, 64, 34, width).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(3, 64, 3, 3) * 0.05, torch.randn(3)
    with torch.inference_mode():
        difference = (
            (native.conv3x3_to3(rows_in, weight, bias) - F.conv2d(rows_in, weight, bias, padding=(0, 1)))
            .abs()
            .max()
            .item()
        )
    narrow = {
        "native": lambda: native.conv3x3_to3(rows_in, weight, bias),
        "oneDNN": lambda: F.conv2d(rows_in, weight, bias, padding=(0, 1)),
    }
    record(
        f"64 -> 3 conv, 32 rows x {width}",
        2 * 32 * width * 64 * 3 * 9,
        interleaved(narrow, args.repeat, peak),
        difference,
    )

    image = torch.rand(1, 3, size, size).contiguous(memory_format=torch.channels_last)
    for name in ("wdsr-b-32-x4", "default-x4", "edsr-baseline-x4"):
        model = bench_model(name)
        with_native = prepare_model(model, "fp32", "cpu", native_kernels=True)
        without = prepare_model(model, "fp32", "cpu", native_kernels=False)
        with torch.inference_mode():
            difference = (with_native(image) - without(image)).abs().max().item()
        forms = {
            "native": lambda with_native=with_native: with_native(image),
            "PyTorch layers": lambda without=without: without(image),
        }
        record(
            f"{name} network, {size}x{size}",
            count_flops(model.network, size, size),
            interleaved(forms, max(3, args.repeat // 3), peak),
            difference,
        )

    when = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    print(
        f"{cpu_name()}, {args.threads} threads, torch {torch.__version__}, {when}; "
        f"fp32 torch.mm peak {peak.best / 1e9:.1f} GFLOP/s (best in this run)"
    )
    label = max(len(row["part"]) + len(row["form"]) for row in rows) + 3
    for row in rows:
        row["fraction_of_peak"] = row["gflops_per_second"] * 1e9 / peak.best
        print(
            f"{row['part'] + ' — ' + row['form']:<{label}} {row['seconds'] * 1e3:9.2f} ms "
            f"{row['gflops_per_second']:7.1f} GFLOP/s {row['fraction_of_peak']:6.1%}  "
            f"(max difference {row['max_difference']:.1e})"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(
                {
                    "machine": cpu_name(),
                    "threads": args.threads,
                    "torch": torch.__version__,
                    "python": platform.python_version(),
                    "date": when,
                    "size": size,
                    "matmul_peak_gflops": peak.best / 1e9,
                    "rows": rows,
                },
                handle,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
