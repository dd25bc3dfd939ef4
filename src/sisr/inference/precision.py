"""Where and in which number format a network runs: the device, and the precision `auto` stands for."""

from __future__ import annotations

import functools
import logging
import os

import torch

from ..errors import SisrError

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

    The rule, where nothing is measured: on a CPU with native bf16,
    `prepare_model` times bf16 against fp32 (`auto_precisions`). Each is the
    fastest there whose Set5 PSNR matches fp32's (docs/benchmarks.md has the
    figures). A CPU without bf16 instructions only emulates bf16, many
    times slower than fp32, so it keeps fp32. An fp16 batch that overflows is
    run again in fp32 (see `PreparedModel`).
    """
    if precision != AUTO:
        return precision
    if device.type == "cuda":
        return "fp16"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def auto_precisions(device: torch.device) -> tuple[str, ...]:
    """What "auto" may run in on `device`, the rule's choice (`resolve_precision`) first.

    On a CPU with native bf16, fp32 and bf16: `prepare_model` times both
    there and keeps bf16 only where it pays (`sisr.inference.autotune`).
    SISR_CPU_BF16=0 or 1 leaves the one it names; emulated bf16 is never a
    candidate (many times slower than fp32 wherever it was measured).
    """
    chosen = resolve_precision(AUTO, device)
    forced = os.environ.get("SISR_CPU_BF16", "").strip() in ("0", "1")
    if device.type == "cpu" and chosen == "bf16" and not forced:
        return ("bf16", "fp32")
    return (chosen,)


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
