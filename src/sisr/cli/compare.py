"""`sisr compare`: one figure with the same crop of LR, bicubic, each model and HR, for judging by eye."""

from __future__ import annotations

import argparse
import re


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="a figure comparing models on one image (same crop, PSNR / SSIM)",
        description="Upscale one image with bicubic and each model and lay out the same crop of each, with an "
        "overview of the whole image. IMAGE is the original (HR) by default: the LR input is made from it with "
        "the MATLAB bicubic downgrade and every panel is labelled with PSNR / SSIM of the whole image "
        "(Y channel, border of `scale` pixels excluded). With --lr, IMAGE is the LR input itself.",
    )
    parser.add_argument("image", metavar="IMAGE", help="the HR image (or the LR input with --lr / --hr)")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="M",
        help="a weight file or model name; repeat for several (bicubic is always shown; "
        "default: the bundled default-x4, or the default for --scale)",
    )
    parser.add_argument("--scale", type=int, metavar="S", help="upscaling factor (default: the first model's)")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="the figure (PNG)")
    parser.add_argument("--lr", action="store_true", help="IMAGE is already low-resolution (no PSNR / SSIM)")
    parser.add_argument("--hr", metavar="FILE", help="ground truth for an LR IMAGE (implies --lr): gives PSNR / SSIM")
    parser.add_argument(
        "--crop",
        default="detail",
        metavar="X,Y,W,H",
        help="region in HR pixels; or `detail` (default: the region with the most gradient "
        "energy, where methods differ most) or `centre`",
    )
    parser.add_argument(
        "--crop-size",
        metavar="W[xH]",
        help="size of the automatic crop in HR pixels (default: a quarter of the shorter side, 32 to 160)",
    )
    parser.add_argument(
        "--zoom", type=int, metavar="N", help="enlarge crops N times with nearest neighbour (default: to about 256 px)"
    )
    parser.add_argument("--columns", type=int, metavar="N", help="panels per row (default: up to 5)")
    parser.add_argument("--no-overview", action="store_true", help="leave out the whole-image overview")
    parser.add_argument("--caption", metavar="TEXT", help="replace the caption under the panels")
    parser.add_argument("--tile", type=int, metavar="N", help="tile size in LR pixels (bounds memory)")
    parser.add_argument("--tile-overlap", type=int, metavar="N", help="context around each tile in LR pixels")
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16", "fp16", "auto"],
        default="fp32",
        help="fp32 (default: the papers' numbers), bf16, fp16 (CUDA only), auto (as upscale)",
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.set_defaults(func=run)


def parse_size(text: str) -> tuple[int, int]:
    """`128` or `160x96` (width x height) as typed after --crop-size."""
    from ..errors import SisrError

    match = re.fullmatch(r"\s*(\d+)\s*(?:[x,]\s*(\d+)\s*)?", text)
    if not match or int(match.group(1)) < 1 or (match.group(2) and int(match.group(2)) < 1):
        raise SisrError(f"--crop-size {text!r}: expected W or WxH in HR pixels, e.g. 128 or 160x96")
    width = int(match.group(1))
    return width, int(match.group(2) or width)


def run(args: argparse.Namespace) -> int:
    import logging

    from ..errors import SisrError
    from ..evaluation import model_label
    from ..figures import compare_models, parse_crop, write_figure
    from ..files import check_writable
    from ..image_io import read_image
    from ..weights import default_model_name, load_model

    check_writable(args.output, args.overwrite)  # fail before the work, not after
    crop = args.crop if args.crop in ("detail", "centre", "center") else parse_crop(args.crop)
    crop_size = parse_size(args.crop_size) if args.crop_size else None
    if args.zoom is not None and args.zoom < 1:
        raise SisrError(f"--zoom {args.zoom}: must be 1 or more")
    if args.columns is not None and args.columns < 1:
        raise SisrError(f"--columns {args.columns}: must be 1 or more")
    names = [m for m in (args.model or [default_model_name(args.scale)]) if m != "bicubic"]
    models = [load_model(m, scale=args.scale) for m in names]
    scale = args.scale
    if scale is None:
        if not models:
            raise SisrError("--scale is needed (no model given to take it from)")
        scale = models[0].scale
        for name, model in zip(names, models):
            if model.scale != scale:
                raise SisrError(f"{name}: upscales x{model.scale}, but {names[0]} upscales x{scale}; pass --scale")
    image = read_image(args.image)
    hr = read_image(args.hr) if args.hr else None
    comparison = compare_models(
        image,
        models,
        scale,
        lr_input=args.lr or hr is not None,
        hr=hr,
        crop=crop,
        crop_size=crop_size,
        zoom=args.zoom,
        columns=args.columns,
        overview=not args.no_overview,
        caption=args.caption,
        names=[model_label(m) for m in names],
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        precision=args.precision,
        device=args.device,
    )
    write_figure(comparison.figure, args.output, overwrite=args.overwrite)
    logger = logging.getLogger("sisr")
    for panel in comparison.panels:
        if panel.psnr is not None:
            logger.info("%-24s %s", panel.title, panel.label)
    box = comparison.crop
    logger.info(
        "wrote %s (%dx%d; crop %d,%d,%d,%d shown x%d)",
        args.output,
        *comparison.figure.size,
        box.x,
        box.y,
        box.width,
        box.height,
        comparison.zoom,
    )
    return 0
