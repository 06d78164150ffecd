"""``iotgen ingest``: move events from Event Hubs into a Delta or Iceberg table, exactly once."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any, Callable

from ...base.errors import InputError
from ...runs.ingest import SOURCES, IngestOptions, run_ingest
from ...outputs.table_target import TARGET_HELP, parse_target
from .options import add_config_option, load_config

HELP = ("ingest events from Event Hubs (AMQP or Kafka) or Kafka into a Delta or Iceberg table, exactly once "
        "(resumes from the table)")

FLAGS = {
    "consumer_group": "INGEST_CONSUMER_GROUP", "max_batch_events": "INGEST_MAX_BATCH_EVENTS",
    "max_batch_seconds": "INGEST_MAX_BATCH_SECONDS", "until_idle": "INGEST_UNTIL_IDLE",
    "available_now": "INGEST_AVAILABLE_NOW",
    "json_column_mode": "JSON_COLUMN_MODE", "catalog": "ICEBERG_CATALOG_URI", "output": "OUTPUT_DIR",
    "eventhub_name": "EVENTHUB_NAME", "bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS", "topic": "KAFKA_TOPIC",
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default="eventhub", metavar="SRC",
                        help="where events come from: eventhub (AMQP: EVENTHUB_CONNECTION_STRING env var, or "
                             "EVENTHUB_NAMESPACE + EVENTHUB_NAME with Azure AD) or kafka (Event Hubs' Kafka "
                             "endpoint from the connection string, or --bootstrap-servers)")
    parser.add_argument("--bootstrap-servers", metavar="HOST:PORT", help="with --source kafka: any Kafka "
                                                                         "(KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--topic", metavar="T", help="with --source kafka: the topic (KAFKA_TOPIC)")
    parser.add_argument("--target", required=True, metavar="T", help=f"{TARGET_HELP}")
    parser.add_argument("--catalog", metavar="URI", help="Iceberg SQL catalog: sqlite:///path/catalog.db or a "
                                                         "folder (ICEBERG_CATALOG_URI; default OUTPUT_DIR/iceberg)")
    parser.add_argument("--quarantine", metavar="T", help="table for unparseable events (default: the target's "
                                                          "name + _quarantine, same format)")
    parser.add_argument("--consumer-group", metavar="CG", help="Event Hubs consumer group (INGEST_CONSUMER_GROUP)")
    parser.add_argument("--max-batch-events", metavar="N", help="events per commit at most (INGEST_MAX_BATCH_EVENTS)")
    parser.add_argument("--max-batch-seconds", metavar="S",
                        help="commit buffered events at least this often (INGEST_MAX_BATCH_SECONDS)")
    parser.add_argument("--until-idle", metavar="S", help="stop after S seconds without events (INGEST_UNTIL_IDLE)")
    parser.add_argument("--available-now", action="store_const", const=True, default=None,
                        help="ingest what the event hub holds at the start, then stop (INGEST_AVAILABLE_NOW)")
    parser.add_argument("--json-column-mode", metavar="M", help="Delta json_column: variant | string "
                                                                "(JSON_COLUMN_MODE)")
    parser.add_argument("--eventhub-name", metavar="HUB", help="event hub, if the connection string has no "
                                                               "EntityPath (EVENTHUB_NAME)")
    parser.add_argument("--output", "-o", metavar="DIR", help="base folder for the default Iceberg catalog "
                                                              "(OUTPUT_DIR)")
    add_config_option(parser)


def run(args: argparse.Namespace) -> int:
    if args.source not in SOURCES:
        raise InputError(f"--source must be one of {', '.join(SOURCES)}, got {args.source!r}")
    config = load_config(args, FLAGS)

    def table(text: str):
        iceberg = text.strip().lower().startswith("iceberg:")
        catalog = (args.catalog or config.iceberg_catalog_uri or None) if iceberg else args.catalog
        return parse_target(text, catalog=catalog, output_dir=config.output_dir,
                            json_column_mode=config.json_column_mode)

    target = table(args.target)
    quarantine = table(args.quarantine) if args.quarantine else None
    if quarantine is not None and quarantine.format != target.format:
        raise InputError("--quarantine must be a table of the same format as --target")
    options = IngestOptions.from_config(config)
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDK's INFO lines drown the ingest's own
    stop = threading.Event()
    previous: dict[signal.Signals, Callable[[int, FrameType | None], Any] | int | None] = {}  # signal.signal's

    def request_stop(signum, frame) -> None:  # first Ctrl-C / SIGTERM: stop cleanly; a second one: hard stop
        stop.set()
        print("iotgen ingest: stopping: committing what is buffered (Ctrl-C again to abort)", file=sys.stderr)
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, request_stop)
    try:
        summary = run_ingest(config, target, options, stop=stop, quarantine=quarantine, source=args.source)
    except ConnectionError as exc:
        print(f"iotgen ingest: error: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for line in summary.lines():
        print(line, file=sys.stderr)
    return 0
