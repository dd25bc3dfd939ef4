"""`sisr upscale INPUT... -o OUTPUT`: enlarge image files with a trained network (or bicubic)."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SisrError

if TYPE_CHECKING:
    from ..inference import PreparedModel

FORMATS = ["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"]
log = logging.getLogger("sisr")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "upscale",
        help="enlarge images with a super-resolution network",
        description="Enlarge images with a super-resolution network. INPUT may be image files and folders "
        "(a folder stands for the image files in it). Without -o, each output is a PNG beside its input, "
        "named after it: photo.jpg -> photo-x4.png. With one input file, OUTPUT is the file to write; "
        "otherwise (or when OUTPUT ends in / or is a folder) it is a folder, and each output is named "
        "after its input: photo.png -> photo-x4.png.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders of images")
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUTPUT",
        help="output file or folder (default: INPUT-xS.png beside each input file)",
    )
    parser.add_argument(
        "--model",
        metavar="WEIGHTS",
        help="the bundled default for --scale when left out (default-x2, -x3, -x4, offline); a "
        "weight file (sisr .safetensors, or Keras/PyTorch weights), a pretrained model name "
        "(`sisr models --pretrained`), or `bicubic` for MATLAB bicubic",
    )
    parser.add_argument(
        "--scale",
        type=int,
        help="the enlargement (default 4 without --model); required for bicubic, checked against the network",
    )
    parser.add_argument(
        "--tile",
        type=int,
        metavar="PIXELS",
        help="process tiles of at most PIXELS x PIXELS input pixels (bounds memory on large images)",
    )
    parser.add_argument(
        "--tile-overlap",
        type=int,
        metavar="PIXELS",
        help="context around each tile (default: the network's receptive field, exact results)",
    )
    parser.add_argument("--tile-batch", type=int, default=1, metavar="N", help="tiles per network call (default 1)")
    parser.add_argument(
        "--self-ensemble",
        action="store_true",
        help="average the outputs for the 8 flips and rotations of the input (8x the time)",
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="write a .tif output tile by tile, never holding it in memory (automatic for .tif "
        "outputs over 512 MB); for results larger than memory",
    )
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        default="auto",
        help="number format: auto (default: fp16 on CUDA, bf16 on CPUs with bf16 instructions, "
        "else fp32), fp32, bf16, fp16 (CUDA only)",
    )
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto (CUDA if present, default), cpu or cuda"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="run the network through torch.compile: seconds of compiling per input size, then "
        "faster on a GPU; for many images of one size (video frames)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="output format when OUTPUT is a folder (default: the input's) or left out (default: png)",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        metavar="N",
        help="refuse input images of more than N pixels, width x height (default 200000000, or "
        "$SISR_MAX_PIXELS; 0 = no limit): a guard against files that declare far more pixels than they hold",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.set_defaults(func=run)


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given; folders as their image files, sorted by name, with the files left out named."""
    from ..image_io import READ_SUFFIXES

    paths: list[Path] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            images = [p for p in files if p.suffix.lower() in READ_SUFFIXES]
            if not images:
                raise SisrError(f"{path}: folder has no image files ({', '.join(sorted(READ_SUFFIXES))})")
            others = [p.name for p in files if p.suffix.lower() not in READ_SUFFIXES]
            if others:
                shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
                log.info("%s: left out %s (not image files sisr reads)", path, shown)
            paths.extend(images)
        else:
            paths.append(path)  # a missing file is reported when its turn comes
    return paths


def plan_jobs(
    sources: list[Path], output: str | None, scale: int, output_format: str | None, inputs: list[str]
) -> list[Job]:
    """Pair each input with its output path, refusing plans that would write one file twice."""
    if output is None:
        return _beside_inputs(sources, scale, output_format, inputs)
    from ..image_io import IMAGE_SUFFIXES

    target = Path(output)
    to_folder = (
        len(sources) > 1 or output.endswith(("/", "\\")) or target.is_dir() or any(Path(i).is_dir() for i in inputs)
    )
    if not to_folder:
        suffix = target.suffix.lower()
        if suffix not in IMAGE_SUFFIXES:
            raise SisrError(
                f"{target}: unknown image format {suffix or '(no extension)'}; "
                f"use one of {', '.join(sorted(IMAGE_SUFFIXES))}, or end OUTPUT with / for a folder"
            )
        if output_format is not None and suffix.lstrip(".") != output_format:
            raise SisrError(f"--format {output_format} conflicts with the output file's extension {suffix}")
        return [Job(sources[0], target)]
    if target.exists() and not target.is_dir():
        raise SisrError(f"{target}: is a file, but {len(sources)} inputs need an output folder")
    if target.suffix.lower() in IMAGE_SUFFIXES and not target.exists() and not output.endswith(("/", "\\")):
        # `-o out.png` with several inputs is a slip, not a request for a folder named out.png.
        what = f"{len(sources)} inputs need" if len(sources) > 1 else "a folder input needs"
        raise SisrError(
            f"-o {output}: names an image file, but {what} an output folder "
            f"(give a folder, e.g. -o {target.with_suffix('')}/; a folder named {target.name} is -o {output}/)"
        )
    return _unique([Job(source, target / _output_name(source, scale, output_format)) for source in sources])


def _beside_inputs(sources: list[Path], scale: int, output_format: str | None, inputs: list[str]) -> list[Job]:
    """Without -o: photo.jpg -> photo-x4.png in the same folder (PNG unless --format)."""
    folders = [text for text in inputs if Path(text).is_dir()]
    if folders:
        # Outputs inside the folder would be taken as inputs by the next run over it.
        raise SisrError(
            f"{folders[0]}: a folder input needs -o OUTPUT_FOLDER (e.g. -o {Path(folders[0]).name}-x{scale}/)"
        )
    return _unique(
        [Job(source, source.parent / _output_name(source, scale, output_format or "png")) for source in sources]
    )


def _output_name(source: Path, scale: int, output_format: str | None) -> str:
    """photo.png -> photo-x4.png; the input's extension unless a format is given (PNG for GIF, read only)."""
    from ..image_io import IMAGE_SUFFIXES

    if output_format:
        suffix = f".{output_format}"
    else:
        suffix = source.suffix if source.suffix.lower() in IMAGE_SUFFIXES else ".png"
    return f"{source.stem}-x{scale}{suffix}"


def _unique(jobs: list[Job]) -> list[Job]:
    """The jobs as they are, or an error naming two inputs that would write the same file."""
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.target in seen:
            raise SisrError(f"{seen[job.target]} and {job.source} would both be written to {job.target}")
        seen[job.target] = job.source
    return jobs


def check_tiling(args: argparse.Namespace) -> None:
    """Bad tile options are one error up front, not one per image."""
    if args.tile is not None and args.tile < 1:
        raise SisrError(f"--tile {args.tile}: must be at least 1 pixel")
    if args.tile_overlap is not None and args.tile_overlap < 0:
        raise SisrError(f"--tile-overlap {args.tile_overlap}: must not be negative")
    if args.tile_batch < 1:
        raise SisrError(f"--tile-batch {args.tile_batch}: must be at least 1")


def check_max_pixels(args: argparse.Namespace) -> None:
    """--max-pixels, else $SISR_MAX_PIXELS, else the default: checked once, not once per image."""
    from ..image_io import max_input_pixels

    if args.max_pixels is None:
        args.max_pixels = max_input_pixels()
    elif args.max_pixels < 0:
        raise SisrError(f"--max-pixels {args.max_pixels}: must not be negative (0 = no limit)")


def load_network(args: argparse.Namespace) -> PreparedModel:
    """The model for --model, prepared once for all images (eval, folded, on its device)."""
    from ..inference.ensemble import self_ensemble
    from ..weights import default_model_name, load_model

    if args.model is None:
        args.model = default_model_name(args.scale)
    if args.model == "bicubic" and args.scale is None:
        raise SisrError("--model bicubic needs --scale (2, 3, 4, ...)")
    model = load_model(args.model, scale=args.scale)
    if args.self_ensemble:
        model = self_ensemble(model)
    return model.prepare(args.precision, args.device, compile=args.compile)


def upscale_file(model: PreparedModel, job: Job, args: argparse.Namespace) -> tuple[int, int]:
    """Read, upscale, write one image; returns the output size (width, height)."""
    import torch

    from ..files import check_writable
    from ..image_io import read_icc_profile, read_image, write_image
    from ..inference import upscale

    if job.source.resolve() == job.target.resolve():
        raise SisrError(f"{job.source}: the output would replace the input")
    check_writable(job.target, args.overwrite)  # before the network runs, not after
    image = read_image(job.source, max_pixels=args.max_pixels)
    if should_stream(job.target, image, model.scale, args.stream):
        return stream_file(model, image, job, args)
    try:
        result = upscale(
            model,
            image,
            tile=args.tile,
            tile_overlap=args.tile_overlap,
            tile_batch=args.tile_batch,
            name=str(job.source),
            progress=log.isEnabledFor(logging.INFO),  # a tile bar, on a terminal only
        )
    except torch.OutOfMemoryError:
        hint = "use a smaller --tile" if args.tile else "use --tile 256 (or smaller)"
        raise SisrError(f"{job.source}: out of memory; {hint}") from None
    # The same colours as the input: its colour profile goes with the pixels.
    write_image(job.target, result, overwrite=args.overwrite, icc_profile=read_icc_profile(job.source))
    return result.shape[1], result.shape[0]


def should_stream(target: Path, image: Any, scale: int, asked: bool) -> bool:
    """Stream when asked, or when a .tif output would take more than STREAM_BYTES in memory."""
    from ..inference.streaming import STREAM_BYTES, TIFF_SUFFIXES, output_bytes

    if target.suffix.lower() not in TIFF_SUFFIXES:
        return False
    channels = 1 if image.ndim == 2 else image.shape[2]
    return asked or output_bytes(image.shape[0], image.shape[1], channels, scale, image.itemsize) > STREAM_BYTES


def stream_file(model: PreparedModel, image: Any, job: Job, args: argparse.Namespace) -> tuple[int, int]:
    """Upscale into a tiled TIFF band by band; returns the output size (width, height)."""
    import torch

    from ..inference import AUTO_TILE
    from ..inference.streaming import upscale_to_tiff

    tile = args.tile or AUTO_TILE
    try:
        upscale_to_tiff(
            model,
            image,
            job.target,
            tile=tile,
            tile_overlap=args.tile_overlap,
            tile_batch=args.tile_batch,
            overwrite=args.overwrite,
            name=str(job.source),
            progress=log.isEnabledFor(logging.INFO),
        )
    except torch.OutOfMemoryError:
        raise SisrError(f"{job.source}: out of memory; use a smaller --tile than {tile}") from None
    return image.shape[1] * model.scale, image.shape[0] * model.scale


def check_stream(args: argparse.Namespace, jobs: list[Job]) -> None:
    """--stream writes TIFF only: say so before any image is processed."""
    from ..inference.streaming import TIFF_SUFFIXES

    if args.stream:
        others = [job.target for job in jobs if job.target.suffix.lower() not in TIFF_SUFFIXES]
        if others:
            raise SisrError(f"--stream writes tiled TIFF only, but {others[0]} is not .tif/.tiff (use --format tif)")


def _progress(jobs: list[Job]) -> Any:
    if len(jobs) > 1 and sys.stderr.isatty() and log.isEnabledFor(logging.INFO):
        from tqdm import tqdm

        return tqdm(jobs, unit="image", file=sys.stderr)
    return None


def run(args: argparse.Namespace) -> int:
    check_tiling(args)
    check_max_pixels(args)
    sources = expand_inputs(args.inputs)
    model = load_network(args)
    jobs = plan_jobs(sources, args.output, model.scale, args.format, args.inputs)
    check_stream(args, jobs)
    used = model.describe()  # which model, precision and device: "default-x4 (wdsr, x4) in fp32 on cpu"
    if len(jobs) > 1:
        log.info("upscaling %d images with %s", len(jobs), used)
    else:
        log.info("upscaling %s with %s", jobs[0].source, used)
    bar = _progress(jobs)
    failures = 0
    for job in bar if bar is not None else jobs:
        try:
            width, height = upscale_file(model, job, args)
        except Exception as error:  # whatever one image does, the others are still upscaled
            message = _failure(job, error, args)
            if len(jobs) == 1:
                raise SisrError(message) from None
            failures += 1
            _report(f"sisr upscale: error: {message}", bar)
            continue
        if bar is None:
            log.info("wrote %s (%dx%d)", job.target, width, height)
    if bar is not None:
        bar.close()
    if failures:
        raise SisrError(f"{failures} of {len(jobs)} images failed")
    return 0


def _failure(job: Job, error: Exception, args: argparse.Namespace) -> str:
    """One line naming the input and what went wrong with it."""
    if isinstance(error, SisrError):
        return str(error)
    if isinstance(error, MemoryError):
        hint = "a smaller --tile" if args.tile else "--tile 256"
        return f"{job.source}: out of memory; try {hint}, --stream with a .tif output, or a lower --max-pixels"
    if isinstance(error, OSError):
        return f"{job.source}: {error}"
    log.debug("%s failed", job.source, exc_info=True)  # a fault of sisr's own: its traceback at DEBUG level
    return f"{job.source}: failed ({type(error).__name__}: {error})"


def _report(line: str, bar: Any) -> None:
    """An error line on stderr that does not tear the progress bar."""
    if bar is not None:
        bar.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr)
