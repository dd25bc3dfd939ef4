"""`sisr upscale INPUT... -o OUTPUT`: enlarge image files with a trained network (or bicubic)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..batch import Job, Manifest, ProgressLines, find_images, mirrored_path, output_name
from ..errors import OutputExistsError, SisrError

if TYPE_CHECKING:
    from ..inference import PreparedModel
    from ..inference.pipeline import Outcome

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
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="image files and/or folders of images")
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
        "--png-level",
        type=int,
        default=None,
        metavar="0-9",
        help="PNG compression: 0 (none, fastest, largest) to 9 (smallest, slowest); default 1, which on "
        "enlarged photos is several times faster than 6 (Pillow's default) for files about a tenth larger",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        metavar="N",
        help="refuse input images of more than N pixels, width x height (default 200000000, or "
        "$SISR_MAX_PIXELS; 0 = no limit): a guard against files that declare far more pixels than they hold",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    batch = parser.add_argument_group("batches of many images")
    batch.add_argument(
        "--recursive",
        action="store_true",
        help="take folder inputs with their sub-folders; the outputs keep the same tree under OUTPUT",
    )
    batch.add_argument(
        "--pattern",
        action="append",
        metavar="GLOB",
        help="in folder inputs, take the files whose path matches GLOB (case-insensitive, from the right: "
        "'*.png', 'scans/*.tif'); repeatable (default: every image type sisr reads)",
    )
    batch.add_argument(
        "--skip-existing",
        action="store_true",
        help="leave outputs that exist as they are, counted as skipped: rerunning a killed batch does "
        "only what is missing (also safe with several processes on one OUTPUT)",
    )
    batch.add_argument(
        "--manifest",
        metavar="FILE.jsonl",
        help="append one JSON line per input as it completes: source, output, status "
        "(done, skipped, failed), seconds, input_bytes, output_bytes, error",
    )
    batch.add_argument(
        "--from-manifest",
        metavar="FILE.jsonl",
        help="retry the inputs whose latest record in this manifest is a failure, into the outputs "
        "recorded there (no INPUT or -o); results are appended to it unless --manifest names another",
    )
    batch.add_argument(
        "--shard",
        metavar="I/N",
        help="do share I of N (0-based: 0/4 to 3/4) of the images, chosen by a hash of each path so that "
        "N processes do each image exactly once; left out, RANK/WORLD_SIZE (torchrun) or "
        "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT choose it where set, in that order",
    )
    batch.add_argument(
        "--overlap",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="decode and encode the next and last images in threads while the network runs (default: on a GPU "
        "only; on a CPU the codecs compete with the network for the same cores and measured no faster: "
        "docs/benchmarks.md). One large PNG or TIFF is encoded while the network runs either way",
    )
    cluster = parser.add_argument_group("a Ray cluster (pip install 'sisr[ray]')")
    cluster.add_argument(
        "--ray",
        action="store_true",
        help="upscale one input folder on a Ray cluster: workers that each load the network once and write "
        "their outputs themselves (INPUT and OUTPUT on a file system every node sees); not with --stream, "
        "--from-manifest or --shard",
    )
    cluster.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="the cluster to join, HEAD:6379 (default: $RAY_ADDRESS, else a cluster started on this machine)",
    )
    cluster.add_argument(
        "--workers",
        type=int,
        default=2,
        metavar="N",
        help="with --ray: workers, one GPU each where there are GPUs (default 2)",
    )
    parser.set_defaults(func=run)


def expand_inputs(inputs: list[str], recursive: bool = False, patterns: list[str] | None = None) -> list[Path]:
    """Files as given; folders as their image files (with `recursive`, in sub-folders too), with those left out named."""
    paths: list[Path] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            images, others = find_images(path, patterns, recursive)
            if not images:
                raise SisrError(f"{path}: folder has no {_what_is_taken(patterns)}")
            if others:
                names = [other.relative_to(path).as_posix() for other in others]
                shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
                reason = "matching none of --pattern" if patterns else "not image files sisr reads"
                log.info("%s: left out %s (%s)", path, shown, reason)
            paths.extend(images)
        else:
            paths.append(path)  # a missing file is reported when its turn comes
    return paths


def _what_is_taken(patterns: list[str] | None) -> str:
    from ..image_io import READ_SUFFIXES

    if patterns:
        return f"files matching {' or '.join(patterns)}"
    return f"image files ({', '.join(sorted(READ_SUFFIXES))})"


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
    folders = [Path(text) for text in inputs if Path(text).is_dir()]
    return _unique(
        [
            Job(source, target / mirrored_path(source, folders).parent / output_name(source, scale, output_format))
            for source in sources
        ]
    )


def _beside_inputs(sources: list[Path], scale: int, output_format: str | None, inputs: list[str]) -> list[Job]:
    """Without -o: photo.jpg -> photo-x4.png in the same folder (PNG unless --format)."""
    folders = [text for text in inputs if Path(text).is_dir()]
    if folders:
        # Outputs inside the folder would be taken as inputs by the next run over it.
        raise SisrError(
            f"{folders[0]}: a folder input needs -o OUTPUT_FOLDER (e.g. -o {Path(folders[0]).name}-x{scale}/)"
        )
    return _unique(
        [Job(source, source.parent / output_name(source, scale, output_format or "png")) for source in sources]
    )


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


def check_png_level(args: argparse.Namespace) -> None:
    """--png-level: a zlib level, or the default."""
    from ..png_writer import DEFAULT_PNG_LEVEL, check_png_level

    if args.png_level is None:
        args.png_level = DEFAULT_PNG_LEVEL
    check_png_level(args.png_level, "--png-level")


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
    return write_result(job, compute_result(model, job, read_input(job, args), args), args)


@dataclass
class Decoded:
    """An input image as read, with the colour profile its output gets."""

    image: Any
    icc_profile: bytes | None


def read_input(job: Job, args: argparse.Namespace) -> Decoded:
    """The first stage of an image: checks that need no network, then the decoded file."""
    from ..files import check_writable
    from ..image_io import read_icc_profile, read_image

    if job.source.resolve() == job.target.resolve():
        raise SisrError(f"{job.source}: the output would replace the input")
    check_writable(job.target, args.overwrite)  # before the network runs, not after
    image = read_image(job.source, max_pixels=args.max_pixels)
    # The same colours as the input: its colour profile goes with the pixels.
    return Decoded(image, read_icc_profile(job.source))


def compute_result(model: PreparedModel, job: Job, decoded: Decoded, args: argparse.Namespace) -> Any:
    """The network's stage: the enlarged image, or its size where it was streamed to its file already."""
    import torch

    from ..inference import upscale
    from ..inference.streaming import encodes_while_computing, upscale_to_file

    if should_stream(job.target, decoded.image, model.scale, args.stream):
        return stream_file(model, decoded.image, job, args)
    height, width = decoded.image.shape[:2]
    try:
        if encodes_while_computing(job.target, model.info, height, width, args.tile):
            # Rows of tiles are encoded as the network finishes them: the write is this stage's too.
            return upscale_to_file(
                model,
                decoded.image,
                job.target,
                tile=args.tile,
                tile_overlap=args.tile_overlap,
                tile_batch=args.tile_batch,
                overwrite=args.overwrite,
                name=str(job.source),
                progress=log.isEnabledFor(logging.INFO),
                png_level=args.png_level,
                icc_profile=decoded.icc_profile,
            )
        result = upscale(
            model,
            decoded.image,
            tile=args.tile,
            tile_overlap=args.tile_overlap,
            tile_batch=args.tile_batch,
            name=str(job.source),
            progress=log.isEnabledFor(logging.INFO),  # a tile bar on a terminal, else a line every few seconds
        )
    except torch.OutOfMemoryError:
        hint = "use a smaller --tile" if args.tile else "use --tile 256 (or smaller)"
        raise SisrError(f"{job.source}: out of memory; {hint}") from None
    return Encodable(result, decoded.icc_profile)


@dataclass
class Encodable:
    """An enlarged image waiting for the writer."""

    pixels: Any
    icc_profile: bytes | None


def write_result(job: Job, computed: Any, args: argparse.Namespace) -> tuple[int, int]:
    """The last stage: encode the result to its file (atomically, exclusively); the output size (width, height)."""
    from ..image_io import write_image

    if not isinstance(computed, Encodable):  # streamed: written tile by tile already
        return computed
    write_image(
        job.target,
        computed.pixels,
        overwrite=args.overwrite,
        icc_profile=computed.icc_profile,
        png_level=args.png_level,
    )
    return computed.pixels.shape[1], computed.pixels.shape[0]


def outcomes(model: PreparedModel, jobs: list[Job], args: argparse.Namespace) -> Iterator[Outcome[Job]]:
    """Each job's outcome in order; decoding and encoding overlap the network where that pays.

    On a GPU the CPU is free for the codecs while the network runs; on a CPU
    they compete with it for the same cores, and with PNG written by sisr's
    own encoder (zlib on every core, without the GIL) the overlap measured
    no faster than one image after another (docs/benchmarks.md), so it is
    off there. `--overlap` / `--no-overlap` decide it. Streamed outputs (a
    tiled TIFF; a PNG or TIFF of several rows of tiles, encoded while the
    network runs) are written by the network's stage itself.
    """
    import time

    from ..inference.pipeline import Outcome, overlapped

    overlap = getattr(args, "overlap", None)
    if overlap is None:
        overlap = model.device.type == "cuda"
    if overlap and len(jobs) > 1:
        yield from overlapped(
            jobs,
            lambda job: read_input(job, args),
            lambda job, decoded: compute_result(model, job, decoded, args),
            lambda job, computed: write_result(job, computed, args),
        )
        return
    for job in jobs:
        start = time.perf_counter()
        try:
            yield Outcome(job, upscale_file(model, job, args), None, time.perf_counter() - start)
        except Exception as error:  # whatever one image does, the others are still upscaled
            yield Outcome(job, None, error, time.perf_counter() - start)


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


def check_batch_options(args: argparse.Namespace) -> None:
    """Batch options that contradict each other or the inputs: one error before any work."""
    if args.skip_existing and args.overwrite:
        raise SisrError("--skip-existing and --overwrite contradict each other: choose one")
    if args.from_manifest is not None:
        given = [
            name for name, value in (("INPUT", args.inputs), ("-o", args.output), ("--format", args.format)) if value
        ]
        if given:
            raise SisrError(f"--from-manifest takes the inputs and outputs from the manifest: leave out {given[0]}")
    elif not args.inputs:
        raise SisrError("give at least one INPUT (an image file or folder), or --from-manifest FILE.jsonl")


def plan_batch(args: argparse.Namespace, scale: int) -> list[Job]:
    """Every job of the command (its shard only, where sharded), before any output is looked at."""
    import os

    from ..batch import failed_jobs, read_manifest, resolve_shard

    if args.from_manifest is not None:
        jobs = failed_jobs(read_manifest(args.from_manifest))
    else:
        sources = expand_inputs(args.inputs, args.recursive, args.pattern)
        jobs = plan_jobs(sources, args.output, scale, args.format, args.inputs)
    shard = resolve_shard(args.shard, os.environ)
    if shard is not None and shard.count > 1:
        total = len(jobs)
        jobs = shard.select(jobs, key=lambda job: job.source.as_posix())
        log.info("shard %s (%s): %d of %d images", shard, shard.origin, len(jobs), total)
    return jobs


@dataclass
class Tally:
    """What became of the images of a batch, for its last line."""

    done: int = 0
    skipped: int = 0
    failed: int = 0

    def summary(self) -> str:
        return f"{self.done} written, {self.skipped} skipped (output exists), {self.failed} failed"


def _progress(jobs: list[Job]) -> Any:
    if len(jobs) > 1 and sys.stderr.isatty() and log.isEnabledFor(logging.INFO):
        from tqdm import tqdm

        return tqdm(total=len(jobs), unit="image", file=sys.stderr)
    return None


def run(args: argparse.Namespace) -> int:
    from ..batch import record_for

    check_tiling(args)
    check_png_level(args)
    check_max_pixels(args)
    check_batch_options(args)
    if args.ray:
        from ..ray_batch import run_on_ray

        return run_on_ray(args)
    if args.from_manifest is not None and not failed_jobs_exist(args.from_manifest):
        log.info("%s: no failures to retry", args.from_manifest)
        return 0
    model = load_network(args)
    jobs = plan_batch(args, model.scale)
    check_stream(args, jobs)
    remove_stale_temporaries_beside(jobs)
    manifest_path = args.manifest or args.from_manifest
    manifest = Manifest(manifest_path) if manifest_path is not None else None
    tally = Tally()
    if args.skip_existing:
        waiting = []
        for job in jobs:
            if job.target.exists():  # complete: outputs only ever appear whole
                tally.skipped += 1
                if manifest is not None:
                    manifest.append(record_for(job, "skipped", 0.0))
            else:
                waiting.append(job)
        jobs = waiting
    used = model.describe()  # which model, precision and device: "default-x4 (wdsr, x4) in fp32 on cpu"
    if len(jobs) == 1 and not tally.skipped:
        log.info("upscaling %s with %s", jobs[0].source, used)
    else:
        skipped = f" ({tally.skipped} skipped: output exists)" if tally.skipped else ""
        log.info("upscaling %d images%s with %s", len(jobs), skipped, used)
    single = len(jobs) == 1 and not tally.skipped
    bar = _progress(jobs)
    lines = ProgressLines(len(jobs)) if bar is None and len(jobs) > 1 else None
    try:
        for number, outcome in enumerate(outcomes(model, jobs, args), 1):
            job, error = outcome.job, outcome.error
            if error is None:
                width, height = outcome.value
                status, message = "done", None
            elif isinstance(error, OutputExistsError) and args.skip_existing:
                # Another process wrote it meanwhile: its output stands, as on a rerun.
                status, message = "skipped", None
            else:
                status, message = "failed", _failure(job, error, args)
            if manifest is not None:
                manifest.append(record_for(job, status, outcome.seconds, message))
            if bar is not None:
                bar.update(1)
            if status == "done":
                tally.done += 1
                if bar is None:
                    log.info("wrote %s (%dx%d)", job.target, width, height)
            elif status == "skipped":
                tally.skipped += 1
            else:
                if single:
                    raise SisrError(message)
                tally.failed += 1
                _report(f"sisr upscale: error: {message}", bar)
            _show_progress(lines, number)
    finally:
        if bar is not None:
            bar.close()
        if manifest is not None:
            manifest.close()
    total = tally.done + tally.skipped + tally.failed
    if total > 1:
        log.info("%s", tally.summary())
    if tally.failed:
        raise SisrError(f"{tally.failed} of {total} images failed")
    return 0


def remove_stale_temporaries_beside(jobs: list[Job]) -> None:
    """Remove what killed writers left in the output folders, up front.

    A writer killed just after its output was complete leaves its temporary
    name beside it, and with --skip-existing nothing may be written into that
    folder again to sweep it on the way.
    """
    from ..files import remove_stale_temporaries

    for folder in dict.fromkeys(job.target.parent for job in jobs):
        remove_stale_temporaries(folder)


def failed_jobs_exist(manifest: str) -> bool:
    from ..batch import failed_jobs, read_manifest

    return bool(failed_jobs(read_manifest(manifest)))


def _show_progress(lines: ProgressLines | None, done: int) -> None:
    if lines is not None and (line := lines.update(done)) is not None:
        log.info("%s", line)


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
