"""The worker: one thread per device that runs the jobs one at a time, as `sisr upscale` would.

One network run at a time keeps the device's memory to one image's tiles and
gives each run all the cores; the other jobs wait in the store's queue. A run
reads the upload with `read_image` (the same checks as the CLI), enlarges it
with `sisr.upscale` (its `on_tile` reports progress and, by raising, stops a
cancelled job at the next tile) and encodes with `write_image` with the
input's colour profile: the result is the file `sisr upscale` would write.

The prepared networks are kept (the default, and the last few others) so a
model is loaded once, not once per image.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import SisrError
from .catalogue import Catalogue, ModelEntry, load_entry
from .formats import OUTPUT_FORMATS
from .jobs import CANCELLED, DONE, FAILED, Job, JobStore
from .settings import ServeSettings

if TYPE_CHECKING:
    from ..inference import PreparedModel
    from ..model import SRModel

log = logging.getLogger("sisr")

# Prepared networks kept besides the default: switching between two models on the page does not reload them.
KEPT_MODELS = 2

Loader = Callable[[ModelEntry, int], "SRModel"]

LOADING = "loading"
READY = "ok"
BROKEN = "error"


class Cancelled(Exception):
    """Raised from `on_tile` to stop a cancelled job's run."""


class Worker(threading.Thread):
    """Loads the default model, then takes jobs from the store until stopped."""

    def __init__(
        self, store: JobStore, catalogue: Catalogue, settings: ServeSettings, loader: Loader | None = None
    ) -> None:
        super().__init__(name="sisr-serve-worker", daemon=True)
        self.store = store
        self.catalogue = catalogue
        self.settings = settings
        self.loader = loader or load_entry
        self.status = LOADING
        self.load_error: str | None = None
        self._stopping = threading.Event()
        self._models: collections.OrderedDict[tuple[str, int, int], PreparedModel] = collections.OrderedDict()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        self._load_default()
        while not self._stopping.is_set():
            job = self.store.take(timeout=0.5)
            if job is not None:
                self._run(job)

    def _load_default(self) -> None:
        try:
            entry = self.catalogue.find(self.settings.default_model)
            if entry is None:
                raise SisrError(f"default model {self.settings.default_model!r}: not found")
            self._model(entry, entry.scale)
            self.status = READY
            log.info("sisr serve: %s loaded", self.settings.default_model)
        except Exception as error:  # the server still answers, and says why it cannot upscale
            self.load_error = str(error) if isinstance(error, SisrError) else f"{type(error).__name__}: {error}"
            self.status = BROKEN
            log.error("sisr serve: the default model did not load: %s", self.load_error)

    def _model(self, entry: ModelEntry, scale: int) -> PreparedModel:
        # A --models-dir file replaced under the same name is loaded afresh.
        key = (entry.name, scale, entry.path.stat().st_mtime_ns if entry.path is not None else 0)
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        prepared = self.loader(entry, scale).prepare(self.settings.precision, self.settings.device)
        self._models[key] = prepared
        others = [name for name in self._models if name[0] != self.settings.default_model]
        for old in others[: max(0, len(others) - KEPT_MODELS)]:
            del self._models[old]
        return prepared

    def _run(self, job: Job) -> None:
        start = time.perf_counter()
        try:
            width, height = self._upscale(job)
        except Cancelled:
            self.store.finish(job, CANCELLED, seconds=time.perf_counter() - start)
        except Exception as error:
            self.store.finish(job, FAILED, error=job.public(_describe(error, job)), seconds=time.perf_counter() - start)
        else:
            self.store.finish(
                job,
                DONE,
                result=job.folder / f"result{OUTPUT_FORMATS[job.request.output_format].suffix}",
                output_size=(width, height),
                seconds=time.perf_counter() - start,
            )

    def _upscale(self, job: Job) -> tuple[int, int]:
        """Read, enlarge and encode the job's image; the output size (width, height)."""
        from ..image_io import read_icc_profile, read_image, write_image
        from ..inference import upscale

        request = job.request
        model = self._model(request.model, request.scale)

        def on_tile(done: int, total: int) -> None:
            self.store.progress(job, done, total)
            if job.cancel.is_set():
                raise Cancelled

        on_tile(0, 0)
        image, job.decoded = job.decoded, None
        if image is None:
            image = read_image(job.upload, max_pixels=self.settings.max_pixels)
        result = upscale(model, image, tile=request.tile, name=job.filename, on_tile=on_tile)
        del image
        on_tile(job.tiles_done, job.tiles_total)
        target = job.folder / f"result{OUTPUT_FORMATS[request.output_format].suffix}"
        write_image(target, result, overwrite=True, quality=request.quality, icc_profile=read_icc_profile(job.upload))
        return result.shape[1], result.shape[0]


def _describe(error: Exception, job: Job) -> str:
    """One sentence for the client: sisr's own message, or what ran out."""
    import torch

    if isinstance(error, SisrError):
        return str(error)
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        hint = "a smaller tile" if job.request.tile else "a tile of 256"
        return f"{job.filename}: out of memory; try {hint}"
    log.exception("%s failed", job.filename)
    return f"{job.filename}: failed ({type(error).__name__}: {error})"
