"""How long the command takes to answer: `sisr --help` and `sisr models`, against importing torch alone.

Each command runs in a fresh process, `--repeat` times, interleaved; the best
and the median wall time are printed, with the CPU and its flags. Importing
torch is the floor for any command that needs it, so it is timed beside them.

    python benchmarks/bench_startup.py --repeat 5
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

from sisr.speed import cpu_name

COMMANDS = {
    "sisr --help": [sys.executable, "-m", "sisr", "--help"],
    "sisr models": [sys.executable, "-m", "sisr", "models"],
    "import torch": [sys.executable, "-c", "import torch"],
    "python": [sys.executable, "-c", "pass"],
}


def cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next(line for line in handle if line.startswith("flags")).split(":", 1)[1].split()
    except (OSError, StopIteration):
        return "unknown"
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    return " ".join(flag for flag in wanted if flag in flags) or "none of avx2/avx512"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command (default 5)")
    args = parser.parse_args()
    if shutil.which("sisr") is None:
        print("note: the `sisr` script is not on PATH; timing `python -m sisr` instead", file=sys.stderr)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeat):
        for name, command in COMMANDS.items():
            started = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - started)
    print(f"{cpu_name()} ({cpu_flags()}), {args.repeat} runs each, {time.strftime('%Y-%m-%d')}")
    for name, seconds in times.items():
        print(f"  {name:<14} best {min(seconds):.2f} s, median {statistics.median(seconds):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
