"""Events streamed with the real SDK to the local endpoint come back equal, in order, from any position."""

from __future__ import annotations

from collections import defaultdict

import pytest

from iotgen.generation.generator import event_dicts, generate_range
from iotgen.outputs.eventhubs import EventHubProducer, partition_for_key, read_events
from iotgen.runs.stream import LIVE_TIME_COLUMNS, connect, stream_events
from iotgen.settings.schema import SCHEMA_VERSION
from iotgen.spec.spec_file import generator_spec


def expected_events(config, n, start=0):
    return event_dicts(generate_range(generator_spec(config), start, start + n))


@pytest.mark.parametrize("fast, hub, n", [(True, "a", 2000), (False, "b", 600)],
                         ids=["encoded-batches", "sdk-public-api"])
def test_events_come_back_equal_with_their_properties_and_each_device_in_order(hubs, fast, hub, n, stream_config,
                                                                                read_back):
    connection = hubs.connection_string_for(hub)
    config = stream_config(connection, stream_events=n, batch_size=700, stream_time_mode="window")
    with EventHubProducer.open(config, fast=fast) as producer:
        assert producer.fast is fast
        summary = stream_events(config, producer)
    assert (summary.sent, summary.acknowledged, summary.retried, summary.failed) == (n, n, 0, 0)
    assert summary.ok and summary.stopped_by == "events" and summary.resume_from == n

    received = read_back(connection, n, drain=True)
    expected = {e["event_id"]: e for e in expected_events(config, n)}
    assert len(received) == n and {r.body["event_id"] for r in received} == set(expected)
    index = {event_id: i for i, event_id in enumerate(expected)}
    per_sensor = defaultdict(list)
    for r in received:
        assert r.body == expected[r.body["event_id"]]
        assert r.content_type == "application/json" and r.message_id == r.body["event_id"]
        assert r.properties == {"schema_version": SCHEMA_VERSION, "device_type": r.body["device_type"]}
        assert r.partition_key == r.body["sensor_id"]
        assert r.partition == str(partition_for_key(r.body["sensor_id"], 4))
        per_sensor[r.body["sensor_id"]].append((r.partition, r.sequence_number, index[r.body["event_id"]]))
    assert summary.partitions == {p: sum(r.partition == p for r in received) for p in "0123"}
    for sensor, seen in per_sensor.items():
        assert len({p for p, _, _ in seen}) == 1, f"{sensor} spread over partitions"
        assert [i for _, _, i in sorted(seen)] == sorted(i for _, _, i in seen), f"{sensor} out of order"

    if not fast:
        return
    partition0 = [r for r in received if r.partition == "0"]  # reading from the start and from a position
    assert [r.sequence_number for r in partition0] == list(range(len(partition0)))
    k = len(partition0) // 2
    tail = read_back(connection, len(partition0) - k, partition_id="0", starting_position=k, inclusive=True)
    assert [r.body for r in tail] == [r.body for r in partition0[k:]]
    after = read_back(connection, len(partition0) - k - 1, partition_id="0", starting_position=k)
    assert [r.sequence_number for r in after] == list(range(k + 1, len(partition0)))
    ours = read_events(producer.target, max_events=5, partition_id="0", timeout=20)
    assert [e["event"] for e in ours] == [r.body for r in partition0[:5]]


def test_live_time_rebases_event_times_and_keeps_ids_and_payloads(hubs, stream_config, read_back):
    connection = hubs.connection_string_for("c")
    config = stream_config(connection, stream_events=600, batch_size=200, rate_events_per_sec=2000)
    assert stream_events(config).acknowledged == 600
    received = {r.body["event_id"]: r.body for r in read_back(connection, 600)}
    expected = expected_events(config, 600)
    assert set(received) == {e["event_id"] for e in expected}
    for event in expected:
        got = received[event["event_id"]]
        assert {k: v for k, v in got.items() if k not in LIVE_TIME_COLUMNS} == \
               {k: v for k, v in event.items() if k not in LIVE_TIME_COLUMNS}
        assert got["timestamp"] != event["timestamp"]
        assert got["created_at"] >= got["timestamp"] and got["updated_at"] >= got["created_at"]
        assert got["last_calibration"] < got["timestamp"]


def test_without_a_partition_key_the_service_spreads_the_batches(hubs, stream_config, read_back):
    connection = hubs.connection_string_for("d")
    config = stream_config(connection, stream_events=1000, batch_size=125, partition_key="none",
                           stream_time_mode="window")
    summary = stream_events(config)
    received = read_back(connection, 1000)
    assert summary.acknowledged == 1000 and len(received) == 1000
    assert {r.partition_key for r in received} == {None}
    assert len({r.partition for r in received}) == 4
    assert sorted(r.body["event_id"] for r in received) == sorted(e["event_id"] for e in expected_events(config, 1000))


def test_batches_are_packed_by_bytes_up_to_the_limit(hubs, stream_config, read_back):
    connection = hubs.connection_string_for("e")
    config = stream_config(connection, stream_events=1000, batch_size=1000, max_batch_bytes=65536,
                           partition_key="none")
    with EventHubProducer.open(config) as producer:
        chunk = producer.prepare(generate_range(generator_spec(config), 0, 1000), 0)
        sizes = [b.size for b in chunk.batches]
        assert all(size <= 65536 for size in sizes) and sum(b.count for b in chunk.batches) == 1000
        assert all(size > 65536 - 4000 for size in sizes[:-1])  # full but for less than one event
        summary = stream_events(config, producer)
    assert summary.batches == len(sizes) and summary.acknowledged == 1000
    assert len(read_back(connection, 1000)) == 1000


def test_with_nothing_configured_connect_starts_a_local_emulator_and_stops_it(monkeypatch, stream_config,
                                                                             read_back):
    monkeypatch.delenv("EVENTHUB_CONNECTION_STRING", raising=False)
    config = stream_config("unused").replace(eventhub_connection_string=None, stream_events=500, batch_size=250)
    with connect(config) as connection:
        assert connection.local and "127.0.0.1" in connection.target.description
        emulator = connection.emulator
        summary = stream_events(connection.config, connection.producer)
        assert summary.acknowledged == 500
        assert len(read_back(connection.config.eventhub_connection_string.reveal(), 500)) == 500
    assert not emulator.running


def test_a_paced_duration_run_sends_the_events_due_and_an_unpaced_one_stops_on_time(hubs, stream_config):
    connection = hubs.connection_string_for("g")
    paced = stream_events(stream_config(connection, stream_duration_sec=1.0, rate_events_per_sec=2000,
                                        batch_size=200, ramp_up_sec=0.5))
    assert paced.stopped_by == "duration" and paced.ok
    assert paced.acknowledged == 1500  # 2000/s for 1 s, less the half-second ramp's missing half
    unpaced = stream_events(stream_config(connection, stream_duration_sec=0.5, batch_size=200,
                                          stream_start_event=1500))
    assert unpaced.stopped_by == "duration" and unpaced.ok and unpaced.acknowledged == unpaced.sent > 0
