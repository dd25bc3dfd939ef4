"""`sisr models`: the presets with their parameter counts, or the pretrained zoo."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list the network presets", description="List the network presets.")
    parser.add_argument(
        "--pretrained",
        action="store_true",
        help="list the pretrained models instead (names for --model and `sisr download`)",
    )
    parser.add_argument("--format", choices=["table", "json"], default="table")
    parser.set_defaults(func=run)


def _preset_rows() -> list[dict[str, Any]]:
    from ..models import count_parameters, create_model, list_presets

    return [
        {
            "name": preset.name,
            "arch": preset.arch,
            "scale": preset.scale,
            "parameters": count_parameters(create_model(preset.name)),
            "description": preset.description,
        }
        for preset in list_presets()
    ]


def _pretrained_rows() -> list[dict[str, Any]]:
    from ..models import PRESETS, build_model, count_parameters, create_model
    from ..weights.bundled import BUNDLED
    from ..weights.zoo import is_cached, list_pretrained

    rows = [
        {
            "name": entry.name,
            "arch": PRESETS[entry.preset].arch,
            "scale": entry.scale,
            "parameters": count_parameters(create_model(entry.preset)),
            "source": "bundled",
            "licence": "MIT",
            "cached": entry.path.is_file(),
            "url": "",
            "description": f"sisr's default x{entry.scale} network ({entry.preset}, trained on the 291 images by "
            f"{' then '.join(entry.recipe)}); ships with the package, works offline",
            "reported_psnr": None,
        }
        for entry in BUNDLED.values()
    ]
    for entry in list_pretrained():
        rows.append(
            {
                "name": entry.name,
                "arch": entry.arch,
                "scale": entry.scale,
                "parameters": count_parameters(build_model(entry.arch, entry.args)),
                "source": entry.source,
                "licence": entry.licence.split(" ")[0],
                "cached": is_cached(entry),
                "url": entry.url,
                "description": entry.description,
                "reported_psnr": entry.reported,
            }
        )
    return rows


def run(args: argparse.Namespace) -> int:
    rows = _pretrained_rows() if args.pretrained else _preset_rows()
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(row["name"]) for row in rows)
    if args.pretrained:
        print(
            f"{'name':<{width}}  {'arch':<8}  {'scale':>5}  {'parameters':>11}  {'source':<8}  {'licence':<10}  cached"
        )
        for row in rows:
            print(
                f"{row['name']:<{width}}  {row['arch']:<8}  {'x' + str(row['scale']):>5}  {row['parameters']:>11,}  "
                f"{row['source']:<8}  {row['licence']:<10}  {'yes' if row['cached'] else 'no'}"
            )
        return 0
    print(f"{'name':<{width}}  {'scale':>5}  {'parameters':>11}  description")
    for row in rows:
        print(f"{row['name']:<{width}}  {'x' + str(row['scale']):>5}  {row['parameters']:>11,}  {row['description']}")
    return 0
