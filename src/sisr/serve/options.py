"""A request's options (model, scale, tile, format, quality) checked into a `JobRequest`, or a 422 naming the bad one."""

from __future__ import annotations

from collections.abc import Mapping

from .catalogue import Catalogue
from .formats import ALIASES, OUTPUT_FORMATS
from .http_errors import ApiError
from .jobs import JobRequest
from .settings import MAX_TILE, MIN_TILE
from .uploads import Inspected

OPTIONS = ("model", "scale", "tile", "format", "quality", "filename")
DEFAULT_QUALITY = 95  # write_image's, as `sisr upscale` writes


def bad_option(message: str) -> ApiError:
    return ApiError(422, message)


def _whole_number(fields: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    text = fields.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise bad_option(f"{name}={text[:40]!r}: expected a whole number from {low} to {high}") from None
    if not low <= value <= high:
        raise bad_option(f"{name}={value}: expected a whole number from {low} to {high}")
    return value


def parse_request(fields: Mapping[str, str], catalogue: Catalogue, upload_format: str) -> JobRequest:
    """The options of a request, each checked; the format defaults to the upload's own."""
    unknown = sorted(set(fields) - set(OPTIONS))
    if unknown:
        raise bad_option(f"unknown option {unknown[0]!r:.60}; the options are {', '.join(OPTIONS)}")
    scale = _whole_number(fields, "scale", 1, 16)
    name = fields.get("model", "").strip()
    if not name:
        name = catalogue.default_model if scale is None else f"default-x{scale}"
    entry = catalogue.find(name)
    if entry is None:
        raise bad_option(f"model {name!r:.80}: not on this server (GET /api/v1/models lists them)")
    if scale is None:
        scale = entry.scale
    elif scale not in entry.scales:
        raise bad_option(f"scale={scale}: {entry.name} upscales x{' or x'.join(map(str, entry.scales))}")
    tile = _whole_number(fields, "tile", MIN_TILE, MAX_TILE)
    asked = fields.get("format", "").strip().lower()
    output_format = ALIASES.get(asked, asked) or upload_format
    if output_format not in OUTPUT_FORMATS:
        raise bad_option(f"format={asked[:20]!r}: expected one of {', '.join(OUTPUT_FORMATS)}")
    quality = _whole_number(fields, "quality", 1, 100)
    return JobRequest(entry, scale, tile, output_format, DEFAULT_QUALITY if quality is None else quality)


def check_fits(request: JobRequest, image: Inspected, shown: str) -> None:
    """Options that cannot hold this image's pixels."""
    if request.output_format == "jpeg" and image.has_alpha:
        raise bad_option(
            f"format=jpeg: {shown} has an alpha channel, which JPEG cannot hold; ask for png, webp or tiff"
        )
