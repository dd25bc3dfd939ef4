"""Benchmark evaluation as the papers do it: MATLAB-made LR, Y channel, border cropped.

`evaluate()` returns plain records (dicts) so that tables, CSV and JSON are
all views of the same numbers.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from torch import nn

from .errors import SisrError

log = logging.getLogger("sisr")

METRICS = ("psnr", "ssim")


def model_label(name: str | os.PathLike | nn.Module) -> str:
    """How a model is named in tables: the preset name, or a weight file's stem."""
    if isinstance(name, nn.Module):
        return type(name).__name__
    text = str(name)
    path = Path(text)
    return path.stem if path.suffix in (".safetensors", ".h5", ".pt", ".pth") else text


def evaluate(
    models: Sequence[str | os.PathLike | nn.Module] | str,
    datasets: Sequence[str | os.PathLike] | str,
    scale: int,
    *,
    data_root: str | os.PathLike | None = None,
    metrics: Iterable[str] = METRICS,
    y_channel: bool = True,
    crop_border: int | None = None,
    self_ensemble: bool = False,
    tile: int | None = None,
    tile_overlap: int | None = None,
    precision: str = "fp32",
    device: str = "auto",
    save_images: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Score each model on each dataset; one record per (model, dataset).

    A record holds `model`, `dataset`, `scale`, `y_channel`, `crop_border`,
    `metrics` (mean over the set), `images` (per-image values) and `seconds`.
    Defaults follow the papers: Y channel of BT.601 YCbCr, border = scale.
    """
    from .data.benchmarks import load_benchmark
    from .image_io import write_image
    from .imaging import psnr, ssim
    from .inference import prepare_model, upscale
    from .inference.ensemble import SelfEnsemble
    from .weights import resolve_model

    if isinstance(models, (str, os.PathLike, nn.Module)):
        models = [models]
    if isinstance(datasets, (str, os.PathLike)):
        datasets = [datasets]
    metrics = [m.lower() for m in metrics]
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise SisrError(f"unknown metric {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    crop = scale if crop_border is None else crop_border
    functions = {"psnr": psnr, "ssim": ssim}

    sets = [load_benchmark(dataset, scale, data_root, progress=progress) for dataset in datasets]
    records = []
    for model_name in models:
        model = model_name if isinstance(model_name, nn.Module) else resolve_model(model_name, scale)
        if self_ensemble:
            model = SelfEnsemble(model)
        model = prepare_model(model, precision, device)  # once per model, not per image
        label = model_label(model_name) + ("+" if self_ensemble else "")
        for benchmark in sets:
            started = time.perf_counter()
            images = []
            for name, hr, lr in benchmark.iter_pairs():
                sr = upscale(model, lr, tile=tile, tile_overlap=tile_overlap, precision=precision, device=device)
                if sr.shape != hr.shape:
                    raise SisrError(f"{benchmark.name}/{name}: output {sr.shape} but HR {hr.shape}")
                values = {m: float(functions[m](sr, hr, crop_border=crop, y_channel=y_channel)) for m in metrics}
                images.append({"name": name, **values})
                if save_images is not None:
                    out = Path(save_images) / label / benchmark.name / f"x{scale}" / f"{name}.png"
                    write_image(out, sr, overwrite=overwrite)
            seconds = time.perf_counter() - started
            means = {m: sum(image[m] for image in images) / len(images) for m in metrics} if images else {}
            records.append({
                "model": label, "dataset": benchmark.name, "scale": scale, "y_channel": y_channel,
                "crop_border": crop, "metrics": means, "images": images, "seconds": round(seconds, 3),
            })
            summary = ", ".join(f"{m} {v:.4f}" for m, v in means.items())
            log.info("%s on %s x%d: %s (%d images, %.1f s)", label, benchmark.name, scale, summary, len(images), seconds)
    return records
