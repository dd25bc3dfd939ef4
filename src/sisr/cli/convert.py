"""`sisr convert`: a Keras / PyTorch weight file of another implementation -> a sisr weight file."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="import weights of another implementation (Keras .h5, EDSR .pt, BasicSR .pth)",
        description="Convert a weight file of another implementation into a sisr .safetensors file. The "
        "architecture is read off the file: Krasser's Keras EDSR / WDSR-A/B / SRResNet (.h5), official "
        "EDSR-PyTorch (.pt), BasicSR EDSR / MSRResNet (.pth).",
    )
    parser.add_argument("source", metavar="SRC", help="weight file to import")
    parser.add_argument("-o", "--output", required=True, metavar="DST", help="sisr weight file to write (.safetensors)")
    parser.add_argument("--fp16", action="store_true", help="store float16 weights (half the size)")
    parser.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    import torch

    from ..errors import SisrError
    from ..weights import convert, load_model

    if not args.output.endswith(".safetensors"):
        raise SisrError(f"{args.output}: sisr weight files end in .safetensors")
    path = convert(args.source, args.output, overwrite=args.overwrite, dtype=torch.float16 if args.fp16 else None)
    info = load_model(path).info
    logging.getLogger("sisr").info(
        "wrote %s: %s (from %s)", path, info.summary(), info.metadata.get("source_format", "sisr")
    )
    return 0
