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
  (``KAFKA_HEADERS``, :func:`record_headers`) ``content-type`` and ``schema_version`` as UTF-8, with ``all``
  also ``message-id`` (the ``event_id``) and ``device_type`` (the names Event Hubs shows AMQP events'
  properties under); the partition is murmur2 of the key, as Java clients (and
  Spark, and librdkafka's ``murmur2_random``) pick it, computed here for a whole chunk at once, so one device's
  events stay in order in one partition; events without a key are spread over the partitions in runs.
* **Delivery**: idempotent producer (``acks=all``; librdkafka's own retries never duplicate or reorder).
  librdkafka reports failed events only (``delivery.report.only.error``: no Python runs for a delivered event);
  a chunk is settled when librdkafka has reported on everything handed to it up to that chunk (its queue is
  empty), and then each of its events is acknowledged or, with a report, failed. ``SEND_TIMEOUT_SEC`` bounds a
  request, ``SEND_RETRIES`` the retries, and an event not acknowledged within their product fails (never
  dropped silently: the summary names the first failed event as the resume point).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice, repeat
from operator import length_hint
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..base.errors import InputError
from ..base.version import __version__
from ..formats.encoding import json_lines
from ..settings.config import Config, Secret
from ..settings.schema import SCHEMA_VERSION
from ..formats.eventhub_messages import EVENT_MESSAGES, MessageLayout
from .eventhubs import ChunkOutcome, SendStats, parse_connection_string, redact

_LOGGER = logging.getLogger(__name__)

EVENTHUBS_KAFKA_PORT = 9093
EMULATOR_KAFKA_PORT = 9092
CONNECTION_STRING_USER = "$ConnectionString"
CONTENT_TYPE = b"application/json"
#: librdkafka's queue for messages not yet delivered (events); ``produce`` waits (polls) when it is full.
QUEUE_MESSAGES = 500_000
#: Events handed to librdkafka between two looks at the stop flag.
PRODUCE_STEP = 2000


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


#: ``Endpoint`` of an Event Hubs connection string: the namespace host (an optional port is the AMQP one).
_ENDPOINT = re.compile(r"^(?:sb|amqps?)://([^/;:?#\s]+)(?::\d+)?/?$", re.IGNORECASE)
_BOOTSTRAP = re.compile(r"^[^\s,:]+:\d+(,[^\s,:]+:\d+)*$")


@dataclass(frozen=True)
class KafkaEndpoint:
    """Where a Kafka client connects: ``bootstrap`` (host:port[,...]) and what it is (``kind``: "Event Hubs",
    "local emulator" or "Kafka"); ``host`` is the connection string's namespace host, if any."""

    bootstrap: str
    kind: str = "Kafka"
    host: str = ""

    @property
    def local(self) -> bool:
        return self.kind == "local emulator"

    @property
    def sasl_protocol(self) -> str:
        """How to log in with the connection string: SASL over TLS (Event Hubs, port 9093), over plain TCP for
        the local emulator (as Microsoft's emulator: port 9092)."""
        return "SASL_PLAINTEXT" if self.local else "SASL_SSL"


def kafka_endpoint(fields: dict[str, str], bootstrap_servers: str = "") -> KafkaEndpoint:
    """The Kafka endpoint of an Event Hubs connection string (its fields, from :func:`parse_connection_string`;
    empty for any other Kafka) and the configured ``bootstrap_servers`` (KAFKA_BOOTSTRAP_SERVERS), used by the
    producer, the ingest and Spark's Kafka route alike.

    ``Endpoint=sb://<namespace>.servicebus.windows.net/`` gives ``<namespace>.servicebus.windows.net:9093``
    (Event Hubs); with ``UseDevelopmentEmulator=true`` the local emulator's ``<host>:9092`` (any host, port
    dropped: it is the AMQP one); ``bootstrap_servers``, when set, replaces host:port (the kind stays). Raises
    :class:`KafkaConfigError` naming the parameter.
    """
    local = fields.get("usedevelopmentemulator", "").lower() == "true"
    host, kind = "", "Kafka"
    if fields:
        endpoint = fields.get("endpoint", "").strip()
        match = _ENDPOINT.match(endpoint)
        host = match.group(1) if match else ""
        if not host or ("." not in host and not local):
            raise KafkaConfigError("EVENTHUB_CONNECTION_STRING must have Endpoint=sb://<namespace>.servicebus."
                                   "windows.net/ (the local emulator's: sb://<host>[:port] with "
                                   f"UseDevelopmentEmulator=true), got Endpoint={endpoint!r}")
        kind = "local emulator" if local else "Event Hubs"
    bootstrap = bootstrap_servers.strip()
    if not bootstrap:
        if not host:
            raise KafkaConfigError("KAFKA_BOOTSTRAP_SERVERS must be set (or EVENTHUB_CONNECTION_STRING, for Event "
                                   "Hubs' Kafka endpoint)")
        bootstrap = f"{host}:{EMULATOR_KAFKA_PORT if local else EVENTHUBS_KAFKA_PORT}"
    if not _BOOTSTRAP.match(bootstrap):
        raise KafkaConfigError(f"KAFKA_BOOTSTRAP_SERVERS must be host:port[,host:port...], got {bootstrap!r}")
    return KafkaEndpoint(bootstrap, kind, host)


def kafka_target_from_config(config: Config) -> KafkaTarget:
    """The Kafka topic a Config points at: ``KAFKA_*``, else Event Hubs' Kafka endpoint from the connection string.

    Raises :class:`KafkaConfigError` naming the parameter when something needed is missing.
    """
    secret = config.eventhub_connection_string
    fields = parse_connection_string(secret.reveal()) if secret is not None else {}
    endpoint = kafka_endpoint(fields, config.kafka_bootstrap_servers)
    topic = config.kafka_topic.strip() or fields.get("entitypath", "") or config.eventhub_name
    if not topic:
        raise KafkaConfigError("KAFKA_TOPIC must be set (or EVENTHUB_NAME, or an EntityPath in the connection "
                               "string)")
    username = config.kafka_sasl_username or (CONNECTION_STRING_USER if secret is not None else "")
    password = config.kafka_sasl_password or (secret if username == CONNECTION_STRING_USER else None)
    protocol = config.kafka_security_protocol
    if protocol == "auto":
        if secret is not None and username == CONNECTION_STRING_USER:
            protocol = endpoint.sasl_protocol
        else:
            protocol = "sasl_ssl" if username else "plaintext"
    protocol = protocol.upper()
    if "SASL" in protocol and (not username or password is None):
        raise KafkaConfigError(f"KAFKA_SECURITY_PROTOCOL {protocol} needs KAFKA_SASL_USERNAME and the "
                               "KAFKA_SASL_PASSWORD environment variable (or EVENTHUB_CONNECTION_STRING)")
    return KafkaTarget(endpoint.bootstrap, topic, protocol, config.kafka_sasl_mechanism.upper(), username,
                       password, config.kafka_ssl_ca_location, endpoint.kind)


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
MURMUR2_SEED = 0x9747B28C
MURMUR2_M = 0x5BD1E995


def murmur2_partitions(keys: pa.Array, partitions: int) -> np.ndarray:
    """The partition of each key as Kafka's Java client (``murmur2``, Spark, librdkafka's ``murmur2_random``)
    picks it: ``(murmur2(utf-8 key) & 0x7fffffff) % partitions``, for every key at once (each distinct key hashed
    once). A null key gets partition -1 (the caller spreads those)."""
    encoded = pc.dictionary_encode(keys)
    routed = (murmur2(encoded.dictionary.cast(pa.binary())) & 0x7FFFFFFF) % partitions
    if not len(routed):  # every key null
        return np.full(len(keys), -1, dtype=np.int64)
    out = routed[pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False)]
    if encoded.null_count:
        out[~pc.is_valid(encoded.indices).to_numpy(zero_copy_only=False)] = -1
    return out.astype(np.int64)


def murmur2(values: pa.Array) -> np.ndarray:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``) of each binary value, as uint32,
    vectorised over the values (nulls hash as empty)."""
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    values = pc.fill_null(values, b"")
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32, count=n + 1, offset=values.offset * 4)
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8) if values.buffers()[2] is not None else \
        np.zeros(1, dtype=np.uint8)
    lengths = np.diff(offsets).astype(np.int64)
    width = int(-(-int(lengths.max(initial=0)) // 4) * 4) or 4
    position = offsets[:-1, None].astype(np.int64) + np.arange(width)[None, :]
    inside = np.arange(width)[None, :] < lengths[:, None]
    padded = np.where(inside, data[np.minimum(position, max(len(data) - 1, 0))], 0).astype(np.uint8)
    words = np.ascontiguousarray(padded).view("<u4").astype(np.uint32)
    m = np.uint32(MURMUR2_M)
    h = np.uint32(MURMUR2_SEED) ^ lengths.astype(np.uint32)
    blocks = lengths // 4
    with np.errstate(over="ignore"):
        for j in range(int(blocks.max(initial=0))):
            k = words[:, j] * m
            k ^= k >> np.uint32(24)
            k *= m
            h = np.where(j < blocks, (h * m) ^ k, h)
        rest = lengths % 4
        tail_at = (blocks * 4)[:, None] + np.arange(3)[None, :]
        tail = np.take_along_axis(np.pad(padded, ((0, 0), (0, 3))), tail_at, axis=1).astype(np.uint32)
        h = np.where(rest > 0, (h ^ (tail[:, 2] << np.uint32(16)) ^ (tail[:, 1] << np.uint32(8)) ^ tail[:, 0]) * m, h)
        h ^= h >> np.uint32(13)
        h *= m
        h ^= h >> np.uint32(15)
    return h.astype(np.int64)


SCHEMA_HEADERS = [("content-type", CONTENT_TYPE), ("schema_version", str(SCHEMA_VERSION).encode())]


def record_headers(events: pa.RecordBatch, which: str,
                   layout: MessageLayout = EVENT_MESSAGES) -> list[list[tuple[str, bytes]]] | None:
    """Each event's Kafka headers (``KAFKA_HEADERS``): ``schema``, what the JSON value does not say
    (``content-type``, ``schema_version``; one list shared by every event); ``all``, also ``message-id`` (the
    ``event_id``) and ``device_type`` (the ``layout``'s columns: a change feed names its own), as the AMQP
    producer's properties; ``none``: None."""
    if which == "none":
        return None
    if which == "schema":
        return [SCHEMA_HEADERS] * events.num_rows
    content_type, schema = SCHEMA_HEADERS
    as_bytes = lambda name: pc.fill_null(events.column(name).cast(pa.string()), "").cast(pa.binary()).to_pylist()  # noqa: E731
    routing = layout.property
    return [[content_type, ("message-id", message_id), schema, (routing, value)]
            for message_id, value in zip(as_bytes(layout.message_id), as_bytes(routing))]


@dataclass
class KafkaChunk:
    """Events ready to produce: values, keys, partitions and headers (no I/O done yet)."""

    first_index: int
    values: list[bytes]
    keys: list[str] | None
    partitions: list[int]
    headers: list[list[tuple[str, bytes]]] | None
    per_partition: list[int]
    size: int
    numbers: np.ndarray | None = None  # each event's number, when they are not consecutive from first_index

    def number(self, row: int) -> int:
        """The event number of row ``row``."""
        return self.first_index + row if self.numbers is None else int(self.numbers[row])

    @property
    def count(self) -> int:
        return len(self.values)


class _Delivery:
    """One chunk until it is settled: every event ends acknowledged or failed. librdkafka reports only failures
    (``delivery.report.only.error``); a chunk is settled when everything handed to librdkafka up to and including
    it has been reported on (the producer's queue was empty after it), and then every event of it without a
    failure report was acknowledged."""

    def __init__(self, chunk: KafkaChunk) -> None:
        self.chunk = chunk
        self.failed: list[tuple[int, str, int]] = []  # (position in the chunk, why, partition)
        self.done = threading.Event()
        self.produced: Future | None = None
        self._positions: dict[bytes, int] | None = None

    def position_of(self, value: bytes) -> int | None:
        """Where the event with this value is in the chunk (built on the first failure only)."""
        if self._positions is None:
            self._positions = {}
            for i, v in enumerate(self.chunk.values):
                self._positions.setdefault(v, i)
        return self._positions.get(value)

    def fail(self, positions: range | list[int], why: str) -> None:
        """Events never handed to librdkafka (the stream is stopping, or librdkafka refused them at once)."""
        partitions = self.chunk.partitions
        self.failed.extend((i, why, partitions[i]) for i in positions)

    def outcome(self) -> ChunkOutcome:
        chunk = self.chunk
        outcome = ChunkOutcome(acknowledged=chunk.count - len(self.failed), failed=len(self.failed))
        if self.failed:
            first = min(self.failed)
            outcome.first_failed = chunk.number(first[0])
            outcome.error = (f"{len(self.failed)} events not delivered (first event #{outcome.first_failed}): "
                             f"{redact(first[1])}")
        return outcome


# ---- the producer ----------------------------------------------------------------------------------------------
class KafkaProducer:
    """Produces prepared chunks of events to one topic with exact counts. Build it with :meth:`open`.

    ``in_flight``: chunks the stream keeps submitted before it waits for the oldest. librdkafka reports only
    failed events, so chunks are settled by a barrier in the producing thread: once the chunks before it are
    handed over, it waits until librdkafka's queue is empty (everything reported on) and settles them together.
    A barrier is queued after every ``barrier_every`` chunks, so it usually runs while the stream generates the
    next chunks (and after the chunk submitted last when the stream waits for a chunk no barrier follows yet).

    ``prepare`` may run while earlier chunks are in flight; ``submit`` and ``settle`` run in one thread. The
    events are handed to librdkafka in a thread of their own (which also serves librdkafka's reports).
    """

    in_flight = 4
    #: A barrier is queued after every this many chunks, so that the stream seldom waits for one.
    barrier_every = 2

    def __init__(self, client: Any, target: KafkaTarget, *, partitions: list[int], partition_key: str | None,
                 max_batch_bytes: int, send_timeout: float, headers: str = "schema") -> None:
        self.client = client
        self.target = target
        self.partition_ids = [str(p) for p in partitions]
        self._partition_count = max(partitions) + 1 if partitions else 0
        self.partition_key = partition_key
        self.headers = headers  # KAFKA_HEADERS: all | schema | none
        self.layout = EVENT_MESSAGES  # the columns of the message-id header and the routing header (all)
        self.max_batch_bytes = max_batch_bytes
        self.send_timeout = send_timeout
        self._stats = SendStats(partitions={p: 0 for p in self.partition_ids})
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._lane: ThreadPoolExecutor | None = None
        self._unsettled: list[_Delivery] = []  # handed over, not yet through a barrier (the lane's)
        self._reports: list[tuple[Any, bytes, int]] = []  # failure reports not yet matched: (error, value, partition)
        self._newest: _Delivery | None = None  # the chunk submitted last
        self._barrier_upto: _Delivery | None = None  # the newest chunk a barrier was queued after
        self._since_barrier = 0  # chunks submitted after it
        self._spread = 0  # the next partition for events without a key

    def on_failure(self, error: Any, message: Any) -> None:
        """librdkafka's delivery report of a failed event (``delivery.report.only.error``: successes are not
        reported). Runs in the thread that polls the client; matched to its chunk at the next barrier."""
        self._reports.append((error, message.value(), message.partition()))

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
        reports: list[KafkaProducer] = []
        settings = target.client_settings(**{
            "enable.idempotence": True, "acks": "all",
            "compression.type": config.kafka_compression, "linger.ms": 5, "batch.size": max_batch,
            "queue.buffering.max.messages": QUEUE_MESSAGES, "queue.buffering.max.kbytes": 1_048_576,
            "request.timeout.ms": request_ms, "retries": config.send_retries,
            "message.timeout.ms": min(2**31 - 1, request_ms * (config.send_retries + 1)),
            "error_cb": errors.append,
            # failures only: confluent-kafka then builds no Message and calls no Python for a delivered event
            "delivery.report.only.error": True, "on_delivery": lambda e, m: reports[0].on_failure(e, m),
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
        producer = cls(client, target, partitions=partitions, partition_key=partition_key, max_batch_bytes=max_batch,
                       send_timeout=config.send_timeout_sec, headers=config.kafka_headers)
        reports.append(producer)
        return producer

    # ---- preparing -------------------------------------------------------------------------------------------
    def prepare(self, events: pa.RecordBatch, first_index: int, bodies: pa.Array | None = None,
                numbers: np.ndarray | None = None) -> KafkaChunk:
        """The chunk's values (JSON: ``bodies``, or the rows'), keys, partitions and header values (events
        numbered from ``first_index``, or ``numbers`` when they are not consecutive). No I/O.

        Partitions are chosen here, as librdkafka's ``murmur2_random`` would (murmur2 of the key, Java's
        default, so Spark and Java producers put a device in the same partition); events without a key are
        spread over the partitions in runs (each run one batch)."""
        lines = json_lines(events) if bodies is None else bodies
        size = int(pc.sum(pc.binary_length(lines)).as_py() or 0)
        values = lines.cast(pa.binary()).to_pylist()
        n = len(values)
        count = max(1, self._partition_count)
        if self.partition_key:
            key_column = events.column(self.partition_key)
            keys = key_column.to_pylist()
            routed = murmur2_partitions(key_column, count)
            unkeyed = routed < 0
        else:
            keys, routed, unkeyed = None, np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)
        if unkeyed.any():
            runs = max(1, min(count, int(unkeyed.sum())))
            spread = (self._spread + np.arange(int(unkeyed.sum())) * runs // max(1, int(unkeyed.sum()))) % count
            routed[unkeyed] = spread
            self._spread = (self._spread + runs) % count
        per_partition = np.bincount(routed, minlength=count).tolist()
        headers = record_headers(events, self.headers, self.layout)
        return KafkaChunk(first_index, values, keys, routed.tolist(), headers, per_partition, size, numbers)

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
        """Queue ``chunk`` for the producing thread and return at once; :meth:`settle` waits until it is settled.
        (The events are handed to librdkafka in a thread of their own, so the next chunk is generated and encoded
        meanwhile.)"""
        delivery = _Delivery(chunk)
        with self._lock:
            self._stats.sent += chunk.count
            self._stats.batches += 1
            if self._lane is None:
                self._lane = ThreadPoolExecutor(1, thread_name_prefix="iotgen-kafka-produce")
            delivery.produced = self._lane.submit(self._produce, delivery)
            self._newest = delivery
            self._since_barrier += 1
            if self._since_barrier >= self.barrier_every:  # settled ahead, while the next chunks are generated
                self._queue_barrier()
        return [delivery]

    def _queue_barrier(self) -> None:
        """(Under the lock.) Queue a barrier in the lane after the chunk submitted last, unless one is."""
        if self._barrier_upto is not self._newest:
            assert self._lane is not None
            self._barrier_upto = self._newest
            self._since_barrier = 0
            self._lane.submit(self._barrier)

    def _produce(self, delivery: _Delivery) -> None:
        """Hand a chunk's events to librdkafka (in the lane). librdkafka copies each value; a full queue is
        waited out while serving reports.

        The events go through ``map`` over ``produce`` with positional arguments, so no Python bytecode runs per
        event; a call that raises (a full queue, an event refused at once) stops the ``map``, and the iterators
        say which event it was: it is retried or counted failed, and the ``map`` goes on after it."""
        chunk, client, topic, stop = delivery.chunk, self.client, self.target.topic, self._stop
        produce, n = client.produce, chunk.count
        values, keys, partitions = iter(chunk.values), iter(chunk.keys or repeat(None)), iter(chunk.partitions)
        # positional: topic, value, key, partition[, callback, on_delivery, timestamp, headers]
        extra: tuple = () if chunk.headers is None else (repeat(None), repeat(None), repeat(0), iter(chunk.headers))
        while True:
            position = n - length_hint(values)
            if position >= n:
                break
            if stop.is_set():
                delivery.fail(range(position, n), "stopped before it was sent")
                break
            try:
                deque(map(produce, repeat(topic), islice(values, PRODUCE_STEP), keys, partitions, *extra), maxlen=0)
            except BufferError:  # the queue is full: serving reports makes room, then this event again
                i = n - length_hint(values) - 1
                key = None if chunk.keys is None else chunk.keys[i]
                args: tuple = (topic, chunk.values[i], key, chunk.partitions[i])
                args += () if chunk.headers is None else (None, None, 0, chunk.headers[i])
                while True:
                    client.poll(0.005)
                    try:
                        produce(*args)
                        break
                    except BufferError:
                        continue
                    except Exception as exc:  # noqa: BLE001 - refused at once
                        delivery.fail([i], str(exc))
                        break
            except Exception as exc:  # noqa: BLE001 - refused at once (e.g. larger than message.max.bytes)
                delivery.fail([n - length_hint(values) - 1], str(exc))
        self._unsettled.append(delivery)
        client.poll(0)

    def _barrier(self) -> None:
        """(In the lane.) Wait until librdkafka has reported on every event handed over (its queue is empty;
        the message time-out bounds the wait), then settle every chunk handed over so far."""
        client = self.client
        while client.flush(0.2):
            pass
        chunks, self._unsettled = self._unsettled, []
        reports, self._reports = self._reports, []
        for error, value, partition in reports:
            for delivery in chunks:
                position = delivery.position_of(value)
                if position is not None:
                    break
            else:  # not found (cannot happen): counted against the oldest chunk's first event, never lost
                delivery, position = chunks[0], 0
            delivery.failed.append((position, error.str(), partition))
        for delivery in chunks:
            delivery.done.set()

    def settle(self, futures: list[_Delivery]) -> ChunkOutcome:
        """Wait until every event of a submitted chunk is acknowledged or failed (librdkafka's message time-out
        bounds the wait)."""
        total = ChunkOutcome()
        for delivery in futures:
            if not delivery.done.is_set():
                with self._lock:
                    self._queue_barrier()
            while not delivery.done.wait(0.2):  # short waits: Ctrl-C is seen at once
                pass
            assert delivery.produced is not None
            delivery.produced.result()  # raises what producing raised
            outcome = delivery.outcome()
            with self._lock:
                stats = self._stats
                stats.acknowledged += outcome.acknowledged
                stats.failed += outcome.failed
                stats.bytes += delivery.chunk.size
                failed_in = [0] * len(delivery.chunk.per_partition)
                for _, _, partition in delivery.failed:
                    if 0 <= partition < len(failed_in):
                        failed_in[partition] += 1
                for partition, (count, failed) in enumerate(zip(delivery.chunk.per_partition, failed_in)):
                    key = str(partition)
                    if key in stats.partitions:
                        stats.partitions[key] += count - failed
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
        """Deliver what is still queued (bounded by the send time-out), then stop the producing thread."""
        if self._lane is not None:
            self._lane.shutdown(wait=True)
        deadline = time.monotonic() + max(1.0, self.send_timeout)
        while self.client.flush(0.5) and time.monotonic() < deadline:
            pass

    def __enter__(self) -> "KafkaProducer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
