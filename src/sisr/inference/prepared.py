"""The inference copy of a model: precision and device decided once, device staging behind one object.

`prepare_model` (or `SRModel.prepare`) makes a `PreparedModel`: the network
in eval mode, weight normalization folded into plain kernels, moved to the
device, channels-last, with the CPU's fused forms where they apply; reduced
precision runs under autocast. `upscale` takes it as it is, so a loop over
many images prepares once. What depends on the device (native CPU kernels,
bf16 or fp32 where "auto" allows both, malloc settings, pinned host memory
for GPU results) is chosen here, on the CPU by measurement
(`sisr.inference.autotune`), and carried by the object, not by module-level
switches.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable

import torch
from torch import nn

from ..errors import SisrError
from ..model import ModelInfo, SRModel, as_model
from ..models.common import fold_weight_norm
from .autotune import Candidate, Decision
from .precision import (
    AUTO,
    DTYPES,
    PRECISIONS,
    auto_precisions,
    check_precision,
    resolve_device,
    resolve_precision,
    warn_if_emulated,
)

log = logging.getLogger("sisr")

# FLOPs per LR pixel assumed for a network that cannot be counted: a middling SR network's.
UNKNOWN_FLOPS_PER_PIXEL = 1e6


class PreparedModel:
    """A model ready for inference on one device in one precision; calling it runs a checked forward.

    Build it with `prepare_model`. `network` is the inference copy (the
    model's own network is untouched); `precision` and `device` are what
    was resolved from "auto".
    """

    def __init__(
        self,
        model: SRModel,
        network: nn.Module,
        precision: str,
        device: torch.device,
        *,
        fused: bool,
        compiled: bool,
        native_kernels: bool,
        pinned_memory: bool,
        tuning: Decision | None = None,
    ) -> None:
        self.model = model
        self.network = network
        self.precision = precision
        self.device = device
        self.fused = fused  # parts replaced by the fast paths of sisr.inference.fast
        self.compiled = compiled  # forward compiled by torch.compile (once per input shape)
        self.native_kernels = native_kernels  # fused parts run in sisr.inference.native's kernels
        self.pinned_memory = pinned_memory and device.type == "cuda"  # GPU results through page-locked memory
        self.tuning = tuning  # how the CPU path was chosen (None: nothing to choose, e.g. on a GPU)
        dtype = DTYPES[precision]  # checked against the device by prepare_model
        self.autocast_dtype = None if dtype == torch.float32 else dtype
        self._overflow_warned = False

    @property
    def info(self) -> ModelInfo:
        return self.model.info

    @property
    def scale(self) -> int:
        return self.model.scale

    @property
    def name(self) -> str:
        return self.model.name

    def describe(self) -> str:
        """One line for a user: which model, precision and device, e.g. `default-x4 (wdsr, x4) in fp32 on cpu`."""
        extras = [word for word, used in (("native kernels", self.native_kernels), ("compiled", self.compiled)) if used]
        suffix = f" ({', '.join(extras)})" if extras else ""
        return f"{self.info.summary()} in {self.precision} on {self.device}{suffix}"

    def matches(self, precision: str, device: str | torch.device) -> bool:
        """Whether this copy already is what `precision` and `device` ask for ("auto" accepts what it has)."""
        unspecified_device = isinstance(device, str) and device.strip().lower() == AUTO
        target = self.device if unspecified_device else resolve_device(device)
        wanted = self.precision if precision == AUTO else resolve_precision(precision, target)
        check_precision(wanted, target)
        return wanted == self.precision and target == self.device

    def to_input(self, batch: torch.Tensor) -> torch.Tensor:
        """A float32 batch on the model's device, channels-last."""
        batch = batch.to(device=self.device, dtype=torch.float32, non_blocking=True)
        return batch.contiguous(memory_format=torch.channels_last)

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """Reduced precision for the convolutions, float32 for the rest (the mean shift, the output)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """The network's output for a float NCHW batch in [0, 1], of exactly `scale` times its size."""
        inputs = self.to_input(batch)
        with torch.inference_mode(), self.autocast():
            output = self.network(inputs)
        if self.precision == "fp16" and not bool(torch.isfinite(output).all()):
            # fp16 tops out at 65504: a network with large activations (or an unusual
            # input) can overflow where bf16 and fp32 do not. Redo the batch in fp32
            # rather than write infinities as white.
            if not self._overflow_warned:
                log.warning("%s: fp16 overflowed; running those tiles in fp32", self.name)
                self._overflow_warned = True
            with torch.inference_mode():
                output = self.network(inputs)
        expected = (batch.shape[0], 3, batch.shape[2] * self.scale, batch.shape[3] * self.scale)
        if tuple(output.shape) != expected:
            raise SisrError(
                f"{self.name} returned {tuple(output.shape)} for an input of "
                f"{tuple(batch.shape)}; expected {expected} at scale x{self.scale}"
            )
        return output

    def __repr__(self) -> str:
        return f"PreparedModel({self.describe()})"


def prepare_model(
    model: SRModel | PreparedModel | nn.Module | str,
    precision: str = AUTO,
    device: str | torch.device = AUTO,
    *,
    compile: bool = False,
    fuse: bool = True,
    native_kernels: bool | None = None,
    pinned_memory: bool = True,
    retune: bool = False,
) -> PreparedModel:
    """The inference copy of `model` for `precision` and `device` ("auto": see `resolve_precision`).

    A `PreparedModel` that already matches is returned as it is ("auto"
    accepts its precision and device); a name is loaded as `load_model` would.
    On the CPU, WDSR-B's blocks and the upsamplers take their fused forms
    (`sisr.inference.fast`; `fuse=False` keeps the network's own modules),
    and malloc is asked to keep freed feature maps
    (`sisr.inference.host_memory`). Where there is a choice, the faster
    form on this machine is measured once per network shape and remembered
    (`sisr.inference.autotune`; `retune=True` measures again): the compiled
    kernels of `sisr.inference.native` or PyTorch's layers
    (`native_kernels=None`; True or False forces it), bf16 or fp32 where
    `precision` is "auto" and the CPU has native bf16, and WDSR-B's bf16
    blocks as oneDNN's fused convolutions or as products. `compile=True`
    runs the forward through `torch.compile` instead of the fused forms: it
    costs seconds per new input shape, so it pays over many inputs of one
    size, mostly on a GPU. `pinned_memory` brings GPU results to the host
    through page-locked memory.
    """
    if isinstance(model, PreparedModel):
        if model.matches(precision, device):
            return model
        model = model.model
    if isinstance(model, str):
        from ..weights import load_model

        model = load_model(model)
    model = as_model(model)
    target = resolve_device(device)
    if precision in PRECISIONS and precision not in model.info.precisions:
        raise SisrError(f"{model.name} runs in {', '.join(model.info.precisions)}, not {precision}")
    if precision == AUTO:
        precisions = [p for p in auto_precisions(target) if p in model.info.precisions] or ["fp32"]
    else:
        check_precision(precision, target)
        precisions = [precision]
    network = fold_weight_norm(model.network).eval().requires_grad_(False).to(target)
    # Module.to accepts memory_format (see its docstring); torch's overloads leave it out.
    network = network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    fused = fuse and not compile and target.type == "cpu"
    chosen = Candidate(precisions[0])
    tuning = None
    if target.type == "cpu":
        from .host_memory import keep_freed_memory

        keep_freed_memory()  # process-wide, once: see sisr.inference.host_memory
    if fused:
        network, tuning = _fast_cpu_network(model, network, precisions, native_kernels, retune)
        chosen = tuning.chosen
    check_precision(chosen.precision, target)
    warn_if_emulated(chosen.precision, target)
    if compile:
        # The module keeps its type (tiling reads its architecture); only its forward is compiled.
        network.forward = torch.compile(network.forward)
    return PreparedModel(
        model,
        network,
        chosen.precision,
        target,
        fused=fused,
        compiled=compile,
        native_kernels=chosen.path == "native",
        pinned_memory=pinned_memory,
        tuning=tuning,
    )


def _fast_cpu_network(
    model: SRModel, network: nn.Module, precisions: list[str], native_kernels: bool | None, retune: bool
) -> tuple[nn.Module, Decision]:
    """`network` in its CPU fast forms, the candidates allowed here timed against each other (or cached).

    The candidates share one optimized copy, switched between forms by
    `fast.select_paths`: the forms compute the same values, so one copy is
    enough, and a large network is not held once per candidate.
    """
    from . import autotune, native
    from .fast import optimize_for_inference, select_paths, uses_native_kernels, uses_onednn_bf16

    available = native.library() is not None
    if native_kernels and not available:
        raise SisrError(f"the native CPU kernels are not available here: {native.unavailable_reason()}")
    network = optimize_for_inference(network, native_kernels=available, onednn_bf16=True)
    if native_kernels is not None:
        fp32_paths = ["native" if native_kernels else "pytorch"]
    elif not available or not uses_native_kernels(network):
        fp32_paths = ["pytorch"]
    elif os.environ.get("SISR_NATIVE_KERNELS", "").strip() == "1":
        fp32_paths = ["native"]  # asked for: not measured
    else:
        fp32_paths = ["native", "pytorch"]
    bf16_paths = ["onednn", "pytorch"] if uses_onednn_bf16(network) else ["pytorch"]
    candidates = [
        autotune.Candidate(precision, path)
        for precision in precisions
        for path in (bf16_paths if precision == "bf16" else fp32_paths if precision == "fp32" else ["pytorch"])
    ]
    shape = autotune.shape_class(model.info.arch or type(model.network).__name__, model.network)

    @functools.cache
    def side() -> int:  # counted only when measuring: a cached decision costs no FLOP count
        return autotune.tuning_side(_flops_per_pixel(model.network))

    def runner(candidate: Candidate) -> Callable[[], object]:
        dtype = DTYPES[candidate.precision]
        generator = torch.Generator().manual_seed(0)
        sample = torch.rand(1, 3, side(), side(), generator=generator).contiguous(memory_format=torch.channels_last)

        def run() -> object:
            select_paths(network, native_kernels=candidate.path == "native", onednn_bf16=candidate.path == "onednn")
            autocast = torch.autocast("cpu", dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
            with torch.inference_mode(), autocast:
                return network(sample)

        return run

    decision = autotune.choose(shape, candidates, runner, side=side, retune=retune, label=model.name)
    chosen = decision.chosen
    select_paths(network, native_kernels=chosen.path == "native", onednn_bf16=chosen.path == "onednn")
    return network, decision


def _flops_per_pixel(network: nn.Module) -> float:
    """FLOPs per LR pixel, counted on the meta device (a guess where the network cannot run there)."""
    from ..speed import count_flops

    side = 8
    try:
        return count_flops(network, side, side) / side**2
    except Exception:  # a foreign network that cannot run on the meta device
        return UNKNOWN_FLOPS_PER_PIXEL
