"""`sisr degrade`: LR images made from HR ones by a fixed, named degradation (jpeg75, noise15, realesrgan-0, ...)."""

from __future__ import annotations

import argparse
from pathlib import Path

# Pixels are written only where nothing is lost again; a JPEG is written only as the bytes the recipe made.
LOSSLESS_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".ppm")
JPEG_SUFFIXES = (".jpg", ".jpeg")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "degrade",
        help="make LR images from HR ones with a fixed degradation (jpeg75, noise15, realesrgan-0, ...)",
        description="Make low-resolution images from HR ones the way `sisr evaluate --degradation` does: "
        "MATLAB bicubic by --scale, then the named degradation, deterministic for a name, a seed and an image's "
        "name. jpeg<Q> recipes write the JPEG file itself (.jpg); the others write PNG (or the lossless format "
        "OUTPUT names). A folder is done image by image into a folder with the same tree.",
    )
    parser.add_argument("source", metavar="IN", help="an HR image or a folder of them (searched recursively)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="the LR image (for one image) or a folder")
    parser.add_argument(
        "--recipe",
        required=True,
        metavar="R",
        help="bicubic, jpeg<Q> (quality 1-100: jpeg90, jpeg75, jpeg50), noise<S> (Gaussian sigma S/255: "
        "noise15) or realesrgan-<N> (Real-ESRGAN's degradations, draws fixed by N)",
    )
    parser.add_argument("--scale", type=int, required=True, choices=[2, 3, 4, 8], help="the downscaling factor")
    parser.add_argument(
        "--seed", type=int, default=0, metavar="S", help="fixes the random draws with each image's name (default 0)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.set_defaults(func=run)


def plan_outputs(source: Path, output: Path, suffix: str) -> list[tuple[Path, Path]]:
    """(input, output) for every image: one file, or a folder's tree mirrored with `suffix` for each file."""
    from ..data.training import list_images
    from ..errors import SisrError
    from ..image_io import READ_SUFFIXES

    if source.is_dir():
        images = list_images(source)
        if not images:
            raise SisrError(f"{source}: no images found (in subfolders too)")
        if output.is_file():
            raise SisrError(f"{output}: a file, but IN is a folder: -o must name a folder")
        plan = [(path, (output / path.relative_to(source)).with_suffix(suffix)) for path in images]
        seen: dict[Path, Path] = {}
        for path, target in plan:
            if target in seen:
                raise SisrError(f"{path} and {seen[target]} would both be written to {target}: rename one")
            seen[target] = path
        return plan
    if not source.is_file():
        raise SisrError(f"{source}: no such file or folder")
    if source.suffix.lower() not in READ_SUFFIXES:
        raise SisrError(f"{source}: not an image file ({', '.join(READ_SUFFIXES)})")
    if output.is_dir() or not output.suffix:
        return [(source, output / f"{source.stem}{suffix}")]
    return [(source, output)]


def check_format(target: Path, recipe: str, jpeg_quality: int | None) -> None:
    """A JPEG target only for jpeg<Q> (its own file, not a second compression); pixels only losslessly."""
    from ..errors import SisrError

    suffix = target.suffix.lower()
    if suffix in JPEG_SUFFIXES and jpeg_quality is None:
        raise SisrError(
            f"{target}: saving the {recipe} LR as JPEG would compress it once more; use .png "
            "(only jpeg<Q> recipes write .jpg, the JPEG they made)"
        )
    if suffix not in JPEG_SUFFIXES and suffix not in LOSSLESS_SUFFIXES:
        raise SisrError(
            f"{target}: {suffix or '(no extension)'} is not a lossless format; use {', '.join(LOSSLESS_SUFFIXES)}"
        )


def run(args: argparse.Namespace) -> int:
    import logging

    from ..data.degradations import fixed_degradation
    from ..data.testsets import read_image
    from ..errors import SisrError
    from ..files import atomic_write, check_writable
    from ..image_io import write_image

    degradation = fixed_degradation(args.recipe, "--recipe")
    if args.seed < 0:
        raise SisrError(f"--seed {args.seed}: must not be negative")
    quality = degradation.jpeg_quality
    plan = plan_outputs(Path(args.source), Path(args.output), ".jpg" if quality is not None else ".png")
    for _, target in plan:  # every refusal before any work
        check_format(target, degradation.name, quality)
        check_writable(target, args.overwrite)
    log = logging.getLogger("sisr")
    for source, target in plan:
        hr = read_image(source)
        if min(hr.shape[:2]) < args.scale:
            raise SisrError(f"{source}: {hr.shape[1]}x{hr.shape[0]} is too small for x{args.scale}")
        made = degradation.degrade(hr, args.scale, key=source.stem, seed=args.seed)
        target.parent.mkdir(parents=True, exist_ok=True)
        if made.jpeg is not None and target.suffix.lower() in JPEG_SUFFIXES:
            with atomic_write(target, "wb", overwrite=args.overwrite) as handle:
                handle.write(made.jpeg)
        else:
            write_image(target, made.image, overwrite=args.overwrite)
        if len(plan) == 1:
            log.info(
                "wrote %s (%dx%d, %s, x%d)",
                target,
                made.image.shape[1],
                made.image.shape[0],
                degradation.name,
                args.scale,
            )
    if len(plan) > 1:
        log.info("wrote %d LR images (%s, x%d) under %s", len(plan), degradation.name, args.scale, args.output)
    return 0
