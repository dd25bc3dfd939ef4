"""Image files <-> numpy arrays, as stored: uint8 or uint16, HxW (gray), HxWx3 (RGB), HxWx4 (RGBA).

Pillow reads and writes everything except 16-bit colour PNG and TIFF, which
it silently truncates to 8 bits; those go through pypng and tifffile so
16-bit stays 16-bit.

Photos are read the way viewers show them: an EXIF orientation (a phone
held upright stores its pixels sideways) is applied. A colour profile (ICC,
e.g. a phone's Display P3) is read by `read_icc_profile` and written back by
`write_image(..., icc_profile=...)`, so an upscaled photo keeps its colours.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

from .errors import SisrError
from .files import atomic_path, check_writable

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_bit_depth(path: Path) -> int | None:
    with open(path, "rb") as handle:
        head = handle.read(26)
    if len(head) < 26 or not head.startswith(_PNG_SIGNATURE):
        return None
    return head[24]


def _read_png16(path: Path) -> np.ndarray:
    import png

    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    planes = info["planes"]
    array = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, planes)
    return array[:, :, 0] if planes == 1 else array


def _png_with_icc(encoded: bytes, profile: bytes) -> bytes:
    """Insert an iCCP chunk after IHDR (pypng writes none): what Pillow writes for 8-bit PNG."""
    import struct
    import zlib

    data = b"ICC Profile\0\0" + zlib.compress(profile)  # name, NUL, compression method 0 (deflate)
    chunk = struct.pack(">I", len(data)) + b"iCCP" + data + struct.pack(">I", zlib.crc32(b"iCCP" + data))
    end_of_ihdr = len(_PNG_SIGNATURE) + 8 + 13 + 4  # length, type, 13 bytes of data, CRC
    return encoded[:end_of_ihdr] + chunk + encoded[end_of_ihdr:]


def _read_tiff16(path: Path) -> np.ndarray | None:
    """A 16-bit TIFF as uint16 (HxW or HxWxC); None for other TIFFs, which Pillow reads well."""
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages[0]
        if page.dtype != np.uint16:
            return None
        image = page.asarray()
    if image.ndim == 3 and image.shape[0] in (3, 4) and image.shape[2] not in (3, 4):
        image = np.moveaxis(image, 0, -1)  # planar storage
    return image


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file; a missing or unreadable file is a SisrError that names it."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise SisrError(f"{path}: no such file")
    try:
        if _png_bit_depth(path) == 16:
            return _read_png16(path)
        if path.suffix.lower() in (".tif", ".tiff"):
            tiff = _read_tiff16(path)
            if tiff is not None:
                return tiff
        with Image.open(path) as opened:
            opened.load()
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
    except SisrError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise SisrError(f"{path}: not a readable image ({error})") from None
    except Exception as error:  # decoders raise a zoo of types on damaged files
        raise SisrError(f"{path}: not a readable image ({type(error).__name__}: {error})") from None


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
        with Image.open(path) as image:  # reads the header only
            profile = image.info.get("icc_profile")
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


def _write_png16(path: Path, array: np.ndarray, icc_profile: bytes | None) -> None:
    import io

    import png

    planes = 1 if array.ndim == 2 else array.shape[2]
    height, width = array.shape[:2]
    writer = png.Writer(width, height, greyscale=planes in (1, 2), alpha=planes in (2, 4), bitdepth=16)
    encoded = io.BytesIO()
    writer.write(encoded, array.reshape(height, width * planes))
    data = encoded.getvalue()
    if icc_profile:
        data = _png_with_icc(data, icc_profile)
    path.write_bytes(data)


# Formats that can carry an ICC profile (Pillow: PNG, JPEG, WebP, TIFF; tifffile: 16-bit TIFF).
_ICC_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")


def write_image(
    path: str | os.PathLike,
    image: np.ndarray,
    overwrite: bool = False,
    quality: int = 95,
    icc_profile: bytes | None = None,
) -> Path:
    """Encode by the file's extension, atomically; an existing file needs overwrite=True.

    `icc_profile` (from `read_icc_profile`) is embedded where the format
    allows it and its colour space fits the pixels (RGB or grey, see
    `profile_fits`); BMP and PPM have no place for one and are written without.
    """
    from PIL import Image

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise SisrError(
            f"{path}: unknown image format {suffix or '(no extension)'}; use one of {', '.join(IMAGE_SUFFIXES)}"
        )
    check_writable(path, overwrite)
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.dtype == np.uint16 and suffix not in (".png", ".tif", ".tiff"):
        image = to_uint8(image)  # these formats are 8-bit only
    if image.dtype not in (np.uint8, np.uint16):
        raise SisrError(f"{path}: images are written from uint8 or uint16 arrays, not {image.dtype}")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if suffix not in _ICC_SUFFIXES or not profile_fits(icc_profile, channels):
        icc_profile = None
    with atomic_path(path, overwrite=overwrite) as tmp:
        if image.dtype == np.uint16 and suffix == ".png":
            _write_png16(tmp, image, icc_profile)
        elif image.dtype == np.uint16 and image.ndim == 3:
            import tifffile

            tifffile.imwrite(tmp, image, photometric="rgb", iccprofile=icc_profile)
        else:
            options: dict = {"quality": quality} if suffix in (".jpg", ".jpeg", ".webp") else {}
            if icc_profile:
                options["icc_profile"] = icc_profile
            pil = Image.fromarray(image)
            if suffix in (".jpg", ".jpeg") and pil.mode == "RGBA":
                raise SisrError(f"{path}: JPEG cannot hold an alpha channel; write PNG, WebP or TIFF")
            pil.save(tmp, **options)
    return path
