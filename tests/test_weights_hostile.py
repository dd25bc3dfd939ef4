"""Weight files written to hurt: each is refused with one line naming the file, before it costs memory or time.

Each case is a file of the kind issue 18 found (metadata that asks for 10**7
blocks, a 59 KB HDF5 file declaring 54 GB, NaN weights, ...); then the
loaders are fuzzed with mutations of small real files (tests/fuzzing.py).
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import sisr
from fuzzing import fuzz
from sisr import SisrError

# --- the files ------------------------------------------------------------------------------


def small_edsr(**args: object) -> sisr.SRModel:
    return sisr.create_model("edsr-baseline-x2", num_blocks=1, num_filters=8, **args)


def sisr_file(folder: Path, name: str = "edsr.safetensors") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return sisr.save_model(small_edsr(), folder / name)


def rewritten(path: Path, out: Path, args: object = None, **changes: object) -> Path:
    """A copy of sisr file `path` with its metadata's arguments changed (or replaced by `args`)."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    metadata["args"] = json.dumps(args if args is not None else {**json.loads(metadata["args"]), **changes})
    save_file(tensors, str(out), metadata=metadata)
    return out


def with_tensor(path: Path, out: Path, key: str, change) -> Path:
    """A copy of sisr file `path` with tensor `key` changed in place by `change(tensor)`."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    change(tensors[key])
    save_file(tensors, str(out), metadata=metadata)
    return out


def keras_file(folder: Path, name: str = "edsr.h5") -> Path:
    """Krasser's Keras layout of a small EDSR, written as tests/test_import_keras.py writes it."""
    pytest.importorskip("h5py", reason="h5py reads Keras weight files: pip install 'sisr[keras]'")
    from test_import_keras import write_edsr

    folder.mkdir(parents=True, exist_ok=True)
    return write_edsr(small_edsr().network, folder / name)


def official_state() -> dict[str, torch.Tensor]:
    from test_import_torch import official_edsr_state

    return official_edsr_state(small_edsr(input_scale=255.0).network)


@contextmanager
def at_most_modules(limit: int) -> Iterator[None]:
    """Fail (fast, instead of building for a minute) once more than `limit` modules are built."""
    from torch.nn.modules.module import register_module_module_registration_hook

    built = 0

    def count(module: torch.nn.Module, name: str, child: torch.nn.Module | None) -> None:
        nonlocal built
        built += 1
        if built > limit:
            raise AssertionError(f"over {limit} modules built for one small file")

    handle = register_module_module_registration_hook(count)
    try:
        yield
    finally:
        handle.remove()


# --- sisr safetensors ----------------------------------------------------------------------------


def test_num_blocks_beyond_the_files_tensors_is_refused_before_building(tmp_path):
    """Built before being checked, 10**7 blocks took 63 s and 7.4 GB, then a traceback (issue 18)."""
    path = rewritten(sisr_file(tmp_path), tmp_path / "blocks.safetensors", num_blocks=10**7)
    with (
        at_most_modules(1000),
        pytest.raises(SisrError, match="blocks.safetensors: edsr with .* is larger than the file's 12 tensors"),
    ):
        sisr.load_model(path)


def test_num_filters_beyond_the_files_tensors_is_refused_before_allocating(tmp_path):
    """200000 filters would be 1.4 TB of convolutions: refused at the first one larger than the file allows."""
    path = rewritten(sisr_file(tmp_path), tmp_path / "filters.safetensors", num_filters=200_000)
    with pytest.raises(SisrError, match="filters.safetensors: edsr with .* is larger than the file's 12 tensors"):
        sisr.load_model(path)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ([1, 2], "args is a list, not an object"),
        ({"scale": 2, "num_filters": 8, "num_blocks": 1, "res_scale": float("nan")}, "NaN is not a number"),
    ],
    ids=["list", "nan"],
)
def test_arguments_of_the_wrong_type_are_refused(tmp_path, args, problem):
    path = rewritten(sisr_file(tmp_path), tmp_path / "args.safetensors", args=args)
    with pytest.raises(SisrError, match=f"args.safetensors: damaged sisr metadata .*{problem}"):
        sisr.load_model(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_by_name(tmp_path, value):
    """A NaN weight makes every pixel NaN, which an image shows as black, and the command said nothing."""
    path = with_tensor(
        sisr_file(tmp_path), tmp_path / "nan.safetensors", "body.0.body.2.bias", lambda t: t.fill_(value)
    )
    with pytest.raises(SisrError, match="nan.safetensors: body.0.body.2.bias holds 8 NaN or infinite values"):
        sisr.load_model(path)


def test_finite_weights_that_overflow_the_output_are_refused(tmp_path):
    path = with_tensor(sisr_file(tmp_path), tmp_path / "huge.safetensors", "tail.1.weight", lambda t: t.fill_(3e38))
    with pytest.raises(SisrError, match="huge.safetensors: the weights make the network output NaN or infinity"):
        sisr.load_model(path)


def test_limits_are_overridable_by_environment(tmp_path, monkeypatch):
    path = sisr_file(tmp_path)
    monkeypatch.setenv("SISR_MAX_WEIGHT_BYTES", "1000")
    with pytest.raises(SisrError, match=r"edsr.safetensors: a .* file, over the weight limit .*SISR_MAX_WEIGHT_BYTES"):
        sisr.load_model(path)
    monkeypatch.setenv("SISR_MAX_WEIGHT_BYTES", "many")
    with pytest.raises(SisrError, match="SISR_MAX_WEIGHT_BYTES='many': expected a positive whole number"):
        sisr.load_model(path)
    monkeypatch.delenv("SISR_MAX_WEIGHT_BYTES")
    monkeypatch.setenv("SISR_MAX_WEIGHT_TENSORS", "5")
    with pytest.raises(SisrError, match="declares 12 tensors, over the limit of 5 .*SISR_MAX_WEIGHT_TENSORS"):
        sisr.load_model(path)
    monkeypatch.delenv("SISR_MAX_WEIGHT_TENSORS")
    assert sisr.load_model(path).scale == 2


# Values a hostile or broken file could give any argument: extremes, wrong types, overflowing numbers.
HOSTILE_VALUES = [0, -1, 1, 3, 8, 10**7, 2**63, 10**400, 0.5, 1e308, -0.0, True, None, "b", "", [], [1, 2, 3], {"a": 1}]


def test_every_argument_set_to_a_hostile_value_loads_or_is_refused(tmp_path):
    """Mutation of the metadata's meaning, where byte mutations mostly break its JSON."""
    seeds = [
        *safetensors_seeds(tmp_path / "seeds"),
        sisr.save_model(
            sisr.create_model("srresnet-x2", num_blocks=1, num_filters=4), tmp_path / "seeds" / "srresnet.safetensors"
        ),
    ]
    tried = 0
    for seed in seeds:
        with safe_open(str(seed), framework="pt") as handle:
            args = json.loads(handle.metadata()["args"])
        variants = [{key: value for key, value in args.items() if key != dropped} for dropped in args]
        variants += [{**args, key: value} for key in [*args, "unknown"] for value in HOSTILE_VALUES]
        for variant in variants:
            path = rewritten(seed, tmp_path / "variant.safetensors", args=variant)
            try:
                model = sisr.load_model(path)
            except SisrError as error:
                assert "\n" not in str(error)
            else:  # what loads must be what it says: a network of that scale giving finite output
                with torch.no_grad():
                    out = model.network(torch.rand(1, 3, 5, 4, generator=torch.Generator().manual_seed(0)))
                assert out.shape == (1, 3, 5 * model.scale, 4 * model.scale) and bool(torch.isfinite(out).all())
            tried += 1
    assert tried > 200


# --- Keras HDF5 ---------------------------------------------------------------------------------------


def _first_kernel(handle) -> tuple[object, str]:
    names = [name.decode() for name in handle.attrs["layer_names"]]
    layer = next(handle[name] for name in names if len(handle[name].attrs.get("weight_names", [])))
    return layer, layer.attrs["weight_names"][0].decode()


def test_hdf5_declaring_54_gb_is_refused_before_reading(tmp_path):
    """A chunked, compressed dataset of fill values: a small file, a (3, 3, 8, 2e8) float32 shape."""
    import h5py

    path = keras_file(tmp_path)
    with h5py.File(path, "r+") as handle:
        layer, kernel = _first_kernel(handle)
        del layer[kernel]
        layer.create_dataset(
            kernel, shape=(3, 3, 8, 200_000_000), dtype="f4", chunks=(3, 3, 8, 1000), compression="gzip"
        )
    assert path.stat().st_size < 2**20
    with pytest.raises(SisrError, match=r"edsr.h5: declares 53.6 GiB of tensors, over the limit"):
        sisr.load_model(path)


def test_hdf5_group_where_a_dataset_belongs_is_refused(tmp_path):
    import h5py

    path = keras_file(tmp_path)
    with h5py.File(path, "r+") as handle:
        layer, kernel = _first_kernel(handle)
        del layer[kernel]
        layer.create_group(kernel)
    with pytest.raises(SisrError, match=f"edsr.h5: weight '{kernel}' is a Group, not a dataset"):
        sisr.load_model(path)


def test_hdf5_weight_norm_scales_of_another_length_are_refused(tmp_path):
    """The output convolution's g is reordered for the pixel shuffle: a short one must not reach the indexing."""
    import h5py

    from test_import_keras import write_wdsr

    model = sisr.create_model("wdsr-b-16-x2", num_blocks=1, num_filters=4, expansion=2).network
    path = write_wdsr(model, tmp_path / "wdsr.h5", weightnorm=True)
    with h5py.File(path, "r+") as handle:
        names = [name.decode() for name in handle.attrs["layer_names"]]
        main = [name for name in names if len(handle[name].attrs.get("weight_names", []))][-2]
        del handle[f"{main}/{main}/g:0"]
        handle.create_dataset(f"{main}/{main}/g:0", data=np.ones(5, np.float32))
    with pytest.raises(SisrError, match=f"wdsr.h5: {main} .*g should hold 12 values"):
        sisr.load_model(path)


def test_hdf5_data_kept_in_another_file_is_not_read(tmp_path):
    """HDF5 can keep a dataset's bytes in any file (a FIFO would block forever): sisr reads only the one it was given."""
    import h5py

    path = keras_file(tmp_path)
    with h5py.File(path, "r+") as handle:
        layer, kernel = _first_kernel(handle)
        values = layer[kernel][()]
        (tmp_path / "elsewhere.bin").write_bytes(values.astype("<f4").tobytes())
        del layer[kernel]
        layer.create_dataset(
            kernel, shape=values.shape, dtype="<f4", external=[(str(tmp_path / "elsewhere.bin"), 0, values.nbytes)]
        )
    with pytest.raises(SisrError, match=f"edsr.h5: weight '{kernel}' keeps its data in other files"):
        sisr.load_model(path)


def test_hdf5_nan_weights_are_refused_by_name(tmp_path):
    import h5py

    path = keras_file(tmp_path)
    with h5py.File(path, "r+") as handle:
        layer, kernel = _first_kernel(handle)
        layer[kernel][0, 0, 0, 0] = np.nan
    with pytest.raises(SisrError, match="edsr.h5: head.0.weight holds 1 NaN or infinite value"):
        sisr.load_model(path)


# --- PyTorch checkpoints -------------------------------------------------------------------------------


class Payload:
    """An object whose unpickling calls a function (here: creates a file), as a hostile checkpoint's can."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_checkpoint_code_is_never_run(tmp_path, zipped):
    marker = tmp_path / "ran"
    state = {**official_state(), "payload": Payload(marker)}
    torch.save(state, tmp_path / "evil.pt", _use_new_zipfile_serialization=zipped)
    with pytest.raises(SisrError, match="evil.pt: the checkpoint holds Python objects besides tensors"):
        sisr.load_model(tmp_path / "evil.pt")
    assert not marker.exists()


def test_tensor_posing_as_terabytes_is_refused_by_its_shape(tmp_path):
    """Zero strides let 4 bytes stand for 4 TiB, which `.float()` or any copy would then allocate."""
    state = official_state()
    state["add_mean.weight"] = torch.zeros(1, dtype=torch.float64).expand(2**20, 2**19)
    torch.save(state, tmp_path / "tera.pt")
    with pytest.raises(SisrError, match="tera.pt: declares 4096.0 GiB of tensors, over the limit"):
        sisr.load_model(tmp_path / "tera.pt")


def test_compressed_checkpoint_records_are_refused(tmp_path):
    """torch.save stores records plain; a deflated one could expand a few KB into gigabytes."""
    torch.save(official_state(), tmp_path / "plain.pt")
    with zipfile.ZipFile(tmp_path / "plain.pt") as plain, zipfile.ZipFile(tmp_path / "deflated.pt", "w") as out:
        for info in plain.infolist():
            out.writestr(info.filename, plain.read(info), compress_type=zipfile.ZIP_DEFLATED)
    with pytest.raises(SisrError, match="deflated.pt: compressed records"):
        sisr.load_model(tmp_path / "deflated.pt")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda s: s.update({0: s.pop("tail.1.bias")}), "a state dict key 0 that is not a name"),
        (lambda s: s.update({"tail.1.bias": s["tail.1.bias"].to(torch.complex64)}), "complex64"),
        (lambda s: s.update({"head.0.weight": s["head.0.weight"].flatten()}), "head.0.weight has shape"),
        (lambda s: s.update({"sub_mean.bias": torch.zeros(5)}), "sub_mean is not a 1x1 convolution"),
    ],
    ids=["int-key", "complex", "flat-kernel", "mean-of-5"],
)
def test_checkpoint_of_the_wrong_types_is_refused(tmp_path, change, problem):
    state = official_state()
    change(state)
    torch.save(state, tmp_path / "odd.pt")
    with pytest.raises(SisrError, match=f"odd.pt: .*{problem}"):
        sisr.load_model(tmp_path / "odd.pt")


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_checkpoint_nan_weights_are_refused_by_name(tmp_path, zipped):
    state = official_state()
    state["body.0.body.0.weight"][0, 0, 0, 0] = float("inf")
    torch.save(state, tmp_path / "inf.pt", _use_new_zipfile_serialization=zipped)
    with pytest.raises(SisrError, match="inf.pt: body.0.body.0.weight holds 1 NaN or infinite value"):
        sisr.load_model(tmp_path / "inf.pt")


def test_legacy_checkpoint_over_the_limit_is_refused_unread(tmp_path, monkeypatch):
    torch.save(official_state(), tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    monkeypatch.setenv("SISR_MAX_WEIGHT_BYTES", "1000")
    with pytest.raises(SisrError, match="old.pt: a .* file, over the weight limit"):
        sisr.load_model(tmp_path / "old.pt")


# --- fuzzing -------------------------------------------------------------------------------------------


def safetensors_seeds(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    wdsr = sisr.create_model("wdsr-b-16-x2", num_blocks=1, num_filters=4, expansion=2)
    return [sisr_file(folder), sisr.save_model(wdsr, folder / "wdsr.safetensors")]


def keras_seeds(folder: Path) -> list[Path]:
    """EDSR, WDSR-B (weight normalization) and SRResNet (batch norm, PReLU): each importer's layout."""
    edsr = keras_file(folder)
    from test_import_keras import write_srresnet, write_wdsr

    wdsr = sisr.create_model("wdsr-b-16-x2", num_blocks=1, num_filters=4, expansion=2).network
    srresnet = sisr.create_model("srresnet-x2", num_blocks=1, num_filters=4).network
    return [edsr, write_wdsr(wdsr, folder / "wdsr.h5", weightnorm=True), write_srresnet(srresnet, folder / "srgan.h5")]


def torch_seeds(folder: Path) -> list[Path]:
    """Official EDSR (zip and the legacy format of its 2018 files), BasicSR EDSR and MSRResNet."""
    from test_import_torch import basicsr_edsr_state

    folder.mkdir(parents=True, exist_ok=True)
    msrresnet = sisr.build_model("msrresnet", {"scale": 2, "num_filters": 4, "num_blocks": 1})
    torch.save(official_state(), folder / "edsr.pt")
    torch.save(official_state(), folder / "edsr-legacy.pt", _use_new_zipfile_serialization=False)
    torch.save({"params": basicsr_edsr_state(small_edsr().network)}, folder / "edsr.pth")
    torch.save({"params_ema": msrresnet.state_dict()}, folder / "msrresnet.pth")
    return [folder / name for name in ("edsr.pt", "edsr-legacy.pt", "edsr.pth", "msrresnet.pth")]


def load(path: Path) -> object:
    return sisr.load_model(path)


FUZZ_TARGETS = {
    "safetensors": (safetensors_seeds, load),
    "keras-h5": (keras_seeds, load),
    "torch-pt": (torch_seeds, load),
}
# Mutants per seed file (2, 3 and 4 seeds): seconds for the three formats on one core;
# benchmarks/fuzz_loaders.py runs more.
FUZZ_COUNTS = {"safetensors": 600, "keras-h5": 300, "torch-pt": 250}


@pytest.mark.parametrize("fmt", sorted(FUZZ_TARGETS))
def test_fuzzed_weight_files_load_or_are_refused_in_one_line(tmp_path, fmt):
    make_seeds, loader = FUZZ_TARGETS[fmt]
    report = fuzz(make_seeds, loader, tmp_path, count=FUZZ_COUNTS[fmt], seed=0)
    assert report.tracebacks == []
    assert report.refused > 0
    shutil.rmtree(tmp_path / "mutants", ignore_errors=True)
