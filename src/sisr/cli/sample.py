"""`sisr sample`: write a public-domain sample photo to try sisr on."""

from __future__ import annotations

import argparse

# scikit-image ships these photos inside its wheel (no download), all public domain.
SAMPLES = {
    "astronaut": "astronaut",
    "coffee": "coffee",
    "chelsea": "chelsea",
    "rocket": "rocket",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sample",
        help="write a sample photo (from scikit-image)",
        description="Write a public-domain sample photo shipped with scikit-image, "
        "optionally shrunk first with the MATLAB bicubic downgrade so there is something to upscale.",
    )
    parser.add_argument("name", choices=sorted(SAMPLES), help="which photo")
    parser.add_argument("-o", "--output", required=True, help="image file to write")
    parser.add_argument(
        "--downscale", type=int, default=1, metavar="S", help="shrink by S with MATLAB bicubic (default 1: as shipped)"
    )
    parser.add_argument("--overwrite", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from ..errors import SisrError
    from ..image_io import write_image

    try:
        from skimage import data
    except ImportError:
        raise SisrError("the sample photos come from scikit-image: pip install 'sisr[sample]'") from None
    image = getattr(data, SAMPLES[args.name])()
    if not 1 <= args.downscale <= min(image.shape[:2]):
        raise SisrError(f"--downscale {args.downscale}: must be from 1 to {min(image.shape[:2])} for {args.name}")
    if args.downscale > 1:
        from ..imaging import matlab_imresize

        s = args.downscale
        image = matlab_imresize(image[: image.shape[0] // s * s, : image.shape[1] // s * s], scale=1 / s)
    write_image(args.output, image, overwrite=args.overwrite)
    logging.getLogger("sisr").info("wrote %s (%dx%d)", args.output, image.shape[1], image.shape[0])
    return 0
