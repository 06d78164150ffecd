"""``iotgen schema``: the event schema as Spark DDL, Arrow or JSON Schema."""

from __future__ import annotations

import argparse

from ...settings.schema import render

HELP = "print the event schema as Spark DDL, Arrow schema or JSON Schema"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("spark", "arrow", "jsonschema", "all"), default="all",
                        help="which form to print (default: all three, each under a heading)")


def run(args: argparse.Namespace) -> int:
    kinds = ("spark", "arrow", "jsonschema") if args.format == "all" else (args.format,)
    for kind in kinds:
        if len(kinds) > 1:
            print(f"-- {kind}")
        print(render(kind))
    return 0
