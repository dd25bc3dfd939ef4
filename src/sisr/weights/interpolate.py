"""Between two networks: weights-space interpolation, and how strongly to denoise a JPEG of a given quality.

A network trained on clean bicubic LR sharpens JPEG blocks; one trained on
JPEG LR smooths fine texture of clean inputs. Two networks of the same
architecture, the second fine-tuned from the first, stay close enough in
weight space that every point on the line between them is a working network
whose behaviour moves smoothly from one to the other: ESRGAN's "network
interpolation" (Wang et al., ECCV 2018 workshops, Sec. 3.4) and Deep Network
Interpolation (Wang et al., CVPR 2019). `sisr upscale --denoise S` is that
line: 0 the default network, 1 the robust one.

`denoise_strength_for_quality` maps a JPEG's quality (read off its
quantization tables, `sisr.imaging.jpeg`) to a point on the line.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import replace

import torch
from torch import nn

from ..errors import SisrError
from ..model import SRModel, as_model
from ..models.common import WeightNormConv2d

# PLACEHOLDER, NOT MEASURED: (IJG quality, strength) points, linear in between and constant outside. The
# shape only says "the coarser the quantization, the more denoising"; the numbers are to be replaced by the
# strengths that measure best at each quality (Set14 / BSD100 LR saved by Pillow at that quality).
DENOISE_BY_QUALITY: tuple[tuple[int, float], ...] = ((50, 1.0), (75, 0.75), (90, 0.4), (97, 0.0))
DENOISE_TABLE_MEASURED = False  # True once DENOISE_BY_QUALITY holds measured strengths


def _describe(model: SRModel) -> str:
    spec = model.spec
    if spec is None:
        return model.name
    args = ", ".join(f"{key}={value}" for key, value in sorted(spec.args.items()))
    return f"{model.name} ({spec.arch}: {args})"


def _check_same_network(a: SRModel, b: SRModel) -> None:
    """Refuse two networks that are not the same architecture with the same arguments, naming the difference."""
    if a.spec is not None and b.spec is not None:
        if a.spec.arch != b.spec.arch:
            raise SisrError(
                f"cannot interpolate {a.name} and {b.name}: one is {a.spec.arch}, the other {b.spec.arch}; "
                "interpolation needs two networks of the same spec"
            )
        differing = [
            f"{key} {a.spec.args.get(key)!r} vs {b.spec.args.get(key)!r}"
            for key in sorted(set(a.spec.args) | set(b.spec.args))
            if a.spec.args.get(key) != b.spec.args.get(key)
        ]
        if differing:
            raise SisrError(
                f"cannot interpolate {_describe(a)} and {_describe(b)}: their networks differ in "
                f"{'; '.join(differing)}; interpolation needs two networks of the same spec"
            )
    state_a, state_b = a.network.state_dict(), b.network.state_dict()
    if list(state_a) != list(state_b):
        only = sorted(set(state_a) ^ set(state_b))
        raise SisrError(
            f"cannot interpolate {a.name} and {b.name}: their weights have different names "
            f"({', '.join(only[:3]) or 'in another order'}); interpolation needs two networks of the same spec"
        )
    for key, tensor in state_a.items():
        if tensor.shape != state_b[key].shape:
            raise SisrError(
                f"cannot interpolate {a.name} and {b.name}: {key} is {tuple(tensor.shape)} in one and "
                f"{tuple(state_b[key].shape)} in the other"
            )


def interpolate_networks(
    a: SRModel | nn.Module, b: SRModel | nn.Module, t: float, *, name: str | None = None
) -> SRModel:
    """The network (1 - t) a + t b, weight by weight; `a` itself at t = 0 and `b` itself at t = 1.

    Weight-normalised convolutions (WDSR) are interpolated in their kernels
    g v / ||v||, not in g and v apart: the kernels are what the network
    computes with, and only they are linear in t. Buffers that are not
    floating point (none in sisr's networks) must be equal. Neither input is
    changed; between the ends the result is a new network on `a`'s device.
    """
    a, b = as_model(a), as_model(b)
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 0.0 <= t <= 1.0:
        raise SisrError(f"the interpolation point must be a number from 0 to 1, not {t!r}")
    _check_same_network(a, b)
    if t == 0:
        return a
    if t == 1:
        return b
    network = copy.deepcopy(a.network)
    theirs = dict(b.network.named_modules())
    with torch.no_grad():
        for module_name, module in network.named_modules():
            other = theirs[module_name]
            if isinstance(module, WeightNormConv2d) and isinstance(other, WeightNormConv2d):
                kernel = torch.lerp(module.weight, other.weight.to(module.weight_v.device), float(t))
                module.weight_v.copy_(kernel)
                module.weight_g.copy_(kernel.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
                tensors = [("bias", module.bias, other.bias)]
            else:
                tensors = [
                    *((key, value, other._parameters.get(key)) for key, value in module._parameters.items()),
                    *((key, value, other._buffers.get(key)) for key, value in module._buffers.items()),
                ]
            for key, mine, their in tensors:
                if mine is None or their is None:
                    continue
                if mine.is_floating_point():
                    mine.copy_(torch.lerp(mine, their.to(mine.device, mine.dtype), float(t)))
                elif not torch.equal(mine, their.to(mine.device)):
                    raise SisrError(
                        f"cannot interpolate {a.name} and {b.name}: {module_name}.{key} holds integers that differ"
                    )
    label = name or f"{a.name}~{b.name}@{t:g}"
    info = replace(a.info, name=label, source="module", path=None, metadata={})
    return SRModel(network, info)


def denoise_strength_for_quality(quality: int | None) -> float:
    """The interpolation point for a JPEG of IJG `quality` (None: a lossless input, 0).

    Reads `DENOISE_BY_QUALITY`, which is a PLACEHOLDER until measured (see
    `DENOISE_TABLE_MEASURED`).
    """
    if quality is None:
        return 0.0
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise SisrError(f"a JPEG quality is from 1 to 100, not {quality!r}")
    points = DENOISE_BY_QUALITY
    if quality <= points[0][0]:
        return points[0][1]
    for (low_q, low_s), (high_q, high_s) in zip(points, points[1:]):
        if quality <= high_q:
            return low_s + (high_s - low_s) * (quality - low_q) / (high_q - low_q)
    return points[-1][1]


def denoise_strength_for_file(path: str | os.PathLike) -> tuple[float, int | None]:
    """(strength, the JPEG's estimated quality or None) for an input file: `--denoise auto`'s choice."""
    from ..imaging.jpeg import jpeg_quality

    estimate = jpeg_quality(path)
    quality = None if estimate is None else estimate.quality
    return denoise_strength_for_quality(quality), quality
