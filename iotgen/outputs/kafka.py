"""Kafka sink: Event Hubs' Kafka endpoint, the local emulator's, or any Kafka, through librdkafka (confluent-kafka).

:class:`KafkaProducer` has the same face as :class:`~iotgen.outputs.eventhubs.EventHubProducer` (``prepare``,
``submit``, ``settle``, ``stats``), so :func:`iotgen.runs.stream.stream_events` paces, counts and resumes
a Kafka stream exactly like an AMQP one.

* **Where** (:func:`kafka_target_from_config`): ``KAFKA_BOOTSTRAP_SERVERS`` and ``KAFKA_TOPIC``, or, from an
  Event Hubs connection string, ``<namespace>.servicebus.windows.net:9093`` with SASL_SSL, mechanism PLAIN, user
  ``$ConnectionString`` and the connection string as password (for the local emulator, its host and port 9092
  with SASL_PLAINTEXT); the topic is the event hub. Any Kafka: SASL PLAIN or SCRAM (``KAFKA_SASL_USERNAME``,
  the ``KAFKA_SASL_PASSWORD`` env var), TLS (``KAFKA_SSL_CA_LOCATION``).
* **Records**: value = the event's JSON, key = ``sensor_id`` (``PARTITION_KEY=none``: no key), headers
  ``content-type``, ``message-id`` (the ``event_id``), ``schema_version``, ``device_type`` as UTF-8 (the names
  Event Hubs shows AMQP events' properties under); partitions by murmur2 of the key, as Java clients (and
  Spark) do, so one device's events stay in order in one partition.
* **Delivery**: idempotent producer (``acks=all``; librdkafka's own retries never duplicate or reorder), each
  event counted acknowledged or failed from its delivery report; ``SEND_TIMEOUT_SEC`` bounds a request,
  ``SEND_RETRIES`` the retries, and an event not acknowledged within their product fails (never dropped
  silently: the summary names the first failed event as the resume point).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..base.errors import InputError
from ..base.version import __version__
from ..formats.encoding import json_lines
from ..settings.config import Config, Secret
from ..settings.schema import SCHEMA_VERSION
from ..formats.eventhub_messages import EVENT_MESSAGES
from .eventhubs import ChunkOutcome, SendStats, parse_connection_string, redact

_LOGGER = logging.getLogger(__name__)

EVENTHUBS_KAFKA_PORT = 9093
EMULATOR_KAFKA_PORT = 9092
CONNECTION_STRING_USER = "$ConnectionString"
CONTENT_TYPE = b"application/json"
#: librdkafka's queue for messages not yet delivered (events); ``produce`` waits (polls) when it is full.
QUEUE_MESSAGES = 500_000


class KafkaConfigError(InputError):
    """The Kafka settings are wrong: missing, rejected credentials, unknown topic."""


class KafkaUnavailable(ConnectionError):
    """The Kafka endpoint cannot be reached."""


def kafka_module():
    try:
        import confluent_kafka
    except ImportError:
        raise KafkaConfigError("the Kafka protocol needs the confluent-kafka package: "
                               "pip install 'iotgen[kafka]' (or confluent-kafka)") from None
    return confluent_kafka


# ---- where to send ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KafkaTarget:
    """A topic and how to reach it. Shows no secret: see :attr:`description`."""

    bootstrap: str
    topic: str
    security_protocol: str  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism: str = "PLAIN"
    sasl_username: str = ""
    sasl_password: Secret | None = field(default=None, repr=False)
    ssl_ca_location: str = ""
    kind: str = "Kafka"  # "Event Hubs", "local emulator" or "Kafka"

    @property
    def description(self) -> str:
        auth = self.security_protocol + (f" {self.sasl_mechanism}" if "SASL" in self.security_protocol else "")
        return f"kafka://{self.bootstrap}/{self.topic} ({self.kind}, {auth})"

    @property
    def namespace(self) -> str:
        """The first bootstrap server (``<namespace>.servicebus.windows.net:9093`` for Event Hubs). With
        :attr:`eventhub`, what identifies the stream in the ingest's table offsets: an event hub read through
        Kafka has the same identity (host and name) as read through AMQP, and offset = sequence number."""
        return self.bootstrap.split(",")[0].strip()

    @property
    def eventhub(self) -> str:
        """The topic (the event hub, on Event Hubs)."""
        return self.topic

    def client_settings(self, **extra: Any) -> dict[str, Any]:
        """librdkafka settings to connect (contains the password: never print them)."""
        settings: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap, "security.protocol": self.security_protocol,
            "client.id": f"iotgen/{__version__}",
            # Azure's recommendations for its Kafka endpoint (it closes idle connections after 240 s).
            "metadata.max.age.ms": 180_000, "connections.max.idle.ms": 180_000, "socket.keepalive.enable": True,
        }
        if "SASL" in self.security_protocol:
            settings.update({"sasl.mechanism": self.sasl_mechanism, "sasl.username": self.sasl_username,
                             "sasl.password": self.sasl_password.reveal() if self.sasl_password else ""})
        if self.ssl_ca_location:
            settings["ssl.ca.location"] = self.ssl_ca_location
        settings.update(extra)
        return settings


def kafka_target_from_config(config: Config) -> KafkaTarget:
    """The Kafka topic a Config points at: ``KAFKA_*``, else Event Hubs' Kafka endpoint from the connection string.

    Raises :class:`KafkaConfigError` naming the parameter when something needed is missing.
    """
    secret = config.eventhub_connection_string
    fields = parse_connection_string(secret.reveal()) if secret is not None else {}
    kind = "Kafka"
    bootstrap = config.kafka_bootstrap_servers.strip()
    host = ""
    local = fields.get("usedevelopmentemulator", "").lower() == "true"
    if fields:
        match = re.match(r"^(?:sb|amqps?)://([^/;:]+)(?::\d+)?/?$", fields.get("endpoint", ""), re.IGNORECASE)
        if not match:
            raise KafkaConfigError("EVENTHUB_CONNECTION_STRING must have Endpoint=sb://<namespace host>/")
        host = match.group(1)
        kind = "local emulator" if local else "Event Hubs"
    if not bootstrap:
        if not host:
            raise KafkaConfigError("KAFKA_BOOTSTRAP_SERVERS must be set (or EVENTHUB_CONNECTION_STRING, for Event "
                                   "Hubs' Kafka endpoint)")
        bootstrap = f"{host}:{EMULATOR_KAFKA_PORT if local else EVENTHUBS_KAFKA_PORT}"
    if not re.match(r"^[^\s,:]+:\d+(,[^\s,:]+:\d+)*$", bootstrap):
        raise KafkaConfigError(f"KAFKA_BOOTSTRAP_SERVERS must be host:port[,host:port...], got {bootstrap!r}")
    topic = config.kafka_topic.strip() or fields.get("entitypath", "") or config.eventhub_name
    if not topic:
        raise KafkaConfigError("KAFKA_TOPIC must be set (or EVENTHUB_NAME, or an EntityPath in the connection "
                               "string)")
    username = config.kafka_sasl_username or (CONNECTION_STRING_USER if secret is not None else "")
    password = config.kafka_sasl_password or (secret if username == CONNECTION_STRING_USER else None)
    protocol = config.kafka_security_protocol
    if protocol == "auto":
        if secret is not None and username == CONNECTION_STRING_USER:
            protocol = "sasl_plaintext" if local else "sasl_ssl"
        else:
            protocol = "sasl_ssl" if username else "plaintext"
    protocol = protocol.upper()
    if "SASL" in protocol and (not username or password is None):
        raise KafkaConfigError(f"KAFKA_SECURITY_PROTOCOL {protocol} needs KAFKA_SASL_USERNAME and the "
                               "KAFKA_SASL_PASSWORD environment variable (or EVENTHUB_CONNECTION_STRING)")
    return KafkaTarget(bootstrap, topic, protocol, config.kafka_sasl_mechanism.upper(), username, password,
                       config.kafka_ssl_ca_location, kind)


def check_topic(client: Any, target: KafkaTarget, timeout: float, errors: list) -> list[int]:
    """The topic's partitions; a clear error for rejected credentials (at once), an unknown topic, or no answer
    within ``timeout`` seconds. ``errors`` is the list the client's ``error_cb`` appends to."""
    kafka = kafka_module()
    deadline = time.monotonic() + timeout
    auth_codes = (kafka.KafkaError._AUTHENTICATION, kafka.KafkaError.SASL_AUTHENTICATION_FAILED)
    while True:
        try:
            metadata = client.list_topics(target.topic, timeout=min(1.0, max(0.1, deadline - time.monotonic())))
            break
        except kafka.KafkaException as exc:
            client.poll(0.1)  # serves error_cb
            auth = [e for e in errors if e.code() in auth_codes]
            if auth:
                what = "EVENTHUB_CONNECTION_STRING" if target.sasl_username == CONNECTION_STRING_USER else \
                    "KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD"
                raise KafkaConfigError(f"{what}: authentication to {target.description} failed "
                                       f"({redact(auth[0].str())})") from None
            if time.monotonic() >= deadline:
                detail = redact(errors[-1].str()) if errors else redact(exc)
                raise KafkaUnavailable(f"cannot reach the Kafka endpoint {target.description} within {timeout:g} s: "
                                       f"{detail}") from None
    topic = metadata.topics.get(target.topic)
    if topic is None or topic.error is not None:
        reason = topic.error.str() if topic is not None and topic.error is not None else "not found"
        raise KafkaConfigError(f"KAFKA_TOPIC: topic {target.topic!r} at {target.bootstrap}: {reason}")
    return sorted(topic.partitions)


class _QuietLog:
    """librdkafka's own log lines go to Python logging at DEBUG (``iotgen -v`` shows them); errors reach the
    user once, through the checks and the delivery reports, not as a stream of lines on stderr."""

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def log(self, level: int, message: str, *args: Any) -> None:
        self._logger.debug(message, *args)


LIBRDKAFKA_LOG = _QuietLog("iotgen.librdkafka")


# ---- what is sent ---------------------------------------------------------------------------------------------
@dataclass
class KafkaChunk:
    """Events ready to produce: values, keys and headers (no I/O done yet)."""

    first_index: int
    values: list[bytes]
    keys: list[str] | None
    event_ids: list[bytes]
    device_types: list[bytes]
    size: int
    numbers: np.ndarray | None = None  # each event's number, when they are not consecutive from first_index

    def number(self, row: int) -> int:
        """The event number of row ``row``."""
        return self.first_index + row if self.numbers is None else int(self.numbers[row])

    @property
    def count(self) -> int:
        return len(self.values)


class _Delivery:
    """Delivery reports of one chunk: every event ends acknowledged or failed. The reports arrive in the thread
    that polls the client; the producer's totals are updated when the chunk is settled."""

    def __init__(self, chunk: KafkaChunk, partitions: int) -> None:
        self.chunk = chunk
        self.pending = chunk.count
        self.acknowledged = 0
        self.bytes = 0
        self.per_partition = [0] * partitions
        self.failed: list[tuple[str, bytes]] = []  # (why, event_id)
        self.done = threading.Event()
        self.produced: Future | None = None
        if not chunk.count:
            self.done.set()

    def report(self, error: Any, message: Any) -> None:
        if error is None:
            self.acknowledged += 1
            self.bytes += len(message)
            self.per_partition[message.partition()] += 1
        else:  # which event: its message-id header (the event_id)
            self.failed.append((error.str(), dict(message.headers() or []).get("message-id", b"")))
        self.settled(1)

    def fail_unsent(self, event_ids: list[bytes], why: str) -> None:
        """Events never handed to librdkafka (the stream is stopping)."""
        self.failed.extend((why, event_id) for event_id in event_ids)
        self.settled(len(event_ids))

    def settled(self, n: int) -> None:
        self.pending -= n
        if not self.pending:
            self.done.set()

    def outcome(self) -> ChunkOutcome:
        outcome = ChunkOutcome(acknowledged=self.acknowledged, failed=len(self.failed))
        if self.failed:
            positions = {event_id: i for i, event_id in enumerate(self.chunk.event_ids)}
            first = min((positions.get(event_id, 0), why) for why, event_id in self.failed)
            outcome.first_failed = self.chunk.number(first[0])
            outcome.error = (f"{len(self.failed)} events not delivered (first event #{outcome.first_failed}): "
                             f"{redact(first[1])}")
        return outcome


# ---- the producer ----------------------------------------------------------------------------------------------
class KafkaProducer:
    """Produces prepared chunks of events to one topic with exact counts. Build it with :meth:`open`.

    ``in_flight``: chunks the stream keeps submitted before it waits for the oldest; deeper than the AMQP
    producer's 2, since librdkafka pipelines requests per broker (in one back-to-back run into a local broker, 4
    gave 83,000-86,000 events/s where 2 gave 50,000-64,000; the shared test machine's load moves both).

    ``prepare`` may run while earlier chunks are in flight; ``submit`` and ``settle`` run in one thread (the
    delivery reports are handled in it, while it polls).
    """

    in_flight = 4

    def __init__(self, client: Any, target: KafkaTarget, *, partitions: list[int], partition_key: str | None,
                 max_batch_bytes: int, send_timeout: float) -> None:
        self.client = client
        self.target = target
        self.partition_ids = [str(p) for p in partitions]
        self._partition_count = max(partitions) + 1 if partitions else 0
        self.partition_key = partition_key
        self.max_batch_bytes = max_batch_bytes
        self.send_timeout = send_timeout
        self._stats = SendStats(partitions={p: 0 for p in self.partition_ids})
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._closing = threading.Event()
        self._lane: ThreadPoolExecutor | None = None
        self._poller: threading.Thread | None = None
        self.layout = EVENT_MESSAGES  # the columns of the message-id header and the routing header

    @classmethod
    def open(cls, config: Config, target: KafkaTarget | None = None) -> "KafkaProducer":
        """Connect and check the topic (credentials, existence) before anything is sent.

        Raises :class:`KafkaConfigError` (a ``ValueError``) for wrong settings and :class:`KafkaUnavailable`
        when the endpoint does not answer within ``SEND_TIMEOUT_SEC``.
        """
        kafka = kafka_module()
        target = target or kafka_target_from_config(config)
        partition_key = None if config.partition_key == "none" else config.partition_key
        request_ms = int(config.send_timeout_sec * 1000)
        max_batch = config.max_batch_bytes or 1_000_000
        errors: list = []
        settings = target.client_settings(**{
            "enable.idempotence": True, "acks": "all", "partitioner": "murmur2_random",
            "compression.type": config.kafka_compression, "linger.ms": 5, "batch.size": max_batch,
            "queue.buffering.max.messages": QUEUE_MESSAGES, "queue.buffering.max.kbytes": 1_048_576,
            "request.timeout.ms": request_ms, "retries": config.send_retries,
            "message.timeout.ms": min(2**31 - 1, request_ms * (config.send_retries + 1)),
            "error_cb": errors.append,
        })
        try:
            client = kafka.Producer(settings, logger=LIBRDKAFKA_LOG)
        except kafka.KafkaException as exc:
            raise KafkaConfigError(f"Kafka producer settings for {target.description}: {redact(exc)}") from None
        try:
            partitions = check_topic(client, target, config.send_timeout_sec, errors)
        except BaseException:
            client.flush(0)
            raise
        return cls(client, target, partitions=partitions, partition_key=partition_key, max_batch_bytes=max_batch,
                   send_timeout=config.send_timeout_sec)

    # ---- preparing -------------------------------------------------------------------------------------------
    def prepare(self, events: pa.RecordBatch, first_index: int, bodies: pa.Array | None = None,
                numbers: np.ndarray | None = None) -> KafkaChunk:
        """The chunk's values (JSON: ``bodies``, or the rows'), keys and header values (events numbered from
        ``first_index``, or ``numbers`` when they are not consecutive). No I/O."""
        lines = json_lines(events) if bodies is None else bodies
        size = int(pc.sum(pc.binary_length(lines)).as_py() or 0)
        values = lines.cast(pa.binary()).to_pylist()
        keys = events.column(self.partition_key).to_pylist() if self.partition_key else None
        as_bytes = lambda name: pc.fill_null(events.column(name).cast(pa.string()), "").cast(pa.binary()).to_pylist()  # noqa: E731
        return KafkaChunk(first_index, values, keys, as_bytes(self.layout.message_id), as_bytes(self.layout.property),
                          size, numbers)

    # ---- sending ---------------------------------------------------------------------------------------------
    @property
    def stats(self) -> SendStats:
        with self._lock:
            return self._stats.copy()

    def stop_retrying(self) -> None:
        """Give up on what is queued (Ctrl-C, Stop): events not yet sent are counted as failed."""
        self._stop.set()
        try:
            self.client.purge(in_queue=True, in_flight=False)
        except Exception as exc:  # noqa: BLE001 - nothing more to do; the reports still settle every event
            _LOGGER.debug("purge failed: %s", exc)

    def reset(self) -> None:
        self._stop.clear()

    def submit(self, chunk: KafkaChunk) -> list[_Delivery]:
        """Queue ``chunk`` for the producing thread and return at once; :meth:`settle` waits for its delivery
        reports. (The events are handed to librdkafka in a thread of their own, so the next chunk is generated
        and encoded meanwhile; the reports are served by another thread that polls the client.)"""
        delivery = _Delivery(chunk, self._partition_count)
        with self._lock:
            self._stats.sent += chunk.count
            self._stats.batches += 1
            if self._lane is None:
                self._lane = ThreadPoolExecutor(1, thread_name_prefix="iotgen-kafka-produce")
                self._poller = threading.Thread(target=self._poll_reports, name="iotgen-kafka-reports", daemon=True)
                self._poller.start()
        delivery.produced = self._lane.submit(self._produce, chunk, delivery)
        return [delivery]

    def _poll_reports(self) -> None:
        while not self._closing.is_set():
            self.client.poll(0.05)

    def _produce(self, chunk: KafkaChunk, delivery: _Delivery) -> None:
        produce, topic = self.client.produce, self.target.topic
        report = delivery.report
        keys = chunk.keys if chunk.keys is not None else [None] * chunk.count
        content_type = ("content-type", CONTENT_TYPE)
        schema = ("schema_version", str(SCHEMA_VERSION).encode())
        routing = self.layout.property
        stop = self._stop
        for i, (value, key, event_id, device_type) in enumerate(zip(chunk.values, keys, chunk.event_ids,
                                                                       chunk.device_types)):
            if not i % 1000 and stop.is_set():
                delivery.fail_unsent(chunk.event_ids[i:], "stopped before it was sent")
                return
            headers = [content_type, ("message-id", event_id), schema, (routing, device_type)]
            while True:
                try:
                    produce(topic, value, key, on_delivery=report, headers=headers)
                    break
                except BufferError:  # the queue is full: the reports thread makes room
                    time.sleep(0.005)

    def settle(self, futures: list[_Delivery]) -> ChunkOutcome:
        """Wait until every event of a submitted chunk is acknowledged or failed (librdkafka's message time-out
        bounds the wait)."""
        total = ChunkOutcome()
        for delivery in futures:
            assert delivery.produced is not None
            delivery.produced.result()  # every event handed over (raises what producing raised)
            while not delivery.done.wait(0.2):  # short waits: Ctrl-C is seen at once
                pass
            outcome = delivery.outcome()
            with self._lock:
                stats = self._stats
                stats.acknowledged += outcome.acknowledged
                stats.failed += outcome.failed
                stats.bytes += delivery.bytes
                for partition, count in zip(self.partition_ids, delivery.per_partition):
                    stats.partitions[partition] += count
                if outcome.error is not None:
                    stats.errors.append(outcome.error)
                    _LOGGER.error("%s", outcome.error)
            total.acknowledged += outcome.acknowledged
            total.failed += outcome.failed
            if outcome.first_failed is not None:
                total.first_failed = outcome.first_failed if total.first_failed is None else \
                    min(total.first_failed, outcome.first_failed)
                total.error = total.error or outcome.error
        return total

    def close(self) -> None:
        """Deliver what is still queued (bounded by the send time-out), then stop the threads."""
        if self._lane is not None:
            self._lane.shutdown(wait=True)
        self._closing.set()
        if self._poller is not None:
            self._poller.join(10)
        deadline = time.monotonic() + max(1.0, self.send_timeout)
        while self.client.flush(0.5) and time.monotonic() < deadline:
            pass

    def __enter__(self) -> "KafkaProducer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
