"""The `sisr` command: a thin layer over the library, one module per subcommand.

Each module in COMMANDS defines `register(subparsers)`; heavy imports happen
inside the command's function, so `sisr --help` stays fast and one broken
command cannot break the others.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ..errors import SisrError

COMMANDS = [
    "models",
    "sample",
    "upscale",
    "evaluate",
    "compare",
    "convert",
    "export",
    "download",
    "train",
    "finetune",
    "plot",
    "bench",
]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="sisr", description="Single-image super-resolution with deep residual networks."
    )
    parser.add_argument("--version", action="version", version=f"sisr {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only print errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMANDS:
        importlib.import_module(f".{name}", __name__).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except SisrError as error:
        print(f"sisr {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"sisr {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
