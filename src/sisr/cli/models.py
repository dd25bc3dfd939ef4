"""`sisr models`: the ready-to-use networks (bundled, pretrained zoo), then the untrained presets."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the networks: ready-to-use ones first, then the untrained presets",
        description="List the networks. First those ready to use with --model: the defaults that ship with sisr, "
        "then the pretrained zoo (downloaded on first use, or by `sisr download`). Then the untrained "
        "presets: architectures for `sisr train --model`.",
    )
    parser.add_argument(
        "--pretrained",
        action="store_true",
        help="list only the ready-to-use networks (names for --model and `sisr download`)",
    )
    parser.add_argument(
        "--format",
        choices=["table", "json"],
        default="table",
        help="table (default), or json: one list of objects whose `kind` is bundled, pretrained or preset",
    )
    parser.set_defaults(func=run)


def count_parameters(arch: str, args: dict[str, Any], counted: dict[str, int] = {}) -> int:  # noqa: B006
    """Parameters of a network built without initial values, on one thread: the count needs only the shapes.

    Filling EDSR's 43 M parameters with random numbers takes a good part of a
    second, and the table builds six such networks. The meta device would skip
    that too, but its first arithmetic (WDSR's weight norm computes `g = ||v||`
    on construction) imports torch._dynamo, about a second more. Counts are
    kept per architecture and arguments (`counted`): the bundled defaults and
    several zoo entries are presets.
    """
    key = json.dumps([arch, args], sort_keys=True)
    if key not in counted:
        from ..models import build_model
        from ..models import count_parameters as count

        with _shapes_only():
            counted[key] = count(build_model(arch, args))
    return counted[key]


@contextlib.contextmanager
def _shapes_only() -> Iterator[None]:
    """torch.nn.init's functions and in-place fills leave new tensors as they are; torch runs on one thread.

    The tensors made are small or untouched, and on a busy machine a thread
    pool's waiting costs more than their arithmetic.
    """
    import torch
    from torch.overrides import TorchFunctionMode

    skipped = {
        function
        for name, function in vars(torch.nn.init).items()
        if name.endswith("_") and not name.startswith("_") and callable(function)
    } | {torch.Tensor.uniform_, torch.Tensor.normal_, torch.Tensor.fill_, torch.Tensor.zero_}

    class Uninitialised(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            if func in skipped:
                return args[0] if args else kwargs["tensor"]
            return func(*args, **kwargs)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with Uninitialised():
            yield
    finally:
        torch.set_num_threads(threads)


def ready_rows() -> list[dict[str, Any]]:
    """The bundled defaults, then the pretrained zoo, with whether each is on this machine."""
    from ..models import PRESETS
    from ..weights.bundled import BUNDLED
    from ..weights.zoo import is_cached, list_pretrained

    rows = []
    for bundled in BUNDLED.values():
        preset = PRESETS[bundled.preset]
        rows.append(
            {
                "name": bundled.name,
                "kind": "bundled",
                "arch": preset.arch,
                "scale": bundled.scale,
                "parameters": count_parameters(preset.arch, preset.args),
                "source": "bundled",
                "licence": "MIT",
                "cached": bundled.path.is_file(),
                "url": "",
                "description": f"sisr's default x{bundled.scale} network ({bundled.preset}, trained on the 291 "
                f"images by {' then '.join(bundled.recipe)}); ships with the package, works offline",
                "reported_psnr": None,
            }
        )
    for entry in list_pretrained():
        rows.append(
            {
                "name": entry.name,
                "kind": "pretrained",
                "arch": entry.arch,
                "scale": entry.scale,
                "parameters": count_parameters(entry.arch, entry.args),
                "source": entry.source,
                "licence": entry.licence.split(" ")[0],
                "cached": is_cached(entry),
                "url": entry.url,
                "description": entry.description,
                "reported_psnr": entry.reported,
            }
        )
    return rows


def preset_rows() -> list[dict[str, Any]]:
    """The presets: architectures with the papers' settings and fresh weights, for training."""
    from ..models import list_presets

    return [
        {
            "name": preset.name,
            "kind": "preset",
            "arch": preset.arch,
            "scale": preset.scale,
            "parameters": count_parameters(preset.arch, preset.args),
            "description": preset.description,
        }
        for preset in list_presets()
    ]


def format_ready(rows: list[dict[str, Any]]) -> list[str]:
    width = max(len(row["name"]) for row in rows)
    lines = [
        f"{'name':<{width}}  {'arch':<8}  {'scale':>5}  {'parameters':>11}  {'source':<8}  {'licence':<10}  downloaded"
    ]
    for row in rows:
        lines.append(
            f"{row['name']:<{width}}  {row['arch']:<8}  {'x' + str(row['scale']):>5}  {row['parameters']:>11,}  "
            f"{row['source']:<8}  {row['licence']:<10}  {'yes' if row['cached'] else 'no'}"
        )
    return lines


def format_presets(rows: list[dict[str, Any]]) -> list[str]:
    width = max(len(row["name"]) for row in rows)
    lines = [f"{'name':<{width}}  {'scale':>5}  {'parameters':>11}  description"]
    for row in rows:
        lines.append(
            f"{row['name']:<{width}}  {'x' + str(row['scale']):>5}  {row['parameters']:>11,}  {row['description']}"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    ready = ready_rows()
    presets = [] if args.pretrained else preset_rows()
    if args.format == "json":
        print(json.dumps(ready + presets, indent=2))
        return 0
    lines = [
        "Ready to use: --model NAME (pretrained ones are downloaded on first use, or by `sisr download NAME`)",
        "",
        *format_ready(ready),
    ]
    if presets:
        lines += [
            "",
            "Untrained presets: architectures to train, `sisr train --model NAME` (random weights until then)",
            "",
            *format_presets(presets),
        ]
    print("\n".join(lines))
    return 0
