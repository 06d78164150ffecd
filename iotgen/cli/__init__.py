"""The ``iotgen`` command line: one module per subcommand in this package.

A subcommand module defines ``HELP`` (one line), ``configure(parser)`` and ``run(args) -> int``. Invalid input
raises ``ValueError``; :func:`main` prints it as one line and exits with status 2, before anything is written.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

# name -> module; add a line when adding a subcommand module.
COMMANDS = {
    "generate": "iotgen.cli.generate",
    "schema": "iotgen.cli.schema",
    "stream": "iotgen.cli.stream",
    "emulator": "iotgen.cli.emulator",
    "spec": "iotgen.cli.spec",
    "ingest": "iotgen.cli.ingest",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors: one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(prog="iotgen", description="Synthetic IoT events for demos and pipeline tests.")
    parser.add_argument("--version", action="version", version=f"iotgen {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ..allocator import retain_freed_memory

    retain_freed_memory()  # before pyarrow loads (see iotgen.allocator): a third faster on VMs
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args._run(args) or 0)
    except ValueError as exc:
        print(f"iotgen {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"iotgen {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
