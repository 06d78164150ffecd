"""``iotgen stream --protocol kafka``: to the emulator's Kafka endpoint (from the connection string, as to Event
Hubs), to a real Kafka broker (any Kafka: --bootstrap-servers, SASL PLAIN), and what happens when it fails.
Events are read back with confluent-kafka directly, bounded by a count and a deadline."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from iotgen.settings.config import Config, Secret
from iotgen.runs.stream import stream_events

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0


def iotgen(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("EVENTHUB_CONNECTION_STRING",
                                                                    "KAFKA_SASL_PASSWORD")
                   and not k.startswith("IOTGEN_")}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "iotgen.faces.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=environment, timeout=timeout)


def read_kafka(settings: dict, topic: str, count: int, timeout: float = TIMEOUT) -> list:
    consumer = Consumer({**settings, "group.id": f"read-{secrets.token_hex(4)}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    got: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < count and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                assert message.error() is None, message.error()
                got.append(message)
        for message in consumer.consume(500, timeout=1.0):  # nothing more than expected
            got.append(message)
    finally:
        consumer.close()
    return got


def per_partition(messages: list, partitions: int) -> dict[str, int]:
    """How many of ``messages`` each partition holds, as the summary counts them."""
    return {str(p): sum(1 for m in messages if m.partition() == p) for p in range(partitions)}


@pytest.fixture
def kafka_emulator(emulator_factory):
    return emulator_factory(hub="iot-events", partitions=4, key=secrets.token_urlsafe(24), kafka_port="any")


def _emulator_settings(emulator) -> dict:
    return {"bootstrap.servers": emulator.kafka_bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN", "sasl.username": "$ConnectionString",
            "sasl.password": emulator.connection_string}


def test_cli_streams_to_the_emulators_kafka_endpoint_and_resumes(kafka_emulator):
    env = {"EVENTHUB_CONNECTION_STRING": kafka_emulator.connection_string}
    key = kafka_emulator.connection_string.split("SharedAccessKey=")[1].split(";")[0]
    first = iotgen("-v", "stream", "--protocol", "kafka", "--bootstrap-servers", kafka_emulator.kafka_bootstrap,
                   "--events", "3000", "--sleep", "0", "--batch-size", "700", "--seed", "5", "--headers", "all",
                   env=env)
    assert first.returncode == 0, first.stderr
    assert "3,000 sent, 3,000 acknowledged, 0 retried, 0 failed" in first.stdout
    assert f"streamed to kafka://{kafka_emulator.kafka_bootstrap}/iot-events (local emulator, SASL_PLAINTEXT " \
           "PLAIN)" in first.stdout
    assert key not in first.stdout + first.stderr
    second = iotgen("stream", "--protocol", "kafka", "--bootstrap-servers", kafka_emulator.kafka_bootstrap,
                    "--events", "500", "--sleep", "0", "--seed", "5", "--start", "3000", env=env)
    assert second.returncode == 0, second.stderr
    assert "#3,000 to #3,499" in second.stdout
    got = read_kafka(_emulator_settings(kafka_emulator), "iot-events", 3500)
    assert len(got) == 3500
    events = [json.loads(m.value()) for m in got]
    assert len({e["event_id"] for e in events}) == 3500
    partitions_of_sensor: dict = {}
    full = 0
    for message, event in zip(got, events):
        assert message.key() == event["sensor_id"].encode()
        headers = dict(message.headers())
        assert headers["content-type"] == b"application/json" and headers["schema_version"] == b"1"
        if len(headers) == 4:  # --headers all (the first run); the default, schema, has the first two only
            assert headers["message-id"] == event["event_id"].encode()
            assert headers["device_type"] == event["device_type"].encode()
            full += 1
        else:
            assert len(headers) == 2
        partitions_of_sensor.setdefault(event["sensor_id"], set()).add(message.partition())
    assert all(len(p) == 1 for p in partitions_of_sensor.values())  # one device, one partition: in order
    assert full == 3000


def test_streams_to_a_kafka_broker_with_sasl_plain(kafka_broker):
    topic = kafka_broker.create_topic(f"stream-{secrets.token_hex(4)}", 3)
    out = iotgen("stream", "--protocol", "kafka", "--bootstrap-servers", kafka_broker.sasl_bootstrap,
                 "--topic", topic, "--security-protocol", "sasl_plaintext", "--sasl-username", "$ConnectionString",
                 "--events", "2000", "--rate", "4000", "--batch-size", "400", "--seed", "9",
                 env={"KAFKA_SASL_PASSWORD": kafka_broker.password})
    assert out.returncode == 0, out.stderr
    assert "2,000 sent, 2,000 acknowledged" in out.stdout and "(target 4,000 ev/s)" in out.stdout
    assert kafka_broker.password not in out.stdout + out.stderr
    got = read_kafka({"bootstrap.servers": kafka_broker.bootstrap}, topic, 2000)
    assert len(got) == 2000 and {m.partition() for m in got} == {0, 1, 2}
    assert len({json.loads(m.value())["event_id"] for m in got}) == 2000


@pytest.mark.parametrize("args, env, status, message", [
    (["--topic", "no-such-topic"], {}, 2, "KAFKA_TOPIC: topic 'no-such-topic'"),
    (["--security-protocol", "sasl_plaintext", "--sasl-username", "u"], {"KAFKA_SASL_PASSWORD": "wrong-pw"}, 2,
     "KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD: authentication"),
    (["--security-protocol", "sasl_plaintext", "--sasl-username", "u"], {}, 2,
     "KAFKA_SECURITY_PROTOCOL SASL_PLAINTEXT needs KAFKA_SASL_USERNAME and the KAFKA_SASL_PASSWORD"),
    (["--protocol", "mqtt"], {}, 2, "STREAM_PROTOCOL must be one of amqp, kafka, got 'mqtt'"),
    (["--bootstrap-servers", "nohost"], {}, 2, "KAFKA_BOOTSTRAP_SERVERS must be host:port"),
    (["--bootstrap-servers", "127.0.0.1:{closed}", "--send-timeout", "3"], {}, 1,
     "cannot reach the Kafka endpoint kafka://127.0.0.1:"),
])
def test_bad_kafka_settings_one_line_with_the_documented_status(kafka_broker, args, env, status, message):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    base = ["stream", "--protocol", "kafka", "--bootstrap-servers", kafka_broker.sasl_bootstrap
            if "--security-protocol" in args else kafka_broker.bootstrap, "--topic", "t", "--events", "5"]
    out = iotgen(*base, *[a.format(closed=closed) for a in args], env=env)
    assert out.returncode == status, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert "wrong-pw" not in out.stderr and out.stdout == ""


def test_lost_endpoint_counts_every_event_and_names_the_resume_point(emulator_factory):
    emulator = emulator_factory(hub="iot-events", partitions=2, kafka_port="any")
    config = Config(stream_protocol="kafka", eventhub_connection_string=Secret(emulator.connection_string),
                    kafka_bootstrap_servers=emulator.kafka_bootstrap, random_seed=3, rate_events_per_sec=2000,
                    batch_size=200, stream_events=40_000, send_timeout_sec=1.0, send_retries=1)
    killed = []

    def on_progress(summary) -> None:
        if summary.acknowledged >= 1000 and not killed:
            emulator.kill()
            killed.append(summary.acknowledged)

    summary = stream_events(config, on_progress=on_progress)
    assert killed and summary.stopped_by == "failure"
    assert summary.sent == summary.acknowledged + summary.failed  # every event accounted for
    assert summary.failed > 0 and summary.errors
    assert 1000 <= summary.resume_from < 40_000
    assert re.search(r"STREAM_START_EVENT=\d+", str(summary))


def test_with_nothing_configured_a_local_emulator_with_a_kafka_endpoint_is_started(monkeypatch):
    from iotgen.runs.stream import connect

    monkeypatch.delenv("EVENTHUB_CONNECTION_STRING", raising=False)
    config = Config(stream_protocol="kafka", random_seed=2, stream_events=300, sleep_interval_sec=0)
    with connect(config) as connection:
        assert connection.local and connection.target.kind == "local emulator"
        summary = stream_events(connection.config, connection.producer)
        assert (summary.acknowledged, summary.failed) == (300, 0)
        emulator = connection.emulator
        got = read_kafka(_emulator_settings(emulator), "iot-events", 300)
        assert len(got) == 300
    assert not emulator.running  # stopped with the connection


def test_counts_and_partitions_match_what_the_broker_stored(kafka_broker):
    """librdkafka reports only failures; the summary's acknowledged events and per-partition counts are what the
    broker stored, and the partitions are librdkafka's own murmur2 choice (a plain producer with
    partitioner=murmur2_random puts each key where iotgen did); events without a key are spread. Headers: the
    default two (schema), or none."""
    from confluent_kafka import Producer

    keyed = kafka_broker.create_topic(f"keyed-{secrets.token_hex(4)}", 7)
    config = Config(stream_protocol="kafka", kafka_bootstrap_servers=kafka_broker.bootstrap, kafka_topic=keyed,
                    random_seed=4, stream_events=6000, batch_size=1000, sleep_interval_sec=0, num_sensors=5000)
    summary = stream_events(config)
    assert (summary.sent, summary.acknowledged, summary.failed) == (6000, 6000, 0), str(summary)
    got = read_kafka({"bootstrap.servers": kafka_broker.bootstrap}, keyed, 6000)
    assert len(got) == 6000
    assert summary.partitions == per_partition(got, 7)
    assert all(m.headers() == [("content-type", b"application/json"), ("schema_version", b"1")] for m in got)
    reference = kafka_broker.create_topic(f"reference-{secrets.token_hex(4)}", 7)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap, "partitioner": "murmur2_random"})
    ours: dict = {}
    for message in got:
        ours[message.key()] = message.partition()
    theirs: dict = {}
    for key in ours:
        producer.produce(reference, b"", key, on_delivery=lambda e, m: theirs.__setitem__(m.key(), m.partition()))
    assert producer.flush(TIMEOUT) == 0
    assert len(ours) > 3000 and theirs == ours

    spread = kafka_broker.create_topic(f"spread-{secrets.token_hex(4)}", 3)
    summary = stream_events(config.replace(kafka_topic=spread, partition_key="none", stream_events=3000,
                                           kafka_headers="none"))
    got = read_kafka({"bootstrap.servers": kafka_broker.bootstrap}, spread, 3000)
    assert len(got) == 3000 and all(m.key() is None and m.headers() is None for m in got)
    assert summary.partitions == per_partition(got, 3)
    assert all(n >= 600 for n in summary.partitions.values())


def test_rejected_events_are_counted_and_the_stored_ones_end_before_the_resume_point(kafka_broker):
    """A real failure mid-stream (the topic's max.message.bytes cut to 200: the broker refuses every later
    batch): every event is acknowledged or failed, the failures are reported, and what the broker stored is
    exactly the acknowledged events, all of them before the resume point."""
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    from iotgen import generate_table

    topic = kafka_broker.create_topic(f"shrinking-{secrets.token_hex(4)}", 3)
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    shrunk: list = []

    def on_progress(summary) -> None:
        if summary.acknowledged >= 2000 and not shrunk:
            resource = ConfigResource("TOPIC", topic, incremental_configs=[ConfigEntry(
                "max.message.bytes", "200", incremental_operation=AlterConfigOpType.SET)])
            admin.incremental_alter_configs([resource])[resource].result(TIMEOUT)
            shrunk.append(summary.acknowledged)

    config = Config(stream_protocol="kafka", kafka_bootstrap_servers=kafka_broker.bootstrap, kafka_topic=topic,
                    random_seed=3, rate_events_per_sec=5000, batch_size=1500, stream_events=30_000,
                    send_timeout_sec=2.0, send_retries=1)
    summary = stream_events(config, on_progress=on_progress, progress_interval=0.1)
    assert shrunk and summary.stopped_by == "failure", str(summary)
    assert summary.sent == summary.acknowledged + summary.failed and summary.failed > 0
    assert summary.errors and "too large" in summary.errors[0]
    assert f"STREAM_START_EVENT={summary.resume_from}" in str(summary)
    got = read_kafka({"bootstrap.servers": kafka_broker.bootstrap}, topic, summary.acknowledged)
    assert len(got) == summary.acknowledged
    assert summary.partitions == per_partition(got, 3)
    stored = {json.loads(m.value())["event_id"] for m in got}
    before = generate_table(Config(random_seed=3, num_events=summary.resume_from)).column("event_id").to_pylist()
    assert set(before) <= stored  # everything before the resume point is stored: resuming there loses nothing


def test_a_full_queue_is_waited_out_and_every_event_goes_once_with_its_key(kafka_broker, monkeypatch):
    """librdkafka's queue far smaller than a step: producing stops at each full queue and goes on after the
    event it stopped at, so every event is stored once, with its own key, in its key's partition."""
    from iotgen.outputs import kafka

    monkeypatch.setattr(kafka, "QUEUE_MESSAGES", 300)
    topic = kafka_broker.create_topic(f"small-queue-{secrets.token_hex(4)}", 3)
    summary = stream_events(Config(stream_protocol="kafka", kafka_bootstrap_servers=kafka_broker.bootstrap,
                                   kafka_topic=topic, random_seed=6, stream_events=5000, batch_size=2500,
                                   sleep_interval_sec=0))
    assert (summary.acknowledged, summary.failed) == (5000, 0), str(summary)
    got = read_kafka({"bootstrap.servers": kafka_broker.bootstrap}, topic, 5000)
    events = [json.loads(m.value()) for m in got]
    assert len({e["event_id"] for e in events}) == len(got) == 5000
    assert all(m.key() == e["sensor_id"].encode() for m, e in zip(got, events))
    assert summary.partitions == per_partition(got, 3)
