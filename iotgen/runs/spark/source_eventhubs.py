"""The ``iotgen_eventhubs`` Spark streaming source: Azure Event Hubs through the azure-eventhub SDK, no jars needed.

For local Spark, CI and Event Hubs tiers without a Kafka endpoint (Basic). On Databricks with a Standard or
higher namespace, prefer the built-in Kafka source (:mod:`iotgen.runs.spark.kafka`).

One Spark input partition per Event Hubs partition and micro-batch; the offsets in Spark's checkpoint are the
next sequence number to read in each partition, so a query restarted from its checkpoint re-reads exactly the
micro-batch it had not committed and continues from there (exactly once with an idempotent sink, see
:mod:`iotgen.runs.spark.write`). The columns follow the azure-event-hubs-spark connector::

    body BINARY, partition STRING, offset STRING, sequenceNumber BIGINT, enqueuedTime TIMESTAMP,
    publisher STRING, partitionKey STRING, properties MAP<STRING,STRING>, systemProperties MAP<STRING,STRING>

Example::

    import iotgen.runs.spark
    iotgen.runs.spark.register(spark)
    raw = (spark.readStream.format("iotgen_eventhubs")
           .option("connectionString", connection_string)      # from a secret, never a literal
           .option("startingPosition", "earliest")
           .option("maxEventsPerTrigger", 50_000)
           .load())

Options (case-insensitive):

=======================  =======================================================================================
``connectionString``     Namespace or hub connection string (``EntityPath=`` names the hub), or
``fullyQualifiedNamespace`` + ``eventHubName``: Azure AD (``DefaultAzureCredential`` on every node).
``eventHubName``         The hub, when the connection string has no ``EntityPath``.
``consumerGroup``        Default ``$Default``.
``startingPosition``     ``earliest`` (default), ``latest``, or JSON ``{"0": 120, "1": 98}`` of sequence numbers.
``maxEventsPerTrigger``  At most this many events per micro-batch, shared across partitions (default: no limit).
``receiveTimeout``       Seconds a partition read may wait for an expected event before failing (default 60).
``failOnDataLoss``       ``true`` (default): fail when events expired before they were read; ``false``: skip them.
``transport``            ``amqp`` (default, port 5671) or ``websockets`` (AMQP over WebSockets, port 443).
=======================  =======================================================================================

Spark before 4.2 (Databricks Runtime 17.3 LTS, 18) gives a Python source no admission control: there
``maxEventsPerTrigger`` cuts the micro-batches of interval triggers, while ``availableNow`` reads one micro-batch
up to the offset it first asks for (so leave the limit out; :mod:`iotgen.runs.spark.pipeline` does). Restarted after a
crash in the middle of a micro-batch, an ``availableNow`` run there re-runs that micro-batch and stops: the next
run goes on.
"""

from __future__ import annotations

import datetime as dt
import json
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator, Mapping
from urllib.parse import urlsplit

import pyarrow as pa

from ...base.errors import InputError
from ...base.values import parse_bool, parse_choice, parse_int, parse_number
from ...outputs.eventhubs import parse_connection_string as sinks_connection_fields
from ...settings.config import Secret
from .runtime import (
    AVAILABLE_NOW_BASES,
    DataSource,
    DataSourceReader,
    DataSourceStreamReader,
    InputPartition,
    OffsetTracker,
    ReadAllAvailable,
    ReadLimit,
    ReadMaxRows,
)

#: The short name (not ``eventhubs``: Microsoft's azure-eventhubs-spark connector registers that one, and with
#: both on a cluster Spark refuses the ambiguous name).
NAME = "iotgen_eventhubs"
SCHEMA_DDL = ("body BINARY, partition STRING, offset STRING, sequenceNumber BIGINT, enqueuedTime TIMESTAMP, "
              "publisher STRING, partitionKey STRING, properties MAP<STRING, STRING>, "
              "systemProperties MAP<STRING, STRING>")
ARROW_SCHEMA = pa.schema([
    ("body", pa.binary()), ("partition", pa.string()), ("offset", pa.string()), ("sequenceNumber", pa.int64()),
    ("enqueuedTime", pa.timestamp("us", tz="UTC")), ("publisher", pa.string()), ("partitionKey", pa.string()),
    ("properties", pa.map_(pa.string(), pa.string())), ("systemProperties", pa.map_(pa.string(), pa.string())),
])
OPTIONS = ("connectionString", "fullyQualifiedNamespace", "eventHubName", "consumerGroup", "startingPosition",
           "maxEventsPerTrigger", "receiveTimeout", "failOnDataLoss", "transport")
ROWS_PER_ARROW_BATCH = 4096
PARTITION_IDS_TTL = 60.0


class EventHubsDataLoss(RuntimeError):
    """Events expired from a partition before the query read them (``failOnDataLoss=true``)."""


@dataclass(frozen=True)
class EventHubsOptions:
    connection_string: Secret | None
    namespace: str | None
    hub: str
    consumer_group: str
    starting_position: str | dict[str, int]
    max_events_per_trigger: int | None
    receive_timeout: float
    fail_on_data_loss: bool
    transport: str = "amqp"

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> "EventHubsOptions":
        known = {o.lower(): o for o in OPTIONS}
        values: dict[str, Any] = {}
        for key, value in options.items():
            name = known.get(str(key).lower())
            if name is None:
                if str(key).lower() == "path":
                    continue
                raise InputError(
                    f"unknown option {key!r} for the iotgen_eventhubs source; allowed: {', '.join(OPTIONS)}")
            values[name] = value
        connection = values.get("connectionString") or None
        namespace = values.get("fullyQualifiedNamespace") or None
        hub = values.get("eventHubName") or None
        if connection is None and namespace is None:
            raise InputError("the iotgen_eventhubs source needs the connectionString option (from a secret) or "
                             "fullyQualifiedNamespace and eventHubName (Azure AD)")
        if connection is not None:
            fields = parse_connection_string(connection)
            hub = hub or fields.get("entitypath")
        if not hub:
            raise InputError("eventHubName is required when the connection string has no EntityPath")
        starting = _starting_position(values.get("startingPosition", "earliest"))
        given_max = values.get("maxEventsPerTrigger")
        max_events = None if given_max is None else parse_int("maxEventsPerTrigger", given_max, 1)
        timeout = parse_number("receiveTimeout", values.get("receiveTimeout", 60), 0.0, strict=True)
        loss = parse_bool("failOnDataLoss", values.get("failOnDataLoss", "true"))
        transport = parse_choice("transport", values.get("transport", "amqp"), ("amqp", "websockets"))
        return cls(Secret(connection) if connection else None, namespace, hub,
                   values.get("consumerGroup") or "$Default", starting, max_events, timeout, loss, transport)

    def client(self) -> Any:
        """A new ``EventHubConsumerClient`` (close it when done), as iotgen's producer builds its clients."""
        from ...outputs.eventhubs import SERVICE_BUS_SUFFIX, EventHubTarget

        if self.connection_string is not None:
            host = urlsplit(parse_connection_string(self.connection_string.reveal())["endpoint"]).netloc
            target = EventHubTarget(host, self.hub, "connection string", self.connection_string,
                                    transport=self.transport)
        else:
            if self.namespace is None:
                raise InputError("the iotgen_eventhubs source needs the connectionString option (from a secret) or "
                                 "fullyQualifiedNamespace and eventHubName (Azure AD)")
            namespace = self.namespace if "." in self.namespace else self.namespace + SERVICE_BUS_SUFFIX
            target = EventHubTarget(namespace, self.hub, "Azure AD", transport=self.transport)
        return target.consumer_client(self.consumer_group)


def parse_connection_string(text: str) -> dict[str, str]:
    """``Key=Value;...`` fields of an Event Hubs connection string, keys lower-cased (values never shown)."""
    fields = sinks_connection_fields(text, "the Event Hubs connection string")
    if not fields.get("endpoint", "").startswith("sb://"):
        raise InputError("the Event Hubs connection string must contain Endpoint=sb://<namespace>/")
    return fields


def _starting_position(value: Any) -> str | dict[str, int]:
    text = str(value).strip()
    if text.lower() in ("earliest", "latest"):
        return text.lower()
    try:
        positions = json.loads(text)
    except json.JSONDecodeError:
        positions = None
    if not isinstance(positions, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in positions.values()):
        raise InputError("startingPosition must be earliest, latest or a JSON object of partition id to "
                         f"sequence number such as {{\"0\": 120}}, got {value!r}")
    return {str(k): v for k, v in positions.items()}


# ---- reading one partition ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PartitionRange(InputPartition):
    """Sequence numbers ``start`` (inclusive) to ``stop`` (exclusive) of one Event Hubs partition."""

    partition: str
    start: int
    stop: int


def _text_map(mapping: Mapping | None) -> list[tuple[str, str | None]]:
    if not mapping:
        return []
    out = []
    for key, value in mapping.items():
        key = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, dt.datetime):
            value = value.isoformat()
        out.append((key, None if value is None else str(value)))
    return out


def _body_bytes(event: Any) -> bytes:
    body = event.body
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    if getattr(event.body_type, "value", event.body_type) == "data":
        return b"".join(bytes(chunk) for chunk in body)
    return event.body_as_str().encode("utf-8")


def events_to_batch(partition: str, events: list[Any]) -> pa.RecordBatch:
    """Received ``EventData`` as one Arrow batch in the source's schema."""
    columns = [
        [_body_bytes(e) for e in events],
        [partition] * len(events),
        [str(e.offset) for e in events],
        [e.sequence_number for e in events],
        [e.enqueued_time for e in events],
        [None] * len(events),
        [e.partition_key for e in events],
        [_text_map(e.properties) for e in events],
        [_text_map(e.system_properties) for e in events],
    ]
    return pa.RecordBatch.from_arrays([pa.array(c, f.type) for c, f in zip(columns, ARROW_SCHEMA)],
                                      schema=ARROW_SCHEMA)


def read_partition(options: EventHubsOptions, part: PartitionRange) -> Iterator[pa.RecordBatch]:
    """Every event of ``part`` exactly once, in sequence order; bounded waits, never a silent gap."""
    if part.stop <= part.start:
        return
    received: queue.Queue = queue.Queue()
    client = options.client()

    def on_batch(context: Any, events: list[Any]) -> None:
        if events:
            received.put(events)

    def on_error(context: Any, error: Exception) -> None:
        received.put(error)

    expected = part.stop - part.start
    worker = threading.Thread(
        target=client.receive_batch, name=f"iotgen-eventhubs-{part.partition}", daemon=True,
        kwargs=dict(on_event_batch=on_batch, on_error=on_error, partition_id=part.partition,
                    starting_position=part.start, starting_position_inclusive=True,
                    max_batch_size=min(expected, 1000), prefetch=min(max(expected, 300), 3000), max_wait_time=1.0))
    worker.start()
    try:
        pending: list[Any] = []
        position = part.start
        deadline = time.monotonic() + options.receive_timeout
        while position < part.stop:
            try:
                item = received.get(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"Event Hubs partition {part.partition}: no event for {options.receive_timeout:g} s while "
                        f"reading sequence numbers {position}..{part.stop - 1} (raise receiveTimeout?)") from None
                continue
            if isinstance(item, Exception):
                raise item
            deadline = time.monotonic() + options.receive_timeout
            for event in item:
                seq = event.sequence_number
                if seq < position:
                    continue  # already read (a redelivery)
                if seq > position:
                    if options.fail_on_data_loss:
                        raise EventHubsDataLoss(
                            f"Event Hubs partition {part.partition}: sequence numbers {position}.."
                            f"{min(seq, part.stop) - 1} are no longer available (expired or deleted); set "
                            "failOnDataLoss=false to skip them")
                    position = min(seq, part.stop)
                if seq >= part.stop:
                    break
                pending.append(event)
                position = seq + 1
                if len(pending) >= ROWS_PER_ARROW_BATCH:
                    yield events_to_batch(part.partition, pending)
                    pending = []
        if pending:
            yield events_to_batch(part.partition, pending)
    finally:
        client.close()
        worker.join(timeout=30)


# ---- offsets -----------------------------------------------------------------------------------------------
class _PartitionInfo:
    """Sequence-number bounds of each partition, from the hub's management endpoint (queried concurrently;
    the partition ids are re-read every :data:`PARTITION_IDS_TTL` seconds)."""

    def __init__(self, options: EventHubsOptions) -> None:
        self.options = options
        self._client: Any = None
        self._ids: tuple[float, list[str]] | None = None

    def _partition_ids(self) -> list[str]:
        now = time.monotonic()
        if self._ids is None or now - self._ids[0] > PARTITION_IDS_TTL:
            self._ids = (now, [str(p) for p in self._client.get_partition_ids()])
        return self._ids[1]

    def bounds(self) -> dict[str, tuple[int, int]]:
        """partition id -> (first available sequence number, next sequence number to be written)."""
        from concurrent.futures import ThreadPoolExecutor

        if self._client is None:
            self._client = self.options.client()
        ids = self._partition_ids()
        with ThreadPoolExecutor(max_workers=min(8, len(ids)) or 1) as pool:
            properties = list(pool.map(self._client.get_partition_properties, ids))
        out = {}
        for pid, props in zip(ids, properties):
            beginning = int(props["beginning_sequence_number"])
            last = int(props["last_enqueued_sequence_number"])
            out[pid] = (beginning, beginning if props.get("is_empty") else last + 1)
        return out

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def share_limit(start: dict[str, int], end: dict[str, int], limit: int) -> dict[str, int]:
    """Move ``start`` towards ``end`` by at most ``limit`` events in total, shared fairly among partitions."""
    backlog = {p: max(0, end[p] - start.get(p, end[p])) for p in end}
    take = {p: 0 for p in end}
    remaining = limit
    while remaining > 0:
        open_parts = [p for p in sorted(backlog, key=lambda p: (len(p), p)) if backlog[p] > take[p]]
        if not open_parts:
            break
        share = max(1, remaining // len(open_parts))
        for p in open_parts:
            step = min(share, backlog[p] - take[p], remaining)
            take[p] += step
            remaining -= step
            if remaining == 0:
                break
    return {p: start.get(p, end[p]) + take[p] for p in end}


# The ignore below: mypy cannot follow bases unpacked from a tuple (SupportsTriggerAvailableNow on Spark 4.2+)
class EventHubsStreamReader(DataSourceStreamReader, *AVAILABLE_NOW_BASES):  # type: ignore[misc]
    """Offsets: ``{"eventHub": name, "sequenceNumbers": {partition: next sequence number to read}}``.

    Spark 4.2+ hands ``latestOffset`` the start and the read limit (``maxEventsPerTrigger``); older Spark hands
    it nothing and the reader tracks the start itself (see :mod:`iotgen.runs.spark.runtime`)."""

    def __init__(self, options: EventHubsOptions) -> None:
        self.options = options
        self._info = _PartitionInfo(options)
        self._target: dict[str, int] | None = None
        self._initial: dict | None = None
        self._tracker = OffsetTracker()

    def __getstate__(self) -> dict:  # executors need the options only
        return {"options": self.options, "_info": None, "_target": None, "_initial": None,
                "_tracker": OffsetTracker()}

    def initialOffset(self) -> dict:
        if self._initial is None:  # asked once: with startingPosition=latest a second answer could differ
            self._initial = self._first_offset()
        return self._initial

    def _first_offset(self) -> dict:
        bounds = self._info.bounds()
        if isinstance(self.options.starting_position, dict):
            positions = {p: self.options.starting_position.get(p, first) for p, (first, _) in bounds.items()}
        elif self.options.starting_position == "latest":
            positions = {p: nxt for p, (_, nxt) in bounds.items()}
        else:
            positions = {p: first for p, (first, _) in bounds.items()}
        return {"eventHub": self.options.hub, "sequenceNumbers": positions}

    def _check(self, offset: dict) -> dict[str, int]:
        if offset.get("eventHub") != self.options.hub:
            raise InputError(f"this checkpoint belongs to event hub {offset.get('eventHub')!r}, not "
                             f"{self.options.hub!r}: use a new checkpoint location")
        return {str(k): int(v) for k, v in offset["sequenceNumbers"].items()}

    def getDefaultReadLimit(self) -> ReadLimit:
        if self.options.max_events_per_trigger:
            return ReadMaxRows(self.options.max_events_per_trigger)
        return ReadAllAvailable()

    def prepareForTriggerAvailableNow(self) -> None:
        self._target = {p: nxt for p, (_, nxt) in self._info.bounds().items()}

    def latestOffset(self, start: dict | None = None, limit: ReadLimit | None = None) -> dict:
        if start is None:  # Spark < 4.2: no start offset, no admission control
            start, limit = self._tracker.start(self.initialOffset), self.getDefaultReadLimit()
        begin = self._check(start)
        if self._target is not None:
            latest = dict(self._target)
        else:
            latest = {p: nxt for p, (_, nxt) in self._info.bounds().items()}
        latest = {p: max(latest[p], begin.get(p, 0)) for p in latest}
        for p, position in begin.items():  # a partition never goes backwards
            latest.setdefault(p, position)
        if isinstance(limit, ReadMaxRows):
            latest = share_limit(begin, latest, limit.max_rows)
        return {"eventHub": self.options.hub, "sequenceNumbers": latest}

    def partitions(self, start: dict, end: dict) -> list[PartitionRange]:
        self._tracker.seen(end)
        begin, stop = self._check(start), self._check(end)
        return [PartitionRange(p, begin.get(p, 0), stop[p])
                for p in sorted(stop, key=lambda p: (len(p), p)) if stop[p] > begin.get(p, 0)]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        assert isinstance(partition, PartitionRange)  # Spark hands back what partitions() returned
        return read_partition(self.options, partition)

    def commit(self, end: dict) -> None:
        self._tracker.seen(end)

    def stop(self) -> None:
        if self._info is not None:
            self._info.close()


class EventHubsBatchReader(DataSourceReader):
    """``spark.read.format("iotgen_eventhubs")``: the events in the hub now, from ``startingPosition``."""

    def __init__(self, options: EventHubsOptions) -> None:
        stream = EventHubsStreamReader(options)
        try:
            start = stream.initialOffset()
            end = stream.latestOffset(start, ReadAllAvailable())
            self.ranges = stream.partitions(start, end)
        finally:
            stream.stop()
        self.options = options

    def partitions(self) -> list[PartitionRange]:
        return list(self.ranges) or [PartitionRange("0", 0, 0)]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        assert isinstance(partition, PartitionRange)  # Spark hands back what partitions() returned
        return read_partition(self.options, partition)


class EventHubsDataSource(DataSource):
    """``spark.readStream.format("iotgen_eventhubs")`` (and ``spark.read``): see the module docstring."""

    @classmethod
    def name(cls) -> str:
        return NAME

    def schema(self) -> str:
        return SCHEMA_DDL

    def streamReader(self, schema: Any) -> EventHubsStreamReader:
        return EventHubsStreamReader(EventHubsOptions.parse(self.options))

    def reader(self, schema: Any) -> EventHubsBatchReader:
        return EventHubsBatchReader(EventHubsOptions.parse(self.options))
