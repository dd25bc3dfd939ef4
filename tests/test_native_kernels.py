"""The compiled WDSR-B kernel: same values as the PyTorch layers, built and found where it should be."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys

import pytest
import torch
from torch.nn import functional as F

from sisr.inference import native

# Every machine that can build and run them, AVX-512 ones included: whether they are used there is
# measured (sisr.inference.autotune), but they must compile and compute the right values everywhere.
SUPPORTED = (
    sys.platform.startswith("linux")
    and platform.machine() == "x86_64"
    and {"avx2", "fma"} <= native.cpu_flags()
    and shutil.which("cc") is not None
)


@pytest.fixture
def fresh_library(monkeypatch: pytest.MonkeyPatch):
    """Forget the loaded library before and after, so environment changes take effect."""
    native._library_or_reason.cache_clear()
    yield
    native._library_or_reason.cache_clear()


@pytest.fixture
def kernels(fresh_library):
    if native.library() is None:
        pytest.skip(f"native kernels unavailable here: {native.unavailable_reason()}")
    return native.library()


def reference_pair(
    pixels: torch.Tensor,
    expand: torch.Tensor,
    expand_bias: torch.Tensor,
    reduce: torch.Tensor,
    reduce_bias: torch.Tensor,
) -> torch.Tensor:
    """The pair as two 1x1 convolutions in float64: an independent reference."""
    image = pixels.double().t().reshape(1, pixels.shape[1], 1, -1)
    hidden = F.relu(F.conv2d(image, expand.double().t()[:, :, None, None], expand_bias.double()))
    out = F.conv2d(hidden, reduce.double().t()[:, :, None, None], reduce_bias.double())
    return out.reshape(reduce.shape[1], -1).t()


@pytest.mark.skipif(not SUPPORTED, reason="needs x86-64 Linux with AVX2/FMA and a C compiler")
def test_available_where_supported(fresh_library) -> None:
    # Where everything it needs is present, the kernel must really be built and
    # loaded: a silent fallback (a missing source file, a compile error) would
    # only show as a slower benchmark.
    assert native.library() is not None, native.unavailable_reason()
    assert native.unavailable_reason() is None


@pytest.mark.parametrize(
    "inputs, hidden, outputs, count, threads",
    [
        (32, 192, 25, 65536, 2),  # WDSR-B 32 x4 on a 256 x 256 input
        (32, 192, 25, 1, 2),  # one pixel: fewer than the threads, less than a run
        (32, 192, 25, 23, 3),
        (32, 192, 25, 24 * 5 + 7, 2),
        (8, 48, 6, 1000, 1),  # a small WDSR-B
        (16, 40, 40, 517, 2),  # hidden padded 40 -> 48; outputs over two column tiles, the last partial
        (3, 24, 33, 100, 4),
        (16, 40, 50, 517, 2),  # 48 + 2: two columns summed by the expand product
        (64, 384, 51, 333, 2),  # WDSR-B 64: 48 + 3, the last tile partial
    ],
)
def test_pair_matches_reference(kernels, inputs: int, hidden: int, outputs: int, count: int, threads: int) -> None:
    generator = torch.Generator().manual_seed(count)
    pixels = torch.randn(count, inputs, generator=generator)
    expand = torch.randn(inputs, hidden, generator=generator) / inputs**0.5
    expand_bias = torch.randn(hidden, generator=generator) * 0.1
    reduce = torch.randn(hidden, outputs, generator=generator) / hidden**0.5
    reduce_bias = torch.randn(outputs, generator=generator)
    packed = native.pack_pair(expand, expand_bias, reduce, reduce_bias)
    out = torch.full((count, outputs), float("nan"))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        native.wdsr_pair(pixels, packed, out)
    finally:
        torch.set_num_threads(previous)
    expected = reference_pair(pixels, expand, expand_bias, reduce, reduce_bias)
    assert torch.isfinite(out).all()  # every row written, nothing past them needed
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("count, scale", [(65536, 1.0), (24 * 3 + 5, 0.1), (2, 2.0)])
def test_pair_adds_the_skip_first(kernels, count: int, scale: float) -> None:
    # The previous block's x + scale * conv output, formed inside the kernel and stored for the next skip.
    generator = torch.Generator().manual_seed(1)
    pixels, skip = torch.randn(count, 32, generator=generator), torch.randn(count, 32, generator=generator)
    expand, reduce = torch.randn(32, 192, generator=generator) / 6, torch.randn(192, 25, generator=generator) / 14
    expand_bias, reduce_bias = torch.randn(192, generator=generator) * 0.1, torch.randn(25, generator=generator)
    packed = native.pack_pair(expand, expand_bias, reduce, reduce_bias)
    out, summed = torch.empty(count, 25), torch.full((count, 32), float("nan"))
    native.wdsr_pair(pixels, packed, out, skip=skip, skip_scale=scale, summed=summed)
    torch.testing.assert_close(summed, pixels + scale * skip, rtol=1e-6, atol=1e-6)
    expected = reference_pair(pixels + scale * skip, expand, expand_bias, reduce, reduce_bias)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


def test_pair_rejects_wrong_tensors(kernels) -> None:
    packed = native.pack_pair(torch.randn(32, 192), torch.zeros(192), torch.randn(192, 25), torch.zeros(25))
    with pytest.raises(ValueError, match="pixels"):
        native.wdsr_pair(torch.randn(10, 31), packed, torch.empty(10, 25))
    with pytest.raises(ValueError, match="pixels"):
        native.wdsr_pair(torch.randn(10, 32, dtype=torch.float64), packed, torch.empty(10, 25))
    with pytest.raises(ValueError, match="out"):
        native.wdsr_pair(torch.randn(10, 32), packed, torch.empty(25, 10).t())
    with pytest.raises(ValueError, match="rows"):
        native.wdsr_pair(torch.randn(10, 32), packed, torch.empty(9, 25))
    with pytest.raises(ValueError, match="together"):
        native.wdsr_pair(torch.randn(10, 32), packed, torch.empty(10, 25), skip=torch.randn(10, 32))
    with pytest.raises(ValueError, match="skip"):
        native.wdsr_pair(
            torch.randn(10, 32), packed, torch.empty(10, 25), skip=torch.randn(10, 16), summed=torch.empty(10, 32)
        )


def test_network_same_with_and_without_kernels(kernels, monkeypatch: pytest.MonkeyPatch) -> None:
    from sisr import create_model
    from sisr.inference import prepare_model, receptive_field
    from sisr.inference.fast import FoldedWdsrOutput, FusedWideBodyB

    torch.manual_seed(0)
    model = create_model("wdsr-b-16-x2")
    image = torch.rand(1, 3, 37, 29)
    prepared = prepare_model(model, "fp32", "cpu", native_kernels=True)
    assert prepared.native_kernels and prepared.fused
    assert isinstance(prepared.network.body, FusedWideBodyB)
    assert isinstance(prepared.network.folded_output, FoldedWdsrOutput)
    # the tiles' overlap is unchanged
    assert receptive_field(prepared.network) == receptive_field(model.network) == prepared.info.receptive_field
    calls = []
    original = native.wdsr_pair
    monkeypatch.setattr(native, "wdsr_pair", lambda *args, **kw: calls.append(1) or original(*args, **kw))
    fast = prepared(image)
    assert len(calls) == 16  # every block went through the kernel
    without = prepare_model(model, "fp32", "cpu", native_kernels=False)
    assert without.fused and not without.native_kernels
    torch_path = without(image)
    assert len(calls) == 16  # PyTorch's layers only
    plain = prepare_model(model, "fp32", "cpu", fuse=False)(image)
    torch.testing.assert_close(fast, torch_path, rtol=0, atol=2e-5)
    torch.testing.assert_close(fast, plain, rtol=0, atol=2e-5)


def test_switched_off_by_environment(
    fresh_library, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SISR_NATIVE_KERNELS", "0")
    with caplog.at_level("INFO", logger="sisr"):
        assert native.library() is None
    assert "not used" not in caplog.text  # asked for: no line on every run (DEBUG only)
    assert native.unavailable_reason() == "SISR_NATIVE_KERNELS=0"
    with pytest.raises(RuntimeError, match="SISR_NATIVE_KERNELS=0"):
        native.wdsr_pair(
            torch.randn(3, 32),
            native.pack_pair(torch.randn(32, 192), torch.zeros(192), torch.randn(192, 25), torch.zeros(25)),
            torch.empty(3, 25),
        )


@pytest.mark.skipif(not SUPPORTED, reason="needs x86-64 Linux with AVX2/FMA and a C compiler")
def test_failed_compile_falls_back(
    fresh_library, monkeypatch: pytest.MonkeyPatch, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SISR_CACHE", str(tmp_path))  # nothing built yet
    broken = tmp_path / "broken-cc"
    broken.write_text("#!/bin/sh\necho 'cc: internal error' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("CC", str(broken))
    with caplog.at_level("INFO", logger="sisr"):
        assert native.library() is None
    assert "internal error" in native.unavailable_reason()
    assert "PyTorch runs those layers instead" in caplog.text
    assert not list((tmp_path / "kernels").glob("*"))  # no half-written library left behind


@pytest.mark.skipif(not SUPPORTED, reason="needs x86-64 Linux with AVX2/FMA and a C compiler")
def test_built_once_and_cached(fresh_library, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("SISR_CACHE", str(tmp_path))
    assert native.library() is not None
    built = list((tmp_path / "kernels").glob("sisr_kernels-*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    native._library_or_reason.cache_clear()
    runs = []
    original = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda args, **kw: runs.append(args) or original(args, **kw))
    assert native.library() is not None
    assert built[0].stat().st_mtime_ns == stamp
    assert not any("-o" in args for args in runs)  # the compiler was asked its version, not to build


@pytest.mark.parametrize(
    "batch, channels, rows, width", [(1, 64, 34, 1024), (2, 8, 3, 1), (1, 16, 5, 2), (1, 64, 7, 6), (3, 24, 4, 9)]
)
def test_narrow_conv_matches_torch(kernels, batch: int, channels: int, rows: int, width: int) -> None:
    generator = torch.Generator().manual_seed(rows * width)
    x = torch.randn(batch, channels, rows, width, generator=generator)
    weight = torch.randn(3, channels, 3, 3, generator=generator) / (3 * channels**0.5)
    bias = torch.randn(3, generator=generator)
    got = native.conv3x3_to3(x.contiguous(memory_format=torch.channels_last), weight, bias)
    expected = F.conv2d(x.double(), weight.double(), bias.double(), padding=(0, 1))
    assert got.shape == expected.shape == (batch, 3, rows - 2, width)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


def test_narrow_conv_applies_only_where_it_can(kernels) -> None:
    assert native.conv3x3_to3_applies(torch.nn.Conv2d(64, 3, 3, padding=1))
    assert not native.conv3x3_to3_applies(torch.nn.Conv2d(64, 4, 3, padding=1))
    assert not native.conv3x3_to3_applies(torch.nn.Conv2d(60, 3, 3, padding=1))  # not a multiple of 8
    assert not native.conv3x3_to3_applies(torch.nn.Conv2d(64, 3, 5, padding=2))
    assert not native.conv3x3_to3_applies(torch.nn.Conv2d(64, 3, 3, padding=1, bias=False))
    with pytest.raises(ValueError, match="rows"):
        native.conv3x3_to3(torch.randn(1, 12, 5, 5), torch.randn(3, 12, 3, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="weight"):
        native.conv3x3_to3(torch.randn(1, 16, 5, 5), torch.randn(3, 8, 3, 3), torch.zeros(3))


def test_edsr_last_layer_runs_in_the_kernel(kernels, monkeypatch: pytest.MonkeyPatch) -> None:
    from sisr import create_model
    from sisr.inference import prepare_model

    torch.manual_seed(0)
    model = create_model("edsr-baseline-x2", num_blocks=2)
    image = torch.rand(1, 3, 41, 30)
    calls = []
    original = native.conv3x3_to3
    monkeypatch.setattr(native, "conv3x3_to3", lambda *args: calls.append(args[0].shape) or original(*args))
    fast = prepare_model(model, "fp32", "cpu", native_kernels=True)(image)
    plain = prepare_model(model, "fp32", "cpu", fuse=False)(image)
    assert calls and sum(shape[2] - 2 for shape in calls) == 82  # every output row, once
    torch.testing.assert_close(fast, plain, rtol=0, atol=2e-5)
    calls.clear()
    without = prepare_model(model, "fp32", "cpu", native_kernels=False)(image)
    assert not calls  # PyTorch's layers in the kernel's place
    torch.testing.assert_close(without, plain, rtol=0, atol=2e-5)


def test_a_prepared_model_without_kernels_leaves_the_library_loaded(kernels, monkeypatch: pytest.MonkeyPatch) -> None:
    from sisr import create_model
    from sisr.inference import prepare_model
    from sisr.inference.fast import FusedWideBlockB

    model = create_model("wdsr-b-16-x2", num_blocks=2)
    without = prepare_model(model, "fp32", "cpu", native_kernels=False)
    blocks = [m for m in without.network.modules() if isinstance(m, FusedWideBlockB)]
    assert len(blocks) == 2 and not any(block.native_kernel for block in blocks)
    assert "native kernels" not in without.describe()
    assert native.library() is kernels  # a choice of that copy, not a process-wide switch
    with_kernels = prepare_model(model, "fp32", "cpu", native_kernels=True)
    assert all(block.native_kernel for block in with_kernels.network.modules() if isinstance(block, FusedWideBlockB))
    assert "native kernels" in with_kernels.describe()
    # A block's own switch: PyTorch's products for that block alone, the same values.
    block = next(m for m in with_kernels.network.modules() if isinstance(m, FusedWideBlockB))
    x = torch.rand(1, 32, 9, 7).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        in_kernel = block.low_rank(x)
        block.native_kernel = False
        calls = []
        monkeypatch.setattr(native, "wdsr_pair", lambda *args, **kw: calls.append(1))
        by_products = block.low_rank(x)
    assert not calls
    torch.testing.assert_close(in_kernel, by_products, rtol=0, atol=2e-5)


def test_asking_for_kernels_that_are_not_there_is_an_error(fresh_library, monkeypatch: pytest.MonkeyPatch) -> None:
    from sisr import SisrError, create_model
    from sisr.inference import prepare_model

    monkeypatch.setenv("SISR_NATIVE_KERNELS", "0")
    model = create_model("wdsr-b-16-x2", num_blocks=1)
    with pytest.raises(SisrError, match="native CPU kernels are not available here: SISR_NATIVE_KERNELS=0"):
        prepare_model(model, "fp32", "cpu", native_kernels=True)
    assert not prepare_model(model, "fp32", "cpu").native_kernels  # the default falls back quietly


@pytest.mark.skipif(not SUPPORTED, reason="needs x86-64 Linux with AVX2/FMA and a C compiler")
def test_a_second_openmp_runtime_turns_them_off(fresh_library, monkeypatch: pytest.MonkeyPatch) -> None:
    # A compiler whose -fopenmp links another runtime (clang's libomp, say) would give the kernels a
    # thread pool of their own, whose idle threads spin against torch's: better not used at all.
    seen = iter([{"/torch/lib/libgomp.so.1"}, {"/torch/lib/libgomp.so.1", "/usr/lib/libomp.so.5"}])
    monkeypatch.setattr(native, "_openmp_runtimes", lambda: next(seen))
    assert native.library() is None
    assert "/usr/lib/libomp.so.5" in native.unavailable_reason()
