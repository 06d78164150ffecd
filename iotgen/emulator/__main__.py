"""Command line entry point: ``python -m iotgen.emulator`` (also ``iotgen emulator``).

Prints one ready line (with the key redacted) once it accepts connections (AMQP and Kafka)::

    iotgen emulator ready: port=5672 kafka-port=9092 hubs=iot-events connection-string=Endpoint=sb://...;SharedAccessKey=<redacted>;...

SIGTERM and SIGINT shut it down cleanly (pending writes are made durable first).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import NoReturn

from .server import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_KAFKA_PORT,
    DEFAULT_KEY,
    DEFAULT_KEY_NAME,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_PARTITION_BYTES,
    KEY_ENV_VAR,
    MAX_IDLE_TIMEOUT,
    READY_PREFIX,
    EventHubsEmulator,
)
from .store import DataDirInUse, StoreError, validate_hub_name

PROG = "iotgen emulator"


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser that reports errors as a single line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _int_in(low: int, high: int) -> type[int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse  # type: ignore[return-value]


def _kafka_port(text: str) -> str:
    """``--kafka-port``: a port, 0 (no Kafka endpoint) or ``any`` (a free port; the ready line tells which).
    Kept as text (``iotgen emulator`` passes it on); :func:`kafka_listen_port` turns it into a port."""
    text = str(text).strip().lower()
    return text if text == "any" else str(_int_in(0, 65535)(text))


def kafka_listen_port(value: str | int) -> int | None:
    """The port to listen on for a ``--kafka-port`` value: None for no Kafka endpoint, 0 for any free port."""
    value = str(value)
    return 0 if value == "any" else (int(value) or None)


def _idle_timeout(text: str) -> float:
    """Seconds, > 0 and small enough for the AMQP idle-time-out field (a uint of milliseconds)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or not 0 < value <= MAX_IDLE_TIMEOUT:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0 and <= {MAX_IDLE_TIMEOUT}, got {text!r}")
    return value


def _hub_name(text: str) -> str:
    try:
        return validate_hub_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog=PROG,
        description="Run a local Azure Event Hubs emulator: AMQP 1.0 (for the azure-eventhub SDK) and Kafka "
                    "(for Kafka clients), over the same events.",
        epilog=f"The key may also be given in the {KEY_ENV_VAR} environment variable. Without one, a fixed "
               "public development key is used: it is for local use only.",
    )
    parser.add_argument("--host", default="127.0.0.1", type=_non_empty,
                        help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", default=5672, type=_int_in(0, 65535),
                        help="port to listen on, 0 for any free port (default: 5672)")
    parser.add_argument("--kafka-port", default=str(DEFAULT_KAFKA_PORT), type=_kafka_port, metavar="PORT",
                        help="port of the Kafka endpoint (SASL_PLAINTEXT, PLAIN with user $ConnectionString and the "
                             "connection string as password); 0: none; any: a free port "
                             f"(default: {DEFAULT_KAFKA_PORT})")
    parser.add_argument("--hub", action="append", type=_hub_name, metavar="NAME",
                        help="event hub name; repeat for several hubs (default: iot-events)")
    parser.add_argument("--partitions", default=4, type=_int_in(1, 1024),
                        help="partitions per event hub (default: 4)")
    parser.add_argument("--key-name", default=DEFAULT_KEY_NAME, type=_non_empty,
                        help=f"shared access key name (default: {DEFAULT_KEY_NAME})")
    parser.add_argument("--key", default=None, type=_non_empty,
                        help=f"shared access key (default: ${KEY_ENV_VAR}, else a public development key)")
    parser.add_argument("--data-dir", default=None,
                        help="persist events in this directory (default: in memory only)")
    parser.add_argument("--max-message-size", default=DEFAULT_MAX_MESSAGE_SIZE, type=_int_in(1024, 256 * 1024 * 1024),
                        help=f"largest accepted message or batch in bytes (default: {DEFAULT_MAX_MESSAGE_SIZE})")
    parser.add_argument("--max-partition-mb", default=DEFAULT_MAX_PARTITION_BYTES // 2**20,
                        type=_int_in(1, 1024 * 1024),
                        help="memory kept per partition in MiB; beyond it the oldest events are dropped, as "
                             f"with Event Hubs retention (default: {DEFAULT_MAX_PARTITION_BYTES // 2**20})")
    parser.add_argument("--idle-timeout", default=DEFAULT_IDLE_TIMEOUT, type=_idle_timeout,
                        help=f"close connections silent for this many seconds, at most {MAX_IDLE_TIMEOUT} "
                             f"(default: {DEFAULT_IDLE_TIMEOUT:g})")
    parser.add_argument("--max-connections", default=DEFAULT_MAX_CONNECTIONS, type=_int_in(1, 100_000),
                        help=f"connections open at once; more are refused (default: {DEFAULT_MAX_CONNECTIONS})")
    parser.add_argument("--parent-pid", type=_int_in(1, 2**31 - 1), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--log-level", default="WARNING",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="logging level (default: WARNING)")
    return parser


def _stop_with_parent(parent_pid: int) -> None:
    """SIGTERM ourselves (a clean stop: pending writes made durable) once ``parent_pid`` is gone: a notebook
    kernel or a test run that dies takes its local endpoint with it."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="emulator-parent-watch", daemon=True).start()


async def _serve(emulator: EventHubsEmulator, hubs: Sequence[str], parent_pid: int | None = None) -> None:
    await emulator.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if parent_pid is not None:
        _stop_with_parent(parent_pid)
    try:
        kafka = "" if emulator.kafka_port is None else f" kafka-port={emulator.kafka_port}"
        print(f"{READY_PREFIX} port={emulator.port}{kafka} hubs={','.join(hubs)} "
              f"connection-string={emulator.connection_string(hubs[0], redact_key=True)}", flush=True)
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await emulator.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator until SIGTERM/SIGINT and return the exit status (1: cannot listen).

    Bad arguments print one line naming the parameter and raise ``SystemExit(2)``.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    hubs = args.hub or ["iot-events"]
    if len({h.lower() for h in hubs}) != len(hubs):
        parser.error("argument --hub: the same event hub name is given twice")
    key = args.key or os.environ.get(KEY_ENV_VAR) or DEFAULT_KEY
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        emulator = EventHubsEmulator(
            hubs=hubs, partitions=args.partitions, host=args.host, port=args.port, key_name=args.key_name,
            key=key, data_dir=args.data_dir, max_message_size=args.max_message_size, idle_timeout=args.idle_timeout,
            max_partition_bytes=args.max_partition_mb * 2**20, max_connections=args.max_connections,
            kafka_port=kafka_listen_port(args.kafka_port))
    except DataDirInUse as exc:
        print(f"{PROG}: error: argument --data-dir: {exc}", file=sys.stderr)
        return 1
    except StoreError as exc:
        parser.error(f"argument --partitions: {exc}")
    except OSError as exc:
        parser.error(f"argument --data-dir: cannot use {args.data_dir!r}: {exc.strerror or exc}")
    try:
        asyncio.run(_serve(emulator, hubs, args.parent_pid))
    except OSError as exc:
        ports = f"{args.port}" if kafka_listen_port(args.kafka_port) is None else \
            f"{args.port} (AMQP) and {args.kafka_port} (Kafka)"
        print(f"{PROG}: error: cannot listen on {args.host}:{ports}: {exc.strerror or exc}", file=sys.stderr)
        emulator.store.close()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
