"""CPU inference with glibc's malloc as it is and as sisr sets it (freed feature maps kept for reuse).

    python benchmarks/bench_allocator.py [--models edsr-baseline-x4,wdsr-b-32-x4] [--size 256] [--rounds 3]

The setting is process-wide (see `sisr.inference.host_memory`), so each
measurement is a fresh `sisr bench --json` process, with
SISR_KEEP_FREED_MEMORY=0 (malloc as it is) or without it (sisr's setting),
the two alternating round after round so that both see the same load. Each
process times its best of --repeat runs and measures the matrix-multiply
peak itself; the table keeps each setting's best seconds and fraction of peak.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SETTINGS = {"malloc as it is": "0", "freed memory kept (sisr)": "1"}


def bench_once(model: str, size: int, repeat: int, keep: str, threads: int | None) -> dict:
    command = [
        sys.executable,
        "-m",
        "sisr",
        "bench",
        "--model",
        model,
        "--size",
        str(size),
        "--repeat",
        str(repeat),
        "--json",
    ]
    if threads:
        command += ["--threads", str(threads)]
    environment = dict(os.environ, SISR_KEEP_FREED_MEMORY=keep)
    source = Path(__file__).resolve().parents[1] / "src"
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), environment.get("PYTHONPATH")]))
    done = subprocess.run(command, capture_output=True, text=True, env=environment, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="edsr-baseline-x4,wdsr-b-32-x4")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs inside each process")
    parser.add_argument("--rounds", type=int, default=3, help="processes per setting, alternating")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json", metavar="FILE", help="also write every measurement as JSON")
    args = parser.parse_args()

    records = []
    for model in args.models.split(","):
        best: dict[str, dict] = {}
        for _ in range(args.rounds):
            for label, keep in SETTINGS.items():
                result = bench_once(model, args.size, args.repeat, keep, args.threads)
                records.append({"setting": label, **result})
                if label not in best or result["seconds"] < best[label]["seconds"]:
                    best[label] = result
        for label, result in best.items():
            print(
                f"{model:18s} {label:26s} {result['seconds']:.3f} s  {result['fraction_of_peak']:.0%} of "
                f"{result['matmul_peak_gflops']:.1f} GFLOP/s  ({result['threads']} threads, {result['date']})",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1) + "\n")


if __name__ == "__main__":
    main()
