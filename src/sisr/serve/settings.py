"""What a `sisr serve` server allows: its address, its limits and who may call it.

The defaults bound what one stranger's request can make the server hold:
an upload of `max_upload_bytes`, an image of `max_pixels` (checked from the
file's header before a pixel is decoded), `max_jobs` images waiting or
running, results on disk for `result_ttl_s`. They suit one person's
machine; a shared server states its own with the command's options.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from ..errors import SisrError

MEGABYTE = 1024 * 1024

# A 4096 x 4096 input: a 16-megapixel photo. Enlarged x4 it is 268 megapixels, 805 MB of RGB in memory.
DEFAULT_MAX_PIXELS = 4096 * 4096
# The synchronous route answers in the same HTTP request: small images only (seconds, not minutes, on a CPU).
DEFAULT_SYNC_MAX_PIXELS = 1024 * 1024
DEFAULT_MAX_UPLOAD_BYTES = 50 * MEGABYTE
DEFAULT_MAX_JOBS = 16
DEFAULT_RESULT_TTL_S = 3600.0
# Finished jobs kept at once, whatever their age: without it a steady client could fill the disk within the TTL.
DEFAULT_MAX_RESULTS = 256

# Uploads of at most this many pixels wait in memory as decoded (at most 8 MB each, 16-bit RGBA), saving the
# worker a second decode; larger ones wait as their file and are decoded again when their turn comes.
KEEP_DECODED_PIXELS = 1024 * 1024

# Tile sizes a client may ask for, in LR pixels. The upper bound keeps one network call at most the
# 1-megapixel window `sisr.upscale` runs whole anyway; the lower one refuses runs of millions of tiny tiles.
MIN_TILE = 16
MAX_TILE = 1024


@dataclass(frozen=True)
class ServeSettings:
    """Everything `create_app` needs; `sisr serve`'s options fill it."""

    host: str = "127.0.0.1"
    port: int = 8000
    models_dir: Path | None = None
    token: str | None = None
    no_auth: bool = False
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    sync_max_pixels: int = DEFAULT_SYNC_MAX_PIXELS
    max_jobs: int = DEFAULT_MAX_JOBS
    result_ttl_s: float = DEFAULT_RESULT_TTL_S
    max_results: int = DEFAULT_MAX_RESULTS
    device: str = "auto"
    precision: str = "auto"
    default_model: str = "default-x4"

    @property
    def auth_required(self) -> bool:
        return bool(self.token)

    @property
    def loopback_only(self) -> bool:
        """Bound to this machine alone, with no token: then only requests naming a loopback host are answered."""
        return is_loopback(self.host) and not self.token


def is_loopback(host: str) -> bool:
    """Whether `host` reaches this machine only: `localhost`, 127.0.0.0/8 or ::1 (not "" or 0.0.0.0: everywhere)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def check_settings(settings: ServeSettings) -> ServeSettings:
    """Refuse a server that would be open to the network by accident, or limits that make no sense."""
    if settings.token is not None and not settings.token.strip():
        raise SisrError("--token: give a non-empty token (clients send it as `Authorization: Bearer TOKEN`)")
    if settings.token and settings.no_auth:
        raise SisrError("--token and --no-auth contradict each other: choose one")
    if not is_loopback(settings.host) and not settings.token and not settings.no_auth:
        raise SisrError(
            f"--host {settings.host or '(all addresses)'}: other machines could reach the server; give --token TOKEN "
            "(clients then send `Authorization: Bearer TOKEN`) or, on a network you trust, --no-auth"
        )
    if not 0 <= settings.port <= 65535:
        raise SisrError(f"--port {settings.port}: expected 0 to 65535 (0 = any free port)")
    for option, value in (
        ("--max-upload-mb", settings.max_upload_bytes),
        ("--max-pixels", settings.max_pixels),
        ("--sync-max-pixels", settings.sync_max_pixels),
        ("--max-jobs", settings.max_jobs),
        ("max_results", settings.max_results),
    ):
        if value < 1:
            raise SisrError(f"{option} {value}: must be at least 1")
    if settings.result_ttl_s <= 0:
        raise SisrError(f"--result-ttl {settings.result_ttl_s:g}: must be more than 0 seconds")
    if settings.models_dir is not None and not Path(settings.models_dir).is_dir():
        raise SisrError(f"--models-dir {settings.models_dir}: no such folder")
    return settings
