"""Per-partition event logs of the Event Hubs emulator.

Each partition keeps its events in order with sequence numbers starting at 0, an
enqueued time (milliseconds since the epoch, never decreasing) and the event's
encoded AMQP message *already annotated* with ``x-opt-sequence-number``,
``x-opt-offset``, ``x-opt-enqueued-time`` (and ``x-opt-partition-key`` when the
event was routed by key), so delivering an event never re-encodes it.

Offsets are the sequence number written as a decimal string (``"0"``, ``"1"``...),
not a byte position.  Memory is bounded per partition: beyond a budget the oldest
events are dropped from memory (the data file keeps them).

With a data directory each partition is also an append-only file of records::

    record := u32 body length | u32 CRC-32 of body | body
    body   := u64 sequence number | i64 enqueued time (ms) | u32 header size | message

Appends are written at once and made durable with ``fsync`` (group commit, in a
worker thread) before :meth:`PartitionLog.flush` returns; events become visible to
readers only once durable, so a reader never sees an event that a crash could
lose.  On load a torn or corrupt tail (a crash in the middle of a write) is
detected by its length/CRC and truncated.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import os
import re
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .codec import (
                    BATCH_MESSAGE_FORMAT,
                    CodecError,
                    Long,
                    MessageLayout,
                    Section,
                    Symbol,
                    Timestamp,
                    decode_value,
                    encode_value,
                    section_at,
                    value_end,
                    )

__all__ = [
    "EventHub",
    "EventStore",
    "PartitionLog",
    "StoreError",
    "DataDirInUse",
    "StoredEvent",
    "parse_transfer",
    "partition_properties",
    "validate_hub_name",
]

_LOGGER = logging.getLogger(__name__)

PARTITION_KEY = "x-opt-partition-key"
SEQUENCE_NUMBER = "x-opt-sequence-number"
OFFSET = "x-opt-offset"
ENQUEUED_TIME = "x-opt-enqueued-time"
_SERVICE_ANNOTATIONS = frozenset((SEQUENCE_NUMBER, OFFSET, ENQUEUED_TIME))

_HUB_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,254}[A-Za-z0-9])?$")


class StoreError(RuntimeError):
    """The event store cannot be opened or written."""


def validate_hub_name(name: str) -> str:
    """Return ``name`` if it is a valid Event Hub name, else raise ``ValueError``."""
    if not _HUB_NAME.match(name):
        raise ValueError(
            f"invalid event hub name {name!r}: use 1-256 letters, digits, '.', '-' or '_', "
            "starting and ending with a letter or digit")
    return name


def _raw_entry(key: str, value: object) -> bytes:
    return bytes(encode_value(value, encode_value(Symbol(key))))


_SEQUENCE_KEY = bytes(encode_value(Symbol(SEQUENCE_NUMBER)))
_OFFSET_KEY = bytes(encode_value(Symbol(OFFSET)))
_ENQUEUED_KEY = bytes(encode_value(Symbol(ENQUEUED_TIME)))
_PARTITION_KEY_KEY = bytes(encode_value(Symbol(PARTITION_KEY)))
_LONG = struct.Struct(">q")


def _enqueued_time_entry(enqueued_time: int) -> bytes:
    """Raw map entry of the ``x-opt-enqueued-time`` annotation."""
    return _ENQUEUED_KEY + b"\x83" + _LONG.pack(enqueued_time)


def _sequence_entries(sequence_number: int) -> bytes:
    """Raw map entries of the ``x-opt-sequence-number`` and ``x-opt-offset`` annotations."""
    offset = b"%d" % sequence_number
    return b"".join((_SEQUENCE_KEY, b"\x81", _LONG.pack(sequence_number),
                     _OFFSET_KEY, b"\xa1", bytes((len(offset),)), offset))


def _decode_annotations(layout: MessageLayout) -> dict[object, object]:
    raw = struct.pack(">BII", 0xD1, len(layout.annotations) + 4, layout.annotation_count)
    annotations, _ = decode_value(raw + layout.annotations)
    if not isinstance(annotations, dict):
        raise CodecError("message annotations are not a map")
    return annotations


def _annotation_flags(layout: MessageLayout) -> tuple[bool, bool]:
    """Return (has a partition key, has service annotations that must be replaced).

    Looks at the raw bytes first: the common cases (no ``x-opt-`` key at all, or
    only the SDK-encoded partition key) need no decoding.
    """
    raw = layout.annotations
    if b"x-opt-" not in raw:
        return False, False
    if raw.count(b"x-opt-") == 1 and _PARTITION_KEY_KEY in raw:
        return True, False
    keys = {str(k) for k in _decode_annotations(layout)}
    return PARTITION_KEY in keys, bool(keys & _SERVICE_ANNOTATIONS)


def _drop_service_annotations(layout: MessageLayout) -> None:
    kept = {k: v for k, v in _decode_annotations(layout).items() if str(k) not in _SERVICE_ANNOTATIONS}
    layout.annotations = b"".join(bytes(encode_value(v, encode_value(k))) for k, v in kept.items())
    layout.annotation_count = 2 * len(kept)


def _read_partition_key(message: bytes) -> str | None:
    layout = MessageLayout.parse(message)
    if PARTITION_KEY.encode() not in layout.annotations:
        return None
    value = _decode_annotations(layout).get(PARTITION_KEY)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return None if value is None else str(value)


_DATA_SECTION = bytes((0x00, 0x53, Section.DATA))
_SIZE32 = struct.Struct(">I")


def parse_transfer(payload: bytes, message_format: int) -> tuple[list[bytes], str | None]:
    """Split a producer's delivery into its events and the partition key it carries.

    A batch (message-format ``0x80013700``) has one data section per event, each a
    complete encoded message; any other delivery is a single event.
    """
    if message_format != BATCH_MESSAGE_FORMAT:
        return [payload], _read_partition_key(payload)
    events: list[bytes] = []
    envelope_end: int | None = None
    pos, total = 0, len(payload)
    while pos < total:
        if payload[pos:pos + 3] == _DATA_SECTION:  # fast path for the SDK's encoding
            constructor = payload[pos + 3]
            if constructor == 0xB0:
                start = pos + 8
                end = start + _SIZE32.unpack_from(payload, pos + 4)[0]
            elif constructor == 0xA0:
                start = pos + 5
                end = start + payload[pos + 4]
            else:
                raise CodecError("batch data section is not binary")
            if end > total:
                raise CodecError("truncated batch data section")
            code = Section.DATA
        else:
            code, value_start = section_at(payload, pos)
            end = value_end(payload, value_start)
            if code in (Section.AMQP_SEQUENCE, Section.AMQP_VALUE):
                raise CodecError("a batch body must be made of data sections")
            if code == Section.DATA:
                if payload[value_start] not in (0xA0, 0xB0):
                    raise CodecError("batch data section is not binary")
                start = value_start + (2 if payload[value_start] == 0xA0 else 5)
        if code == Section.DATA:
            envelope_end = pos if envelope_end is None else envelope_end
            events.append(payload[start:end])
        pos = end
    return events, _read_partition_key(payload[:envelope_end])


class StoredEvent:
    """One event of a partition, its message ready to deliver."""

    __slots__ = ("enqueued_time", "header_size", "kafka_tail", "message", "sequence_number")

    def __init__(self, sequence_number: int, enqueued_time: int, message: bytes, header_size: int) -> None:
        self.sequence_number = sequence_number
        self.enqueued_time = enqueued_time
        #: The complete encoded message including the service annotations.
        self.message = message
        #: Size of the leading header section, where delivery annotations may be inserted.
        self.header_size = header_size
        #: The event as a Kafka consumer sees it (key, value, headers), once the Kafka endpoint has built it.
        self.kafka_tail: bytes | None = None

    @property
    def offset(self) -> str:
        return str(self.sequence_number)

    @classmethod
    def annotate(cls, raw_message: bytes, sequence_number: int, enqueued_time: int,
                 partition_key_entry: bytes, time_entry: bytes) -> StoredEvent:
        """Build the stored form of a received event message.

        ``time_entry`` is the raw ``x-opt-enqueued-time`` map entry and
        ``partition_key_entry`` the raw ``x-opt-partition-key`` entry (empty when
        the event was not routed by key); both are shared by a whole append.
        """
        layout = MessageLayout.parse(raw_message)
        has_key, has_service_annotations = _annotation_flags(layout)
        if has_service_annotations:
            _drop_service_annotations(layout)
        extra = _sequence_entries(sequence_number) + time_entry
        count = 6
        if partition_key_entry and not has_key:
            extra += partition_key_entry
            count += 2
        return cls(sequence_number, enqueued_time, layout.encode(extra, count), len(layout.header))


_RECORD_HEAD = struct.Struct(">II")
_RECORD_META = struct.Struct(">QqI")


def _encode_record(event: StoredEvent) -> bytes:
    body = _RECORD_META.pack(event.sequence_number, event.enqueued_time, event.header_size) + event.message
    return _RECORD_HEAD.pack(len(body), zlib.crc32(body)) + body


def _now_ms() -> int:
    return int(time.time() * 1000)


#: Bookkeeping bytes counted per retained event on top of its message.
_EVENT_OVERHEAD = 100


class PartitionLog:
    """The ordered events of one partition, optionally persisted to a file.

    Events are addressed by sequence number.  With ``max_bytes`` the oldest events
    are dropped from memory once the retained messages exceed it (like Event Hubs
    retention): ``first_sequence`` then moves forward.  The file keeps them all.
    """

    def __init__(self, hub_name: str, partition_id: str, path: Path | None = None,
                 max_bytes: int | None = None) -> None:
        self.hub_name = hub_name
        self.partition_id = partition_id
        self.max_bytes = max_bytes
        #: Sequence number of the oldest retained event.
        self.first_sequence = 0
        #: Sequence number the next appended event gets.
        self.next_sequence = 0
        #: Events before this sequence number are visible to readers (all, or the durable ones).
        self.visible_end = 0
        self._events: list[StoredEvent] = []
        self._retained_bytes = 0
        self._last_enqueued_time = 0
        self._listeners: set[Callable[[], None]] = set()
        self._fd: int | None = None
        self._sync_task: asyncio.Task[None] | None = None
        if path is not None:
            self._load(path)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    # -- persistence -------------------------------------------------------

    def _load(self, path: Path) -> None:
        if not path.exists():
            return
        data = path.read_bytes()
        pos = 0
        while pos + _RECORD_HEAD.size <= len(data):
            length, crc = _RECORD_HEAD.unpack_from(data, pos)
            body_start = pos + _RECORD_HEAD.size
            body = data[body_start:body_start + length]
            if length < _RECORD_META.size or len(body) != length or zlib.crc32(body) != crc:
                break
            sequence_number, enqueued_time, header_size = _RECORD_META.unpack_from(body)
            if sequence_number != self.next_sequence:
                break
            self._keep([StoredEvent(sequence_number, enqueued_time, body[_RECORD_META.size:], header_size)])
            self.visible_end = self.next_sequence
            self._retain()
            pos = body_start + length
        if pos != len(data):
            _LOGGER.warning("partition %s/%s: truncating %d bytes of torn or corrupt records at offset %d",
                            self.hub_name, self.partition_id, len(data) - pos, pos)
            with open(path, "r+b") as handle:
                handle.truncate(pos)
                handle.flush()
                os.fsync(handle.fileno())

    @property
    def persistent(self) -> bool:
        return self._fd is not None

    # -- readers -----------------------------------------------------------

    def event(self, sequence_number: int) -> StoredEvent:
        """The retained event with this sequence number (``IndexError`` if dropped or not yet stored)."""
        index = sequence_number - self.first_sequence
        if not 0 <= index < len(self._events):
            raise IndexError(f"event {sequence_number} is not retained in partition {self.partition_id}")
        return self._events[index]

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever new events become visible."""
        self._listeners.add(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        self._listeners.discard(listener)

    @property
    def listener_count(self) -> int:
        """Number of live readers waiting for new events."""
        return len(self._listeners)

    def _publish(self, upto: int) -> None:
        if upto > self.visible_end:
            self.visible_end = upto
            self._retain()
            for listener in list(self._listeners):
                listener()

    def sequence_after_time(self, enqueued_time: int, inclusive: bool) -> int:
        """Sequence number of the first visible event enqueued after (or at) ``enqueued_time``."""
        search = bisect.bisect_left if inclusive else bisect.bisect_right
        index = search(self._events, enqueued_time, hi=self.visible_end - self.first_sequence,
                       key=lambda e: e.enqueued_time)
        return self.first_sequence + index

    @property
    def last_event(self) -> StoredEvent | None:
        """The newest visible event."""
        return self.event(self.visible_end - 1) if self.visible_end > self.first_sequence else None

    def cache_kafka_tail(self, event: StoredEvent, tail: bytes) -> None:
        """Keep the Kafka form of a retained event (counted in the memory budget like its message)."""
        if event.kafka_tail is None:
            event.kafka_tail = tail
            self._retained_bytes += len(tail)

    # -- writers -----------------------------------------------------------

    def _keep(self, events: list[StoredEvent]) -> None:
        self._events.extend(events)
        self._retained_bytes += sum(len(e.message) for e in events) + _EVENT_OVERHEAD * len(events)
        self.next_sequence += len(events)
        self._last_enqueued_time = events[-1].enqueued_time

    def _retain(self) -> None:
        """Drop the oldest visible events while over budget (down to 90 %, keeping the newest)."""
        if self.max_bytes is None or self._retained_bytes <= self.max_bytes:
            return
        target = self.max_bytes * 9 // 10
        droppable = min(self.visible_end - self.first_sequence, len(self._events) - 1)
        dropped = 0
        while dropped < droppable and self._retained_bytes > target:
            event = self._events[dropped]
            self._retained_bytes -= len(event.message) + len(event.kafka_tail or b"") + _EVENT_OVERHEAD
            dropped += 1
        del self._events[:dropped]
        self.first_sequence += dropped

    def append(self, messages: Iterable[bytes], partition_key: str | None) -> None:
        """Append events; in memory they are visible at once, else after :meth:`flush`."""
        enqueued_time = max(_now_ms(), self._last_enqueued_time)
        first = self.next_sequence
        key_entry = b"" if partition_key is None else _raw_entry(PARTITION_KEY, partition_key)
        time_entry = _enqueued_time_entry(enqueued_time)
        new_events = [StoredEvent.annotate(raw, first + i, enqueued_time, key_entry, time_entry)
                      for i, raw in enumerate(messages)]
        if not new_events:
            return
        if self._fd is not None:
            data = memoryview(b"".join(_encode_record(event) for event in new_events))
            while data:
                data = data[os.write(self._fd, data):]
        self._keep(new_events)
        if self._fd is None:
            self._publish(self.next_sequence)

    async def flush(self) -> None:
        """Return once every event appended so far is durable and visible."""
        target = self.next_sequence
        while self.visible_end < target:
            if self._sync_task is None:
                self._sync_task = asyncio.ensure_future(self._sync())
            await asyncio.shield(self._sync_task)

    async def _sync(self) -> None:
        try:
            upto = self.next_sequence
            assert self._fd is not None
            await asyncio.to_thread(os.fsync, self._fd)
            self._publish(upto)
        finally:
            self._sync_task = None

    def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        self._listeners.clear()


@dataclass
class EventHub:
    """An Event Hub: its partitions and how events are routed to them."""

    name: str
    created_at: int
    partitions: list[PartitionLog]
    _next_partition: int = 0

    @property
    def partition_ids(self) -> list[str]:
        return [p.partition_id for p in self.partitions]

    def partition(self, partition_id: str) -> PartitionLog | None:
        for partition in self.partitions:
            if partition.partition_id == partition_id:
                return partition
        return None

    def route(self, partition_key: str | None) -> PartitionLog:
        """Pick a partition: by a stable hash of the key, else round-robin."""
        if partition_key is not None:
            return self.partitions[zlib.crc32(partition_key.encode("utf-8")) % len(self.partitions)]
        partition = self.partitions[self._next_partition]
        self._next_partition = (self._next_partition + 1) % len(self.partitions)
        return partition


class EventStore:
    """All Event Hubs of the emulator, in memory or under ``data_dir``.

    ``max_partition_bytes`` bounds the memory each partition keeps (see :class:`PartitionLog`).
    """

    def __init__(self, hubs: Mapping[str, int] | Sequence[tuple[str, int]], data_dir: Path | None = None,
                 max_partition_bytes: int | None = None) -> None:
        self.data_dir = data_dir
        self.max_partition_bytes = max_partition_bytes
        self._hubs: dict[str, EventHub] = {}
        self._lock: int | None = None
        items = hubs.items() if isinstance(hubs, Mapping) else hubs
        if data_dir is not None:
            self._lock = _lock_data_dir(data_dir)
        try:
            for name, partition_count in items:
                validate_hub_name(name)
                if partition_count < 1:
                    raise ValueError(f"event hub {name!r} needs at least one partition")
                self._hubs[name.lower()] = self._open_hub(name, partition_count)
        except Exception:
            self.close()
            raise

    def _open_hub(self, name: str, partition_count: int) -> EventHub:
        if self.data_dir is None:
            partitions = [PartitionLog(name, str(i), max_bytes=self.max_partition_bytes)
                          for i in range(partition_count)]
            return EventHub(name, _now_ms(), partitions)
        hub_dir = self.data_dir / name.lower()
        hub_dir.mkdir(parents=True, exist_ok=True)
        meta_path = hub_dir / "hub.json"
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta["partition_count"] != partition_count:
                raise StoreError(
                    f"event hub {name!r} in {self.data_dir} was created with {meta['partition_count']} "
                    f"partitions, not {partition_count}")
            created_at = int(meta["created_at"])
        else:
            created_at = _now_ms()
            tmp = meta_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"name": name, "partition_count": partition_count, "created_at": created_at}))
            os.replace(tmp, meta_path)
        partitions = [PartitionLog(name, str(i), hub_dir / f"partition-{i}.log", self.max_partition_bytes)
                      for i in range(partition_count)]
        return EventHub(name, created_at, partitions)

    def get(self, name: str) -> EventHub | None:
        """The hub called ``name`` (Event Hub names are case-insensitive)."""
        return self._hubs.get(name.lower())

    @property
    def hubs(self) -> list[EventHub]:
        return list(self._hubs.values())

    def close(self) -> None:
        for hub in self._hubs.values():
            for partition in hub.partitions:
                partition.close()
        if self._lock is not None:
            os.close(self._lock)  # releases the lock
            self._lock = None


LOCK_FILE = "emulator.lock"


class DataDirInUse(StoreError):
    """Another emulator process has the data directory open: two writers would corrupt its logs."""


def _lock_data_dir(data_dir: Path) -> int:
    """Hold an exclusive ``flock`` on ``data_dir/emulator.lock`` while the store is open (released by the OS
    when the process ends, however it ends); :class:`DataDirInUse` if another process holds it."""
    import fcntl

    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise DataDirInUse(f"{data_dir} is in use by another emulator (pid {holder}); two emulators on one data "
                           "directory would corrupt it") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def partition_properties(hub: EventHub, partition: PartitionLog) -> dict[str, object]:
    """The ``com.microsoft:partition`` management READ response."""
    last = partition.last_event
    return {
        "name": hub.name,
        "type": "com.microsoft:partition",
        "partition": partition.partition_id,
        "begin_sequence_number": Long(partition.first_sequence),
        "last_enqueued_sequence_number": Long(last.sequence_number if last else -1),
        "last_enqueued_offset": last.offset if last else "-1",
        "last_enqueued_time_utc": Timestamp(last.enqueued_time if last else 0),
        "is_partition_empty": last is None,
    }
