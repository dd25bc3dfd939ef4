"""`sisr models`: the presets with their parameter counts."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list the network presets", description="List the network presets.")
    parser.add_argument("--format", choices=["table", "json"], default="table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models import count_parameters, create_model, list_presets

    rows = []
    for preset in list_presets():
        parameters = count_parameters(create_model(preset.name))
        rows.append({"name": preset.name, "arch": preset.arch, "scale": preset.scale,
                     "parameters": parameters, "description": preset.description})
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(row["name"]) for row in rows)
    print(f"{'name':<{width}}  {'scale':>5}  {'parameters':>11}  description")
    for row in rows:
        print(f"{row['name']:<{width}}  {'x' + str(row['scale']):>5}  {row['parameters']:>11,}  {row['description']}")
    return 0
