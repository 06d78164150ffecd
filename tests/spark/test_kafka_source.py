"""Spark's own Kafka source (``spark-sql-kafka-0-10``, the version of the pyspark under test) with the options
``iotgen.runs.spark.kafka`` builds: against the local endpoint's Kafka port (events sent over AMQP, read over Kafka,
parsed to VARIANT, written to Delta with a checkpoint, restarted) and, with the very same options, against a real
Apache Kafka broker. It runs where the connector is on the classpath (the Spark 4.0 runs of ``make test``: the
jars of deps/maven/spark-4.0); a run given that jar fails rather than skips."""

from __future__ import annotations

import decimal
import json
from pathlib import Path

import pytest

from iotgen.settings.config import Config, Secret
from iotgen.emulator import EmulatorProcess
from iotgen.formats.encoding import json_lines
from iotgen.runs.spark.kafka import kafka_options, kafka_source_available
from iotgen.runs.spark.parse import parse_events
from iotgen.runs.spark.pipeline import await_query, event_source, read_event_stream, table_counts, write_events

from spark_support import duckdb_connection, events, send_bodies, send_events, session_options

pytestmark = pytest.mark.matrix  # Spark's own Kafka source: one of the connectors


@pytest.fixture(scope="module")
def kafka_source(spark) -> None:
    jars = session_options()["jars"]
    given = bool(jars) and any("spark-sql-kafka" in p.name for p in Path(jars).glob("*.jar"))
    available = kafka_source_available(spark)
    assert available or not given, f"IOTGEN_SPARK_JARS={jars} holds spark-sql-kafka, the session has no Kafka source"
    if not available:
        pytest.skip("spark-sql-kafka is not on this session's classpath (the Spark 4.0 runs of make test have it)")


@pytest.fixture
def kafka_emulator(tmp_path):
    """The local endpoint with its Kafka port (a free one), hub ``iot-events`` of 2 partitions, persisted."""
    with EmulatorProcess(hub="iot-events", partitions=2, data_dir=tmp_path / "emulator-data",
                         kafka_port="any") as process:
        yield process


def _plain(value):
    """DuckDB's Python value of a VARIANT (decimals as Decimal) as JSON would give it."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return float(value) if isinstance(value, decimal.Decimal) else value


def _delta_events(path: Path) -> dict[str, tuple]:
    with duckdb_connection() as con:
        rows = con.execute(f"SELECT event_id, temperature, json_column FROM delta_scan('{path}')")
        return {r[0]: (r[1], _plain(r[2])) for r in rows.fetchall()}


def test_the_local_endpoint_through_sparks_kafka_source_to_delta_exactly_once(spark, kafka_source, kafka_emulator,
                                                                                tmp_path):
    """Events sent with AMQP, read by Spark's Kafka source (chosen by SPARK_SOURCE=auto because the session has
    it), parsed to VARIANT, written to Delta with a checkpoint; a second run adds only the new events."""
    config = Config(eventhub_connection_string=Secret(kafka_emulator.connection_string),
                    kafka_bootstrap_servers=kafka_emulator.kafka_bootstrap, output_dir=str(tmp_path / "out"),
                    spark_target="delta")
    fmt, options = event_source(config, kafka_source=True)
    assert fmt == "kafka" and options["kafka.security.protocol"] == "SASL_PLAINTEXT"
    assert options["kafka.sasl.jaas.config"].startswith("org.apache.kafka.")  # the open-source connector's class
    first, second = events(1500, seed=21), events(900, seed=22)
    sent = {}
    for batch, bad in ((first, [b"{not json"]), (second, [])):
        send_events(kafka_emulator.connection_string, batch)
        send_bodies(kafka_emulator.connection_string, bad)
        sent.update(zip(batch.column("event_id").to_pylist(),
                        zip(batch.column("temperature").to_pylist(),
                            (json.loads(t) for t in batch.column("json_column").to_pylist()))))
        raw = read_event_stream(spark, config)
        assert {"topic", "partition", "offset", "value"} <= set(raw.columns)  # Spark's Kafka source, not ours
        await_query(write_events(parse_events(raw), config, "delta"), timeout=300)
    landed = _delta_events(tmp_path / "out" / "iot_events")
    assert landed == sent
    assert table_counts(spark, config, "delta") == {"rows": 2400, "distinct event_id": 2400, "bad records": 1}


@pytest.mark.parametrize("kind", ["broker", "emulator"])
def test_sparks_kafka_source_reads_a_real_broker_and_the_local_endpoint_alike(spark, kafka_source, kind, request):
    """The same options (SASL PLAIN, user ``$ConnectionString``) and the same read, on a real Apache Kafka
    broker and on the local endpoint: keys, partitions, offsets from 0 and the parsed events agree."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    table = events(800, seed=23)
    if kind == "broker":
        broker = request.getfixturevalue("kafka_broker")
        topic = broker.create_topic("spark-read", 2)
        connection, bootstrap = broker.password, broker.sasl_bootstrap
    else:
        emulator = request.getfixturevalue("kafka_emulator")
        topic, bootstrap = "iot-events", emulator.kafka_bootstrap
        connection = emulator.connection_string.split(";EntityPath=")[0]
    options = kafka_options(connection, topic=topic, bootstrap_servers=bootstrap)
    producer = confluent_kafka.Producer({
        "bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
        "sasl.username": "$ConnectionString", "sasl.password": connection})
    for key, body in zip(table.column("sensor_id").to_pylist(), json_lines(table).to_pylist()):
        producer.produce(topic, value=body.encode(), key=key.encode())
    assert producer.flush(60) == 0
    raw = spark.read.format("kafka").options(**options).load()
    rows = raw.selectExpr("CAST(key AS STRING) AS key", "partition", "offset").collect()
    assert len(rows) == 800 and {r.partition for r in rows} == {0, 1}
    for partition in (0, 1):
        offsets = sorted(r.offset for r in rows if r.partition == partition)
        assert offsets == list(range(len(offsets)))
    by_key: dict[str, set[int]] = {}
    for r in rows:
        by_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(p) == 1 for p in by_key.values())  # one device, one partition
    parsed = parse_events(raw).select("event_id", "temperature", "sensor_id").collect()
    expected = {e: (t, s) for e, t, s in zip(*(table.column(c).to_pylist()
                                              for c in ("event_id", "temperature", "sensor_id")))}
    assert {r.event_id: (r.temperature, r.sensor_id) for r in parsed} == expected
