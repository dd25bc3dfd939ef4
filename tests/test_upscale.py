"""`upscale`: every kind of image in, the same kind out; precision and device choices."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from sisr import SisrError, create_model
from sisr.inference import prepare_model, upscale
from sisr.models import WeightNormConv2d, build_model
from sisr.models.common import fold_weight_norm


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return create_model("edsr-baseline-x2", num_blocks=2)


def photo(height: int = 20, width: int = 26) -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(data.astronaut()[100 : 100 + height, 180 : 180 + width])


def quantize(values: np.ndarray, maximum: int) -> np.ndarray:
    """Round half up after clipping: the rule integer outputs follow."""
    return np.floor(np.clip(values, 0.0, 1.0) * maximum + 0.5)


def as_tensor(image: np.ndarray, maximum: float = 255) -> torch.Tensor:
    planes = image[:, :, None] if image.ndim == 2 else image
    return torch.from_numpy(planes.astype(np.float32) / maximum).permute(2, 0, 1)[None]


def float_output(network, image: np.ndarray, maximum: float = 255) -> np.ndarray:
    """The network's float output for an RGB image, HxWx3, as the reference for the integer kinds."""
    return upscale(network, as_tensor(image, maximum), device="cpu")[0].permute(1, 2, 0).numpy()


# --- kinds ----------------------------------------------------------------------------------------


def test_rgb_uint8_is_the_rounded_float_output(network):
    image = photo()
    result = upscale(network, image, device="cpu")
    assert result.dtype == np.uint8 and result.shape == (40, 52, 3)
    np.testing.assert_array_equal(result, quantize(float_output(network, image), 255))


def test_grey_goes_through_as_rgb_and_comes_back_as_the_mean(network):
    grey = photo()[:, :, 1]
    result = upscale(network, grey, device="cpu")
    assert result.dtype == np.uint8 and result.shape == (40, 52)
    rgb = float_output(network, np.dstack([grey] * 3))
    expected = quantize(rgb.mean(axis=2), 255)
    assert np.abs(result.astype(int) - expected).max() <= 1  # float32 mean vs float64 mean at .5 ties
    assert (result != expected).mean() < 1e-3
    column = upscale(network, grey[:, :, None], device="cpu")
    assert column.shape == (40, 52, 1)
    np.testing.assert_array_equal(column[:, :, 0], result)


def test_rgba_colour_by_the_network_alpha_by_matlab_bicubic(network):
    from sisr.imaging import matlab_imresize

    image = photo()
    # Random levels (a smooth ramp would put many outputs exactly on .5 ties), fully opaque
    # with a transparent hole: bicubic overshoots beyond 0 and 1 around it, and must be clipped.
    alpha = np.random.default_rng(0).integers(0, 256, (20, 26)).astype(np.uint8)
    alpha[4:12, 4:14] = 255
    alpha[6:10, 7:11] = 0
    result = upscale(network, np.dstack([image, alpha]), device="cpu")
    assert result.dtype == np.uint8 and result.shape == (40, 52, 4)
    np.testing.assert_array_equal(result[:, :, :3], upscale(network, image, device="cpu"))
    enlarged = matlab_imresize(alpha.astype(np.float64) / 255, scale=2)
    assert enlarged.min() < 0 and enlarged.max() > 1  # the overshoot the clipping is for
    expected_alpha = quantize(enlarged, 255)
    assert np.abs(result[:, :, 3].astype(int) - expected_alpha).max() <= 1
    assert (result[:, :, 3] != expected_alpha).mean() < 1e-3


def test_rgba_alpha_tiled_equals_untiled(network):
    rng = np.random.default_rng(0)
    image = np.dstack([photo(), rng.integers(0, 256, (20, 26), dtype=np.uint8)])
    whole = upscale(network, image, device="cpu")
    tiled = upscale(network, image, tile=7, tile_batch=16, device="cpu")
    assert np.abs(whole.astype(int) - tiled).max() <= 1


def test_uint16_stays_16_bit(network):
    image16 = photo().astype(np.uint16) * 257 + 100  # values that are not 8-bit levels
    result = upscale(network, image16, device="cpu")
    assert result.dtype == np.uint16 and result.shape == (40, 52, 3)
    expected = quantize(float_output(network, image16, 65535), 65535)
    assert np.abs(result.astype(np.int64) - expected).max() <= 1
    assert len(np.unique(result % 257)) > 10  # finer steps than 8 bits can hold
    grey16 = upscale(network, image16[:, :, 0], device="cpu")
    assert grey16.dtype == np.uint16 and grey16.shape == (40, 52)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "I;16"])
def test_pil_images_come_back_in_their_mode(network, mode):
    image = photo()
    arrays = {
        "L": image[:, :, 0],
        "LA": np.dstack([image[:, :, 0], image[:, :, 2]]),
        "RGB": image,
        "RGBA": np.dstack([image, image[:, :, 1]]),
        "I;16": image[:, :, 0].astype(np.uint16) * 257,
    }
    pil = Image.fromarray(arrays[mode])
    assert pil.mode == mode
    result = upscale(network, pil, device="cpu")
    assert isinstance(result, Image.Image)
    assert result.mode == mode and result.size == (52, 40)
    np.testing.assert_array_equal(np.asarray(result), upscale(network, arrays[mode], device="cpu"))


def test_pil_modes_without_a_clear_round_trip_are_refused(network):
    with pytest.raises(SisrError, match="mode 'P'.*convert"):
        upscale(network, Image.new("P", (8, 8)), device="cpu")


def test_tensor_batches_stay_float_tensors(network):
    torch.manual_seed(1)
    batch = torch.rand(3, 3, 10, 12)
    result = upscale(network, batch, device="cpu")
    assert isinstance(result, torch.Tensor)
    assert result.dtype == torch.float32 and result.shape == (3, 3, 20, 24)
    assert result.min() >= 0.0 and result.max() <= 1.0
    # Each image of the batch is what it would be alone.
    torch.testing.assert_close(result[1:2], upscale(network, batch[1:2], device="cpu"), rtol=0, atol=1e-5)
    with torch.no_grad():
        direct = network.eval()(batch).clamp(0, 1)
    torch.testing.assert_close(result, direct, rtol=0, atol=1e-5)
    assert upscale(network, batch.double(), device="cpu").dtype == torch.float64


def test_tensor_grey_and_rgba_batches(network):
    torch.manual_seed(2)
    grey = upscale(network, torch.rand(2, 1, 6, 7), device="cpu")
    rgba = upscale(network, torch.rand(2, 4, 6, 7), device="cpu")
    assert grey.shape == (2, 1, 12, 14) and rgba.shape == (2, 4, 12, 14)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((8, 8, 3), np.float32), "uint8 or uint16"),
        (np.zeros((8, 8, 5), np.uint8), "expected HxW"),
        (torch.zeros(3, 8, 8), "NCHW"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "float"),
        ([[1, 2], [3, 4]], "cannot upscale a list"),
    ],
)
def test_unsupported_inputs_are_named(network, bad, message):
    with pytest.raises(SisrError, match=message):
        upscale(network, bad, device="cpu")


@pytest.mark.parametrize("shape", [(1, 9, 3), (9, 1), (0, 4, 3)])
def test_too_small_images_are_errors_that_name_the_image(network, shape):
    with pytest.raises(SisrError, match=rf"tiny.png: {shape[1]}x{shape[0]} pixels is too small"):
        upscale(network, np.zeros(shape, np.uint8), device="cpu", name="tiny.png")


def test_the_smallest_accepted_image(network):
    assert upscale(network, np.zeros((2, 2, 3), np.uint8), device="cpu").shape == (4, 4, 3)


# --- the bicubic model ----------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_model_is_matlab_imresize(scale):
    from sisr.imaging import matlab_imresize

    image = photo(15, 17)
    bicubic = build_model("bicubic", {"scale": scale})
    result = upscale(bicubic, image, device="cpu")
    expected = quantize(matlab_imresize(image.astype(np.float64) / 255, scale=scale), 255)
    assert result.shape == (15 * scale, 17 * scale, 3)
    assert np.abs(result.astype(int) - expected).max() <= 1  # float32 vs float64 at .5 ties
    assert (result != expected).mean() < 1e-3
    tiled = upscale(bicubic, image, tile=4, device="cpu")
    assert np.abs(tiled.astype(int) - result).max() <= 1


# --- precision and device -------------------------------------------------------------------------


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse)) if mse else float("inf")


def test_bf16_is_close_to_fp32(network):
    image = photo(16, 16)
    full = upscale(network, image, device="cpu")
    reduced = upscale(network, image, precision="bf16", device="cpu")
    assert reduced.dtype == np.uint8 and reduced.shape == full.shape
    # bf16 keeps 8 significant bits: about 0.2 % relative error per layer, ~50 dB here.
    # 40 dB (1 % RMS) is a sound floor; two different networks score ~20 dB, so the check can fail.
    assert psnr(reduced, full) > 40
    torch.manual_seed(5)
    other = create_model("edsr-baseline-x2", num_blocks=2)
    assert psnr(upscale(other, image, device="cpu"), full) < 35


def test_fp16_on_the_cpu_is_refused(network):
    with pytest.raises(SisrError, match="fp16 needs a CUDA device; use bf16 on CPU"):
        upscale(network, photo(4, 4), precision="fp16", device="cpu")


def test_unknown_precision_is_refused(network):
    with pytest.raises(SisrError, match="precision 'int8'"):
        upscale(network, photo(4, 4), precision="int8", device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_refused(network):
    with pytest.raises(SisrError, match="no CUDA device"):
        upscale(network, photo(4, 4), device="cuda")
    with pytest.raises(SisrError, match="fp16 needs a CUDA device"):
        upscale(network, photo(4, 4), precision="fp16")  # auto picks the CPU here


def test_unknown_device_is_refused(network):
    with pytest.raises(SisrError, match="device 'tpu'"):
        upscale(network, photo(4, 4), device="tpu")


# --- preparing the model --------------------------------------------------------------------------


def test_folding_weight_norm_keeps_the_output_and_the_original():
    torch.manual_seed(3)
    model = create_model("wdsr-b-16-x2", num_blocks=2).network
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, WeightNormConv2d):
                module.weight_g.mul_(1.5)  # g no longer equals ||v||, as after training
    folded = fold_weight_norm(model)
    assert not any(isinstance(m, WeightNormConv2d) for m in folded.modules())
    assert any(isinstance(m, WeightNormConv2d) for m in model.modules())
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)


def test_upscale_leaves_the_callers_model_as_it_was(network):
    network.train()
    before = {k: v.clone() for k, v in network.network.state_dict().items()}
    upscale(network, photo(6, 6), device="cpu")
    assert network.network.training
    assert all(torch.equal(before[k], v) for k, v in network.network.state_dict().items())
    network.eval()


def test_a_prepared_model_is_used_as_it_is(network, monkeypatch):
    prepared = prepare_model(network, "fp32", "cpu")
    assert not prepared.network.training and not any(p.requires_grad for p in prepared.network.parameters())
    expected = upscale(network, photo(), device="cpu")

    import sisr.inference.prepared as preparing

    def no_second_preparation(*args, **kwargs):
        raise AssertionError("prepared again")

    monkeypatch.setattr(preparing.PreparedModel, "__init__", no_second_preparation)
    np.testing.assert_array_equal(upscale(prepared, photo(), device="cpu"), expected)
    with pytest.raises(AssertionError, match="prepared again"):  # other settings need a new copy
        upscale(prepared, photo(), precision="bf16", device="cpu")
    monkeypatch.undo()
    reduced = prepare_model(network, "bf16", "cpu")
    monkeypatch.setattr(preparing.PreparedModel, "__init__", no_second_preparation)
    # "auto" (the default) takes a prepared model's own precision and device as they are
    np.testing.assert_array_equal(upscale(reduced, photo()), upscale(reduced, photo(), precision="bf16", device="cpu"))


def test_progress_stays_quiet_off_a_terminal(network, capsys):
    upscale(network, photo(), tile=8, progress=True, device="cpu")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


# --- the CPU's fast paths (sisr.inference.fast) -------------------------------------------------

FUSABLE = {
    "edsr": lambda: create_model("edsr-baseline-x4", num_blocks=2, num_filters=16),
    "edsr-res-scale": lambda: create_model("edsr-x2", num_blocks=2, num_filters=16),  # res_scale 0.1
    "wdsr-a": lambda: create_model("wdsr-a-16-x2", num_blocks=2),
    "wdsr-b": lambda: create_model("wdsr-b-16-x3", num_blocks=2),
    "wdsr-b-res-scale": lambda: create_model("wdsr-b-16-x2", num_blocks=2, res_scale=0.5),
}


def _trained_like(model):
    """Weight-norm gains away from ||v|| and non-zero biases, as after training."""
    with torch.no_grad():
        for module in model.network.modules():
            if isinstance(module, WeightNormConv2d):
                module.weight_g.mul_(torch.rand_like(module.weight_g) + 0.5)
            if isinstance(module, torch.nn.Conv2d) and module.bias is not None:
                module.bias.uniform_(-0.05, 0.05)
    return model


@pytest.mark.parametrize("name", sorted(FUSABLE))
def test_fast_paths_compute_what_the_network_computes(name):
    from sisr.inference.fast import FusedWideBlockB, InPlaceResBlock, StreamedChain

    torch.manual_seed(0)
    model = _trained_like(FUSABLE[name]().eval())
    fast = prepare_model(model, "fp32", "cpu")
    plain = prepare_model(model, "fp32", "cpu", fuse=False)
    kinds = {type(m) for m in fast.network.modules()}
    assert (FusedWideBlockB in kinds) == name.startswith("wdsr-b")  # the fast path is really on where it applies
    assert (StreamedChain in kinds) == name.startswith("edsr")
    assert (InPlaceResBlock in kinds) == name.startswith("edsr")
    x = torch.rand(2, 3, 19, 23)  # odd sizes; a batch of two
    with torch.inference_mode():
        reference = model(x)
        torch.testing.assert_close(fast(x), reference, rtol=0, atol=2e-5)
        torch.testing.assert_close(plain(x), reference, rtol=0, atol=2e-5)
    with torch.no_grad():  # outside inference mode the same modules take their plain path
        torch.testing.assert_close(fast(x), reference, rtol=0, atol=2e-5)


def test_wdsr_output_fold_survives_preparing_again():
    # The folded output end is a copy: preparing a prepared model again (another precision,
    # fuse=False) must neither fold the scale and mean twice nor lose them.
    from sisr.inference.fast import FoldedWdsrOutput

    torch.manual_seed(0)
    model = _trained_like(FUSABLE["wdsr-b"]().eval())
    x = torch.rand(1, 3, 17, 21)
    fast = prepare_model(model, "fp32", "cpu")
    assert isinstance(fast.network.folded_output, FoldedWdsrOutput)
    assert prepare_model(fast, "fp32", "cpu") is fast  # a prepared model that fits is used as it is
    with torch.inference_mode():
        reference = model(x)
        for again in (
            prepare_model(fast, "bf16", "cpu"),  # other settings: prepared afresh from the original
            prepare_model(fast.model, "fp32", "cpu", fuse=False),
            prepare_model(prepare_model(model, "fp32", "cpu", fuse=False), "fp32", "cpu"),
        ):
            if again.precision == "bf16":
                assert again.model is model and isinstance(again.network.folded_output, FoldedWdsrOutput)
                continue
            torch.testing.assert_close(again(x), reference, rtol=0, atol=2e-5)


def test_the_wide_1x1_pair_runs_in_chunks_that_need_not_divide_the_image(monkeypatch):
    import sisr.inference.fast as fast

    torch.manual_seed(1)
    model = _trained_like(create_model("wdsr-b-16-x2", num_blocks=1).eval())
    fused = prepare_model(model, "fp32", "cpu", native_kernels=False)
    blocks = [m for m in fused.network.modules() if isinstance(m, fast.FusedWideBlockB)]
    assert blocks
    x = torch.rand(1, 3, 13, 11)  # 143 pixels
    with torch.inference_mode():
        reference = model(x)
        for chunk in (1, 7, 64, 1000):
            for block in blocks:
                block.pixels_per_chunk = chunk
            torch.testing.assert_close(fused(x), reference, rtol=0, atol=2e-5)


def test_the_streamed_upsampler_equals_layer_by_layer(monkeypatch):
    import sisr.inference.fast as fast

    torch.manual_seed(2)
    model = _trained_like(create_model("edsr-baseline-x4", num_blocks=1, num_filters=8).eval())
    fused = prepare_model(model, "fp32", "cpu")
    assert isinstance(fused.network.tail, fast.StreamedChain)
    with torch.inference_mode():
        for height, width in ((2, 5), (9, 4), (31, 17)):
            x = torch.rand(1, 3, height, width)
            reference = model(x)
            for rows in (1, 2, 5, 8):
                monkeypatch.setattr(fast, "STREAM_ROWS", rows)
                torch.testing.assert_close(fused(x), reference, rtol=0, atol=2e-5)


def test_fused_models_keep_their_receptive_field():
    from sisr.inference import receptive_field

    for make in FUSABLE.values():
        model = make()
        assert receptive_field(prepare_model(model, "fp32", "cpu").network) == receptive_field(model.network)
        assert model.info.receptive_field == receptive_field(model.network)


def test_self_ensemble_of_a_fused_model_is_the_mean_of_eight_passes():
    from sisr.inference.ensemble import SelfEnsemble

    torch.manual_seed(4)
    model = _trained_like(create_model("wdsr-b-16-x2", num_blocks=1).eval())
    ensemble = prepare_model(SelfEnsemble(model.network), "fp32", "cpu")
    x = torch.rand(1, 3, 9, 12)
    with torch.inference_mode():
        outputs = [
            model(torch.rot90(x, k, (2, 3)) if not flip else torch.rot90(x.flip(3), k, (2, 3)))
            for flip in (False, True)
            for k in range(4)
        ]
        undone = [
            torch.rot90(out, -k, (2, 3)) if not flip else torch.rot90(out, -k, (2, 3)).flip(3)
            for (flip, k), out in zip([(f, k) for f in (False, True) for k in range(4)], outputs)
        ]
        torch.testing.assert_close(
            ensemble(x.contiguous(memory_format=torch.channels_last)), torch.stack(undone).mean(0), rtol=0, atol=2e-5
        )


def test_bf16_on_a_cpu_without_bf16_instructions_warns(network, monkeypatch, caplog):
    import sisr.inference.precision as precision

    assert isinstance(precision.cpu_has_native_bf16(), bool)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="sisr"):
        prepare_model(network, "bf16", "cpu")
    assert "emulated" in caplog.text
    caplog.clear()
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    with caplog.at_level("WARNING", logger="sisr"):
        prepare_model(network, "bf16", "cpu")
    assert caplog.text == ""


def test_auto_precision_is_fp16_on_cuda_bf16_on_a_bf16_cpu_else_fp32(monkeypatch):
    from sisr.inference.precision import resolve_precision

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cuda) == "fp16"
    monkeypatch.setenv("SISR_CPU_BF16", "0")
    assert resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setenv("SISR_CPU_BF16", "1")
    assert resolve_precision("auto", cpu) == "bf16"
    for explicit in ("fp32", "bf16", "fp16"):
        assert resolve_precision(explicit, cpu) == explicit


def test_auto_runs_bf16_on_a_cpu_with_bf16_instructions(network, monkeypatch):
    image = photo(12, 12)
    fp32 = upscale(network, image, device="cpu")
    monkeypatch.setenv("SISR_CPU_BF16", "1")
    assert prepare_model(network, device="cpu").precision == "bf16"
    automatic = upscale(network, image, device="cpu")
    np.testing.assert_array_equal(automatic, upscale(network, image, precision="bf16", device="cpu"))
    assert 40 < psnr(automatic, fp32) < float("inf")  # really bf16: close to fp32, not equal
    monkeypatch.setenv("SISR_CPU_BF16", "0")
    np.testing.assert_array_equal(upscale(network, image, device="cpu"), fp32)


def test_an_fp16_batch_that_overflows_is_run_again_in_fp32(caplog):
    """fp16 needs CUDA; the fallback is checked with a network that overflows under autocast only."""

    class Overflowing(torch.nn.Module):
        scale = 2

        def forward(self, x):
            out = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
            return out * float("inf") if torch.is_autocast_enabled("cpu") else out

    prepared = prepare_model(Overflowing(), "bf16", "cpu")
    prepared.precision = "fp16"  # CPU autocast stands in for CUDA's fp16 here
    x = torch.rand(1, 3, 5, 6)
    with caplog.at_level("WARNING", logger="sisr"):
        prepared(x)
        out = prepared(x)  # a second tile
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))
    assert caplog.text.count("Overflowing: fp16 overflowed") == 1  # once, not per tile
    prepared.precision = "bf16"
    assert not torch.isfinite(prepared(x)).all()  # only fp16 is checked


def test_wdsr_b_fused_pair_runs_in_bf16_under_bf16(monkeypatch):
    """bf16 on the CPU runs WDSR-B's fused forms in bf16 (as chunked products or oneDNN's fused
    convolutions, whichever was measured faster here), close to fp32 as the plain bf16 path is."""
    from sisr.inference.fast import FusedWideBlockB, select_paths

    torch.manual_seed(3)
    model = _trained_like(create_model("wdsr-b-16-x2", num_blocks=2).eval())
    image = photo(14, 10)
    seen = []
    original = FusedWideBlockB.low_rank
    monkeypatch.setattr(FusedWideBlockB, "low_rank", lambda self, x: seen.append(x.dtype) or original(self, x))
    fp32 = upscale(prepare_model(model, "fp32", "cpu", native_kernels=False), image, device="cpu")
    assert seen == [torch.float32] * 2  # PyTorch's products, chunk by chunk
    products = prepare_model(model, "bf16", "cpu")  # may time its bf16 forms, products among them
    select_paths(products.network, native_kernels=False, onednn_bf16=False)
    seen.clear()
    fused = upscale(products, image, precision="bf16", device="cpu")
    assert seen == [torch.bfloat16] * 2  # the fused pair ran, in bf16
    plain = upscale(prepare_model(model, "bf16", "cpu", fuse=False), image, precision="bf16", device="cpu")
    assert psnr(fused, fp32) > 40 and psnr(plain, fp32) > 40
    assert psnr(fused, plain) > 40


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback where nothing can be pinned")
def test_a_canvas_for_gpu_results_falls_back_to_plain_memory_where_nothing_can_be_pinned():
    from sisr.inference.image_kinds import Canvas, to_source
    from sisr.inference.tiling import plan_tiles

    source = to_source(photo(6, 5))
    canvas = Canvas(source, 2, device=torch.device("cuda"), pinned=True)  # this build cannot pin: plain numpy memory
    values = torch.rand(1, 3, 12, 10)
    canvas.write_color(plan_tiles(6, 5, None, 0)[0], values)
    expected = torch.floor(values[0].permute(1, 2, 0) * 255 + 0.5).to(torch.uint8).numpy()
    np.testing.assert_array_equal(canvas.result(), expected)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the setting is glibc's")
def test_cpu_inference_asks_malloc_to_keep_freed_feature_maps(monkeypatch):
    import ctypes

    from sisr.inference import host_memory

    tune = host_memory.keep_freed_memory
    tune.cache_clear()
    try:
        monkeypatch.setenv("SISR_KEEP_FREED_MEMORY", "0")
        assert host_memory.keep_freed_memory() is False  # left as it is when asked
        host_memory.keep_freed_memory.cache_clear()
        monkeypatch.delenv("SISR_KEEP_FREED_MEMORY")
        try:
            ctypes.CDLL("libc.so.6").gnu_get_libc_version
        except (OSError, AttributeError):
            pytest.skip("not glibc")
        assert host_memory.keep_freed_memory() is True
        host_memory.keep_freed_memory.cache_clear()
        calls = []
        monkeypatch.setattr(host_memory, "keep_freed_memory", lambda: calls.append(1) or True)
        prepare_model(create_model("wdsr-b-16-x2", num_blocks=1), "fp32", "cpu")
        assert calls == [1]  # CPU models get it when prepared
    finally:
        tune.cache_clear()
