"""Weight files of other implementations -> sisr networks and sisr weight files.

The format is recognised from the file's first bytes, not its name: HDF5
(Keras 2, `sisr.weights.keras`), a PyTorch checkpoint (official EDSR or
BasicSR, `sisr.weights.torch_import`) or a sisr safetensors file. The
importers read the architecture off the file; the user names nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from ..download import sha256_of_file
from ..errors import SisrError
from ..model import SRModel
from ..models import ModelSpec
from .imported import ImportedWeights
from .native import FORMAT_KEYS, build_for_weights, check_runs, load_state_dict_strict, load_weight_file, save_model

FOREIGN_SUFFIXES = (".h5", ".hdf5", ".pt", ".pth")

_ZIP_SIGNATURE = b"PK\x03\x04"  # torch.save since PyTorch 1.6
_PICKLE_PROTOCOL_2 = b"\x80\x02"  # legacy torch.save


def _zip_format(path: Path) -> str:
    """torch.save writes a zip with `<name>/data.pkl`; Keras 3 `.keras` files are zips too."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    # zipfile names damage in a directory as several types: an unknown version is NotImplementedError
    except (zipfile.BadZipFile, NotImplementedError, ValueError, EOFError, OSError) as error:
        raise SisrError(f"{path}: a damaged zip archive ({error})") from None
    if any(name.endswith("data.pkl") for name in names):
        return "torch"
    if "model.weights.h5" in names:
        raise SisrError(f"{path}: a Keras 3 `.keras` archive; only Keras 2 HDF5 weight files (.h5) are read")
    raise SisrError(f"{path}: a zip archive ({', '.join(names[:5])}) that is not a PyTorch checkpoint")


def detect_format(path: str | os.PathLike) -> str:
    """`keras-h5`, `torch` or `sisr`, from the file's first bytes."""
    from .keras import HDF5_SIGNATURE

    path = Path(path)
    if not path.is_file():
        raise SisrError(f"{path}: weight file not found")
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head.startswith(HDF5_SIGNATURE):
        return "keras-h5"
    if head.startswith(_ZIP_SIGNATURE):
        return _zip_format(path)
    if head.startswith(_PICKLE_PROTOCOL_2):
        return "torch"
    if len(head) >= 9 and head[8:9] == b"{":  # safetensors: u64 header length, then JSON
        return "sisr"
    raise SisrError(
        f"{path}: not a weight file sisr can read (first bytes {head[:8]!r}); expected Keras HDF5 (.h5), "
        "a PyTorch checkpoint (.pt/.pth) or a sisr .safetensors file"
    )


def import_foreign(path: str | os.PathLike) -> ImportedWeights:
    """Read a Keras or PyTorch weight file into a sisr architecture and state dict."""
    kind = detect_format(path)
    if kind == "keras-h5":
        try:
            import h5py  # noqa: F401
        except ImportError:
            raise SisrError(f"{path}: reading Keras HDF5 files needs h5py: pip install 'sisr[keras]'") from None
        from .keras import import_keras_h5

        return import_keras_h5(path)
    if kind == "torch":
        from .torch_import import import_torch_checkpoint

        return import_torch_checkpoint(path)
    raise SisrError(f"{path}: already a safetensors file; load it with sisr.load_model")


def _provenance(path: Path, imported: ImportedWeights) -> dict[str, str]:
    digest = sha256_of_file(path)  # in chunks: the file may be as large as the weight limit
    metadata = {"source_file": path.name, "source_format": imported.source_format, "source_sha256": digest}
    if imported.notes:
        metadata["import_notes"] = json.dumps(imported.notes)
    return metadata


def build_imported(imported: ImportedWeights, source: str) -> nn.Module:
    """The sisr network for an import, with its weights loaded strictly, in eval mode.

    The arguments were read off a few of the tensors (the head's width, the
    blocks' count): the network is built within what all of them allow.
    """
    spec = ModelSpec(imported.arch, imported.args)
    model = build_for_weights(spec, {key: tuple(value.shape) for key, value in imported.tensors.items()}, source)
    load_state_dict_strict(model, imported.tensors, source)
    if spec.scale is not None:
        check_runs(model.eval(), spec.scale, source)
    return model.eval()


def load_foreign(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> SRModel:
    """A sisr model from a Keras/PyTorch weight file, converted in memory.

    Its metadata records where it came from, as a converted file's would.
    """
    path = Path(path)
    imported = import_foreign(path)
    network = build_imported(imported, str(path)).to(device)
    return SRModel.from_network(
        network,
        name=path.name,
        spec=ModelSpec(imported.arch, imported.args),
        source="file",
        path=path,
        metadata=_provenance(path, imported),
    )


def convert(
    src: str | os.PathLike, dst: str | os.PathLike, overwrite: bool = False, dtype: torch.dtype | None = None
) -> Path:
    """Write a foreign weight file as a sisr safetensors file, with its provenance in the metadata.

    A sisr file is accepted too (e.g. to halve it with `dtype=torch.float16`).
    """
    src = Path(src)
    if detect_format(src) == "sisr":
        model = load_weight_file(src)
        metadata = {key: value for key, value in model.info.metadata.items() if key not in FORMAT_KEYS}
    else:
        model = load_foreign(src)
        metadata = dict(model.info.metadata)
    return save_model(model, dst, dtype=dtype, metadata=metadata, overwrite=overwrite)
