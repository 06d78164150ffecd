"""``iotgen ingest --source kafka``: the same exactly-once ingest reading through Kafka, from the emulator's Kafka
endpoint (events sent with AMQP, as on Event Hubs) and from a real Kafka broker."""

from __future__ import annotations

import secrets

import pytest
from confluent_kafka import Producer
from lakehouse_support import bodies_of, events, kill_and_restart, send

from iotgen.settings.config import Config
from iotgen.runs.ingest import IngestOptions, offsets_app_id, run_ingest
from iotgen.outputs.table_target import parse_target
from iotgen.outputs.eventhubs import target_from_config
from iotgen.outputs.kafka import kafka_target_from_config

TIMEOUT = 30.0


@pytest.fixture(scope="module")
def kafka_hubs():
    """An emulator with its Kafka endpoint: hubs for the tests of this module."""
    from iotgen.emulator import start_emulator_process

    with start_emulator_process(hub=["k-malformed", "k-switch", "k-kill"], partitions=4, kafka_port="any",
                                key=secrets.token_urlsafe(24)) as process:
        yield process


def _config(emulator, hub: str) -> Config:
    return Config.load(env={"EVENTHUB_CONNECTION_STRING": emulator.connection_string_for(hub)}).replace(
        kafka_bootstrap_servers=emulator.kafka_bootstrap)


def test_kafka_ingest_quarantines_and_resumes_and_shares_offsets_with_amqp(tmp_path, kafka_hubs, duck):
    conn = kafka_hubs.connection_string_for("k-malformed")
    good = events(1200, seed=51)
    bodies = bodies_of(good)
    send(conn, bodies[:600] + [b"not json", b"[1]"] + bodies[600:])
    target = parse_target(f"delta:{tmp_path / 'events'}")
    config = _config(kafka_hubs, "k-malformed")
    summary = run_ingest(config, target, IngestOptions(max_batch_events=500, available_now=True), source="kafka")
    assert (summary.events, summary.quarantined) == (1200, 2)
    assert summary.stopped_by.startswith("available now") and set(summary.lag.values()) == {0}
    read = duck.sql(f"SELECT event_id, _partition, _sequence_number, _enqueued_time "
                    f"FROM delta_scan('{tmp_path / 'events'}')").arrow().read_all()
    assert sorted(read.column("event_id").to_pylist()) == sorted(good.column("event_id").to_pylist())
    reasons = duck.sql(f"SELECT reason FROM delta_scan('{tmp_path / 'events_quarantine'}')").fetchall()
    assert sorted(r[0].split(":")[0] for r in reasons) == ["body is not valid JSON", "body must be a JSON object, got array"]
    # offsets in the table: the AMQP identity of the hub (host, hub) whichever protocol read it
    amqp = target_from_config(Config.load(env={"EVENTHUB_CONNECTION_STRING": conn}))
    kafka = kafka_target_from_config(config)
    assert [offsets_app_id(amqp, p) for p in "0123"] == [offsets_app_id(kafka, p) for p in "0123"]
    recorded = target.app_versions([offsets_app_id(amqp, p) for p in "0123"])
    assert sum(v + 1 for v in recorded.values() if v is not None) == 1202
    # nothing new: nothing committed, whichever protocol reads next
    again = run_ingest(config, target, IngestOptions(available_now=True), source="kafka")
    assert (again.events, again.quarantined, again.batches) == (0, 0, 0)
    more = events(150, seed=52)
    send(conn, bodies_of(more))
    through_amqp = run_ingest(Config.load(env={"EVENTHUB_CONNECTION_STRING": conn}), target,
                              IngestOptions(available_now=True))
    assert (through_amqp.events, through_amqp.quarantined) == (150, 0)
    count = duck.sql(f"SELECT count(*), count(DISTINCT event_id) FROM delta_scan('{tmp_path / 'events'}')").fetchone()
    assert count == (1350, 1350)


def test_kafka_ingest_from_a_kafka_broker(tmp_path, kafka_broker, duck):
    topic = kafka_broker.create_topic(f"ingest-{secrets.token_hex(4)}", 3)
    data = events(2000, seed=53)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap, "enable.idempotence": True})
    for i, body in enumerate(bodies_of(data)):
        producer.produce(topic, body.encode(), key=str(i % 50).encode())
        producer.poll(0)
    assert producer.flush(TIMEOUT) == 0
    config = Config(kafka_bootstrap_servers=kafka_broker.bootstrap, kafka_topic=topic)
    target = parse_target("iceberg:iot.k", catalog=str(tmp_path / "wh"))
    summary = run_ingest(config, target, IngestOptions(max_batch_events=700, available_now=True), source="kafka")
    assert (summary.events, summary.quarantined) == (2000, 0)
    assert summary.offsets and sum(v + 1 for v in summary.offsets.values()) == 2000
    ids = target.read(["event_id"]).column("event_id").to_pylist()
    assert sorted(ids) == sorted(data.column("event_id").to_pylist())


def test_sigkill_at_random_moments_keeps_every_event_exactly_once(tmp_path, kafka_hubs, duck):
    conn = kafka_hubs.connection_string_for("k-kill")
    data = events(4000, seed=54)
    send(conn, bodies_of(data) + [b"{broken"])
    extra = ["--source", "kafka", "--bootstrap-servers", kafka_hubs.kafka_bootstrap]
    landed = kill_and_restart(conn, f"delta:{tmp_path / 't'}", extra, kills=8, seed=12,
                              table_exists=lambda: any((tmp_path / "t" / "_delta_log").glob("*.json")))
    assert landed >= 8
    ids = duck.sql(f"SELECT event_id FROM delta_scan('{tmp_path / 't'}')").arrow().read_all()
    ids = ids.column("event_id").to_pylist()
    assert len(ids) == len(set(ids)) == 4000 and set(ids) == set(data.column("event_id").to_pylist())
    assert duck.sql(f"SELECT count(*) FROM delta_scan('{tmp_path / 't_quarantine'}')").fetchone()[0] == 1
