"""sisr's own weight files: self-describing, strict, atomic."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sisr import SisrError, create_model, load_model, save_model
from sisr.models import build_model

# One small network of each family, with non-default arguments so that the
# file must carry them for the rebuilt network to fit.
FAMILIES = {
    "edsr": lambda: create_model("edsr-x3", num_blocks=2, num_filters=16),
    "wdsr-a": lambda: create_model("wdsr-a-16-x2", num_blocks=2),
    "wdsr-b": lambda: create_model("wdsr-b-16-x4", num_blocks=2, expansion=4),
    "srresnet": lambda: create_model("srresnet-x2", num_blocks=2, num_filters=16),
    "srgan-discriminator": lambda: build_model("srgan-discriminator", {"num_filters": 8}),
}


def _trained_looking(model: torch.nn.Module) -> torch.nn.Module:
    """Move every parameter and statistic away from its initial value, as training would."""
    torch.manual_seed(1)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn_like(tensor) * 0.01)
                if tensor.ndim == 1:
                    tensor.abs_()  # keeps BN variances positive
    return model.eval()


def _probe(model: torch.nn.Module) -> torch.Tensor:
    torch.manual_seed(2)
    size = 96 if type(model).__name__ == "Discriminator" else 9
    with torch.inference_mode():
        return model(torch.rand(2, 3, size, size))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_round_trip_gives_identical_outputs(family, tmp_path):
    model = _trained_looking(FAMILIES[family]())
    path = save_model(model, tmp_path / "net.safetensors")
    loaded = load_model(path)
    assert type(loaded) is type(model)
    assert not loaded.training
    assert loaded.sisr_spec == model.sisr_spec
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert torch.equal(_probe(loaded), _probe(model))


def test_metadata_records_the_architecture(tmp_path):
    model = create_model("wdsr-b-16-x4", num_blocks=3)
    path = save_model(model, tmp_path / "net.safetensors", metadata={"source": "unit test"})
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["format"] == "sisr"
    assert metadata["arch"] == "wdsr"
    assert metadata["scale"] == "4"
    assert json.loads(metadata["args"])["num_blocks"] == 3
    assert load_model(path).sisr_metadata["source"] == "unit test"


def test_fp16_storage_halves_the_file_and_loads_close(tmp_path):
    model = _trained_looking(create_model("edsr-baseline-x2", num_blocks=2))
    full = save_model(model, tmp_path / "fp32.safetensors")
    half = save_model(model, tmp_path / "fp16.safetensors", dtype=torch.float16)
    assert half.stat().st_size < 0.55 * full.stat().st_size
    loaded = load_model(half)
    for key, value in loaded.state_dict().items():
        assert value.dtype == torch.float32, key
        torch.testing.assert_close(value, model.state_dict()[key], rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(_probe(loaded), _probe(model), rtol=0, atol=2e-3)


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
        load_model(path)


def test_safetensors_without_sisr_metadata_is_refused(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file(create_model("edsr-baseline-x2", num_blocks=1).state_dict(), str(path))
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
