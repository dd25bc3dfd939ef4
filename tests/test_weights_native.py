"""sisr's own weight files: self-describing, strict, atomic."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sisr import SisrError, SRModel, create_model, load_model, save_model
from sisr.models import ModelSpec, build_model
from sisr.weights import load_state_dict_strict, load_weight_file, read_weight_file

# One small network of each family, with non-default arguments so that the
# file must carry them for the rebuilt network to fit.
FAMILIES = {
    "edsr": lambda: create_model("edsr-x3", num_blocks=2, num_filters=16),
    "wdsr-a": lambda: create_model("wdsr-a-16-x2", num_blocks=2),
    "wdsr-b": lambda: create_model("wdsr-b-16-x4", num_blocks=2, expansion=4),
    "srresnet": lambda: create_model("srresnet-x2", num_blocks=2, num_filters=16),
}
DISCRIMINATOR = ModelSpec("srgan-discriminator", {"num_filters": 8})


def _trained_looking(network: torch.nn.Module) -> torch.nn.Module:
    """Move every parameter and statistic away from its initial value, as training would."""
    torch.manual_seed(1)
    with torch.no_grad():
        for tensor in network.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn_like(tensor) * 0.01)
                if tensor.ndim == 1:
                    tensor.abs_()  # keeps BN variances positive
    return network.eval()


def _probe(network: torch.nn.Module) -> torch.Tensor:
    torch.manual_seed(2)
    size = 96 if type(network).__name__ == "Discriminator" else 9
    with torch.inference_mode():
        return network(torch.rand(2, 3, size, size))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_round_trip_gives_identical_outputs(family, tmp_path):
    model = FAMILIES[family]()
    _trained_looking(model.network)
    path = save_model(model, tmp_path / "net.safetensors")
    loaded = load_model(path)
    assert type(loaded.network) is type(model.network)
    assert not loaded.network.training
    assert loaded.spec == model.spec and loaded.scale == model.scale
    for key, value in model.network.state_dict().items():
        assert torch.equal(loaded.network.state_dict()[key], value), key
    assert torch.equal(_probe(loaded.network), _probe(model.network))


def test_a_bare_network_needs_its_spec(tmp_path):
    network = _trained_looking(build_model("edsr", {"scale": 2, "num_filters": 8, "num_blocks": 1}))
    with pytest.raises(SisrError, match=r"EDSR: its architecture is unknown.*spec=ModelSpec"):
        save_model(network, tmp_path / "bare.safetensors")
    assert not (tmp_path / "bare.safetensors").exists()
    spec = ModelSpec("edsr", {"scale": 2, "num_filters": 8, "num_blocks": 1})
    path = save_model(network, tmp_path / "bare.safetensors", spec=spec, metadata={"source": "unit test"})
    loaded = load_weight_file(path)
    assert isinstance(loaded, SRModel)
    info = loaded.info
    assert (info.spec, info.source, info.path, info.name, info.scale) == (spec, "file", path, "bare.safetensors", 2)
    assert info.metadata["source"] == "unit test" and info.metadata["arch"] == "edsr"
    assert info.receptive_field is not None and info.licence is None
    assert torch.equal(_probe(loaded.network), _probe(network))


def test_a_licence_in_the_metadata_is_the_models(tmp_path):
    model = create_model("edsr-baseline-x2", num_blocks=1)
    path = save_model(model, tmp_path / "net.safetensors", metadata={"licence": "CC0 (test)"})
    assert load_model(path).info.licence == "CC0 (test)"


def test_a_discriminator_round_trips_but_is_not_an_upscaling_model(tmp_path):
    network = _trained_looking(build_model(DISCRIMINATOR))
    path = save_model(network, tmp_path / "discriminator.safetensors", spec=DISCRIMINATOR)
    spec, tensors, metadata = read_weight_file(path)
    assert spec == DISCRIMINATOR and spec.scale is None and metadata["arch"] == "srgan-discriminator"
    rebuilt = build_model(spec)
    load_state_dict_strict(rebuilt, tensors, str(path))
    for key, value in network.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key
    assert torch.equal(_probe(rebuilt.eval()), _probe(network))
    with pytest.raises(SisrError, match="discriminator.safetensors: weights of a srgan-discriminator network, not of"):
        load_model(path)


def test_metadata_records_the_architecture(tmp_path):
    model = create_model("wdsr-b-16-x4", num_blocks=3)
    path = save_model(model, tmp_path / "net.safetensors", metadata={"source": "unit test"})
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["format"] == "sisr"
    assert metadata["arch"] == "wdsr"
    assert metadata["scale"] == "4"
    assert json.loads(metadata["args"])["num_blocks"] == 3
    assert load_model(path).info.metadata["source"] == "unit test"


def test_fp16_storage_halves_the_file_and_loads_close(tmp_path):
    model = create_model("edsr-baseline-x2", num_blocks=2)
    _trained_looking(model.network)
    full = save_model(model, tmp_path / "fp32.safetensors")
    half = save_model(model, tmp_path / "fp16.safetensors", dtype=torch.float16)
    assert half.stat().st_size < 0.55 * full.stat().st_size
    loaded = load_model(half)
    for key, value in loaded.network.state_dict().items():
        assert value.dtype == torch.float32, key
        torch.testing.assert_close(value, model.network.state_dict()[key], rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(_probe(loaded.network), _probe(model.network), rtol=0, atol=2e-3)


def _tamper(path, out, change):
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    change(tensors)
    save_file(tensors, str(out), metadata=metadata)
    return out


def test_strict_loading_names_the_key_and_both_shapes(tmp_path):
    path = save_model(create_model("edsr-baseline-x2", num_blocks=1), tmp_path / "net.safetensors")

    def shrink(tensors):
        tensors["head.0.weight"] = tensors["head.0.weight"][:32].contiguous()

    bad = _tamper(path, tmp_path / "bad.safetensors", shrink)
    with pytest.raises(SisrError) as error:
        load_model(bad)
    message = str(error.value)
    assert "bad.safetensors" in message
    assert "head.0.weight" in message
    assert "(32, 3, 3, 3)" in message and "(64, 3, 3, 3)" in message


def test_strict_loading_names_missing_and_unexpected_keys(tmp_path):
    path = save_model(create_model("edsr-baseline-x2", num_blocks=1), tmp_path / "net.safetensors")

    def rename(tensors):
        tensors["tail.1.kernel"] = tensors.pop("tail.1.weight")

    with pytest.raises(SisrError, match=r"missing tail\.1\.weight.*unexpected tail\.1\.kernel"):
        load_model(_tamper(path, tmp_path / "renamed.safetensors", rename))


def test_a_file_that_is_not_safetensors_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"PK\x03\x04 this is a zip, not a weight file")
    with pytest.raises(SisrError, match="model.safetensors: not a safetensors weight file"):
        load_weight_file(path)
    # load_model goes by the first bytes, whatever the suffix: these are a zip's
    with pytest.raises(SisrError, match="model.safetensors: a damaged zip archive"):
        load_model(path)


def test_safetensors_without_sisr_metadata_is_refused(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file(create_model("edsr-baseline-x2", num_blocks=1).network.state_dict(), str(path))
    with pytest.raises(SisrError, match="foreign.safetensors: a safetensors file without sisr metadata"):
        load_model(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(SisrError, match="nowhere.safetensors: weight file not found"):
        load_model(tmp_path / "nowhere.safetensors")


def test_save_refuses_to_overwrite_unless_asked(tmp_path):
    path = tmp_path / "net.safetensors"
    first = create_model("edsr-baseline-x2", num_blocks=1)
    save_model(first, path)
    before = path.read_bytes()
    with pytest.raises(SisrError, match="already exists"):
        save_model(create_model("edsr-baseline-x2", num_blocks=1), path)
    assert path.read_bytes() == before
    save_model(create_model("edsr-baseline-x2", num_blocks=1), path, overwrite=True)
    assert path.read_bytes() != before


def test_save_is_atomic(tmp_path, monkeypatch):
    model = create_model("edsr-baseline-x2", num_blocks=1)
    save_model(model, tmp_path / "net.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["net.safetensors"]
    before = (tmp_path / "net.safetensors").read_bytes()

    import safetensors.torch

    def crash_halfway(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", crash_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_model(model, tmp_path / "net.safetensors", overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["net.safetensors"]
    assert (tmp_path / "net.safetensors").read_bytes() == before
