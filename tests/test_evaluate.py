"""`sisr evaluate` and `sisr.evaluate`: the papers' protocol, as records, tables, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sisr import create_model, evaluate
from sisr.cli import main
from sisr.errors import SisrError
from sisr.image_io import read_image, write_image
from sisr.imaging import matlab_imresize, psnr, ssim
from sisr.weights import save_model

# The EDSR paper's bicubic baseline (Y channel, border = scale), PSNR and SSIM: the parity test's table.
from test_imaging_matlab_parity import PUBLISHED_BICUBIC


@pytest.mark.slow
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_reproduces_the_published_table(benchmarks_dir: Path, scale: int, capsys) -> None:
    status = main(
        [
            "evaluate",
            "--model",
            "bicubic",
            "--dataset",
            "Set5",
            "--dataset",
            "Set14",
            "--dataset",
            "BSD100",
            "--scale",
            str(scale),
            "--data-root",
            str(benchmarks_dir),
            "--format",
            "json",
        ]
    )
    assert status == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["dataset"] for r in records] == ["Set5", "Set14", "BSD100"]
    for record in records:
        expected_psnr, expected_ssim = PUBLISHED_BICUBIC[(record["dataset"], scale)]
        assert record["metrics"]["psnr"] == pytest.approx(expected_psnr, abs=0.02), record["dataset"]
        assert record["metrics"]["ssim"] == pytest.approx(expected_ssim, abs=0.001), record["dataset"]
        assert len(record["images"]) == {"Set5": 5, "Set14": 14, "BSD100": 100}[record["dataset"]]


def make_folder(root: Path, scale: int, count: int = 3) -> Path:
    """A small benchmark folder in the `HR/` + `LR_bicubic/X<s>/` layout, from a real photo."""
    from skimage import data

    photo = data.astronaut()
    for i in range(count):
        hr = photo[i * 40 : i * 40 + 64, i * 50 : i * 50 + 72]
        write_image(root / "HR" / f"img{i}.png", hr)
        write_image(root / "LR_bicubic" / f"X{scale}" / f"img{i}.png", matlab_imresize(hr, scale=1 / scale))
    write_image(root / "HR" / "gray.png", photo[100:164, 100:172, 1])
    write_image(
        root / "LR_bicubic" / f"X{scale}" / "gray.png", matlab_imresize(photo[100:164, 100:172, 1], scale=1 / scale)
    )
    return root


@pytest.fixture()
def tiny_model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = create_model("edsr-baseline-x2", num_blocks=1, num_filters=8)
    return save_model(model, tmp_path / "tiny-x2.safetensors")


def test_records_hold_per_image_values_computed_as_the_metrics_do(tmp_path: Path, tiny_model: Path) -> None:
    folder = make_folder(tmp_path / "mini", 2)
    records = evaluate([str(tiny_model), "bicubic"], [str(folder)], 2, save_images=tmp_path / "sr")
    assert [r["model"] for r in records] == ["tiny-x2", "bicubic"]
    for record in records:
        assert record["scale"] == 2 and record["crop_border"] == 2 and record["y_channel"] is True
        assert [image["name"] for image in record["images"]] == ["gray", "img0", "img1", "img2"]
        for image in record["images"]:
            sr = read_image(tmp_path / "sr" / record["model"] / "mini" / "x2" / f"{image['name']}.png")
            hr = read_image(folder / "HR" / f"{image['name']}.png")
            assert sr.shape == hr.shape  # grayscale in, grayscale out
            assert image["psnr"] == pytest.approx(psnr(sr, hr, crop_border=2))
            assert image["ssim"] == pytest.approx(ssim(sr, hr, crop_border=2))
        assert record["metrics"]["psnr"] == pytest.approx(np.mean([i["psnr"] for i in record["images"]]))
    # A random network is far worse than bicubic: the numbers mean something.
    assert records[1]["metrics"]["psnr"] > records[0]["metrics"]["psnr"] + 5


def test_a_model_object_is_scored_as_its_weight_file_is(tmp_path: Path, tiny_model: Path) -> None:
    from sisr import load_model

    folder = make_folder(tmp_path / "mini", 2, count=1)
    (by_path,) = evaluate(str(tiny_model), str(folder), 2, metrics=["psnr"])
    (by_object,) = evaluate(load_model(tiny_model), str(folder), 2, metrics=["psnr"])
    assert by_object["model"] == by_path["model"] == "tiny-x2"
    assert by_object["images"] == by_path["images"]


def test_rgb_and_crop_options_change_the_measurement(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "mini", 2)
    y = evaluate("bicubic", str(folder), 2, metrics=["psnr"])[0]
    rgb = evaluate("bicubic", str(folder), 2, metrics=["psnr"], y_channel=False, crop_border=0)[0]
    assert rgb["crop_border"] == 0 and rgb["y_channel"] is False
    assert set(rgb["metrics"]) == {"psnr"}
    assert abs(rgb["metrics"]["psnr"] - y["metrics"]["psnr"]) > 0.1


def test_self_ensemble_is_labelled_and_equals_mean_of_eight_passes(tmp_path: Path, tiny_model: Path) -> None:
    folder = make_folder(tmp_path / "mini", 2, count=1)
    plain, ensemble = (evaluate(str(tiny_model), str(folder), 2, self_ensemble=flag)[0] for flag in (False, True))
    assert ensemble["model"] == "tiny-x2+"
    assert ensemble["metrics"]["psnr"] != plain["metrics"]["psnr"]


def test_table_csv_and_json_formats(tmp_path: Path, tiny_model: Path, capsys) -> None:
    folder = make_folder(tmp_path / "mini", 2, count=1)
    base = ["evaluate", "--model", "bicubic", "--model", str(tiny_model), "--dataset", str(folder), "--scale", "2"]
    assert main(base) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["x2", "(PSNR", "/"] and table[0].split()[-1] == "mini"
    assert table[2].startswith("bicubic") and table[3].startswith("tiny-x2")

    assert main(base + ["--format", "csv", "--metric", "psnr"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {row["image"] for row in rows} == {"gray", "img0", "mean"}
    assert set(rows[0]) == {"model", "dataset", "scale", "image", "psnr"}

    out = tmp_path / "results.json"
    assert main(base + ["--format", "json", "-o", str(out)]) == 0
    assert [r["model"] for r in json.loads(out.read_text())] == ["bicubic", "tiny-x2"]
    # An existing output is kept unless asked, and the refusal comes before any work.
    assert main(base + ["--format", "json", "-o", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err


def test_bad_inputs_are_one_line_errors(tmp_path: Path, tiny_model: Path, capsys) -> None:
    folder = make_folder(tmp_path / "mini", 2, count=1)
    assert main(["evaluate", "--model", str(tiny_model), "--dataset", str(folder), "--scale", "4"]) == 1
    assert "x2" in capsys.readouterr().err  # a x2 network asked for x4
    assert main(["evaluate", "--model", "bicubic", "--dataset", "NoSuchSet", "--scale", "2"]) == 1
    err = capsys.readouterr().err
    assert "NoSuchSet" in err and "Traceback" not in err
    assert (
        main(["evaluate", "--model", str(tmp_path / "missing.safetensors"), "--dataset", str(folder), "--scale", "2"])
        == 1
    )
    assert "missing.safetensors" in capsys.readouterr().err
    with pytest.raises(SisrError, match="unknown metric"):
        evaluate("bicubic", str(folder), 2, metrics=["lpips"])


def test_the_scale_defaults_to_the_networks_own(tmp_path: Path, tiny_model: Path, capsys) -> None:
    """`sisr evaluate --model default-x4 --dataset Set5` needs no --scale: the network knows it."""
    folder = make_folder(tmp_path / "mini", 2, count=1)
    implied = evaluate([str(tiny_model), "bicubic"], str(folder), metrics=["psnr"])
    given = evaluate([str(tiny_model), "bicubic"], str(folder), 2, metrics=["psnr"])
    assert [r["scale"] for r in implied] == [2, 2] and implied[0]["crop_border"] == 2
    assert [r["metrics"] for r in implied] == [r["metrics"] for r in given]

    assert main(["evaluate", "--model", str(tiny_model), "--dataset", str(folder), "--metric", "psnr"]) == 0
    assert capsys.readouterr().out.startswith("x2 (PSNR)")
    # bicubic alone has no scale of its own; networks of two scales cannot share one table.
    with pytest.raises(SisrError, match="pass --scale"):
        evaluate("bicubic", str(folder))
    torch.manual_seed(0)
    x3 = save_model(create_model("edsr-baseline-x3", num_blocks=1, num_filters=8), tmp_path / "tiny-x3.safetensors")
    assert main(["evaluate", "--model", str(tiny_model), "--model", str(x3), "--dataset", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "tiny-x2 x2" in err and "tiny-x3 x3" in err and "Traceback" not in err


def test_a_degradation_makes_the_lr_from_the_sets_own_lr_and_is_labelled(tmp_path: Path) -> None:
    """jpeg75 scored by hand: the set's LR saved by Pillow at quality 75, enlarged by the bicubic model, PSNR."""
    from PIL import Image

    from sisr import load_model, upscale

    folder = make_folder(tmp_path / "mini", 2)
    plain, jpeg = evaluate("bicubic", str(folder), 2, metrics=["psnr"], degradations=["bicubic", "jpeg75"])
    assert (plain["degradation"], jpeg["degradation"]) == ("bicubic", "jpeg75")
    assert plain["metrics"] == evaluate("bicubic", str(folder), 2, metrics=["psnr"])[0]["metrics"]
    for image in jpeg["images"]:
        buffer = io.BytesIO()
        Image.fromarray(read_image(folder / "LR_bicubic" / "X2" / f"{image['name']}.png")).save(
            buffer, "JPEG", quality=75
        )
        sr = upscale(load_model("bicubic", scale=2), np.asarray(Image.open(buffer)))
        assert image["psnr"] == pytest.approx(
            psnr(sr, read_image(folder / "HR" / f"{image['name']}.png"), crop_border=2)
        )
    assert jpeg["metrics"]["psnr"] < plain["metrics"]["psnr"] - 0.3


def test_degraded_sets_are_the_same_for_every_model_and_in_the_table(tmp_path: Path, tiny_model: Path, capsys) -> None:
    folder = make_folder(tmp_path / "mini", 2, count=1)
    alone = evaluate(str(tiny_model), str(folder), 2, metrics=["psnr"], degradations="realesrgan-0")
    together = evaluate(["bicubic", str(tiny_model)], str(folder), 2, metrics=["psnr"], degradations="realesrgan-0")
    assert together[1]["images"] == alone[0]["images"]  # the second model reads the LR the first one was given
    other_seed = evaluate(
        str(tiny_model), str(folder), 2, metrics=["psnr"], degradations="realesrgan-0", degradation_seed=1
    )
    assert other_seed[0]["images"] != alone[0]["images"]

    base = ["evaluate", "--model", "bicubic", "--dataset", str(folder), "--scale", "2"]
    assert main([*base, "--degradation", "jpeg50", "--degradation", "noise15"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "mini jpeg50" in header and "mini noise15" in header
    assert main([*base, "--degradation", "noise15", "--format", "csv", "--metric", "psnr"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {row["degradation"] for row in rows} == {"noise15"}
    assert main([*base, "--degradation", "jpeg0"]) == 1
    assert "--degradation 'jpeg0' has a JPEG quality outside 1-100" in capsys.readouterr().err
