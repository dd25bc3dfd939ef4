"""Where and in which number format a network runs: device choice, precision, weight-norm folding.

`prepare_model` turns a network into an inference copy once: eval mode, weight
normalization folded into plain kernels, moved to the device, channels-last;
reduced precision runs under autocast. `upscale` calls it for every image
unless it is given a prepared model, so loops over many images should prepare
once (the CLI does).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import os
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import SisrError
from ..models.common import WeightNormConv2d

log = logging.getLogger("sisr")

PRECISIONS = ("fp32", "bf16", "fp16")
# What `upscale` and `sisr upscale` run in unless told: the fastest precision
# whose results were measured to match fp32 (see `resolve_precision`).
AUTO = "auto"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' is CUDA when there is one, else the CPU; asking for a missing CUDA is an error."""
    if isinstance(device, torch.device):
        text = str(device)
    else:
        text = str(device).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise SisrError(
                f"device {text!r}: no CUDA device is available (this torch build or machine has none); use cpu"
            )
        resolved = torch.device(text)
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise SisrError(f"device {text!r}: only {torch.cuda.device_count()} CUDA device(s) here")
        return resolved
    raise SisrError(f"device {device!r}: use auto, cpu, cuda or cuda:N")


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' becomes fp16 on CUDA, bf16 on a CPU with native bf16, else fp32; other names pass through.

    Each is the measured fastest there with results that match fp32's: on an
    H200 (benchmarks/bench_gpu.py, 2026-11-26) fp16 ran EDSR-baseline x4 in
    0.041 s against fp32's 0.055 s (TF32 convolutions) with Set5 PSNR within
    0.001 dB (bf16: as fast, within 0.015 dB); on the Xeon with AMX beside it
    (benchmarks/bench_inference.py --bf16, 16 threads) bf16 ran EDSR-baseline
    x4 2.0x and WDSR-B-32 x4 1.8x faster than fp32, Set5 within 0.01 dB. A
    CPU without bf16 instructions only emulates bf16, about 13x slower than
    fp32 on this project's machine, so it keeps fp32. An fp16 batch that
    overflows is run again in fp32 (see `upscale`).
    """
    if precision != AUTO:
        return precision
    if device.type == "cuda":
        return "fp16"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def check_precision(precision: str, device: torch.device) -> torch.dtype:
    """The dtype for `precision` on `device`, or a SisrError saying what to use instead."""
    if precision not in PRECISIONS:
        raise SisrError(f"precision {precision!r}: use one of {AUTO}, {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise SisrError("fp16 needs a CUDA device; use bf16 on CPU")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise SisrError(f"bf16 is not supported by {torch.cuda.get_device_name(device)}; use fp16")
    return DTYPES[precision]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX-512 BF16 or AMX); without it bf16 is emulated and slow.

    The environment variable SISR_CPU_BF16=0 (or 1) overrides the detection:
    "auto" then keeps fp32 on such a CPU (the test suite sets it, so that its
    exact fp32 comparisons hold on every machine).
    """
    forced = os.environ.get("SISR_CPU_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return _detect_native_bf16()


@functools.cache
def _detect_native_bf16() -> bool:
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(check is not None for check in checks):
        return any(check is not None and check() for check in checks)
    from .native import cpu_flags  # older torch: the flags the kernel reports

    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def warn_if_emulated(precision: str, device: torch.device) -> None:
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        log.warning(
            "bf16 on this CPU is emulated (no AVX-512 BF16 or AMX): expect it to be several times slower "
            "than fp32; it saves memory, not time"
        )


def _plain_conv(conv: WeightNormConv2d) -> nn.Conv2d:
    plain = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
    ).to(conv.weight_v.device, conv.weight_v.dtype)
    with torch.no_grad():
        plain.weight.copy_(conv.weight)
        if conv.bias is not None:
            plain.bias.copy_(conv.bias)
    return plain


def fold_weight_norm(model: nn.Module) -> nn.Module:
    """A copy of `model` whose weight-normalised convolutions are plain ones with kernel g * v / ||v||.

    Weight normalization is a training device (it reparametrises the kernel for
    better conditioning); at inference the kernel is fixed, so computing it on
    every call only costs time. The original model is left untouched.
    """
    folded = copy.deepcopy(model)
    for parent in list(folded.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, WeightNormConv2d):
                setattr(parent, name, _plain_conv(child))
    return folded


# Measured on the development machine (2-core AVX2 CPU shared with other jobs,
# edsr-baseline-x4, 128 x 128 LR, best of 5 interleaved runs): fp32 1.86 s in
# channels-last vs 2.37 s in the default layout; bf16 10.9 s under autocast vs
# 12.4 s with the model cast to bf16, both channels-last (bf16 in the default
# layout was another 4x slower). That CPU (AMD EPYC, AVX2) has no bf16
# instructions, so bf16 there is emulated and for memory, not speed: it is
# never chosen automatically, and asking for it on such a CPU logs a warning.
# On CUDA channels-last is the layout tensor cores want. Hence channels-last
# everywhere, and autocast for bf16 and fp16.
CHANNELS_LAST = True


@dataclass(frozen=True)
class InferenceSettings:
    """What a prepared model runs in: device, autocast dtype (None for fp32), memory layout."""

    precision: str
    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool
    fused: bool = False  # parts replaced by the fast paths of sisr.inference.fast
    compiled: bool = False  # forward compiled by torch.compile (once per input shape)

    def to_input(self, batch: torch.Tensor) -> torch.Tensor:
        """A float32 batch on the model's device, in its memory layout."""
        batch = batch.to(device=self.device, dtype=torch.float32, non_blocking=True)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    def autocast(self) -> contextlib.AbstractContextManager:
        """Reduced precision for the convolutions, float32 for the rest (the mean shift, the output)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)


def prepare_model(
    model: nn.Module,
    precision: str = AUTO,
    device: str | torch.device = "auto",
    *,
    fuse: bool = True,
    compile: bool = False,
) -> nn.Module:
    """An inference copy of `model`: eval mode, weight norm folded, moved; the original is untouched.

    `precision` "auto" is resolved here (`resolve_precision`); the copy's
    `sisr_inference.precision` says what was chosen. On the CPU, WDSR-B's
    blocks and upsamplers are also replaced by their fast forms (see
    `sisr.inference.fast`; `fuse=False` keeps the network's own modules), and
    malloc is asked to keep freed feature maps (`sisr.inference.host_memory`).

    `compile=True` runs the forward through `torch.compile` instead of the
    hand-written fast paths. Compiling costs seconds for each new input
    shape, so it pays only over many inputs of one size (video frames, a
    folder of equal photos, the equal tiles of a large image), and mostly on
    a GPU: on an H200 EDSR-baseline x4 in fp16 ran 0.043 -> 0.019 s per
    1024^2 image (whole `upscale` calls) after 4-12 s of compiling
    (benchmarks/bench_gpu.py, 2026-11-26); on this project's CPU it did not pay.

    The copy carries its `InferenceSettings` as `sisr_inference`, so `upscale`
    uses it as it is instead of preparing it again.
    """
    from .fast import optimize_for_inference
    from .host_memory import keep_freed_memory

    target = resolve_device(device)
    precision = resolve_precision(precision, target)
    dtype = check_precision(precision, target)
    warn_if_emulated(precision, target)
    prepared = fold_weight_norm(model).eval().requires_grad_(False).to(target)
    prepared.__dict__.pop("forward", None)  # a compiled forward copied from a model prepared before
    if CHANNELS_LAST:
        prepared = prepared.to(memory_format=torch.channels_last)
    if target.type == "cpu":
        keep_freed_memory()  # process-wide, once: see sisr.inference.host_memory
    fused = fuse and not compile and target.type == "cpu"
    if fused:
        prepared = optimize_for_inference(prepared)
    if compile:
        # The module keeps its type (tiling reads its architecture); only its forward is compiled.
        prepared.forward = torch.compile(prepared.forward)
    prepared.sisr_inference = InferenceSettings(
        precision, target, None if dtype == torch.float32 else dtype, CHANNELS_LAST, fused, compile
    )
    return prepared


def prepared_for(model: nn.Module, precision: str, device: str | torch.device) -> nn.Module:
    """`model` itself if it was prepared for these settings, else a prepared copy.

    "auto" (precision or device) accepts what a prepared model already has:
    a model prepared in fp32 on purpose is not re-prepared in fp16 because a
    GPU is there.
    """
    settings = getattr(model, "sisr_inference", None)
    if isinstance(settings, InferenceSettings):
        unspecified_device = isinstance(device, str) and device.strip().lower() == "auto"
        target = settings.device if unspecified_device else resolve_device(device)
        wanted = settings.precision if precision == AUTO else resolve_precision(precision, target)
        check_precision(wanted, target)
        if wanted == settings.precision and target == settings.device:
            return model
    return prepare_model(model, precision, device)
