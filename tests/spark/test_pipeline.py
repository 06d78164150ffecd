"""Config-driven wiring: which reader, which table, which engine, which checkpoint; locally and on Databricks
(a stand-in environment: DATABRICKS_RUNTIME_VERSION set, as the runtime sets it; nothing is started)."""

from __future__ import annotations

import pytest

from iotgen.config import Config, Secret
from iotgen.spark.pipeline import choose_source, event_source, generate, resolve_target, target_table
from iotgen.spark.write import checkpoint_for

from spark_support import ANCHOR, events

AZURE = ("Endpoint=sb://myns.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=TOPSECRET;"
         "EntityPath=iot-events")
LOCAL = ("Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=k;SharedAccessKey=TOPSECRET;"
         "UseDevelopmentEmulator=true;EntityPath=iot-events")


@pytest.fixture
def databricks(monkeypatch):
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")


def test_generate_from_a_config_gives_the_embedded_events(spark):
    config = Config(random_seed=5, num_events=3000, anchor_time=ANCHOR, spark_num_partitions=3)
    got = generate(spark, config).select("event_id").toArrow().column(0)
    assert got.to_pylist() == events(3000, seed=5).column("event_id").to_pylist()


def test_local_runs_read_with_the_eventhubs_source_and_write_through_the_embedded_writers(spark, tmp_path):
    config = Config(eventhub_connection_string=Secret(AZURE), output_dir=str(tmp_path),
                    spark_max_events_per_trigger=500)
    assert choose_source(config) == "eventhubs"
    fmt, options = event_source(config)
    assert fmt == "eventhubs" and options["maxEventsPerTrigger"] == "500" and options["connectionString"] == AZURE
    delta = resolve_target(spark, config, "delta")
    assert (delta.engine, delta.table) == ("embedded", str(tmp_path / "iot_events"))
    iceberg = resolve_target(spark, config, "iceberg")
    assert (iceberg.engine, iceberg.table, iceberg.iceberg_warehouse) == \
        ("embedded", "iot.iot_events", str(tmp_path / "iceberg"))
    assert target_table(config, "parquet") == str(tmp_path / "parquet" / "iot_events")
    assert checkpoint_for(config.resolved_checkpoint_dir(), delta).startswith(str(tmp_path / "checkpoints") + "/delta-")


def test_on_databricks_the_kafka_endpoint_spark_writers_and_unity_catalog_names(spark, databricks):
    config = Config(eventhub_connection_string=Secret(AZURE), delta_table_name="main.iot.events",
                    catalog_volume_path="/Volumes/main/iot/vol", spark_starting_position="latest")
    assert choose_source(config) == "kafka"
    fmt, options = event_source(config)
    assert fmt == "kafka" and options["kafka.bootstrap.servers"] == "myns.servicebus.windows.net:9093"
    assert options["subscribe"] == "iot-events" and options["startingOffsets"] == "latest"
    target = resolve_target(spark, config, "delta")
    assert (target.engine, target.table, target.bad_records) == ("spark", "main.iot.events",
                                                                 "main.iot.events_bad_records")
    assert checkpoint_for(config.resolved_checkpoint_dir(), target) == \
        "/Volumes/main/iot/vol/checkpoints/delta-main.iot.events"
    # the local endpoint has no Kafka endpoint: the eventhubs source, on Databricks too
    assert choose_source(config.replace(eventhub_connection_string=Secret(LOCAL))) == "eventhubs"
    assert event_source(config.replace(spark_source="eventhubs"))[0] == "eventhubs"


def test_missing_connection_is_one_clear_error_without_the_key(spark, databricks):
    with pytest.raises(ValueError, match="needs EVENTHUB_CONNECTION_STRING .* or EVENTHUB_NAMESPACE"):
        event_source(Config())
    with pytest.raises(ValueError, match="SPARK_SOURCE=kafka needs EVENTHUB_CONNECTION_STRING"):
        event_source(Config(spark_source="kafka"))
    aad = event_source(Config(eventhub_namespace="myns", eventhub_name="hub"))[1]
    assert aad == {"startingPosition": "earliest", "fullyQualifiedNamespace": "myns", "eventHubName": "hub"}
    with pytest.raises(ValueError, match="SPARK_TRIGGER must be") as error:
        from iotgen.spark.pipeline import write_events

        write_events(spark.readStream.format("iotgen").option("numEvents", 5).load(),
                     Config(spark_trigger="whenever", eventhub_connection_string=Secret(AZURE)))
    assert "TOPSECRET" not in str(error.value)
