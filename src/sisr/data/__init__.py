"""Data: the benchmark test sets (Set5, Set14, BSD100, ...), DIV2K and training patches.

Downloading and the cache are infrastructure shared with the weights, LPIPS
and the native kernels, so they live in `sisr.download`, not here.
"""

from .testsets import (
    BENCHMARKS,
    BenchmarkSet,
    BenchmarkSpec,
    ImagePair,
    load_benchmark,
    load_folder,
    read_image,
)

__all__ = [
    "BENCHMARKS",
    "BenchmarkSet",
    "BenchmarkSpec",
    "ImagePair",
    "load_benchmark",
    "load_folder",
    "read_image",
]
