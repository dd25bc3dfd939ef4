"""How close one `sisr upscale` of a large photo comes to the network's own time, and what PNG levels cost.

Whole call (the default): a 2000x1500 photo-like JPEG (a mosaic of BSD100's
photos from ../shared, else of scikit-image's sample photos) to an 8000x6000
PNG with default-x4, for each precision asked (auto, bf16 and fp32; auto is
not measured again where it chose one of the others), measured in one
process, interleaved:

1. network: `sisr.upscale` of the decoded image, in memory, with the tiles
   `sisr upscale` uses (the automatic 512): the network's own time;
2. `upscale_to_file`: decode, network, and the PNG encoded while the
   network runs (what `sisr upscale` does for one image, less loading the model);
3. `sisr upscale IN -o OUT.png` in this process: all of (2) plus loading
   and preparing the model;
4. before (with --before): the network, then Pillow's PNG at level 6 after
   it, as sisr wrote PNG before.

A warm-up run of (1) first (oneDNN's first call at each shape; on a virtual
machine, the first touch of the network's memory). Each row: best of
--rounds, its ratio to (1), and the process's CPU seconds (both cores count).

    python benchmarks/bench_whole_call.py [--precision auto bf16 fp32] [--rounds 2] [--before] [--json out.json]

--png-levels instead measures the encoder alone on x4 enlargements of
photos: file size (of the raw pixels) and encoding time per megapixel for
levels 0-9 of sisr's PNG writer, and Pillow's levels 1 and 6 for comparison:

    python benchmarks/bench_whole_call.py --png-levels [--photos 4]

--tiles measures the network alone at each tile size given (and untiled),
with the share of its work spent on context that neighbouring tiles compute
again (the windows' pixels over the cores' pixels, less one):

    python benchmarks/bench_whole_call.py --tiles 256 384 512 768 --height 750 --width 1000 --precision bf16
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench_batch import PHOTOS, cpu_description
from sisr import upscale
from sisr.cli import main
from sisr.image_io import read_image
from sisr.inference.streaming import upscale_to_file
from sisr.inference.upscale import plan_upscale
from sisr.png_writer import DEFAULT_PNG_LEVEL, PngWriter
from sisr.weights import load_model

SHARED_PHOTOS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "benchmarks" / "BSD100" / "HR"


def photo_tiles() -> list[np.ndarray]:
    """Landscape photos to build images from: BSD100's (481x321) where ../shared has them, else scikit-image's."""
    paths = sorted(SHARED_PHOTOS.glob("*.png")) if SHARED_PHOTOS.is_dir() else []
    if paths:
        photos = [np.asarray(Image.open(path).convert("RGB")) for path in paths[:60]]
        return [photo for photo in photos if photo.shape[1] > photo.shape[0]]
    import skimage.data

    return [np.asarray(getattr(skimage.data, name)())[..., :3] for name in PHOTOS]


def mosaic(height: int, width: int) -> np.ndarray:
    """Photos side by side, row after row, cut to height x width: a large image with a photo's texture."""
    tiles = photo_tiles()
    rows, row, used = [], [], 0
    while sum(len(r) for r in rows) < height:
        tile = tiles[used % len(tiles)]
        used += 1
        row.append(tile[: min(t.shape[0] for t in tiles)])
        if sum(t.shape[1] for t in row) >= width:
            rows.append(np.concatenate(row, axis=1)[:, :width])
            row = []
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:height])


def timed(function) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def whole_call(args: argparse.Namespace) -> dict:
    cpu, flags = cpu_description()
    load_before = os.getloadavg()
    record: dict = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu,
        "flags": flags,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "model": args.model,
        "png_level": args.png_level,
        "load_average_before": load_before,
        "results": {},
    }
    print(f"{record['date']} UTC, {cpu} ({' '.join(flags)}), {record['threads']} threads, torch {torch.__version__}")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in load_before)}")
    with tempfile.TemporaryDirectory(prefix="sisr-bench-whole-") as temporary:
        folder = Path(temporary)
        source = folder / "photo.jpg"
        Image.fromarray(mosaic(args.height, args.width)).save(source, quality=92)
        image = read_image(source)
        measured: set[str] = set()
        for precision in args.precision:
            model = load_model(args.model).prepare(precision, "cpu")
            if model.precision in measured:  # "auto" chose one measured already
                print(f"\n{precision}: {model.precision}, as above")
                continue
            measured.add(model.precision)
            record["results"][precision] = measure(model, precision, image, source, folder, args)
    record["load_average_after"] = os.getloadavg()
    print(f"\nload average after: {' '.join(f'{v:.2f}' for v in record['load_average_after'])}")
    return record


def measure(model, precision: str, image: np.ndarray, source: Path, folder: Path, args: argparse.Namespace) -> dict:
    """The ways of one prepared model, interleaved over --rounds; the best of each."""
    run = plan_upscale(
        model, image, tile=None, tile_overlap=None, tile_batch=1, precision="auto", device="auto", name=None
    )
    tiles = run.describe_tiles() or "whole image, untiled"
    print(f"\n{model.describe()}, {args.width}x{args.height} -> PNG level {args.png_level}: {tiles}")
    ways = {
        "network (in memory)": lambda: upscale(model, image),
        "upscale_to_file (decode, network, PNG)": lambda: upscale_to_file(
            model, source, folder / "library.png", overwrite=True, png_level=args.png_level
        ),
        "sisr upscale (+ load the model)": lambda: _cli(source, folder / "cli.png", args, precision),
    }
    if args.before:
        ways["before: network, then Pillow PNG level 6"] = lambda: Image.fromarray(upscale(model, image)).save(
            folder / "before.png", compress_level=6
        )
    upscale(model, image)  # warm-up
    times: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
    for _ in range(args.rounds):
        for way, function in ways.items():
            times[way].append(timed(function))
    best = {way: min(values) for way, values in times.items()}
    network = best["network (in memory)"][0]
    for way, (wall, cpu_seconds) in best.items():
        print(f"  {way:>42}: {wall:6.2f} s  {wall / network:5.3f}x network  ({cpu_seconds:5.1f} CPU s)")
    size = (folder / "cli.png").stat().st_size
    print(f"  PNG: {size / 1e6:.1f} MB ({size / (image.size * 16):.1%} of the raw pixels)")
    return {
        "described": model.describe(),
        "tiles": tiles,
        "seconds": {way: wall for way, (wall, _) in best.items()},
        "cpu_seconds": {way: cpu_seconds for way, (_, cpu_seconds) in best.items()},
        "over_network": {way: wall / network for way, (wall, _) in best.items()},
        "png_bytes": size,
    }


def _cli(source: Path, target: Path, args: argparse.Namespace, precision: str) -> None:
    command = ["-q", "upscale", str(source), "-o", str(target), "--model", args.model, "--precision", precision]
    command += ["--device", "cpu", "--png-level", str(args.png_level), "--overwrite"]
    if main(command) != 0:
        raise SystemExit(f"sisr upscale failed: {' '.join(command)}")


def png_levels(args: argparse.Namespace) -> dict:
    """Size and speed of each PNG level on x4 enlargements of photos (the network's real output, not bicubic)."""
    cpu, flags = cpu_description()
    model = load_model(args.model).prepare("auto", "cpu")
    photos = [upscale(model, tile) for tile in photo_tiles()[: args.photos]]
    megapixels = sum(photo.shape[0] * photo.shape[1] for photo in photos) / 1e6
    raw = sum(photo.nbytes for photo in photos)
    ways = {f"sisr level {level}": ("sisr", level) for level in range(10)}
    ways |= {"Pillow level 1 (per-row filters)": ("pillow", 1), "Pillow level 6 (before)": ("pillow", 6)}
    results: dict[str, dict[str, float]] = {}
    for _ in range(args.rounds):  # rounds interleave the ways
        for way, (writer, level) in ways.items():
            wall, total = 0.0, 0
            for photo in photos:
                buffer = io.BytesIO()
                start = time.perf_counter()
                if writer == "sisr":
                    png = PngWriter(buffer, photo.shape[1], photo.shape[0], 3, np.uint8, level)
                    png.write_rows(photo)
                    png.close()
                else:
                    Image.fromarray(photo).save(buffer, "PNG", compress_level=level)
                wall += time.perf_counter() - start
                total += buffer.tell()
            best = results.setdefault(way, {"ms_per_megapixel": float("inf")})
            best["ms_per_megapixel"] = min(best["ms_per_megapixel"], 1e3 * wall / megapixels)
            best["of_raw"] = total / raw
    print(f"{cpu} ({' '.join(flags)}); {len(photos)} x4 enlargements by {model.describe()}, {megapixels:.1f} MP")
    print(f"load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{'encoder':>34}  {'ms/MP':>7}  of raw")
    for way, figures in results.items():
        print(f"{way:>34}  {figures['ms_per_megapixel']:7.1f}  {figures['of_raw']:.3f}")
    return {"cpu": cpu, "flags": flags, "photos": len(photos), "megapixels": megapixels, "levels": results}


def tile_sizes(args: argparse.Namespace) -> dict:
    """The network's time on the photo for each tile size, with the share of its work spent on recomputed context."""
    from sisr.inference import plan_tiles
    from sisr.inference.tiling import recomputed_fraction

    cpu, flags = cpu_description()
    image = mosaic(args.height, args.width)
    results: dict[str, dict] = {}
    for precision in args.precision:
        model = load_model(args.model).prepare(precision, "cpu")
        if model.precision in {result["precision"] for result in results.values()}:
            continue
        overlap = model.info.receptive_field or 0
        sizes = [*args.tiles, None]
        for tile in sizes:
            upscale(model, image, tile=tile)  # warm-up at each window shape
        seconds: dict[int | None, float] = {}
        for _ in range(args.rounds):
            for tile in sizes:
                wall, _ = timed(lambda model=model, tile=tile: upscale(model, image, tile=tile))
                seconds[tile] = min(seconds.get(tile, wall), wall)
        for tile in sizes:
            fraction = recomputed_fraction(plan_tiles(args.height, args.width, tile, overlap))
            results[f"{model.precision} tile {tile or 'none'}"] = {
                "precision": model.precision,
                "tile": tile,
                "seconds": seconds[tile],
                "recomputed": fraction,
            }
    print(f"{cpu} ({' '.join(flags)}); {args.model}, {args.width}x{args.height}, best of {args.rounds}")
    print(f"load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for name, result in results.items():
        print(f"{name:>22}: {result['seconds']:6.2f} s, {result['recomputed']:6.1%} of the work recomputed")
    return {"cpu": cpu, "flags": flags, "size": [args.width, args.height], "tiles": results}


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default-x4")
    parser.add_argument("--precision", nargs="+", default=["auto", "bf16", "fp32"])
    parser.add_argument("--height", type=int, default=1500)
    parser.add_argument("--width", type=int, default=2000)
    parser.add_argument("--png-level", type=int, default=DEFAULT_PNG_LEVEL)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--before", action="store_true", help="also the network then Pillow's PNG, one after the other")
    parser.add_argument("--png-levels", action="store_true", help="measure the PNG encoder's levels instead")
    parser.add_argument(
        "--tiles", type=int, nargs="+", metavar="PIXELS", help="measure the network alone at these tile sizes instead"
    )
    parser.add_argument("--photos", type=int, default=4, help="with --png-levels: how many photos")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    if args.tiles:
        record = tile_sizes(args)
    elif args.png_levels:
        record = png_levels(args)
    else:
        record = whole_call(args)
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main_bench()
