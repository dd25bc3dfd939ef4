"""Where WDSR-B's inference time goes: one wide block's parts against the machine's matmul peak, in one run.

    python benchmarks/bench_wdsr_parts.py [--size 256] [--threads N] [--repeat 20] [--json FILE]

One block of wdsr-b-32-x4 (32 features, 192 wide, 25 low-rank) on a
size x size channels-last float32 input, timed part by part as sisr's fast
path runs it (`sisr.inference.fast.FusedWideBlockB`): the fused 1x1 expand ->
ReLU -> 1x1 reduce pair in sisr's native kernel (where it is available) and
as BLAS products at several chunk sizes, the 3x3 convolution, the
whole block; plus the two matrix products of one chunk alone (the reduce also
padded to 32 outputs, counted at its useful FLOPs, to see if the padding pays). Each row gives
its FLOPs (2 x multiply-adds) over its seconds as a fraction of the fp32
`torch.mm` peak measured between the rows. The 32 blocks of the network are
this block 32 times, so the rows show which part limits the whole network
(the figures, run by run, are in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from collections.abc import Callable

import torch
from torch import nn

import sisr.inference.fast as fast
from sisr.inference import native
from sisr.speed import MatmulPeak, cpu_name

FEATURES, WIDE, NARROW = 32, 192, 25  # wdsr-b-32-x4's block


def best_seconds(work: Callable[[], object], repeat: int) -> float:
    with torch.inference_mode():
        for _ in range(3):
            work()
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            work()
            best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    expand, reduce = nn.Conv2d(FEATURES, WIDE, 1), nn.Conv2d(WIDE, NARROW, 1)
    conv = nn.Conv2d(NARROW, FEATURES, 3, padding=1)
    block = fast.FusedWideBlockB(expand, reduce, conv, 1.0).eval()  # BLAS products
    native_block = fast.FusedWideBlockB(expand, reduce, conv, 1.0, native_kernel=True).eval()
    x = torch.randn(1, FEATURES, args.size, args.size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        low = block.low_rank(x)
    pixels = args.size * args.size
    chunk = min(block.pixels_per_chunk * args.threads, pixels)
    pair_flops = 2 * pixels * (FEATURES * WIDE + WIDE * NARROW)
    conv_flops = 2 * pixels * NARROW * FEATURES * 9
    a, hidden = torch.randn(chunk, FEATURES), torch.randn(chunk, WIDE)

    peak = MatmulPeak(torch.device("cpu"), torch.float32)
    rows = []

    def row(name: str, work: Callable[[], object], flops: int) -> None:
        seconds = best_seconds(work, args.repeat)
        gflops = flops / seconds / 1e9
        peak_gflops = peak.measure() / 1e9
        rows.append(
            {"part": name, "ms": seconds * 1e3, "gflops_per_s": gflops, "fraction_of_peak": gflops / peak_gflops}
        )

    has_native = native.library() is not None
    if has_native:
        row("1x1 pair, sisr's native kernel", lambda: native_block.low_rank(x), pair_flops)
    original = block.pixels_per_chunk
    for per_thread in (1024, 2048, 4096, 8192):
        block.pixels_per_chunk = per_thread
        row(f"1x1 pair, BLAS products, {per_thread} px/thread", lambda: block.low_rank(x), pair_flops)
    block.pixels_per_chunk = original
    row(f"expand product alone ({chunk} px)", lambda: torch.mm(a, block.expand_matrix), 2 * chunk * FEATURES * WIDE)
    narrow_matrix = reduce.weight.detach().flatten(1)  # 25 x 192
    row(
        f"reduce product alone ({chunk} px, transposed: the earlier form)",
        lambda: torch.mm(narrow_matrix, hidden.t()),
        2 * chunk * WIDE * NARROW,
    )
    row(
        f"reduce product alone ({chunk} px, pixels x 25 channels)",
        lambda: torch.mm(hidden, narrow_matrix.t()),
        2 * chunk * WIDE * NARROW,
    )
    row(
        f"reduce product padded to {block.reduce_matrix.shape[1]} outputs ({chunk} px; sisr's form; FLOPs of 25)",
        lambda: torch.mm(hidden, block.reduce_matrix),
        2 * chunk * WIDE * NARROW,
    )
    row("3x3 conv 25 -> 32", lambda: conv(low), conv_flops)
    whole = native_block if has_native else block  # as sisr's fast path runs it
    row("whole block", lambda: whole(x), pair_flops + conv_flops)

    peak_gflops = peak.best / 1e9
    print(
        f"{cpu_name()}, {args.threads} thread(s), torch {torch.__version__}, {datetime.date.today()}; "
        f"input {args.size}x{args.size}; fp32 torch.mm peak {peak_gflops:.1f} GFLOP/s"
    )
    width = max(len(r["part"]) for r in rows)
    for r in rows:
        print(
            f"{r['part']:<{width}}  {r['ms']:8.2f} ms  {r['gflops_per_s']:7.1f} GFLOP/s  "
            f"{100 * r['fraction_of_peak']:5.1f} % of peak"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(
                {
                    "machine": cpu_name(),
                    "python": platform.python_version(),
                    "torch": torch.__version__,
                    "threads": args.threads,
                    "size": args.size,
                    "matmul_peak_gflops": peak_gflops,
                    "date": str(datetime.date.today()),
                    "rows": rows,
                },
                handle,
                indent=2,
            )


if __name__ == "__main__":
    main()
