"""The JSON the API answers, as pydantic models: they document the routes in the OpenAPI schema."""

from __future__ import annotations

from pydantic import BaseModel, Field

from .formats import OUTPUT_FORMATS
from .settings import MAX_TILE, MIN_TILE


class ErrorAnswer(BaseModel):
    error: str = Field(description="one sentence: what was wrong, naming the option or file")
    status: int = Field(description="the HTTP status, repeated")


class Health(BaseModel):
    status: str = Field(description="ok; loading while the default model loads (the upload routes answer 503); error")
    version: str
    error: str | None = Field(None, description="why the default model did not load, when status is error")


class ModelAnswer(BaseModel):
    name: str = Field(description="what the other routes take as `model`")
    scale: int
    scales: list[int] = Field(description="the scales it can run at (several for bicubic only)")
    parameters: int
    source: str = Field(description="bundled, the zoo's source (official, krasser), file (--models-dir) or bicubic")
    licence: str
    arch: str
    denoise: bool
    default: bool


class Limits(BaseModel):
    max_upload_bytes: int
    max_pixels: int = Field(description="the most pixels (width x height) of an input image")
    sync_max_pixels: int = Field(description="the most input pixels POST /api/v1/upscale takes; more: use jobs")
    max_jobs: int = Field(description="jobs waiting or running at once; more is 429")
    result_ttl_s: float = Field(description="seconds a finished job's result is kept")
    min_tile: int = MIN_TILE
    max_tile: int = MAX_TILE
    formats: list[str] = Field(default_factory=lambda: list(OUTPUT_FORMATS))


class Models(BaseModel):
    models: list[ModelAnswer]
    limits: Limits


class JobAnswer(BaseModel):
    id: str
    state: str = Field(description="queued, running, done, failed or cancelled")
    progress: float = Field(description="0..1: tiles done / tiles in all (1 when done)")
    tiles_done: int
    tiles_total: int = Field(description="0 until the first tiles are through")
    model: str
    scale: int
    format: str
    input_size: list[int] = Field(description="[width, height]")
    output_size: list[int] | None = Field(None, description="[width, height] once done")
    seconds: float | None = Field(None, description="the run's time: read, network, encode")
    error: str | None = None
    filename: str = Field(description="the client's file name, cleaned: for display only")
    result_url: str | None = None


# Every error route's answer, for the schema.
ERRORS = {
    status: {"model": ErrorAnswer, "description": description}
    for status, description in (
        (400, "not an image sisr reads"),
        (401, "missing or wrong bearer token"),
        (404, "no such job (or it expired)"),
        (409, "the job is not done"),
        (413, "upload or image too large"),
        (422, "a bad option"),
        (429, "the queue is full: retry later"),
        (503, "the default model is still loading"),
    )
}
