"""Export to ONNX (run in onnxruntime) and TorchScript gives sisr's own outputs, at any size."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from sisr.errors import SisrError
from sisr.model import SRModel
from sisr.models import ModelSpec, build_model
from sisr.models.common import WeightNormConv2d, fold_weight_norm
from sisr.weights.export import export_model, export_onnx, export_torchscript
from sisr.weights.native import save_model

# torch 2.13 marks torch.jit.save/load deprecated; TorchScript files still load in C++ and Python.
pytestmark = pytest.mark.filterwarnings(r"ignore:.*torch\.jit.*deprecated:DeprecationWarning")

FAMILIES = {
    "edsr": ("edsr", {"scale": 4, "num_filters": 16, "num_blocks": 2}),
    "wdsr-a": ("wdsr", {"scale": 2, "block": "a", "num_filters": 8, "num_blocks": 2, "expansion": 4}),
    "wdsr-b": ("wdsr", {"scale": 3, "block": "b", "num_filters": 8, "num_blocks": 2, "expansion": 6}),
    "srresnet": ("srresnet", {"scale": 4, "num_filters": 8, "num_blocks": 2}),
    "msrresnet": ("msrresnet", {"scale": 4, "num_filters": 8, "num_blocks": 2}),
}


def trained_looking(arch: str, args: dict) -> torch.nn.Module:
    """Random weights, with weight-norm g away from ||v|| and BN statistics away from 0/1."""
    model = build_model(arch, args)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, tensor in model.named_buffers():
            if name.endswith("running_mean"):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
        for name, parameter in model.named_parameters():
            if name.endswith("weight_g"):
                parameter.mul_(torch.rand(parameter.shape, generator=generator) + 0.5)
    return model.eval()


def astronaut(height: int, width: int) -> torch.Tensor:
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image gives the real test photo")
    image = skimage_data.astronaut()[40 : 40 + height, 180 : 180 + width]
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255


def inputs() -> list[torch.Tensor]:
    """Random and real images at two sizes (and batch sizes): the exported graph must not be fixed to one."""
    random = torch.rand(2, 3, 13, 17, generator=torch.Generator().manual_seed(5))
    return [random, astronaut(32, 40), astronaut(21, 18)]


def test_fold_weight_norm_keeps_outputs_and_removes_the_norm():
    model = trained_looking(*FAMILIES["wdsr-b"])
    folded = fold_weight_norm(model)
    assert not any(isinstance(m, WeightNormConv2d) for m in folded.modules())
    assert any(isinstance(m, WeightNormConv2d) for m in model.modules())  # the original is untouched
    x = torch.rand(1, 3, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-6, rtol=0)


@pytest.mark.slow  # the torch.export-based exporter takes ~5-10 s per network on 2 cores
@pytest.mark.parametrize("family", list(FAMILIES))
def test_onnx_export_matches_sisr_in_onnxruntime(tmp_path, family):
    ort = pytest.importorskip("onnxruntime", reason="ONNX checks need onnxruntime: pip install 'sisr[onnx]'")
    pytest.importorskip("onnxscript", reason="ONNX export needs onnxscript: pip install 'sisr[onnx]'")
    model = trained_looking(*FAMILIES[family])
    path = export_onnx(model, tmp_path / f"{family}.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for x in inputs():
        (onnx_out,) = session.run(None, {"lr": x.numpy()})
        with torch.no_grad():
            expected = model(x).numpy()
        assert onnx_out.shape == expected.shape == (x.shape[0], 3, x.shape[2] * model.scale, x.shape[3] * model.scale)
        np.testing.assert_allclose(onnx_out, expected, atol=1e-4, rtol=0)
    import onnx

    metadata = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert metadata["sisr_scale"] == str(model.scale)


@pytest.mark.parametrize("family", ["edsr", "wdsr-b"])
def test_torchscript_export_matches_sisr_at_other_sizes(tmp_path, family):
    model = trained_looking(*FAMILIES[family])
    path = export_torchscript(model, tmp_path / f"{family}.pt")
    scripted = torch.jit.load(str(path))
    for x in inputs():
        with torch.no_grad():
            torch.testing.assert_close(scripted(x), model(x), atol=1e-5, rtol=0)


def test_torchscript_export_of_a_model_records_its_spec(tmp_path):
    arch, args = FAMILIES["edsr"]
    model = SRModel.from_network(trained_looking(arch, args), spec=ModelSpec(arch, args))
    extra = {"sisr_scale.txt": "", "sisr_arch.txt": "", "sisr_args.txt": ""}
    scripted = torch.jit.load(str(export_torchscript(model, tmp_path / "edsr.pt")), _extra_files=extra)
    recorded = {key: value.decode() if isinstance(value, bytes) else value for key, value in extra.items()}
    assert recorded == {
        "sisr_scale.txt": "4",
        "sisr_arch.txt": "edsr",
        "sisr_args.txt": json.dumps(args, sort_keys=True),
    }
    x = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), atol=1e-5, rtol=0)


def test_export_refuses_unknown_suffix_and_existing_files(tmp_path):
    model = trained_looking(*FAMILIES["edsr"])
    with pytest.raises(SisrError, match=r"\.onnx.*\.pt"):
        export_model(model, tmp_path / "model.tflite")
    (tmp_path / "taken.onnx").write_bytes(b"x")
    with pytest.raises(SisrError, match="already exists"):
        export_model(model, tmp_path / "taken.onnx")
    with pytest.raises(SisrError, match="--opset applies to ONNX"):
        export_model(model, tmp_path / "model.pt", opset=18)


def test_export_command_writes_torchscript_from_a_weight_file(tmp_path):
    from sisr.cli import export as export_command

    model = trained_looking(*FAMILIES["wdsr-a"])
    save_model(model, tmp_path / "wdsr.safetensors", spec=ModelSpec(*FAMILIES["wdsr-a"]))
    parser = argparse.ArgumentParser()
    export_command.register(parser.add_subparsers())
    args = parser.parse_args(["export", str(tmp_path / "wdsr.safetensors"), "-o", str(tmp_path / "wdsr.pt")])
    assert args.func(args) == 0
    x = torch.rand(1, 3, 10, 7)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(tmp_path / "wdsr.pt"))(x), model(x), atol=1e-5, rtol=0)
