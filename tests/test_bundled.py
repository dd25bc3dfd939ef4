"""The default networks shipped in the package: present, small, loadable, and better than bicubic."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import sisr
from sisr import SisrError
from sisr.image_io import read_image, write_image
from sisr.imaging import bicubic_downgrade, matlab_imresize, psnr
from sisr.models import count_parameters, preset_spec
from sisr.weights import read_weight_file
from sisr.weights.bundled import BUNDLED, BUNDLED_LICENCE, default_model_name

README = Path(__file__).resolve().parents[1] / "README.md"
SCALES = [2, 3, 4]


def y_psnr(sr: np.ndarray, hr: np.ndarray, scale: int) -> float:
    """The papers' protocol: Y of BT.601 YCbCr, `scale` pixels of border left out."""
    return float(psnr(sr, hr, crop_border=scale, y_channel=True))


def bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    return matlab_imresize(lr, scale=scale)  # uint8 in, uint8 out (rounded)


@pytest.mark.parametrize("scale", SCALES)
def test_each_bundled_network_ships_small_in_fp16_and_loads_as_its_preset(scale):
    entry = BUNDLED[f"default-x{scale}"]
    assert entry.path.is_file(), f"{entry.path} is missing from the package"
    assert entry.path.stat().st_size < 1_000_000  # the package stays small
    spec, tensors, _ = read_weight_file(entry.path)
    assert {tensor.dtype for tensor in tensors.values()} == {torch.float16}
    assert spec.scale == scale
    model = sisr.load_model(entry.name, scale=scale)
    assert model.scale == scale and not model.network.training
    assert all(p.dtype == torch.float32 for p in model.network.parameters())
    assert count_parameters(model.network) == count_parameters(sisr.create_model(entry.preset).network)
    assert model.spec == spec == preset_spec(entry.preset)
    assert Path(README.parent / entry.config).is_file()  # the config that made it is in the repository


def test_the_default_is_x4_and_other_scales_are_refused_clearly():
    assert default_model_name() == "default-x4" and default_model_name(2) == "default-x2"
    with pytest.raises(SisrError, match=r"no default network for x8 \(sisr ships x2, x3, x4\)"):
        default_model_name(8)
    with pytest.raises(SisrError, match="the network upscales x2, but x4 was asked for"):
        sisr.load_model("default-x2", scale=4)
    with pytest.raises(SisrError, match=r"did you mean default-x"):
        sisr.load_model("default-x5")


def test_load_model_describes_the_bundled_default():
    entry = BUNDLED["default-x4"]
    model = sisr.load_model("default-x4")
    assert isinstance(model, sisr.SRModel)
    info = model.info
    assert (info.name, info.source, info.scale, info.path) == ("default-x4", "bundled", 4, entry.path)
    assert info.licence == BUNDLED_LICENCE and info.licence.startswith("MIT")
    assert info.spec == preset_spec(entry.preset) and info.arch == "wdsr"
    assert info.metadata["source"] == "sisr train"
    assert info.receptive_field is not None and info.receptive_field > 0
    assert info.summary() == "default-x4 (wdsr, x4)"
    prepared = model.prepare("fp32", "cpu")
    assert (prepared.precision, prepared.device, prepared.info) == ("fp32", torch.device("cpu"), info)
    assert prepared.describe().startswith("default-x4 (wdsr, x4) in fp32 on cpu")


@pytest.mark.parametrize("scale", SCALES)
def test_bundled_network_beats_bicubic_on_a_photo(scale):
    """No ../shared needed: scikit-image's coffee photo, downgraded with MATLAB's bicubic."""
    data = pytest.importorskip("skimage.data")
    hr = data.coffee()[:, :, :3]
    hr, lr = bicubic_downgrade(hr, scale)
    sr = sisr.upscale(f"default-x{scale}", lr)
    assert sr.shape == hr.shape and sr.dtype == np.uint8
    gain = y_psnr(sr, hr, scale) - y_psnr(bicubic(lr, scale), hr, scale)
    assert gain > 1.0, f"default-x{scale} is only {gain:.2f} dB above bicubic on coffee"  # measured 2.7 / 1.8 / 1.8


# Measured gains over bicubic (dB, Y, border = scale) on Set5's butterfly: 7.09 / 5.61 / 5.52; about 30 % margin.
MIN_GAIN = {2: 5.0, 3: 3.9, 4: 3.9}


@pytest.mark.parametrize("scale", SCALES)
def test_bundled_network_beats_bicubic_on_the_matlab_made_benchmark_image(benchmarks_dir, scale):
    hr = read_image(benchmarks_dir / "Set5" / "HR" / "butterfly.png")
    lr = read_image(benchmarks_dir / "Set5" / "LR_bicubic" / f"X{scale}" / "butterfly.png")
    hr = hr[: lr.shape[0] * scale, : lr.shape[1] * scale]
    sr = sisr.upscale(sisr.load_model(f"default-x{scale}", scale=scale), lr)
    gain = y_psnr(sr, hr, scale) - y_psnr(bicubic(lr, scale), hr, scale)
    assert gain > MIN_GAIN[scale], f"default-x{scale}: {gain:.2f} dB over bicubic on butterfly"


def readme_table() -> dict[tuple[str, int], float]:
    """The README's table of the bundled networks: {(dataset, scale): PSNR}."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("<!-- bundled-table -->") : text.index("<!-- /bundled-table -->")]
    table = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"default-x(\d)", cells[0].strip("`")) if cells else None
        if match:
            scale = int(match.group(1))
            for dataset, cell in zip(["Set5", "Set14", "BSD100"], cells[1:4]):
                table[(dataset, scale)] = float(cell.split("/")[0])
    return table


def test_readme_table_lists_every_scale_and_set():
    assert set(readme_table()) == {(d, s) for d in ["Set5", "Set14", "BSD100"] for s in SCALES}


@pytest.mark.parametrize("scale", SCALES)
def test_readme_table_is_what_sisr_evaluate_gives_on_set5(benchmarks_dir, scale):
    (record,) = sisr.evaluate([f"default-x{scale}"], ["Set5"], scale, data_root=benchmarks_dir, device="cpu")
    assert record["metrics"]["psnr"] == pytest.approx(readme_table()[("Set5", scale)], abs=0.006)


def test_sisr_upscale_without_model_uses_the_bundled_default(tmp_path, capsys):
    from sisr.cli import main

    photo = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    write_image(photo, rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    assert main(["upscale", str(photo), "-o", str(tmp_path / "x4.png")]) == 0
    assert read_image(tmp_path / "x4.png").shape == (80, 120, 3)
    assert main(["upscale", str(photo), "--scale", "3", "-o", str(tmp_path / "x3.png")]) == 0
    assert read_image(tmp_path / "x3.png").shape == (60, 90, 3)
    assert main(["upscale", str(photo), "--scale", "8", "-o", str(tmp_path / "x8.png")]) != 0
    assert "no default network for x8" in capsys.readouterr().err
    assert not (tmp_path / "x8.png").exists()


def test_the_readme_quick_start_upscales_the_sample_photo_with_the_default(tmp_path):
    """The README's first command after `pip install`, run as it is written (as `python -m sisr`)."""
    import shlex
    import subprocess
    import sys

    pytest.importorskip("skimage")
    text = README.read_text(encoding="utf-8")
    block = text[text.index("```sh", text.index("## Set-up")) + 5 :]
    command = block[: block.index("```")].strip()
    steps = [shlex.split(step) for step in command.split("&&")]
    assert steps[0][:2] == ["pip", "install"] and all(step[0] == "sisr" for step in steps[1:])
    assert any(step[1] == "upscale" and "--model" not in step for step in steps)  # the bundled default
    for step in steps[1:]:
        subprocess.run([sys.executable, "-m", "sisr", *step[1:]], cwd=tmp_path, check=True, timeout=300)
    lr, sr = read_image(tmp_path / "coffee-lr.png"), read_image(tmp_path / "coffee-x4.png")
    assert sr.shape == (lr.shape[0] * 4, lr.shape[1] * 4, 3)
    from skimage import data

    hr = data.coffee()[: sr.shape[0], : sr.shape[1]]
    assert y_psnr(sr, hr, 4) > y_psnr(bicubic(lr, 4), hr, 4) + 1.0  # measured +1.7 dB


def test_sisr_compare_without_model_shows_the_bundled_default(tmp_path):
    from sisr.cli import main

    rng = np.random.default_rng(1)
    photo = tmp_path / "photo.png"
    write_image(photo, rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    assert main(["compare", str(photo), "-o", str(tmp_path / "figure.png"), "--scale", "2"]) == 0
    figure = read_image(tmp_path / "figure.png")
    assert figure.ndim == 3 and figure.shape[1] > 3 * 64  # overview, LR, bicubic, default-x2, HR panels


@pytest.mark.parametrize("scale", SCALES)
def test_the_repository_config_is_the_one_the_bundled_network_was_trained_with(scale):
    """Each weight file records its training config; it must be the file in configs/ that the README names."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    from sisr.train.config import load_config

    entry = BUNDLED[f"default-x{scale}"]
    _, _, metadata = read_weight_file(entry.path)
    assert metadata["source"] == "sisr train"
    recorded = load_config(values=tomllib.loads(metadata["training_config"])).to_dict()
    in_repository = load_config(README.parent / entry.config).to_dict()
    assert recorded == in_repository
    assert in_repository["model"]["preset"] == entry.preset
    assert in_repository["data"]["train"] == "../shared/data/train"
    assert int(metadata["training_step"]) == in_repository["train"]["steps"]  # the last weights, not the best


@pytest.mark.parametrize("scale", SCALES)
def test_the_recipe_stages_follow_one_another(scale):
    """Each stage starts from the weights the stage before it wrote; the first from scratch or from x2."""
    from sisr.train.config import load_config

    entry = BUNDLED[f"default-x{scale}"]
    stages = [load_config(README.parent / path) for path in entry.recipe]
    first = stages[0]
    if scale == 2:
        assert first.model.init == ""
    else:  # the EDSR paper's start: x3 and x4 from the x2 network
        assert (
            first.model.init
            == f"{load_config(README.parent / BUNDLED['default-x2'].recipe[0]).train.out}/last.safetensors"
        )
    for before, after in zip(stages, stages[1:]):
        assert after.model.init == f"{before.train.out}/last.safetensors"
        assert after.model.preset == before.model.preset == entry.preset
        assert after.data.train == before.data.train and after.train.out != before.train.out
    commands = README.read_text(encoding="utf-8")
    for path in entry.recipe:  # the README gives every stage's command
        assert f"sisr train {path}" in commands
