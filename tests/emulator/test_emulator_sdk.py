"""The real azure-eventhub SDK (sync clients) against the emulator subprocess."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import defaultdict

import pytest
from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient

pytestmark = pytest.mark.timeout(120)

UTC = dt.timezone.utc


def _producer(emulator):
    return EventHubProducerClient.from_connection_string(emulator.connection_string, retry_total=1)


def _close_to_now(moment: dt.datetime, seconds: float = 120) -> bool:
    return abs((dt.datetime.now(UTC) - moment).total_seconds()) < seconds


def test_eventhub_and_partition_properties(emulator):
    with _producer(emulator) as producer:
        hub = producer.get_eventhub_properties()
        assert hub["eventhub_name"] == emulator.hub
        assert hub["partition_ids"] == ["0", "1", "2", "3"]
        assert _close_to_now(hub["created_at"])

        empty = producer.get_partition_properties("1")
        assert empty["eventhub_name"] == emulator.hub
        assert empty["id"] == "1"
        assert empty["is_empty"] is True
        assert empty["beginning_sequence_number"] == 0
        assert empty["last_enqueued_sequence_number"] == -1
        assert empty["last_enqueued_offset"] == "-1"

        batch = producer.create_batch(partition_id="1")
        for i in range(3):
            batch.add(EventData(f"event {i}"))
        producer.send_batch(batch)

        filled = producer.get_partition_properties("1")
        assert filled["is_empty"] is False
        assert filled["beginning_sequence_number"] == 0
        assert filled["last_enqueued_sequence_number"] == 2
        assert filled["last_enqueued_offset"] == "2"
        assert _close_to_now(filled["last_enqueued_time_utc"])
        assert producer.get_partition_properties("0")["is_empty"] is True

    with EventHubConsumerClient.from_connection_string(emulator.connection_string, consumer_group="$Default") as c:
        assert c.get_partition_ids() == ["0", "1", "2", "3"]


def test_bulk_round_trip_keeps_content_and_key_order(emulator, receiver):
    total, keys = 2000, [f"device-{k:02d}" for k in range(16)]
    sent: dict[int, dict] = {}
    with _producer(emulator) as producer:
        for key_index, key in enumerate(keys):
            batch = producer.create_batch(partition_key=key)
            for i in range(key_index, total, len(keys)):
                body = json.dumps({"i": i, "key": key, "pad": "x" * 200}).encode()
                event = EventData(body)
                event.properties = {"i": i, "key": key, "ratio": i / 7, "flag": i % 2 == 0}
                event.content_type = "application/json"
                event.correlation_id = f"corr-{i}"
                batch.add(event)
                sent[i] = {"body": body, "key": key}
            producer.send_batch(batch)
    assert len(sent) == total

    # One consumer per partition, concurrently: quicker to start and stop than a load-balancing one.
    by_partition = receiver.partitions(emulator.connection_string, ["0", "1", "2", "3"], total)

    assert sum(len(events) for events in by_partition.values()) == total
    seen: set[int] = set()
    by_key: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    for partition, events in by_partition.items():
        assert [e.sequence_number for e in events] == list(range(len(events)))
        for event in events:
            props = {k.decode(): v for k, v in event.properties.items()}
            i = props["i"]
            key = sent[i]["key"]
            assert event.body_as_str().encode() == sent[i]["body"]
            assert props == {"i": i, "key": key.encode(), "ratio": i / 7, "flag": i % 2 == 0}
            assert event.content_type == "application/json"
            assert event.correlation_id == f"corr-{i}"
            assert event.partition_key == key.encode()
            assert event.offset == str(event.sequence_number)
            assert _close_to_now(event.enqueued_time)
            seen.add(i)
            by_key[key].append((partition, event.sequence_number, i))

    assert seen == set(range(total))
    for key, placements in by_key.items():
        assert len({partition for partition, _, _ in placements}) == 1, f"{key} spread over partitions"
        in_sequence_order = [i for _, _, i in sorted(placements)]
        assert in_sequence_order == sorted(in_sequence_order), f"{key} out of order"
    assert sum(1 for events in by_partition.values() if events) > 1, "16 keys should use several partitions"


def _send_bodies(producer, bodies, partition_id="0"):
    batch = producer.create_batch(partition_id=partition_id)
    for body in bodies:
        batch.add(EventData(body))
    producer.send_batch(batch)


def _bodies(events):
    return [e.body_as_str() for e in events]


def test_read_from_sequence_number_offset_time_and_latest(emulator, receiver):
    cs = emulator.connection_string
    with _producer(emulator) as producer:
        _send_bodies(producer, [f"e{i}" for i in range(5)])
        time.sleep(0.05)  # the second batch gets a later enqueued time
        _send_bodies(producer, [f"e{i}" for i in range(5, 10)])
        fifth_time = producer.get_partition_properties("0")["last_enqueued_time_utc"]

        # The receivers run concurrently: each SDK client spends most of its time polling.
        exclusive = receiver(cs, partition_id="0", starting_position=4, track_last_enqueued_event_properties=True)
        inclusive = receiver(cs, partition_id="0", starting_position=4, inclusive=True)
        by_offset = receiver(cs, partition_id="0", starting_position="6")
        by_time = receiver(cs, partition_id="0", starting_position=fifth_time, inclusive=True)
        before_time = receiver(cs, partition_id="0", starting_position=fifth_time - dt.timedelta(milliseconds=1))
        latest = receiver(cs, partition_id="0", starting_position="@latest")

        exclusive_events = exclusive.wait_for(5, settle=0.3)
        assert _bodies(exclusive_events) == [f"e{i}" for i in range(5, 10)]
        assert [e.sequence_number for e in exclusive_events] == list(range(5, 10))
        assert exclusive.last_enqueued is not None  # track_last_enqueued_event_properties
        assert (exclusive.last_enqueued["sequence_number"], exclusive.last_enqueued["offset"]) == (9, "9")
        assert exclusive.last_enqueued["enqueued_time"] == fifth_time
        assert _close_to_now(exclusive.last_enqueued["retrieval_time"])
        assert _bodies(inclusive.wait_for(6, settle=0.3)) == [f"e{i}" for i in range(4, 10)]
        assert _bodies(by_offset.wait_for(3, settle=0.3)) == ["e7", "e8", "e9"]
        assert _bodies(by_time.wait_for(5, settle=0.3)) == [f"e{i}" for i in range(5, 10)]
        assert _bodies(before_time.wait_for(5, settle=0.3)) == [f"e{i}" for i in range(5, 10)]

        latest.wait_live()
        _send_bodies(producer, ["n0", "n1", "n2"])
        newer = latest.wait_for(3, settle=0.3)
        assert _bodies(newer) == ["n0", "n1", "n2"]
        assert [e.sequence_number for e in newer] == [10, 11, 12]


def test_explicit_partition_single_events_and_round_robin(emulator, receiver):
    with _producer(emulator) as producer:
        _send_bodies(producer, [f"p3-{i}" for i in range(5)], partition_id="3")
        producer.send_event(EventData("single"), partition_id="2")
        for i in range(8):  # no partition id nor key: the service spreads batches round-robin
            producer.send_batch([EventData(f"rr-{i}")])

    received = receiver.partitions(emulator.connection_string, ["0", "1", "2", "3"], 14)
    assert {p: len(events) for p, events in received.items()} == {"0": 2, "1": 2, "2": 3, "3": 7}
    assert _bodies(received["3"])[:5] == [f"p3-{i}" for i in range(5)]
    assert _bodies(received["2"])[0] == "single"
    assert sorted(_bodies([e for events in received.values() for e in events if e.body_as_str()[:3] == "rr-"])) \
        == [f"rr-{i}" for i in range(8)]


def test_exclusive_consumers_take_over_by_owner_level(emulator, receiver):
    cs = emulator.connection_string
    with _producer(emulator) as producer:
        _send_bodies(producer, ["a", "b", "c"])
        first = receiver(cs, partition_id="0", owner_level=1)
        assert _bodies(first.wait_for(3)) == ["a", "b", "c"]

        second = receiver(cs, partition_id="0", owner_level=2)
        assert _bodies(second.wait_for(3)) == ["a", "b", "c"]
        stolen = first.wait_for_error()
        assert "amqp:link:stolen" in str(stolen) and "higher epoch of '2'" in str(stolen)

        lower = receiver(cs, partition_id="0", owner_level=1)
        no_epoch = receiver(cs, partition_id="0")
        other_group = receiver(cs, partition_id="0", consumer_group="other")  # epochs are per consumer group
        for refused in (lower, no_epoch):
            assert "amqp:link:stolen" in str(refused.wait_for_error())
            assert "cannot be created" in str(refused.errors[0])
        _send_bodies(producer, ["d"])
        assert _bodies(second.wait_for(4)) == ["a", "b", "c", "d"]
        assert len(other_group.wait_for(4)) == 4 and not other_group.errors
        assert not lower.events and not no_epoch.events and len(first.events) == 3
