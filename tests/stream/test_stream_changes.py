"""``iotgen stream --changes-hub`` / ``--changes-topic``: the device registry's change feed goes to a second event
hub (or Kafka topic) beside the events, each change acknowledged before the events from its commit time on, and
a resumed stream goes on with the changes exactly where it stopped. Real local endpoints (the emulator's AMQP and
Kafka), read back with the SDK and confluent-kafka directly."""

from __future__ import annotations

import json
import os
import secrets
import threading
import time

import numpy as np
import pytest
from azure.eventhub import EventHubConsumerClient
from confluent_kafka import Consumer

from iotgen.faces.cli import main
from iotgen.generation.devices import change_feed
from iotgen.outputs.registry import encode_file
from iotgen.settings.config import Config
from iotgen.spec.spec_file import generator_spec

ANCHOR = "2026-01-08T00:00:00Z"
SPEC = {"profile": "fleet", "fleet": {"device_count": 40},
        "registry": {"commissioned_fraction": 0.2, "rollback": {"fraction": 0.3, "within": "3h"},
                     "relocations": {"per_device_day": 0.5, "cross_region_fraction": 0.5},
                     "replacements_per_device_day": 0.05, "decommissions_per_device_day": 0.05}}


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(SPEC))
    return str(path)


@pytest.fixture
def clean_env(monkeypatch):
    for name in [n for n in os.environ if n.startswith("IOTGEN_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("IOTGEN_ANCHOR_TIME", ANCHOR)
    return monkeypatch


def _args(spec_file: str, *more: str) -> list[str]:
    return ["stream", "--spec", spec_file, "--seed", "3", "--time-mode", "window",
            "--sleep", "0", "--batch-size", "1000", *more]


def _expected(spec_file: str, layout: str = "flat"):
    spec = generator_spec(Config(spec_file=spec_file, random_seed=3, anchor_time=ANCHOR))
    return spec, change_feed(spec, layout).changes


def _released(spec, changes, last_event: int) -> int:
    """Rows of the feed released by the clean time of event ``last_event`` (their commit times, running max)."""
    commit = np.asarray(changes.column("_commit_timestamp").cast("int64")) // 1000
    return int(np.searchsorted(np.maximum.accumulate(commit), spec.fleet.time_of_event(spec, last_event), "right"))


def _read(connection_string: str, count: int, timeout: float = 30.0) -> list[dict]:
    """Messages of a hub with their enqueue time, partition, key, id, properties and body (SDK consumer)."""
    client = EventHubConsumerClient.from_connection_string(connection_string, consumer_group="$Default")
    got: list[dict] = []
    enough = threading.Event()

    def on_batch(context, batch):
        for event in batch:
            key = event.partition_key
            got.append({"partition": context.partition_id, "sequence": event.sequence_number,
                        "enqueued": event.enqueued_time.timestamp(), "message_id": event.message_id,
                        "key": key.decode() if isinstance(key, bytes) else key,
                        "properties": {(k.decode() if isinstance(k, bytes) else k):
                                       (v.decode() if isinstance(v, bytes) else v)
                                       for k, v in (event.properties or {}).items()},
                        "body": json.loads(event.body_as_str())})
        if len(got) >= count:
            enough.set()

    thread = threading.Thread(target=client.receive_batch, daemon=True,
                              kwargs=dict(on_event_batch=on_batch, starting_position="-1", max_wait_time=0.3,
                                          max_batch_size=1000))
    thread.start()
    enough.wait(timeout)
    time.sleep(1.0)  # nothing more than expected arrives
    client.close()
    thread.join(15)
    return sorted(got, key=lambda m: (m["partition"], m["sequence"]))


def test_changes_reach_their_hub_before_the_events_from_their_commit_time_and_a_resume_goes_on(
        emulator_factory, spec_file, clean_env, capsys):
    emulator = emulator_factory(hub=["iot-events", "device-changes"], partitions=2, key=secrets.token_urlsafe(24))
    clean_env.setenv("EVENTHUB_CONNECTION_STRING", emulator.connection_string_for("iot-events"))
    spec, changes = _expected(spec_file)
    first, total = 4000, 7000
    assert main(_args(spec_file, "--events", str(first), "--changes-hub", "device-changes")) == 0
    out = capsys.readouterr()
    released = _released(spec, changes, first - 1)
    assert 0 < released < changes.num_rows
    assert f"changes    {released:,} sent to sb://127.0.0.1:" in out.out
    assert f"{released:,} acknowledged, 0 failed (changes #0 to #{released - 1:,})" in out.out
    assert "device changes to sb://127.0.0.1:" in out.err and "/device-changes" in out.err
    # resumed: the changes go on from where the first run stopped, none twice
    assert main(_args(spec_file, "--events", str(total - first), "--start", str(first),
                      "--changes-hub", "device-changes")) == 0
    capsys.readouterr()
    until = _released(spec, changes, total - 1)
    got = _read(emulator.connection_string_for("device-changes"), until)
    events = _read(emulator.connection_string_for("iot-events"), total)
    assert len(events) == total and len(got) == until > released
    expected = changes.slice(0, until).to_pylist()
    key = lambda row: (row["_commit_version"], row["_change_type"])  # noqa: E731
    bodies = [m["body"] for m in got]
    assert sorted(key(b) for b in bodies) == sorted(key(r) for r in expected)  # each change once
    assert all(m["key"] == m["body"]["sensor_id"] and m["message_id"] == str(m["body"]["_commit_version"])
               and m["properties"]["_change_type"] == m["body"]["_change_type"] for m in got)
    # one device's changes in one partition, in the feed's order
    position = {key(r): i for i, r in enumerate(expected)}
    for partition in {m["partition"] for m in got}:
        order = [position[key(m["body"])] for m in got if m["partition"] == partition]
        by_device: dict = {}
        for m, p in zip([m for m in got if m["partition"] == partition], order):
            by_device.setdefault(m["key"], []).append(p)
        assert all(ps == sorted(ps) for ps in by_device.values())
    # each change was enqueued before every event from its commit time on
    event_ms = np.array([_ms(m["body"]["timestamp"]) for m in events])
    event_enqueued = np.array([m["enqueued"] for m in events])
    order = np.argsort(event_ms)
    first_enqueued_after = np.minimum.accumulate(event_enqueued[order][::-1])[::-1]  # over events at/after a time
    late = 0
    for m in got:
        at = np.searchsorted(event_ms[order], _ms(m["body"]["_commit_timestamp"]), "left")
        if at < len(order) and m["enqueued"] > first_enqueued_after[at]:
            late += 1
    assert late == 0


def _ms(text: str) -> int:
    import datetime as dt

    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def test_debezium_changes_to_a_kafka_topic_keyed_by_device(emulator_factory, spec_file, clean_env, capsys):
    emulator = emulator_factory(hub=["iot-events", "cdc"], partitions=3, key=secrets.token_urlsafe(24),
                                kafka_port="any")
    clean_env.setenv("EVENTHUB_CONNECTION_STRING", emulator.connection_string_for("iot-events"))
    spec, changes = _expected(spec_file, "debezium")
    n = 3000
    assert main(_args(spec_file, "--events", str(n), "--protocol", "kafka", "--bootstrap-servers",
                      emulator.kafka_bootstrap, "--changes-topic", "cdc", "--cdc-layout", "debezium")) == 0
    out = capsys.readouterr().out
    flat = _expected(spec_file)[1]
    commit = np.maximum.accumulate(np.asarray(changes.column("ts_ms")))
    released = int(np.searchsorted(commit, spec.fleet.time_of_event(spec, n - 1), "right"))
    assert 0 < released and f"changes    {released:,} sent to kafka://{emulator.kafka_bootstrap}/cdc" in out
    assert flat.num_rows > released  # (the flat layout: an update is two rows; here one message per change)
    consumer = Consumer({"bootstrap.servers": emulator.kafka_bootstrap, "security.protocol": "SASL_PLAINTEXT",
                         "sasl.mechanism": "PLAIN", "sasl.username": "$ConnectionString",
                         "sasl.password": emulator.connection_string_for("cdc"), "group.id": "t",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe(["cdc"])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < released and time.monotonic() < deadline:
        got += [m for m in consumer.consume(500, timeout=0.5) if m.error() is None]
    got += [m for m in consumer.consume(500, timeout=1.0) if m.error() is None]
    consumer.close()
    assert len(got) == released
    lines = encode_file(changes.slice(0, released), "ndjson").decode().splitlines()
    assert sorted(m.value().decode() for m in got) == sorted(lines)  # the bodies: the feed's debezium rows
    for m in got:
        body, headers = json.loads(m.value()), dict(m.headers())
        row = body["after"] or body["before"]
        assert m.key().decode() == row["sensor_id"]
        assert headers["message-id"].decode() == str(body["source"]["seq"]) and headers["op"].decode() == body["op"]


@pytest.mark.parametrize("args, message", [
    (["--time-mode", "live"], "STREAM_CHANGES_HUB needs STREAM_TIME_MODE=window (--time-mode window)"),
    (["--registry", "false"], "STREAM_CHANGES_HUB needs the device registry: PROFILE=fleet with DEVICE_REGISTRY=true"),
    (["--changes-hub", "no-such-hub"], "STREAM_CHANGES_HUB: event hub 'no-such-hub' not found"),
])
def test_bad_change_feed_settings_are_one_line_and_status_2(emulator_factory, spec_file, clean_env, capsys, args,
                                                           message):
    emulator = emulator_factory(hub=["iot-events"], partitions=1)
    clean_env.setenv("EVENTHUB_CONNECTION_STRING", emulator.connection_string_for("iot-events"))
    base = _args(spec_file, "--events", "10", "--changes-hub", "device-changes")
    assert main(base + args) == 2
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.strip().splitlines()) == 1 and message in out.err, out.err


def test_with_nothing_configured_the_local_endpoint_has_the_changes_hub_too(clean_env):
    from iotgen.runs.stream import connect, open_changes_producer

    clean_env.delenv("EVENTHUB_CONNECTION_STRING", raising=False)
    config = Config(stream_changes_hub="device-changes", eventhub_local_endpoint="yes")
    with connect(config) as connection:
        assert connection.local and connection.target.eventhub == "iot-events"
        with open_changes_producer(connection.config) as changes:
            assert changes.target.eventhub == "device-changes" and changes.partition_ids


def test_the_summary_says_where_the_changes_went_and_which():
    from iotgen.runs.stream import StreamSummary

    assert StreamSummary(changes_endpoint="sb://ns/chg").lines()[-1].endswith("0 failed (none due yet)")
    summary = StreamSummary(changes_endpoint="sb://ns/chg", changes_sent=6, changes_acknowledged=5, changes_failed=1,
                            first_change=3, next_change=9)
    assert "  changes    6 sent to sb://ns/chg, 5 acknowledged, 1 failed (changes #3 to #8)" in summary.lines()
    assert not summary.ok and StreamSummary().ok
