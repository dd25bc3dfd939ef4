"""onnxruntime vs sisr (PyTorch, float32) on CPU: time to upscale one 128x128 LR image.

    python benchmarks/bench_onnx.py [--repeats 7] [--size 128] [--threads N]

Both run in this process with the same number of threads; each figure is the
median of the repeats after one warm-up run. Weights are random: the time
does not depend on them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sisr import create_model
from sisr.weights.export import export_onnx

PRESETS = ["edsr-baseline-x4", "wdsr-b-32-x4"]


def median_seconds(run, repeats: int) -> float:
    run()  # warm-up: allocations, kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--size", type=int, default=128, help="LR height and width")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()

    import onnxruntime as ort

    torch.set_num_threads(args.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    x = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    print(f"CPU, {args.threads} threads, input 1x3x{args.size}x{args.size}, median of {args.repeats}")
    print(f"{'model':<18} {'sisr (ms)':>10} {'onnxruntime (ms)':>17} {'ratio':>6} {'max |diff|':>11}")
    with tempfile.TemporaryDirectory() as folder:
        for name in PRESETS:
            model = create_model(name).eval()
            path = export_onnx(model, Path(folder) / f"{name}.onnx")
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            feed = {"lr": x.numpy()}
            with torch.inference_mode():
                sisr_time = median_seconds(lambda model=model: model(x), args.repeats)
                difference = float((model(x) - torch.from_numpy(session.run(None, feed)[0])).abs().max())
            ort_time = median_seconds(lambda session=session, feed=feed: session.run(None, feed), args.repeats)
            print(
                f"{name:<18} {sisr_time * 1e3:>10.1f} {ort_time * 1e3:>17.1f} {sisr_time / ort_time:>6.2f} "
                f"{difference:>11.2e}"
            )


if __name__ == "__main__":
    main()
