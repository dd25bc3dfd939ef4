"""`sisr serve`: a local web page and an HTTP API on the engine of `sisr upscale`.

`create_app(ServeSettings(...))` gives the FastAPI application (install the
extra: `pip install "sisr[serve]"`); `sisr serve` runs it with uvicorn.
The modules, one concern each: `settings` (limits and address), `catalogue`
(the models on offer), `jobs` (the bounded job table and its expiry),
`worker` (the one thread per device that runs them), `uploads` (bodies,
files and names from clients), `options` (a request's options), `security`
(token and origin), `app` (the routes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .settings import ServeSettings, check_settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .worker import Loader

__all__ = ["ServeSettings", "check_settings", "create_app"]


def create_app(settings: ServeSettings, *, loader: Loader | None = None) -> FastAPI:
    """The FastAPI application (see `sisr.serve.app.create_app`); FastAPI is imported here, not with sisr.serve."""
    from .app import create_app as create

    return create(settings, loader=loader)
