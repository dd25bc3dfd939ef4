"""Training speed on this machine: steps/s and patches/s, FLOPs per step, share of the matmul peak,
and the data pipeline's own rate.

    python benchmarks/bench_train.py [--steps 3] [--batch-size 16] [--patch-size 96] [--threads N] [--pipeline-only]

For each network one training step (forward, L1 loss, backward, Adam) on a
batch of random patches is timed `--steps` times after one warm-up; the best
and the median are shown (on a shared machine the best is the machine's speed,
the median what other work leaves of it);
the data pipeline is timed apart, on synthetic 2K-sized images, so that each
figure says what limits what. FLOPs are counted by
`torch.utils.flop_counter.FlopCounterMode` (convolutions and matrix products,
forward and backward) and checked against the convolutions' multiply-adds
counted from their shapes. The peak is the best of many large float32
`torch.mm` timed before and after the networks, the most this CPU reaches
with these threads; the fraction of it uses each network's best step.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from sisr import count_parameters, create_model
from sisr.data.degradations import training_recipe
from sisr.data.training import PatchSamples, TrainingImages, patch_loader

PRESETS = ["edsr-baseline-x4", "wdsr-b-32-x4"]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timings(run, repeats: int) -> list[float]:
    run()  # warm-up: allocations, kernel choice, Adam's state
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def matmul_peak_gflops(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / min(timings(lambda: torch.mm(a, b), repeats)) / 1e9


def conv_multiply_adds(model: nn.Module, lr: torch.Tensor) -> int:
    """Forward multiply-adds of every convolution, from its output shape and kernel."""
    total = 0

    def count(module: nn.Conv2d, inputs, output) -> None:
        nonlocal total
        kernel = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        total += output.numel() * kernel

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(lr)
    for hook in hooks:
        hook.remove()
    return total


def bench_network(preset: str, batch: int, hr_patch: int, repeats: int) -> dict:
    sr_model = create_model(preset)
    model, scale = sr_model.network, sr_model.scale  # trained as a plain module, as sisr train does
    generator = torch.Generator().manual_seed(0)
    lr = torch.rand(batch, 3, hr_patch // scale, hr_patch // scale, generator=generator)
    hr = torch.rand(batch, 3, hr_patch, hr_patch, generator=generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        loss = F.l1_loss(model(lr), hr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    times = timings(step, repeats)
    with FlopCounterMode(display=False) as counter:
        loss = F.l1_loss(model(lr), hr)
        loss.backward()
    optimizer.zero_grad(set_to_none=True)
    flops = counter.get_total_flops()
    forward_flops = 2 * conv_multiply_adds(model, lr)
    return {
        "preset": preset,
        "params": count_parameters(model),
        "best": min(times),
        "median": statistics.median(times),
        "flops": flops,
        "forward_flops": forward_flops,
        "patches": batch,
    }


def bench_pipeline(
    batch: int,
    hr_patch: int,
    scale: int,
    workers: int,
    batches: int,
    cache: str,
    folder: Path,
    degradation: str = "bicubic",
) -> float:
    """Patches per second from decoded images to uint8 batches, DIV2K-sized images (2040x1356 HR), LR patches
    made by the named degradation recipe (`data.degradation`)."""
    rng = np.random.default_rng(0)
    hr_list, lr_list, sizes = [], [], []
    for index in range(4):
        hr = rng.integers(0, 256, (1356, 2040, 3), dtype=np.uint8)
        lr = np.ascontiguousarray(hr[::scale, ::scale])
        if cache == "disk":
            np.save(folder / f"hr{index}.npy", hr)
            np.save(folder / f"lr{index}.npy", lr)
            hr_list.append(folder / f"hr{index}.npy")
            lr_list.append(folder / f"lr{index}.npy")
        else:
            hr_list.append(hr)
            lr_list.append(lr)
        sizes.append(lr.shape[:2])
    images = TrainingImages([str(i) for i in range(4)], hr_list, lr_list, sizes, scale)
    samples = PatchSamples(images, hr_patch, seed=0, degradation=training_recipe(degradation))
    loader = iter(patch_loader(samples, batch, workers=workers))
    next(loader)  # workers started
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)
    rate = batches * batch / (time.perf_counter() - start)
    del loader
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per network (median)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch-size", type=int, default=96, help="HR patch side")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batches", type=int, default=100, help="batches timed for the data pipeline")
    parser.add_argument(
        "--pipeline-only", action="store_true", help="time only the data pipeline (no networks, no matmul peak)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(f"{datetime.date.today()}  {cpu_name()}  torch {torch.__version__}  {args.threads} threads")
    if not args.pipeline_only:
        bench_networks(args)
    with tempfile.TemporaryDirectory() as folder:
        for cache, workers in (("memory", 0), ("disk", 0), ("disk", 2)):
            rate = bench_pipeline(args.batch_size, args.patch_size, 4, workers, args.batches, cache, Path(folder))
            print(
                f"data pipeline, {cache} cache, {workers} workers: {rate:,.0f} patches/s "
                f"(crop, flip/rotate, uint8 batches of {args.batch_size})"
            )
        # The degradation recipes run in the loader workers: their rate is what the trainer can be fed.
        for recipe, workers in (("jpeg", 0), ("jpeg", 2), ("realesrgan", 0), ("realesrgan", 2)):
            batches = max(1, args.batches // (10 if recipe == "realesrgan" else 2))
            rate = bench_pipeline(
                args.batch_size, args.patch_size, 4, workers, batches, "disk", Path(folder), degradation=recipe
            )
            print(f"data pipeline, disk cache, {workers} workers, {recipe} recipe: {rate:,.0f} patches/s")


def bench_networks(args: argparse.Namespace) -> None:
    peak_before = matmul_peak_gflops()
    rows = [bench_network(preset, args.batch_size, args.patch_size, args.steps) for preset in PRESETS]
    peak = max(peak_before, matmul_peak_gflops())
    print(f"float32 matmul peak (best 2048x2048 torch.mm): {peak:.1f} GFLOP/s")
    print(
        f"training step: batch {args.batch_size}, HR patch {args.patch_size}, L1 + Adam, float32, "
        f"best / median of {args.steps}"
    )
    print(
        f"{'network':<18} {'params':>7} {'s/step':>12} {'steps/s':>8} {'patches/s':>9} "
        f"{'GFLOP/step':>10} {'fwd conv':>8} {'GFLOP/s':>8} {'of peak':>7}"
    )
    for row in rows:
        best = row["best"]
        rate = row["flops"] / best / 1e9
        print(
            f"{row['preset']:<18} {row['params'] / 1e6:>6.2f}M {best:>5.2f} / {row['median']:>4.2f} "
            f"{1 / best:>8.3f} {row['patches'] / best:>9.1f} {row['flops'] / 1e9:>10.1f} "
            f"{row['forward_flops'] / 1e9:>8.1f} {rate:>8.1f} {rate / peak:>6.0%}"
        )
    print(
        "(GFLOP/step: forward + backward as counted by FlopCounterMode; fwd conv: forward convolutions "
        "counted from their shapes, 2 FLOP per multiply-add)"
    )


if __name__ == "__main__":
    main()
