"""`sisr export`: a sisr network as ONNX or TorchScript, for runtimes without sisr."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a network to ONNX (.onnx) or TorchScript (.pt)",
        description="Export a network to ONNX or TorchScript. The exported graph takes RGB float32 NCHW "
        "in [0, 1] of any batch size, height and width, and returns the upscaled image in the same units.",
    )
    parser.add_argument("model", metavar="MODEL", help="sisr weight file, or a Keras .h5 / PyTorch .pt/.pth to import")
    parser.add_argument("-o", "--output", required=True, help="out.onnx (ONNX) or out.pt (TorchScript)")
    parser.add_argument("--opset", type=int, default=None, metavar="N", help="ONNX opset (default: the exporter's)")
    parser.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from ..errors import SisrError
    from ..weights import export_model, resolve_model

    if args.model == "bicubic":
        raise SisrError("bicubic is not a network to export")
    model = resolve_model(args.model)
    path = export_model(model, args.output, opset=args.opset, overwrite=args.overwrite)
    logging.getLogger("sisr").info("wrote %s", path)
    return 0
