"""matlab_imresize and psnr/ssim against MATLAB itself: the shared benchmark sets.

The LR images in <set>/LR_bicubic/X<s> were made by a paper's authors with
MATLAB's imresize(hr, 1/s, 'bicubic'); reproducing them bit for bit is what
makes benchmark numbers comparable. The bicubic baseline (LR upscaled back
with the same imresize) must give the published table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sisr.imaging import matlab_imresize, psnr, ssim

SCALES = (2, 3, 4)
SETS = (
    pytest.param("Set5", id="Set5"),
    pytest.param("Set14", id="Set14"),
    pytest.param("BSD100", id="BSD100", marks=pytest.mark.slow),  # 100 images: ~10 s per scale on 2 cores
)
# EDSR paper, Table 2, "Bicubic" row: PSNR (dB) and SSIM on Y, `scale` pixels cropped.
PUBLISHED_BICUBIC = {
    ("Set5", 2): (33.66, 0.9299),
    ("Set5", 3): (30.39, 0.8682),
    ("Set5", 4): (28.42, 0.8104),
    ("Set14", 2): (30.24, 0.8688),
    ("Set14", 3): (27.55, 0.7742),
    ("Set14", 4): (26.00, 0.7027),
    ("BSD100", 2): (29.56, 0.8431),
    ("BSD100", 3): (27.21, 0.7385),
    ("BSD100", 4): (25.96, 0.6675),
}


def load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def hr_and_lr(benchmarks_dir: Path, name: str, scale: int):
    """(HR image, its MATLAB-made LR) for every image of a set."""
    hr_paths = sorted((benchmarks_dir / name / "HR").glob("*.png"))
    assert hr_paths, f"no HR images in {benchmarks_dir / name / 'HR'}"
    for hr_path in hr_paths:
        yield hr_path.name, load(hr_path), load(benchmarks_dir / name / "LR_bicubic" / f"X{scale}" / hr_path.name)


def crop_to_multiple(image: np.ndarray, scale: int) -> np.ndarray:
    height, width = image.shape[:2]
    return image[: height - height % scale, : width - width % scale]


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", SETS)
def test_downscale_reproduces_matlab_lr_images_exactly(benchmarks_dir, name, scale):
    mismatches = []
    for image_name, hr, lr in hr_and_lr(benchmarks_dir, name, scale):
        out = matlab_imresize(crop_to_multiple(hr, scale), scale=1 / scale)
        assert out.shape == lr.shape and out.dtype == lr.dtype, image_name  # bridge.png is grayscale
        max_difference = int(np.abs(out.astype(np.int16) - lr).max())
        if max_difference:
            mismatches.append((image_name, max_difference))
    assert mismatches == []


@pytest.mark.parametrize("scale", SCALES)
def test_symmetric_border_differs_only_in_the_outer_two_pixels(benchmarks_dir, scale):
    for image_name, hr, lr in hr_and_lr(benchmarks_dir, "Set5", scale):
        out = matlab_imresize(crop_to_multiple(hr, scale), scale=1 / scale, border="symmetric")
        difference = np.abs(out.astype(np.int16) - lr)
        assert difference.max() > 0, image_name  # the shared images were made with a replicated edge
        assert difference[2:-2, 2:-2].max() == 0, image_name


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", SETS)
def test_bicubic_baseline_reproduces_the_published_table(benchmarks_dir, name, scale):
    psnr_values, ssim_values = [], []
    for _, hr, lr in hr_and_lr(benchmarks_dir, name, scale):
        upscaled = matlab_imresize(lr, scale=scale)
        reference = hr[: lr.shape[0] * scale, : lr.shape[1] * scale]
        psnr_values.append(psnr(upscaled, reference, crop_border=scale, y_channel=True))
        ssim_values.append(ssim(upscaled, reference, crop_border=scale, y_channel=True))
    published_psnr, published_ssim = PUBLISHED_BICUBIC[(name, scale)]
    assert np.mean(psnr_values) == pytest.approx(published_psnr, abs=0.02)
    assert np.mean(ssim_values) == pytest.approx(published_ssim, abs=0.001)
