"""bf16 against fp32 on a CPU with native bf16, before and after WDSR-B's oneDNN bf16 blocks, in one run.

    python benchmarks/bench_bf16.py [--networks wdsr-b-32-x4,default-x4] [--size 256] [--threads 2]
                                    [--repeat 7] [--network-only] [--profile] [--psnr] [--json FILE]

For each network, whole `upscale` calls on a size x size RGB uint8 image, x4
(`--network-only`: the prepared network's forward alone),
in four forms taking turns round after round (best of --repeat after one
warm-up each):

* fp32, PyTorch's layers (sisr's fused forms; `native_kernels=False`);
* fp32 with sisr's native kernels (where they load);
* bf16 "before": WDSR-B's 1x1 pair as chunked bf16 products, the ReLU and the
  skip addition as passes of their own (sisr until 2026-12-06);
* bf16 "after": each WDSR-B block as three oneDNN convolutions, the ReLU and
  the skip addition fused into them (`FusedWideBlockB.onednn_forward`).

The fp32 and bf16 matrix-multiply peaks (`torch.mm` 2048^2) are measured
after every round, so fp32 rows are fractions of the fp32 peak and bf16 rows
of the bf16 peak. Each run's process CPU time is kept too: with `--threads 1`
on a machine shared with other work it is the steadier measure (a thread that
is switched out costs wall time, not CPU time). `--profile` adds, per form, where the network's time goes
(torch.profiler, by operator); `--psnr` the Set5 x4 PSNR (Y, border 4) of each
form, with the weights bench_inference.py uses (Keras reference weights for
wdsr-b-32-x4 from the shared folder, the bundled default-x4).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from sisr.inference import native, prepare_model, upscale
from sisr.inference.fast import select_paths
from sisr.inference.precision import cpu_has_native_bf16
from sisr.speed import MatmulPeak, count_flops, cpu_name

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inference import find_shared, load_network, set5_psnr  # a sibling script

# (label, precision, form of the fused layers)
FORMS = [
    ("fp32", "fp32", "pytorch"),
    ("fp32 native kernels", "fp32", "native"),
    ("bf16 before (products)", "bf16", "pytorch"),
    ("bf16 after (oneDNN fused)", "bf16", "onednn"),
]


def prepared_form(model, precision: str, path: str):
    prepared = prepare_model(model, precision, "cpu", native_kernels=path == "native")
    select_paths(prepared.network, native_kernels=path == "native", onednn_bf16=path == "onednn")
    return prepared


def upscale_call(prepared, image: np.ndarray) -> Callable[[], object]:
    return lambda: upscale(prepared, image, precision=prepared.precision, device="cpu")


def network_call(prepared, image: np.ndarray) -> Callable[[], object]:
    x = prepared.to_input(torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255))

    def run() -> object:
        with torch.inference_mode(), prepared.autocast():
            return prepared.network(x)

    return run


def operator_profile(prepared, size: int, rows: int = 6) -> list[tuple[str, float, int]]:
    """(operator, milliseconds of own CPU time, calls) of one forward pass, the largest first."""
    x = prepared.to_input(torch.rand(1, 3, size, size))
    with torch.inference_mode(), prepared.autocast():
        prepared.network(x)
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            prepared.network(x)
    events = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    return [(e.key, e.self_cpu_time_total / 1e3, e.count) for e in events[:rows]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="wdsr-b-32-x4,default-x4")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="where each form's time goes, by operator")
    parser.add_argument("--psnr", action="store_true", help="Set5 x4 PSNR of each form (needs the shared folder)")
    parser.add_argument(
        "--network-only",
        action="store_true",
        help="time the prepared network's forward on a float input instead of whole upscale calls "
        "(shorter rounds: on a busy machine more of them fall in quiet moments)",
    )
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not cpu_has_native_bf16():
        print("this CPU has no native bf16 (AVX512_BF16 or AMX): bf16 would be emulated", file=sys.stderr)
        return 1
    shared = find_shared(None)
    image = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    forms = [form for form in FORMS if form[2] != "native" or native.library() is not None]

    rows: list[dict] = []
    runs: list[tuple[dict, Callable[[], object]]] = []
    for network in [n for n in args.networks.split(",") if n]:
        model, weights = load_network(network, shared)
        flops = count_flops(model.network, args.size, args.size)
        for label, precision, path in forms:
            prepared = prepared_form(model, precision, path)
            row = {"network": network, "weights": weights, "form": label, "precision": precision, "path": path}
            row.update(flops=flops, times=[], cpu_times=[])
            rows.append(row)
            runs.append((row, network_call(prepared, image) if args.network_only else upscale_call(prepared, image)))
            if args.profile:
                row["profile"] = operator_profile(prepared, args.size)
            if args.psnr and shared is not None and weights != "random weights":
                benchmarks = shared / "data" / "benchmarks"
                row["set5_psnr_y"] = set5_psnr(
                    lambda lr, p=prepared, pr=precision: upscale(p, lr, precision=pr, device="cpu"), benchmarks
                )

    peaks = {
        "fp32": MatmulPeak(torch.device("cpu"), torch.float32),
        "bf16": MatmulPeak(torch.device("cpu"), torch.bfloat16),
    }
    load_before = os.getloadavg()
    for _, run in runs:
        run()  # warm-up
    for _ in range(args.repeat):
        for row, run in runs:
            started, cpu = time.perf_counter(), time.process_time()
            run()
            row["times"].append(time.perf_counter() - started)
            row["cpu_times"].append(time.process_time() - cpu)
        for peak in peaks.values():
            peak.measure()
    load_after = os.getloadavg()

    when = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    flags = sorted(flag for flag in native.cpu_flags() if flag.startswith(("avx512", "amx", "avx2", "fma")))
    print(
        f"{cpu_name()} ({' '.join(flags)}), {args.threads} threads, torch {torch.__version__}, {when}\n"
        f"{args.size}x{args.size} RGB uint8 -> x4, "
        f"{'network forward only' if args.network_only else 'whole upscale calls'}, "
        f"best of {args.repeat} interleaved rounds; "
        f"peaks (torch.mm 2048^2, best in this run): fp32 {peaks['fp32'].best / 1e9:.0f}, "
        f"bf16 {peaks['bf16'].best / 1e9:.0f} GFLOP/s; load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after"
    )
    best_fp32: dict[str, float] = {}
    best_fp32_cpu: dict[str, float] = {}  # process CPU time: with --threads 1, robust to a busy machine
    for row in rows:
        row["seconds"] = min(row["times"])
        row["seconds_median"] = statistics.median(row["times"])
        row["cpu_seconds"] = min(row["cpu_times"])
        row["gflops_per_second"] = row["flops"] / row["seconds"] / 1e9
        row["fraction_of_own_peak"] = row["gflops_per_second"] * 1e9 / peaks[row["precision"]].best
        if row["precision"] == "fp32":
            best_fp32[row["network"]] = min(best_fp32.get(row["network"], float("inf")), row["seconds"])
            best_fp32_cpu[row["network"]] = min(best_fp32_cpu.get(row["network"], float("inf")), row["cpu_seconds"])
    print(
        f"\n{'network':<14} {'form':<27} {'seconds':>8} {'median':>8} {'CPU s':>8} {'GFLOP/s':>8} {'of peak':>8} "
        f"{'vs fp32':>8} {'CPU vs fp32':>11} {'Set5 PSNR':>10}"
    )
    for row in rows:
        row["speedup_vs_best_fp32"] = best_fp32[row["network"]] / row["seconds"]
        row["cpu_speedup_vs_best_fp32"] = best_fp32_cpu[row["network"]] / row["cpu_seconds"]
        psnr = f"{row['set5_psnr_y']:.4f}" if "set5_psnr_y" in row else "-"
        print(
            f"{row['network']:<14} {row['form']:<27} {row['seconds']:8.3f} {row['seconds_median']:8.3f} "
            f"{row['cpu_seconds']:8.3f} {row['gflops_per_second']:8.0f} {row['fraction_of_own_peak']:8.0%} "
            f"{row['speedup_vs_best_fp32']:7.2f}x {row['cpu_speedup_vs_best_fp32']:10.2f}x {psnr:>10}"
        )
    if args.profile:
        for row in rows:
            print(f"\n{row['network']} — {row['form']}: own CPU time per operator, one forward pass")
            for name, milliseconds, calls in row["profile"]:
                print(f"  {name:<36} {milliseconds:8.1f} ms  {calls:5d} calls")
    if args.json:
        document = {
            "machine": cpu_name(),
            "cpu_flags": flags,
            "threads": args.threads,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "date": when,
            "size": args.size,
            "repeat": args.repeat,
            "network_only": args.network_only,
            "matmul_peak_gflops": {name: peak.best / 1e9 for name, peak in peaks.items()},
            "load_average": [load_before[0], load_after[0]],
            "rows": rows,
        }
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
