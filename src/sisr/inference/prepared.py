"""The inference copy of a model: precision and device decided once, device staging behind one object.

`prepare_model` (or `SRModel.prepare`) makes a `PreparedModel`: the network
in eval mode, weight normalization folded into plain kernels, moved to the
device, channels-last, with the CPU's fused forms where they apply; reduced
precision runs under autocast. `upscale` takes it as it is, so a loop over
many images prepares once. What depends on the device (native CPU kernels,
malloc settings, pinned host memory for GPU results) is chosen here and
carried by the object, not by module-level switches.
"""

from __future__ import annotations

import contextlib
import logging

import torch
from torch import nn

from ..errors import SisrError
from ..model import ModelInfo, SRModel, as_model
from ..models.common import fold_weight_norm
from .precision import AUTO, DTYPES, PRECISIONS, check_precision, resolve_device, resolve_precision, warn_if_emulated

log = logging.getLogger("sisr")


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
    ) -> None:
        self.model = model
        self.network = network
        self.precision = precision
        self.device = device
        self.fused = fused  # parts replaced by the fast paths of sisr.inference.fast
        self.compiled = compiled  # forward compiled by torch.compile (once per input shape)
        self.native_kernels = native_kernels  # fused parts run in sisr.inference.native's kernels
        self.pinned_memory = pinned_memory and device.type == "cuda"  # GPU results through page-locked memory
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
) -> PreparedModel:
    """The inference copy of `model` for `precision` and `device` ("auto": see `resolve_precision`).

    A `PreparedModel` that already matches is returned as it is ("auto"
    accepts its precision and device); a name is loaded as `load_model` would.
    On the CPU, WDSR-B's blocks and the upsamplers take their fused forms
    (`sisr.inference.fast`; `fuse=False` keeps the network's own modules),
    in the compiled kernels of `sisr.inference.native` where they load
    (`native_kernels=None`; True or False forces the choice), and malloc is
    asked to keep freed feature maps (`sisr.inference.host_memory`).
    `compile=True` runs the forward through `torch.compile` instead of the
    fused forms: it costs seconds per new input shape, so it pays over many
    inputs of one size, mostly on a GPU. `pinned_memory` brings GPU results
    to the host through page-locked memory.
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
    resolved = resolve_precision(precision, target)
    if precision == AUTO and resolved not in model.info.precisions:
        resolved = "fp32"  # e.g. bicubic, which runs in float32 only
    check_precision(resolved, target)
    warn_if_emulated(resolved, target)
    network = fold_weight_norm(model.network).eval().requires_grad_(False).to(target)
    # Module.to accepts memory_format (see its docstring); torch's overloads leave it out.
    network = network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    fused = fuse and not compile and target.type == "cpu"
    use_native = False
    if target.type == "cpu":
        from .host_memory import keep_freed_memory

        keep_freed_memory()  # process-wide, once: see sisr.inference.host_memory
    if fused:
        from . import native
        from .fast import optimize_for_inference

        available = native.library() is not None
        if native_kernels and not available:
            raise SisrError(f"the native CPU kernels are not available here: {native.unavailable_reason()}")
        use_native = available if native_kernels is None else bool(native_kernels)
        network = optimize_for_inference(network, native_kernels=use_native)
    if compile:
        # The module keeps its type (tiling reads its architecture); only its forward is compiled.
        network.forward = torch.compile(network.forward)
    return PreparedModel(
        model,
        network,
        resolved,
        target,
        fused=fused,
        compiled=compile,
        native_kernels=use_native,
        pinned_memory=pinned_memory,
    )
