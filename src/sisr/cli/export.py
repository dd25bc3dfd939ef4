"""`sisr export`: a sisr network as ONNX or TorchScript, for runtimes without sisr."""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import warnings
from collections.abc import Iterator


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
    from ..weights import export_model, load_model

    if args.model == "bicubic":
        raise SisrError("bicubic is not a network to export")
    model = load_model(args.model)
    with _quiet():
        path = export_model(model, args.output, opset=args.opset, overwrite=args.overwrite)
    logging.getLogger("sisr").info("wrote %s", path)
    return 0


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep the exporter's and the ONNX optimiser's printed notes and warnings off the terminal.

    They report its passes ("Removed 11 unused nodes"), not problems; if the
    export fails they go to stderr before the error, as they may explain it.
    """
    notes = io.StringIO()
    try:
        with contextlib.redirect_stdout(notes), contextlib.redirect_stderr(notes), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    except BaseException:
        sys.stderr.write(notes.getvalue())
        raise
