"""DIV2K (Agustsson & Timofte, NTIRE 2017): the training set of EDSR and WDSR.

800 training images (0001-0800) and 100 validation images (0801-0900) of
about 2K pixels, with LR images for x2, x3 and x4 made by MATLAB bicubic
("bicubic") or by an undisclosed degradation ("unknown"). The archives are
downloaded (resumable, checked against the sha256 sums published by
TensorFlow Datasets) and extracted once into `<data root>/DIV2K`:

    DIV2K/DIV2K_train_HR/0001.png
    DIV2K/DIV2K_train_LR_bicubic/X4/0001x4.png
    DIV2K/DIV2K_valid_LR_unknown/X2/0801x2.png

The data root is `--data-root` or `<sisr cache>/datasets`, the folder the
benchmark sets use too. Folders already there in this layout (unpacked by
hand) are used as they are.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..download import Resource, cache_dir, download, extract, extraction_marker
from ..errors import SisrError
from .training import TrainingPair, paired_folders

log = logging.getLogger("sisr")

DIV2K_URL = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"
SUBSETS = {"train": (1, 800), "valid": (801, 900)}
DOWNGRADES = ("bicubic", "unknown")
SCALES = (2, 3, 4)

# sha256 of each archive as published by TensorFlow Datasets
# (tensorflow_datasets/datasets/div2k/checksums.tsv), with the byte sizes listed there.
DIV2K_SHA256 = {
    "DIV2K_train_HR.zip": "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335",  # 3530603713 B
    "DIV2K_valid_HR.zip": "20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc",  # 448993893 B
    "DIV2K_train_LR_bicubic_X2.zip": "a53a424317575838dadce4bcd97cf7b744d6855f43740ed5f0245af3cf4bd850",
    "DIV2K_train_LR_bicubic_X3.zip": "ad5c8e5507e2765823d3c2c5bd0934842efcd487c5370604c224090898b3163a",
    "DIV2K_train_LR_bicubic_X4.zip": "f006b837f4eb52b82909aa01478e6d6d199eefce932179491d0c9dbb706dde3a",
    "DIV2K_train_LR_unknown_X2.zip": "f166eeba119fc55bfc9a99c05561980e7a965382f36640ce8ef626c9f61d122c",
    "DIV2K_train_LR_unknown_X3.zip": "b6455af3b2aa02d76ae3238c49d7aae3b48b0acdc44b5bdc0f4c02d40ebcb43b",
    "DIV2K_train_LR_unknown_X4.zip": "d131c7aad51e0abbdc4433362ce899e5e75f40b9847ead70ee995188e8fd0adb",
    "DIV2K_valid_LR_bicubic_X2.zip": "60eed9875c697df51204aa579e2a699e1d5215095788a097ff54dd17e2664d57",
    "DIV2K_valid_LR_bicubic_X3.zip": "04b9a2ed3b4a0715d3924d3ae8514830c3328fac8d30512ce716d6f419e052a3",
    "DIV2K_valid_LR_bicubic_X4.zip": "a50a5d1c4b88de4e8d300d8fb2b904c52fe93b2b298a4899697760d7cbb6d553",
    "DIV2K_valid_LR_unknown_X2.zip": "ec50bb084c0011130874efd2ed7859b46e0aa7104c565818d5271ac315e04e0a",
    "DIV2K_valid_LR_unknown_X3.zip": "ebf23a3e1ef6800cae97285d3a50d022d89b62655e685884c0abcc89eec5b809",
    "DIV2K_valid_LR_unknown_X4.zip": "e3897555a98de1157c20974fb6093105fbc1ff5e9caf7bd348f58f6da140fbef",
}


@dataclass(frozen=True)
class Div2kSource:
    """Where the archives come from; tests point it at a local server with their own sums."""

    base_url: str = DIV2K_URL
    sha256: dict[str, str | None] = field(default_factory=lambda: dict(DIV2K_SHA256))

    def resource(self, filename: str) -> Resource:
        return Resource(self.base_url.rstrip("/") + "/" + filename, self.sha256.get(filename), filename)


OFFICIAL = Div2kSource()


def _check(subset: str, scale: int, downgrade: str) -> None:
    if subset not in SUBSETS:
        raise SisrError(f"DIV2K subset must be one of {', '.join(SUBSETS)}, not {subset!r}")
    if downgrade not in DOWNGRADES:
        raise SisrError(f"DIV2K downgrade must be one of {', '.join(DOWNGRADES)}, not {downgrade!r}")
    if scale not in SCALES:
        raise SisrError(f"DIV2K has LR images for x2, x3 and x4, not x{scale}")


def hr_archive(subset: str) -> str:
    return f"DIV2K_{subset}_HR.zip"


def lr_archive(subset: str, downgrade: str, scale: int) -> str:
    return f"DIV2K_{subset}_LR_{downgrade}_X{scale}.zip"


def hr_folder(root: Path, subset: str) -> Path:
    return root / f"DIV2K_{subset}_HR"


def lr_folder(root: Path, subset: str, downgrade: str, scale: int) -> Path:
    return root / f"DIV2K_{subset}_LR_{downgrade}" / f"X{scale}"


def div2k_root(data_root: str | os.PathLike | None = None) -> Path:
    """The folder holding the DIV2K_* folders: `<data_root>/DIV2K`, or `<data_root>` itself
    when the folders are there already; `<sisr cache>/datasets/DIV2K` without a data root."""
    if data_root is None or str(data_root) == "":
        return cache_dir() / "datasets" / "DIV2K"
    data_root = Path(data_root).expanduser()
    if not (data_root / "DIV2K").is_dir() and any(data_root.glob("DIV2K_*_HR")):
        return data_root
    return data_root / "DIV2K"


def _archives_dir(data_root: str | os.PathLike | None) -> Path:
    if data_root is None or str(data_root) == "":
        return cache_dir() / "downloads"
    return Path(data_root).expanduser() / "downloads"


def _has_images(folder: Path) -> bool:
    return folder.is_dir() and any(path.suffix.lower() == ".png" for path in folder.iterdir())


def _ensure_folder(
    folder: Path, archive: str, root: Path, archives: Path, source: Div2kSource, download_missing: bool, progress: bool
) -> None:
    """Download and extract `archive` unless its folder is there already."""
    if extraction_marker(archive, root).exists() or _has_images(folder):
        return
    if not download_missing:
        raise SisrError(
            f"{folder}: DIV2K images not found, and downloading is off "
            f"(get {source.base_url}{archive} and unpack it into {root})"
        )
    resource = source.resource(archive)
    log.info("DIV2K: fetching %s into %s", archive, root)
    path = download(resource.url, archives / resource.filename, resource.sha256, progress=progress)
    extract(path, root)
    if not _has_images(folder):
        raise SisrError(f"{path}: extracted into {root}, but {folder} holds no images (not a DIV2K archive?)")


def ensure_div2k(
    subset: str = "train",
    scale: int = 4,
    downgrade: str = "bicubic",
    data_root: str | os.PathLike | None = None,
    *,
    download: bool = True,
    progress: bool = True,
    source: Div2kSource = OFFICIAL,
) -> tuple[Path, Path]:
    """(HR folder, LR folder) of a DIV2K subset, downloading and extracting what is missing."""
    _check(subset, scale, downgrade)
    root = div2k_root(data_root)
    archives = _archives_dir(data_root)
    hr, lr = hr_folder(root, subset), lr_folder(root, subset, downgrade, scale)
    _ensure_folder(hr, hr_archive(subset), root, archives, source, download, progress)
    _ensure_folder(lr, lr_archive(subset, downgrade, scale), root, archives, source, download, progress)
    return hr, lr


def div2k_pairs(
    subset: str = "train",
    scale: int = 4,
    downgrade: str = "bicubic",
    data_root: str | os.PathLike | None = None,
    *,
    limit: int | None = None,
    download: bool = True,
    progress: bool = True,
    source: Div2kSource = OFFICIAL,
) -> list[TrainingPair]:
    """The HR/LR pairs of a DIV2K subset (the first `limit` images if given), fetched if needed."""
    hr, lr = ensure_div2k(subset, scale, downgrade, data_root, download=download, progress=progress, source=source)
    pairs = paired_folders(hr, lr, scale)
    first, last = SUBSETS[subset]
    if len(pairs) != last - first + 1:
        log.warning("DIV2K %s: %d image pairs in %s, expected %d", subset, len(pairs), hr, last - first + 1)
    return pairs[:limit] if limit else pairs
