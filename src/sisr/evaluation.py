"""Benchmark evaluation as the papers do it: MATLAB-made LR, Y channel, border cropped.

`evaluate()` returns plain records (dicts) so that tables, CSV and JSON are
all views of the same numbers. With `degradations` (`jpeg75`, `noise15`,
`realesrgan-0`, ... see `sisr.data.degradations.fixed_degradation`) the LR
images are made from the sets' images deterministically, so a table on
degraded inputs is reproduced by anyone with the same sets.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from torch import nn

from .errors import SisrError
from .model import SRModel, as_model

if TYPE_CHECKING:
    import numpy as np

    from .data.degradations import FixedDegradation
    from .data.testsets import BenchmarkSet

log = logging.getLogger("sisr")

METRICS = ("psnr", "ssim")


def model_label(name: str | os.PathLike[str] | nn.Module | SRModel) -> str:
    """How a model is named in tables: the preset name, or a weight file's stem."""
    if isinstance(name, nn.Module):
        return type(name).__name__
    text = name.name if isinstance(name, SRModel) else os.fspath(name)
    path = Path(text)
    return path.stem if path.suffix in (".safetensors", ".h5", ".pt", ".pth") else text


def evaluate(
    models: Sequence[str | os.PathLike[str] | nn.Module | SRModel] | str | SRModel,
    datasets: Sequence[str | os.PathLike] | str,
    scale: int | None = None,
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
    degradations: Sequence[str] | str | None = None,
    degradation_seed: int = 0,
) -> list[dict[str, Any]]:
    """Score each model on each dataset; one record per (model, dataset, degradation).

    A record holds `model`, `dataset`, `degradation` (None: the set's LR as
    published), `scale`, `y_channel`, `crop_border`, `metrics` (mean over the
    set), `images` (per-image values) and `seconds`.
    Defaults follow the papers: Y channel of BT.601 YCbCr, border = scale.
    Without `scale`, the networks' own scale is used (they must agree);
    `bicubic` alone needs it. `degradations` name fixed degradations of the
    LR images, `degradation_seed` fixes their random draws.
    """
    from .data.degradations import fixed_degradation
    from .data.testsets import load_benchmark
    from .image_io import write_image
    from .imaging import psnr, ssim
    from .inference import prepare_model, upscale
    from .inference.ensemble import self_ensemble as with_self_ensemble
    from .weights import load_model

    if isinstance(models, (str, os.PathLike, nn.Module, SRModel)):
        models = [models]
    if isinstance(datasets, (str, os.PathLike)):
        datasets = [datasets]
    metrics = [m.lower() for m in metrics]
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise SisrError(f"unknown metric {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    if isinstance(degradations, str):
        degradations = [degradations]
    if not isinstance(degradation_seed, int) or degradation_seed < 0:
        raise SisrError(f"degradation_seed must be a non-negative integer, not {degradation_seed!r}")
    # Names are checked first, networks next: a wrong name or scale fails before any data is read.
    fixed: list[FixedDegradation | None] = (
        [fixed_degradation(name) for name in dict.fromkeys(degradations)] if degradations else [None]
    )
    networks = [_resolve(model, scale) for model in models]
    if scale is None:
        scale = _common_scale(models, networks)
    crop = scale if crop_border is None else crop_border
    functions = {"psnr": psnr, "ssim": ssim}

    sets = [load_benchmark(dataset, scale, data_root, progress=progress) for dataset in datasets]
    cache: dict[tuple[int, str], list[np.ndarray]] = {}  # degraded LR images, made once for all models
    records = []
    for model_name, network in zip(models, networks):
        model = network if network is not None else load_model("bicubic", scale=scale)
        if self_ensemble:
            model = with_self_ensemble(model)
        prepared = prepare_model(model, precision, device)  # once per model, not per image
        label = model_label(model_name) + ("+" if self_ensemble else "")
        for benchmark, degradation in ((b, d) for b in sets for d in fixed):
            started = time.perf_counter()
            images: list[dict[str, Any]] = []
            pairs = degraded_pairs(benchmark, degradation, degradation_seed, cache if len(models) > 1 else None)
            for name, hr, lr in pairs:
                sr = upscale(prepared, lr, tile=tile, tile_overlap=tile_overlap)
                if sr.shape != hr.shape:
                    raise SisrError(f"{benchmark.name}/{name}: output {sr.shape} but HR {hr.shape}")
                # One image in, so each metric gives one number (a batch would give a list).
                values = {
                    m: float(cast(float, functions[m](sr, hr, crop_border=crop, y_channel=y_channel))) for m in metrics
                }
                images.append({"name": name, **values})
                if save_images is not None:
                    folder = f"x{scale}" if degradation is None else f"x{scale}-{degradation.name}"
                    out = Path(save_images) / label / benchmark.name / folder / f"{name}.png"
                    write_image(out, sr, overwrite=overwrite)
            seconds = time.perf_counter() - started
            means = {m: sum(image[m] for image in images) / len(images) for m in metrics} if images else {}
            records.append(
                {
                    "model": label,
                    "dataset": benchmark.name,
                    "degradation": None if degradation is None else degradation.name,
                    "scale": scale,
                    "y_channel": y_channel,
                    "crop_border": crop,
                    "metrics": means,
                    "images": images,
                    "seconds": round(seconds, 3),
                }
            )
            summary = ", ".join(f"{m} {v:.4f}" for m, v in means.items())
            where = benchmark.name if degradation is None else f"{benchmark.name} ({degradation.name})"
            log.info("%s on %s x%d: %s (%d images, %.1f s)", label, where, scale, summary, len(images), seconds)
    return records


def degraded_pairs(
    benchmark: BenchmarkSet,
    degradation: FixedDegradation | None,
    seed: int,
    cache: dict[tuple[int, str], list[np.ndarray]] | None,
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, HR, LR) of a set, LR by `degradation`; with a `cache`, each degraded LR is made once (Real-ESRGAN's
    blur of a large image takes seconds) and later models read it from there."""
    if degradation is None or cache is None:
        yield from benchmark.iter_pairs(degradation, seed)
        return
    key = (id(benchmark), degradation.name)
    stored = cache.get(key)
    if stored is not None:
        for (name, hr, _), lr in zip(benchmark.iter_pairs(), stored):
            yield name, hr, lr
        return
    made = []
    for name, hr, lr in benchmark.iter_pairs(degradation, seed):
        made.append(lr)
        yield name, hr, lr
    cache[key] = made


def _resolve(model: str | os.PathLike[str] | nn.Module | SRModel, scale: int | None) -> SRModel | None:
    """The model named by `model`; None for `bicubic`, which is built once the scale is known."""
    from .weights import load_model

    if isinstance(model, (nn.Module, SRModel)):
        return as_model(model)
    return None if str(model) == "bicubic" else load_model(model, scale=scale)


def _common_scale(
    models: Sequence[str | os.PathLike[str] | nn.Module | SRModel], networks: list[SRModel | None]
) -> int:
    """The one scale of `networks` (bicubic has none of its own)."""
    scales = {model_label(model): network.scale for model, network in zip(models, networks) if network is not None}
    if not scales:
        raise SisrError("no scale given and none to take from the models (bicubic has none): pass --scale / scale=")
    if len(set(scales.values())) > 1:
        listed = ", ".join(f"{name} x{value}" for name, value in scales.items())
        raise SisrError(
            f"the models upscale by different factors ({listed}): evaluate them separately, "
            f"or pass --scale to have the mismatch named"
        )
    return next(iter(scales.values()))
