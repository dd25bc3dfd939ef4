"""How close a folder batch comes to the network alone: `sisr upscale DIR -o OUT` with and without overlap.

A folder of --images images of mixed sizes (random crops, --min-side to
--max-side pixels a side, of scikit-image's sample photos; every other one
JPEG, the rest PNG, so outputs are encoded as both) goes through one prepared
network three ways:

1. network only: the images decoded beforehand, `sisr.upscale` on each, no
   file touched: the most a batch can do;
2. `sisr upscale DIR -o OUT`, decoding and encoding overlapping the network
   (sisr.inference.pipeline);
3. the same with `--no-overlap`: each image read, run and written in turn.

The figure to watch is (2)/(1). A warm-up pass over every image first, so
that no way pays for oneDNN's first run at each input shape; then --rounds
rounds of the three in turn, the best round of each reported. With
--chunks N the images are split into N folders and the three ways run in
turn on each: the best round of each way on each folder, summed, less the
start-up of N-1 commands (measured on one tiny image: loading the model),
which one command over the whole folder pays once. On a machine shared with
work that comes and goes, that gives every way its quiet moments instead of
whichever way the load happened to hit.

    python benchmarks/bench_batch.py [--images 200] [--model default-x4] [--rounds 1] [--chunks 1]
        [--png-level 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sisr import upscale
from sisr.cli import main
from sisr.image_io import read_image
from sisr.png_writer import DEFAULT_PNG_LEVEL
from sisr.weights import load_model

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_description() -> tuple[str, list[str]]:
    """The CPU's model name and which of the SIMD flags that matter to oneDNN it has (Linux; else platform's word)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), []
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    flags = set(fields.get("flags", "").split())
    return fields.get("model name", platform.machine()), [flag for flag in SIMD_FLAGS if flag in flags]


def make_folder(folder: Path, count: int, min_side: int, max_side: int, seed: int = 0) -> None:
    """`count` random crops of the sample photos, sides from min_side to max_side, alternately PNG and JPEG."""
    import skimage.data

    photos = [np.asarray(getattr(skimage.data, name)())[..., :3] for name in PHOTOS]
    generator = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        photo = photos[number % len(photos)]
        height, width = (int(generator.integers(min_side, max_side + 1)) for _ in range(2))
        top = int(generator.integers(0, photo.shape[0] - height + 1))
        left = int(generator.integers(0, photo.shape[1] - width + 1))
        crop = Image.fromarray(np.ascontiguousarray(photo[top : top + height, left : left + width]))
        if number % 2:
            crop.save(folder / f"image-{number:04d}.jpg", quality=90)
        else:
            crop.save(folder / f"image-{number:04d}.png")


def split_folder(folder: Path, count: int) -> list[Path]:
    """The images of `folder` moved into `count` sub-folders of consecutive images (the folder itself for 1)."""
    if count <= 1:
        return [folder]
    paths = sorted(folder.iterdir())
    chunks = []
    for number, part in enumerate(np.array_split(np.arange(len(paths)), count)):
        chunk = folder / f"chunk-{number:02d}"
        chunk.mkdir()
        for index in part:
            paths[index].rename(chunk / paths[index].name)
        chunks.append(chunk)
    return chunks


def network_only(model, images: list[np.ndarray]) -> float:
    start = time.perf_counter()
    for image in images:
        upscale(model, image)
    return time.perf_counter() - start


def whole_batch(folder: Path, output: Path, model_name: str, overlap: bool, png_level: int) -> float:
    shutil.rmtree(output, ignore_errors=True)
    command = ["-q", "upscale", str(folder), "-o", str(output), "--model", model_name, "--png-level", str(png_level)]
    command += ["--precision", "fp32", "--device", "cpu"] + (["--overlap"] if overlap else ["--no-overlap"])
    start = time.perf_counter()
    if main(command) != 0:
        raise SystemExit(f"sisr upscale failed: {' '.join(command)}")
    return time.perf_counter() - start


def command_start_up(temporary: Path, model_name: str, png_level: int) -> float:
    """Seconds of `sisr upscale` on one 8x8 image: loading and preparing the model, planning, one tiny image."""
    folder = temporary / "start-up"
    if not folder.exists():
        folder.mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "tiny.png")
    return whole_batch(folder, temporary / "start-up-out", model_name, False, png_level)


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--min-side", type=int, default=64)
    parser.add_argument("--max-side", type=int, default=192)
    parser.add_argument("--model", default="default-x4")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--png-level", type=int, default=DEFAULT_PNG_LEVEL)
    parser.add_argument("--chunks", type=int, default=1, help="run the images in this many folders, in turn")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()

    cpu, flags = cpu_description()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sisr-bench-batch-") as temporary:
        folder = Path(temporary) / "in"
        make_folder(folder, args.images, args.min_side, args.max_side)
        chunks = split_folder(folder, args.chunks)
        model = load_model(args.model).prepare("fp32", "cpu")
        images = {chunk: [read_image(path) for path in sorted(chunk.iterdir())] for chunk in chunks}
        for chunk in chunks:
            network_only(model, images[chunk])  # warm-up: oneDNN's first call at each shape
        ways = {
            "network only": lambda chunk: network_only(model, images[chunk]),
            "overlapped": lambda chunk: whole_batch(chunk, Path(temporary) / "out", args.model, True, args.png_level),
            "sequential": lambda chunk: whole_batch(chunk, Path(temporary) / "out", args.model, False, args.png_level),
        }
        # The best of the rounds for each chunk, summed over the chunks: on a machine whose other work comes
        # and goes, short chunks in turn give each way its quiet moments.
        seconds: dict[str, dict[Path, float]] = {way: {} for way in ways}
        start_up = float("inf")
        for _ in range(args.rounds):
            if len(chunks) > 1:
                start_up = min(start_up, command_start_up(Path(temporary), args.model, args.png_level))
            for chunk in chunks:
                for way, function in ways.items():
                    elapsed = function(chunk)
                    seconds[way][chunk] = min(seconds[way].get(chunk, elapsed), elapsed)
    best = {way: sum(times.values()) for way, times in seconds.items()}
    if len(chunks) > 1:  # one command for the whole folder starts once, not once a chunk
        for way in ("overlapped", "sequential"):
            best[way] -= (len(chunks) - 1) * start_up
    rates = {way: args.images / time_taken for way, time_taken in best.items()}
    ratio = rates["overlapped"] / rates["network only"]
    record = {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu,
        "flags": flags,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "model": f"{args.model}, fp32, cpu",
        "images": args.images,
        "sides": [args.min_side, args.max_side],
        "rounds": args.rounds,
        "chunks": args.chunks,
        "command_start_up_seconds": start_up if args.chunks > 1 else None,
        "png_level": args.png_level,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "seconds": best,
        "images_per_second": rates,
        "overlapped_over_network_only": ratio,
        "sequential_over_network_only": rates["sequential"] / rates["network only"],
    }
    print(
        f"{record['date']}, {cpu} ({' '.join(flags) or 'flags unknown'}), {record['threads']} threads, torch {torch.__version__}"
    )
    print(
        f"{args.images} images, {args.min_side}-{args.max_side} px a side, half PNG (level {args.png_level}) "
        f"half JPEG, {record['model']}"
    )
    print(f"load average before {load_before[0]:.2f}, after {record['load_average_after'][0]:.2f}")
    if args.chunks > 1:
        print(f"{args.chunks} chunks; sisr upscale's start-up {start_up:.3f} s, counted once")
    for way, rate in rates.items():
        print(f"{way:>13}: {rate:7.3f} images/s ({best[way]:.2f} s, best of {args.rounds} per chunk of {args.chunks})")
    print(
        f"overlapped / network only: {ratio:.1%}; sequential / network only: {record['sequential_over_network_only']:.1%}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main_bench()
