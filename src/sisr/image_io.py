"""Image files <-> numpy arrays, as stored: uint8 or uint16, HxW (gray), HxWx3 (RGB), HxWx4 (RGBA).

Pillow reads everything except 16-bit colour PNG and TIFF, which it
silently truncates to 8 bits; those are read through pypng and tifffile so
16-bit stays 16-bit. Pillow writes JPEG, WebP, BMP and PPM; PNG is written
by `sisr.png_writer` and TIFF by tifffile, both band of rows by band of rows
(`write_image_rows`), so that an output can be encoded while the network
still computes its lower rows.

Photos are read the way viewers show them: an EXIF orientation (a phone
held upright stores its pixels sideways) is applied. A colour profile (ICC,
e.g. a phone's Display P3) is read by `read_icc_profile` and written back by
`write_image(..., icc_profile=...)`, so an upscaled photo keeps its colours.

Files come from strangers, so `read_image` reads a file's declared size
before it decodes a pixel and refuses images over `max_input_pixels()`: a
778 KB PNG can declare 20000 x 20000 16-bit pixels (800 MB), and Pillow's own
guard covers only what Pillow decodes (not pypng's 16-bit PNGs nor
tifffile's TIFFs). Images of several frames (animated GIF, APNG and WebP,
multi-page TIFF) are refused by name rather than read from their first frame.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

from .errors import SisrError
from .files import atomic_path, check_writable
from .png_writer import DEFAULT_PNG_LEVEL, PngWriter, check_png_level

# What sisr writes (and reads); READ_SUFFIXES adds what it reads only (GIF: 256 colours, a poor output).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm")
READ_SUFFIXES = (*IMAGE_SUFFIXES, ".gif")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_SIGNATURES = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # classic and BigTIFF, both byte orders

# Pillow decodes these and no others: an image named .png may be any format, and Pillow's rarer
# decoders (EPS runs Ghostscript) are more than a stranger's file should reach. JPEG includes MPO.
_PILLOW_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "PPM")

MAX_INPUT_PIXELS = 200_000_000
"""The largest input image `read_image` decodes, in pixels (width x height), unless told otherwise.

Above every single-shot camera (the largest medium-format sensors give 150
megapixels) and a 16000 x 12000 scan (192 MP), yet it bounds what one file can
make sisr allocate: at most 1.6 GB decoded (16-bit RGBA, 8 bytes a pixel;
600 MB for 8-bit RGB). `SISR_MAX_PIXELS` in the environment, `sisr upscale
--max-pixels N` or `read_image(path, max_pixels=N)` set another; 0 = no limit.
"""
MAX_PIXELS_VARIABLE = "SISR_MAX_PIXELS"
_RAISE_IT = f"--max-pixels N (sisr upscale), {MAX_PIXELS_VARIABLE}=N or read_image(..., max_pixels=N); 0 = no limit"


def max_input_pixels() -> int:
    """The limit in force: `$SISR_MAX_PIXELS` when set, else MAX_INPUT_PIXELS; 0 = none."""
    text = os.environ.get(MAX_PIXELS_VARIABLE, "").strip()
    if not text:
        return MAX_INPUT_PIXELS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = -1
    if value < 0:
        raise SisrError(f"{MAX_PIXELS_VARIABLE}={text!r}: expected a whole number of pixels (0 = no limit)")
    return value


def _check_limit(max_pixels: int) -> int:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 0:
        raise SisrError(f"max_pixels={max_pixels!r}: expected a whole number of pixels (0 = no limit)")
    return max_pixels


def _check_pixels(path: Path, width: int, height: int, max_pixels: int) -> None:
    """Refuse an image whose declared size is over the limit, before a pixel of it is decoded."""
    if max_pixels and width * height > max_pixels:
        raise SisrError(
            f"{path}: {width}x{height} pixels ({width * height / 1e6:.1f} megapixels) is over the limit of "
            f"{max_pixels / 1e6:g} megapixels for an input image, a guard against decompression bombs; "
            f"if the file is trusted, raise it with {_RAISE_IT}"
        )


def _read_png16(path: Path, max_pixels: int) -> np.ndarray:
    """A 16-bit PNG through pypng (Pillow truncates 16-bit colour), its size checked before any row."""
    import png

    with open(path, "rb") as handle:
        reader = png.Reader(file=handle)
        reader.preamble()  # the chunks before the pixels: IHDR's width and height
        _check_pixels(path, reader.width, reader.height, max_pixels)
        width, height, rows, info = reader.asDirect()
        planes = info["planes"]
        image = np.empty((height, width * planes), dtype=np.uint16)  # filled in place: one copy, not two
        filled = 0
        for filled, row in enumerate(rows, start=1):
            image[filled - 1] = row
        if filled != height:
            raise SisrError(f"{path}: not a readable image ({filled} of {height} rows)")
    image = image.reshape(height, width, planes)
    return image[:, :, 0] if planes == 1 else image


def _read_tiff(path: Path, max_pixels: int) -> np.ndarray | None:
    """A TIFF checked (size, one image) and, if 16-bit, decoded; None for 8-bit ones, which Pillow reads well.

    Pages marked as reduced-resolution copies (previews, pyramids) do not
    count as images of their own; a second full page (a scan's next sheet, a
    stack) does.
    """
    import tifffile

    with _quiet_tifffile(), tifffile.TiffFile(path) as tiff:
        page = tiff.pages[0]
        _check_pixels(path, page.imagewidth, page.imagelength, max_pixels)
        full_pages = 0
        for other in tiff.pages:
            full_pages += not other.subfiletype & 1
            if full_pages > 1:
                raise _several_frames(path, "a TIFF", len(tiff.pages), "pages")
        if page.imagedepth > 1:
            raise SisrError(f"{path}: a volume of {page.imagedepth} slices; sisr reads 2-D images")
        if page.dtype != np.uint16:
            return None
        photometric = int(page.photometric)
        if photometric not in (0, 1, 2) or page.samplesperpixel > 4:  # grey (either way up) and RGB
            raise SisrError(
                f"{path}: 16-bit TIFF of photometric interpretation {photometric} with {page.samplesperpixel} "
                "samples a pixel; sisr reads 16-bit grey and RGB, with or without alpha"
            )
        image = page.asarray()
        planar = int(page.planarconfig) == 2
    if image.ndim == 3 and planar:
        image = np.moveaxis(image, 0, -1)  # stored plane by plane
    if photometric == 0:  # MINISWHITE: 0 is white
        image = image if image.flags.writeable else image.copy()
        grey = image[..., 0] if image.ndim == 3 else image
        np.subtract(np.iinfo(np.uint16).max, grey, out=grey)
    return image


class _Drop(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


_DROP = _Drop()


@contextlib.contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """tifffile logs each oddity of a damaged file as it parses; sisr reports the file in one line of its own."""
    logger = logging.getLogger("tifffile")
    logger.addFilter(_DROP)
    try:
        yield
    finally:
        logger.removeFilter(_DROP)


def _several_frames(path: Path, what: str, count: int, unit: str = "frames") -> SisrError:
    return SisrError(
        f"{path}: {what} of {count} {unit}; sisr upscales still images, not one frame of many "
        "(save the frame you want as a PNG first)"
    )


# Pillow's own bomb guard is a module global: one thread at a time may set it aside for sisr's.
_PILLOW_LIMIT = threading.Lock()


def _read_pillow(path: Path, max_pixels: int, deep_png: bool) -> np.ndarray | None:
    """Decode with Pillow after checking the size and frames; None for a 16-bit PNG, which pypng reads.

    Pillow warns above 89 megapixels and refuses images above 179,
    before sisr sees the size; sisr's limit is the one that holds, so the
    warning is silenced and, for an image Pillow refuses, its guard is lifted
    while the header is read (under a lock: the setting is global), then set
    to sisr's limit while the pixels are decoded.
    """
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        # "Corrupt EXIF data", "Truncated File Read": a damaged file is reported in one line of sisr's own
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        try:
            return _decode_pillow(path, max_pixels, deep_png, set_guard=False)
        except Image.DecompressionBombError:
            pass
        with _PILLOW_LIMIT:
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                return _decode_pillow(path, max_pixels, deep_png, set_guard=True)
            finally:
                Image.MAX_IMAGE_PIXELS = saved


def _decode_pillow(path: Path, max_pixels: int, deep_png: bool, set_guard: bool) -> np.ndarray | None:
    from PIL import Image

    with Image.open(path, formats=_PILLOW_FORMATS) as opened:
        _check_pixels(path, opened.width, opened.height, max_pixels)
        _check_one_frame(path, opened)
        if deep_png and opened.format == "PNG":
            return None
        if set_guard and max_pixels:
            Image.MAX_IMAGE_PIXELS = -(-max_pixels // 2)  # Pillow refuses above twice its setting
        opened.load()
        return _as_stored(path, opened)


def _check_one_frame(path: Path, opened: Image.Image) -> None:
    """Refuse animations: upscaling their first frame alone would lose the rest without a word."""
    if opened.format in ("MPO", "TIFF"):  # MPO: a photo and its previews or depth maps; TIFF: see _read_tiff
        return
    frames = getattr(opened, "n_frames", 1)
    if frames > 1:
        names = {"GIF": "an animated GIF", "PNG": "an animated PNG", "WEBP": "an animated WebP"}
        what = names.get(str(opened.format), f"a {opened.format} image")
        raise _several_frames(path, what, frames)


def _as_stored(path: Path, opened: Image.Image) -> np.ndarray:
    """A decoded Pillow image as uint8 / uint16 grey, RGB or RGBA, turned upright."""
    image = upright(opened)
    if image.mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(image, dtype=np.uint16)
    if image.mode in ("I", "F"):
        raise SisrError(f"{path}: {image.mode} (32-bit) images are not supported; save it as 8 or 16 bit")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode in ("LA", "PA", "RGBa"):
        image = image.convert("RGBA")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode not in ("L", "RGB", "RGBA"):
        image = image.convert("RGB")
    return np.array(image)


def read_image(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image file as stored; a missing, damaged, too large or animated one is a SisrError naming it.

    `max_pixels`: the most pixels (width x height) to decode; None = `max_input_pixels()`
    (200 megapixels unless $SISR_MAX_PIXELS says otherwise), 0 = no limit.
    """
    from PIL import UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise SisrError(f"{path}: no such file")
    limit = max_input_pixels() if max_pixels is None else _check_limit(max_pixels)
    try:
        with open(path, "rb") as handle:
            head = handle.read(32)
        if head.startswith(_TIFF_SIGNATURES):
            deep = _read_tiff(path, limit)
            if deep is not None:
                return deep
        deep_png = head.startswith(_PNG_SIGNATURE) and len(head) > 24 and head[24] == 16  # IHDR's bit depth
        image = _read_pillow(path, limit, deep_png)
        return _read_png16(path, limit) if image is None else image
    except SisrError:
        raise
    except MemoryError:
        raise SisrError(
            f"{path}: not enough memory to decode it; a lower limit ({_RAISE_IT}) refuses it first"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise SisrError(f"{path}: not a readable image ({_one_line(error)})") from None
    except Exception as error:  # decoders raise a zoo of types on damaged files
        raise SisrError(f"{path}: not a readable image ({type(error).__name__}: {_one_line(error)})") from None


def _one_line(error: BaseException) -> str:
    """A decoder's message fit for one line: some carry newlines, some a whole buffer."""
    text = " ".join(str(error).split())
    return text if len(text) <= 200 else text[:197] + "..."


def upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says (the same image when it has none).

    Phones store pixels as the sensor saw them and the way to hold the photo
    in EXIF; viewers apply it, so an upscaler must too or its result comes
    back sideways.
    """
    from PIL import ImageOps

    try:
        orientation = image.getexif().get(0x0112, 1)  # the EXIF Orientation tag
    except Exception:  # a damaged EXIF block: the pixels are still good
        return image
    return ImageOps.exif_transpose(image) if orientation not in (None, 1) else image


def read_icc_profile(path: str | os.PathLike) -> bytes | None:
    """The file's embedded ICC colour profile, or None (none, or not readable by Pillow)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                with Image.open(path, formats=_PILLOW_FORMATS) as image:  # the header only
                    profile = image.info.get("icc_profile")
            except Image.DecompressionBombError:  # nothing is decoded here: a large photo keeps its profile
                with _PILLOW_LIMIT:
                    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
                    try:
                        with Image.open(path, formats=_PILLOW_FORMATS) as image:
                            profile = image.info.get("icc_profile")
                    finally:
                        Image.MAX_IMAGE_PIXELS = saved
    except Exception:
        return None
    return bytes(profile) if profile else None


# ICC colour spaces (header bytes 16-19) of the images sisr writes, by channel count without alpha.
_ICC_SPACES = {1: b"GRAY", 3: b"RGB "}


def profile_fits(profile: bytes | None, channels: int) -> bool:
    """Whether an ICC profile describes pixels of `channels` channels (alpha included): RGB or grey.

    A CMYK JPEG is decoded to RGB and a grey profile cannot describe RGB
    pixels; attaching such a profile makes viewers show wrong colours, so it
    is dropped instead.
    """
    if not profile or len(profile) < 20:
        return False
    color_channels = 1 if channels <= 2 else 3
    return profile[16:20] == _ICC_SPACES[color_channels]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """16-bit levels scaled (not truncated) to 8-bit ones; 8-bit images pass through."""
    if image.dtype == np.uint16:
        return ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    return image


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """What the networks take: HxWx3 uint8. Gray is repeated, alpha dropped, 16-bit scaled to 8."""
    if image.dtype not in (np.uint8, np.uint16):
        raise SisrError(f"image of type {image.dtype}: expected an 8- or 16-bit image")
    image = to_uint8(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.shape[2] in (1, 2):
        image = np.repeat(image[:, :, :1], 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image)


# Formats that can carry an ICC profile.
_ICC_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")


# Written band of rows by band of rows (`write_image_rows`), so an encoder can start before the last row exists.
STREAMED_SUFFIXES = (".png", ".tif", ".tiff")
# Bytes of pixels per TIFF strip: small enough to write a strip as soon as its rows are done.
TIFF_STRIP_BYTES = 1 << 18


def _check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise SisrError(
            f"{path}: unknown image format {suffix or '(no extension)'}; use one of {', '.join(IMAGE_SUFFIXES)}"
        )
    return suffix


def write_image(
    path: str | os.PathLike,
    image: np.ndarray,
    overwrite: bool = False,
    quality: int = 95,
    icc_profile: bytes | None = None,
    png_level: int = DEFAULT_PNG_LEVEL,
) -> Path:
    """Encode by the file's extension, atomically; an existing file needs overwrite=True.

    `icc_profile` (from `read_icc_profile`) is embedded where the format
    allows it and its colour space fits the pixels (RGB or grey, see
    `profile_fits`); BMP and PPM have no place for one and are written without.
    `png_level`: zlib's compression level for PNG, 0 (none) to 9 (smallest,
    slowest); `quality`: JPEG's and WebP's. PNG and TIFF are written as
    `write_image_rows` writes them, so the bytes equal a write band by band.
    """
    from PIL import Image

    path = Path(path)
    suffix = _check_suffix(path)
    check_png_level(png_level)
    check_writable(path, overwrite)
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.dtype == np.uint16 and suffix not in STREAMED_SUFFIXES:
        image = to_uint8(image)  # these formats are 8-bit only
    if image.dtype not in (np.uint8, np.uint16):
        raise SisrError(f"{path}: images are written from uint8 or uint16 arrays, not {image.dtype}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (2, 3, 4)):
        raise SisrError(f"{path}: image of shape {image.shape}: expected HxW, or HxWxC with C = 1, 2, 3 or 4")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if suffix in STREAMED_SUFFIXES:
        height, width = image.shape[:2]
        return write_image_rows(
            path, [image], height, width, channels, image.dtype, overwrite, png_level=png_level, icc_profile=icc_profile
        )
    if suffix not in _ICC_SUFFIXES or not profile_fits(icc_profile, channels):
        icc_profile = None
    with atomic_path(path, overwrite=overwrite) as tmp:
        options: dict = {"quality": quality} if suffix in (".jpg", ".jpeg", ".webp") else {}
        if icc_profile:
            options["icc_profile"] = icc_profile
        pil = Image.fromarray(image)
        if suffix in (".jpg", ".jpeg") and pil.mode in ("RGBA", "LA"):
            raise SisrError(f"{path}: JPEG cannot hold an alpha channel; write PNG, WebP or TIFF")
        pil.save(tmp, **options)
    return path


def write_image_rows(
    path: str | os.PathLike,
    bands: Iterable[np.ndarray],
    height: int,
    width: int,
    channels: int,
    dtype: np.dtype | type,
    overwrite: bool = False,
    *,
    png_level: int = DEFAULT_PNG_LEVEL,
    icc_profile: bytes | None = None,
) -> Path:
    """Write a PNG or TIFF from `bands` of rows, top to bottom, each encoded as it comes; atomically.

    Each band is (rows, width, channels) (or (rows, width) for grey) of
    `dtype` (uint8 or uint16); together they must make `height` rows. The
    file is the one `write_image` writes for the whole image: a PNG by
    `sisr.png_writer` at `png_level`, an uncompressed TIFF by tifffile in
    strips of about TIFF_STRIP_BYTES. If the bands stop early or raise, no
    file is left behind.
    """
    path = Path(path)
    suffix = _check_suffix(path)
    if suffix not in STREAMED_SUFFIXES:
        raise SisrError(f"{path}: written by rows only as PNG or TIFF, not {suffix}")
    check_png_level(png_level)
    dtype = np.dtype(dtype)
    if not profile_fits(icc_profile, channels):
        icc_profile = None
    with atomic_path(path, overwrite=overwrite) as tmp:
        if suffix == ".png":
            with open(tmp, "wb") as handle:
                writer = PngWriter(handle, width, height, channels, dtype, png_level, icc_profile)
                for band in bands:
                    writer.write_rows(band)
                writer.close()
        else:
            _write_tiff_strips(tmp, bands, height, width, channels, dtype, icc_profile)
    return path


def tiff_layout(channels: int) -> dict[str, Any]:
    """tifffile's photometric / planarconfig / extrasamples for grey, grey + alpha, RGB and RGBA."""
    layout: dict[str, Any] = {"photometric": "minisblack" if channels <= 2 else "rgb"}
    if channels > 1:
        layout["planarconfig"] = "contig"
    if channels in (2, 4):
        layout["extrasamples"] = ["unassalpha"]
    return layout


def _write_tiff_strips(
    tmp: Path,
    bands: Iterable[np.ndarray],
    height: int,
    width: int,
    channels: int,
    dtype: np.dtype,
    icc_profile: bytes | None,
) -> None:
    """An uncompressed TIFF whose strips are cut from the bands and written as soon as each is complete."""
    import tifffile

    row_bytes = width * channels * dtype.itemsize
    rows_per_strip = max(1, min(height, TIFF_STRIP_BYTES // row_bytes))
    little_endian = dtype.newbyteorder("<")
    seen = 0

    def strips() -> Iterator[bytes]:
        nonlocal seen
        pending = b""
        strip_bytes = rows_per_strip * row_bytes
        for band in bands:
            band = np.asarray(band)
            if band.shape[1:2] != (width,) or band.size != len(band) * width * channels or band.dtype != dtype:
                raise SisrError(
                    f"TIFF rows of shape {band.shape} and type {band.dtype}: expected width {width}, "
                    f"{channels} channels of {dtype}"
                )
            seen += len(band)
            if seen > height:
                raise SisrError(f"{seen} rows for a TIFF of height {height}")
            data = pending + np.ascontiguousarray(band, little_endian).tobytes()
            whole = len(data) - len(data) % strip_bytes
            for start in range(0, whole, strip_bytes):
                yield data[start : start + strip_bytes]
            pending = data[whole:]
        if seen != height:
            raise SisrError(f"a TIFF of height {height} got {seen} rows")
        if pending:
            yield pending

    shape = (height, width) if channels == 1 else (height, width, channels)
    with _quiet_tifffile():
        tifffile.imwrite(
            tmp,
            strips(),
            shape=shape,
            dtype=little_endian,
            byteorder="<",
            rowsperstrip=rows_per_strip,
            iccprofile=icc_profile,
            metadata=None,
            **tiff_layout(channels),
        )
