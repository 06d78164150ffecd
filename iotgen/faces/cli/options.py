"""Options shared by subcommands: ``--config FILE`` and flags that map onto Config parameters."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ...settings.config import Config


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML file of parameters (also: IOTGEN_CONFIG env var)")


#: The flags of what is generated, the same for ``iotgen generate`` and ``iotgen stream``: {dest: PARAMETER}.
GENERATION_FLAGS = {"seed": "RANDOM_SEED", "sensors": "NUM_SENSORS", "spec": "SPEC_FILE", "profile": "PROFILE",
                    "devices": "DEVICE_COUNT", "registry": "DEVICE_REGISTRY", "cdc_layout": "CDC_LAYOUT"}


def add_generation_options(parser: argparse.ArgumentParser) -> None:
    """``--seed``, ``--sensors``, ``--spec``, ``--profile``, ``--devices``, ``--registry``, ``--cdc-layout``
    (:data:`GENERATION_FLAGS`)."""
    parser.add_argument("--seed", metavar="S", help="seed for identical events (RANDOM_SEED)")
    parser.add_argument("--sensors", metavar="N", help="distinct sensor_id values (NUM_SENSORS)")
    parser.add_argument("--spec", metavar="FILE", help="generation spec: catalogs, fleet, scenarios (SPEC_FILE)")
    parser.add_argument("--profile", metavar="P", help="independent | fleet (PROFILE; default: the spec's)")
    parser.add_argument("--devices", metavar="N", help="devices of the fleet profile (DEVICE_COUNT)")
    parser.add_argument("--registry", metavar="BOOL", help="fleet: the device registry and its change feed, which "
                                                           "the events follow (DEVICE_REGISTRY: true | false)")
    parser.add_argument("--cdc-layout", metavar="L", help="the change feed's layout: flat | debezium (CDC_LAYOUT)")


def load_config(args: argparse.Namespace, flags: dict[str, str]) -> Config:
    """Config from ``--config`` (or ``IOTGEN_CONFIG``), env vars and the given ``{dest: PARAM_NAME}`` flags."""
    cli: dict[str, Any] = {param: getattr(args, dest, None) for dest, param in flags.items()}
    config_file = getattr(args, "config", None) or os.environ.get("IOTGEN_CONFIG") or None
    return Config.load(config_file=config_file, cli=cli)
