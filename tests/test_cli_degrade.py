"""`sisr degrade`: LR images from HR ones by a fixed recipe, for one file or a folder, never replacing."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from sisr import evaluate
from sisr.cli import main
from sisr.image_io import read_image, write_image
from sisr.imaging import matlab_imresize
from sisr.imaging.jpeg import jpeg_quality


def _hr_folder(root: Path) -> Path:
    from skimage import data

    photo = data.astronaut()
    write_image(root / "a.png", photo[:64, :72])
    write_image(root / "sub" / "b.png", photo[100:164, 200:280])
    write_image(root / "grey.png", photo[200:240, 40:100, 0])
    return root


def test_one_file_with_jpeg_is_pillows_jpeg_of_the_matlab_lr(tmp_path: Path):
    hr_folder = _hr_folder(tmp_path / "hr")
    out = tmp_path / "a-x4.jpg"
    assert main(["degrade", str(hr_folder / "a.png"), "-o", str(out), "--recipe", "jpeg75", "--scale", "4"]) == 0
    buffer = io.BytesIO()
    Image.fromarray(matlab_imresize(read_image(hr_folder / "a.png"), scale=1 / 4)).save(buffer, "JPEG", quality=75)
    assert out.read_bytes() == buffer.getvalue()
    assert jpeg_quality(out).quality == 75
    # A folder as OUT takes the input's name.
    assert main(["degrade", str(hr_folder / "a.png"), "-o", str(tmp_path), "--recipe", "noise15", "--scale", "2"]) == 0
    assert read_image(tmp_path / "a.png").shape == (32, 36, 3)


def test_a_folder_is_mirrored_and_matches_what_evaluate_measures(tmp_path: Path, capsys):
    hr_folder = _hr_folder(tmp_path / "hr")
    out = tmp_path / "lr"
    argv = ["degrade", str(hr_folder), "-o", str(out), "--recipe", "realesrgan-0", "--scale", "2", "--seed", "3"]
    assert main(argv) == 0
    made = sorted(path.relative_to(out).as_posix() for path in out.rglob("*.png"))
    assert made == ["a.png", "grey.png", "sub/b.png"]
    assert read_image(out / "grey.png").ndim == 2  # grey stays grey
    # The same LR image that `evaluate --degradation` scores: bicubic of it gives the same PSNR.
    (record,) = evaluate(
        "bicubic", str(hr_folder), 2, metrics=["psnr"], degradations="realesrgan-0", degradation_seed=3
    )
    (from_files,) = evaluate("bicubic", str(_as_set(hr_folder, out, tmp_path / "set")), 2, metrics=["psnr"])
    assert [i["psnr"] for i in record["images"]] == [i["psnr"] for i in from_files["images"]]


def _as_set(hr_folder: Path, lr_folder: Path, root: Path) -> Path:
    """The top-level HR images and their LR images in the HR/ + LR_bicubic/X2/ layout."""
    for path in hr_folder.glob("*.png"):
        write_image(root / "HR" / path.name, read_image(path))
        write_image(root / "LR_bicubic" / "X2" / path.name, read_image(lr_folder / path.name))
    return root


def test_the_same_command_gives_the_same_bytes_and_never_replaces_without_asking(tmp_path: Path, capsys):
    hr_folder = _hr_folder(tmp_path / "hr")
    out = tmp_path / "lr"
    argv = ["degrade", str(hr_folder), "-o", str(out), "--recipe", "noise15", "--scale", "2"]
    assert main(argv) == 0
    first = {path.name: path.read_bytes() for path in out.rglob("*.png")}
    assert main(argv) == 1
    assert "already exists" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert {path.name: path.read_bytes() for path in out.rglob("*.png")} == first
    assert main([*argv, "--overwrite", "--seed", "1"]) == 0
    assert {path.name: path.read_bytes() for path in out.rglob("*.png")} != first


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--recipe", "jpeg500"], "--recipe 'jpeg500' has a JPEG quality outside 1-100"),
        (["--recipe", "blurry"], "--recipe 'blurry' is not a known degradation"),
        (["--recipe", "noise15", "-o", "{tmp}/x.jpg"], "would compress it once more"),
        (["--recipe", "jpeg75", "-o", "{tmp}/x.webp"], "not a lossless format"),
        (["--recipe", "jpeg75", "--seed", "-1"], "--seed -1: must not be negative"),
    ],
)
def test_mistakes_are_one_line_errors_before_any_work(tmp_path: Path, capsys, extra: list[str], message: str):
    hr_folder = _hr_folder(tmp_path / "hr")
    argv = ["degrade", str(hr_folder / "a.png"), "--scale", "4"]
    extra = [part.replace("{tmp}", str(tmp_path)) for part in extra]
    if "-o" not in extra:
        extra += ["-o", str(tmp_path / "out.png")]
    assert main(argv + extra) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not any(tmp_path.glob("out*")) and not any(tmp_path.glob("x.*"))


def test_missing_input_is_named(tmp_path: Path, capsys):
    assert (
        main(["degrade", str(tmp_path / "nothing"), "-o", str(tmp_path / "o"), "--recipe", "jpeg75", "--scale", "2"])
        == 1
    )
    assert "nothing: no such file or folder" in capsys.readouterr().err
