"""Data: downloading into the cache, and the benchmark / validation sets."""

from .benchmarks import (
    BENCHMARKS,
    BenchmarkSet,
    BenchmarkSpec,
    ImagePair,
    load_benchmark,
    load_folder,
    read_image,
)
from .download import Resource, cache_dir, download, extract, fetch, fetch_and_extract

__all__ = [
    "BENCHMARKS",
    "BenchmarkSet",
    "BenchmarkSpec",
    "ImagePair",
    "Resource",
    "cache_dir",
    "download",
    "extract",
    "fetch",
    "fetch_and_extract",
    "load_benchmark",
    "load_folder",
    "read_image",
]
