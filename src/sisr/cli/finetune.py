"""`sisr finetune`: SRGAN-style perceptual fine-tuning; a thin layer over `sisr.train.finetune`."""

from __future__ import annotations

import argparse

# Flag -> the configuration key it sets; applied after the config file, before --set.
FLAG_KEYS = {
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
    "vgg19_weights": "gan.vgg19_weights",
    "content_layer": "gan.content_layer",
    "adversarial_weight": "gan.adversarial_weight",
    "pixel_weight": "gan.pixel_weight",
    "sample_every": "gan.sample_every",
}

EPILOG = """\
examples:
  sisr finetune configs/srgan-x4.toml --init runs/srresnet-x4/best.safetensors
  sisr finetune --init runs/edsr/best.safetensors --data photos/ --val Set5 --out runs/edsr-gan \\
      --content-layer vgg22 --pixel-weight 1e-2 --steps 20000
  torchrun --nproc-per-node 2 --no-python sisr finetune configs/srgan-x4.toml --batch-size 8

The VGG19 ImageNet weights (torchvision's vgg19-dcbb9e9d.pth) are downloaded on
first use; offline, pass --vgg19-weights PATH or set $SISR_VGG19_WEIGHTS.
Running the same command again in the same --out folder continues from its checkpoint.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "finetune", help="fine-tune a pixel-trained network with SRGAN's perceptual + adversarial loss",
        description="Fine-tune a pixel-trained generator (SRResNet, EDSR or WDSR weight file) with VGG content "
                    "loss + 1e-3 x adversarial loss against SRGAN's discriminator. Options come from SRGAN's "
                    "recipe, then CONFIG (TOML), then the flags below and --set.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", nargs="?", help="TOML file with the options (see configs/srgan-x4.toml)")
    parser.add_argument("--init", metavar="WEIGHTS", help="the pixel-trained generator (sisr weight file)")
    parser.add_argument("--data", metavar="PATH", help="'div2k' or a folder of HR images")
    parser.add_argument("--data-lr", metavar="PATH", help="folder of LR images paired with --data by name")
    parser.add_argument("--data-root", metavar="DIR", help="where data sets are found / downloaded")
    parser.add_argument("--val", metavar="SET", help="validation set: Set5, DIV2K-valid, a folder, or '' for none")
    parser.add_argument("--steps", type=int, help="total training steps")
    parser.add_argument("--batch-size", type=int, help="patches per step per process")
    parser.add_argument("--patch-size", type=int, help="HR patch side in pixels (also the discriminator's input)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default runs/srgan)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--workers", type=int, help="data loader worker processes")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--vgg19-weights", metavar="PATH", help="torchvision-layout VGG19 weight file")
    parser.add_argument("--content-layer", metavar="LAYER", help="VGG features of the content loss: vgg22 or vgg54")
    parser.add_argument("--adversarial-weight", type=float, help="weight of the adversarial term (1e-3)")
    parser.add_argument("--pixel-weight", type=float, help="weight of an extra pixel-loss term (0 = none)")
    parser.add_argument("--sample-every", type=int, help="steps between sample images (0 = none)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="any option, e.g. gan.pixel_loss=mse (repeatable)")
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument("--resume", metavar="CHECKPOINT", nargs="?", const=True, default=True,
                        help="continue from CHECKPOINT (default: <out>/checkpoint.pt when it exists)")
    resume.add_argument("--fresh", action="store_true",
                        help="start over in an output folder that holds an earlier run, replacing it")
    parser.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    parser.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    parser.set_defaults(func=run)


def resolve_config(args: argparse.Namespace):
    from ..train.config import parse_override, set_dotted
    from ..train.gan import load_finetune_config

    values: dict = {}
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag, None)
        if value is not None:
            set_dotted(values, key.split("."), value)
    for text in args.overrides:
        parse_override(text)  # a malformed --set is reported before anything else happens
    return load_finetune_config(args.config, overrides=args.overrides, values=values)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import SisrError
    from ..train.gan import finetune

    config = resolve_config(args)
    if args.print_config:
        print(config.to_toml(), end="")
        return 0
    if isinstance(args.resume, str) and not Path(args.resume).is_file():
        raise SisrError(f"--resume {args.resume}: no such checkpoint")
    result = finetune(config, resume=args.resume, fresh=args.fresh,
                      progress_bar=False if args.no_progress else None)
    return 130 if result.interrupted else 0
