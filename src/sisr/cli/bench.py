"""`sisr bench`: seconds per image, megapixels/s and the fraction of this machine's matmul peak."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="time a network on this machine against its matrix-multiply peak",
        description="Time upscaling a random SIZE x SIZE image (best of --repeat after a warm-up) and, in the "
        "same run, the machine's matrix-multiply peak (torch.mm); report seconds per image, output "
        "megapixels/s, the model's FLOPs and the fraction of the peak they reach, and which CPU path was "
        "chosen for this machine by measurement (cached per machine and torch version).",
    )
    parser.add_argument(
        "--model",
        metavar="M",
        help="a preset name (random weights: speed does not depend on them), a weight file, a bundled or "
        "pretrained name, or `bicubic` (default: the default network, default-x4, or the one for --scale)",
    )
    parser.add_argument("--size", type=int, default=256, metavar="PIXELS", help="LR height and width (default 256)")
    parser.add_argument("--scale", type=int, help="the enlargement; required for bicubic, checked against the network")
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16", "fp16", "auto"],
        default="fp32",
        help="fp32 (default), bf16, fp16 (CUDA only), auto (what upscale chooses)",
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu", help="cpu (default), cuda, auto")
    parser.add_argument("--tile", type=int, metavar="PIXELS", help="tile size in LR pixels (default: whole image)")
    parser.add_argument("--repeat", type=int, default=3, metavar="N", help="timed runs; the best counts (default 3)")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: torch's, one per core)")
    parser.add_argument(
        "--no-fuse",
        action="store_true",
        help="leave out sisr's CPU fast paths (WDSR-B's chunked 1x1 pair, the streamed upsampler)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="run the network through torch.compile (the first, untimed call compiles it)",
    )
    parser.add_argument(
        "--retune",
        action="store_true",
        help="measure again which CPU path (native kernels, bf16 or fp32 for --precision auto, ...) is fastest "
        "here, instead of the decision cached for this machine",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import SisrError
    from ..speed import format_result, result_dict, run_bench
    from ..weights import default_model_name

    if args.model is None:
        args.model = default_model_name(args.scale)
    if args.model == "bicubic" and args.scale is None:
        raise SisrError("--model bicubic needs --scale (2, 3, 4, ...)")
    if args.tile is not None and args.tile < 1:
        raise SisrError(f"--tile {args.tile}: must be at least 1 pixel")
    result = run_bench(
        args.model,
        size=args.size,
        scale=args.scale,
        precision=args.precision,
        device=args.device,
        tile=args.tile,
        repeat=args.repeat,
        threads=args.threads,
        fuse=not args.no_fuse,
        compile=args.compile,
        retune=args.retune,
    )
    print(json.dumps(result_dict(result), indent=2) if args.json else format_result(result))
    return 0
