"""Host memory for CPU inference: freed feature maps are reused instead of returned to the OS.

A network's forward allocates a new feature map for nearly every layer
(16 MB each for EDSR-baseline at 256 x 256) and frees the one before. glibc's
malloc serves blocks that large with mmap and gives them back with munmap,
so every layer's output is faulted in again page by page and zeroed by the
kernel. Asking malloc to serve blocks up to `MMAP_THRESHOLD` from its heap
and to keep up to `TRIM_THRESHOLD` of freed memory lets the next layer reuse
the last one's pages. `benchmarks/bench_allocator.py` times whole networks
both ways (figures in docs/benchmarks.md).

It is a process-wide setting of the C library, so `prepare_model` applies it
once for CPU targets; the price is that up to `TRIM_THRESHOLD` of freed memory
stays with the process (its resident size does not shrink back after a large
image). SISR_KEEP_FREED_MEMORY=0 leaves malloc as it is. Elsewhere than
glibc (macOS, Windows, musl) nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import sys

log = logging.getLogger("sisr")

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's largest accepted mmap threshold on 64-bit systems (HEAP_MAX_SIZE / 2 = 32 MB):
# blocks above it (a 512^2 tile's 64-channel maps) are still mapped and unmapped.
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 1024 * 2**20


@functools.cache
def keep_freed_memory() -> bool:
    """Tune glibc's malloc as described above, once per process; True if it was tuned."""
    if os.environ.get("SISR_KEEP_FREED_MEMORY", "").strip() == "0":
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        gnu_get_libc_version = libc.gnu_get_libc_version  # glibc only: musl's mallopt does nothing
    except (OSError, AttributeError):
        return False
    gnu_get_libc_version.restype = ctypes.c_char_p
    tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if tuned:
        log.debug(
            "glibc %s malloc: blocks up to %d MB from the heap, %d MB of freed memory kept",
            gnu_get_libc_version().decode(),
            MMAP_THRESHOLD >> 20,
            TRIM_THRESHOLD >> 20,
        )
    return tuned
