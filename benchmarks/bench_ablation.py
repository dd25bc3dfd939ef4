"""Issue 22's ablation: post- vs pre-upsampling, the three upsamplers, and the global skip, on one budget.

    python benchmarks/bench_ablation.py train  [--runs /tmp/ablation] [--only NAME ...]
    python benchmarks/bench_ablation.py report [--runs /tmp/ablation] [--out docs/ablations] [--repeat 5]

`train` runs `sisr train configs/ablation/NAME.toml --out RUNS/NAME` for each
variant, one at a time (the machine's cores are shared; two runs side by side
would time each other), then the EDSR variants again with `--seed 1` (RUNS/NAME-seed1)
to show how much one run's PSNR depends on its seed. A finished run is skipped and an interrupted one
continues from its checkpoint, exactly, as `sisr train` does when given the
same command again. Each run's output goes to RUNS/NAME/train.out.

`report` reads the runs and writes, under --out:

* ablation.json: per variant its spec, parameters, multiply-adds per output
  pixel (every convolution and transposed convolution counted by a forward
  hook from its real output shape), seconds per 256 x 256 LR image at x4
  (fp32, `--threads` threads, the prepared network as `sisr upscale` runs
  it, rounds interleaved over the variants, best and median of `--repeat`),
  Set5 / Set14 PSNR and SSIM of the last weights (Y, border 4, as `sisr
  evaluate`), the flat-field pattern (below), the training curves and time;
  and the same size / cost / time figures for the papers' full-width
  networks (untrained), which the budget could not train;
* curves.png: training loss and Set5 PSNR of every variant against step;
* checkerboard.png: one Set14 crop through every variant (`compare_models`,
  what `sisr compare` draws);
* flat-field.png: the pattern each variant draws on a uniform grey input, amplified.

The flat-field pattern is the checkerboard measured: a uniform grey LR image
should come out uniform, so any spread of the output inside the image (away
from the border's zero padding), in 8-bit levels, is a pattern the upsampler
made. A nearest-neighbour resize shares one kernel for all s x s output
positions and so cannot make one.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs" / "ablation"
VARIANTS = ["edsr-subpixel", "edsr-transposed", "edsr-nearest-conv", "edsr-no-skip", "srcnn", "vdsr"]
LABELS = {
    "edsr-subpixel": "EDSR sub-pixel",
    "edsr-transposed": "EDSR transposed",
    "edsr-nearest-conv": "EDSR nearest+conv",
    "edsr-no-skip": "EDSR no global skip",
    "srcnn": "SRCNN (bicubic first)",
    "vdsr": "VDSR (bicubic first)",
}
# The EDSR variants again with another seed (other initial weights and crops): how far one run's PSNR moves.
SECOND_SEED = 1
REPLICATED = ["edsr-subpixel", "edsr-transposed", "edsr-nearest-conv", "edsr-no-skip"]
# The papers' networks at full width: sizes and costs only (the budget could not train them).
FULL_SIZE = ["edsr-baseline-x4", "srcnn-x4", "vdsr-x4"]
SCALE = 4
TIMED_SIDE = 256
SETS = ["Set5", "Set14"]
# A Set14 crop with edges at many angles, where an upsampler's own pattern would show (HR pixels: x, y, w, h).
CROP_IMAGE = "Set14/HR/monarch.png"
CROP = "480,240,48,48"
PATTERN_GAIN = 200  # flat-field patterns are fractions of an 8-bit level: amplified to be seen


# --- training -------------------------------------------------------------------------------------


def finished(run: Path) -> bool:
    """Whether a run's log ends with its last step (an "end" record that was not an interruption)."""
    log = run / "log.jsonl"
    if not log.is_file():
        return False
    lines = log.read_text().splitlines()
    last = json.loads(lines[-1]) if lines else {}
    return last.get("event") == "end" and not last.get("interrupted", False)


def replicate(name: str) -> str:
    return f"{name}-seed{SECOND_SEED}"


def train(runs: Path, names: list[str]) -> None:
    """Each variant, then the replicates of the EDSR ones with the second seed."""
    runs.mkdir(parents=True, exist_ok=True)
    jobs = [(name, name, []) for name in names]
    jobs += [(replicate(name), name, ["--seed", str(SECOND_SEED)]) for name in names if name in REPLICATED]
    for name, config, extra in jobs:
        run = runs / name
        if finished(run):
            print(f"{name}: finished before, skipped", flush=True)
            continue
        command = [sys.executable, "-m", "sisr", "train", str(CONFIGS / f"{config}.toml"), "--out", str(run)]
        command += ["--no-progress", *extra]
        print(f"{name}: {' '.join(command)}", flush=True)
        started = time.perf_counter()
        run.mkdir(parents=True, exist_ok=True)
        with open(run / "train.out", "a") as out:
            code = subprocess.call(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        print(f"{name}: exit {code} after {time.perf_counter() - started:.0f} s", flush=True)
        if code != 0:
            raise SystemExit(f"{name} failed: see {run / 'train.out'}")


# --- measuring ------------------------------------------------------------------------------------


def multiply_adds_per_output_pixel(network: Any, side: int = 32) -> float:
    """Multiply-adds of every convolution and transposed convolution, per output pixel, from real shapes.

    A convolution does (kernel area x input channels / groups) multiply-adds per
    output value; a transposed one the same per *input* value and output channel.
    Element-wise work (ReLU, additions, the shuffle, nearest and bicubic
    enlargement: about 15 multiply-adds per output pixel for bicubic x4) is left
    out, as is customary.
    """
    import torch
    from torch import nn

    total = 0

    def conv(module: nn.Conv2d, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups

    def transposed(module: nn.ConvTranspose2d, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        area = module.kernel_size[0] * module.kernel_size[1]
        total += inputs[0].numel() * area * module.out_channels // module.groups

    hooks = []
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(conv))
        elif isinstance(module, nn.ConvTranspose2d):
            hooks.append(module.register_forward_hook(transposed))
    with torch.inference_mode():
        out = network.eval()(torch.rand(1, 3, side, side))
    for hook in hooks:
        hook.remove()
    return total / (out.shape[2] * out.shape[3])


def flat_field(model: Any, levels: tuple[int, ...] = (64, 128, 192)) -> tuple[float, Any]:
    """Largest spread (max - min per colour, 8-bit levels, unrounded) of the output for uniform grey inputs,
    and the pattern itself at mid-grey (output less its mean, 32 x 32 HR pixels, float).

    The input is wide enough that its centre lies farther than the receptive
    field from every border, and only that centre is measured: there every
    output pixel sees the same uniform input, so any spread is a pattern the
    network itself draws, such as a checkerboard.
    """
    import torch

    from sisr import upscale

    radius = model.info.receptive_field
    side = 2 * radius + 8
    worst, pattern = 0.0, None
    for level in levels:
        image = torch.full((1, 3, side, side), level / 255)
        out = upscale(model, image, precision="fp32", device="cpu")[0] * 255
        inner = out[:, radius * SCALE : (side - radius) * SCALE, radius * SCALE : (side - radius) * SCALE]
        flat = inner.flatten(1)
        spread = flat.max(dim=1).values - flat.min(dim=1).values  # per colour: a tint is no pattern
        worst = max(worst, float(spread.max()))
        if level == 128:
            pattern = (inner - flat.mean(dim=1).view(-1, 1, 1)).permute(1, 2, 0).numpy()
    return worst, pattern


def pattern_figure(patterns: dict[str, tuple[float, Any]], gain: float) -> Any:
    """The flat-field patterns side by side, amplified `gain` x around mid-grey, 8 x nearest."""
    import numpy as np

    from sisr.figures.compare import Panel, compose_comparison
    from sisr.figures.crops import CropBox

    panels = []
    for label, (spread, pattern) in patterns.items():
        image = np.clip(np.rint(128 + gain * pattern), 0, 255).astype(np.uint8)
        panels.append(Panel(label, image, note=f"spread {spread:.2f} levels"))
    height, width = panels[0].image.shape[:2]
    caption = (
        f"x{SCALE} output for a uniform mid-grey input, less its mean, amplified {gain:g} x (grey = no pattern), "
        f"away from the border: {height} x {width} HR pixels, shown 8 x. Spread: max - min per colour in 8-bit "
        "levels over three grey levels, before rounding."
    )
    return compose_comparison(panels, CropBox(0, 0, width, height), zoom=8, columns=6, caption=caption)


def interleaved_seconds(prepared: dict[str, Any], repeat: int, side: int) -> dict[str, list[float]]:
    """Seconds per upscale of one random side x side image, each round running every network once."""
    import numpy as np

    from sisr import upscale

    image = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    for model in prepared.values():
        upscale(model, image)  # warm-up: allocations, kernel choice
    times: dict[str, list[float]] = {name: [] for name in prepared}
    for _ in range(repeat):
        for name, model in prepared.items():
            started = time.perf_counter()
            upscale(model, image)
            times[name].append(time.perf_counter() - started)
    return times


def curves(run: Path) -> dict[str, Any]:
    """Loss and Set5 PSNR against step, the run's time and rate, from its log."""
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    train_records = [r for r in records if r.get("event") == "train"]
    val_records = [r for r in records if r.get("event") == "val"]
    ends = [r for r in records if r.get("event") == "end"]
    return {
        "loss": [[r["step"], r["loss"]] for r in train_records],
        "val_psnr_set5": [[r["step"], r["psnr"]] for r in val_records],
        "train_seconds": sum(r.get("elapsed_s", 0.0) for r in ends),
        "steps_per_s_last": train_records[-1].get("steps_per_s") if train_records else None,
    }


def machine() -> dict[str, Any]:
    import torch

    flags: list[str] = []
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma")
                flags = [flag for flag in line.split(":", 1)[1].split() if flag in wanted]
    except OSError:
        pass
    return {
        "cpu": name,
        "cores": os.cpu_count(),
        "flags": flags,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
        "load_average": list(os.getloadavg()),
    }


# --- the report -----------------------------------------------------------------------------------


def report(runs: Path, out: Path, repeat: int, threads: int, data_root: Path) -> None:
    import torch

    from sisr import count_parameters, create_model, evaluate, load_model, prepare_model
    from sisr.figures import write_figure
    from sisr.figures.charts import plot_curves
    from sisr.figures.compare import compare_models
    from sisr.figures.crops import parse_crop
    from sisr.figures.logs import Series
    from sisr.image_io import read_image

    out.mkdir(parents=True, exist_ok=True)
    models = {name: load_model(runs / name / "last.safetensors").renamed(LABELS[name]) for name in VARIANTS}
    references = {name: create_model(name) for name in FULL_SIZE}

    records: dict[str, dict[str, Any]] = {}
    for name, model in {**models, **references}.items():
        records[name] = {
            "label": LABELS.get(name, f"{name} (paper's width, untrained)"),
            "trained": name in models,
            "arch": model.spec.arch,
            "args": model.spec.args,
            "parameters": count_parameters(model.network),
            "multiply_adds_per_output_pixel": multiply_adds_per_output_pixel(model.network),
            "receptive_field_lr_pixels": model.info.receptive_field,
        }
        records[name]["flops_per_output_pixel"] = 2 * records[name]["multiply_adds_per_output_pixel"]
        print(f"{name}: {records[name]['parameters']:,} parameters", flush=True)

    torch.set_num_threads(threads)
    prepared = {name: prepare_model(model, "fp32", "cpu") for name, model in {**models, **references}.items()}
    for name, seconds in interleaved_seconds(prepared, repeat, TIMED_SIDE).items():
        records[name]["seconds_256_x4"] = {"best": min(seconds), "median": statistics.median(seconds), "all": seconds}
        print(f"{name}: {min(seconds):.3f} s best of {repeat}", flush=True)

    patterns: dict[str, tuple[float, Any]] = {}
    for name, model in models.items():
        patterns[LABELS[name]] = flat_field(model)
        records[name]["flat_field_pattern_levels"] = patterns[LABELS[name]][0]
        for row in evaluate(model, SETS, data_root=data_root, precision="fp32", device="cpu"):
            records[name][row["dataset"]] = {"psnr": row["metrics"]["psnr"], "ssim": row["metrics"]["ssim"]}
        records[name].update(curves(runs / name))
        second = runs / replicate(name)
        if name in REPLICATED and finished(second):
            rows = evaluate(load_model(second / "last.safetensors"), SETS, data_root=data_root, device="cpu")
            records[name][f"seed{SECOND_SEED}"] = {
                **{row["dataset"]: {"psnr": row["metrics"]["psnr"], "ssim": row["metrics"]["ssim"]} for row in rows},
                "val_psnr_set5": curves(second)["val_psnr_set5"],
            }
        print(f"{name}: {records[name]['Set5']['psnr']:.2f} / {records[name]['Set14']['psnr']:.2f} dB", flush=True)
    bicubic = {row["dataset"]: row["metrics"] for row in evaluate("bicubic", SETS, SCALE, data_root=data_root)}

    series = []
    for name in VARIANTS:
        loss = Series("train", "loss", LABELS[name])
        loss.steps, loss.values = [s for s, _ in records[name]["loss"]], [v for _, v in records[name]["loss"]]
        psnr = Series("val", "psnr", LABELS[name])
        psnr.steps = [s for s, _ in records[name]["val_psnr_set5"]]
        psnr.values = [v for _, v in records[name]["val_psnr_set5"]]
        series += [loss, psnr]
    figure, _ = plot_curves(series, log_loss=True, columns=1, title="x4, 291 images, one budget: L1 loss and Set5 PSNR")
    write_figure(figure, out / "curves.png", overwrite=True)

    hr = read_image(data_root / CROP_IMAGE)
    comparison = compare_models(hr, list(models.values()), SCALE, crop=parse_crop(CROP), columns=5, device="cpu")
    write_figure(comparison.figure, out / "checkerboard.png", overwrite=True)
    write_figure(pattern_figure(patterns, PATTERN_GAIN), out / "flat-field.png", overwrite=True)

    document = {
        "machine": machine(),
        "threads": threads,
        "repeat": repeat,
        "timed_input": [TIMED_SIDE, TIMED_SIDE],
        "scale": SCALE,
        "sets": SETS,
        "bicubic": {name: {"psnr": m["psnr"], "ssim": m["ssim"]} for name, m in bicubic.items()},
        "crop": {"image": CROP_IMAGE, "box": list(comparison.crop), "zoom": comparison.zoom},
        "variants": records,
    }
    (out / "ablation.json").write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote ablation.json, curves.png, checkerboard.png and flat-field.png in {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["train", "report"])
    parser.add_argument("--runs", type=Path, default=Path("/tmp/ablation"), help="where the runs are written")
    parser.add_argument("--only", nargs="+", choices=VARIANTS, help="train only these variants")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "ablations")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds (interleaved)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data" / "benchmarks")
    args = parser.parse_args()
    if args.what == "train":
        train(args.runs, args.only or VARIANTS)
    else:
        report(args.runs, args.out, args.repeat, args.threads, args.data_root)


if __name__ == "__main__":
    main()
