"""The pretrained model zoo: published weights of other implementations, by name.

A zoo name is `<model>@<source>`, e.g. `edsr-baseline-x4@official` (the
EDSR authors' PyTorch release) or `wdsr-b-32-x4@krasser` (Krasser's
TensorFlow reference code). On first use the published file is downloaded
(resumable, verified), unpacked where it is an archive, converted to a sisr
weight file `cache_dir()/weights/<name>.safetensors` that records where it
came from and under which licence, and from then on loaded directly.

Checksums: every download must be pinned by a full sha256 recorded here.
An entry without one is refused, naming the entry, unless the user trusts it
explicitly (`sisr download NAME --trust-unpinned`, or `SISR_TRUST_UNPINNED=1`
for any command): the first download's hash is then recorded beside it and
every later download must match it (trust on first use, see `sisr.download`).
The official EDSR files also carry the first 8 hex digits of their sha256 in
their names (the torch.hub naming convention), which is checked in addition.
Every conversion is also checked against the architecture the entry
advertises, so a file of the wrong network is refused rather than cached.
"""

from __future__ import annotations

import difflib
import logging
import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..download import (
    TRUST_UNPINNED_ENV_VAR,
    Unreachable,
    cache_dir,
    download,
    downloads_dir,
    extract,
    recorded_sha256_path,
    sha256_of_file,
    trust_unpinned_from_env,
)
from ..errors import SisrError
from ..files import temporary_folder
from ..model import SRModel
from ..models import ModelSpec
from .native import load_weight_file, save_model

log = logging.getLogger("sisr")


@dataclass(frozen=True)
class ZooEntry:
    """One published weight file: where it is, what network it holds, under which licence.

    `arch` and `args` are what the conversion must yield (checked on arrival);
    `preset` names the sisr preset of the same architecture. `sha256` pins the
    file; without it the entry is downloaded only when the user trusts it
    explicitly, and `checksum_note` says why there is none. `sha256_prefix`
    (the prefix a file name carries) is checked as well where there is one.
    """

    name: str
    preset: str
    arch: str
    args: dict[str, Any]
    url: str
    source_format: str  # "torch" or "keras-h5", as sisr.weights.detect_format names them
    licence: str
    description: str
    member: str | None = None  # the weight file inside the archive; None when `url` is the weight file
    sha256: str | None = None
    sha256_prefix: str | None = None
    checksum_note: str = ""
    reported: dict[str, float] = field(default_factory=dict)  # published PSNRs in dB, by where measured

    @property
    def source(self) -> str:
        return self.name.partition("@")[2]

    @property
    def scale(self) -> int:
        return int(self.args["scale"])

    @property
    def filename(self) -> str:
        """The downloaded file's name: the last part of its URL."""
        return Path(urllib.parse.urlsplit(self.url).path).name

    @property
    def pinned(self) -> bool:
        """Whether the repository records the file's full sha256."""
        return self.sha256 is not None


# --- the registry --------------------------------------------------------------------------

ZOO: dict[str, ZooEntry] = {}


def _register(entry: ZooEntry) -> None:
    if entry.name in ZOO:
        raise ValueError(f"zoo entry {entry.name!r} registered twice")
    if entry.sha256 and entry.sha256_prefix and not entry.sha256.startswith(entry.sha256_prefix):
        raise ValueError(f"zoo entry {entry.name!r}: sha256 does not start with its sha256_prefix")
    if not entry.sha256 and not entry.checksum_note:
        raise ValueError(f"zoo entry {entry.name!r}: no sha256, and no checksum_note saying why")
    ZOO[entry.name] = entry


_OFFICIAL_LICENCE = "MIT (github.com/sanghyun-son/EDSR-PyTorch, LICENSE)"
_OFFICIAL_BASE = "https://cv.snu.ac.kr/research/EDSR/models/"
# File names from EDSR-PyTorch src/model/edsr.py (`url` dict). Their 8 hex digits follow the
# torch.hub naming convention (first 8 hex digits of the file's sha256). No full sha256 is
# published (EDSR-PyTorch itself loads them with load_url(check_hash=False)), and none has been
# measured here yet: these entries need --trust-unpinned until one is recorded in `sha256`.
_OFFICIAL_FILES = {
    ("edsr-baseline", 2): "edsr_baseline_x2-1bc95232.pt",
    ("edsr-baseline", 3): "edsr_baseline_x3-abf2a44e.pt",
    ("edsr-baseline", 4): "edsr_baseline_x4-6b446fab.pt",
    ("edsr", 2): "edsr_x2-0edfb8a3.pt",
    ("edsr", 3): "edsr_x3-ea3ef2c6.pt",
    ("edsr", 4): "edsr_x4-4f62e9ef.pt",
}
# PSNR on DIV2K validation 0801-0900, RGB, scale + 2 border pixels ignored, no self-ensemble:
# the table of the EDSR-PyTorch README for these very files.
_OFFICIAL_DIV2K_PSNR = {
    ("edsr-baseline", 2): 34.61,
    ("edsr-baseline", 3): 30.92,
    ("edsr-baseline", 4): 28.95,
    ("edsr", 2): 35.03,
    ("edsr", 3): 31.26,
    ("edsr", 4): 29.25,
}

for (_family, _scale), _file in _OFFICIAL_FILES.items():
    _large = _family == "edsr"
    _register(
        ZooEntry(
            name=f"{_family}-x{_scale}@official",
            preset=f"{_family}-x{_scale}",
            arch="edsr",
            args={
                "scale": _scale,
                "num_filters": 256 if _large else 64,
                "num_blocks": 32 if _large else 16,
                "res_scale": 0.1 if _large else 1.0,
                "input_scale": 255.0,
            },
            url=_OFFICIAL_BASE + _file,
            source_format="torch",
            licence=_OFFICIAL_LICENCE,
            description=(
                f"{'EDSR' if _large else 'EDSR baseline'} x{_scale} of the EDSR authors "
                f"(EDSR-PyTorch release), trained on DIV2K bicubic; works on 0..255 values"
            ),
            sha256_prefix=_file.rsplit("-", 1)[1].split(".")[0],
            checksum_note="only the first 8 hex digits of its sha256 are published, in its name",
            reported={"DIV2K val (RGB), EDSR-PyTorch README": _OFFICIAL_DIV2K_PSNR[(_family, _scale)]},
        )
    )

_KRASSER_LICENCE = "Apache-2.0 (github.com/krasserm/super-resolution)"
_KRASSER_BASE = "https://martin-krasser.de/sisr/"
# The archives and the paths inside them are those of the krasserm/super-resolution README
# ("Pre-trained weights", `model.load_weights('weights/...')`) and example-srgan.ipynb.
_KRASSER_NO_CHECKSUM = "no checksum is published for Krasser's archives"

_register(
    ZooEntry(
        name="edsr-16-x4@krasser",
        preset="edsr-baseline-x4",
        arch="edsr",
        # His EDSR normalises with (x - mean * 255) / 127.5, i.e. input_scale 2.
        args={"scale": 4, "num_filters": 64, "num_blocks": 16, "res_scale": 1.0, "input_scale": 2.0},
        url=_KRASSER_BASE + "weights-edsr-16-x4.tar.gz",
        member="weights/edsr-16-x4/weights.h5",
        source_format="keras-h5",
        licence=_KRASSER_LICENCE,
        description="EDSR baseline x4 (16 blocks, 64 filters) of Krasser's TensorFlow code, trained on DIV2K bicubic x4",
        checksum_note=_KRASSER_NO_CHECKSUM,
        reported={"DIV2K val (RGB, 6+4 px border included), Krasser README": 28.89},
    )
)
_register(
    ZooEntry(
        name="wdsr-b-32-x4@krasser",
        preset="wdsr-b-32-x4",
        arch="wdsr",
        args={"scale": 4, "block": "b", "num_filters": 32, "num_blocks": 32, "expansion": 6, "linear": 0.8},
        url=_KRASSER_BASE + "weights-wdsr-b-32-x4.tar.gz",
        member="weights/wdsr-b-32-x4/weights.h5",
        source_format="keras-h5",
        licence=_KRASSER_LICENCE,
        description="WDSR-B x4 (32 blocks, 32 filters, expansion 6) of Krasser's TensorFlow code, trained on DIV2K "
        "bicubic x4",
        checksum_note=_KRASSER_NO_CHECKSUM,
        reported={"DIV2K val (RGB, 6+4 px border included), Krasser README": 28.91},
    )
)
for _file, _name, _what in (
    ("pre_generator.h5", "srresnet-x4@krasser", "SRResNet x4 (SRGAN generator pre-trained with MSE)"),
    ("gan_generator.h5", "srgan-x4@krasser", "SRGAN generator x4 fine-tuned adversarially (VGG54 content loss)"),
):
    _register(
        ZooEntry(
            name=_name,
            preset="srresnet-x4",
            arch="srresnet",
            args={"scale": 4, "num_filters": 64, "num_blocks": 16},
            # Both generators come in one archive, downloaded once for both entries.
            url=_KRASSER_BASE + "weights-srgan.tar.gz",
            member=f"weights/srgan/{_file}",
            source_format="keras-h5",
            licence=_KRASSER_LICENCE,
            description=f"{_what} of Krasser's TensorFlow code, trained on DIV2K bicubic x4",
            checksum_note=_KRASSER_NO_CHECKSUM,
        )
    )
del _family, _scale, _file, _large, _name, _what


def list_pretrained() -> list[ZooEntry]:
    return list(ZOO.values())


def is_zoo_name(text: str) -> bool:
    """A `<model>@<source>` name (a weight file path never needs an `@` to be recognised)."""
    return "@" in text and os.sep not in text and not text.endswith((".safetensors", ".pt", ".pth", ".h5"))


def close_pretrained_names(name: str) -> list[str]:
    """Zoo names a mistyped or source-less name probably meant."""
    model = name.partition("@")[0]
    same_model = [known for known in ZOO if known.partition("@")[0] == model]
    return same_model + [
        known for known in difflib.get_close_matches(name, ZOO, n=3, cutoff=0.6) if known not in same_model
    ]


def get_pretrained(name: str) -> ZooEntry:
    if name in ZOO:
        return ZOO[name]
    close = close_pretrained_names(name)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise SisrError(f"unknown pretrained model {name!r}{hint} (`sisr models --pretrained` lists them)")


# --- where things go ----------------------------------------------------------------------------


def weights_dir() -> Path:
    return cache_dir() / "weights"


def converted_path(entry: ZooEntry) -> Path:
    """The sisr weight file a zoo entry becomes."""
    return weights_dir() / f"{entry.name}.safetensors"


def source_path(entry: ZooEntry) -> Path:
    """Where the published file is downloaded to (or put by hand on an offline machine)."""
    return downloads_dir() / "weights" / entry.filename


def is_cached(entry: ZooEntry) -> bool:
    return converted_path(entry).is_file()


# --- fetching and converting -------------------------------------------------------------------


def check_pinned(entry: ZooEntry, trust: bool | None = None) -> None:
    """Refuse to download an entry that no full sha256 pins, unless the user trusts it (`trust`, else the env).

    Such a file could be anything the server sends; trusting it records the
    hash of what arrives, which every later download must then match.
    """
    if entry.pinned or (trust_unpinned_from_env() if trust is None else trust):
        return
    raise SisrError(
        f"pretrained model {entry.name!r}: sisr records no full sha256 for {entry.url} "
        f"({entry.checksum_note or 'none published'}), so its download cannot be verified. To download it "
        f"anyway and record the sha256 of what arrives (every later download must match it): "
        f"`sisr download {entry.name} --trust-unpinned`, or {TRUST_UNPINNED_ENV_VAR}=1 for any command"
    )


def _fetch_source(entry: ZooEntry, progress: bool, force: bool) -> Path:
    try:
        return download(
            entry.url,
            source_path(entry),
            entry.sha256,
            sha256_prefix=entry.sha256_prefix,
            force=force,
            progress=progress,
        )
    except Unreachable as error:
        again = "" if entry.pinned else f" (with --trust-unpinned or {TRUST_UNPINNED_ENV_VAR}=1 again)"
        raise SisrError(
            f"pretrained model {entry.name!r}: {error} The next run{again} converts it from there."
        ) from None
    except SisrError as error:
        raise SisrError(f"pretrained model {entry.name!r}: {error}") from None


def _weight_file_in(root: Path, entry: ZooEntry, archive: Path) -> Path:
    """The entry's member in an unpacked archive, tolerating a leading folder such as `./`."""
    assert entry.member is not None
    exact = root / entry.member
    if exact.is_file():
        return exact
    found = [path for path in root.rglob(Path(entry.member).name) if path.as_posix().endswith("/" + entry.member)]
    if len(found) == 1:
        return found[0]
    present = sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())
    raise SisrError(f"{archive}: no {entry.member} inside (it holds {', '.join(present[:8]) or 'nothing'})")


def _check_architecture(entry: ZooEntry, arch: str, args: dict[str, Any], source: str) -> None:
    different = {key: args.get(key) for key, value in entry.args.items() if args.get(key) != value}
    if arch != entry.arch or different:
        raise SisrError(
            f"{source}: holds a {arch} network with {args}, not the {entry.arch} with {entry.args} that "
            f"{entry.name!r} promises (differs in {', '.join(different) or 'architecture'})"
        )


def _convert(entry: ZooEntry, weight_file: Path, downloaded: Path, dst: Path) -> Path:
    from .convert import build_imported, detect_format, import_foreign

    kind = detect_format(weight_file)
    if kind != entry.source_format:
        raise SisrError(f"{weight_file}: a {kind} file, but {entry.name!r} is published as {entry.source_format}")
    imported = import_foreign(weight_file)
    _check_architecture(entry, imported.arch, imported.args, str(weight_file))
    model = build_imported(imported, str(weight_file))
    metadata = {
        "zoo_name": entry.name,
        "zoo_url": entry.url,
        "licence": entry.licence,
        "description": entry.description,
        "source_format": imported.source_format,
        "source_file": entry.member or entry.filename,
        "source_sha256": sha256_of_file(downloaded),
    }
    spec = ModelSpec(imported.arch, imported.args)
    return save_model(model, dst, spec=spec, metadata=metadata, overwrite=True)


def fetch_pretrained(
    name: str, *, force: bool = False, progress: bool = True, trust_unpinned: bool | None = None
) -> Path:
    """The converted sisr weight file of zoo entry `name`, downloading and converting it if need be.

    `force` downloads and converts again even when both are cached; the
    cached files are replaced only by a download that passed its checks and
    a conversion that succeeded. An entry without a full sha256 is downloaded
    only with `trust_unpinned` (None: `$SISR_TRUST_UNPINNED`). On an offline
    machine the error names the URL and the exact path to copy the file to;
    the next call then converts it from there.
    """
    entry = get_pretrained(name)
    dst = converted_path(entry)
    if dst.is_file() and not force:
        return dst
    check_pinned(entry, trust_unpinned)
    downloaded = _fetch_source(entry, progress, force)
    try:
        path = _unpack_and_convert(entry, downloaded, dst)
    except SisrError as error:
        # A file that cannot be made into the promised network earns no trust: drop it and
        # any hash recorded for it, so the next attempt downloads afresh.
        downloaded.unlink(missing_ok=True)
        recorded_sha256_path(downloaded).unlink(missing_ok=True)
        raise SisrError(f"pretrained model {entry.name!r}: {error}; the download was deleted") from None
    log.info("%s: converted %s into %s", entry.name, entry.filename, path)
    return path


def _unpack_and_convert(entry: ZooEntry, downloaded: Path, dst: Path) -> Path:
    if entry.member is None:
        return _convert(entry, downloaded, downloaded, dst)
    # A private folder per call: two processes converting at once do not share half-unpacked files.
    with temporary_folder(weights_dir(), f"{entry.name}.unpacked") as unpacked:
        extract(downloaded, unpacked / "archive")
        return _convert(entry, _weight_file_in(unpacked / "archive", entry, downloaded), downloaded, dst)


def load_pretrained(name: str, device: str | torch.device = "cpu", *, progress: bool = True) -> SRModel:
    """The model of zoo entry `name` with its weights, in eval mode (downloaded on first use)."""
    entry = get_pretrained(name)
    path = fetch_pretrained(name, progress=progress)
    try:
        return load_weight_file(path, device, name=entry.name, source="zoo", licence=entry.licence)
    except SisrError as error:
        trust = "" if entry.pinned else " --trust-unpinned"
        raise SisrError(f"{error}; `sisr download {name} --force{trust}` fetches and converts it again") from None
