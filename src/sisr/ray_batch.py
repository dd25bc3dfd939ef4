"""A folder of images upscaled by a Ray cluster: `sisr upscale IN -o OUT --ray` (the `ray` extra).

The driver plans the batch as every other run does (`batch.find_images`,
`mirrored_path`, `output_name`) and hands Ray Data one row per image: its
source and target paths, not its pixels. A fixed pool of actors, each of
which loads and prepares the network once, reads, upscales and writes its
images itself with `image_io.write_image` (atomic and exclusive), so no image
travels through the object store and IN and OUT must be on a file system
every node sees. Only a small status row per image comes back to the driver,
which keeps the manifest and the progress lines.

Failures are Ray's to retry: Ray Data gives its actor pools
`max_restarts=-1` and `max_task_retries=-1`, so an actor whose process or
node dies is started again (elsewhere if need be) and the images of the lost
task are run again. (Bounding them takes `ray_remote_args`, which Ray 2.60
deprecates; an image that kills every worker it meets is what `--max-pixels`
guards against.) An image whose output a lost attempt had already written
meets that output on the retry and counts as skipped: outputs only ever
appear whole. An image that still has no result when the pipeline ends is
reported as failed rather than failing the batch. Temporary files left by
killed writers are swept from the output folders at the end.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .batch import Job, Manifest, ProgressLines, find_images, mirrored_path, output_name, record_for
from .errors import OutputExistsError, SisrError

log = logging.getLogger("sisr")

# Images per Ray Data block: a lost task redoes at most this many, and a million images make
# 125,000 blocks rather than a million.
IMAGES_PER_BLOCK = 8


@dataclass(frozen=True)
class WorkerSettings:
    """What every actor needs to upscale an image as `sisr upscale` would; plain values, sent by pickle."""

    model: str
    scale: int | None = None
    precision: str = "auto"
    device: str = "auto"
    compile: bool = False
    self_ensemble: bool = False
    tile: int | None = None
    tile_overlap: int | None = None
    tile_batch: int = 1
    overwrite: bool = False
    max_pixels: int | None = None


@dataclass
class RayTally:
    """What became of the images of a batch run on Ray."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] | None = None

    def summary(self) -> str:
        return f"{self.done} written, {self.skipped} skipped (output exists), {self.failed} failed"


class ImageWorker:
    """One Ray actor: the network loaded once, then image after image, each written by the actor itself."""

    def __init__(self, settings: dict[str, Any]) -> None:
        from .inference.ensemble import self_ensemble
        from .weights import load_model

        self.settings = WorkerSettings(**settings)
        model = load_model(self.settings.model, scale=self.settings.scale)
        if self.settings.self_ensemble:
            model = self_ensemble(model)
        self.model = model.prepare(self.settings.precision, self.settings.device, compile=self.settings.compile)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        statuses, seconds, errors = [], [], []
        for source, target in zip(batch["source"], batch["target"]):
            start = time.perf_counter()
            status, error = self.upscale_one(Path(source), Path(target))
            statuses.append(status)
            seconds.append(time.perf_counter() - start)
            errors.append(error or "")
        return {"source": list(batch["source"]), "status": statuses, "seconds": seconds, "error": errors}

    def upscale_one(self, source: Path, target: Path) -> tuple[str, str | None]:
        """("done" | "skipped" | "failed", the error line of a failure)."""
        from .files import check_writable
        from .image_io import read_icc_profile, read_image, write_image
        from .inference import upscale

        settings = self.settings
        try:
            check_writable(target, settings.overwrite)
            image = read_image(source, max_pixels=settings.max_pixels)
            result = upscale(
                self.model,
                image,
                tile=settings.tile,
                tile_overlap=settings.tile_overlap,
                tile_batch=settings.tile_batch,
                name=str(source),
            )
            write_image(target, result, overwrite=settings.overwrite, icc_profile=read_icc_profile(source))
        except OutputExistsError:
            # Written by a lost attempt at this image (or another process meanwhile): it is whole.
            return "skipped", None
        except SisrError as error:
            return "failed", str(error)
        except Exception as error:  # whatever one image does, the others are still upscaled
            return "failed", f"{source}: failed ({type(error).__name__}: {error})"
        return "done", None


def plan_folder(
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    scale: int,
    *,
    recursive: bool = False,
    patterns: Sequence[str] | None = None,
    output_format: str | None = None,
) -> list[Job]:
    """Each image of `in_dir` with its output under `out_dir`: the same tree, photo.png -> photo-x4.png."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise SisrError(f"{in_dir}: not a folder (--ray takes one input folder)")
    sources, _ = find_images(in_dir, patterns, recursive)
    if not sources:
        raise SisrError(f"{in_dir}: folder has no images to upscale")
    return [
        Job(source, out_dir / mirrored_path(source, [in_dir]).parent / output_name(source, scale, output_format))
        for source in sources
    ]


def upscale_folder_on_ray(
    model_name: str | None,
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    address: str | None = None,
    workers: int = 2,
    scale: int | None = None,
    recursive: bool = False,
    pattern: Sequence[str] | None = None,
    output_format: str | None = None,
    skip_existing: bool = False,
    overwrite: bool = False,
    precision: str = "auto",
    device: str = "auto",
    compile: bool = False,
    self_ensemble: bool = False,
    tile: int | None = None,
    tile_overlap: int | None = None,
    tile_batch: int = 1,
    max_pixels: int | None = None,
    cpus_per_worker: float = 1.0,
    manifest: str | os.PathLike | None = None,
) -> RayTally:
    """Upscale every image of `in_dir` into `out_dir` (the same tree) with `workers` Ray actors.

    `address` is the cluster's (`HEAD:6379`, or `auto` for the one `ray start`
    began here); None joins a cluster this process is already connected to,
    else `$RAY_ADDRESS`, else starts a local one. Each worker gets a GPU where
    the cluster has GPUs (unless `device="cpu"`), else `cpus_per_worker`
    cores. `model_name` is anything `--model` takes (None: the bundled default
    for `scale`); every node must be able to load it. Returns the tally;
    failed images are listed in its `errors` and in `manifest` if given.
    """
    from .files import remove_stale_temporaries
    from .weights import default_model_name, load_model

    if workers < 1:
        raise SisrError(f"--workers {workers}: must be at least 1")
    if skip_existing and overwrite:
        raise SisrError("--skip-existing and --overwrite contradict each other: choose one")
    if model_name is None:
        model_name = default_model_name(scale)
    if model_name == "bicubic" and scale is None:
        raise SisrError("--model bicubic needs --scale (2, 3, 4, ...)")
    # Loaded here too: a wrong name or scale is one error before the cluster does anything, and the
    # output names need the scale.
    scale = load_model(model_name, scale=scale).scale
    jobs = plan_folder(in_dir, out_dir, scale, recursive=recursive, patterns=pattern, output_format=output_format)
    for folder in dict.fromkeys(job.target.parent for job in jobs):
        remove_stale_temporaries(folder)

    tally = RayTally(errors=[])
    records = Manifest(manifest) if manifest is not None else None
    try:
        waiting = []
        for job in jobs:
            if overwrite or not job.target.exists():
                waiting.append(job)
            elif skip_existing:
                _count(tally, records, job, "skipped", 0.0, None)
            else:
                # Decided here, not by a worker: there, an existing output means a retried image.
                _count(tally, records, job, "failed", 0.0, f"{job.target}: exists; use --overwrite or --skip-existing")
        if waiting:
            settings = WorkerSettings(
                model=model_name,
                scale=scale,
                precision=precision,
                device=device,
                compile=compile,
                self_ensemble=self_ensemble,
                tile=tile,
                tile_overlap=tile_overlap,
                tile_batch=tile_batch,
                overwrite=overwrite,
                max_pixels=max_pixels,
            )
            skipped = f" ({tally.skipped} skipped: output exists)" if tally.skipped else ""
            log.info("upscaling %d images%s with %s on Ray, %d workers", len(waiting), skipped, model_name, workers)
            by_source = {str(job.source): job for job in waiting}
            lines: ProgressLines | None = None
            seen = 0
            for row in _run_pipeline(waiting, settings, address, workers, cpus_per_worker):
                if row["source"] not in by_source:  # a second result for one image: a retried task reported it twice
                    continue
                job = by_source.pop(row["source"])
                _count(tally, records, job, row["status"], row["seconds"], row["error"] or None)
                seen += 1
                lines = lines or ProgressLines(
                    len(waiting)
                )  # from the first result: the cluster's start-up is not progress
                if (line := lines.update(seen)) is not None:
                    log.info("%s", line)
            for job in by_source.values():  # left without a result after Ray's retries
                message = f"{job.source}: no result from the cluster (its task failed for good)"
                _count(tally, records, job, "failed", 0.0, message)
    finally:
        if records is not None:
            records.close()
    for folder in dict.fromkeys(job.target.parent for job in jobs):
        remove_stale_temporaries(folder)
    log.info("%s", tally.summary())
    return tally


def _count(tally: RayTally, records: Manifest | None, job: Job, status: str, seconds: float, error: str | None) -> None:
    setattr(tally, status, getattr(tally, status) + 1)
    if error is not None and tally.errors is not None:
        tally.errors.append(error)
        log.error("sisr upscale: error: %s", error)
    if records is not None:
        records.append(record_for(job, status, seconds, error))


def _run_pipeline(
    jobs: list[Job], settings: WorkerSettings, address: str | None, workers: int, cpus_per_worker: float
) -> Iterator[dict[str, Any]]:
    """The status rows of `jobs` as the actors finish them, in no particular order."""
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, logging_level=logging.WARNING, configure_logging=False)
    try:
        import ray.data

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # sisr's own progress lines instead
        # A block whose retries are spent is reported by the driver as failed images, not a failed batch.
        context.max_errored_blocks = -1
        gpus = ray.cluster_resources().get("GPU", 0) > 0 and settings.device != "cpu"
        resources = {"num_gpus": 1} if gpus else {"num_cpus": cpus_per_worker}
        rows = [{"source": str(job.source), "target": str(job.target)} for job in jobs]
        dataset = ray.data.from_items(rows, override_num_blocks=math.ceil(len(rows) / IMAGES_PER_BLOCK))
        results = dataset.map_batches(
            ImageWorker,
            fn_constructor_kwargs={"settings": asdict(settings)},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=workers),
            **resources,
        )
        yield from results.iter_rows()
    finally:
        if started_here:
            ray.shutdown()


def import_ray() -> Any:
    """Ray, with its usage statistics off unless the user has said otherwise."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise SisrError("--ray needs Ray: pip install 'sisr[ray]'") from None
    return ray


# Options of `sisr upscale` that a Ray run does not take, with the reason.
_REFUSED = {
    "stream": "--stream (each worker writes whole images)",
    "from_manifest": "--from-manifest (rerun the folder with --skip-existing instead)",
    "shard": "--shard (Ray shares the images out itself)",
}


def run_on_ray(args: argparse.Namespace) -> int:
    """`sisr upscale IN_DIR -o OUT_DIR --ray`: the command line's options, checked, to `upscale_folder_on_ray`."""
    for name, what in _REFUSED.items():
        if getattr(args, name, None):
            raise SisrError(f"--ray does not take {what}")
    if len(args.inputs) != 1 or args.output is None:
        raise SisrError("--ray takes one input folder and -o OUTPUT_FOLDER: sisr upscale IN_DIR -o OUT_DIR --ray")
    tally = upscale_folder_on_ray(
        args.model,
        args.inputs[0],
        args.output,
        address=args.ray_address,
        workers=args.workers,
        scale=args.scale,
        recursive=args.recursive,
        pattern=args.pattern,
        output_format=args.format,
        skip_existing=args.skip_existing,
        overwrite=args.overwrite,
        precision=args.precision,
        device=args.device,
        compile=args.compile,
        self_ensemble=args.self_ensemble,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        tile_batch=args.tile_batch,
        max_pixels=args.max_pixels,
        manifest=args.manifest,
    )
    if tally.failed:
        raise SisrError(f"{tally.failed} of {tally.done + tally.skipped + tally.failed} images failed")
    return 0
