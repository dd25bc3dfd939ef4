"""Planning a batch of many images: which files, which outputs, which share of them, and a record of each.

`sisr upscale` over a folder tree is a batch that may be killed, retried and
spread over many processes, so everything it decides is decided here, from
the file listing and the options alone, the same way in every process:

- `find_images` lists a folder (and with `recursive` its sub-folders) in a
  fixed order, hidden files and folders left out; `mirrored_path` gives each
  image's place under the output folder, the same tree as under the input.
- `Shard` says which images one of N processes does. An image belongs to the
  shard given by a hash of its path, not by its position in the listing: N
  jobs of a scheduler list the folder at different times, and an image added
  meanwhile must not shift every later image into another shard (which would
  do some twice and others never).
- `Manifest` appends one JSON line per input as work completes (status `done`,
  `skipped` or `failed`); `failed_jobs` reads back what is to be retried.
- `ProgressLines` says how far a batch is, for logs where no bar can be drawn.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePath
from typing import Any, TypeVar

from .errors import SisrError

STATUSES = ("done", "skipped", "failed")


@dataclass(frozen=True)
class Job:
    """One input image and the file its enlargement is written to."""

    source: Path
    target: Path


# --- which files -------------------------------------------------------------------------------


def find_images(
    folder: str | os.PathLike, patterns: Sequence[str] | None = None, recursive: bool = False
) -> tuple[list[Path], list[Path]]:
    """The files in `folder` to upscale, and those left out; both sorted by path.

    A file is chosen when its path relative to `folder` matches one of
    `patterns` (glob patterns matched from the right, case-insensitive: `*.png`
    matches in every sub-folder, `scans/*.tif` in folders named scans), or,
    without patterns, when it has a suffix of an image type sisr reads. Hidden
    files and folders (a leading dot) are never visited; nor are links to
    folders, which could lead in a circle.
    """
    from .image_io import READ_SUFFIXES

    folder = Path(folder)
    chosen: list[Path] = []
    left_out: list[Path] = []
    for path in _walk(folder, recursive):
        relative = path.relative_to(folder)
        if patterns:
            wanted = any(matches(relative, pattern) for pattern in patterns)
        else:
            wanted = path.suffix.lower() in READ_SUFFIXES
        (chosen if wanted else left_out).append(path)
    return chosen, left_out


def matches(relative: PurePath, pattern: str) -> bool:
    """Whether a path relative to the input folder matches a glob pattern, from the right, ignoring case."""
    parts = [part.lower() for part in relative.parts]
    pattern_parts = [part.lower() for part in PurePath(pattern).parts]
    if not pattern_parts or len(pattern_parts) > len(parts):
        return False
    tail = parts[len(parts) - len(pattern_parts) :]
    return all(fnmatch.fnmatchcase(part, wanted) for part, wanted in zip(tail, pattern_parts, strict=True))


def _walk(folder: Path, recursive: bool) -> list[Path]:
    """Plain files under `folder` (symbolic links to files included), sorted by their relative paths."""
    files: list[Path] = []
    for top, folders, names in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith(".")) if recursive else []
        for name in names:
            path = Path(top) / name
            if not name.startswith(".") and path.is_file():
                files.append(path)
    return sorted(files, key=lambda path: path.relative_to(folder).parts)


def mirrored_path(source: Path, folders: Iterable[Path]) -> Path:
    """Where `source` lies under the first of `folders` that holds it; just its name if none does."""
    for folder in folders:
        if source.is_relative_to(folder):
            return source.relative_to(folder)
    return Path(source.name)


def output_name(source: Path, scale: int, output_format: str | None) -> str:
    """photo.png -> photo-x4.png; the input's extension unless a format is given (PNG for GIF, read only)."""
    from .image_io import IMAGE_SUFFIXES

    if output_format:
        suffix = f".{output_format}"
    else:
        suffix = source.suffix if source.suffix.lower() in IMAGE_SUFFIXES else ".png"
    return f"{source.stem}-x{scale}{suffix}"


# --- which share of them -----------------------------------------------------------------------

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Share `index` of `count` (0-based, like torchrun's RANK and most SLURM arrays)."""

    index: int
    count: int
    origin: str = "--shard"

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise SisrError(
                f"{self.origin}: shard {self.index} of {self.count} does not exist "
                f"(shards are numbered 0 to {max(self.count - 1, 0)})"
            )

    def holds(self, key: str) -> bool:
        """Whether the item named `key` belongs to this shard: the same answer in every process."""
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.count == self.index

    def select(self, items: Sequence[T], key: Callable[[T], str]) -> list[T]:
        return [item for item in items if self.holds(key(item))]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """`I/N`, 0-based: `0/4` to `3/4` are the four shares of a list."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None:
        raise SisrError(f"--shard {text}: expected INDEX/COUNT, 0-based, e.g. 0/4 to 3/4")
    return Shard(int(match[1]), int(match[2]), f"--shard {text}")


def shard_from_environment(environ: Mapping[str, str]) -> Shard | None:
    """The shard a launcher assigns: torchrun's RANK/WORLD_SIZE, else a SLURM array's task; None for neither.

    torchrun comes first: inside a SLURM job it is the launcher closer to the
    process. A SLURM array task's share is its place in the array
    ((SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP), so
    `--array=1-8` and `--array=0-7` both make shares 0 to 7 of 8.
    """
    if "RANK" in environ and "WORLD_SIZE" in environ:
        origin = f"RANK={environ['RANK']} WORLD_SIZE={environ['WORLD_SIZE']}"
        return Shard(_integer(environ["RANK"], origin), _integer(environ["WORLD_SIZE"], origin), origin)
    if "SLURM_ARRAY_TASK_ID" in environ and "SLURM_ARRAY_TASK_COUNT" in environ:
        origin = (
            f"SLURM_ARRAY_TASK_ID={environ['SLURM_ARRAY_TASK_ID']} "
            f"SLURM_ARRAY_TASK_COUNT={environ['SLURM_ARRAY_TASK_COUNT']}"
        )
        task = _integer(environ["SLURM_ARRAY_TASK_ID"], origin)
        first = _integer(environ.get("SLURM_ARRAY_TASK_MIN", "0"), origin)
        step = max(_integer(environ.get("SLURM_ARRAY_TASK_STEP", "1"), origin), 1)
        return Shard((task - first) // step, _integer(environ["SLURM_ARRAY_TASK_COUNT"], origin), origin)
    return None


def resolve_shard(text: str | None, environ: Mapping[str, str]) -> Shard | None:
    """--shard if given, else what the launcher's variables say; None (all of the list) for neither."""
    if text is not None:
        return parse_shard(text)
    return shard_from_environment(environ)


def _integer(text: str, origin: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SisrError(f"{origin}: {text!r} is not a whole number") from None


# --- a record of each input --------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestRecord:
    """One line of a manifest: what became of one input."""

    source: str
    output: str
    status: str  # done | skipped | failed
    seconds: float
    input_bytes: int | None
    output_bytes: int | None
    error: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def record_for(job: Job, status: str, seconds: float, error: str | None = None) -> ManifestRecord:
    """The manifest line for `job`, with the sizes of its files as they are now."""
    return ManifestRecord(
        source=str(job.source),
        output=str(job.target),
        status=status,
        seconds=round(seconds, 3),
        input_bytes=_size(job.source),
        output_bytes=_size(job.target) if status != "failed" else None,
        error=error,
    )


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


class Manifest:
    """A JSON-lines file that records are appended to as work completes.

    Each record is one `write` to a file opened for appending, so a process
    killed at any moment leaves whole lines, and several processes can share
    one manifest without interleaving their lines.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)

    def append(self, record: ManifestRecord) -> None:
        os.write(self._fd, (record.to_json() + "\n").encode("utf-8"))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_manifest(path: str | os.PathLike) -> list[ManifestRecord]:
    """The records of a manifest in order; an unfinished last line (its writer killed) is left out."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SisrError(f"{path}: cannot read the manifest ({error.strerror or error})") from None
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            fields: dict[str, Any] = json.loads(line)
            record = ManifestRecord(**fields)
        except (ValueError, TypeError):
            if number == len(lines):  # no newline after it: cut off by a killed writer
                continue
            raise SisrError(f"{path}, line {number}: not a manifest record of sisr upscale") from None
        if record.status not in STATUSES:
            raise SisrError(f"{path}, line {number}: unknown status {record.status!r}")
        records.append(record)
    return records


def failed_jobs(records: Iterable[ManifestRecord]) -> list[Job]:
    """The inputs whose latest record is a failure (a later retry that succeeded clears one), in first-seen order."""
    latest: dict[str, ManifestRecord] = {}
    for record in records:
        latest.pop(record.source, None)  # re-inserted: its place is where it was last recorded
        latest[record.source] = record
    return [Job(Path(r.source), Path(r.output)) for r in latest.values() if r.status == "failed"]


# --- how far it is -----------------------------------------------------------------------------


class ProgressLines:
    """`120/1000 images, 3.2 images/s, 4m35s left`: a line at most every `interval` seconds.

    For output that is not a terminal (a log file, a scheduler's capture),
    where a progress bar would be a stream of carriage returns.
    """

    def __init__(
        self,
        total: int,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        unit: str = "images",
    ) -> None:
        self.total = total
        self.interval = interval
        self.unit = unit
        self._clock = clock
        self._start = clock()
        self._last = self._start

    def update(self, done: int) -> str | None:
        """The line to show after `done` images, or None when the last one was shown too recently.

        The batch's own last line says when it is over, so a short batch shows none of these.
        """
        now = self._clock()
        if now - self._last < self.interval:
            return None
        self._last = now
        return self.line(done, now - self._start)

    def line(self, done: int, elapsed: float) -> str:
        rate = done / elapsed if elapsed > 0 else 0.0
        left = f"{format_duration((self.total - done) / rate)} left" if rate > 0 else "time left unknown"
        return f"{done}/{self.total} {self.unit}, {rate:.3g} {self.unit}/s, {left}"


def format_duration(seconds: float) -> str:
    """59s, 4m35s, 2h05m."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
