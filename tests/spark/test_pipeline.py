"""Config-driven wiring: which reader, which table, which engine, which checkpoint; locally and on Databricks
(a stand-in environment: DATABRICKS_RUNTIME_VERSION set, as the runtime sets it; IS_SERVERLESS for serverless).
The guards Databricks needs fail before anything starts, with one line naming the parameter."""

from __future__ import annotations

import pytest

from iotgen.settings.config import Config, Secret
from iotgen.runs.spark.pipeline import choose_source, event_source, generate, resolve_target, target_table, write_events
from iotgen.runs.spark.runtime import ADMISSION_CONTROL
from iotgen.runs.spark.write import checkpoint_for

from spark_support import ANCHOR, connectors, events

AZURE = ("Endpoint=sb://myns.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=TOPSECRET;"
         "EntityPath=iot-events")
LOCAL = ("Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=k;SharedAccessKey=TOPSECRET;"
         "UseDevelopmentEmulator=true;EntityPath=iot-events")


@pytest.fixture
def databricks(monkeypatch):
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")


@pytest.fixture
def serverless(monkeypatch):
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "client.4.5")
    monkeypatch.setenv("IS_SERVERLESS", "TRUE")


def _stream(spark):
    return spark.readStream.format("iotgen").option("numEvents", 5).option("seed", 1).load()


def test_generate_from_a_config_gives_the_embedded_events(spark):
    config = Config(random_seed=5, num_events=3000, anchor_time=ANCHOR, spark_num_partitions=3)
    got = generate(spark, config).select("event_id").toArrow().column(0)
    assert got.to_pylist() == events(3000, seed=5).column("event_id").to_pylist()


@pytest.mark.matrix
def test_local_runs_read_with_the_iotgen_eventhubs_source_and_write_under_output_dir(spark, tmp_path):
    config = Config(eventhub_connection_string=Secret(AZURE), output_dir=str(tmp_path),
                    spark_max_events_per_trigger=500, spark_trigger="10 seconds")
    assert choose_source(config) == "iotgen_eventhubs"
    # a session with Spark's Kafka source (spark-sql-kafka among SPARK_JARS) reads the hub's Kafka endpoint
    assert choose_source(config, kafka_source=True) == "kafka"
    local = config.replace(eventhub_connection_string=Secret(LOCAL))
    assert choose_source(local, kafka_source=True) == "iotgen_eventhubs"  # which Kafka port? not given
    assert choose_source(local.replace(kafka_bootstrap_servers="127.0.0.1:40001"), kafka_source=True) == "kafka"
    fmt, options = event_source(config)
    assert fmt == "iotgen_eventhubs" and options["maxEventsPerTrigger"] == "500"
    assert options["connectionString"] == AZURE
    native = connectors(spark)
    delta = resolve_target(spark, config, "delta")  # a bare name is a folder under OUTPUT_DIR, whatever the engine
    assert (delta.engine, delta.table) == ("spark" if "delta" in native else "embedded", str(tmp_path / "iot_events"))
    iceberg = resolve_target(spark, config, "iceberg")
    if "iceberg" in native:  # a Hadoop catalog over OUTPUT_DIR/iceberg, registered in this session
        catalog = iceberg.table.split(".")[0]
        assert iceberg.engine == "spark" and iceberg.table == f"{catalog}.iot.iot_events"
        assert spark.conf.get(f"spark.sql.catalog.{catalog}.warehouse") == str(tmp_path / "iceberg")
    else:
        assert (iceberg.engine, iceberg.table, iceberg.iceberg_warehouse) == \
            ("embedded", "iot.iot_events", str(tmp_path / "iceberg"))
    assert target_table(config, "parquet") == str(tmp_path / "parquet" / "iot_events")
    assert checkpoint_for(config.resolved_checkpoint_dir(), delta).startswith(str(tmp_path / "checkpoints") + "/delta-")


def test_a_rate_limit_is_left_out_of_available_now_where_spark_cannot_apply_it(caplog):
    config = Config(eventhub_connection_string=Secret(AZURE), spark_max_events_per_trigger=500)  # availableNow
    options = event_source(config)[1]
    if ADMISSION_CONTROL:  # Spark 4.2+: micro-batches of the limit
        assert options["maxEventsPerTrigger"] == "500"
    else:  # Spark 4.0/4.1 would read one capped micro-batch and stop: everything in one batch instead
        assert "maxEventsPerTrigger" not in options
        assert "SPARK_MAX_EVENTS_PER_TRIGGER=500 not applied" in caplog.text


def test_on_databricks_the_kafka_endpoint_spark_sinks_unity_catalog_names_and_volumes(spark, databricks):
    config = Config(eventhub_connection_string=Secret(AZURE), delta_table_name="main.iot.events",
                    catalog_volume_path="/Volumes/main/iot/vol", spark_starting_position="latest")
    assert choose_source(config) == "kafka"
    fmt, options = event_source(config)
    assert fmt == "kafka" and options["kafka.bootstrap.servers"] == "myns.servicebus.windows.net:9093"
    assert options["subscribe"] == "iot-events" and options["startingOffsets"] == "latest"
    assert options["kafka.metadata.max.age.ms"] == options["kafka.connections.max.idle.ms"] == "180000"
    target = resolve_target(spark, config, "delta")
    assert (target.engine, target.table, target.bad_records) == ("spark", "main.iot.events",
                                                                 "main.iot.events_bad_records")
    assert checkpoint_for(config.resolved_checkpoint_dir(), target) == \
        "/Volumes/main/iot/vol/checkpoints/delta-main.iot.events"
    # a local endpoint on the driver (its Kafka port known or not), and the Basic tier: the iotgen_eventhubs source
    assert choose_source(config.replace(eventhub_connection_string=Secret(LOCAL))) == "iotgen_eventhubs"
    local = config.replace(eventhub_connection_string=Secret(LOCAL), kafka_bootstrap_servers="127.0.0.1:40001")
    assert choose_source(local) == "iotgen_eventhubs"
    assert options["kafka.sasl.jaas.config"].startswith("kafkashaded.")  # Databricks' Kafka client
    assert choose_source(config, basic_tier=True) == "iotgen_eventhubs"
    with pytest.raises(ValueError, match="Basic tier .* has no Kafka endpoint: use SPARK_SOURCE=iotgen_eventhubs"):
        choose_source(config.replace(spark_source="kafka"), basic_tier=True)
    assert event_source(config.replace(spark_source="iotgen_eventhubs"))[0] == "iotgen_eventhubs"


def test_a_unity_catalog_service_credential_goes_to_the_kafka_source_and_never_to_executors(databricks):
    config = Config(eventhub_service_credential="eh-cred", eventhub_namespace="myns", eventhub_name="iot-events")
    assert choose_source(config) == "kafka"
    fmt, options = event_source(config)
    assert options["databricks.serviceCredential"] == "eh-cred"
    assert options["databricks.serviceCredential.scope"] == "https://myns.servicebus.windows.net/.default"
    assert not any(key.startswith("kafka.sasl") for key in options)
    with pytest.raises(ValueError, match="EVENTHUB_SERVICE_CREDENTIAL is for the Kafka route"):
        event_source(config.replace(spark_source="iotgen_eventhubs"))


def test_on_databricks_checkpoints_and_outputs_must_be_volumes_or_cloud_uris(spark, databricks, tmp_path):
    ok = Config(delta_table_name="main.iot.events", catalog_volume_path="/Volumes/main/iot/vol")
    cases = [
        (ok.replace(catalog_volume_path=""), "CHECKPOINT_DIR must be a Unity Catalog volume .*'output/checkpoints'"),
        (ok.replace(catalog_volume_path="/dbfs/tmp/x"), "CATALOG_VOLUME_PATH must be a Unity Catalog volume"),
        (ok.replace(checkpoint_dir="/Volumes/main"), "CHECKPOINT_DIR must be a Unity Catalog volume"),
        (ok.replace(spark_target="parquet"), "OUTPUT_DIR must be a Unity Catalog volume .* got 'output'"),
        (ok.replace(spark_engine="embedded"), "OUTPUT_DIR must be a Unity Catalog volume"),
    ]
    for config, message in cases:
        with pytest.raises(ValueError, match=message):
            write_events(_stream(spark), config)
    assert not spark.streams.active  # nothing started
    assert resolve_target(spark, ok.replace(checkpoint_dir="abfss://c@a.dfs.core.windows.net/cp")).engine == "spark"


def test_serverless_takes_only_available_now_and_once(spark, serverless):
    config = Config(delta_table_name="main.iot.events", catalog_volume_path="/Volumes/main/iot/vol",
                    spark_trigger="10 seconds")
    with pytest.raises(ValueError, match="SPARK_TRIGGER: serverless compute runs only availableNow and once"):
        write_events(_stream(spark), config)
    assert not spark.streams.active


def test_missing_connection_is_one_clear_error_without_the_key(spark, databricks):
    with pytest.raises(ValueError, match="needs EVENTHUB_CONNECTION_STRING .* or EVENTHUB_NAMESPACE"):
        event_source(Config())
    with pytest.raises(ValueError, match="SPARK_SOURCE=kafka needs EVENTHUB_CONNECTION_STRING"):
        event_source(Config(spark_source="kafka"))
    aad = event_source(Config(eventhub_namespace="myns", eventhub_name="hub", eventhub_transport="websockets"))[1]
    assert aad == {"startingPosition": "earliest", "fullyQualifiedNamespace": "myns", "eventHubName": "hub",
                   "transport": "websockets"}
    with pytest.raises(ValueError, match="SPARK_TRIGGER must be") as error:
        write_events(_stream(spark), Config(spark_trigger="whenever", eventhub_connection_string=Secret(AZURE)))
    assert "TOPSECRET" not in str(error.value)
