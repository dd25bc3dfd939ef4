"""The FastAPI application: the page, the API routes, and the start-up and shut-down of the worker.

Routes take what they need from `app.state.server` (the settings, catalogue,
job store and worker), made when the application starts: `create_app` itself
starts nothing, so an application can be made and inspected without a model
being loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
import urllib.parse
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from .. import __version__
from .catalogue import Catalogue
from .formats import OUTPUT_FORMATS, input_format
from .http_errors import ApiError, install_handlers
from .jobs import DONE, Job, JobStore, QueueFull
from .options import OPTIONS, check_fits, parse_request
from .schema import ERRORS, Health, JobAnswer, Models
from .security import AccessGuard
from .settings import KEEP_DECODED_PIXELS, ServeSettings, check_settings
from .uploads import FORM_ALLOWANCE, BodyLimit, display_name, inspect_upload, receive_upload, remove_folder
from .worker import BROKEN, LOADING, Loader, Worker

STATIC = Path(__file__).parent / "static"
RETRY_AFTER_S = "1"


@dataclass
class Server:
    """What the routes share while the application runs."""

    settings: ServeSettings
    catalogue: Catalogue
    store: JobStore
    worker: Worker

    def check_ready(self) -> None:
        if self.worker.status == LOADING:
            raise ApiError(503, "the model is still loading; retry in a moment", {"Retry-After": "2"})
        if self.worker.status == BROKEN:
            raise ApiError(503, f"the default model did not load: {self.worker.load_error}")

    def job(self, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job is None:
            raise ApiError(
                404, f"job {job_id[:40]!r}: no such job (finished jobs are kept for {self.settings.result_ttl_s:g} s)"
            )
        return job


def create_app(settings: ServeSettings, *, loader: Loader | None = None) -> FastAPI:
    """The application for `settings`; `loader(entry, scale) -> SRModel` replaces how models load (tests)."""
    check_settings(settings)
    catalogue = Catalogue(settings.models_dir, settings.default_model)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from ..files import temporary_folder

        with temporary_folder(tempfile.gettempdir(), "sisr-serve") as root:
            store = JobStore(
                root,
                max_jobs=settings.max_jobs,
                result_ttl_s=settings.result_ttl_s,
                max_results=settings.max_results,
            )
            worker = Worker(store, catalogue, settings, loader)
            stop_sweeping = threading.Event()
            sweeper = threading.Thread(
                target=store.sweep_until,
                args=(stop_sweeping, min(60.0, max(0.5, settings.result_ttl_s / 4))),
                name="sisr-serve-sweeper",
                daemon=True,
            )
            app.state.server = Server(settings, catalogue, store, worker)
            worker.start()
            sweeper.start()
            try:
                yield
            finally:
                store.close()
                worker.stop()
                stop_sweeping.set()
                await run_in_threadpool(worker.join, 60)
                sweeper.join()

    app = FastAPI(
        title="sisr",
        version=__version__,
        description="Enlarge images with super-resolution networks (the engine of `sisr upscale`).",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # FastAPI's docs pages load their scripts from a CDN; the server fetches nothing
        redoc_url=None,
        lifespan=lifespan,
    )
    install_handlers(app)
    app.add_middleware(
        BodyLimit, limit=settings.max_upload_bytes + FORM_ALLOWANCE, upload_limit=settings.max_upload_bytes
    )
    app.add_middleware(AccessGuard, settings=settings)  # added last: the outermost, before any body is read
    _add_page(app)
    _add_api(app)
    return app


def _server(request: Request) -> Server:
    server: Server = request.app.state.server
    return server


def _add_page(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")


UPLOAD_PARAMETERS = [
    {
        "name": "model",
        "in": "query",
        "schema": {"type": "string"},
        "description": "a name from /api/v1/models (default: default-x4, or default-xS for scale S)",
    },
    {"name": "scale", "in": "query", "schema": {"type": "integer"}, "description": "must be one the model runs at"},
    {
        "name": "tile",
        "in": "query",
        "schema": {"type": "integer"},
        "description": "tile size in input pixels (the result is the same; progress moves tile by tile)",
    },
    {
        "name": "format",
        "in": "query",
        "schema": {"type": "string", "enum": list(OUTPUT_FORMATS)},
        "description": "the answer's format (default: the input's; PNG for BMP, GIF, PPM)",
    },
    {
        "name": "quality",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 100},
        "description": "for jpeg and webp (default 95)",
    },
    {
        "name": "filename",
        "in": "query",
        "schema": {"type": "string"},
        "description": "the image's name with a raw body (display and the download's name only)",
    },
]
UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image"],
                "properties": {
                    "image": {"type": "string", "format": "binary"},
                    **{name: {"type": "string"} for name in OPTIONS if name != "filename"},
                },
            }
        },
        "image/*": {"schema": {"type": "string", "format": "binary"}},
    },
}
UPLOAD_DOC: dict[str, Any] = {"parameters": UPLOAD_PARAMETERS, "requestBody": UPLOAD_BODY}
IMAGE_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {"content": {fmt.media_type: {} for fmt in OUTPUT_FORMATS.values()}, "description": "the enlarged image"}
}


async def accept(request: Request, sync: bool) -> Job:
    """Receive, check and queue one image: the checks that need no network answer before it is queued."""
    server = _server(request)
    settings = server.settings
    server.check_ready()
    try:
        server.store.check_room()
    except QueueFull:
        raise _queue_full(settings) from None
    job_id, folder = server.store.new_folder()
    try:
        upload, client_name, fields = await receive_upload(request, folder, settings.max_upload_bytes)
        shown = display_name(client_name or fields.get("filename"))
        options = await run_in_threadpool(parse_request, fields, server.catalogue, input_format(upload))
        image = await run_in_threadpool(inspect_upload, upload, shown, settings.max_pixels)
        if sync and image.width * image.height > settings.sync_max_pixels:
            raise ApiError(
                413,
                f"{shown}: {image.width}x{image.height} pixels is over the {settings.sync_max_pixels:,} pixels "
                "POST /api/v1/upscale takes; send it to POST /api/v1/jobs instead",
            )
        check_fits(options, image, shown)
        kept = image.pixels if image.width * image.height <= KEEP_DECODED_PIXELS else None
        job = Job(job_id, options, shown, folder, upload, (image.width, image.height), sync=sync, decoded=kept)
        server.store.submit(job)
    except QueueFull:
        remove_folder(folder)
        raise _queue_full(settings) from None
    except BaseException:
        remove_folder(folder)
        raise
    return job


def _queue_full(settings: ServeSettings) -> ApiError:
    return ApiError(
        429,
        f"the queue is full ({settings.max_jobs} jobs waiting or running); retry in a moment",
        {"Retry-After": RETRY_AFTER_S},
    )


def _result_headers(job: Job, disposition: str) -> dict[str, str]:
    name = job.result_name
    fallback = name.encode("ascii", "replace").decode().replace("?", "_")
    width, height = job.input_size
    headers = {
        "Content-Disposition": f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{urllib.parse.quote(name)}",
        "Cache-Control": "no-store",
        "X-Sisr-Model": job.request.model.name,
        "X-Sisr-Input-Size": f"{width}x{height}",
    }
    if job.output_size is not None:
        headers["X-Sisr-Output-Size"] = f"{job.output_size[0]}x{job.output_size[1]}"
    if job.seconds is not None:
        headers["X-Sisr-Seconds"] = f"{job.seconds:.3f}"
    return headers


def _result_file(job: Job) -> FileResponse:
    if job.state != DONE or job.result is None:
        what = f"is {job.state}" + (f": {job.error}" if job.error else "")
        raise ApiError(409, f"job {job.id}: no result, the job {what}")
    return FileResponse(
        job.result,
        media_type=OUTPUT_FORMATS[job.request.output_format].media_type,
        headers=_result_headers(job, "attachment"),
    )


def _add_api(app: FastAPI) -> None:
    @app.get("/api/v1/health", response_model=Health, tags=["server"])
    async def health(request: Request) -> dict[str, Any]:
        """Whether the server can take images: `loading` until the default model is ready."""
        worker = _server(request).worker
        return {"status": worker.status, "version": __version__, "error": worker.load_error}

    @app.get("/api/v1/models", response_model=Models, tags=["server"], responses={401: ERRORS[401]})
    async def models(request: Request) -> dict[str, Any]:
        """The models this server runs, and its limits."""
        server = _server(request)
        settings = server.settings
        entries = await run_in_threadpool(server.catalogue.entries)
        return {
            "models": [entry.as_json() for entry in entries],
            "limits": {
                "max_upload_bytes": settings.max_upload_bytes,
                "max_pixels": settings.max_pixels,
                "sync_max_pixels": settings.sync_max_pixels,
                "max_jobs": settings.max_jobs,
                "result_ttl_s": settings.result_ttl_s,
            },
        }

    @app.post(
        "/api/v1/upscale",
        tags=["images"],
        openapi_extra=UPLOAD_DOC,
        response_class=Response,
        responses={**IMAGE_ANSWER, **{s: ERRORS[s] for s in (400, 401, 413, 422, 429, 503)}},
    )
    async def upscale_now(request: Request) -> Response:
        """Enlarge a small image and answer with it (larger ones: POST /api/v1/jobs)."""
        server = _server(request)
        job = await accept(request, sync=True)
        state = await asyncio.wrap_future(job.outcome)
        if state != DONE:
            server.store.discard(job)
            raise ApiError(500 if state != "cancelled" else 409, job.error or f"the job was {state}")
        response = _result_file(job)
        response.background = BackgroundTask(server.store.discard, job)
        response.headers["Content-Disposition"] = response.headers["Content-Disposition"].replace(
            "attachment", "inline", 1
        )
        return response

    @app.post(
        "/api/v1/jobs",
        status_code=202,
        response_model=JobAnswer,
        tags=["jobs"],
        openapi_extra=UPLOAD_DOC,
        responses={s: ERRORS[s] for s in (400, 401, 413, 422, 429, 503)},
    )
    async def submit(request: Request) -> dict[str, Any]:
        """Queue an image; poll GET /api/v1/jobs/{id} for its progress."""
        return (await accept(request, sync=False)).as_json()

    @app.get("/api/v1/jobs/{job_id}", response_model=JobAnswer, tags=["jobs"], responses={404: ERRORS[404]})
    async def job_state(request: Request, job_id: str) -> dict[str, Any]:
        """A job's state and progress."""
        return _server(request).job(job_id).as_json()

    @app.get(
        "/api/v1/jobs/{job_id}/result",
        tags=["jobs"],
        response_class=Response,
        responses={**IMAGE_ANSWER, 404: ERRORS[404], 409: ERRORS[409]},
    )
    async def job_result(request: Request, job_id: str) -> Response:
        """The enlarged image, as an attachment named after the upload (photo.jpg -> photo-x4.jpg)."""
        return _result_file(_server(request).job(job_id))

    @app.get(
        "/api/v1/jobs/{job_id}/input",
        tags=["jobs"],
        response_class=Response,
        responses={200: {"content": {"image/png": {}}, "description": "the input as decoded"}, 404: ERRORS[404]},
    )
    async def job_input(request: Request, job_id: str) -> Response:
        """The input as the network saw it (upright, decoded) as PNG: the page's "before"."""
        job = _server(request).job(job_id)
        try:
            path = await run_in_threadpool(_input_png, job)
        except OSError:  # deleted meanwhile
            raise ApiError(404, f"job {job_id[:40]!r}: no such job") from None
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.delete("/api/v1/jobs/{job_id}", response_model=JobAnswer, tags=["jobs"], responses={404: ERRORS[404]})
    async def cancel(request: Request, job_id: str) -> dict[str, Any]:
        """Cancel a waiting or running job (it stops at its next tile), or delete a finished one and its files."""
        job = _server(request).store.cancel(job_id)
        if job is None:
            raise ApiError(404, f"job {job_id[:40]!r}: no such job")
        return job.as_json()

    @app.get(
        "/api/v1/results.zip",
        tags=["jobs"],
        response_class=Response,
        responses={200: {"content": {"application/zip": {}}}, 404: ERRORS[404], 409: ERRORS[409]},
    )
    async def results_zip(request: Request, ids: str = "") -> Response:
        """The finished results of the jobs `ids` (comma-separated) in one zip; jobs not done are left out."""
        server = _server(request)
        wanted = [job_id for job_id in dict.fromkeys(ids.split(",")) if job_id.strip()]
        if not wanted:
            raise ApiError(422, "ids: give the job ids, comma-separated")
        jobs = [server.job(job_id.strip()) for job_id in wanted]
        done = [job for job in jobs if job.state == DONE and job.result is not None]
        if not done:
            raise ApiError(409, "none of these jobs is done")
        path = await run_in_threadpool(_zip, done, server.store.root)
        return FileResponse(
            path,
            media_type="application/zip",
            headers={"Content-Disposition": 'attachment; filename="sisr-results.zip"', "Cache-Control": "no-store"},
            background=BackgroundTask(path.unlink, missing_ok=True),
        )


def _input_png(job: Job) -> Path:
    from ..image_io import read_image, write_image

    target = job.folder / "input.png"
    if not target.is_file():
        write_image(target, read_image(job.upload, max_pixels=0), overwrite=True)  # checked when it was accepted
    return target


def _zip(jobs: list[Job], root: Path) -> Path:
    """The results in a zip (stored: images are compressed already) in the server's folder, named uniquely."""
    handle, name = tempfile.mkstemp(prefix="results-", suffix=".zip", dir=root)
    used: set[str] = set()
    with open(handle, "wb") as out, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for job in jobs:
            if job.result is None:
                continue
            entry = job.result_name
            stem, dot, suffix = entry.rpartition(".")
            number = 1
            while entry in used:
                number += 1
                entry = f"{stem} ({number}){dot}{suffix}"
            used.add(entry)
            try:
                archive.write(job.result, entry)
            except OSError:  # the job expired meanwhile
                continue
    return Path(name)
