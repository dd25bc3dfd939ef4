"""Degradations: each operation against an independent computation, the recipes' draws, the fixed ones."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from sisr.data import degradations as d
from sisr.errors import SisrError
from sisr.imaging import matlab_imresize
from sisr.imaging.jpeg import jpeg_quality

scipy_ndimage = pytest.importorskip("scipy.ndimage", reason="scipy is the independent reference for filtering")
scipy_special = pytest.importorskip("scipy.special")


def _offsets(size: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.arange(size) - size // 2
    return np.meshgrid(r, r)  # x along columns, y along rows


def _covariance(sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return rotation @ np.diag([sigma_x**2, sigma_y**2]) @ rotation.T


def _mahalanobis(size: int, covariance: np.ndarray) -> np.ndarray:
    x, y = _offsets(size)
    points = np.stack([x, y], axis=-1).astype(np.float64)
    return np.einsum("...i,ij,...j->...", points, np.linalg.inv(covariance), points)


# --- kernels -------------------------------------------------------------------


def test_an_isotropic_gaussian_is_the_closed_form_normalised_and_separable():
    kernel = d.gaussian_kernel(15, 1.7)
    x, y = _offsets(15)
    closed = np.exp(-(x**2 + y**2) / (2 * 1.7**2))
    np.testing.assert_allclose(kernel, closed / closed.sum(), rtol=1e-5, atol=1e-9)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-6)
    line = np.exp(-((np.arange(15) - 7) ** 2) / (2 * 1.7**2))
    np.testing.assert_allclose(kernel, np.outer(line, line) / np.outer(line, line).sum(), rtol=1e-5, atol=1e-9)


def test_an_anisotropic_gaussian_has_the_rotated_covariance():
    """Read as a distribution, a large enough kernel's second moments are R diag(sx^2, sy^2) R^T."""
    sigma_x, sigma_y, theta = 3.0, 1.2, 0.6
    kernel = d.gaussian_kernel(41, sigma_x, sigma_y, theta).astype(np.float64)
    x, y = _offsets(41)
    moments = np.array(
        [[np.sum(kernel * x * x), np.sum(kernel * x * y)], [np.sum(kernel * x * y), np.sum(kernel * y * y)]]
    )
    np.testing.assert_allclose(moments, _covariance(sigma_x, sigma_y, theta), atol=0.02)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-6)


def test_generalized_gaussian_and_plateau_kernels_follow_their_formulas():
    covariance = _covariance(2.0, 1.0, -0.9)
    q = _mahalanobis(21, covariance)
    for beta in (0.5, 1.0, 2.5):
        generalized = np.exp(-0.5 * q**beta)
        np.testing.assert_allclose(
            d.generalized_gaussian_kernel(21, 2.0, 1.0, -0.9, beta),
            generalized / generalized.sum(),
            rtol=1e-4,
            atol=1e-8,
        )
        plateau = 1 / (1 + q**beta)
        np.testing.assert_allclose(
            d.plateau_kernel(21, 2.0, 1.0, -0.9, beta), plateau / plateau.sum(), rtol=1e-4, atol=1e-8
        )
    # beta = 1 is the plain Gaussian; a plateau kernel is half its peak on the ellipse q = 1.
    np.testing.assert_allclose(
        d.generalized_gaussian_kernel(21, 2.0, 1.0, -0.9, 1.0), d.gaussian_kernel(21, 2.0, 1.0, -0.9), rtol=1e-5
    )
    plateau = d.plateau_kernel(41, 6.0, 6.0, 0.0, 2.0)
    assert plateau[20, 26] / plateau[20, 20] == pytest.approx(0.5, rel=1e-5)  # 6 pixels from the centre


def test_a_sinc_kernel_is_the_circular_lowpass_and_passes_only_low_frequencies():
    cutoff = math.pi / 3
    kernel = d.sinc_kernel(21, cutoff).astype(np.float64)
    x, y = _offsets(21)
    r = np.hypot(x, y)
    with np.errstate(invalid="ignore", divide="ignore"):
        closed = np.where(r == 0, cutoff**2 / (4 * math.pi), cutoff * scipy_special.j1(cutoff * r) / (2 * math.pi * r))
    np.testing.assert_allclose(kernel, closed / closed.sum(), rtol=1e-5, atol=1e-8)
    # The frequency response of a long window: near 1 well inside the cutoff, near 0 well outside it (the
    # truncation's ripple is the ringing the kernel is for).
    response = np.abs(np.fft.fft2(d.sinc_kernel(41, cutoff), s=(256, 256)))
    frequencies = 2 * math.pi * np.fft.fftfreq(256)
    radius = np.hypot(*np.meshgrid(frequencies, frequencies))
    assert np.all(np.abs(response[radius < 0.6 * cutoff] - 1) < 0.15)
    assert np.all(response[radius > 1.4 * cutoff] < 0.06)


def test_kernel_arguments_are_checked():
    with pytest.raises(SisrError, match="odd"):
        d.gaussian_kernel(4, 1.0)
    with pytest.raises(SisrError, match="positive"):
        d.gaussian_kernel(5, 0.0)
    with pytest.raises(SisrError, match="cutoff"):
        d.sinc_kernel(7, 4.0)


# --- filtering and resizing ---------------------------------------------------


def test_blur_is_a_correlation_with_mirrored_edges():
    image = np.random.default_rng(0).random((23, 31, 3), dtype=np.float32)
    kernel = d.generalized_gaussian_kernel(9, 2.0, 0.7, 0.4, 0.8)
    expected = np.stack(
        [
            scipy_ndimage.correlate(image[:, :, c].astype(np.float64), kernel.astype(np.float64), mode="mirror")
            for c in range(3)
        ],
        axis=-1,
    )
    np.testing.assert_allclose(d.blur(image, kernel), expected, atol=1e-5)
    flat = np.full((12, 12, 1), 0.3, dtype=np.float32)
    np.testing.assert_allclose(d.blur(flat, d.gaussian_kernel(21, 3.0)), flat, atol=1e-6)  # brightness kept


@pytest.mark.parametrize("mode", d.RESIZE_MODES)
@pytest.mark.parametrize("size", [(7, 5), (40, 61), (13, 40)])
def test_resizing_computes_what_torch_interpolate_does(mode: str, size: tuple[int, int]):
    image = np.random.default_rng(1).random((19, 23, 3), dtype=np.float32)
    tensor = torch.from_numpy(image.transpose(2, 0, 1).copy())[None]
    options = {} if mode == "area" else {"align_corners": False}
    expected = F.interpolate(tensor, size=size, mode=mode, **options)[0].numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(d.resize(image, size, mode), expected, atol=1e-5)


# --- noise ---------------------------------------------------------------------


def test_gaussian_noise_has_the_asked_sigma_per_channel_or_shared():
    image = np.full((256, 256, 3), 0.5, dtype=np.float32)
    noisy = d.add_gaussian_noise(image, 10 / 255, np.random.default_rng(0))
    noise = noisy - image
    assert noise.std() * 255 == pytest.approx(10, rel=0.02)
    assert abs(noise.mean()) * 255 < 0.1
    assert abs(np.corrcoef(noise[:, :, 0].ravel(), noise[:, :, 1].ravel())[0, 1]) < 0.02  # colour noise
    gray = d.add_gaussian_noise(image, 10 / 255, np.random.default_rng(0), gray=True) - image
    np.testing.assert_array_equal(gray[:, :, 0], gray[:, :, 2])
    assert gray.std() * 255 == pytest.approx(10, rel=0.02)


def test_poisson_noise_has_the_variance_of_photon_counts():
    """256 distinct 8-bit values give 256 levels: at value x the noise's variance is scale^2 * x / 256."""
    ramp = np.repeat(np.arange(256, dtype=np.float32)[None, :] / 255, 512, axis=0)[:, :, None]
    scale = 0.5
    noise = (d.add_poisson_noise(ramp, scale, np.random.default_rng(0)) - ramp)[:, :, 0]
    for value in (64, 128, 192):  # away from the clipping at 0 and 1
        columns = noise[:, value - 4 : value + 4]
        expected = scale**2 * (value / 255) / 256
        assert columns.var() == pytest.approx(expected, rel=0.1), value
        assert abs(columns.mean()) < 3 * math.sqrt(expected / columns.size)


# --- JPEG ----------------------------------------------------------------------


def test_jpeg_is_pillows_at_the_asked_quality():
    photo = _photo()
    for quality in (30, 75, 95):
        data = d.jpeg_encode(photo, quality)
        assert jpeg_quality(data).quality == quality  # read back from the file's own tables
        buffer = io.BytesIO()
        Image.fromarray(photo).save(buffer, format="JPEG", quality=quality)
        assert data == buffer.getvalue()
        roundtrip = d.jpeg(photo.astype(np.float32) / 255, quality)
        np.testing.assert_array_equal(np.round(roundtrip * 255).astype(np.uint8), np.asarray(Image.open(buffer)))
    errors = [np.abs(d.jpeg(photo / np.float32(255), q) - photo / 255).mean() for q in (20, 50, 90)]
    assert errors[0] > errors[1] > errors[2]


def _photo() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:196, 120:216])


# --- recipes ---------------------------------------------------------------------


def _patches(scale: int = 4, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    hr = _photo()[:size, :size]
    return hr, matlab_imresize(hr, scale=1 / scale)


@pytest.mark.parametrize("name", ["jpeg", "realesrgan"])
def test_a_recipe_is_a_pure_function_of_its_generator(name: str):
    hr, lr = _patches()
    recipe = d.training_recipe(name)
    first = [recipe.degrade(hr, lr, np.random.default_rng([0, 2, n])) for n in range(12)]
    again = [recipe.degrade(hr, lr, np.random.default_rng([0, 2, n])) for n in range(12)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
        assert a.shape == lr.shape and a.dtype == np.uint8
    assert len({a.tobytes() for a in first}) > 6  # the draws differ from patch to patch


def test_the_bicubic_recipe_is_the_lr_crop_itself():
    hr, lr = _patches()
    recipe = d.training_recipe("bicubic")
    assert recipe.is_identity
    assert recipe.degrade(hr, lr, np.random.default_rng(0)) is lr


def test_the_jpeg_recipe_compresses_the_bicubic_lr_at_its_quality_range():
    hr, lr = _patches()
    recipe = d.training_recipe("jpeg", {"noise_prob": 0, "jpeg_prob": 1.0, "jpeg_range": [60, 60]})
    expected = d.jpeg_decode(d.jpeg_encode(lr, 60), 3)
    np.testing.assert_array_equal(recipe.degrade(hr, lr, np.random.default_rng(5)), expected)


def test_realesrgan_uses_the_published_parameters():
    recipe = d.training_recipe("realesrgan")
    assert recipe.source == "hr" and recipe.final_sinc_prob == 0.8 and recipe.second is not None
    assert recipe.first.resize_prob == (0.2, 0.7, 0.1) and recipe.first.resize_range == (0.15, 1.5)
    assert recipe.first.noise_range == (1.0, 30.0) and recipe.second.noise_range == (1.0, 25.0)
    assert recipe.second.blur_prob == 0.8 and recipe.second.blur_sigma == (0.2, 1.5)
    assert recipe.first.kernel_prob == (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)


def test_config_arguments_change_a_recipe_and_mistakes_are_named():
    custom = d.training_recipe("custom", {"blur_prob": 1.0, "shuffle": True, "noise_range2": [1, 5], "noise_prob2": 1})
    assert custom.first.blur_prob == 1.0 and custom.shuffle
    assert custom.second is not None and custom.second.noise_range == (1.0, 5.0) and custom.second.jpeg_prob == 0
    assert d.training_recipe("jpeg", {"second_order": True}).second == d.REALESRGAN_SECOND
    hr, lr = _patches()
    assert custom.degrade(hr, lr, np.random.default_rng(0)).shape == lr.shape
    with pytest.raises(SisrError, match="data.degradation must be one of"):
        d.training_recipe("jpg")
    with pytest.raises(SisrError, match=r"jpeg_rnage is not a degradation option; did you mean 'jpeg_range'"):
        d.training_recipe("jpeg", {"jpeg_rnage": [30, 90]})
    with pytest.raises(SisrError, match="jpeg_range must be qualities from 1 to 100"):
        d.training_recipe("jpeg", {"jpeg_range": [0, 90]})
    with pytest.raises(SisrError, match="noise_prob is a probability"):
        d.training_recipe("jpeg", {"noise_prob": 2})
    with pytest.raises(SisrError, match="resize_range must be positive and at most 4"):
        d.training_recipe("realesrgan", {"resize_range": [0.1, 1000]})  # a x1000 patch would only cost memory
    with pytest.raises(SisrError, match="source must be 'lr'"):
        d.training_recipe("jpeg", {"source": "both"})


# --- fixed degradations for evaluation ------------------------------------------


def test_fixed_names_parse_and_bad_ones_are_one_sentence():
    assert d.fixed_degradation("JPEG75") == d.FixedDegradation("jpeg75", "jpeg", 75)
    assert d.fixed_degradation("noise15").kind == "noise"
    assert d.fixed_degradation("realesrgan-3").from_hr
    for bad in ("jpeg0", "jpeg101", "blur3", "realesrgan"):
        with pytest.raises(SisrError, match=r"--recipe .* use bicubic, jpeg<Q>"):
            d.fixed_degradation(bad, "--recipe")


def test_fixed_jpeg_is_the_matlab_lr_saved_by_pillow():
    hr = _photo()
    made = d.fixed_degradation("jpeg50").degrade(hr, 4)
    buffer = io.BytesIO()
    Image.fromarray(matlab_imresize(hr, scale=1 / 4)).save(buffer, format="JPEG", quality=50)
    assert made.jpeg == buffer.getvalue()
    np.testing.assert_array_equal(made.image, np.asarray(Image.open(buffer)))
    gray = d.fixed_degradation("jpeg50").degrade(hr[:, :, 1], 4)
    assert gray.image.shape == (24, 24) and jpeg_quality(gray.jpeg).quality == 50


def test_fixed_noise_has_its_sigma_and_draws_fixed_by_name_and_seed():
    hr = np.full((512, 512, 3), 128, dtype=np.uint8)
    noise15 = d.fixed_degradation("noise15")
    made = noise15.degrade(hr, 2, key="a").image.astype(np.float64)
    assert (made - 128).std() == pytest.approx(15, rel=0.03)
    np.testing.assert_array_equal(noise15.degrade(hr, 2, key="a").image, made)
    assert not np.array_equal(noise15.degrade(hr, 2, key="b").image, made)
    assert not np.array_equal(noise15.degrade(hr, 2, key="a", seed=1).image, made)


def test_fixed_realesrgan_is_deterministic_and_keeps_grey_grey():
    hr = _photo()
    first = d.fixed_degradation("realesrgan-0")
    a, b = first.degrade(hr, 4, key="x").image, first.degrade(hr, 4, key="x").image
    np.testing.assert_array_equal(a, b)
    assert a.shape == (24, 24, 3)
    assert not np.array_equal(d.fixed_degradation("realesrgan-1").degrade(hr, 4, key="x").image, a)
    assert first.degrade(hr[:, :, 0], 4, key="x").image.shape == (24, 24)


# --- the training configuration ------------------------------------------------


def test_the_config_names_the_recipe_and_its_arguments_and_checks_them(tmp_path):
    from pathlib import Path

    from sisr.train.config import load_config

    path = tmp_path / "run.toml"
    path.write_text('[data]\ndegradation = "jpeg"\ndegradation_args = { jpeg_range = [40, 90], noise_prob = 0 }\n')
    config = load_config(path)
    recipe = d.training_recipe(config.data.degradation, config.data.degradation_args)
    assert recipe.first.jpeg_range == (40, 90) and recipe.first.noise_prob == 0 and recipe.first.jpeg_prob == 0.9
    assert load_config().data.degradation == "bicubic" and load_config().val.degradation == ""
    with pytest.raises(SisrError, match=r"--set: data\.degradation must be one of bicubic, jpeg"):
        load_config(path, overrides=["data.degradation=jpg"])
    path.write_text('[data]\ndegradation = "jpg"\n')
    with pytest.raises(SisrError, match=r"run\.toml: data\.degradation must be one of bicubic, jpeg"):
        load_config(path)
    with pytest.raises(SisrError, match=r"val\.degradation .*use bicubic, jpeg<Q>"):
        load_config(path, overrides=["val.degradation=jpeg0"])
    with pytest.raises(SisrError, match=r"data\.degradation_args\.jpeg_range must be a short flat list"):
        load_config(values={"data": {"degradation_args": {"jpeg_range": [[40], 90]}}})
    root = Path(__file__).resolve().parents[1]
    for scale in (2, 4):
        robust = load_config(root / "configs" / f"robust-x{scale}.toml")
        assert robust.model.init == f"default-x{scale}" and robust.val.degradation == "jpeg75"
        assert d.training_recipe(robust.data.degradation, robust.data.degradation_args) == d.RECIPES["jpeg"]
