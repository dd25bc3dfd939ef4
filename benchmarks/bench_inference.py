"""sisr's inference against plain PyTorch, onnxruntime and OpenCV dnn_superres, in one run, on one input.

    python benchmarks/bench_inference.py [--size 256] [--repeat 3] [--threads N] [--bf16] [--compile]
                                         [--tiles 32,48,64,96,128] [--shared ../shared] [--json FILE]

Speed: a size x size RGB uint8 image upscaled x4 by every implementation,
round after round (one warm-up call each first), the best of --repeat rounds
kept; the machine's fp32 matrix-multiply peak (torch.mm 2048^2) is measured
after every round, so both see the same load. Each network's FLOPs (2 x
multiply-adds, `sisr.speed.count_flops`) over its seconds, as a fraction of
that peak, shows how much of the machine it uses.

Rows, for edsr-baseline-x4 and wdsr-b-32-x4 (--networks takes other presets
and the bundled default-x4 too):
* sisr: `upscale` with a prepared model, the automatic fast path (fused blocks,
  sisr's compiled CPU kernels where they are available: `sisr.inference.native`);
* sisr without its native kernels: the same with PyTorch's layers in their place;
* sisr, unfused: prepared (weight norm folded, channels-last) without the fused blocks;
* PyTorch eager: the network as built (NCHW, weight norm recomputed), on a float tensor;
* onnxruntime: sisr's ONNX export (if onnxruntime is installed);
* optionally sisr bf16, sisr + torch.compile, and sisr with exact tiles of each --tiles size.
The paths `prepare_model` chose for this machine by measurement (native kernels
or not, WDSR-B's bf16 blocks in oneDNN or as products) are listed under the header.
Plus OpenCV dnn_superres with the models in shared/weights/opencv (needs
`cv2.dnn_superres`, i.e. opencv-contrib-python-headless; skipped without it).

Quality: Set5 x4 PSNR (Y of BT.601, 4-pixel border cropped, MATLAB-made LR
inputs) where weights exist: WDSR-B from the Keras reference weights in
shared/weights/keras, the OpenCV models, and MATLAB bicubic. EDSR-baseline has
no weights here, so it is timed with random weights (speed does not depend
on them) and has no PSNR.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sisr import SRModel, create_model, load_model
from sisr.inference import native, prepare_model, upscale
from sisr.inference.precision import cpu_has_native_bf16
from sisr.speed import MatmulPeak, count_flops, cpu_name

REPO = Path(__file__).resolve().parents[1]
SCALE = 4
NETWORKS = ["edsr-baseline-x4", "wdsr-b-32-x4"]
OPENCV_MODELS = [("espcn", "ESPCN_x4.pb"), ("fsrcnn", "FSRCNN_x4.pb"), ("lapsrn", "LapSRN_x4.pb")]


def load_network(name: str, shared: Path | None) -> tuple[SRModel, str]:
    """A model and where its weights come from (random weights time the same as trained ones)."""
    keras = shared / "weights" / "keras" / "wdsr-b-32-x4.h5" if shared else None
    if name == "wdsr-b-32-x4" and keras is not None and keras.is_file():
        return load_model(keras).eval(), "Keras reference weights"
    if name.startswith("default-"):
        return load_model(name).eval(), "bundled weights"
    return create_model(name).eval(), "random weights"


def find_shared(given: str | None) -> Path | None:
    for candidate in (given, os.environ.get("SISR_SHARED"), str(REPO.parent / "shared")):
        if candidate and (Path(candidate) / "data" / "benchmarks").is_dir():
            return Path(candidate)
    return None


@dataclass
class Row:
    network: str
    implementation: str
    run: Callable[[np.ndarray], np.ndarray]  # uint8 HxWx3 RGB in, uint8 out
    flops: int | None = None
    note: str = ""
    trained: bool = False  # real weights: its Set5 PSNR means something
    times: list[float] = field(default_factory=list)
    psnr: float | None = None
    setup_seconds: float | None = None

    @property
    def best(self) -> float | None:
        return min(self.times) if self.times else None


def quantize(tensor: torch.Tensor) -> np.ndarray:
    """A float NCHW [0, 1] output as uint8 HxWx3, rounded half up like sisr's."""
    levels = torch.floor(tensor.float().clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    return levels[0].permute(1, 2, 0).cpu().numpy()


def as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255


def sisr_row(network: str, label: str, model: SRModel, flops: int, **options: Any) -> Row:
    precision = options.pop("precision", "fp32")
    fuse = options.pop("fuse", True)
    native_kernels = options.pop("native_kernels", None)
    prepared = prepare_model(model, precision, "cpu", fuse=fuse, native_kernels=native_kernels)
    row = Row(
        network, label, lambda image: upscale(prepared, image, precision=precision, device="cpu", **options), flops
    )
    if prepared.tuning is not None and native_kernels is None and fuse:
        row.note = f"path {prepared.tuning.summary()}"  # chosen by measurement (sisr.inference.autotune)
    return row


def without_native_row(network: str, model: SRModel, flops: int) -> Row:
    """The fast path with PyTorch's layers where sisr's compiled kernels would run: what they gain."""
    return sisr_row(network, "sisr without its native kernels", model, flops, native_kernels=False)


def eager_row(network: str, model: SRModel, flops: int) -> Row:
    plain = model.network.eval()

    def run(image: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return quantize(plain(as_tensor(image)))

    return Row(network, "PyTorch eager (NCHW, no folding)", run, flops)


def compile_row(network: str, model: SRModel, flops: int, probe: np.ndarray) -> Row:
    # compile=True leaves the fused blocks out: torch.compile sees the network's own modules.
    compiled = prepare_model(model, "fp32", "cpu", compile=True)

    def run(image: np.ndarray) -> np.ndarray:
        return quantize(compiled(as_tensor(image)))  # channels-last, inference mode: the prepared model's own

    started = time.perf_counter()
    run(probe)  # compiles for this input shape
    row = Row(network, "sisr unfused + torch.compile", run, flops, note="compiled per input shape")
    row.setup_seconds = time.perf_counter() - started
    return row


def onnx_row(network: str, model: SRModel, flops: int, folder: Path, threads: int) -> Row | None:
    try:
        import onnxruntime as ort

        from sisr.weights.export import export_onnx
    except ImportError:
        return None
    started = time.perf_counter()
    path = export_onnx(model, folder / f"{network}.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # Its threads would otherwise spin-wait after each run, taking the cores from the rows timed after it.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(image: np.ndarray) -> np.ndarray:
        return quantize(torch.from_numpy(session.run(None, {"lr": as_tensor(image).numpy()})[0]))

    row = Row(network, f"onnxruntime {ort.__version__} (sisr's export)", run, flops)
    row.setup_seconds = time.perf_counter() - started
    return row


def opencv_rows(shared: Path | None) -> tuple[list[Row], str]:
    try:
        import cv2

        create = cv2.dnn_superres.DnnSuperResImpl_create
    except (ImportError, AttributeError):
        return [], "OpenCV dnn_superres not available (pip install opencv-contrib-python-headless)"
    if shared is None:
        return [], "OpenCV rows skipped: shared/weights/opencv not found"
    rows = []
    for name, filename in OPENCV_MODELS:
        path = shared / "weights" / "opencv" / filename
        if not path.is_file():
            continue
        sr = create()
        sr.readModel(str(path))
        sr.setModel(name, SCALE)

        def run(image: np.ndarray, sr=sr) -> np.ndarray:
            return np.ascontiguousarray(sr.upsample(np.ascontiguousarray(image[:, :, ::-1]))[:, :, ::-1])

        rows.append(Row(f"{filename[:-3]}", f"OpenCV {cv2.__version__} dnn_superres", run, trained=True))
    return rows, ""


def set5_psnr(run: Callable[[np.ndarray], np.ndarray], benchmarks: Path) -> float:
    """Mean Set5 x4 PSNR on Y, border 4, from the MATLAB-made LR images."""
    from sisr.data.testsets import load_benchmark
    from sisr.imaging import psnr

    values = [
        psnr(run(lr), hr, crop_border=SCALE, y_channel=True)
        for _, hr, lr in load_benchmark(benchmarks / "Set5", SCALE, progress=False).iter_pairs()
    ]
    return float(np.mean(values))


def build_rows(
    args: argparse.Namespace, shared: Path | None, folder: Path, image: np.ndarray
) -> tuple[list[Row], list[str]]:
    notes = []
    rows: list[Row] = []
    for network in args.networks:
        model, weights = load_network(network, shared)
        flops = count_flops(model.network, args.size, args.size)
        notes.append(f"{network}: {weights}, {flops / 1e9:.1f} GFLOP per {args.size}x{args.size} image")
        network_rows = [sisr_row(network, "sisr (automatic fast path)", model, flops)]
        notes.append(f"{network} fp32: {network_rows[0].note}")
        if native.library() is not None:
            network_rows.append(without_native_row(network, model, flops))
        network_rows += [
            sisr_row(network, "sisr unfused (folded, channels-last)", model, flops, fuse=False),
            eager_row(network, model, flops),
        ]
        exported = onnx_row(network, model, flops, folder, args.threads)
        if exported is not None:
            network_rows.append(exported)
        if args.bf16:
            bf16_row = sisr_row(network, "sisr bf16 (fastest bf16 form)", model, flops, precision="bf16")
            notes.append(f"{network} bf16: {bf16_row.note}")
            network_rows.append(bf16_row)
        if args.compile:
            network_rows.append(compile_row(network, model, flops, image))
        for tile in args.tiles:
            network_rows.append(sisr_row(network, f"sisr, exact tiles of {tile}", model, flops, tile=tile))
        for row in network_rows:
            row.trained = weights != "random weights"
        rows += network_rows
    more, note = opencv_rows(shared)
    rows += more
    if note:
        notes.append(note)
    bicubic = sisr_row("bicubic", "sisr MATLAB bicubic", load_model("bicubic", scale=SCALE), 0)
    bicubic.trained = True
    rows.append(bicubic)
    return rows, notes


def measure(rows: list[Row], image: np.ndarray, repeat: int, peaks: list[MatmulPeak]) -> None:
    for row in rows:
        row.run(image)  # warm-up
    for _ in range(repeat):
        for row in rows:
            if row.implementation.startswith("sisr bf16") and row.times and not cpu_has_native_bf16():
                continue  # emulated bf16 is slow: one run is enough to show it
            started = time.perf_counter()
            row.run(image)
            row.times.append(time.perf_counter() - started)
            for peak in peaks:
                peak.measure()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="LR height and width (default 256)")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds; the best counts (default 3)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--networks", default=",".join(NETWORKS), help="comma-separated presets")
    parser.add_argument("--bf16", action="store_true", help="also time sisr in bf16 (and its Set5 PSNR)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (inductor, C++ via gcc)")
    parser.add_argument("--tiles", default="", help="comma-separated tile sizes to time sisr with exact tiles")
    parser.add_argument("--no-psnr", action="store_true", help="skip the Set5 PSNR column")
    parser.add_argument("--shared", help="the shared folder (default: $SISR_SHARED or ../shared)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON ('-' for stdout)")
    args = parser.parse_args()
    args.networks = [n for n in args.networks.split(",") if n]
    args.tiles = [int(t) for t in args.tiles.split(",") if t]
    torch.set_num_threads(args.threads)
    shared = find_shared(args.shared)
    image = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)

    with tempfile.TemporaryDirectory() as folder:
        rows, notes = build_rows(args, shared, Path(folder), image)
        peak = MatmulPeak(torch.device("cpu"), torch.float32)
        # bf16 rows against the bf16 peak only where the CPU has bf16 instructions (emulated, one product takes seconds)
        bf16_peak = MatmulPeak(torch.device("cpu"), torch.bfloat16) if args.bf16 and cpu_has_native_bf16() else None
        load_before = os.getloadavg()
        measure(rows, image, args.repeat, [peak] + ([bf16_peak] if bf16_peak else []))
        load_after = os.getloadavg()
        if not args.no_psnr and shared is not None:
            benchmarks = shared / "data" / "benchmarks"
            for row in rows:
                if not row.trained or "tiles" in row.implementation or "compile" in row.implementation:
                    continue  # tiled and compiled: the untiled, uncompiled numbers, up to rounding
                row.psnr = set5_psnr(row.run, benchmarks)

    report(args, rows, notes, peak, bf16_peak, load_before, load_after)


def native_status() -> str:
    reason = native.unavailable_reason()
    return "on" if reason is None else f"off ({reason})"


def report(
    args, rows: list[Row], notes: list[str], peak: MatmulPeak, bf16_peak: MatmulPeak | None, load_before, load_after
) -> None:
    when = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    header = (
        f"{cpu_name()}, {os.cpu_count()} logical CPUs, {args.threads} threads; torch {torch.__version__}; "
        f"python {platform.python_version()}; {when}\n"
        f"input {args.size}x{args.size} RGB uint8, x{SCALE}; best of {args.repeat} interleaved rounds; "
        f"fp32 matmul peak {peak.best / 1e9:.1f} GFLOP/s (torch.mm 2048^2, best in this run); "
        + (f"bf16 peak {bf16_peak.best / 1e9:.1f} GFLOP/s (bf16 rows' 'of peak'); " if bf16_peak else "")
        + f"native bf16: {cpu_has_native_bf16()}; "
        f"sisr's native kernels: {native_status()}; "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print(header)
    for note in notes:
        print(f"  {note}")
    print(
        f"\n{'network':<18} {'implementation':<40} {'seconds':>8} {'median':>8} {'MP/s':>6} "
        f"{'GFLOP/s':>8} {'of peak':>8} {'Set5 PSNR':>10}"
    )
    records = []
    output_mp = (args.size * SCALE) ** 2 / 1e6
    for row in rows:
        best = row.best
        rate = row.flops / best / 1e9 if row.flops and best else None
        own_peak = bf16_peak if bf16_peak is not None and "bf16" in row.implementation else peak
        fraction = rate * 1e9 / own_peak.best if rate else None
        median = statistics.median(row.times) if row.times else None
        print(
            f"{row.network:<18} {row.implementation:<40} {best:>8.3f} {median:>8.3f} {output_mp / best:>6.2f} "
            f"{f'{rate:.1f}' if rate else '-':>8} {f'{fraction:.0%}' if fraction else '-':>8} "
            f"{f'{row.psnr:.2f} dB' if row.psnr is not None else '-':>10}"
            + (f"  (setup {row.setup_seconds:.1f} s)" if row.setup_seconds else "")
        )
        records.append(
            {
                "network": row.network,
                "implementation": row.implementation,
                "seconds": best,
                "seconds_median": median,
                "times": row.times,
                "output_megapixels_per_second": output_mp / best,
                "flops": row.flops,
                "gflops_per_second": rate,
                "fraction_of_peak": fraction,
                "set5_psnr_y": row.psnr,
                "setup_seconds": row.setup_seconds,
            }
        )
    if args.json:
        document = {
            "machine": cpu_name(),
            "threads": args.threads,
            "torch": torch.__version__,
            "date": when,
            "size": args.size,
            "scale": SCALE,
            "repeat": args.repeat,
            "matmul_peak_gflops": peak.best / 1e9,
            "bf16_matmul_peak_gflops": bf16_peak.best / 1e9 if bf16_peak else None,
            "native_bf16": cpu_has_native_bf16(),
            "native_kernels": native_status(),
            "load_average": [load_before[0], load_after[0]],
            "notes": notes,
            "rows": records,
        }
        text = json.dumps(document, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
