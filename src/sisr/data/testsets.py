"""The standard SR test sets (Set5, Set14, BSD100, Urban100, Manga109, DIV2K
validation): where to find them and how to read them as HR/LR pairs.

A set is looked up as a path, then under a data root (`--data-root`), then in
the cache, where it is downloaded and extracted on first use. Three folder
layouts are read:

* `<set>/HR/<name>.png` with `<set>/LR_bicubic/X<s>/<name>.png` or
  `<name>x<s>.png` (the EDSR authors' `benchmark.tar`);
* `DIV2K_valid_HR/0801.png` with `DIV2K_valid_LR_bicubic/X<s>/0801x<s>.png`;
* a plain folder of images, which holds HR images only.

Where a set has no LR images for the scale, they are made with MATLAB-exact
bicubic downscaling (`sisr.imaging.matlab_imresize`) from the HR image cropped
at the top-left to a multiple of the scale, which is how the published LR
images were made.

Images come back as stored: RGB as HxWx3 uint8, grayscale (Set14's `bridge`)
as HxW uint8. Callers that need three channels expand them.

`iter_pairs(degradation)` gives LR images made by a fixed degradation
(`sisr.data.degradations`: jpeg75, noise15, realesrgan-0, ...) instead, from
the set's own LR images or, for the ones made from HR, from the HR image.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .. import image_io
from ..download import Resource, cache_dir, fetch_and_extract
from ..errors import SisrError
from ..image_io import IMAGE_SUFFIXES, to_uint8

if TYPE_CHECKING:
    from .degradations import FixedDegradation

log = logging.getLogger("sisr")


# The EDSR authors' package of Set5, Set14, B100 and Urban100 (HR plus
# MATLAB-bicubic LR x2/x3/x4) under `benchmark/<set>/`. Its sha256 (an archive
# of 250,112,000 bytes) is pinned in a public SR project's
# tests/reference/fetch_urban100.py; torchSR pins the same URL by md5
# 4ace41d33c2384b97e6b320cd0afd6ba.
EDSR_BENCHMARK_ARCHIVE = Resource(
    url="https://cv.snu.ac.kr/research/EDSR/benchmark.tar",
    sha256="80c21c333bbf6ceb5308b7243761f8284478274413a97b96f1d63e9045fd93e8",
    filename="benchmark.tar",
)

# DIV2K checksums as published by TensorFlow Datasets
# (tensorflow_datasets/datasets/div2k/checksums.tsv).
_DIV2K_URL = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"
DIV2K_VALID_HR_ARCHIVE = Resource(
    _DIV2K_URL + "DIV2K_valid_HR.zip",
    "20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc",
    "DIV2K_valid_HR.zip",
)
DIV2K_VALID_LR_BICUBIC_ARCHIVES = {
    2: Resource(
        _DIV2K_URL + "DIV2K_valid_LR_bicubic_X2.zip",
        "60eed9875c697df51204aa579e2a699e1d5215095788a097ff54dd17e2664d57",
        "DIV2K_valid_LR_bicubic_X2.zip",
    ),
    3: Resource(
        _DIV2K_URL + "DIV2K_valid_LR_bicubic_X3.zip",
        "04b9a2ed3b4a0715d3924d3ae8514830c3328fac8d30512ce716d6f419e052a3",
        "DIV2K_valid_LR_bicubic_X3.zip",
    ),
    4: Resource(
        _DIV2K_URL + "DIV2K_valid_LR_bicubic_X4.zip",
        "a50a5d1c4b88de4e8d300d8fb2b904c52fe93b2b298a4899697760d7cbb6d553",
        "DIV2K_valid_LR_bicubic_X4.zip",
    ),
}


@dataclass(frozen=True)
class BenchmarkSpec:
    """Where one test set comes from and where it lies once there."""

    name: str
    description: str
    aliases: tuple[str, ...] = ()
    # Folder names tried under a data root; `benchmark/<name>` is tried too.
    local_folders: tuple[str, ...] = ()
    # Relative to `<cache>/datasets`: where archives are extracted, and where
    # the set's folder then is.
    extract_into: str = "."
    folder: str = ""
    hr_archives: tuple[Resource, ...] = ()
    lr_archives: dict[int, Resource] = field(default_factory=dict)
    # Why the set cannot be downloaded automatically, and where to get it.
    manual_download: str | None = None

    def archives_for(self, scale: int) -> tuple[Resource, ...]:
        extra = (self.lr_archives[scale],) if scale in self.lr_archives else ()
        return self.hr_archives + extra


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in [
        BenchmarkSpec(
            "Set5",
            "5 images (Bevilacqua et al. 2012)",
            local_folders=("Set5",),
            folder="benchmark/Set5",
            hr_archives=(EDSR_BENCHMARK_ARCHIVE,),
        ),
        BenchmarkSpec(
            "Set14",
            "14 images (Zeyde et al. 2010); bridge is grayscale",
            local_folders=("Set14",),
            folder="benchmark/Set14",
            hr_archives=(EDSR_BENCHMARK_ARCHIVE,),
        ),
        BenchmarkSpec(
            "BSD100",
            "100 natural images of the Berkeley segmentation test set",
            aliases=("B100",),
            local_folders=("BSD100", "B100"),
            folder="benchmark/B100",
            hr_archives=(EDSR_BENCHMARK_ARCHIVE,),
        ),
        BenchmarkSpec(
            "Urban100",
            "100 urban scenes rich in regular structure (Huang et al. 2015)",
            local_folders=("Urban100",),
            folder="benchmark/Urban100",
            hr_archives=(EDSR_BENCHMARK_ARCHIVE,),
        ),
        BenchmarkSpec(
            "Manga109",
            "109 manga volumes' covers (Matsui et al. 2017)",
            local_folders=("Manga109",),
            folder="Manga109",
            manual_download="its licence allows distribution only on request: ask for it "
            "at http://www.manga109.org/en/download.html",
        ),
        BenchmarkSpec(
            "DIV2K-valid",
            "DIV2K validation images 0801-0900 (Agustsson & Timofte 2017)",
            aliases=("DIV2K", "DIV2K_valid"),
            local_folders=("DIV2K-valid", "DIV2K"),
            extract_into="DIV2K",
            folder="DIV2K",
            hr_archives=(DIV2K_VALID_HR_ARCHIVE,),
            lr_archives=DIV2K_VALID_LR_BICUBIC_ARCHIVES,
        ),
    ]
}


class ImagePair(NamedTuple):
    name: str
    hr_path: Path
    lr_path: Path | None  # None: LR is made from HR by MATLAB-exact bicubic


@dataclass
class BenchmarkSet:
    """The HR/LR pairs of one set at one scale; images are read on demand."""

    name: str
    scale: int
    folder: Path
    pairs: list[ImagePair]

    def __len__(self) -> int:
        return len(self.pairs)

    def iter_pairs(
        self, degradation: FixedDegradation | None = None, seed: int = 0
    ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Yield (name, HR, LR) with HR cropped to exactly `scale` times LR.

        With a `degradation`, LR is what it makes of the pair; its draws
        depend on `seed` and the image's name only.
        """
        for pair in self.pairs:
            hr, lr = load_pair(pair, self.scale)
            if degradation is not None:
                lr = degradation.degrade(hr, self.scale, lr=lr, key=pair.name, seed=seed).image
            yield pair.name, hr, lr


def benchmark_names() -> list[str]:
    return list(BENCHMARKS)


def load_benchmark(
    name_or_path: str | os.PathLike[str],
    scale: int,
    root: str | os.PathLike[str] | None = None,
    *,
    progress: bool = True,
) -> BenchmarkSet:
    """Find a test set by path or registry name and list its HR/LR pairs.

    Order: an existing path; `<root>/<name>` (also `<root>/benchmark/<name>`);
    the cache, downloading the set there if needed.
    """
    if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
        raise SisrError(f"scale must be a positive integer, not {scale!r}")
    as_path = Path(name_or_path).expanduser()
    if as_path.exists():
        return load_folder(as_path, scale)
    text = str(name_or_path)
    spec = find_spec(text)
    folder_names = (spec.local_folders if spec else ()) or (text,)
    if root is not None:
        root = Path(root).expanduser()
        for folder_name in folder_names:
            for candidate in (root / folder_name, root / "benchmark" / folder_name):
                if candidate.is_dir():
                    return load_folder(candidate, scale, name=spec.name if spec else None)
    if spec is None:
        looked = f" or under {root}" if root is not None else ""
        raise SisrError(
            f"{text}: no such folder{looked}, and not a known test set (known: {', '.join(benchmark_names())})"
        )
    return load_folder(_cached_folder(spec, scale, progress), scale, name=spec.name)


def find_spec(name: str) -> BenchmarkSpec | None:
    """Registry lookup ignoring case, `-`, `_` and spaces ("b100" finds BSD100)."""
    wanted = _lookup_key(name)
    for spec in BENCHMARKS.values():
        if wanted in {_lookup_key(alias) for alias in (spec.name, *spec.aliases)}:
            return spec
    return None


def load_folder(folder: str | Path, scale: int, name: str | None = None) -> BenchmarkSet:
    """List the pairs of a local folder in any of the supported layouts."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SisrError(f"{folder}: not a folder of test images")
    hr_dir, lr_dir = _layout(folder, scale)
    hr_paths = _image_files(hr_dir)
    if not hr_paths:
        raise SisrError(f"{hr_dir}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    if lr_dir is not None and not lr_dir.is_dir():
        log.info("%s: no LR images for x%d; making them with MATLAB-exact bicubic", folder, scale)
        lr_dir = None
    pairs = [ImagePair(path.stem, path, _find_lr(path, lr_dir, scale) if lr_dir else None) for path in hr_paths]
    return BenchmarkSet(name or folder.name, scale, folder, pairs)


def load_pair(pair: ImagePair, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Read (HR, LR) and crop HR to LR size times `scale` (top-left anchored)."""
    hr = read_image(pair.hr_path)
    if pair.lr_path is None:
        hr = crop_to_multiple(hr, scale, pair.hr_path)
        return hr, _downscale(hr, scale)
    lr = read_image(pair.lr_path)
    expected = (hr.shape[0] // scale, hr.shape[1] // scale)
    if lr.shape[:2] != expected:
        raise SisrError(
            f"{pair.lr_path}: LR is {lr.shape[1]}x{lr.shape[0]} but {pair.hr_path} is "
            f"{hr.shape[1]}x{hr.shape[0]}, which at x{scale} needs {expected[1]}x{expected[0]}"
        )
    if lr.ndim != hr.ndim:
        raise SisrError(f"{pair.lr_path}: {_describe_channels(lr)} but {pair.hr_path} is {_describe_channels(hr)}")
    return hr[: expected[0] * scale, : expected[1] * scale], lr


def crop_to_multiple(image: np.ndarray, scale: int, path: Path | None = None) -> np.ndarray:
    """Drop the last rows/columns so both sides divide by `scale` (as the published LR sets did)."""
    height, width = (image.shape[0] // scale) * scale, (image.shape[1] // scale) * scale
    if height == 0 or width == 0:
        where = f"{path}: " if path else ""
        raise SisrError(f"{where}image is {image.shape[1]}x{image.shape[0]}, too small for x{scale}")
    return image[:height, :width]


def read_image(path: Path) -> np.ndarray:
    """Read an 8-bit image: RGB as HxWx3, grayscale as HxW, both uint8.

    Alpha is dropped (test sets are opaque) and 16-bit images are scaled to
    8 bits, the depth every published benchmark number was measured at.
    """
    image = to_uint8(image_io.read_image(path))
    if image.ndim == 3 and image.shape[2] in (1, 2):
        return image[:, :, 0]
    return image[:, :, :3] if image.ndim == 3 else image


# --- helpers -----------------------------------------------------------------


def _lookup_key(name: str) -> str:
    return re.sub(r"[-_\s]", "", name.lower())


def _datasets_dir() -> Path:
    return cache_dir() / "datasets"


def _cached_folder(spec: BenchmarkSpec, scale: int, progress: bool) -> Path:
    datasets = _datasets_dir()
    folder = datasets / spec.folder
    if spec.manual_download is not None:
        if folder.is_dir():
            return folder
        raise SisrError(
            f"{spec.name} cannot be downloaded automatically: {spec.manual_download}. "
            f"Put its images in {folder / 'HR'} (or pass a folder or --data-root)"
        )
    for archive in spec.archives_for(scale):
        fetch_and_extract(archive, datasets / spec.extract_into, progress=progress)
    if not folder.is_dir():
        raise SisrError(
            f"{folder}: missing after extracting {spec.name}'s archives; delete "
            f"{datasets / spec.extract_into} to extract them again"
        )
    return folder


def _layout(folder: Path, scale: int) -> tuple[Path, Path | None]:
    """(HR folder, LR folder or None) of a set folder."""
    if (folder / "HR").is_dir():
        return folder / "HR", folder / "LR_bicubic" / f"X{scale}"
    if (folder / "DIV2K_valid_HR").is_dir():
        return folder / "DIV2K_valid_HR", folder / "DIV2K_valid_LR_bicubic" / f"X{scale}"
    if _image_files(folder):
        return folder, None
    raise SisrError(
        f"{folder}: no test images: expected HR/ (with LR_bicubic/X{scale}/), "
        f"DIV2K_valid_HR/ (with DIV2K_valid_LR_bicubic/X{scale}/) or image files"
    )


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.iterdir()
        if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()
    )


def _find_lr(hr_path: Path, lr_dir: Path, scale: int) -> Path:
    stem = hr_path.stem
    suffixes = dict.fromkeys((hr_path.suffix, ".png", *IMAGE_SUFFIXES))
    candidates = [lr_dir / f"{stem}{tag}{suffix}" for suffix in suffixes for tag in (f"x{scale}", "")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise SisrError(
        f"{hr_path}: no LR image for it in {lr_dir} (looked for {candidates[0].name} and {candidates[1].name})"
    )


def _downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    # Imported here so that listing and reading sets works without the
    # resampling code (and its import cost) until an LR image must be made.
    from ..imaging import bicubic_downgrade

    return bicubic_downgrade(hr, scale)[1]


def _describe_channels(image: np.ndarray) -> str:
    return "grayscale" if image.ndim == 2 else f"{image.shape[2]}-channel"
