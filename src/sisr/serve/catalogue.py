"""The models a server offers: the bundled defaults, zoo entries already downloaded, files in --models-dir.

A client names a model by the `name` this catalogue lists, never by a path:
the server looks the name up here and loads the file it found itself. Zoo
entries are offered only once they are in the cache, so no request makes
the server download anything.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SisrError

if TYPE_CHECKING:
    from ..model import SRModel

log = logging.getLogger("sisr")

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".h5")
BICUBIC = "bicubic"
BICUBIC_SCALES = (2, 3, 4)
# Every upload looks its model up: a listing this recent is used as it is (a file put in --models-dir or a
# zoo entry downloaded shows up within a second).
LISTING_TTL_S = 1.0


@dataclass(frozen=True)
class ModelEntry:
    """One model as the API lists it; `path` (where the server found it) stays on the server."""

    name: str
    scale: int
    scales: tuple[int, ...]
    parameters: int
    source: str
    licence: str
    arch: str
    denoise: bool = False  # no network sisr loads has a denoise-strength input yet
    default: bool = False
    path: Path | None = field(default=None, compare=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scale": self.scale,
            "scales": list(self.scales),
            "parameters": self.parameters,
            "source": self.source,
            "licence": self.licence,
            "arch": self.arch,
            "denoise": self.denoise,
            "default": self.default,
        }


@dataclass(frozen=True)
class _Described:
    arch: str
    scale: int
    parameters: int
    licence: str


class Catalogue:
    """The models on offer, looked up by name; weight files are described once (by size and mtime)."""

    def __init__(self, models_dir: Path | None, default_model: str) -> None:
        self.models_dir = None if models_dir is None else Path(models_dir)
        self.default_model = default_model
        self._described: dict[tuple[Path, int, int], _Described] = {}
        self._lock = threading.Lock()
        self._listed: tuple[list[ModelEntry] | None, float] = (None, 0.0)

    def entries(self) -> list[ModelEntry]:
        """Bundled defaults, cached zoo entries, --models-dir files, then bicubic; looked for afresh every second."""
        with self._lock:
            listed, at = self._listed
        if listed is not None and time.monotonic() - at < LISTING_TTL_S:
            return listed
        found = self._look()
        with self._lock:
            self._listed = (found, time.monotonic())
        return found

    def _look(self) -> list[ModelEntry]:
        from ..weights.bundled import BUNDLED, BUNDLED_LICENCE
        from ..weights.zoo import converted_path, is_cached, list_pretrained

        found = [
            self._entry(name, bundled.path, "bundled", BUNDLED_LICENCE)
            for name, bundled in BUNDLED.items()
            if bundled.path.is_file()
        ]
        found += [
            self._entry(entry.name, converted_path(entry), entry.source, entry.licence)
            for entry in list_pretrained()
            if is_cached(entry)
        ]
        for path in self._files_in_models_dir():
            try:
                found.append(self._entry(path.name, path, "file", ""))
            except SisrError as error:  # one bad file in the folder does not hide the others
                log.warning("--models-dir: left out %s", error)
        found.append(
            ModelEntry(
                BICUBIC, 4, BICUBIC_SCALES, 0, BICUBIC, "MIT (sisr)", BICUBIC, default=self.default_model == BICUBIC
            )
        )
        return found

    def find(self, name: str) -> ModelEntry | None:
        for entry in self.entries():
            if entry.name == name:
                return entry
        return None

    def _files_in_models_dir(self) -> list[Path]:
        if self.models_dir is None or not self.models_dir.is_dir():
            return []
        return sorted(
            path for path in self.models_dir.iterdir() if path.suffix.lower() in WEIGHT_SUFFIXES and path.is_file()
        )

    def _entry(self, name: str, path: Path, source: str, licence: str) -> ModelEntry:
        described = self._describe(path)
        return ModelEntry(
            name=name,
            scale=described.scale,
            scales=(described.scale,),
            parameters=described.parameters,
            source=source,
            licence=licence or described.licence,
            arch=described.arch,
            default=name == self.default_model,
            path=path,
        )

    def _describe(self, path: Path) -> _Described:
        stat = path.stat()
        key = (path.resolve(), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key not in self._described:
                self._described[key] = _describe_weight_file(path)
            return self._described[key]


def _describe_weight_file(path: Path) -> _Described:
    """Architecture, scale and parameter count: from a sisr file's header, else by loading it once."""
    from ..weights import detect_format

    if detect_format(path) == "sisr":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                parameters = sum(math.prod(handle.get_slice(key).get_shape()) for key in handle.keys())
            args = json.loads(metadata["args"])
            return _Described(str(metadata["arch"]), int(args["scale"]), parameters, metadata.get("licence", ""))
        except Exception as error:  # a damaged header: say which file, as load_model would
            raise SisrError(f"{path}: not a sisr weight file sisr can describe ({type(error).__name__})") from None
    from ..models import count_parameters
    from ..weights import load_model

    model = load_model(path)
    return _Described(
        model.info.arch or "network", model.scale, count_parameters(model.network), model.info.licence or ""
    )


def load_entry(entry: ModelEntry, scale: int) -> SRModel:
    """The model of a catalogue entry, from the file the server found (never downloaded here)."""
    from ..weights import load_bundled, load_model

    if entry.name == BICUBIC:
        return load_model(BICUBIC, scale=scale)
    if entry.path is None:
        raise SisrError(f"{entry.name}: no weight file")
    if entry.source == "bundled":
        return load_bundled(entry.name)
    return load_model(entry.path).renamed(entry.name)
