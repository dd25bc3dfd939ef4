"""A long fuzzing run of every file loader: mutated files per format, tracebacks, peak memory.

The targets are the ones the test suite fuzzes briefly (`FUZZ_TARGETS` in the
tests/test_*_hostile.py modules, machinery in tests/fuzzing.py); here each
format runs in a process of its own, so that its peak resident memory is its
own, with as many mutants per seed file as asked.

    python benchmarks/fuzz_loaders.py --count 2000 --seed 1
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))  # the fuzzing machinery and the targets live beside the tests
MODULES = ("test_weights_hostile", "test_images_hostile")


def targets() -> dict[str, tuple[str, object]]:
    """Format name -> (module, (make_seeds, load)) over the test modules that declare FUZZ_TARGETS."""
    found: dict[str, tuple[str, object]] = {}
    for name in MODULES:
        module = importlib.import_module(name)
        for fmt, target in getattr(module, "FUZZ_TARGETS", {}).items():
            found[fmt] = (name, target)
    return found


def run_one(fmt: str, count: int, seed: int) -> dict[str, object]:
    """Fuzz one format in this process; its figures as a dict."""
    from fuzzing import fuzz

    _, (make_seeds, load) = targets()[fmt]  # type: ignore[misc]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        report = fuzz(make_seeds, load, Path(folder), count, seed)
    return {
        "format": fmt,
        "files": report.files,
        "loaded": report.loaded,
        "refused": report.refused,
        "tracebacks": report.tracebacks[:5],
        "traceback_count": len(report.tracebacks),
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="mutants per seed file (default 2000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (the test suite uses 0)")
    parser.add_argument("--format", action="append", help="only these formats (repeatable)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one format, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.count, args.seed)))
        return 0
    formats = args.format or sorted(targets())
    from sisr.speed import cpu_name

    print(f"{cpu_name()}, {time.strftime('%Y-%m-%d')}, {args.count} mutants per seed file, seed {args.seed}")
    failed = 0
    for fmt in formats:
        command = [sys.executable, __file__, "--one", fmt, "--count", str(args.count), "--seed", str(args.seed)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            failed += 1
            print(f"  {fmt:<12} the fuzzing process failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        failed += bool(row["traceback_count"])
        print(
            f"  {fmt:<12} {row['files']:>6} files: {row['loaded']} loaded, {row['refused']} refused, "
            f"{row['traceback_count']} tracebacks; peak RSS {row['peak_rss_mb']} MB; {row['seconds']} s"
        )
        for line in row["tracebacks"]:
            print(f"      {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
