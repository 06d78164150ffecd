"""The ``iotgen`` command line: one module per subcommand in this package.

A subcommand module defines ``HELP`` (one line), ``configure(parser)`` and ``run(args) -> int``. Invalid input
raises :class:`~iotgen.base.errors.InputError`; :func:`main` prints it as one line and exits with status 2, before
anything is written. Any other exception is a bug: :func:`main` prints its traceback and exits with status 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import traceback
from typing import NoReturn, Sequence

from ...base.errors import InputError

# name -> module; add a line when adding a subcommand module.
COMMANDS = {
    "generate": "iotgen.faces.cli.generate",
    "schema": "iotgen.faces.cli.schema",
    "stream": "iotgen.faces.cli.stream",
    "emulator": "iotgen.faces.cli.emulator",
    "spec": "iotgen.faces.cli.spec",
    "ingest": "iotgen.faces.cli.ingest",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # usage errors: one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from ...base.version import __version__

    parser = _Parser(prog="iotgen", description="Synthetic IoT events for demos and pipeline tests.")
    parser.add_argument("--version", action="version", version=f"iotgen {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(command)
        _show_allowed(command)
        command.set_defaults(_run=module.run)
    return parser


def _show_allowed(command: argparse.ArgumentParser) -> None:
    """Every flag whose help names a numeric or time Config parameter, ``(NUM_EVENTS)``, also says its range:
    ``(NUM_EVENTS: 0 - 10^12)``, from the parameter's own definition (``iotgen.settings.config.allowed``); choices are
    already listed in the help texts."""
    import re

    from ...settings.config import PARAMETERS, allowed

    def with_range(match: re.Match) -> str:
        name = match.group(1)
        shown = name in PARAMETERS and any(c.isdigit() for c in allowed(name))
        return f"({name}: {allowed(name)}" if shown else match.group(0)

    for action in command._actions:
        if action.help and action.help is not argparse.SUPPRESS:
            action.help = re.sub(r"\(([A-Z][A-Z0-9_]+)(?=[),;])", with_range, action.help, count=1)


def main(argv: Sequence[str] | None = None) -> int:
    from ...base.allocator import retain_freed_memory

    retain_freed_memory()  # before pyarrow loads (see iotgen.base.allocator): a third faster on VMs
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _terminated)  # clean up as on Ctrl-C (a subcommand may handle it itself)
    try:
        return int(args._run(args) or 0)
    except InputError as exc:
        print(f"iotgen {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"iotgen {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"iotgen {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except Exception:  # noqa: BLE001 - a bug (a ValueError from numpy or pyarrow included): show where
        traceback.print_exc()
        print(f"iotgen {args.command}: internal error (a bug: please report it with the traceback above)",
              file=sys.stderr)
        return 1


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C, so temporary files are removed and workers stopped."""


def _terminated(signum, frame) -> None:
    raise Terminated


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
