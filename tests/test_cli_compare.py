"""`sisr compare` and `compare_models`: the right images, the right numbers, in the right places."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sisr.cli import main
from sisr.errors import SisrError
from sisr.figures.compare import LABEL_GAP, LABEL_SIZE, TITLE_SIZE, compare_models, metrics_label, nearest_enlarge
from sisr.figures.crops import CropBox
from sisr.figures.style import font, line_height

skimage_data = pytest.importorskip("skimage.data")

SCALE = 2


@pytest.fixture(scope="module")
def hr_image() -> np.ndarray:
    # Odd sizes on purpose: HR is cropped at the top-left to a multiple of the scale.
    return np.ascontiguousarray(skimage_data.astronaut()[60:251, 140:311])  # 191 x 171


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory) -> str:
    from sisr import create_model
    from sisr.weights import save_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny-edsr.safetensors"
    save_model(create_model("edsr-baseline-x2", num_blocks=1), path)
    return str(path)


@pytest.fixture(scope="module")
def hr_comparison(hr_image, tiny_model_file):
    return compare_models(
        hr_image, [tiny_model_file], SCALE, crop=CropBox(40, 30, 64, 48), zoom=4, caption="", device="cpu"
    )


def y_psnr(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    """Independent reference: BT.601 luma (as MATLAB's rgb2ycbcr), border cropped, 8-bit peak."""

    def luma(image):
        rgb = image.astype(np.float64)
        return 16 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255

    diff = (luma(sr) - luma(hr))[border:-border, border:-border]
    return float(10 * np.log10(255.0**2 / np.mean(diff**2)))


def find_in(figure: np.ndarray, patch: np.ndarray) -> list[tuple[int, int]]:
    """Every place where `patch` appears in `figure`, pixel for pixel."""
    h, w = patch.shape[:2]
    first = (figure[: figure.shape[0] - h + 1, : figure.shape[1] - w + 1] == patch[0, 0]).all(axis=-1)
    return [(int(y), int(x)) for y, x in zip(*np.nonzero(first)) if np.array_equal(figure[y : y + h, x : x + w], patch)]


def test_hr_mode_makes_lr_with_matlab_bicubic_and_shows_every_method(hr_comparison, hr_image):
    from sisr.imaging import matlab_imresize

    panels = hr_comparison.panels
    assert [p.title for p in panels] == ["LR (nearest x2)", "bicubic", "tiny-edsr", "HR (original)"]
    hr = hr_image[:190, :170]
    lr = matlab_imresize(hr, scale=1 / SCALE)
    assert lr.shape == (95, 85, 3)
    np.testing.assert_array_equal(panels[-1].image, hr)
    np.testing.assert_array_equal(panels[0].image, np.repeat(np.repeat(lr, 2, axis=0), 2, axis=1))
    for panel in panels:
        assert panel.image.shape == (190, 170, 3) and panel.image.dtype == np.uint8


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """A [0, 1] NCHW result as 8-bit HxWx3: clipped, rounded half up."""
    return torch.floor(tensor[0].permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()


def lr_tensor(lr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255


def test_bicubic_panel_is_the_matlab_bicubic_upscale(hr_comparison, hr_image):
    from sisr.imaging import matlab_imresize

    lr = matlab_imresize(hr_image[:190, :170], scale=1 / SCALE)
    reference = to_uint8(matlab_imresize(lr_tensor(lr), scale=SCALE))
    np.testing.assert_array_equal(hr_comparison.panels[1].image, reference)


def test_model_panel_is_the_models_output(hr_comparison, hr_image, tiny_model_file):
    from sisr.imaging import matlab_imresize
    from sisr.weights import load_model

    model = load_model(tiny_model_file)
    lr = matlab_imresize(hr_image[:190, :170], scale=1 / SCALE)
    with torch.no_grad():
        reference = to_uint8(model(lr_tensor(lr)))
    # Inference may run in another memory layout: float sums in another order move a rare .5 by one level.
    difference = np.abs(hr_comparison.panels[2].image.astype(int) - reference.astype(int))
    assert difference.max() <= 1 and np.count_nonzero(difference) <= difference.size // 1000


def test_labels_carry_whole_image_psnr_and_ssim(hr_comparison):
    from sisr.imaging import psnr, ssim

    hr = hr_comparison.panels[-1].image
    for panel in hr_comparison.panels[1:3]:
        assert panel.psnr == pytest.approx(y_psnr(panel.image, hr, SCALE), abs=1e-6)
        assert panel.ssim == pytest.approx(float(ssim(panel.image, hr, crop_border=SCALE, y_channel=True)))
        assert panel.psnr == pytest.approx(float(psnr(panel.image, hr, crop_border=SCALE, y_channel=True)))
        expected = f"PSNR {panel.psnr:.2f} dB / SSIM {panel.ssim:.4f}"
        assert panel.label == metrics_label(panel.psnr, panel.ssim) == expected
    assert 25 < hr_comparison.panels[1].psnr < 40  # bicubic x2 of a photo
    assert hr_comparison.panels[0].psnr is None and hr_comparison.panels[-1].psnr is None


def test_figure_shows_the_same_crop_of_every_panel_at_the_layout_size(hr_comparison):
    figure = np.asarray(hr_comparison.figure)
    crop = hr_comparison.crop
    assert crop == CropBox(40, 30, 64, 48) and hr_comparison.zoom == 4
    places = []
    for panel in hr_comparison.panels:
        expected = nearest_enlarge(panel.image[30:78, 40:104], 4)
        found = find_in(figure, expected)
        assert len(found) == 1, panel.title
        places.append(found[0])
    # One row: overview, LR, bicubic, model, HR, each cell 256 px wide (crop 64 x zoom 4), left to right.
    assert [y for y, _ in places] == [16] * 4
    assert [x for _, x in places] == [16 + i * (256 + 14) for i in range(1, 5)]
    cell_height = 48 * 4 + LABEL_GAP + line_height(font(TITLE_SIZE)) + line_height(font(LABEL_SIZE))
    assert hr_comparison.figure.size == (2 * 16 + 5 * 256 + 4 * 14, 2 * 16 + cell_height)


def test_lr_mode_has_no_hr_panel_and_no_metrics(hr_comparison, tiny_model_file):
    lr = hr_comparison.panels[0].image[::2, ::2]
    result = compare_models(lr, [tiny_model_file, "bicubic"], SCALE, lr_input=True, device="cpu")
    assert [p.title for p in result.panels] == ["LR (nearest x2)", "bicubic", "tiny-edsr"]
    assert all(p.psnr is None and p.ssim is None for p in result.panels)
    assert "dB" not in " ".join(p.label for p in result.panels)
    np.testing.assert_array_equal(result.panels[1].image, hr_comparison.panels[1].image)
    # The default crop is the most detailed region, on the LR pixel grid.
    assert result.crop.x % SCALE == 0 and result.crop.y % SCALE == 0
    assert result.crop.x + result.crop.width <= 170 and result.crop.y + result.crop.height <= 190


def test_lr_with_hr_gives_the_same_numbers_as_hr_mode(hr_comparison, hr_image, tiny_model_file):
    lr = hr_comparison.panels[0].image[::2, ::2]
    result = compare_models(lr, [tiny_model_file], SCALE, lr_input=True, hr=hr_image, crop="centre", device="cpu")
    assert [p.psnr for p in result.panels] == [p.psnr for p in hr_comparison.panels]
    assert result.crop.x == (170 - result.crop.width) // 2 // 2 * 2


def test_a_crop_outside_the_image_is_an_error(hr_image):
    with pytest.raises(SisrError, match="outside the 170x190"):
        compare_models(hr_image, [], SCALE, crop=CropBox(150, 0, 40, 40), device="cpu")


def test_cli_writes_the_figure_and_refuses_to_overwrite(tmp_path, hr_image, hr_comparison, tiny_model_file, capsys):
    from sisr.image_io import write_image

    source = tmp_path / "astronaut.png"
    write_image(source, hr_image)
    out = tmp_path / "figure.png"
    argv = [
        "compare",
        str(source),
        "--model",
        tiny_model_file,
        "-o",
        str(out),
        "--crop",
        "40,30,64,48",
        "--zoom",
        "4",
        "--caption",
        "",
        "--device",
        "cpu",
    ]
    assert main(argv) == 0  # scale taken from the model
    with Image.open(out) as written:
        assert written.format == "PNG"
        np.testing.assert_array_equal(np.asarray(written.convert("RGB")), np.asarray(hr_comparison.figure))
    assert main(argv) == 1
    assert "already exists" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--scale", "4"]) == 1
    assert "x2" in capsys.readouterr().err


def test_cli_bad_crop_text_is_an_error_naming_the_option(tmp_path, hr_image, capsys):
    from sisr.image_io import write_image

    source = tmp_path / "a.png"
    write_image(source, hr_image)
    assert main(["compare", str(source), "--scale", "2", "-o", str(tmp_path / "f.png"), "--crop", "1,2,3"]) == 1
    assert "--crop '1,2,3'" in capsys.readouterr().err
    assert main(["compare", str(source), "--scale", "2", "-o", str(tmp_path / "f.png"), "--crop", "160,0,20,20"]) == 1
    assert "outside the 170x190" in capsys.readouterr().err
    assert main(["compare", str(source), "--model", "bicubic", "-o", str(tmp_path / "f.png")]) == 1
    assert "--scale" in capsys.readouterr().err  # bicubic alone has no scale of its own
