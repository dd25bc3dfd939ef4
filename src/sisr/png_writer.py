"""Writing PNG band of rows by band of rows, compressed on every core, so an image can be encoded while it is computed.

Pillow encodes a whole image in one call, on one core, holding the GIL while
it compresses, so it can neither start before the last row exists nor run
beside the network in a thread. The format is simple enough to write
directly: the signature, IHDR, an iCCP chunk for a colour profile, the
filtered rows deflated in IDAT chunks, and IEND.

- Filter: every row with PNG's Average filter (each byte less the mean of
  its left and upper neighbours). On enlarged photos, which are smooth at
  the pixel scale, it compresses better than libpng's and Pillow's choice
  per row (the smallest sum of absolute differences), and it is a few numpy
  passes instead of five filters tried per row. Level 0 (no compression)
  stores rows unfiltered: filtering what is not compressed gains nothing.
- Compression on every core, as pigz does it: the filtered rows are cut into
  pieces of a fixed number of rows, each deflated on its own in a thread
  pool (zlib releases the GIL), primed with the 32 KB before it (deflate's
  whole window, so nothing is lost at the cuts) and ended on a byte boundary
  (a sync flush); the pieces joined make one zlib stream.
- Same bytes however the rows arrive and whatever the number of cores: the
  pieces are cut at fixed rows, each is deflated in one call, and IDAT
  chunks have a fixed size, so an image written in one band or in many (as
  the network finishes them) gives the same file.
"""

from __future__ import annotations

import collections
import functools
import os
import struct
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

import numpy as np

from .errors import SisrError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# zlib's speed/size trade-off, 0 (stored) to 9. Level 1 is sisr's default: on
# x4 enlargements of photos it is several times faster than level 6
# (Pillow's default) for files about a tenth larger (docs/benchmarks.md,
# `benchmarks/bench_whole_call.py --png-levels`).
DEFAULT_PNG_LEVEL = 1
PNG_LEVELS = range(10)

IDAT_BYTES = 1 << 16  # compressed bytes per IDAT chunk (the last one holds the rest)
PIECE_BYTES = 1 << 17  # filtered bytes per independently deflated piece (whole rows, at least one)
_WINDOW = 1 << 15  # deflate's window: the bytes before a piece that prime its compressor
_AVERAGE = 3  # PNG filter type
_NONE = 0

# PNG colour type by channels: grey, grey + alpha, RGB, RGBA.
_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}


def check_png_level(level: int, origin: str = "png_level") -> int:
    """`level` if it is a zlib level (0-9), else a SisrError naming `origin`."""
    if isinstance(level, bool) or not isinstance(level, int) or level not in PNG_LEVELS:
        raise SisrError(f"{origin}={level!r}: expected a PNG compression level from 0 (none, fastest) to 9 (smallest)")
    return level


def _chunk(kind: bytes, data: bytes | bytearray | memoryview) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + bytes(data) + struct.pack(">I", crc)


def iccp_chunk(profile: bytes) -> bytes:
    """An iCCP chunk as Pillow writes one: the name `ICC Profile`, method 0 (deflate), the zlib-compressed profile."""
    return _chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(profile))


def zlib_header(level: int) -> bytes:
    """The two bytes before a deflate stream: 32 KB window, the level's class, and the check bits zlib requires."""
    level_class = 0 if level < 2 else 1 if level < 6 else 2 if level == 6 else 3
    header = 0x78 << 8 | level_class << 6
    return struct.pack(">H", header + 31 - header % 31)


def average_filter(stored: np.ndarray, prior: np.ndarray, pixel_bytes: int) -> np.ndarray:
    """Rows with PNG's Average filter, type byte in front: byte - (left + up) // 2, modulo 256.

    `prior` is the row above the first (zeros at the top of the image). The
    mean is taken as (a & b) + ((a ^ b) >> 1), which never leaves 8 bits, so
    no wider temporary is needed.
    """
    filtered = np.empty((len(stored), stored.shape[1] + 1), np.uint8)
    filtered[:, 0] = _AVERAGE
    for rows, above, out in ((stored[:1], prior[None], filtered[:1, 1:]), (stored[1:], stored[:-1], filtered[1:, 1:])):
        np.subtract(rows[:, :pixel_bytes], above[:, :pixel_bytes] >> 1, out=out[:, :pixel_bytes])
        left, up = rows[:, :-pixel_bytes], above[:, pixel_bytes:]
        mean = left & up
        half = left ^ up
        half >>= 1
        mean += half
        np.subtract(rows[:, pixel_bytes:], mean, out=out[:, pixel_bytes:])
    return filtered


def _unfiltered(stored: np.ndarray) -> np.ndarray:
    filtered = np.empty((len(stored), stored.shape[1] + 1), np.uint8)
    filtered[:, 0] = _NONE
    filtered[:, 1:] = stored
    return filtered


def _encode_piece(
    stored: np.ndarray, prior: np.ndarray, tail_rows: int, level: int, pixel_bytes: int, last: bool
) -> tuple[bytes, int, int]:
    """Filter and deflate one piece: its raw deflate bytes, the Adler-32 and length of its filtered bytes.

    `stored` holds `tail_rows` rows of the piece before (filtered here only
    to prime the compressor with the window before this piece) and then the
    piece's own rows; `prior` is the row above them.
    """
    filtered = _unfiltered(stored) if level == 0 else average_filter(stored, prior, pixel_bytes)
    dictionary = filtered[:tail_rows].reshape(-1)[-_WINDOW:].tobytes()
    data = filtered[tail_rows:].reshape(-1).data  # a memoryview: zlib reads the array as it is, no copy
    if dictionary:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, dictionary)
    else:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15, 9)
    compressed = compressor.compress(data) + compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)
    return compressed, zlib.adler32(data), len(data)


def adler32_combine(first: int, second: int, second_length: int) -> int:
    """The Adler-32 of two byte strings joined, from theirs (zlib's adler32_combine, which Python lacks)."""
    base = 65521
    remainder = second_length % base
    low = first & 0xFFFF
    high = remainder * low % base
    low = (low + (second & 0xFFFF) + base - 1) % base
    high = (high + (first >> 16) + (second >> 16) + base - remainder) % base
    return high << 16 | low


def cores() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@functools.lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    """One pool for every writer of the process: a thread per core."""
    return ThreadPoolExecutor(max_workers=cores(), thread_name_prefix="sisr-deflate")


class PngWriter:
    """Writes one PNG to `handle`: rows are handed to `write_rows` top to bottom, then `close`.

    `channels` 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA); `dtype`
    uint8 or uint16 (stored big-endian, as PNG wants).
    """

    def __init__(
        self,
        handle: BinaryIO,
        width: int,
        height: int,
        channels: int,
        dtype: np.dtype | type,
        level: int = DEFAULT_PNG_LEVEL,
        icc_profile: bytes | None = None,
    ) -> None:
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
            raise SisrError(f"PNG stores 8- or 16-bit samples, not {dtype}")
        if channels not in _COLOR_TYPES:
            raise SisrError(f"PNG stores 1 to 4 channels (grey, grey + alpha, RGB, RGBA), not {channels}")
        if width < 1 or height < 1:
            raise SisrError(f"a PNG of {width}x{height} pixels: both sides must be at least 1")
        self.handle = handle
        self.width = width
        self.height = height
        self.channels = channels
        self.dtype = dtype
        self.level = check_png_level(level)
        self.rows_written = 0
        self.pixel_bytes = channels * dtype.itemsize  # PNG's "bpp": the filter's distance to the left neighbour
        self.row_bytes = width * self.pixel_bytes
        self.piece_rows = max(1, PIECE_BYTES // (self.row_bytes + 1))
        self._tail_rows = -(-_WINDOW // (self.row_bytes + 1))  # rows before a piece that hold its window
        self._waiting: list[np.ndarray] = []  # stored rows not yet in a piece
        self._waiting_rows = 0
        self._rows_in_pieces = 0
        # The stored rows before the next piece: its window's rows and the row above them (fewer at the top).
        self._history = np.zeros((0, self.row_bytes), np.uint8)
        self._adler = zlib.adler32(b"")
        self._in_flight: collections.deque[Future[tuple[bytes, int, int]]] = collections.deque()
        self._pending = bytearray(zlib_header(level))  # compressed bytes not yet in an IDAT chunk
        bit_depth = 8 * dtype.itemsize
        header = struct.pack(">IIBBBBB", width, height, bit_depth, _COLOR_TYPES[channels], 0, 0, 0)
        handle.write(PNG_SIGNATURE + _chunk(b"IHDR", header))
        if icc_profile:
            handle.write(iccp_chunk(icc_profile))

    def write_rows(self, rows: np.ndarray) -> None:
        """The next rows: (n, width, channels), or (n, width) for grey."""
        rows = np.asarray(rows)
        expected = (self.width,) if self.channels == 1 else (self.width, self.channels)
        if rows.ndim == 3 and self.channels == 1 and rows.shape[2] == 1:
            rows = rows[:, :, 0]
        if rows.shape[1:] != expected or rows.dtype != self.dtype:
            raise SisrError(
                f"PNG rows of shape {rows.shape[1:]} and type {rows.dtype}: expected {expected} of {self.dtype}"
            )
        if self.rows_written + len(rows) > self.height:
            raise SisrError(f"{self.rows_written + len(rows)} rows for a PNG of height {self.height}")
        if not len(rows):
            return
        if self.dtype.itemsize == 2:
            rows = rows.astype(">u2")
        stored = np.ascontiguousarray(rows).view(np.uint8).reshape(len(rows), self.row_bytes)
        self._waiting.append(stored)
        self._waiting_rows += len(stored)
        self.rows_written += len(stored)
        while self._waiting_rows >= self.piece_rows or (self._waiting_rows and self.rows_written == self.height):
            self._submit(self._take(min(self.piece_rows, self._waiting_rows)))
        if self._waiting:  # rows kept past this call are copied: the caller may reuse its array
            self._waiting = [np.concatenate(self._waiting) if len(self._waiting) > 1 else self._waiting[0].copy()]

    def _take(self, count: int) -> np.ndarray:
        """The next `count` waiting rows as one array."""
        waiting = np.concatenate(self._waiting) if len(self._waiting) > 1 else self._waiting[0]
        self._waiting = [waiting[count:]] if count < len(waiting) else []
        self._waiting_rows -= count
        return waiting[:count]

    def _submit(self, stored: np.ndarray) -> None:
        """Filter and deflate a piece in the pool, and write what the pieces before it have given."""
        history = self._history
        if len(history) > self._tail_rows:
            prior, tail = history[0], history[1:]
        else:  # near the top: every row before the piece, under a row of zeros
            prior, tail = np.zeros(self.row_bytes, np.uint8), history
        self._history = np.concatenate([history, stored])[-(self._tail_rows + 1) :].copy()
        self._rows_in_pieces += len(stored)
        last = self._rows_in_pieces == self.height
        rows = np.concatenate([tail, stored])
        arguments = (rows, prior, len(tail), self.level, self.pixel_bytes, last)
        if last and not self._in_flight:  # a one-piece image: no thread to wait for
            self._collect(_encode_piece(*arguments))
        else:
            self._in_flight.append(_pool().submit(_encode_piece, *arguments))
        # Done pieces go out in order; at most two per core wait, which bounds the memory held.
        while self._in_flight and (self._in_flight[0].done() or len(self._in_flight) > 2 * cores()):
            self._collect(self._in_flight.popleft().result())
        self._write_full_chunks()

    def _collect(self, piece: tuple[bytes, int, int]) -> None:
        compressed, adler, length = piece
        self._pending += compressed
        self._adler = adler32_combine(self._adler, adler, length)

    def _write_full_chunks(self) -> None:
        pending = self._pending
        if len(pending) < IDAT_BYTES:
            return
        whole = len(pending) - len(pending) % IDAT_BYTES
        with memoryview(pending) as view:
            chunks = [_chunk(b"IDAT", view[start : start + IDAT_BYTES]) for start in range(0, whole, IDAT_BYTES)]
        self.handle.write(b"".join(chunks))
        del pending[:whole]

    def close(self) -> None:
        """The last IDAT chunk and IEND; every row must have been written."""
        if self.rows_written != self.height:
            self.abandon()
            raise SisrError(f"a PNG of height {self.height} got {self.rows_written} rows")
        while self._in_flight:
            self._collect(self._in_flight.popleft().result())
        self._pending += struct.pack(">I", self._adler)
        self._write_full_chunks()
        tail = _chunk(b"IDAT", self._pending) if self._pending else b""
        self.handle.write(tail + _chunk(b"IEND", b""))
        self._pending = bytearray()

    def abandon(self) -> None:
        """Drop the pieces still being deflated (the file is not to be finished)."""
        for future in self._in_flight:
            future.cancel()
        self._in_flight.clear()
