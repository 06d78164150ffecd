"""``iotgen emulator``: run the local Event Hubs emulator in the foreground (``iotgen.emulator``).

The options are the emulator's own (``python -m iotgen.emulator --help``); they are parsed here so that
``iotgen emulator --help`` lists them and bad values are reported like any other subcommand's, then the
emulator's entry point runs with the same arguments.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

HELP = ("run a local Azure Event Hubs emulator (AMQP 1.0 and Kafka on 127.0.0.1) for the SDK, Kafka clients, "
        "notebooks and tests")


def _emulator_parser() -> argparse.ArgumentParser:
    from ...emulator.__main__ import build_parser

    return build_parser()


def configure(parser: argparse.ArgumentParser) -> None:
    source = _emulator_parser()
    parser.description = source.description
    parser.epilog = source.epilog
    for action in source._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        converter: dict[str, Any] = {} if action.type is None else {"type": action.type}  # None: the default, str
        parser.add_argument(*action.option_strings, action=type(action), dest=action.dest, default=action.default,
                            choices=action.choices, help=action.help, metavar=action.metavar, **converter)


def emulator_argv(args: argparse.Namespace) -> list[str]:
    """The emulator's command line for the options given (values left at their default are not repeated)."""
    argv: list[str] = []
    for action in _emulator_parser()._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        value = getattr(args, action.dest, action.default)
        if value is None or value == action.default:
            continue
        for item in value if isinstance(value, list) else [value]:
            argv += [action.option_strings[-1], str(item)]
    return argv


def run(args: argparse.Namespace) -> int:
    from ...emulator.__main__ import main

    argv = emulator_argv(args)
    if "--log-level" in argv:  # `iotgen` has configured logging already: the emulator's basicConfig is a no-op
        logging.getLogger().setLevel(args.log_level)
    return main(argv)
