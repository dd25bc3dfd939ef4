"""sisr's inference on a CUDA GPU: fp32 / bf16 / fp16, channels-last, torch.compile, against the GPU's own peaks.

    python benchmarks/bench_gpu.py [--sizes 256,1024] [--repeat 5] [--compile] [--shared ../shared]
                                   [--json FILE] [--device cuda]

Speed, per network and LR size (x4, a random RGB uint8 image):
* `seconds`: uint8 image in, uint8 image out, as `sisr.upscale` gives it to a
  user (upload, network, rounding, download), best of --repeat after a warm-up;
* `network_seconds`: the network alone on a float tensor already on the GPU,
  synchronised, best of --repeat; its FLOPs (`sisr.speed.count_flops`) over
  these seconds, as a fraction of the matrix-multiply peak of the same dtype
  measured in the same run (torch.mm, 8192^2; fp32 rows against the TF32 peak
  when cuDNN may use TF32 for convolutions, PyTorch's default, which the
  row's `tf32` field records).
Rows: PyTorch eager (NCHW as built, weight norm recomputed), sisr fp32 / bf16 /
fp16 (`prepare_model`: weight norm folded, channels-last, autocast), with
--pageable the same with results copied to pageable host memory
(`prepare_model(..., pinned_memory=False)`), and with --compile the same three prepared with
`compile=True` as `sisr upscale --compile` runs them (compiled once per
shape; the compile time is the row's `setup_seconds`).

Quality and exactness on the GPU:
* Set5 x4 PSNR (Y, border 4, MATLAB-made LR) of the trained networks (the
  bundled default-x4, and WDSR-B-32 from the Keras reference weights where
  shared/ has them) in fp32 / bf16 / fp16 on the GPU and fp32 on the CPU;
* tiled == untiled: `upscale` with tiles of 48 against the whole image, in
  each precision (levels of difference, share of differing pixels), and the
  whole image through pinned against pageable host memory;
* peak GPU memory of a 1024^2 -> 4096^2 upscale, whole and in tiles of 256;
* a 4096^2 RGB uint8 result copied to the host four ways (pageable / pinned);
* an fp16 overflow (a network scaled past fp16's range) comes back as fp32's result.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench_inference import find_shared, load_network, quantize, set5_psnr  # same folder: the CPU benchmark's helpers
from sisr import SRModel, create_model
from sisr.inference import prepare_model, upscale
from sisr.speed import CUDA_PEAK_MATRIX_SIDE, MatmulPeak, count_flops

SCALE = 4
NETWORKS = ["edsr-baseline-x4", "wdsr-b-32-x4", "default-x4"]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class Peaks:
    """Best-so-far torch.mm rates per dtype on this GPU, re-measured between rows (same clocks, same load)."""

    def __init__(self, device: torch.device, side: int) -> None:
        self.meters = {
            name: MatmulPeak(device, dtype, side, tf32=name == "tf32")
            for name, dtype in [
                ("fp32", torch.float32),
                ("tf32", torch.float32),
                ("bf16", torch.bfloat16),
                ("fp16", torch.float16),
            ]
        }

    def measure(self) -> None:
        for meter in self.meters.values():
            meter.measure()

    def gflops(self) -> dict[str, float]:
        return {name: round(meter.best / 1e9, 1) for name, meter in self.meters.items()}


@dataclass
class Row:
    network: str
    weights: str
    implementation: str
    precision: str
    size: int
    flops: int
    tf32: bool
    seconds: float | None = None
    network_seconds: float | None = None
    setup_seconds: float | None = None
    peak_memory_mb: float | None = None
    output_megapixels_per_second: float | None = None
    fraction_of_peak: float | None = None
    peak_dtype: str = ""
    error: str = ""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best(function: Callable[[], Any], repeat: int, device: torch.device) -> float:
    times = []
    for _ in range(repeat):
        _sync(device)
        started = time.perf_counter()
        function()
        _sync(device)
        times.append(time.perf_counter() - started)
    return min(times)


def runners(model: SRModel, implementation: str, precision: str, device: torch.device):
    """(network on a device tensor, uint8 image -> uint8 image) for one row."""
    if implementation == "eager":
        plain = model.network.to(device)
        autocast = torch.autocast(device.type, dtype=DTYPES[precision], enabled=precision != "fp32")

        def network(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode(), autocast:
                return plain(x)

        def image_run(image: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(image).to(device).permute(2, 0, 1)[None].float().div_(255)
            return quantize(network(x))

        return network, image_run
    # "compile": prepare_model(compile=True), the path `sisr upscale --compile` takes;
    # "sisr-pageable": results copied to ordinary host memory (pinned_memory=False).
    prepared = prepare_model(
        model,
        precision,
        device,
        compile=implementation == "compile",
        pinned_memory=implementation != "sisr-pageable",
    )

    def network(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), prepared.autocast():
            return prepared.network(prepared.to_input(x))

    def image_run(image: np.ndarray) -> np.ndarray:
        return upscale(prepared, image, precision=precision, device=device)

    return network, image_run


def transfer_check(device: torch.device, side: int = 4096, repeat: int = 5) -> list[dict[str, Any]]:
    """A side^2 RGB uint8 result from the GPU to a numpy array, four ways (best of `repeat`, ms)."""
    source = torch.randint(0, 256, (side, side, 3), dtype=torch.uint8, device=device)
    reused = np.empty((side, side, 3), np.uint8)

    def pageable_fresh() -> None:
        torch.from_numpy(np.empty((side, side, 3), np.uint8)).copy_(source)

    def pageable_reused() -> None:
        torch.from_numpy(reused).copy_(source)

    def pinned_only() -> None:
        torch.empty(source.shape, dtype=torch.uint8, pin_memory=True).copy_(source)

    def pinned_then_fresh() -> None:
        staging = torch.empty(source.shape, dtype=torch.uint8, pin_memory=True)
        staging.copy_(source)
        np.copyto(np.empty((side, side, 3), np.uint8), staging.numpy())

    results = []
    for name, function in [
        ("pageable, new array", pageable_fresh),
        ("pageable, reused array", pageable_reused),
        ("pinned buffer only", pinned_only),
        ("pinned, then into a new array", pinned_then_fresh),
    ]:
        function()
        results.append(
            {
                "way": name,
                "megabytes": round(source.numel() / 1e6, 1),
                "ms": round(_best(function, repeat, device) * 1000, 2),
            }
        )
    return results


def measure_row(row: Row, model: SRModel, device: torch.device, repeat: int, peaks: Peaks) -> None:
    image = np.random.default_rng(0).integers(0, 256, (row.size, row.size, 3), dtype=np.uint8)
    x = torch.from_numpy(image).to(device).permute(2, 0, 1)[None].float().div_(255)
    started = time.perf_counter()
    network, image_run = runners(model, row.implementation, row.precision, device)
    image_run(image)  # warm-up: kernel choice, allocator, compilation
    _sync(device)
    row.setup_seconds = round(time.perf_counter() - started, 3)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    row.seconds = _best(lambda: image_run(image), repeat, device)
    if device.type == "cuda":
        row.peak_memory_mb = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    peaks.measure()
    row.network_seconds = _best(lambda: network(x), repeat, device)
    peaks.measure()
    row.output_megapixels_per_second = round((row.size * SCALE) ** 2 / row.seconds / 1e6, 2)
    row.peak_dtype = "tf32" if row.precision == "fp32" and row.tf32 else row.precision
    row.fraction_of_peak = round(row.flops / row.network_seconds / peaks.meters[row.peak_dtype].best, 4)


def tiling_check(model: SRModel, precision: str, device: torch.device) -> dict[str, Any]:
    """Tiles of 48 against the whole image, on a photo-like image (smooth + noise), in one precision."""
    rng = np.random.default_rng(1)
    ramp = np.linspace(0, 255, 200)[None, :, None] * np.ones((150, 1, 3))
    image = np.clip(ramp + rng.normal(0, 20, ramp.shape), 0, 255).astype(np.uint8)
    prepared = prepare_model(model, precision, device)
    whole = upscale(prepared, image, precision=precision, device=device).astype(int)
    tiled = upscale(prepared, image, tile=48, precision=precision, device=device).astype(int)
    pageable_model = prepare_model(model, precision, device, pinned_memory=False)
    pageable = upscale(pageable_model, image, precision=precision, device=device).astype(int)
    # 16-bit images take the other copy path; against the CPU in fp32, in 8-bit levels
    deep = (image.astype(np.uint16) * 257)[:64, :64]
    on_device = upscale(prepared, deep, precision=precision, device=device).astype(float)
    on_cpu = upscale(prepare_model(model, "fp32", "cpu"), deep, precision="fp32", device="cpu").astype(float)
    difference = np.abs(whole - tiled)
    return {
        "precision": precision,
        "max_levels": int(difference.max()),
        "share_differing": float((difference > 0).mean()),
        "input": list(image.shape),
        "pinned_vs_pageable_max_levels": int(np.abs(whole - pageable).max()),
        "uint16_vs_cpu_fp32_max_levels": round(float(np.abs(on_device - on_cpu).max() / 257), 3),
    }


def overflow_check(device: torch.device) -> dict[str, Any]:
    """fp16 tops out at 65504: a network whose activations pass that must come back as its fp32 result."""
    import logging

    torch.manual_seed(0)
    model = create_model("edsr-baseline-x2", num_blocks=2).eval()
    with torch.no_grad():
        model.network.head[0].weight.mul_(3e4)  # activations far above fp16's range; fp32 holds them
        model.network.tail[-1].weight.div_(3e4)
    image = np.random.default_rng(3).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("sisr").addHandler(handler)
    try:
        half = upscale(model, image, precision="fp16", device=device).astype(int)
    finally:
        logging.getLogger("sisr").removeHandler(handler)
    full = upscale(model, image, precision="fp32", device=device).astype(int)
    return {
        "warned": any("fp16 overflowed" in text for text in records),
        "fp16_vs_fp32_max_levels": int(np.abs(half - full).max()),
    }


def memory_check(model: SRModel, device: torch.device, size: int = 1024) -> list[dict[str, Any]]:
    image = np.random.default_rng(2).integers(0, 256, (size, size, 3), dtype=np.uint8)
    prepared = prepare_model(model, "fp16", device)
    results = []
    for tile in (None, 256):
        torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        upscale(prepared, image, tile=tile, precision="fp16", device=device)
        torch.cuda.synchronize(device)
        results.append(
            {
                "size": size,
                "tile": tile,
                "precision": "fp16",
                "seconds": round(time.perf_counter() - started, 3),
                "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
            }
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,1024", help="comma-separated LR sides (default 256,1024)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--precisions", default="fp32,bf16,fp16")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile rows (largest size only)")
    parser.add_argument("--compile-networks", default="", help="networks to compile (default: all)")
    parser.add_argument("--compile-precisions", default="", help="precisions to compile (default: --precisions)")
    parser.add_argument("--shared", help="the shared folder (default: $SISR_SHARED or ../shared)")
    parser.add_argument(
        "--pageable",
        action="store_true",
        help="also time upscale with results copied to pageable host memory (the old path)",
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--json", metavar="FILE", help="write everything as JSON (rewritten after every row)")
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type != "cuda":
        print("note: not a CUDA device; the peaks and memory figures below mean little", file=sys.stderr)
    shared = find_shared(args.shared)
    sizes = [int(s) for s in args.sizes.split(",")]
    precisions = args.precisions.split(",")
    tf32 = bool(torch.backends.cudnn.allow_tf32)
    report: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cudnn_allow_tf32": tf32,
        "rows": [],
        "psnr": [],
        "tiling": [],
        "memory": [],
        "transfer": [],
    }

    def save() -> None:
        if args.json:
            temporary = Path(args.json + ".tmp")
            temporary.write_text(json.dumps(report, indent=1))
            temporary.replace(args.json)

    peaks = Peaks(device, CUDA_PEAK_MATRIX_SIDE if device.type == "cuda" else 512)
    models = {name: load_network(name, shared) for name in args.networks.split(",")}

    def run_rows(plan: list[tuple[str, str, str, int]]) -> None:
        for name, impl, precision, size in plan:
            model, weights = models[name]
            row = Row(name, weights, impl, precision, size, count_flops(model.network, size, size), tf32)
            try:
                measure_row(row, model, device, args.repeat, peaks)
            except Exception as error:  # one failing row must not lose the others
                row.error = f"{type(error).__name__}: {error}"[:500]
            report["rows"].append(asdict(row))
            report["matmul_peak_gflops"] = peaks.gflops()
            print(
                f"{name:18s} {impl:8s} {precision:5s} {size:5d}  "
                + (
                    f"{row.seconds:.4f} s  net {row.network_seconds:.4f} s  {row.fraction_of_peak:.1%} of "
                    f"{row.peak_dtype} peak  {row.output_megapixels_per_second} MP/s  setup {row.setup_seconds} s"
                    if not row.error
                    else row.error
                ),
                flush=True,
            )
            save()

    run_rows(
        [
            (name, impl, precision, size)
            for size in sizes
            for name in models
            for impl, precision in [("eager", "fp32")]
            + [("sisr", p) for p in precisions]
            + ([("sisr-pageable", p) for p in precisions] if args.pageable else [])
        ]
    )
    print("matmul peaks GFLOP/s:", peaks.gflops(), flush=True)

    benchmarks = shared / "data" / "benchmarks" if shared else None
    for name, (model, weights) in models.items():
        if weights == "random weights" or benchmarks is None:
            continue
        for precision, where in [("fp32", torch.device("cpu"))] + [(p, device) for p in precisions]:
            prepared = prepare_model(model, precision, where)

            def run(lr: np.ndarray, prepared=prepared, precision=precision, where=where) -> np.ndarray:
                return upscale(prepared, lr, precision=precision, device=where)

            value = set5_psnr(run, benchmarks)
            report["psnr"].append(
                {"network": name, "precision": precision, "device": str(where), "set5_psnr": round(value, 4)}
            )
            print(f"Set5 x4 PSNR {name} {precision} on {where}: {value:.4f} dB", flush=True)
            save()
    tiling_model = models.get("default-x4", next(iter(models.values())))[0]
    for precision in precisions:
        report["tiling"].append(tiling_check(tiling_model, precision, device))
        print("tiled vs whole:", report["tiling"][-1], flush=True)
        save()
    if device.type == "cuda":
        report["overflow"] = overflow_check(device)
        print("fp16 overflow:", report["overflow"], flush=True)
        report["transfer"] = transfer_check(device)
        for entry in report["transfer"]:
            print("result to host:", entry, flush=True)
        for network in ("edsr-baseline-x4", "default-x4"):
            if network in models:
                for entry in memory_check(models[network][0], device):
                    report["memory"].append({"network": network, **entry})
                    print("memory:", report["memory"][-1], flush=True)
        save()
    if args.compile:  # last: compiling takes the longest, and everything above is saved already
        compiled = args.compile_networks.split(",") if args.compile_networks else list(models)
        run_rows(
            [
                (name, "compile", precision, sizes[-1])
                for name in compiled
                if name in models
                for precision in (args.compile_precisions or args.precisions).split(",")
            ]
        )
        print("matmul peaks GFLOP/s:", peaks.gflops(), flush=True)


if __name__ == "__main__":
    main()
