"""`sisr download`: fetch and convert pretrained models of the zoo ahead of use."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "download",
        help="download and convert pretrained models (see `sisr models --pretrained`)",
        description="Download pretrained models by zoo name (e.g. edsr-baseline-x4@official), verify them, convert "
        "them to sisr weight files in the cache and print where each one is. `--model NAME` in any command does "
        "the same on first use.",
    )
    parser.add_argument("names", nargs="+", metavar="NAME", help="pretrained model name, <model>@<source>")
    parser.add_argument("--force", action="store_true", help="download and convert again even if cached")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..weights.zoo import fetch_pretrained, get_pretrained

    for name in args.names:  # all names checked first: a typo fails before any download
        get_pretrained(name)
    for name in args.names:
        print(fetch_pretrained(name, force=args.force))
    return 0
