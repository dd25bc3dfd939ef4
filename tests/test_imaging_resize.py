"""matlab_imresize: MATLAB's bicubic imresize, checked by hand-worked values and an independent reference."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from sisr.errors import SisrError
from sisr.imaging import matlab_imresize
from sisr.imaging.resize import bicubic_kernel, contributions

RNG = np.random.default_rng(1234)


def reference_imresize_float(image: np.ndarray, out_size: tuple[int, int], scales: tuple[float, float], border: str):
    """MATLAB's imresize.m written out directly, one output pixel at a time (float64, rows first)."""

    def cubic(x):
        x = abs(x)
        if x <= 1:
            return 1.5 * x**3 - 2.5 * x**2 + 1
        if x <= 2:
            return -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2
        return 0.0

    def resize_axis0(data, out_length, scale):
        in_length = data.shape[0]
        width = 4 / scale if scale < 1 else 4
        out = np.zeros((out_length,) + data.shape[1:])
        for x in range(1, out_length + 1):
            u = x / scale + 0.5 * (1 - 1 / scale)
            left = math.floor(u - width / 2)
            taps = [left + k for k in range(math.ceil(width) + 2)]
            if scale < 1:
                weights = [scale * cubic(scale * (u - j)) for j in taps]
            else:
                weights = [cubic(u - j) for j in taps]
            total = sum(weights)
            for j, weight in zip(taps, weights):
                index = j - 1
                if border == "replicate":
                    index = min(max(index, 0), in_length - 1)
                else:
                    index %= 2 * in_length
                    index = index if index < in_length else 2 * in_length - 1 - index
                out[x - 1] += weight / total * data[index]
        return out

    rows = resize_axis0(image, out_size[0], scales[0])
    return np.swapaxes(resize_axis0(np.swapaxes(rows, 0, 1), out_size[1], scales[1]), 0, 1)


# --- the kernel and the weights ------------------------------------------------


@pytest.mark.parametrize(("x", "value"), [(0, 1.0), (1, 0.0), (0.5, 0.5625), (1.5, -0.0625), (2, 0.0), (2.5, 0.0)])
def test_cubic_kernel_known_points(x, value):
    assert bicubic_kernel(x) == value
    assert bicubic_kernel(-x) == value


def test_kernel_is_a_partition_of_unity():
    shifts = np.linspace(0, 1, 17)
    sums = [bicubic_kernel(shift + np.arange(-3, 4)).sum() for shift in shifts]
    np.testing.assert_allclose(sums, 1.0, atol=1e-15)


def test_contributions_of_a_2x_upscale_worked_by_hand():
    # Output pixel 1 is centred at input coordinate 0.75 (1-based): taps at distances 1.75, 0.75, 0.25, 1.25.
    weights, indices = contributions(2, 4, 2.0, border="replicate")
    used = weights[0] != 0
    np.testing.assert_array_equal(weights[0][used], [-0.0234375, 0.2265625, 0.8671875, -0.0703125])
    np.testing.assert_array_equal(indices[0][used], [0, 0, 0, 1])  # taps left of the image repeat pixel 0


def test_contributions_when_shrinking_stretch_the_kernel():
    weights, _ = contributions(16, 4, 0.25)
    assert np.count_nonzero(weights[1]) == 16  # 4 / scale taps instead of 4
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-15)
    plain, _ = contributions(16, 4, 0.25, antialiasing=False)
    assert np.count_nonzero(plain[1]) == 4


# --- small resizes worked out by hand ------------------------------------------


def test_2x_upscale_of_a_1x2_image_by_hand():
    image = np.array([[0.0, 100.0]])
    # 1.0703125 a - 0.0703125 b, 0.796875 a + 0.203125 b, then the mirror image.
    expected = [[-7.03125, 20.3125, 79.6875, 107.03125]]
    out = matlab_imresize(image, scale=2)
    assert out.shape == (2, 4)
    np.testing.assert_allclose(out, np.repeat(expected, 2, axis=0), atol=1e-12)


def test_2x_upscale_with_symmetric_border_by_hand():
    # The tap two pixels left of the image mirrors onto the second pixel instead of repeating the first.
    out = matlab_imresize(np.array([[0.0, 100.0]]), scale=2, border="symmetric")
    np.testing.assert_allclose(out[0], [-9.375, 20.3125, 79.6875, 109.375], atol=1e-12)


def test_uint8_rounds_and_saturates():
    out = matlab_imresize(np.array([[0, 100]], dtype=np.uint8), scale=2)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], [0, 20, 80, 107])  # -7.03 saturates, 79.6875 rounds up


def test_float_output_is_not_clipped():
    out = matlab_imresize(np.array([[0.0, 1.0]]), scale=2)
    assert out.min() < 0 and out.max() > 1


@pytest.mark.parametrize("scale", [1 / 4, 1 / 2, 2, 3, 4])
def test_linear_ramp_is_reproduced_away_from_the_border(scale):
    # Keys' kernel reproduces linear functions; for 1/k it is sampled on k interleaved unit grids.
    ramp = np.arange(64, dtype=np.float64)[None, :].repeat(8, axis=0)
    out = matlab_imresize(ramp, scale=scale)
    centres = (np.arange(out.shape[1]) + 0.5) / scale - 0.5
    reach = 2 / min(scale, 1) + 1
    interior = (centres > reach) & (centres < 63 - reach)
    assert interior.sum() > 5
    np.testing.assert_allclose(out[1, interior], centres[interior], atol=1e-10)


@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.5, 0.8, 1.5, 2, 3, 4])
def test_constant_image_stays_constant(scale):
    image = np.full((13, 17, 3), 173, dtype=np.uint8)
    out = matlab_imresize(image, scale=scale)
    np.testing.assert_array_equal(out, 173)
    out_float = matlab_imresize(image / 255.0, scale=scale)
    np.testing.assert_allclose(out_float, 173 / 255.0, atol=1e-12)


def test_down_up_round_trip_is_close_for_a_smooth_image():
    y, x = np.mgrid[0:96, 0:96] / 96.0
    image = np.round(127.5 + 100 * np.sin(2 * np.pi * x) * np.cos(2 * np.pi * y)).astype(np.uint8)
    back = matlab_imresize(matlab_imresize(image, scale=2), scale=0.5)
    difference = np.abs(back.astype(int) - image)
    assert back.shape == image.shape
    assert difference.max() <= 2  # four roundings to uint8 on the way
    assert difference.mean() < 0.2
    exact = image / 255.0
    back_float = matlab_imresize(matlab_imresize(exact, scale=2), scale=0.5)
    assert np.abs(back_float - exact).max() * 255 < 0.5


def test_scale_one_is_an_identity_copy():
    image = RNG.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    out = matlab_imresize(image, scale=1)
    np.testing.assert_array_equal(out, image)
    assert out is not image


# --- against a direct transcription of imresize.m ------------------------------


@pytest.mark.parametrize("border", ["replicate", "symmetric"])
@pytest.mark.parametrize(
    ("shape", "scale", "output_size"),
    [((17, 23), 0.37, None), ((12, 9), 2.6, None), ((20, 20), 1 / 3, None), ((15, 11), None, (7, 30))],
)
def test_matches_a_direct_transcription_of_matlab(shape, scale, output_size, border):
    image = RNG.random(shape)
    out = matlab_imresize(image, scale=scale, output_size=output_size, border=border)
    if output_size is None:
        size = tuple(math.ceil(n * scale) for n in shape)
        scales = (scale, scale)
    else:
        size = output_size
        scales = (output_size[0] / shape[0], output_size[1] / shape[1])
    if scales[1] < scales[0]:  # MATLAB resizes the smaller scale first
        expected = reference_imresize_float(image.T, size[::-1], scales[::-1], border).T
    else:
        expected = reference_imresize_float(image, size, scales, border)
    assert out.shape == size
    np.testing.assert_allclose(out, expected, atol=1e-12)


def test_output_size_is_ceil_of_scaled_size():
    image = np.zeros((10, 255), dtype=np.uint8)
    assert matlab_imresize(image, scale=0.33).shape == (4, 85)  # ceil(3.3), ceil(84.15)
    assert matlab_imresize(image, scale=1 / 3).shape == (4, 85)  # 255 * (1/3) is not 85.00000000000001
    assert matlab_imresize(image, output_size=(7, 100)).shape == (7, 100)


def test_smaller_scale_is_resized_first_as_matlab():
    image = RNG.integers(0, 256, (24, 24), dtype=np.uint8)
    out = matlab_imresize(image, output_size=(48, 12))  # width shrinks: width pass first
    width_first = matlab_imresize(matlab_imresize(image, output_size=(24, 12)), output_size=(48, 12))
    height_first = matlab_imresize(matlab_imresize(image, output_size=(48, 24)), output_size=(48, 12))
    np.testing.assert_array_equal(out, width_first)
    assert not np.array_equal(out, height_first)  # the intermediate uint8 rounding makes order visible


# --- kinds, layouts, dtypes ----------------------------------------------------


@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.5, 0.7, 1.3, 2, 3, 4])
def test_numpy_and_torch_give_identical_uint8(scale):
    images = RNG.integers(0, 256, (2, 31, 45, 3), dtype=np.uint8)
    expected = matlab_imresize(images, scale=scale)
    got = matlab_imresize(torch.from_numpy(images).permute(0, 3, 1, 2), scale=scale)
    assert got.dtype == torch.uint8
    np.testing.assert_array_equal(got.permute(0, 2, 3, 1).numpy(), expected)


@pytest.mark.parametrize("scale", [0.3, 0.5, 2, 3.5])
def test_numpy_and_torch_agree_on_float64(scale):
    images = RNG.random((2, 19, 26, 3))
    expected = matlab_imresize(images, scale=scale)
    got = matlab_imresize(torch.from_numpy(images).permute(0, 3, 1, 2), scale=scale)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.permute(0, 2, 3, 1).numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("scale", [0.25, 3])
def test_batch_and_layouts_agree_with_single_planes(scale):
    images = RNG.integers(0, 256, (3, 20, 28, 3), dtype=np.uint8)
    batch = matlab_imresize(images, scale=scale)
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2)
    for n in range(3):
        np.testing.assert_array_equal(matlab_imresize(images[n], scale=scale), batch[n])  # HxWxC
        chw = matlab_imresize(tensor[n], scale=scale)  # CxHxW
        for c in range(3):
            plane = matlab_imresize(images[n, :, :, c], scale=scale)  # HxW
            np.testing.assert_array_equal(plane, batch[n, :, :, c])
            np.testing.assert_array_equal(chw[c].numpy(), plane)
            np.testing.assert_array_equal(matlab_imresize(tensor[n, c], scale=scale).numpy(), plane)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float16, np.float32, np.float64])
def test_numpy_dtype_and_layout_are_kept(dtype):
    image = np.ones((8, 6, 3), dtype=dtype)
    out = matlab_imresize(image, scale=0.5)
    assert out.dtype == dtype and out.shape == (4, 3, 3) and out.flags.c_contiguous


def test_uint16_uses_its_full_range():
    image = np.array([[0, 65535]], dtype=np.uint16)
    np.testing.assert_array_equal(matlab_imresize(image, scale=2)[0], [0, 13312, 52223, 65535])


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_torch_dtype_and_layout_are_kept(dtype):
    image = torch.ones((2, 3, 8, 6), dtype=dtype)
    out = matlab_imresize(image, scale=0.5)
    assert out.dtype == dtype and out.shape == (2, 3, 4, 3) and out.device == image.device
    torch.testing.assert_close(out, torch.ones_like(out))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_torch_path_stays_on_the_device(dtype):
    # A 'meta' tensor has no data: any trip through the host (.numpy(), .item(), .cpu()) would fail.
    image = torch.empty((2, 3, 20, 30), dtype=dtype, device="meta")
    for scale in (0.5, 3):
        out = matlab_imresize(image, scale=scale)
        assert out.device.type == "meta" and out.dtype == dtype
        assert out.shape == (2, 3, math.ceil(20 * scale), math.ceil(30 * scale))


def test_torch_float_is_differentiable():
    image = torch.rand(1, 3, 12, 12, dtype=torch.float64, requires_grad=True)
    matlab_imresize(image, scale=0.5).sum().backward()
    # Each output pixel's weights sum to one, so the gradient sums to the number of outputs.
    assert image.grad is not None
    assert float(image.grad.sum()) == pytest.approx(3 * 6 * 6)


# --- errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of scale= and output_size="),
        ({"scale": 2, "output_size": (4, 4)}, "exactly one"),
        ({"scale": -2}, "scale=-2"),
        ({"scale": float("nan")}, "scale=nan"),
        ({"output_size": (0, 4)}, "output_size=(0, 4)"),
        ({"output_size": "big"}, "output_size='big'"),
        ({"scale": 2, "border": "wrap"}, "border='wrap'"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(SisrError, match=re.escape(message)):
        matlab_imresize(np.zeros((4, 4), dtype=np.uint8), **kwargs)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((4, 4), dtype=np.int32), "unsupported dtype int32"),
        (np.zeros(4, dtype=np.uint8), "shape (4,)"),
        (torch.zeros(4, dtype=torch.uint8), "shape (4,)"),
        (torch.zeros((4, 4), dtype=torch.int64), "unsupported dtype torch.int64"),
        ([[1, 2], [3, 4]], "got list"),
        (np.zeros((0, 4), dtype=np.uint8), "empty"),
    ],
)
def test_bad_images_are_named(image, message):
    with pytest.raises(SisrError, match=re.escape(message)):
        matlab_imresize(image, scale=2)
