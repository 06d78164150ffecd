"""write_stream: Delta and Iceberg through Spark's own sinks (where the session has the connectors) and through
the embedded writers, and Parquet; exactly once per micro-batch, read back by DuckDB or pyiceberg, not Spark."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from iotgen.runs.spark.kafka import kafka_options
from iotgen.runs.spark.write import (
    MicroBatchWriter, StreamTarget, append_parquet, checkpoint_for, parquet_committed, parse_trigger, write_stream,
)

from spark_support import ANCHOR, connectors, duckdb_connection, duckdb_json, events, run_query

TOTAL = 9000


def _app(checkpoint: Path) -> str:
    return "iotgen-" + json.loads((checkpoint / "metadata").read_text().splitlines()[0])["id"]


def test_delta_through_the_embedded_writer_with_variant_and_replays_skipped(spark, tmp_path):
    table, checkpoint = tmp_path / "delta" / "iot_events", tmp_path / "cp"
    for total in (5000, TOTAL):  # two runs from one checkpoint: micro-batches 0 and 1
        run_query(write_stream(_iotgen_stream(spark, total), "delta", str(table), str(checkpoint), engine="embedded"))
    expected = events(TOTAL, seed=13)
    with duckdb_connection() as con:  # an independent reader of the Delta table
        rows = con.execute(f"SELECT event_id, json_column::JSON::VARCHAR FROM delta_scan('{table}')").fetchall()
        types = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM delta_scan('{table}')").fetchall()}
    assert sorted(r[0] for r in rows) == sorted(expected.column("event_id").to_pylist())
    assert "VARIANT" in types["json_column"].upper()
    by_id = dict(zip(expected.column("event_id").to_pylist(), expected.column("json_column").to_pylist()))
    sample = rows[:50]
    assert all(json.loads(str(j)) == json.loads(by_id[e]) for e, j in sample)
    from deltalake import DeltaTable

    app = _app(checkpoint)
    assert DeltaTable(str(table)).transaction_version(app) == 1
    # a batch replayed after a crash (data written, Spark's commit lost) is skipped, not appended twice
    writer = MicroBatchWriter(StreamTarget.resolve(spark, "delta", str(table), engine="embedded"), str(checkpoint),
                              provenance=False)
    replay = spark.read.format("iotgen").option("seed", 13).option("anchorTime", ANCHOR).option("numEvents", 5000).load()
    from iotgen.runs.spark.parse import parse_events

    writer(parse_events(replay), 1)
    assert writer.log == [{"batch_id": 1, "events": -1, "bad_records": 0}]
    assert DeltaTable(str(table)).to_pyarrow_table(columns=["event_id"]).num_rows == TOTAL


def test_iceberg_through_the_embedded_writer(spark, tmp_path):
    warehouse = tmp_path / "iceberg"
    query = write_stream(_iotgen_stream(spark, 5000, seed=3), "iceberg", "iot.events",
                         str(tmp_path / "cp"), engine="embedded", iceberg_warehouse=str(warehouse))
    run_query(query)
    from iotgen.outputs.iceberg import open_catalog

    table = open_catalog(None, str(warehouse)).load_table(("iot", "events"))  # pyiceberg, not Spark
    data = table.scan(selected_fields=("event_id", "json_column")).to_arrow()
    assert sorted(data.column("event_id").to_pylist()) == sorted(events(5000, seed=3).column("event_id").to_pylist())
    assert all(isinstance(json.loads(t), dict) for t in data.column("json_column").to_pylist()[:100])
    summary = table.current_snapshot().summary.additional_properties
    assert summary["iotgen.txn." + _app(tmp_path / "cp")] == "0"


def test_parquet_replay_removes_the_leftovers_of_an_interrupted_attempt(spark, tmp_path):
    folder = tmp_path / "out"
    batch = (spark.read.format("iotgen").option("seed", 1).option("numEvents", 500).option("numPartitions", 2).load()
             .toArrow())
    folder.mkdir()
    leftover = folder / "part-000000000007-00009-{}.parquet"
    from iotgen.runs.spark.write import _short

    leftover = Path(str(leftover).format(_short("app-1")))
    leftover.write_bytes(b"half a file")  # an attempt of batch 7 that died before its commit marker
    assert append_parquet(batch, str(folder), "app-1", 7) == 500
    assert not leftover.exists()
    assert append_parquet(batch, str(folder), "app-1", 7) == -1  # committed: a replay is skipped
    assert append_parquet(batch, str(folder), "app-2", 7) == 500  # another query's batch 7 is its own
    rows = sum(pq.read_metadata(p).num_rows for p in folder.glob("*.parquet"))
    assert rows == 1000 and set(parquet_committed(folder, "app-1")) == {7}
    assert not any((folder / "_iotgen_staging").iterdir())


@pytest.mark.matrix
def test_targets_and_triggers_are_checked_before_anything_starts(spark, tmp_path):
    assert parse_trigger("availableNow") == {"availableNow": True}
    assert parse_trigger("10 seconds") == {"processingTime": "10 seconds"}
    assert parse_trigger("processingTime=500ms") == {"processingTime": "500 milliseconds"}
    assert parse_trigger("2 min") == {"processingTime": "2 minutes"}
    assert parse_trigger("once") == {"once": True}
    with pytest.raises(ValueError, match="SPARK_TRIGGER must be"):
        parse_trigger("sometimes")
    with pytest.raises(ValueError, match="SPARK_TARGET must be one of delta, iceberg, parquet"):
        StreamTarget.resolve(spark, "csv", "x")
    native = connectors(spark)
    if "delta" not in native:
        with pytest.raises(ValueError, match="SPARK_ENGINE=spark needs delta support.*SPARK_ENGINE=embedded"):
            StreamTarget.resolve(spark, "delta", "t", engine="spark")
    with pytest.raises(ValueError, match="parquet target needs a local or mounted folder"):
        StreamTarget.resolve(spark, "parquet", "abfss://c@a.dfs.core.windows.net/x")
    with pytest.raises(ValueError, match="ICEBERG_TABLE_NAME must be NAMESPACE.TABLE"):
        StreamTarget.resolve(spark, "iceberg", "just_a_name", engine="embedded")
    target = StreamTarget.resolve(spark, "delta", str(tmp_path / "t"))
    assert (target.engine, target.bad_records) == ("spark" if "delta" in native else "embedded",
                                                   str(tmp_path / "t") + "_bad_records")
    assert ("no Delta connector in this Spark session" in target.describe()) == ("delta" not in native)
    assert checkpoint_for("/Volumes/c/s/v/checkpoints/", target).startswith("/Volumes/c/s/v/checkpoints/delta-")
    with pytest.raises(ValueError, match="needs a streaming frame"):
        write_stream(spark.range(1), "parquet", str(tmp_path / "p"), str(tmp_path / "cp"))
    assert not (tmp_path / "p").exists() and not (tmp_path / "cp").exists()


def test_kafka_options_for_the_event_hubs_kafka_endpoint():
    conn = ("Endpoint=sb://myns.servicebus.windows.net/;SharedAccessKeyName=listen;"
            "SharedAccessKey=TOPSECRET=;EntityPath=iot-events")
    options = kafka_options(conn, max_offsets_per_trigger=1000, shaded=True)
    assert options["kafka.bootstrap.servers"] == "myns.servicebus.windows.net:9093"
    assert options["subscribe"] == "iot-events"
    assert options["kafka.security.protocol"] == "SASL_SSL" and options["kafka.sasl.mechanism"] == "PLAIN"
    assert options["kafka.sasl.jaas.config"] == (
        'kafkashaded.org.apache.kafka.common.security.plain.PlainLoginModule required '
        f'username="$ConnectionString" password="{conn}";')
    assert options["maxOffsetsPerTrigger"] == "1000" and options["startingOffsets"] == "earliest"
    # Azure's recommended client settings for the Kafka endpoint (it closes idle connections after 240 s)
    assert {k: options[k] for k in options if k.endswith(".ms")} == {
        "kafka.request.timeout.ms": "60000", "kafka.session.timeout.ms": "30000",
        "kafka.metadata.max.age.ms": "180000", "kafka.connections.max.idle.ms": "180000"}
    # off Databricks the login class is the open-source connector's (unshaded)
    assert kafka_options(conn)["kafka.sasl.jaas.config"].startswith(
        "org.apache.kafka.common.security.plain.PlainLoginModule required")
    # the local endpoint serves Kafka on its host, port 9092 unless told (KAFKA_BOOTSTRAP_SERVERS), in plain text
    local = "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=a;SharedAccessKey=k;UseDevelopmentEmulator=true;EntityPath=h"
    options = kafka_options(local)
    assert (options["kafka.bootstrap.servers"], options["subscribe"]) == ("127.0.0.1:9092", "h")
    assert (options["kafka.security.protocol"], options["kafka.sasl.mechanism"]) == ("SASL_PLAINTEXT", "PLAIN")
    assert kafka_options(local, bootstrap_servers="127.0.0.1:40001")["kafka.bootstrap.servers"] == "127.0.0.1:40001"
    assert kafka_options(conn.replace(";EntityPath=iot-events", ""), topic="other")["subscribe"] == "other"
    credential = kafka_options(namespace="myns", topic="hub", service_credential="eh-cred")
    assert credential["databricks.serviceCredential"] == "eh-cred"
    assert credential["kafka.bootstrap.servers"] == "myns.servicebus.windows.net:9093"
    assert not any("sasl" in key or "security" in key for key in credential)
    for bad, message in [
        (conn.replace(";EntityPath=iot-events", ""), "EVENTHUB_NAME is required"),
        ("Endpoint=sb://localhost:5672;SharedAccessKeyName=a;SharedAccessKey=TOPSECRET;UseDevelopmentEmulator=true",
         "EVENTHUB_NAME is required"),
        ("Endpoint=sb://myns.servicebus.windows.net/;EntityPath=x;SharedAccessKeyName=TOPSECRET", "SharedAccessKey"),
    ]:
        with pytest.raises(ValueError, match=message) as error:
            kafka_options(bad)
        assert "TOPSECRET" not in str(error.value)


def _iotgen_stream(spark, total: int, seed: int = 13):
    return (spark.readStream.format("iotgen").option("seed", seed).option("anchorTime", ANCHOR)
            .option("numEvents", total).option("numPartitions", 2).load())


@pytest.mark.matrix
def test_spark_delta_sink_writes_variant_and_a_restart_appends_nothing_twice(spark, tmp_path):
    """Spark's own streaming Delta sink (delta-spark; on Databricks, Databricks'): VARIANT json_column with the
    variantType table feature, a second run from the checkpoint appends only the new events."""
    if "delta" not in connectors(spark):
        pytest.skip("no Delta connector in this session: the Spark 4.0 runs (make test) give it delta-spark")
    table, checkpoint = tmp_path / "delta" / "iot_events", tmp_path / "cp"
    for total in (6000, 9000):
        query = write_stream(_iotgen_stream(spark, total), "delta", str(table), str(checkpoint))
        assert query.events.name is None and query.bad_records is not None  # two queries, one per table
        run_query(query)
    expected = events(9000, seed=13)
    with duckdb_connection() as con:  # an independent reader of the Delta table
        rows = con.execute(f"SELECT event_id, json_column::JSON::VARCHAR FROM delta_scan('{table}')").fetchall()
        types = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM delta_scan('{table}')").fetchall()}
    assert sorted(r[0] for r in rows) == sorted(expected.column("event_id").to_pylist())
    assert "VARIANT" in types["json_column"].upper() and "event_date" in types
    by_id = dict(zip(expected.column("event_id").to_pylist(), expected.column("json_column").to_pylist()))
    assert all(duckdb_json(j) == json.loads(by_id[e]) for e, j in rows)
    from deltalake import DeltaTable

    assert "variantType" in (DeltaTable(str(table)).protocol().writer_features or [])
    assert sorted(p.name for p in checkpoint.iterdir()) == ["bad_records", "events"]


@pytest.mark.matrix
def test_spark_iceberg_sink_creates_a_v3_table_with_variant_where_the_pair_supports_it(spark, tmp_path):
    """Spark's own Iceberg sink (iceberg-spark-runtime) into a local Hadoop catalog: a new table is format v3
    with a VARIANT json_column (Iceberg 1.10 on Spark 4.0 supports it); read back from its files by DuckDB."""
    if "iceberg" not in connectors(spark):
        pytest.skip("no Iceberg connector in this session: the Spark 4.0 runs (make test) give it iceberg-spark")
    warehouse = tmp_path / "iceberg"
    query = write_stream(_iotgen_stream(spark, 5000, seed=3), "iceberg", "iot.events", str(tmp_path / "cp"),
                         iceberg_warehouse=str(warehouse))
    run_query(query)
    folder = warehouse / "iot" / "events"
    metadata = json.loads(sorted((folder / "metadata").glob("v*.metadata.json"))[-1].read_text())
    assert metadata["format-version"] == 3
    fields = {f["name"]: f["type"] for f in metadata["schemas"][-1]["fields"]}
    assert fields["json_column"] == "variant" and fields["timestamp"] == "timestamptz"
    with duckdb_connection() as con:
        got = con.execute(f"SELECT event_id FROM read_parquet('{folder}/data/**/*.parquet')").fetchall()
    assert sorted(r[0] for r in got) == sorted(events(5000, seed=3).column("event_id").to_pylist())


def test_a_namespace_without_a_host_is_one_clear_error():
    from iotgen.base.errors import InputError

    for bad in ("sb:///", "/"):
        with pytest.raises(InputError, match="EVENTHUB_NAMESPACE must name a namespace"):
            kafka_options(namespace=bad, topic="hub", service_credential="eh-cred")
