"""`sisr train`: train a network with pixel losses; a thin layer over `sisr.train.train`."""

from __future__ import annotations

import argparse

# Flag -> the configuration key it sets; applied after the config file, before --set.
FLAG_KEYS = {
    "model": "model.preset",
    "init": "model.init",
    "data": "data.train",
    "data_lr": "data.train_lr",
    "data_root": "data.root",
    "val": "val.set",
    "steps": "train.steps",
    "batch_size": "data.batch_size",
    "patch_size": "data.patch_size",
    "out": "train.out",
    "device": "train.device",
    "precision": "train.precision",
    "workers": "data.workers",
    "seed": "train.seed",
}

EPILOG = """\
examples:
  sisr train configs/edsr-baseline-x4.toml                      # DIV2K, downloaded on first use
  sisr train --model wdsr-b-16-x2 --data photos/ --val Set5 --steps 20000 --out runs/mine
  sisr train configs/edsr-baseline-x4.toml --set optim.lr=2e-4 --set train.ema=0.999
  torchrun --nproc-per-node 4 --no-python sisr train configs/edsr-baseline-x4.toml --batch-size 4

Running the same command again in the same --out folder continues from its
checkpoint. --batch-size is per process: with torchrun a step uses
batch-size x processes patches.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a network on DIV2K or your own images",
        description="Train an SR network with an L1 or L2 loss. Options come from the preset's defaults "
        "(the papers' recipes), then CONFIG (TOML), then the flags below and --set.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", nargs="?", help="TOML file with the options (see configs/)")
    parser.add_argument("--model", metavar="PRESET", help="network preset, e.g. edsr-baseline-x4 (`sisr models`)")
    parser.add_argument(
        "--init",
        metavar="WEIGHTS",
        help="start from these weights: a weight file or model name, as --model takes (fine-tuning)",
    )
    add_run_arguments(parser, out_default="runs/<preset>", set_example="optim.lr=2e-4")
    parser.set_defaults(func=run)


def add_run_arguments(
    parser: argparse.ArgumentParser, out_default: str, set_example: str, patch_note: str = ""
) -> None:
    """The options `sisr train` and `sisr finetune` share: data, schedule, device, resume."""
    parser.add_argument("--data", metavar="PATH", help="'div2k' or a folder of HR images")
    parser.add_argument("--data-lr", metavar="PATH", help="folder of LR images paired with --data by name")
    parser.add_argument("--data-root", metavar="DIR", help="where data sets are found / downloaded")
    parser.add_argument("--val", metavar="SET", help="validation set: Set5, DIV2K-valid, a folder, or '' for none")
    parser.add_argument("--steps", type=int, help="total training steps")
    parser.add_argument("--batch-size", type=int, help="patches per step per process")
    parser.add_argument("--patch-size", type=int, help=f"HR patch side in pixels{patch_note}")
    parser.add_argument("--out", metavar="DIR", help=f"output folder (default {out_default})")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--workers", type=int, help="data loader worker processes")
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"any option, e.g. {set_example} (repeatable)",
    )
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument(
        "--resume",
        metavar="CHECKPOINT",
        nargs="?",
        const=True,
        default=True,
        help="continue from CHECKPOINT (default: <out>/checkpoint.pt when it exists)",
    )
    resume.add_argument(
        "--fresh", action="store_true", help="start over in an output folder that holds an earlier run, replacing it"
    )
    parser.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    parser.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")


def flag_values(args: argparse.Namespace, flag_keys: dict[str, str]) -> dict:
    """The configuration values the flags set, nested by section; malformed --set values fail here."""
    from ..train.config import parse_override, set_dotted

    values: dict = {}
    for flag, key in flag_keys.items():
        value = getattr(args, flag, None)
        if value is not None:
            set_dotted(values, key.split("."), value)
    for text in args.overrides:
        parse_override(text)  # a malformed --set is reported before anything else happens
    return values


def run_stage(args: argparse.Namespace, config, stage) -> int:
    """Print the configuration or run the stage (`train` or `finetune`); 128 + the signal when one stopped it."""
    import signal
    from pathlib import Path

    from ..errors import SisrError

    if args.print_config:
        print(config.to_toml(), end="")
        return 0
    if isinstance(args.resume, str) and not Path(args.resume).is_file():
        raise SisrError(f"--resume {args.resume}: no such checkpoint")
    result = stage(config, resume=args.resume, fresh=args.fresh, progress_bar=False if args.no_progress else None)
    if not result.interrupted:
        return 0
    return 128 + (result.stop_signal or signal.SIGINT)  # 130 after Ctrl-C, 143 after SIGTERM


def resolve_config(args: argparse.Namespace):
    from ..train.config import load_config

    return load_config(args.config, overrides=args.overrides, values=flag_values(args, FLAG_KEYS))


def run(args: argparse.Namespace) -> int:
    from ..train import train

    return run_stage(args, resolve_config(args), train)
