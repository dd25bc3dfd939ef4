"""Peak resident memory of upscaling: a small image, and a 4000 x 4000 one x4 (16000 x 16000 out).

    python benchmarks/bench_memory.py [--size 4000] [--tile 256] [--model small|edsr-baseline-x4|bicubic]
                                      [--cases small,memory,stream] [--json FILE]

Each case runs in a fresh Python process (this script with --case), which
reports its own peak RSS (getrusage ru_maxrss) and the RSS after importing
torch and sisr, before the image exists; the difference is what upscaling
cost. Cases:

* idle: import only (the floor every case starts from);
* small: a 256 x 256 image, whole, in memory;
* memory: the large image with `upscale(..., tile=T)`, the output assembled
  as uint8 in memory (16000^2 * 3 bytes = 768 MB; a float copy would be 3 GB);
* stream: the large image with `upscale_to_tiff(..., tile=T)`, the output
  written to a tiled TIFF band by band and never held whole.

The default network is EDSR-baseline x4 cut to 1 block of 16 filters, so the
large cases finish in minutes on a laptop CPU (the real one does 64 TFLOP for
a 4000^2 input, plus the tiles' overlap); its
per-tile memory is smaller than the real network's (16 channels, not 64).
--model edsr-baseline-x4 measures the real one.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = ("idle", "small", "memory", "stream")


def rss_mb() -> float:
    """Current resident set size (Linux /proc), MB."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def build(model_name: str):
    from sisr import create_model, load_model

    if model_name == "small":
        return create_model("edsr-baseline-x4", num_blocks=1, num_filters=16)
    if model_name == "bicubic":
        return load_model("bicubic", scale=4)
    return create_model(model_name)


def run_case(case: str, size: int, tile: int, model_name: str, folder: str) -> dict:
    """The child process: one case, reporting memory and time."""
    import numpy as np
    import torch

    from sisr.inference import prepare_model, upscale, upscale_to_tiff

    model = prepare_model(build(model_name), "fp32", "cpu")
    baseline = rss_mb()
    baseline_peak = peak_mb()
    record = {"case": case, "model": model_name, "threads": torch.get_num_threads(), "baseline_rss_mb": baseline}
    if case == "idle":
        return record | {"peak_rss_mb": peak_mb(), "baseline_peak_mb": baseline_peak}
    side = 256 if case == "small" else size
    rng = np.random.default_rng(0)
    # A smooth random image (a photo-like input; the pixel values do not change memory or time).
    image = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    started = time.perf_counter()
    if case == "small":
        output = upscale(model, image, device="cpu")
        record |= {"tile": None, "output_shape": list(output.shape)}
    elif case == "memory":
        output = upscale(model, image, tile=tile, device="cpu")
        record |= {"tile": tile, "output_shape": list(output.shape), "output_mb": output.nbytes / 2**20}
    else:
        path = upscale_to_tiff(model, image, Path(folder) / "out.tif", tile=tile, device="cpu")
        record |= {"tile": tile, "file_mb": path.stat().st_size / 2**20}
        path.unlink()
    return record | {
        "input": [side, side],
        "seconds": time.perf_counter() - started,
        "peak_rss_mb": peak_mb(),
        "baseline_peak_mb": baseline_peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4000, help="LR side of the large image (default 4000)")
    parser.add_argument("--tile", type=int, default=256, help="tile size in LR pixels (default 256)")
    parser.add_argument("--model", default="small", help="small (default), bicubic, or a preset name")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--json", metavar="FILE", help="also write the records as JSON")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.size, args.tile, args.model, args.folder)))
        return
    records = []
    with tempfile.TemporaryDirectory() as folder:
        for case in args.cases.split(","):
            command = [
                sys.executable,
                __file__,
                "--case",
                case,
                "--size",
                str(args.size),
                "--tile",
                str(args.tile),
                "--model",
                args.model,
                "--folder",
                folder,
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(f"{case}: failed\n{done.stderr}", file=sys.stderr)
                continue
            records.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(
        f"{datetime.datetime.now().astimezone().isoformat(timespec='seconds')}; model {args.model}; "
        f"large input {args.size}x{args.size} x4; load average {os.getloadavg()[0]:.2f}"
    )
    print(f"{'case':<8} {'input':>11} {'tile':>5} {'seconds':>8} {'peak RSS MB':>12} {'above import MB':>16}  output")
    for r in records:
        size = "x".join(map(str, r.get("input", []))) or "-"
        above = r["peak_rss_mb"] - r["baseline_rss_mb"]
        output = (
            f"{r['output_mb']:.0f} MB uint8 array"
            if "output_mb" in r
            else f"{r['file_mb']:.0f} MB TIFF"
            if "file_mb" in r
            else ""
        )
        print(
            f"{r['case']:<8} {size:>11} {r.get('tile') or '-'!s:>5} {r.get('seconds', 0):>8.1f} "
            f"{r['peak_rss_mb']:>12.0f} {above:>16.0f}  {output}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2) + "\n")


if __name__ == "__main__":
    main()
