"""``iotgen stream``: stream events to Azure Event Hubs (or a local ``iotgen emulator``) until a stop condition.

The connection comes from the ``EVENTHUB_CONNECTION_STRING`` environment variable, or from Azure AD with
``EVENTHUB_NAMESPACE`` and ``EVENTHUB_NAME`` (``IOTGEN_*`` env vars or the ``--config`` file). Prints the
summary on stdout and a live progress line on stderr (on a terminal). Exit status: 0 when every event was
acknowledged, 1 when some could not be delivered or the endpoint cannot be reached, 2 for bad settings (wrong
key, unknown event hub, invalid flags), 130 when interrupted with Ctrl-C (after the batch in flight settled).
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from ...runs.stream import (
    ProgressLine, StreamPlan, check_changes, open_changes_producer, open_producer, stream_events,
)
from ...spec.spec_file import generator_spec
from .options import GENERATION_FLAGS, add_config_option, add_generation_options, load_config

HELP = ("stream events to Azure Event Hubs (AMQP, or its Kafka endpoint) or any Kafka (connection from "
        "EVENTHUB_CONNECTION_STRING, Azure AD, or --bootstrap-servers)")

FLAGS = {
    "events": "STREAM_EVENTS", "duration": "STREAM_DURATION_SEC", "rate": "RATE_EVENTS_PER_SEC",
    "max_mb_per_sec": "MAX_MB_PER_SEC", "ramp_up": "RAMP_UP_SEC", "rate_profile": "RATE_PROFILE",
    "batch_size": "BATCH_SIZE",
    "sleep": "SLEEP_INTERVAL_SEC", "partition_key": "PARTITION_KEY", "max_batch_bytes": "MAX_BATCH_BYTES",
    "time_mode": "STREAM_TIME_MODE", "start": "STREAM_START_EVENT",
    "eventhub": "EVENTHUB_NAME", "namespace": "EVENTHUB_NAMESPACE",
    "send_timeout": "SEND_TIMEOUT_SEC", "retries": "SEND_RETRIES",
    **GENERATION_FLAGS, "protocol": "STREAM_PROTOCOL", "bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "topic": "KAFKA_TOPIC",
    "security_protocol": "KAFKA_SECURITY_PROTOCOL", "sasl_mechanism": "KAFKA_SASL_MECHANISM",
    "sasl_username": "KAFKA_SASL_USERNAME", "ssl_ca_location": "KAFKA_SSL_CA_LOCATION",
    "compression": "KAFKA_COMPRESSION", "headers": "KAFKA_HEADERS", "changes_hub": "STREAM_CHANGES_HUB",
}


def configure(parser: argparse.ArgumentParser) -> None:
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument("--events", "-n", metavar="N", help="stop after N events (STREAM_EVENTS)")
    stop.add_argument("--duration", metavar="S", help="stop after S seconds (STREAM_DURATION_SEC)")
    parser.add_argument("--rate", metavar="EVENTS_PER_S", help="target events per second (RATE_EVENTS_PER_SEC)")
    parser.add_argument("--max-mb-per-sec", metavar="MB", help="cap on MB/s sent (MAX_MB_PER_SEC)")
    parser.add_argument("--ramp-up", metavar="S", help="reach the rate linearly over S seconds (RAMP_UP_SEC)")
    parser.add_argument("--rate-profile", metavar="P", help="off | flat | daily | bursts | daily+bursts: the rate "
                        "follows the clock, a daily curve in the devices' local time and/or bursts; parameters in "
                        "the spec's rate_profile section (RATE_PROFILE)")
    parser.add_argument("--batch-size", metavar="B", help="events per step (BATCH_SIZE, default 500)")
    parser.add_argument("--sleep", metavar="SEC", help="without --rate: one step every SEC seconds, 0 = no limit "
                                                       "(SLEEP_INTERVAL_SEC, default 1)")
    parser.add_argument("--partition-key", metavar="sensor_id|none", help="partition key (PARTITION_KEY)")
    parser.add_argument("--max-batch-bytes", metavar="BYTES", help="largest batch (MAX_BATCH_BYTES)")
    parser.add_argument("--time-mode", metavar="live|window", help="event time (STREAM_TIME_MODE, default live)")
    parser.add_argument("--start", metavar="I", help="first event index, to resume (STREAM_START_EVENT)")
    add_generation_options(parser)
    parser.add_argument("--eventhub", metavar="NAME", help="event hub name (EVENTHUB_NAME)")
    parser.add_argument("--changes-hub", "--changes-topic", dest="changes_hub", metavar="NAME",
                        help="also stream the fleet's device change feed to this event hub (Kafka: topic), each "
                             "change before the events from its commit time on; needs --time-mode window "
                             "(STREAM_CHANGES_HUB)")
    parser.add_argument("--namespace", metavar="NS", help="namespace for Azure AD auth (EVENTHUB_NAMESPACE)")
    parser.add_argument("--send-timeout", metavar="S", help="time-out of a send and of connecting "
                                                            "(SEND_TIMEOUT_SEC, default 30)")
    parser.add_argument("--retries", metavar="R", help="retries of a failing batch (SEND_RETRIES, default 8)")
    kafka = parser.add_argument_group("Kafka (--protocol kafka)")
    kafka.add_argument("--protocol", metavar="amqp|kafka", help="amqp: the azure-eventhub SDK; kafka: librdkafka "
                                                                "(STREAM_PROTOCOL, default amqp)")
    kafka.add_argument("--bootstrap-servers", metavar="HOST:PORT", help="any Kafka; default: Event Hubs' Kafka "
                                                                        "endpoint (KAFKA_BOOTSTRAP_SERVERS)")
    kafka.add_argument("--topic", metavar="T", help="topic; default: the event hub (KAFKA_TOPIC)")
    kafka.add_argument("--security-protocol", metavar="P", help="plaintext | ssl | sasl_plaintext | sasl_ssl "
                                                                "(KAFKA_SECURITY_PROTOCOL, default auto)")
    kafka.add_argument("--sasl-mechanism", metavar="M", help="plain | scram-sha-256 | scram-sha-512 "
                                                             "(KAFKA_SASL_MECHANISM); password: KAFKA_SASL_PASSWORD")
    kafka.add_argument("--sasl-username", metavar="U", help="SASL user (KAFKA_SASL_USERNAME)")
    kafka.add_argument("--ssl-ca-location", metavar="FILE", help="CA certificates, PEM (KAFKA_SSL_CA_LOCATION)")
    kafka.add_argument("--compression", metavar="C", help="none | gzip | snappy | lz4 | zstd (KAFKA_COMPRESSION)")
    kafka.add_argument("--headers", metavar="H", help="record headers: schema | all | none (KAFKA_HEADERS, default "
                                                      "schema: content-type and schema_version)")
    parser.add_argument("--no-progress", action="store_true", help="no progress line even on a terminal")
    add_config_option(parser)


def run(args: argparse.Namespace) -> int:
    config = load_config(args, FLAGS)
    StreamPlan.from_config(config)  # a bad combination fails here, before connecting
    progress = ProgressLine(sys.stderr) if sys.stderr.isatty() and not args.no_progress else None
    if config.stream_changes_hub.strip():
        check_changes(generator_spec(config))  # no fleet: fails here, before connecting
    with contextlib.ExitStack() as producers:
        try:
            producer = producers.enter_context(open_producer(config))
            changes = producers.enter_context(open_changes_producer(config)) \
                if config.stream_changes_hub.strip() else None
        except ConnectionError as exc:  # EventHubUnavailable, KafkaUnavailable: nothing answers
            print(f"iotgen stream: error: {exc}", file=sys.stderr)
            return 1
        print(f"streaming to {producer.target.description}"
              + (f", device changes to {changes.target.description}" if changes is not None else ""), file=sys.stderr)
        try:
            summary = stream_events(config, producer, on_progress=progress, changes_producer=changes)
        finally:
            if progress is not None:
                progress.close()
    print(summary)
    if not summary.ok:
        return 1
    return 130 if summary.stopped_by == "interrupted" else 0
