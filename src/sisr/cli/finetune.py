"""`sisr finetune`: SRGAN-style perceptual fine-tuning; a thin layer over `sisr.train.finetune`."""

from __future__ import annotations

import argparse

from .train import FLAG_KEYS as TRAIN_FLAG_KEYS
from .train import add_run_arguments, flag_values, run_stage

# Flag -> the configuration key it sets: sisr train's (less --model: the network comes from --init),
# plus the GAN stage's own.
FLAG_KEYS = {flag: key for flag, key in TRAIN_FLAG_KEYS.items() if flag != "model"} | {
    "vgg19_weights": "gan.vgg19_weights",
    "content_layer": "gan.content_layer",
    "adversarial_weight": "gan.adversarial_weight",
    "pixel_weight": "gan.pixel_weight",
    "sample_every": "gan.sample_every",
    "lpips_weights": "gan.lpips_weights",
    "lpips_vgg16_weights": "gan.lpips_vgg16_weights",
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
        "finetune",
        help="fine-tune a pixel-trained network with SRGAN's perceptual + adversarial loss",
        description="Fine-tune a pixel-trained generator (SRResNet, EDSR or WDSR weight file) with VGG content "
        "loss + 1e-3 x adversarial loss against SRGAN's discriminator. Options come from SRGAN's "
        "recipe, then CONFIG (TOML), then the flags below and --set.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", nargs="?", help="TOML file with the options (see configs/srgan-x4.toml)")
    parser.add_argument(
        "--init", metavar="WEIGHTS", help="the pixel-trained generator: a weight file or model name, as --model takes"
    )
    add_run_arguments(
        parser,
        out_default="runs/srgan",
        set_example="gan.pixel_loss=mse",
        patch_note=" (also the discriminator's input)",
    )
    parser.add_argument("--vgg19-weights", metavar="PATH", help="torchvision-layout VGG19 weight file")
    parser.add_argument("--content-layer", metavar="LAYER", help="VGG features of the content loss: vgg22 or vgg54")
    parser.add_argument("--adversarial-weight", type=float, help="weight of the adversarial term (1e-3)")
    parser.add_argument("--pixel-weight", type=float, help="weight of an extra pixel-loss term (0 = none)")
    parser.add_argument("--sample-every", type=int, help="steps between sample images (0 = none)")
    parser.add_argument("--lpips-weights", metavar="PATH", help="LPIPS v0.1 vgg.pth: validate LPIPS too")
    parser.add_argument("--lpips-vgg16-weights", metavar="PATH", help="torchvision vgg16 file that LPIPS needs")
    parser.set_defaults(func=run)


def resolve_config(args: argparse.Namespace):
    from ..train.config import load_finetune_config

    return load_finetune_config(args.config, overrides=args.overrides, values=flag_values(args, FLAG_KEYS))


def run(args: argparse.Namespace) -> int:
    from ..train import finetune

    return run_stage(args, resolve_config(args), finetune)
