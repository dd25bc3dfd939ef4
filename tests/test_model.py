"""The model object a user meets: one `load_model` for every name, a typed description, one prepared object."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sisr
from sisr import SisrError
from sisr.inference import PreparedModel, receptive_field
from sisr.model import ModelInfo, SRModel
from sisr.models import ModelSpec

SHARED = Path(os.environ.get("SISR_SHARED", Path(__file__).resolve().parents[2] / "shared"))
KERAS_WDSR = SHARED / "weights" / "keras" / "wdsr-b-32-x4.h5"


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return sisr.create_model("edsr-baseline-x2", num_blocks=2)


def test_create_model_describes_the_preset(small):
    info = small.info
    assert isinstance(small, SRModel) and isinstance(info, ModelInfo)
    assert isinstance(small.network, torch.nn.Module) and not isinstance(small, torch.nn.Module)
    assert info.spec == ModelSpec("edsr", {"scale": 2, "num_filters": 64, "num_blocks": 2, "res_scale": 1.0})
    assert (info.name, info.scale, info.source, info.arch) == ("edsr-baseline-x2", 2, "preset", "edsr")
    assert info.receptive_field == receptive_field(small.network) > 0
    assert info.precisions == ("fp32", "bf16", "fp16")
    # nothing is stuck onto the network itself
    assert not [name for name in vars(small.network) if name.startswith("sisr")]


def test_load_model_takes_the_bundled_names():
    model = sisr.load_model("default-x4")
    assert model.info.source == "bundled" and model.info.name == "default-x4" and model.scale == 4
    assert model.info.licence and model.info.path is not None and model.info.path.is_file()
    assert model.spec is not None and model.spec.arch == "wdsr"
    assert "config" in " ".join(model.info.metadata)  # the training config the file records
    assert sisr.load_model("default-x2", scale=2).scale == 2
    with pytest.raises(SisrError, match="upscales x4, but x2 was asked for"):
        sisr.load_model("default-x4", scale=2)


def test_load_model_takes_bicubic_at_a_scale():
    model = sisr.load_model("bicubic", scale=3)
    assert (model.scale, model.info.source, model.info.precisions) == (3, "bicubic", ("fp32",))
    assert sisr.load_model("bicubic").scale == 4


def test_load_model_round_trips_a_sisr_weight_file(small, tmp_path):
    path = sisr.save_model(small, tmp_path / "net.safetensors", metadata={"note": "hello"})
    loaded = sisr.load_model(path)
    assert loaded.info.source == "file" and loaded.info.path == path and loaded.spec == small.spec
    assert loaded.info.metadata["note"] == "hello"
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), small.eval()(x))
    assert sisr.load_model(str(path)).spec == small.spec  # str and Path alike


def test_a_bare_network_needs_its_spec_to_be_saved(small, tmp_path):
    with pytest.raises(SisrError, match="spec="):
        sisr.save_model(small.network, tmp_path / "bare.safetensors")
    path = sisr.save_model(small.network, tmp_path / "bare.safetensors", spec=small.spec)
    assert sisr.load_model(path).spec == small.spec


def test_load_model_converts_an_official_edsr_checkpoint_in_memory(small, tmp_path):
    path = tmp_path / "edsr_baseline_x2.pt"
    torch.save(small.network.state_dict(), path)  # the official release's key names are sisr's
    loaded = sisr.load_model(path)
    assert loaded.info.source == "file" and loaded.spec is not None and loaded.spec.arch == "edsr"
    assert loaded.info.metadata["source_format"].startswith("pytorch")
    x = torch.rand(1, 3, 6, 7)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), small.eval()(x))


@pytest.mark.skipif(not KERAS_WDSR.is_file(), reason=f"needs the TF reference's Keras weights at {KERAS_WDSR}")
def test_load_model_converts_the_tensorflow_references_keras_file():
    loaded = sisr.load_model(KERAS_WDSR)
    assert loaded.spec is not None and loaded.spec.arch == "wdsr" and loaded.scale == 4
    assert loaded.info.metadata["source_format"].startswith("keras")


def test_load_model_takes_a_cached_zoo_name(small, tmp_path, monkeypatch):
    from sisr.weights import zoo

    monkeypatch.setenv("SISR_CACHE", str(tmp_path))
    entry = zoo.get_pretrained("edsr-baseline-x2@official")
    spec = ModelSpec(entry.arch, entry.args)
    network = sisr.build_model(spec)
    target = zoo.converted_path(entry)
    target.parent.mkdir(parents=True, exist_ok=True)
    sisr.save_model(network, target, spec=spec, metadata={"licence": entry.licence})
    loaded = sisr.load_model("edsr-baseline-x2@official")
    assert (loaded.info.source, loaded.info.name, loaded.info.licence) == ("zoo", entry.name, entry.licence)


def test_load_model_names_what_it_could_not_find():
    with pytest.raises(SisrError, match="untrained preset"):
        sisr.load_model("edsr-baseline-x4")
    with pytest.raises(SisrError, match="did you mean default-x4"):
        sisr.load_model("default-x5")
    with pytest.raises(SisrError, match="no-such.safetensors: weight file not found"):
        sisr.load_model("no-such.safetensors")


def test_prepare_decides_precision_and_device_once(small, monkeypatch):
    monkeypatch.setenv("SISR_CPU_BF16", "0")
    prepared = small.prepare()
    assert isinstance(prepared, PreparedModel)
    assert (prepared.precision, prepared.device.type, prepared.model) == ("fp32", "cpu", small)
    # then " (native kernels)" where they were measured faster on this machine
    assert prepared.describe().startswith("edsr-baseline-x2 (edsr, x2) in fp32 on cpu")
    assert prepared.network is not small.network and not prepared.network.training
    assert sisr.prepare_model(prepared) is prepared  # "auto" accepts what it has
    assert sisr.prepare_model(prepared, "fp32", "cpu") is prepared
    again = sisr.prepare_model(prepared, "bf16", "cpu")
    assert again is not prepared and again.precision == "bf16" and again.model is small
    image = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(sisr.upscale(prepared, image), sisr.upscale(small, image, precision="fp32"))


def test_upscale_accepts_a_name_a_model_a_prepared_model_and_a_bare_network(small, monkeypatch):
    monkeypatch.setenv("SISR_CPU_BF16", "0")
    image = np.random.default_rng(1).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    by_model = sisr.upscale(small, image)
    np.testing.assert_array_equal(sisr.upscale(small.network, image), by_model)
    np.testing.assert_array_equal(sisr.upscale(small.prepare("fp32", "cpu"), image), by_model)
    assert sisr.upscale("default-x2", image).shape == (12, 10, 3)


def _oriented_jpeg(orientation: int) -> bytes:
    """A 30x20 JPEG whose pixels are stored sideways, with the EXIF tag that says how to turn them."""
    pixels = np.zeros((20, 30, 3), dtype=np.uint8)
    pixels[:, :10] = (255, 0, 0)  # red on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def test_upscale_turns_a_pil_image_upright_as_the_cli_does(tmp_path):
    data = _oriented_jpeg(6)  # 6: rotate 90 degrees clockwise to view
    photo = Image.open(io.BytesIO(data))
    assert photo.size == (30, 20)
    bicubic = sisr.load_model("bicubic", scale=2)
    result = sisr.upscale(bicubic, photo)
    assert result.size == (40, 60)  # upright: 20 wide, 30 tall, doubled
    top = np.asarray(result)[:10].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[1] < 60  # the stored left (red) is now the top
    path = tmp_path / "sideways.jpg"
    path.write_bytes(data)
    from sisr.image_io import read_image

    np.testing.assert_array_equal(np.asarray(sisr.upscale(bicubic, path)), sisr.upscale(bicubic, read_image(path)))


def test_upscale_takes_a_file_path(tmp_path):
    bicubic = sisr.load_model("bicubic", scale=2)
    rgb = np.random.default_rng(2).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    result = sisr.upscale(bicubic, tmp_path / "photo.png")
    assert isinstance(result, Image.Image) and result.mode == "RGB" and result.size == (12, 16)
    np.testing.assert_array_equal(np.asarray(result), sisr.upscale(bicubic, rgb))
    assert isinstance(sisr.upscale(bicubic, str(tmp_path / "photo.png")), Image.Image)
    with pytest.raises(SisrError, match="missing.png: no such file"):
        sisr.upscale(bicubic, tmp_path / "missing.png")


def _icc_profile(space: bytes) -> bytes:
    """A minimal ICC header: 128 bytes with the data colour space at bytes 16-19."""
    header = bytearray(128)
    header[0:4] = (128).to_bytes(4, "big")
    header[12:16] = b"mntr"
    header[16:20] = space
    header[36:40] = b"acsp"
    return bytes(header)


@pytest.mark.parametrize(
    "space, mode, kept",
    [
        (b"RGB ", "RGB", True),
        (b"GRAY", "RGB", False),
        (b"CMYK", "RGB", False),
        (b"GRAY", "L", True),
        (b"RGB ", "L", False),
    ],
)
def test_colour_profiles_go_along_only_where_the_colour_space_matches(space, mode, kept, tmp_path):
    from sisr.image_io import read_icc_profile, write_image

    bicubic = sisr.load_model("bicubic", scale=2)
    profile = _icc_profile(space)
    image = Image.new(mode, (5, 4), 128)
    image.info["icc_profile"] = profile
    result = sisr.upscale(bicubic, image)
    assert (result.info.get("icc_profile") == profile) is kept
    assert ("icc_profile" in result.info) is kept
    out = write_image(tmp_path / "out.png", np.asarray(result), icc_profile=profile)
    assert (read_icc_profile(out) == profile) is kept
