"""``iotgen spec``: print the documented example spec, or check a spec file and show what it will generate."""

from __future__ import annotations

import argparse
import json
import sys

from ...base.errors import InputError
from ...spec.spec_file import describe, example_text, generator_spec, iso_time, rate_profile
from .options import add_config_option, load_config

HELP = "print a documented example generation spec (--example), or check a spec file and summarise it"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", metavar="FILE", help="spec file to check (SPEC_FILE)")
    parser.add_argument("--example", action="store_true", help="print the documented example spec (YAML)")
    parser.add_argument("--seed", metavar="S", help="seed for the summary (RANDOM_SEED)")
    parser.add_argument("--anchor-time", metavar="ISO", help="reference 'now' of the time window (ANCHOR_TIME)")
    add_config_option(parser)


def run(args: argparse.Namespace) -> int:
    if args.example:
        if args.file:
            raise InputError("give either --example or a FILE to check, not both")
        sys.stdout.write(example_text())
        return 0
    config = load_config(args, {"file": "SPEC_FILE", "seed": "RANDOM_SEED", "anchor_time": "ANCHOR_TIME"})
    if not config.spec_file:
        raise InputError("give a spec FILE to check (or SPEC_FILE), or --example to print one")
    spec = generator_spec(config if config.random_seed is not None else config.replace(random_seed=0))
    summary = {"spec_file": config.spec_file, "seed": spec.seed, **describe(spec)}
    if spec.fleet is not None:
        summary["first_event_at"] = iso_time(spec.fleet.time_of_event(spec, 0))
    profile = rate_profile(config)
    if profile is not None:  # what iotgen stream does with it
        summary["rate_profile"] = profile.describe()
    print(json.dumps(summary, indent=2))
    print(f"{config.spec_file}: valid", file=sys.stderr)
    return 0

