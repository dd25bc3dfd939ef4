"""`sisr download`: fetch and convert pretrained models of the zoo ahead of use."""

from __future__ import annotations

import argparse

EPILOG = """\
Every download is checked against the full sha256 that sisr records for it.
Entries without one (`sisr models --pretrained` lists the zoo) are refused
unless you trust them: --trust-unpinned (or SISR_TRUST_UNPINNED=1, for any
command) downloads them anyway and records the sha256 of what arrives beside
the file; every later download must match it. --force replaces the cached
files only once the new download has passed its checks.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "download",
        help="download and convert pretrained models (see `sisr models --pretrained`)",
        description="Download pretrained models by zoo name (e.g. edsr-baseline-x4@official), verify them, convert "
        "them to sisr weight files in the cache and print where each one is. `--model NAME` in any command does "
        "the same on first use.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="+", metavar="NAME", help="pretrained model name, <model>@<source>")
    parser.add_argument("--force", action="store_true", help="download and convert again even if cached")
    parser.add_argument(
        "--trust-unpinned",
        action="store_true",
        help="download entries for which sisr records no full sha256, recording the hash of what arrives",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..weights.zoo import check_pinned, fetch_pretrained, get_pretrained, is_cached

    trust = True if args.trust_unpinned else None  # None: $SISR_TRUST_UNPINNED decides
    # Every name checked first: a typo or an untrusted entry fails before any download.
    entries = [get_pretrained(name) for name in args.names]
    for entry in entries:
        if args.force or not is_cached(entry):
            check_pinned(entry, trust)
    for entry in entries:
        print(fetch_pretrained(entry.name, force=args.force, trust_unpinned=trust))
    return 0
