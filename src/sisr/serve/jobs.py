"""Jobs: what a client asked for, where it stands, and the bounded table that holds them until they expire.

Every image a client sends becomes a `Job` in the `JobStore`, the synchronous
route's too, so one network run at a time holds for both. The store bounds
the jobs waiting or running (`max_jobs`: more is a full queue, HTTP 429) and
the finished ones kept (`max_results`, oldest dropped first); a finished job
and its files are deleted `result_ttl_s` after it finished. Each job's files
live in a folder of its own, named by the server (a random id), so nothing a
client sends becomes a path.
"""

from __future__ import annotations

import collections
import concurrent.futures
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .catalogue import ModelEntry
from .formats import OUTPUT_FORMATS

QUEUED = "queued"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)


class QueueFull(Exception):
    """`max_jobs` jobs are waiting or running already."""


@dataclass(frozen=True)
class JobRequest:
    """What the client asked for, checked: the model, its scale, the tile size and the answer's format."""

    model: ModelEntry
    scale: int
    tile: int | None
    output_format: str  # a key of OUTPUT_FORMATS
    quality: int


@dataclass
class Job:
    """One image through the network: its request, its state, and its files in `folder`."""

    id: str
    request: JobRequest
    filename: str  # the client's file name, cleaned, for display and the download's name only
    folder: Path
    upload: Path
    input_size: tuple[int, int]  # width, height
    sync: bool = False  # the synchronous route's: deleted once answered
    # The pixels as the upload was checked, kept for the worker when the image is small (no second decode);
    # None: the worker reads `upload` again, so waiting jobs hold files on disk, not large arrays in memory.
    decoded: Any = field(default=None, repr=False)
    state: str = QUEUED
    tiles_done: int = 0
    tiles_total: int = 0
    output_size: tuple[int, int] | None = None
    seconds: float | None = None
    error: str | None = None
    result: Path | None = None
    finished_at: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    # Resolved with the final state when the job finishes: the synchronous route awaits it.
    outcome: concurrent.futures.Future[str] = field(default_factory=concurrent.futures.Future)

    @property
    def result_name(self) -> str:
        """photo.jpg enlarged x4 as PNG: photo-x4.png (the stem cleaned when the job was made)."""
        stem = self.filename.rsplit(".", 1)[0] if "." in self.filename.lstrip(".") else self.filename
        suffix = OUTPUT_FORMATS[self.request.output_format].suffix
        return f"{stem or 'image'}-x{self.request.scale}{suffix}"

    def public(self, message: str) -> str:
        """A message with the server's own path of the upload replaced by the client's file name."""
        return message.replace(str(self.upload), self.filename)

    def as_json(self) -> dict[str, Any]:
        progress = 1.0 if self.state == DONE else (self.tiles_done / self.tiles_total if self.tiles_total else 0.0)
        return {
            "id": self.id,
            "state": self.state,
            "progress": progress,
            "tiles_done": self.tiles_done,
            "tiles_total": self.tiles_total,
            "model": self.request.model.name,
            "scale": self.request.scale,
            "format": self.request.output_format,
            "input_size": list(self.input_size),
            "output_size": None if self.output_size is None else list(self.output_size),
            "seconds": self.seconds,
            "error": self.error,
            "filename": self.filename,
            "result_url": f"/api/v1/jobs/{self.id}/result" if self.state == DONE else None,
        }


class JobStore:
    """The jobs by id, the queue of those waiting, and their expiry; safe to use from any thread."""

    def __init__(
        self,
        root: Path,
        *,
        max_jobs: int,
        result_ttl_s: float,
        max_results: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = Path(root)
        self.max_jobs = max_jobs
        self.result_ttl_s = result_ttl_s
        self.max_results = max_results
        self.clock = clock
        self._jobs: dict[str, Job] = {}
        self._waiting: collections.deque[Job] = collections.deque()
        self._changed = threading.Condition()
        self._closed = False

    # --- the client's side ---------------------------------------------------------------------

    def new_folder(self) -> tuple[str, Path]:
        """A fresh job id and its private folder, for the upload before the job is made."""
        job_id = secrets.token_hex(16)  # unguessable: with --no-auth the id is all that guards a result
        folder = self.root / job_id
        folder.mkdir(mode=0o700)
        return job_id, folder

    def check_room(self) -> None:
        """Refuse early, before an upload is read, when the queue is full (`submit` checks again)."""
        with self._changed:
            if self._unfinished() >= self.max_jobs:
                raise QueueFull

    def submit(self, job: Job) -> None:
        with self._changed:
            if self._closed or self._unfinished() >= self.max_jobs:
                raise QueueFull
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._changed.notify_all()

    def get(self, job_id: str) -> Job | None:
        self.sweep()
        with self._changed:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a waiting or running job (a running one stops at its next tile); delete a finished one."""
        with self._changed:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            if job.state == QUEUED:
                self._waiting.remove(job)
                self._finish(job, CANCELLED)
            elif job.state == RUNNING:
                job.cancel.set()  # the worker sees it at the next tile and finishes the job
                job.state = CANCELLED
            else:
                self._delete(job)
            return job

    def discard(self, job: Job) -> None:
        """Forget a finished job now (the synchronous route's, once answered)."""
        with self._changed:
            if job.state in FINISHED:
                self._delete(job)

    # --- the worker's side ---------------------------------------------------------------------

    def take(self, timeout: float | None = None) -> Job | None:
        """The next waiting job, now running; None after `timeout` seconds without one, or once closed."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._waiting or self._closed, timeout):
                return None
            if self._closed:
                return None
            job = self._waiting.popleft()
            job.state = RUNNING
            return job

    def progress(self, job: Job, done: int, total: int) -> None:
        with self._changed:
            job.tiles_done, job.tiles_total = done, total

    def finish(self, job: Job, state: str, **fields: Any) -> None:
        with self._changed:
            if job.cancel.is_set():
                state, fields = CANCELLED, {"seconds": fields.get("seconds")}
            for name, value in fields.items():
                setattr(job, name, value)
            self._finish(job, state)

    # --- expiry --------------------------------------------------------------------------------

    def sweep(self) -> int:
        """Delete the finished jobs older than the TTL; how many went."""
        now = self.clock()
        with self._changed:
            old = [
                job
                for job in self._jobs.values()
                if job.finished_at is not None and now - job.finished_at >= self.result_ttl_s
            ]
            for job in old:
                self._delete(job)
            return len(old)

    def sweep_until(self, stop: threading.Event, interval: float) -> None:
        """Sweep every `interval` seconds until `stop` is set (the body of the sweeper thread)."""
        while not stop.wait(interval):
            self.sweep()

    def close(self) -> None:
        """Cancel everything: waiting jobs finish as cancelled, a running one stops at its next tile."""
        with self._changed:
            self._closed = True
            for job in list(self._jobs.values()):
                if job.state == QUEUED:
                    self._finish(job, CANCELLED)
                elif job.state == RUNNING:
                    job.cancel.set()
            self._waiting.clear()
            self._changed.notify_all()

    def counts(self) -> dict[str, int]:
        with self._changed:
            states = collections.Counter(job.state for job in self._jobs.values())
            return {state: states.get(state, 0) for state in (QUEUED, RUNNING, *FINISHED)}

    # --- under the lock ------------------------------------------------------------------------

    def _unfinished(self) -> int:
        return len(self._waiting) + sum(1 for job in self._jobs.values() if job.state == RUNNING)

    def _finish(self, job: Job, state: str) -> None:
        job.state = state
        job.finished_at = self.clock()
        if state != DONE and job.result is not None:
            job.result.unlink(missing_ok=True)
            job.result = None
        if not job.outcome.done():
            job.outcome.set_result(state)
        finished = sorted(
            (other for other in self._jobs.values() if other.finished_at is not None and other is not job),
            key=lambda other: other.finished_at or 0.0,
        )
        for oldest in finished[: max(0, len(finished) + 1 - self.max_results)]:
            self._delete(oldest)
        self._changed.notify_all()

    def _delete(self, job: Job) -> None:
        self._jobs.pop(job.id, None)
        shutil.rmtree(job.folder, ignore_errors=True)
