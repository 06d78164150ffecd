"""Event Hubs (AMQP, or Kafka) -> Delta / Iceberg table, exactly once, even when killed at any moment.

The design is delta-io/kafka-delta-ingest's: the table is the only checkpoint. Every micro-batch is one atomic
table commit that holds the events *and*, for each Event Hubs partition in the batch, the sequence number of
the last event it covers (a Delta app transaction ``iotgen-ingest/<namespace>/<hub>/<partition>`` with that
version; the same key in the Iceberg snapshot summary). On start the ingest reads those numbers from the table
and asks Event Hubs for the events after them, so a crash before a commit re-reads the batch and a crash after
it does not; no separate checkpoint file can disagree with the table. Commits that lose a race with another
writer are retried only after re-reading the table's numbers and dropping what it already holds.

Bodies are parsed into the 24 typed columns vectorised, on one core (:mod:`iotgen.formats.decoding`), and get
``_partition``, ``_sequence_number`` and ``_enqueued_time``. Bodies that are not events (bad JSON, missing fields,
wrong types, a ``json_column`` that cannot be a VARIANT) go to a quarantine table next to the target
(``<target>_quarantine``) with the raw body, where it came from and the reason. The quarantine table records the
same partition numbers, so a replayed batch does not quarantine an event twice. Nothing is dropped silently and a
bad event never stops the ingest.

Through AMQP the SDK receives in a child process (:mod:`iotgen.runs.receiver`, so its pure-Python loop never
waits for this process's GIL); through Kafka (``source="kafka"``: Event Hubs' Kafka endpoint, where the offset
is the sequence number, or any Kafka) librdkafka fetches in its own threads (:mod:`iotgen.runs.kafka_receiver`).
The table offsets of an event hub are the same whichever protocol reads it, so a table can switch between the
two. Either feeds a bounded buffer (the receiving waits when the buffer holds two batches); the calling thread
parses and commits. It stops when ``stop`` is set (Ctrl-C in the CLI) or after
``until_idle`` seconds without events, or (``available_now``) once every partition has been read up to the last
event it held when the run started; it commits what it holds and returns an :class:`IngestSummary`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pyarrow as pa

from ..base.errors import InputError
from ..formats.decoding import KeyPool, decode_bodies
from ..outputs.lakehouse import INGEST_FIELDS, QUARANTINE_SCHEMA, CommitConflict
from ..settings.config import Config
from ..settings.schema import TIMESTAMP
from .receiver import Receiver, ReceiveRequest
from ..outputs.table_target import TableTarget

_LOGGER = logging.getLogger(__name__)

if TYPE_CHECKING:  # the Event Hubs sink is imported when an ingest runs (it pulls in the azure SDK)
    from ..outputs.eventhubs import EventHubTarget

SOURCES = ("eventhub", "kafka")
QUARANTINE_SUFFIX = "_quarantine"
APP_ID_PREFIX = "iotgen-ingest"
COMMIT_ATTEMPTS = 5
JOIN_TIMEOUT = 30.0


@dataclass(frozen=True)
class IngestOptions:
    """How the ingest reads and commits (defaults: the ``INGEST_*`` parameters)."""

    consumer_group: str = "$Default"
    max_batch_events: int = 10_000
    max_batch_seconds: float = 5.0
    until_idle: float | None = None
    available_now: bool = False

    def __post_init__(self) -> None:
        config = Config(ingest_consumer_group=self.consumer_group, ingest_max_batch_events=self.max_batch_events,
                        ingest_max_batch_seconds=self.max_batch_seconds, ingest_until_idle=self.until_idle,
                        ingest_available_now=self.available_now)
        for name in ("consumer_group", "max_batch_events", "max_batch_seconds", "until_idle", "available_now"):
            object.__setattr__(self, name, getattr(config, "ingest_" + name))

    @classmethod
    def from_config(cls, config: Config) -> "IngestOptions":
        return cls(config.ingest_consumer_group, config.ingest_max_batch_events, config.ingest_max_batch_seconds,
                   config.ingest_until_idle, config.ingest_available_now)


@dataclass
class IngestSummary:
    """What one run did. ``offsets``: last committed sequence number per partition; ``lag``: events enqueued
    after it when the run stopped (None when unknown)."""

    target: str
    events: int = 0
    batches: int = 0
    quarantined: int = 0
    redelivered: int = 0
    offsets: dict[str, int | None] = field(default_factory=dict)
    lag: dict[str, int | None] = field(default_factory=dict)
    elapsed: float = 0.0
    stopped_by: str = ""

    @property
    def events_per_second(self) -> float:
        return (self.events + self.quarantined) / self.elapsed if self.elapsed > 0 else 0.0

    def lines(self) -> list[str]:
        lag = ", ".join(f"{p}={'?' if v is None else v}" for p, v in sorted(self.lag.items(), key=_partition_order))
        return [
            f"ingested {self.events} events into {self.target} in {self.batches} commits "
            f"({self.quarantined} quarantined, {self.redelivered} redelivered duplicates skipped)",
            f"stopped by {self.stopped_by} after {self.elapsed:.1f} s ({self.events_per_second:,.0f} events/s); "
            f"lag per partition: {lag or 'none'}",
        ]


def _partition_order(item: tuple[str, Any]) -> tuple[int, str]:
    return (int(item[0]), "") if item[0].isdigit() else (1 << 30, item[0])


def offsets_app_id(source: "EventHubTarget", partition: str) -> str:
    """The app transaction id holding a partition's last committed sequence number in the table. The
    namespace host (without port) and event hub name identify the stream; the consumer group does not (the
    table's position is the table's, whichever group reads it)."""
    host = re.sub(r":\d+$", "", source.namespace)
    return f"{APP_ID_PREFIX}/{host}/{source.eventhub}/{partition}"


def quarantine_target(target: TableTarget) -> TableTarget:
    """Where events the ingest cannot parse go: ``<target>_quarantine`` in the same format and catalog."""
    return target.sibling(QUARANTINE_SUFFIX)


# ---- the receive buffer -------------------------------------------------------------------------------------
class _Buffer:
    """Events per partition in arrival order, bounded: :meth:`put` waits while it is full."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.cond = threading.Condition()
        self.parts: dict[str, tuple[list[bytes], list[int], list[int]]] = {}
        self.count = 0
        self.closed = False
        self.last_event = time.monotonic()
        self.first_buffered: float | None = None
        self.last_seen: dict[str, int] = {}
        self.redelivered = 0
        self.error: str | None = None

    def put(self, partition: str, bodies: list[bytes], seqs: list[int], times: list[int]) -> None:
        """Add one received batch of a partition (events at or before the last one seen are redeliveries)."""
        with self.cond:
            while self.count >= self.capacity and not self.closed:
                self.cond.wait(0.5)
            if self.closed:
                return  # not committed: read again on the next start
            held_bodies, held_seqs, held_times = self.parts.setdefault(partition, ([], [], []))
            last = self.last_seen.get(partition, -1)
            for body, seq, enqueued in zip(bodies, seqs, times):
                if seq <= last:
                    self.redelivered += 1
                    continue
                held_bodies.append(body)
                held_seqs.append(seq)
                held_times.append(enqueued)
                last = seq
            self.last_seen[partition] = last
            self.count = sum(len(p[1]) for p in self.parts.values())
            self.last_event = time.monotonic()
            if self.first_buffered is None and self.count:
                self.first_buffered = self.last_event
            self.cond.notify_all()

    def take(self, limit: int) -> dict[str, tuple[list[bytes], list[int], list[int]]]:
        """Up to ``limit`` events, the oldest of each partition first."""
        with self.cond:
            out = {}
            room = limit
            for partition in list(self.parts):
                bodies, seqs, times = self.parts[partition]
                k = min(room, len(seqs))
                if k:
                    out[partition] = (bodies[:k], seqs[:k], times[:k])
                    del bodies[:k], seqs[:k], times[:k]
                    room -= k
                if not seqs:
                    del self.parts[partition]
                if room == 0:
                    break
            self.count = sum(len(p[1]) for p in self.parts.values())
            self.first_buffered = time.monotonic() if self.count else None
            self.cond.notify_all()
            return out

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


# ---- one commit ---------------------------------------------------------------------------------------------
def _arrays(taken: dict[str, tuple[list[bytes], list[int], list[int]]]) -> tuple[pa.Array, ...]:
    partitions = [p for p in taken for _ in taken[p][1]]
    bodies = [b for p in taken for b in taken[p][0]]
    seqs = [s for p in taken for s in taken[p][1]]
    times = [t for p in taken for t in taken[p][2]]
    return (pa.array(bodies, pa.binary()), pa.array(partitions, pa.string()), pa.array(seqs, pa.int64()),
            pa.array(times, pa.int64()).cast(TIMESTAMP))


def build_batch(bodies: pa.Array, partitions: pa.Array, seqs: pa.Array, enqueued: pa.Array,
                json_column_mode: str, key_pool: KeyPool | None = None) -> tuple[pa.Table, pa.Table]:
    """(ingested events, quarantined bodies) of one micro-batch; every input row is in exactly one of them.
    ``key_pool``: see :func:`json_column_pool` (None: the default catalogs' pool)."""
    # One core: the SDK's receive loop (pure Python) needs the other; on 2 cores this raised the ingest's
    # events/s by about a fifth over letting pyarrow and DuckDB use both (bench/bench_lakehouse.py).
    decoded = decode_bodies(bodies, "variant" if json_column_mode == "variant" else "text", use_threads=False,
                            key_pool=key_pool)
    take = pa.array(decoded.indices, pa.int64())
    ingested = decoded.events
    for f, column in zip(INGEST_FIELDS, (partitions, seqs, enqueued)):
        ingested = ingested.append_column(f, column.take(take))
    rows = pa.array([i for i, _ in decoded.rejected], pa.int64())
    quarantine = pa.Table.from_arrays(
        [partitions.take(rows), seqs.take(rows), enqueued.take(rows),
         pa.array([r for _, r in decoded.rejected], pa.string()), bodies.take(rows)], schema=QUARANTINE_SCHEMA)
    return ingested, quarantine


def json_column_pool(config: Config) -> KeyPool | None:
    """The keys a producer with this Config draws ``json_column`` from: ``SPEC_FILE``'s catalogs (the key pool)
    and the keys its schema drift adds. The ingest encodes the VARIANT of bodies whose ``json_column`` is
    iotgen's own JSON of this pool without DuckDB (:mod:`iotgen.formats.pool_json`); any other body takes the
    general path, so the pool decides the speed only, never the result. A SPEC_FILE that cannot be read gives
    the default pool (None) and a warning: the ingest did not need the spec before."""
    from ..spec.spec_file import load_spec

    try:
        spec = load_spec(config.spec_file)
        catalogs = spec.build_catalogs()
        drift = spec.build_scenarios(catalogs, 0).schema_drift
    except (InputError, ValueError) as exc:
        _LOGGER.warning("SPEC_FILE: %s; the ingest's VARIANT fast path takes the default key pool", exc)
        return None
    return catalogs.key_pool + tuple((c.key, c.value) for c in drift if c.operation == "add_key" and c.value)


def _after(table: pa.Table, versions: dict[str, int | None]) -> pa.Table:
    """Rows whose sequence number is after the version recorded for their partition."""
    if not table.num_rows or not any(v is not None for v in versions.values()):
        return table
    floor = np.array([-1 if versions.get(p) is None else versions[p]
                      for p in table.column("_partition").to_pylist()], dtype=np.int64)
    keep = np.asarray(table.column("_sequence_number")) > floor
    return table if keep.all() else table.filter(pa.array(keep))


class _Committer:
    """Writes micro-batches to the target and its quarantine table, exactly once."""

    def __init__(self, target: TableTarget, quarantine: TableTarget, source: "EventHubTarget",
                 partitions: list[str], key_pool: KeyPool | None = None) -> None:
        self.target = target
        self.key_pool = key_pool
        self.quarantine = quarantine
        self.ids = {p: offsets_app_id(source, p) for p in partitions}
        self.offsets = self._read(target)
        self.quarantine_offsets = self._read(quarantine)

    def _read(self, table: TableTarget) -> dict[str, int | None]:
        if not table.exists():
            return {p: None for p in self.ids}
        recorded = table.app_versions(self.ids.values())
        return {p: recorded[app_id] for p, app_id in self.ids.items()}

    def commit(self, taken, summary: IngestSummary) -> None:
        bodies, partitions, seqs, enqueued = _arrays(taken)
        ingested, quarantined = build_batch(bodies, partitions, seqs, enqueued, self.target.json_column_mode,
                                            self.key_pool)
        last = {p: max(s) for p, (_, s, _) in taken.items() if s}
        for _ in range(COMMIT_ATTEMPTS):
            try:
                self._commit_once(ingested, quarantined, last, summary)
                return
            except CommitConflict as exc:
                _LOGGER.warning("commit lost a race (%s); re-reading the table's offsets", exc)
                self.offsets = self._read(self.target)
                self.quarantine_offsets = self._read(self.quarantine)
        raise RuntimeError(f"could not commit to {self.target} after {COMMIT_ATTEMPTS} attempts: "
                           "another writer keeps committing the same partitions")

    def _commit_once(self, ingested: pa.Table, quarantined: pa.Table, last: dict[str, int],
                     summary: IngestSummary) -> None:
        todo = {p: s for p, s in last.items() if (known := self.offsets.get(p)) is None or s > known}
        if not todo:
            return  # all already in the table (another writer got there first)
        fresh_q = _after(quarantined, self.quarantine_offsets)
        fresh = _after(ingested, self.offsets)
        if fresh_q.num_rows:
            qtxns = {self.ids[p]: s for p, s in todo.items()}
            self.quarantine.write(fresh_q, app_transactions=qtxns)
            self.quarantine_offsets.update(todo)
        commit = self.target.write(fresh, app_transactions={self.ids[p]: s for p, s in todo.items()})
        self.offsets.update(todo)
        summary.events += fresh.num_rows
        summary.quarantined += fresh_q.num_rows
        summary.batches += 1
        _LOGGER.info("committed %d events (%d quarantined) to %s; offsets %s", fresh.num_rows, fresh_q.num_rows,
                     self.target.describe(commit), todo)


# ---- the run ------------------------------------------------------------------------------------------------
def run_ingest(
    config: Config,
    target: TableTarget,
    options: IngestOptions | None = None,
    *,
    stop: threading.Event | None = None,
    on_commit: Callable[[IngestSummary], None] | None = None,
    quarantine: TableTarget | None = None,
    source: str = "eventhub",
) -> IngestSummary:
    """Ingest the stream the Config names into ``target`` until ``stop`` is set, the stream is idle for
    ``options.until_idle`` s, or (with ``options.available_now``) every partition is read up to the last event it
    held at the start. ``source``: ``eventhub`` (AMQP: ``EVENTHUB_CONNECTION_STRING`` or Azure AD) or ``kafka``
    (Event Hubs' Kafka endpoint from the connection string, or any Kafka: ``KAFKA_*``)."""
    if source not in SOURCES:
        raise InputError(f"the ingest source must be one of {', '.join(SOURCES)}, got {source!r}")
    options = options or IngestOptions.from_config(config)
    stop = stop or threading.Event()
    quarantine = quarantine or quarantine_target(target)
    reader = _KafkaReader.open(config, options) if source == "kafka" else _EventHubReader.open(config, options)
    started = time.monotonic()
    summary = IngestSummary(str(target))
    buffer = _Buffer(2 * options.max_batch_events)
    try:
        target.check()
        quarantine.check()
        partitions = reader.partitions()
        committer = _Committer(target, quarantine, reader.target, partitions, json_column_pool(config))
        ends = reader.ends(partitions) if options.available_now else None
        reader.receive(committer.offsets, buffer, options)
        summary.stopped_by = _loop(buffer, committer, options, stop, summary, on_commit, ends)
        summary.lag = reader.lag(partitions, committer.offsets)
    finally:
        buffer.close()
        reader.close()
    summary.offsets = dict(committer.offsets)
    summary.redelivered = buffer.redelivered
    summary.elapsed = time.monotonic() - started
    if buffer.error is not None and summary.stopped_by == "error":
        raise ConnectionError(f"receiving from {reader.description} failed: {buffer.error}")
    return summary


def _receive_error(buffer: _Buffer, partition: str | None, fatal: bool, message: str) -> None:
    """An error the receiver reported (already one line, secrets redacted): fatal ones stop the ingest."""
    if fatal:
        buffer.error = message
        buffer.close()
    _LOGGER.warning("receiving from partition %s: %s", partition, message)


class _EventHubReader:
    """Event Hubs over AMQP: the SDK receives in a child process (:mod:`.receiver`); management calls here."""

    def __init__(self, source: "EventHubTarget", consumer_group: str) -> None:
        self.target = source
        self.consumer_group = consumer_group
        self.client = source.consumer_client(consumer_group, retry_total=3, retry_backoff_factor=0.5)
        self.receiver: Receiver | None = None
        self._buffer: _Buffer | None = None

    @classmethod
    def open(cls, config: Config, options: IngestOptions) -> "_EventHubReader":
        from ..outputs.eventhubs import EventHubConfigError, target_from_config

        source = target_from_config(config)
        if source is None:
            raise EventHubConfigError("the ingest needs the EVENTHUB_CONNECTION_STRING environment variable (or a "
                                      "Databricks secret), or EVENTHUB_NAMESPACE + EVENTHUB_NAME for Azure AD")
        reader = cls(source, options.consumer_group)
        # The child starts at once and imports the SDK while this process reads the table.
        reader.receiver = Receiver(reader._on_events, reader._on_error).start()
        return reader

    @property
    def description(self) -> str:
        return self.target.description

    def _on_events(self, *args) -> None:
        if self._buffer is not None:
            self._buffer.put(*args)

    def _on_error(self, *args) -> None:
        if self._buffer is not None:
            _receive_error(self._buffer, *args)

    def partitions(self) -> list[str]:
        return _partition_ids(self.client, self.target)

    def ends(self, partitions: list[str]) -> "_PartitionEnds":
        return _PartitionEnds(self.client, self.target, partitions)

    def receive(self, offsets: dict[str, int | None], buffer: _Buffer, options: IngestOptions) -> None:
        self._buffer = buffer
        positions = {p: ("-1" if v is None else v) for p, v in offsets.items()}
        assert self.receiver is not None
        self.receiver.receive(ReceiveRequest(self.target, self.consumer_group, positions,
                                             prefetch=min(max(300, options.max_batch_events // 4), 2000)))

    def lag(self, partitions: list[str], offsets: dict[str, int | None]) -> dict[str, int | None]:
        return _lag(self.client, partitions, offsets)

    def close(self) -> None:
        if self.receiver is not None:
            self.receiver.stop()
        self.client.close()


class _KafkaReader:
    """Kafka (Event Hubs' Kafka endpoint or any Kafka): librdkafka in this process (:mod:`.kafka_receiver`)."""

    def __init__(self, source) -> None:
        self.source = source
        self.target = source.target

    @classmethod
    def open(cls, config: Config, options: IngestOptions) -> "_KafkaReader":
        from ..outputs.kafka import kafka_target_from_config
        from .kafka_receiver import KafkaSource

        return cls(KafkaSource(kafka_target_from_config(config), options.consumer_group, config.send_timeout_sec))

    @property
    def description(self) -> str:
        return self.source.description

    def partitions(self) -> list[str]:
        return self.source.partitions()

    def ends(self, partitions: list[str]) -> "_Ends":
        return _Ends(self.source.ends(partitions))

    def receive(self, offsets: dict[str, int | None], buffer: _Buffer, options: IngestOptions) -> None:
        self.source.receive(dict(offsets), buffer.put, partial(_receive_error, buffer))

    def lag(self, partitions: list[str], offsets: dict[str, int | None]) -> dict[str, int | None]:
        return self.source.lag(partitions, offsets)

    def close(self) -> None:
        self.source.close()


@dataclass
class _Ends:
    """Partition ends known at once."""

    values: dict[str, int | None]

    def get(self) -> dict[str, int | None]:
        return self.values


def _partition_ids(client, source: "EventHubTarget") -> list[str]:
    from ..outputs.eventhubs import EventHubConfigError, error_kind, one_line

    try:
        return list(client.get_partition_ids())
    except Exception as exc:  # noqa: BLE001 - the SDK raises many kinds; say which endpoint and why
        message = f"cannot read the partitions of {source.description}: {one_line(exc)}"
        if error_kind(exc) == "fatal":
            raise EventHubConfigError(message) from None
        raise ConnectionError(message) from None


def _partition_properties(client, partitions: list[str]) -> dict[str, Future]:
    """``get_partition_properties`` of every partition, called concurrently (each SDK management call opens its
    own AMQP link and mostly waits, about 0.35 s even on loopback)."""
    pool = ThreadPoolExecutor(max_workers=max(1, len(partitions)), thread_name_prefix="iotgen-ingest-properties")
    futures = {p: pool.submit(client.get_partition_properties, p) for p in partitions}
    pool.shutdown(wait=False)
    return futures


class _PartitionEnds:
    """The sequence number of the last event each partition holds at the start (None: empty), read in the
    background while the receiver starts."""

    def __init__(self, client, source: "EventHubTarget", partitions: list[str]) -> None:
        self.source = source
        self.futures = _partition_properties(client, partitions)

    def get(self) -> dict[str, int | None] | None:
        """The ends once all are read (None before); ``ConnectionError`` if one could not be read."""
        if not all(f.done() for f in self.futures.values()):
            return None
        from ..outputs.eventhubs import one_line

        ends = {}
        for partition, future in self.futures.items():
            error = future.exception()
            if error is not None:
                raise ConnectionError(f"cannot read partition {partition} of {self.source.description}: "
                                      f"{one_line(error)}")
            properties = future.result()
            ends[partition] = None if properties["is_empty"] else properties["last_enqueued_sequence_number"]
        return ends


def _caught_up(buffer: _Buffer, committed: dict[str, int | None], partition_ends: Any) -> bool:
    """Whether every partition has been received (or committed) up to its end; call holding ``buffer.cond``."""
    ends = partition_ends.get()
    if ends is None:
        return False
    for partition, end in ends.items():
        if end is None:
            continue
        done = committed.get(partition)
        seen = max(buffer.last_seen.get(partition, -1), -1 if done is None else done)
        if seen < end:
            return False
    return True


def _loop(buffer: _Buffer, committer: _Committer, options: IngestOptions, stop: threading.Event,
          summary: IngestSummary, on_commit, ends: Any = None) -> str:
    while True:
        with buffer.cond:
            now = time.monotonic()
            full = buffer.count >= options.max_batch_events
            old = buffer.count and buffer.first_buffered is not None \
                and now - buffer.first_buffered >= options.max_batch_seconds
            idle = options.until_idle is not None and now - buffer.last_event >= options.until_idle
            caught_up = ends is not None and _caught_up(buffer, committer.offsets, ends)
            ending = stop.is_set() or buffer.closed
            if not (full or old or idle or caught_up or ending):
                buffer.cond.wait(0.1)
                continue
        if stop.is_set() or buffer.closed or idle or caught_up:
            buffer.close()  # stop receiving; commit what is held
        while buffer.count:
            committer.commit(buffer.take(options.max_batch_events), summary)
            if on_commit:
                on_commit(summary)
            if not buffer.closed:
                break
        if buffer.error is not None:
            return "error"
        if stop.is_set():
            return "stop request"
        if caught_up:
            return "available now (every partition read to its last event at the start)"
        if idle:
            return f"idle ({options.until_idle:g} s without events)"
        if buffer.closed:
            return "receiver stopped"


def _lag(client, partitions: list[str], offsets: dict[str, int | None]) -> dict[str, int | None]:
    lag: dict[str, int | None] = {}
    for partition, future in _partition_properties(client, partitions).items():
        try:
            last = future.result(timeout=JOIN_TIMEOUT)["last_enqueued_sequence_number"]
        except Exception:  # noqa: BLE001 - lag is informative only
            lag[partition] = None
            continue
        committed = offsets.get(partition)
        lag[partition] = max(0, last - (-1 if committed is None else committed))
    return lag
