"""Durability with ``--data-dir``: SIGKILL, torn writes, restart."""

from __future__ import annotations

import asyncio
import struct
import zlib
from pathlib import Path

import pytest
from azure.eventhub import EventData, EventHubProducerClient

from iotgen.emulator.codec import Symbol, decode_message
from iotgen.emulator.store import EventStore, PartitionLog, StoreError

pytestmark = pytest.mark.timeout(120)


def _send(producer: EventHubProducerClient, bodies: list[str], **batch_options: str) -> None:
    batch = producer.create_batch(**batch_options)
    for body in bodies:
        batch.add(EventData(body))
    producer.send_batch(batch)


def _positions(by_partition: dict[str, list[EventData]]) -> dict[str, tuple[str, int, str, object]]:
    """Each event's body -> (partition, sequence number, offset, enqueued time)."""
    return {e.body_as_str(): (p, e.sequence_number, e.offset, e.enqueued_time)
            for p, events in by_partition.items() for e in events}


def test_acknowledged_events_survive_sigkill_and_a_torn_write(emulator_factory, receiver, tmp_path):
    data_dir = tmp_path / "data"
    emulator = emulator_factory(hub="iot-events", partitions=2, data_dir=data_dir)
    sent = []
    with EventHubProducerClient.from_connection_string(emulator.connection_string, retry_total=1) as producer:
        for key in ("a", "b", "c"):
            bodies = [f"{key}-{i}" for i in range(50)]
            _send(producer, bodies, partition_key=key)
            sent += bodies
        _send(producer, [f"p1-{i}" for i in range(5)], partition_id="1")
        sent += [f"p1-{i}" for i in range(5)]
    acknowledged = _positions(receiver.partitions(emulator.connection_string, ["0", "1"], len(sent), settle=0,
                                                  stop=True))
    assert sorted(acknowledged) == sorted(sent)

    emulator.kill()  # SIGKILL: no chance to flush or close anything
    log = data_dir / "iot-events" / "partition-1.log"
    size = log.stat().st_size
    with open(log, "ab") as torn:  # a record cut short by the crash
        torn.write(struct.pack(">II", 500, 0) + b"partial")
    emulator.restart()
    assert log.stat().st_size == size, "the torn tail is truncated on load"

    with EventHubProducerClient.from_connection_string(emulator.connection_string, retry_total=1) as producer:
        _send(producer, ["new-0", "new-1"], partition_id="1")
    restored = _positions(receiver.partitions(emulator.connection_string, ["0", "1"], len(sent) + 2))
    new = {body: restored.pop(body)[:3] for body in ("new-0", "new-1")}
    assert restored == acknowledged  # same partitions, sequence numbers, offsets and enqueued times
    first_new = sum(1 for position in acknowledged.values() if position[0] == "1")
    assert new == {"new-0": ("1", first_new, str(first_new)), "new-1": ("1", first_new + 1, str(first_new + 1))}
    assert "truncating" in emulator.output()


def _append(log: PartitionLog, bodies: list[bytes], partition_key: str | None = None) -> None:
    from iotgen.emulator.codec import Message, data_section, encode_message

    log.append([encode_message(Message(body=[data_section(b)])) for b in bodies], partition_key)
    asyncio.run(log.flush())


def test_partition_log_truncates_a_corrupt_tail_and_continues_the_sequence(tmp_path):
    path = tmp_path / "partition-0.log"
    log = PartitionLog("hub", "0", path)
    _append(log, [b"one", b"two", b"three"])
    log.close()
    good_size = path.stat().st_size

    # Corrupt the CRC of a fourth record and add trailing garbage.
    record = path.read_bytes()[: good_size // 3]
    length, crc = struct.unpack_from(">II", record)
    with open(path, "ab") as handle:
        handle.write(struct.pack(">II", length, crc ^ 1) + record[8:] + b"\x00\x01")

    reopened = PartitionLog("hub", "0", path)
    try:
        assert path.stat().st_size == good_size
        assert (reopened.first_sequence, reopened.visible_end, reopened.next_sequence) == (0, 3, 3)
        assert [decode_message(reopened.event(i).message).data for i in range(3)] == [[b"one"], [b"two"], [b"three"]]
        _append(reopened, [b"four"], partition_key="k")
        stored = decode_message(reopened.event(3).message)
        assert stored.message_annotations[Symbol("x-opt-sequence-number")] == 3
        assert stored.message_annotations[Symbol("x-opt-offset")] == "3"
        assert stored.message_annotations[Symbol("x-opt-partition-key")] == "k"
    finally:
        reopened.close()
    body = path.read_bytes()
    assert zlib.crc32(body[good_size + 8:]) == struct.unpack_from(">II", body, good_size)[1]


def test_partition_log_drops_the_oldest_events_beyond_its_memory_budget(tmp_path):
    log = PartitionLog("hub", "0", tmp_path / "partition-0.log", max_bytes=5000)
    try:
        for i in range(40):
            _append(log, [b"%03d" % i + b"x" * 97])
        assert (log.next_sequence, log.visible_end) == (40, 40)
        assert 0 < log.first_sequence < 40
        kept = range(log.first_sequence, 40)
        assert sum(len(log.event(i).message) + 100 for i in kept) <= 5000
        assert [decode_message(log.event(i).message).data[0][:3] for i in kept] == [b"%03d" % i for i in kept]
        with pytest.raises(IndexError):
            log.event(log.first_sequence - 1)
        assert log.last_event is not None and log.last_event.sequence_number == 39
        assert log.sequence_after_time(0, inclusive=True) == log.first_sequence
    finally:
        log.close()
    reloaded = PartitionLog("hub", "0", tmp_path / "partition-0.log", max_bytes=5000)
    try:  # the file keeps everything; the reload keeps the newest events within the budget
        assert (reloaded.next_sequence, reloaded.visible_end) == (40, 40)
        assert 0 < reloaded.first_sequence < 40 and reloaded.event(39).sequence_number == 39
    finally:
        reloaded.close()


def test_store_refuses_a_data_dir_created_with_another_partition_count(tmp_path: Path):
    EventStore({"hub": 2}, tmp_path).close()
    with pytest.raises(StoreError, match="created with 2 partitions"):
        EventStore({"hub": 3}, tmp_path)
    reopened = EventStore({"HUB": 2}, tmp_path)
    try:
        assert reopened.get("hub") is reopened.get("Hub")
    finally:
        reopened.close()
