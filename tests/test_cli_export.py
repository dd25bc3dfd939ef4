"""`sisr export` says what it wrote, not what the ONNX exporter and optimiser did on the way."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch

from sisr import create_model, save_model
from sisr.cli import main
from sisr.cli.export import _quiet


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("edsr-baseline-x2", num_blocks=1, num_filters=8)
    return save_model(model, tmp_path_factory.mktemp("weights") / "tiny-x2.safetensors")


@pytest.mark.slow  # a Python process that imports torch and the ONNX exporter
def test_onnx_export_prints_one_line(weights, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    target = tmp_path / "tiny.onnx"
    done = subprocess.run(
        [sys.executable, "-m", "sisr", "export", str(weights), "-o", str(target)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr.splitlines() == [f"wrote {target}"]
    assert target.stat().st_size > 0


def test_errors_are_still_reported(weights, tmp_path, capsys):
    assert main(["export", str(weights), "-o", str(tmp_path / "tiny.pt"), "--opset", "17"]) == 1
    assert "--opset applies to ONNX export only" in capsys.readouterr().err


def test_the_notes_are_shown_when_the_export_fails(capsys):
    with pytest.raises(RuntimeError, match="broke"), _quiet():
        print("Removed 11 unused nodes")
        print("optimiser note", file=sys.stderr)
        warnings.warn("a deprecation", DeprecationWarning, stacklevel=1)
        raise RuntimeError("broke")
    err = capsys.readouterr().err
    assert "Removed 11 unused nodes" in err and "optimiser note" in err


def test_the_notes_are_dropped_when_it_succeeds(capsys):
    with _quiet():
        print("Applied 1 of general pattern rewrite rules.")
        warnings.warn("a deprecation", DeprecationWarning, stacklevel=1)
    assert capsys.readouterr() == ("", "")
