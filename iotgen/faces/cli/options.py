"""Options shared by subcommands: ``--config FILE`` and flags that map onto Config parameters."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ...settings.config import Config


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML file of parameters (also: IOTGEN_CONFIG env var)")


def load_config(args: argparse.Namespace, flags: dict[str, str]) -> Config:
    """Config from ``--config`` (or ``IOTGEN_CONFIG``), env vars and the given ``{dest: PARAM_NAME}`` flags."""
    cli: dict[str, Any] = {param: getattr(args, dest, None) for dest, param in flags.items()}
    config_file = getattr(args, "config", None) or os.environ.get("IOTGEN_CONFIG") or None
    return Config.load(config_file=config_file, cli=cli)
