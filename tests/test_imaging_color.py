"""rgb_to_ycbcr / ycbcr_to_rgb / rgb_to_y: MATLAB's BT.601 conversions, per type and layout."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from skimage import color as skimage_color

from sisr.errors import SisrError
from sisr.imaging import rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb

RNG = np.random.default_rng(7)
PRIMARIES = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
# MATLAB: rgb2ycbcr(uint8([255 255 255; 0 0 0; 255 0 0; 0 255 0; 0 0 255]))
MATLAB_YCBCR = np.array([[[235, 128, 128], [16, 128, 128], [81, 90, 240], [145, 54, 34], [41, 240, 110]]])


def test_uint8_matches_known_matlab_values():
    out = rgb_to_ycbcr(PRIMARIES)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, MATLAB_YCBCR)


def test_uint8_inverse_of_white_and_black():
    out = ycbcr_to_rgb(np.array([[[235, 128, 128], [16, 128, 128]]], dtype=np.uint8))
    np.testing.assert_array_equal(out, [[[255, 255, 255], [0, 0, 0]]])


def test_float_uses_matlab_double_semantics():
    out = rgb_to_ycbcr(np.array([[[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]]))
    np.testing.assert_allclose(out, [[[235 / 255, 128 / 255, 128 / 255], [16 / 255, 128 / 255, 128 / 255]]], atol=1e-15)


def test_float_matches_scikit_image():
    image = RNG.random((16, 16, 3))
    # scikit-image gives the same BT.601 studio-swing transform in 0..255 units.
    np.testing.assert_allclose(rgb_to_ycbcr(image) * 255, skimage_color.rgb2ycbcr(image), atol=1e-10)
    ycbcr = skimage_color.rgb2ycbcr(image)
    np.testing.assert_allclose(ycbcr_to_rgb(ycbcr / 255), skimage_color.ycbcr2rgb(ycbcr), atol=1e-10)


def test_float_round_trip_is_exact():
    image = RNG.random((2, 32, 32, 3))
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(image)), image, atol=1e-10)


def test_float_inverse_is_not_clipped():
    # Extreme chroma is outside the RGB cube: MATLAB returns it as it is (uint8 saturates).
    ycbcr = np.array([[[235.0, 240.0, 240.0], [16.0, 16.0, 16.0]]])
    out = ycbcr_to_rgb(ycbcr / 255)
    assert out.max() > 1.5 and out.min() < -0.5
    np.testing.assert_array_equal(ycbcr_to_rgb(ycbcr.astype(np.uint8)), np.clip(np.floor(out * 255 + 0.5), 0, 255))


def test_uint8_round_trip_is_within_two_levels():
    image = RNG.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    back = ycbcr_to_rgb(rgb_to_ycbcr(image))
    difference = np.abs(back.astype(int) - image)
    assert back.dtype == np.uint8
    assert difference.max() <= 2  # 219 luma levels for 256: some colours cannot come back exactly
    assert difference.mean() < 1


def test_float32_stays_float32():
    image = RNG.random((4, 4, 3)).astype(np.float32)
    assert rgb_to_ycbcr(image).dtype == np.float32
    assert rgb_to_y(image).dtype == np.float32


def test_rgb_to_y_is_the_first_channel():
    image = RNG.integers(0, 256, (2, 8, 9, 3), dtype=np.uint8)
    y = rgb_to_y(image)
    assert y.shape == (2, 8, 9)
    np.testing.assert_array_equal(y, rgb_to_ycbcr(image)[..., 0])
    assert rgb_to_y(image[0]).shape == (8, 9)
    # Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, rounded half away from zero.
    r, g, b = (image[..., c].astype(float) for c in range(3))
    np.testing.assert_array_equal(y, np.floor(16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255 + 0.5))


@pytest.mark.parametrize("dtype", [np.uint8, np.float64])
def test_torch_matches_numpy_channels_first(dtype):
    image = RNG.integers(0, 256, (2, 6, 7, 3)).astype(dtype)
    image = image / 255 if dtype == np.float64 else image
    tensor = torch.from_numpy(image).permute(0, 3, 1, 2)
    for convert in (rgb_to_ycbcr, ycbcr_to_rgb):
        expected = convert(image)
        got = convert(tensor)
        assert got.dtype == tensor.dtype and got.shape == tensor.shape
        np.testing.assert_allclose(got.permute(0, 2, 3, 1).numpy(), expected, atol=1e-12)
    y = rgb_to_y(tensor)
    assert y.shape == (2, 1, 6, 7)  # the channel dimension stays for models
    np.testing.assert_allclose(y[:, 0].numpy(), rgb_to_y(image), atol=1e-12)
    assert rgb_to_y(tensor[0]).shape == (1, 6, 7)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_torch_path_stays_on_the_device(dtype):
    image = torch.empty((2, 3, 5, 6), dtype=dtype, device="meta")  # no data: a host trip would fail
    for convert in (rgb_to_ycbcr, ycbcr_to_rgb):
        out = convert(image)
        assert out.device.type == "meta" and out.dtype == dtype and out.shape == image.shape
    assert rgb_to_y(image).shape == (2, 1, 5, 6)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((4, 4), dtype=np.uint8), "shape (4, 4) is not HxWx3"),
        (np.zeros((4, 4, 4), dtype=np.uint8), "shape (4, 4, 4) is not HxWx3"),
        (torch.zeros((4, 4, 3), dtype=torch.uint8), "shape (4, 4, 3) is not 3xHxW"),
        (np.zeros((4, 4, 3), dtype=np.int32), "unsupported dtype int32"),
        ("image.png", "got str"),
    ],
)
def test_bad_images_are_named(image, message):
    with pytest.raises(SisrError, match=re.escape(message)):
        rgb_to_ycbcr(image)
