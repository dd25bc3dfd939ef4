"""The `sisr` command: a thin layer over the library, one module per subcommand.

Each module in COMMANDS defines `register(subparsers)`; heavy imports (torch,
numpy, the library's modules) happen inside the command's function, so
`sisr --help` stays fast and one broken command cannot break the others.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import SisrError

COMMANDS = [
    "models",
    "sample",
    "upscale",
    "serve",
    "evaluate",
    "degrade",
    "compare",
    "convert",
    "export",
    "download",
    "train",
    "finetune",
    "plot",
    "bench",
]

EXIT_STATUSES = """\
exit status: 0 done; 1 an error (one line on stderr); 130 stopped by Ctrl-C
(SIGINT) and 143 by SIGTERM (128 + the signal's number, the shell's
convention); 141 when the reader of the output went away (`sisr models | head`).
Either signal stops every command cleanly: no half-written output is left, and
training saves a checkpoint that the same command continues from.
"""

# Where a parse notes the options already given: namespace attribute, removed before the namespace is returned.
_GIVEN = "_sisr_options_given"


class StoreOnce(argparse._StoreAction):
    """An option that takes one value and refuses a second.

    argparse keeps the last of `--scale 2 --scale 4` without a word, which
    hides mistakes in long or generated command lines. Options meant to be
    repeated use action="append" and are not affected.
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if self.option_strings:  # a positional cannot be given twice
            given: dict[str, str] = vars(namespace).setdefault(_GIVEN, {})
            now = f"{option_string} {_shown(values)}"
            if self.dest in given:
                raise argparse.ArgumentError(
                    self, f"given more than once ({given[self.dest]}, then {now}); give it once"
                )
            given[self.dest] = now
        super().__call__(parser, namespace, values, option_string)


def _shown(values: Any) -> str:
    if isinstance(values, list):
        return " ".join(map(str, values))
    return "" if values is None else str(values)


class SisrArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose single-value options may be given only once.

    Subcommand parsers are made with the same class (argparse's default for
    add_subparsers), so the rule holds for every option of every subcommand.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", None, StoreOnce)
        self.register("action", "store", StoreOnce)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, rest = super().parse_known_args(args, namespace)
        vars(parsed).pop(_GIVEN, None)
        return parsed, rest


def build_parser() -> SisrArgumentParser:
    from .. import __version__

    parser = SisrArgumentParser(
        prog="sisr",
        description="Single-image super-resolution with deep residual networks.",
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sisr {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only print errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMANDS:
        importlib.import_module(f".{name}", __name__).register(subparsers)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt: every command stops on it as on Ctrl-C.

    A KeyboardInterrupt so that every clean-up written for Ctrl-C (temporary
    files deleted, a download's `.part` kept, locks released) runs for it too.
    """


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM handled as Ctrl-C for the block (training installs its own handler for both while it runs).

    Signal handlers can only be set from the main thread; elsewhere (main()
    called from a worker thread) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit status is 0, 1 for an error, 130 after Ctrl-C and 143 after SIGTERM."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # sisr's own progress lines at INFO; other libraries' loggers (the ONNX optimiser's notes, say) only
    # from WARNING up, as Python's default has it. The level is put back on return: main() may be called
    # from Python (tests, notebooks), and the library's log level is not the command's to keep.
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    log = logging.getLogger("sisr")
    level = log.level
    log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    try:
        with _sigterm_as_interrupt():
            return int(args.func(args) or 0)
    except SisrError as error:
        print(f"sisr {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interruption:
        if isinstance(interruption, Terminated):
            print(f"sisr {args.command}: stopped by SIGTERM", file=sys.stderr)
            return 128 + signal.SIGTERM
        print(f"sisr {args.command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:
        # The reader went away (`sisr models | head`): not an error of sisr's. Point stdout at
        # /dev/null so that Python's flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    finally:
        log.setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
