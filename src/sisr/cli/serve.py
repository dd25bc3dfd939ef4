"""`sisr serve`: the local web page and HTTP API (FastAPI, served by uvicorn)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from ..errors import SisrError

log = logging.getLogger("sisr")


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..serve.settings import (
        DEFAULT_MAX_JOBS,
        DEFAULT_MAX_PIXELS,
        DEFAULT_MAX_RESULTS,
        DEFAULT_MAX_UPLOAD_BYTES,
        DEFAULT_RESULT_TTL_S,
        DEFAULT_SYNC_MAX_PIXELS,
        MAX_TILE,
        MEGABYTE,
        MIN_TILE,
    )

    parser = subparsers.add_parser(
        "serve",
        help="a local web page and HTTP API for upscaling (pip install 'sisr[serve]')",
        description="Serve a web page (drop images, pick a model, compare before and after) and the HTTP API it "
        "uses (/api/v1/..., schema at /api/v1/openapi.json) on the engine of `sisr upscale`. One network run "
        "at a time; the other images wait in a bounded queue. By default only this machine can connect.",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only); any other needs --token or --no-auth",
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    parser.add_argument(
        "--models-dir",
        metavar="FOLDER",
        help="also offer the weight files in FOLDER (*.safetensors, *.pth, *.pt, *.h5), by file name",
    )
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        help="require `Authorization: Bearer TOKEN` on the API (the page takes it from its address, #token=TOKEN)",
    )
    parser.add_argument(
        "--no-auth",
        action="store_true",
        help="allow a non-loopback --host without a token: anyone who can reach it may use it",
    )
    limits = parser.add_argument_group(
        "limits",
        f"What one request can make the server hold. Tiles a client asks for are {MIN_TILE} to {MAX_TILE} pixels.",
    )
    limits.add_argument(
        "--max-upload-mb",
        type=float,
        default=DEFAULT_MAX_UPLOAD_BYTES / MEGABYTE,
        metavar="MB",
        help=f"largest upload, in MiB (default {DEFAULT_MAX_UPLOAD_BYTES // MEGABYTE}); larger is refused "
        "(413) as it streams in",
    )
    limits.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"most pixels (width x height) of an input image (default {DEFAULT_MAX_PIXELS}, 4096 x 4096); "
        "checked from the file's header before decoding, in every format and bit depth (413)",
    )
    limits.add_argument(
        "--sync-max-pixels",
        type=int,
        default=DEFAULT_SYNC_MAX_PIXELS,
        metavar="N",
        help=f"most input pixels for the synchronous POST /api/v1/upscale (default {DEFAULT_SYNC_MAX_PIXELS}, "
        "1024 x 1024); larger images go through /api/v1/jobs",
    )
    limits.add_argument(
        "--max-jobs",
        type=int,
        default=DEFAULT_MAX_JOBS,
        metavar="N",
        help=f"jobs waiting or running at once (default {DEFAULT_MAX_JOBS}); more are refused with 429",
    )
    limits.add_argument(
        "--result-ttl",
        type=float,
        default=DEFAULT_RESULT_TTL_S,
        metavar="SECONDS",
        help=f"keep each result this long after it is done, then delete it (default {DEFAULT_RESULT_TTL_S:g}; "
        f"at most {DEFAULT_MAX_RESULTS} results are kept, the oldest deleted first)",
    )
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto (CUDA if present, default), cpu or cuda"
    )
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        default="auto",
        help="number format, as for `sisr upscale` (default auto: fp16 on CUDA, bf16 on CPUs with bf16 "
        "instructions, else fp32)",
    )
    parser.set_defaults(func=run)


def settings_from(args: argparse.Namespace) -> Any:
    """The options as ServeSettings, checked (a non-loopback --host without --token or --no-auth is refused)."""
    from pathlib import Path

    from ..serve.settings import MEGABYTE, ServeSettings, check_settings

    if args.max_upload_mb <= 0:
        raise SisrError(f"--max-upload-mb {args.max_upload_mb:g}: must be more than 0")
    return check_settings(
        ServeSettings(
            host=args.host,
            port=args.port,
            models_dir=None if args.models_dir is None else Path(args.models_dir),
            token=args.token,
            no_auth=args.no_auth,
            max_upload_bytes=int(args.max_upload_mb * MEGABYTE),
            max_pixels=args.max_pixels,
            sync_max_pixels=args.sync_max_pixels,
            max_jobs=args.max_jobs,
            result_ttl_s=args.result_ttl,
            device=args.device,
            precision=args.precision,
        )
    )


def address(host: str, port: int, token: str | None) -> str:
    """The page's address as a browser takes it; with the token in the fragment, which never reaches the server's logs."""
    shown = f"[{host}]" if ":" in host else (host or "0.0.0.0")
    return f"http://{shown}:{port}/" + (f"#token={token}" if token else "")


def run(args: argparse.Namespace) -> int:
    import socket

    settings = settings_from(args)  # refused before anything starts
    try:
        import uvicorn

        from ..serve import create_app
    except ImportError as missing:
        raise SisrError(
            f"sisr serve needs FastAPI, uvicorn and python-multipart ({missing.name} is missing): "
            'pip install "sisr[serve]" (in a checkout: pip install -e ".[serve]")'
        ) from None
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((settings.host, settings.port))
    except OSError as error:
        listener.close()
        raise SisrError(
            f"--host {settings.host} --port {settings.port}: cannot listen there ({error.strerror})"
        ) from None
    port = listener.getsockname()[1]
    app = create_app(settings)
    quiet = not log.isEnabledFor(logging.INFO)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning" if quiet else "info", access_log=not quiet))
    print(f"sisr serve: {address(settings.host, port, settings.token)} (Ctrl-C stops it)", flush=True)
    with listener:
        server.run(sockets=[listener])
    return 0
