"""Validation during training: PSNR on held-out images, as the papers report it.

Whole images (not patches) are upscaled, rounded to 8 bits and compared with
`sisr.imaging.psnr` on the Y channel (ITU-R BT.601) with `scale` pixels cropped
at the border: the numbers are comparable with the published tables.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import SisrError
from ..image_io import read_image, to_rgb8

log = logging.getLogger("sisr")

DIV2K_VALID_NAMES = {"div2k", "div2k-valid", "div2k_valid", "div2kvalid"}


@dataclass
class ValidationSet:
    name: str
    scale: int
    pairs: list[tuple[str, torch.Tensor, np.ndarray]]  # (name, LR 1x3xHxW in [0, 1], HR uint8 HxWx3)

    def __len__(self) -> int:
        return len(self.pairs)


def _div2k_valid(scale: int, downgrade: str, root: str, limit: int, download: bool) -> Iterator[tuple]:
    """DIV2K 0801-0900 with the training data's degradation (the benchmark loader has only bicubic)."""
    from ..data.div2k import div2k_pairs

    for pair in div2k_pairs("valid", scale, downgrade, root or None, limit=limit or None, download=download):
        if pair.lr_path is None:  # DIV2K pairs always name their LR file
            raise SisrError(f"{pair.hr_path}: DIV2K pair without an LR image")
        hr, lr = to_rgb8(read_image(pair.hr_path)), to_rgb8(read_image(pair.lr_path))
        yield pair.name, hr, lr


def _benchmark(name: str, scale: int, root: str) -> Iterator[tuple]:
    from ..data.testsets import load_benchmark

    for image_name, hr, lr in load_benchmark(name, scale, root or None).iter_pairs():
        yield image_name, to_rgb8(hr), to_rgb8(lr)


def load_validation_set(
    name: str, scale: int, *, limit: int = 0, root: str = "", downgrade: str = "bicubic", download: bool = True
) -> ValidationSet:
    """A benchmark set by name (Set5, DIV2K-valid, ...) or folder, read once into memory."""
    if name.strip().lower() in DIV2K_VALID_NAMES:
        source, label = _div2k_valid(scale, downgrade, root, limit, download), f"DIV2K-valid ({downgrade})"
    else:
        source, label = _benchmark(name, scale, root), name
    pairs = []
    for image_name, hr, lr in source:
        height, width = lr.shape[0] * scale, lr.shape[1] * scale
        if hr.shape[0] < height or hr.shape[1] < width:
            raise SisrError(
                f"{label}/{image_name}: HR {hr.shape[1]}x{hr.shape[0]} is smaller than "
                f"x{scale} the LR {lr.shape[1]}x{lr.shape[0]}"
            )
        lr_tensor = torch.from_numpy(lr.transpose(2, 0, 1).copy()).unsqueeze(0).float().div_(255)
        pairs.append((image_name, lr_tensor, np.ascontiguousarray(hr[:height, :width])))
        if limit and len(pairs) >= limit:
            break
    if not pairs:
        raise SisrError(f"validation set {name!r}: no images")
    return ValidationSet(label, scale, pairs)


def to_uint8_image(sr: torch.Tensor) -> np.ndarray:
    """1x3xHxW in [0, 1] -> HxWx3 uint8, rounded as an image file would store it."""
    return sr[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


@torch.no_grad()
def evaluate(model: nn.Module, validation: ValidationSet, device: torch.device) -> tuple[float, float]:
    """(mean PSNR in dB, seconds) of `model` on the set; the model is left as it was (train or eval)."""
    from ..imaging import psnr

    was_training = model.training
    model.eval()
    started = time.perf_counter()
    values = []
    try:
        for _, lr, hr in validation.pairs:
            sr = to_uint8_image(model(lr.to(device)).float())
            value = psnr(sr, hr, crop_border=validation.scale, y_channel=True)
            values.append(value if isinstance(value, float) else float(value[0]))  # one image: one value
    finally:
        model.train(was_training)
    return float(np.mean(values)), time.perf_counter() - started
