"""Where one network's inference time goes, operator by operator (torch.profiler), on the CPU or a GPU.

    python benchmarks/profile_network.py [--model edsr-baseline-x4] [--size 256] [--device cpu]
                                         [--precision fp32] [--no-fuse] [--upscale] [--rows 16]

Prepares the network as `sisr.upscale` does (`--no-fuse`: without sisr's CPU
fast paths, i.e. the network's own modules), runs it twice to warm up, then
profiles one more call and prints the operators sorted by their own time,
grouped by input shape (on CUDA, by GPU time too). `--upscale` profiles a
whole `sisr.upscale` call on a random uint8 image instead of the network on
a float tensor, so the host-side work (conversions, copies to and from the
device, assembling the output) shows as well. The source of the per-operator
figures in docs/benchmarks.md and in sisr/inference/fast.py.
"""

from __future__ import annotations

import argparse
import datetime

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from sisr.inference import prepare_model, upscale
from sisr.speed import bench_model, cpu_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="edsr-baseline-x4", help="a preset (random weights) or a weight file")
    parser.add_argument("--size", type=int, default=256, help="LR height and width (default 256)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--no-fuse", action="store_true", help="without sisr's CPU fast paths")
    parser.add_argument("--upscale", action="store_true", help="profile a whole sisr.upscale call")
    parser.add_argument("--rows", type=int, default=16, help="operators to list (default 16)")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = bench_model(args.model)
    device = torch.device(args.device)
    prepared = prepare_model(model.eval(), args.precision, device, fuse=not args.no_fuse)
    image = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    x = prepared.to_input(torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255))

    def call() -> None:
        if args.upscale:
            upscale(prepared, image, precision=args.precision, device=device)
        else:
            with torch.inference_mode(), prepared.autocast():
                prepared.network(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    call()
    call()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, record_shapes=True) as profiler:
        call()
    machine = cpu_name() if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(
        f"{model.name} {args.size}x{args.size}, {args.precision} on {machine} ({torch.get_num_threads()} threads), "
        f"fused {prepared.fused}, {'whole upscale call' if args.upscale else 'network only'}; "
        f"torch {torch.__version__}; {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}"
    )
    averages = profiler.key_averages(group_by_input_shape=True)
    print(
        averages.table(
            sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=32, max_shapes_column_width=64
        )
    )
    if device.type == "cuda":
        print(
            averages.table(
                sort_by="self_cuda_time_total",
                row_limit=args.rows,
                max_name_column_width=32,
                max_shapes_column_width=64,
            )
        )


if __name__ == "__main__":
    main()
