"""`sisr plot-log`: training curves of a run as a PNG, drawn without matplotlib."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plot-log",
        help="plot a training run's curves (loss, validation PSNR, ...) to a PNG",
        description="Read a run's log.jsonl (written by `sisr train`) and draw each quantity against step: "
        "loss, PSNR (training patches and validation, best value marked), learning rate and any other "
        "numeric field that changes. Malformed lines are skipped with a warning.",
    )
    parser.add_argument(
        "log",
        metavar="RUN",
        nargs="+",
        help="a run folder, or its log.jsonl; several: successive stages on one step axis "
        "(a run trained on from another's weights)",
    )
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="the figure (PNG)")
    parser.add_argument(
        "--field", action="append", metavar="NAME", help="plot only this field (e.g. loss, psnr); repeat for several"
    )
    parser.add_argument("--log-loss", action="store_true", help="logarithmic y axis for the loss")
    parser.add_argument(
        "--smooth",
        type=float,
        default=0.0,
        metavar="W",
        help="exponential smoothing of training curves, 0 to <1 as in TensorBoard "
        "(the raw curve stays, faint; default 0: none)",
    )
    parser.add_argument("--columns", type=int, metavar="N", help="charts per row (default 2)")
    parser.add_argument("--title", metavar="TEXT", help="figure title (default: the run folder's name)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from ..errors import SisrError
    from ..figures.curves import plot_log
    from ..figures.save import write_figure
    from ..files import check_writable

    check_writable(args.output, args.overwrite)
    if not 0 <= args.smooth < 1:
        raise SisrError(f"--smooth {args.smooth}: must be in [0, 1)")
    if args.columns is not None and args.columns < 1:
        raise SisrError(f"--columns {args.columns}: must be 1 or more")
    figure = plot_log(
        args.log, fields=args.field, log_loss=args.log_loss, smooth=args.smooth, columns=args.columns, title=args.title
    )
    write_figure(figure, args.output, overwrite=args.overwrite)
    logging.getLogger("sisr").info("wrote %s (%dx%d)", args.output, *figure.size)
    return 0
