"""Receiving an image: the body's size bounded while it streams in, then the file checked as `sisr upscale` checks it.

The upload is written to the job's private folder under a name the server
makes (`upload`), and `read_image` reads it there: every check it makes on
a stranger's file (the declared size against the pixel limit before any
pixel is decoded, in every format and bit depth; one frame; a readable
file) holds for the server too. The client's file name is kept for display
and for the download's name, cleaned, and never used as a path.
"""

from __future__ import annotations

import re
import shutil
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import SisrError
from .http_errors import ApiError, error_response

# Room for the multipart framing and the option fields around the image itself.
FORM_ALLOWANCE = 64 * 1024
UPLOAD_NAME = "upload"
MAX_NAME_LENGTH = 120
_CHUNK = 1024 * 1024

# read_image's message for an image over the pixel limit: "<path>: WxH pixels (N megapixels) is over the limit ..."
_OVER_LIMIT = re.compile(r": (\d+)x(\d+) pixels \([^)]*\) is over the limit")


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"the upload is over this server's limit of {limit:,} bytes (--max-upload-mb)")


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is answered 413 as soon as that is known.

    A declared Content-Length over the limit is refused before a byte is
    read; a chunked body is counted as it arrives and stopped at the limit,
    so no request makes the server hold (or spool to disk) more than that.
    """

    def __init__(self, app: Any, limit: int, upload_limit: int) -> None:
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            error = too_large(self.upload_limit)
            await error_response(error.status, error.message, {"Connection": "close"})(scope, receive, send)
            return
        received = 0

        async def counted() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise too_large(self.upload_limit)
            return message

        await self.app(scope, counted, send)


def display_name(raw: str | None) -> str:
    """A client's file name fit to show and to name a download: its last part, printable, short; never a path."""
    name = unicodedata.normalize("NFC", raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch if ch.isprintable() and ch not in '"<>:|?*;' else "_" for ch in name)
    name = name.strip().lstrip(".").strip()
    if len(name) > MAX_NAME_LENGTH:
        stem, dot, suffix = name.rpartition(".")
        name = (
            (stem[: MAX_NAME_LENGTH - len(suffix) - 1] + dot + suffix)
            if dot and len(suffix) <= 8
            else name[:MAX_NAME_LENGTH]
        )
    return name or "image"


def copy_upload(source: IO[bytes], target: Path, limit: int) -> int:
    """Copy an uploaded file into the job's folder, refusing it (413) past `limit` bytes; the bytes copied."""
    copied = 0
    with open(target, "xb") as out:
        while chunk := source.read(_CHUNK):
            copied += len(chunk)
            if copied > limit:
                raise too_large(limit)
            out.write(chunk)
    return copied


async def receive_upload(request: Any, folder: Path, limit: int) -> tuple[Path, str | None, dict[str, str]]:
    """The image written to `folder/upload`, the client's file name (if any) and the option fields.

    The image comes as the multipart field `image`, or as the raw body with
    Content-Type image/* (or application/octet-stream); options come as form
    fields or query parameters (a form field wins over a query parameter).
    """
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile

    target = folder / UPLOAD_NAME
    fields = dict(request.query_params)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        async with request.form(max_files=1, max_fields=16) as form:
            image = form.get("image")
            if not isinstance(image, UploadFile):
                raise ApiError(400, "no image: send it as the multipart file field `image`")
            size = await run_in_threadpool(copy_upload, image.file, target, limit)
            filename = image.filename
            fields.update({key: value for key, value in form.items() if key != "image" and isinstance(value, str)})
    elif content_type.startswith("image/") or content_type == "application/octet-stream":
        size = 0
        with open(target, "xb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                out.write(chunk)
        filename = fields.get("filename")
    else:
        shown = content_type or "none"
        raise ApiError(
            400,
            f"Content-Type {shown}: send the image as multipart/form-data (field `image`) or as the raw body "
            "with Content-Type image/*",
        )
    if size == 0:
        raise ApiError(400, "the image is empty (0 bytes)")
    return target, filename, fields


@dataclass(frozen=True)
class Inspected:
    """What the server needs to know of an upload before queueing it, and the pixels as decoded."""

    width: int
    height: int
    channels: int  # 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA
    pixels: Any = field(repr=False)  # the array read_image gave

    @property
    def has_alpha(self) -> bool:
        return self.channels in (2, 4)


def inspect_upload(path: Path, shown: str, max_pixels: int) -> Inspected:
    """Decode the upload as `sisr upscale` would: 400 if it is no image sisr reads, 413 if it has too many pixels."""
    from ..image_io import read_image
    from ..inference.upscale import MIN_SIZE

    try:
        image = read_image(path, max_pixels=max_pixels)
    except SisrError as error:
        message = str(error)
        over = _OVER_LIMIT.search(message)
        if over is not None:
            width, height = int(over.group(1)), int(over.group(2))
            raise ApiError(
                413,
                f"{shown}: {width}x{height} pixels is over this server's limit of {max_pixels:,} pixels "
                "an image (--max-pixels)",
            ) from None
        raise ApiError(400, message.replace(str(path), shown)) from None
    height, width = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    if width < MIN_SIZE or height < MIN_SIZE:
        raise ApiError(400, f"{shown}: {width}x{height} pixels is too small to upscale")
    return Inspected(width, height, channels, image)


def remove_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
