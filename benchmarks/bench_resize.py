"""How fast and how MATLAB-exact is sisr's matlab_imresize, next to Pillow and OpenCV.

Speed: a 2040x1356 RGB uint8 image (the DIV2K size; a shared HR image tiled
up, or a synthetic one) resized x1/4 and x4 by each library in the same run,
median of --repeats after one warm-up call (the first touch of fresh memory
is slow on some VMs).

Accuracy: every HR image of the shared benchmark sets, cropped to a multiple
of s and shrunk by 1/s, against the MATLAB-made LR images beside it: the share
of uint8 values identical and the largest difference.

    python benchmarks/bench_resize.py [--shared ../shared] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image

from sisr.files import atomic_write
from sisr.imaging import matlab_imresize

try:  # optional: only for the comparison
    import cv2
except ImportError:  # pragma: no cover - depends on the machine
    cv2 = None

REPO = Path(__file__).resolve().parents[1]
BENCH_SIZE = (1356, 2040)  # rows, cols
SETS = ("Set5", "Set14", "BSD100")
SCALES = (2, 3, 4)


def find_benchmarks(shared: str | None) -> Path | None:
    candidates = [shared, os.environ.get("SISR_SHARED"), str(REPO.parent / "shared")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "data" / "benchmarks").is_dir():
            return Path(candidate) / "data" / "benchmarks"
    return None


def benchmark_image(benchmarks: Path | None) -> tuple[np.ndarray, str]:
    """A 2040x1356 natural image if the shared sets are there, else smooth noise."""
    rows, cols = BENCH_SIZE
    if benchmarks is not None:
        source = np.asarray(Image.open(benchmarks / "Set14" / "HR" / "baboon.png").convert("RGB"))
        tiles = (-(-rows // source.shape[0]), -(-cols // source.shape[1]), 1)
        return np.ascontiguousarray(np.tile(source, tiles)[:rows, :cols]), "Set14/baboon.png tiled"
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (rows // 8, cols // 8, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((cols, rows), Image.BILINEAR))
    noisy = smooth.astype(np.int16) + rng.integers(-20, 21, smooth.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8), "synthetic"


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up: caches, allocator, first-touch of memory
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def resizers(image: np.ndarray) -> dict[str, Callable[[float, tuple[int, int]], object]]:
    """name -> resize(scale, (rows, cols)) on `image`, each in its library's native form."""
    pil_image = Image.fromarray(image)
    tensor = torch.from_numpy(image).permute(2, 0, 1).contiguous()
    table: dict[str, Callable[[float, tuple[int, int]], object]] = {
        "sisr numpy uint8": lambda scale, size: matlab_imresize(image, scale=scale),
        "sisr torch uint8 (CPU)": lambda scale, size: matlab_imresize(tensor, scale=scale),
        "Pillow BICUBIC": lambda scale, size: pil_image.resize((size[1], size[0]), Image.BICUBIC),
    }
    if cv2 is not None:
        table["OpenCV INTER_CUBIC"] = lambda scale, size: cv2.resize(
            image, (size[1], size[0]), interpolation=cv2.INTER_CUBIC
        )
        table["OpenCV INTER_AREA"] = lambda scale, size: cv2.resize(
            image, (size[1], size[0]), interpolation=cv2.INTER_AREA
        )
    return table


def measure_speed(image: np.ndarray, repeats: int) -> list[dict]:
    rows = []
    for scale in (0.25, 4.0):
        size = (int(image.shape[0] * scale), int(image.shape[1] * scale))
        for name, resize in resizers(image).items():
            if name == "OpenCV INTER_AREA" and scale > 1:
                continue  # INTER_AREA is a shrinking method
            seconds = median_seconds(functools.partial(resize, scale, size), repeats)
            rows.append({"method": name, "scale": scale, "seconds": seconds})
    return rows


def downscalers() -> dict[str, Callable[[np.ndarray, int], np.ndarray]]:
    def pillow(hr: np.ndarray, scale: int) -> np.ndarray:
        size = (hr.shape[1] // scale, hr.shape[0] // scale)
        return np.asarray(Image.fromarray(hr).resize(size, Image.BICUBIC))

    table = {"sisr matlab_imresize": lambda hr, scale: matlab_imresize(hr, scale=1 / scale), "Pillow BICUBIC": pillow}
    if cv2 is not None:
        for flag in ("INTER_CUBIC", "INTER_AREA"):
            interpolation = getattr(cv2, flag)
            table[f"OpenCV {flag}"] = lambda hr, scale, interpolation=interpolation: cv2.resize(
                hr, (hr.shape[1] // scale, hr.shape[0] // scale), interpolation=interpolation
            )
    return table


def measure_accuracy(benchmarks: Path) -> list[dict]:
    rows = []
    for set_name in SETS:
        for scale in SCALES:
            counts = {name: [0, 0, 0] for name in downscalers()}  # identical, total, max difference
            for hr_path in sorted((benchmarks / set_name / "HR").glob("*.png")):
                hr = np.asarray(Image.open(hr_path))
                hr = hr[: hr.shape[0] - hr.shape[0] % scale, : hr.shape[1] - hr.shape[1] % scale]
                matlab = np.asarray(Image.open(benchmarks / set_name / "LR_bicubic" / f"X{scale}" / hr_path.name))
                for name, downscale in downscalers().items():
                    difference = np.abs(downscale(hr, scale).astype(np.int16) - matlab)
                    counts[name][0] += int((difference == 0).sum())
                    counts[name][1] += difference.size
                    counts[name][2] = max(counts[name][2], int(difference.max()))
            for name, (identical, total, worst) in counts.items():
                rows.append(
                    {
                        "set": set_name,
                        "scale": scale,
                        "method": name,
                        "identical_percent": 100.0 * identical / total,
                        "max_abs_diff": worst,
                    }
                )
    return rows


def machine() -> dict:
    model = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "pillow": PIL.__version__,
        "opencv": None if cv2 is None else cv2.__version__,
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", help="the shared/ folder (default: $SISR_SHARED or ../shared)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per method (median reported)")
    parser.add_argument("--skip-accuracy", action="store_true", help="only time the resizes")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    args = parser.parse_args(argv)

    benchmarks = find_benchmarks(args.shared)
    image, source = benchmark_image(benchmarks)
    info = machine()
    print(f"{info['cpu']}, {info['cores']} cores, {info['date']}")
    print(
        f"numpy {info['numpy']}, torch {info['torch']} ({info['torch_threads']} threads), "
        f"Pillow {info['pillow']}, OpenCV {info['opencv'] or 'not installed'}"
    )
    print(f"\nSpeed on a {image.shape[1]}x{image.shape[0]} RGB uint8 image ({source}), median of {args.repeats}:")
    speed = measure_speed(image, args.repeats)
    print(f"  {'method':<26}{'x1/4 (s)':>10}{'x4 (s)':>10}")
    for method in dict.fromkeys(row["method"] for row in speed):
        cells = {row["scale"]: row["seconds"] for row in speed if row["method"] == method}
        down, up = cells.get(0.25), cells.get(4.0)
        print(f"  {method:<26}{down:>10.3f}" + (f"{up:>10.3f}" if up is not None else f"{'-':>10}"))

    accuracy = []
    if benchmarks is None:
        print("\nAccuracy: skipped (shared benchmark sets not found; use --shared)")
    elif not args.skip_accuracy:
        print("\nAccuracy against the MATLAB-made LR images (% of uint8 values identical / max |diff|):")
        accuracy = measure_accuracy(benchmarks)
        methods = list(dict.fromkeys(row["method"] for row in accuracy))
        print(f"  {'set':<8}{'x':>2}  " + "".join(f"{method:>24}" for method in methods))
        for set_name in SETS:
            for scale in SCALES:
                cells = [
                    f"{row['identical_percent']:.2f}% / {row['max_abs_diff']}"
                    for method in methods
                    for row in accuracy
                    if row["set"] == set_name and row["scale"] == scale and row["method"] == method
                ]
                print(f"  {set_name:<8}{scale:>2}  " + "".join(f"{cell:>24}" for cell in cells))

    if args.json:
        with atomic_write(args.json, "w", overwrite=args.overwrite) as handle:
            json.dump({"machine": info, "image": source, "speed": speed, "accuracy": accuracy}, handle, indent=2)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
