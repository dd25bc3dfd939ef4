"""`sisr evaluate`: a paper-style table of PSNR/SSIM on benchmark sets."""

from __future__ import annotations

import argparse
import csv
import io
import json
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score models on benchmark sets (PSNR/SSIM, as the papers do)",
        description="Score models on benchmark sets. Defaults follow the papers: MATLAB-made LR images, "
        "Y channel of ITU-R BT.601 YCbCr, a border of `scale` pixels cropped.",
    )
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="M",
        help="a weight file, a bundled default (default-x2/-x3/-x4), a pretrained name, "
        "or `bicubic`; repeat for several",
    )
    parser.add_argument(
        "--dataset",
        action="append",
        required=True,
        metavar="D",
        help="Set5, Set14, BSD100, Urban100, Manga109, DIV2K-valid, or a folder; repeat for several",
    )
    parser.add_argument(
        "--scale",
        type=int,
        choices=[2, 3, 4, 8],
        help="the upscaling factor (default: the networks' own; needed for bicubic alone)",
    )
    parser.add_argument("--data-root", metavar="DIR", help="folder holding the sets (else the download cache)")
    parser.add_argument(
        "--degradation",
        action="append",
        metavar="D",
        help="make the LR images with a fixed degradation instead: bicubic (the papers'), jpeg<Q> (that LR saved "
        "as JPEG at quality Q: jpeg90, jpeg75, jpeg50), noise<S> (Gaussian noise of sigma S/255: noise15), "
        "realesrgan-<N> (Real-ESRGAN's degradations of the HR image, draws fixed by N); repeat for several",
    )
    parser.add_argument(
        "--degradation-seed",
        type=int,
        default=0,
        metavar="S",
        help="fixes the random draws of noise and realesrgan degradations with the image names (default 0)",
    )
    parser.add_argument(
        "--metric", action="append", choices=["psnr", "ssim"], help="repeat for several (default: psnr and ssim)"
    )
    parser.add_argument("--rgb", action="store_true", help="measure on RGB instead of the Y channel")
    parser.add_argument("--crop-border", type=int, metavar="N", help="pixels cropped on each side (default: scale)")
    parser.add_argument("--self-ensemble", action="store_true", help="average the 8 flips/rotations (x8 time)")
    parser.add_argument("--tile", type=int, metavar="N", help="tile size in LR pixels (bounds memory)")
    parser.add_argument("--tile-overlap", type=int, metavar="N", help="context around each tile in LR pixels")
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16", "fp16", "auto"],
        default="fp32",
        help="fp32 (default: the papers' numbers), bf16, fp16 (CUDA only), auto (as upscale)",
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--save-images", metavar="DIR", help="also write the SR images under DIR/MODEL/SET/xS/")
    parser.add_argument("--format", choices=["table", "csv", "json"], default="table")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the results here instead of stdout")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.set_defaults(func=run)


def format_table(records: list[dict[str, Any]], metrics: list[str]) -> str:
    """Models as rows and sets (with their degradation, if any) as columns, like a paper's table; PSNR in dB,
    SSIM to 4 places."""
    models = list(dict.fromkeys(r["model"] for r in records))
    sets = list(dict.fromkeys(_column(r) for r in records))
    cell = {(r["model"], _column(r)): r for r in records}
    scale = records[0]["scale"] if records else ""
    header = " / ".join("PSNR" if m == "psnr" else "SSIM" for m in metrics)
    rows = [[f"x{scale} ({header})", *sets]]
    for model in models:
        row = [model]
        for dataset in sets:
            values = cell[(model, dataset)]["metrics"]
            row.append(" / ".join(f"{values[m]:.2f}" if m == "psnr" else f"{values[m]:.4f}" for m in metrics))
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(text.ljust(w) if i == 0 else text.rjust(w) for i, (text, w) in enumerate(zip(row, widths)))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def _column(record: dict[str, Any]) -> str:
    degradation = record.get("degradation")
    return record["dataset"] if degradation is None else f"{record['dataset']} {degradation}"


def format_csv(records: list[dict[str, Any]], metrics: list[str]) -> str:
    """One row per image, plus a `mean` row per model and set; a `degradation` column when one was asked for."""
    out = io.StringIO()
    writer = csv.writer(out)
    degraded = any(r.get("degradation") is not None for r in records)
    writer.writerow(["model", "dataset", *(["degradation"] if degraded else []), "scale", "image", *metrics])
    for r in records:
        lead = [r["model"], r["dataset"], *([r.get("degradation") or ""] if degraded else []), r["scale"]]
        for image in r["images"]:
            writer.writerow([*lead, image["name"], *(f"{image[m]:.6f}" for m in metrics)])
        writer.writerow([*lead, "mean", *(f"{r['metrics'][m]:.6f}" for m in metrics)])
    return out.getvalue()


def run(args: argparse.Namespace) -> int:
    import sys

    from ..data.degradations import fixed_degradation
    from ..errors import SisrError
    from ..evaluation import evaluate
    from ..files import atomic_write, check_writable

    if args.crop_border is not None and args.crop_border < 0:
        raise SisrError(f"--crop-border {args.crop_border}: must not be negative")
    for name in args.degradation or []:
        fixed_degradation(name, "--degradation")
    if args.degradation_seed < 0:
        raise SisrError(f"--degradation-seed {args.degradation_seed}: must not be negative")
    metrics = list(dict.fromkeys(args.metric or ["psnr", "ssim"]))
    if args.output:
        check_writable(args.output, args.overwrite)  # fail before the work, not after
    records = evaluate(
        args.model,
        args.dataset,
        args.scale,
        data_root=args.data_root,
        metrics=metrics,
        y_channel=not args.rgb,
        crop_border=args.crop_border,
        self_ensemble=args.self_ensemble,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        precision=args.precision,
        device=args.device,
        save_images=args.save_images,
        overwrite=args.overwrite,
        progress=sys.stderr.isatty(),
        degradations=args.degradation,
        degradation_seed=args.degradation_seed,
    )
    if args.format == "json":
        text = json.dumps(records, indent=2) + "\n"
    elif args.format == "csv":
        text = format_csv(records, metrics)
    else:
        text = format_table(records, metrics)
    if args.output:
        with atomic_write(args.output, "w", overwrite=args.overwrite) as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    return 0
