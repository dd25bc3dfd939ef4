"""psnr / ssim: the SR papers' protocol, checked against hand values and scikit-image."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from sisr.errors import SisrError
from sisr.imaging import psnr, rgb_to_ycbcr, ssim

RNG = np.random.default_rng(99)


def noisy_pair(shape=(40, 48, 3), noise=12):
    hr = RNG.integers(0, 256, shape, dtype=np.uint8)
    sr = np.clip(hr.astype(int) + RNG.integers(-noise, noise + 1, shape), 0, 255).astype(np.uint8)
    return sr, hr


# --- PSNR ----------------------------------------------------------------------


def test_psnr_of_one_level_offset_is_48_13_db():
    hr = np.full((16, 16), 100, dtype=np.uint8)
    assert psnr(hr + 1, hr) == pytest.approx(20 * math.log10(255), abs=1e-12)
    assert psnr(hr + 1, hr) == pytest.approx(48.1308, abs=1e-4)


def test_psnr_on_y_weights_the_offset_by_219_over_255():
    hr = np.full((16, 16, 3), 100, dtype=np.uint8)
    # +1 on R, G and B moves Y by (65.481 + 128.553 + 24.966) / 255 = 219 / 255, unrounded.
    assert psnr(hr + 1, hr, y_channel=True) == pytest.approx(20 * math.log10(255 * 255 / 219), abs=1e-10)
    assert psnr(hr + 1, hr, y_channel=False) == pytest.approx(48.1308, abs=1e-4)


def test_psnr_by_hand_with_crop():
    hr = np.zeros((10, 10), dtype=np.uint8)
    sr = hr.copy()
    sr[0, :] = 255  # only in the border: cropped away
    sr[5, 5] = 10
    assert psnr(sr, hr, crop_border=1) == pytest.approx(10 * math.log10(255**2 / (100 / 64)), abs=1e-12)


def test_identical_images():
    image = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert psnr(image, image) == math.inf
    assert ssim(image, image) == pytest.approx(1.0, abs=1e-12)
    assert ssim(image, image, y_channel=False) == pytest.approx(1.0, abs=1e-12)


def test_float_images_are_rounded_to_8_bit_levels_first():
    sr, hr = noisy_pair()
    sr_float = sr / 255.0 + RNG.uniform(-0.49, 0.49, sr.shape) / 255  # rounds back to sr
    assert psnr(sr_float, hr / 255.0) == psnr(sr, hr)
    assert ssim(sr_float, hr / 255.0) == ssim(sr, hr)
    assert psnr(np.clip(sr_float + 2.0, 0, None), hr / 255.0) == psnr(np.full_like(sr, 255), hr)  # clipped at 1


def test_y_is_unrounded_not_the_uint8_rgb2ycbcr():
    sr, hr = noisy_pair()
    rounded_y = psnr(rgb_to_ycbcr(sr)[..., 0], rgb_to_ycbcr(hr)[..., 0])
    assert psnr(sr, hr) != rounded_y
    assert psnr(sr, hr) == pytest.approx(rounded_y, abs=0.2)


# --- SSIM ----------------------------------------------------------------------


def test_ssim_matches_scikit_image_on_the_valid_region():
    sr, hr = noisy_pair((48, 56), noise=30)
    # scikit-image pads and then averages the map without its 5-pixel margin: Wang et al.'s 'valid' SSIM.
    reference = structural_similarity(
        sr, hr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert ssim(sr, hr) == pytest.approx(reference, abs=1e-9)


def test_ssim_map_matches_scikit_image_pixel_by_pixel():
    from sisr.imaging.metrics import _ssim_map

    sr, hr = noisy_pair((30, 34), noise=40)
    _, full_map = structural_similarity(
        sr, hr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, full=True
    )
    ours = _ssim_map(sr[None, None].astype(float), hr[None, None].astype(float))[0, 0]
    assert ours.shape == (20, 24)
    np.testing.assert_allclose(ours, full_map[5:-5, 5:-5], atol=1e-9)


def test_ssim_of_rgb_without_y_is_the_mean_over_channels():
    sr, hr = noisy_pair()
    per_channel = [ssim(sr[..., c], hr[..., c], crop_border=2) for c in range(3)]
    assert ssim(sr, hr, crop_border=2, y_channel=False) == pytest.approx(np.mean(per_channel), abs=1e-12)


def test_other_channel_counts_without_y_average_the_channels():
    sr, hr = noisy_pair((24, 24, 4))
    mse = np.mean((sr.astype(float) - hr) ** 2)
    assert psnr(sr, hr, y_channel=False) == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-12)


def test_ssim_falls_with_noise():
    hr = RNG.integers(0, 256, (40, 40), dtype=np.uint8)
    values = [ssim(np.clip(hr + RNG.normal(0, sigma, hr.shape), 0, 255).astype(np.uint8), hr) for sigma in (2, 10, 40)]
    assert 1 > values[0] > values[1] > values[2] > 0


def test_grayscale_one_channel_and_plain_planes_agree():
    sr, hr = noisy_pair((30, 30, 3))
    plane_psnr = psnr(sr[..., 0], hr[..., 0], crop_border=3)
    assert psnr(sr[..., :1], hr[..., :1], crop_border=3) == plane_psnr  # no Y conversion for 1 channel
    assert ssim(sr[..., :1], hr[..., :1]) == ssim(sr[..., 0], hr[..., 0])


# --- batches, torch ------------------------------------------------------------


def test_batch_gives_one_value_per_image():
    sr, hr = noisy_pair((3, 32, 32, 3))
    values = psnr(sr, hr, crop_border=2)
    assert isinstance(values, list) and len(values) == 3
    assert values == [psnr(sr[i], hr[i], crop_border=2) for i in range(3)]
    assert ssim(sr, hr) == [ssim(sr[i], hr[i]) for i in range(3)]
    assert isinstance(psnr(sr[0], hr[0]), float)


@pytest.mark.parametrize("as_float", [False, True])
def test_torch_channels_first_matches_numpy(as_float):
    sr, hr = noisy_pair((2, 32, 36, 3))
    sr_t, hr_t = (torch.from_numpy(x).permute(0, 3, 1, 2) for x in (sr, hr))
    if as_float:
        sr_t, hr_t = sr_t.float() / 255, hr_t.float() / 255
    for metric in (psnr, ssim):
        for y_channel in (True, False):
            np.testing.assert_allclose(metric(sr_t, hr_t, 4, y_channel), metric(sr, hr, 4, y_channel), rtol=1e-12)
    assert psnr(sr_t[0], hr_t[0]) == pytest.approx(psnr(sr[0], hr[0]), rel=1e-12)


# --- errors --------------------------------------------------------------------


def test_mismatched_shapes_name_both():
    with pytest.raises(SisrError, match=re.escape("sr of shape (8, 8, 3) and hr of shape (8, 9, 3) differ")):
        psnr(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8))
    with pytest.raises(SisrError, match=re.escape("(1, 3, 16, 16)")):
        ssim(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 17))


@pytest.mark.parametrize(
    ("sr", "hr", "kwargs", "message"),
    [
        (np.zeros((8, 8), np.uint8), torch.zeros(8, 8), {}, "sr is a ndarray but hr is a Tensor"),
        (
            np.zeros((8, 8), np.uint8),
            np.zeros((8, 8), np.uint8),
            {"crop_border": 4},
            "a border crop of 4 pixels leaves nothing",
        ),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), {"crop_border": -1}, "a border crop of -1 pixels"),
        (np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 4), np.uint8), {}, "4 channels; Y needs 1 or 3"),
        (np.zeros((8, 8), np.int16), np.zeros((8, 8), np.int16), {}, "unsupported dtype int16"),
    ],
)
def test_bad_inputs_are_named(sr, hr, kwargs, message):
    with pytest.raises(SisrError, match=re.escape(message)):
        psnr(sr, hr, **kwargs)


def test_ssim_needs_the_whole_window():
    with pytest.raises(SisrError, match="smaller than the 11x11 window"):
        ssim(np.zeros((14, 14), np.uint8), np.zeros((14, 14), np.uint8), crop_border=2)
