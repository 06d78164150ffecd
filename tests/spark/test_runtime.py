"""Every runtime: iotgen.runs.spark imports, the Kafka route builds its options (and Spark's Kafka source takes them
where it is on the classpath), and what the runtime lacks fails with one line naming the runtime it needs.

This file is the Spark 3.5 check (make test-spark35: pyspark 3.5.0, the Spark of Databricks Runtime 15.4 LTS
without Databricks' backports, with spark-sql-kafka 3.5.0) and runs on pyspark 4.0 and 4.3 too, where the same
calls work instead of failing.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from iotgen.formats.encoding import json_lines
from iotgen.runs.spark import runtime

from spark_support import events, session_options

pytestmark = pytest.mark.matrix  # what each runtime can do: its version, its registration of sources, its connectors

MODULES = ("iotgen.runs.spark", "iotgen.runs.spark.runtime", "iotgen.runs.spark.session", "iotgen.runs.spark.kafka", "iotgen.runs.spark.parse",
           "iotgen.runs.spark.write", "iotgen.runs.spark.pipeline", "iotgen.runs.spark.source_iotgen", "iotgen.runs.spark.source_eventhubs")
AZURE = ("Endpoint=sb://myns.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=TOPSECRET;"
         "EntityPath=iot-events")


def test_every_spark_module_imports_and_the_kafka_route_builds_its_options():
    for name in MODULES:
        importlib.import_module(name)
    from iotgen.runs.spark.kafka import kafka_options

    options = kafka_options(AZURE, shaded=False)
    assert options["kafka.bootstrap.servers"] == "myns.servicebus.windows.net:9093"
    assert options["kafka.connections.max.idle.ms"] == "180000"


def _one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text.strip(), text
    return text


def test_the_python_sources_register_or_fail_with_one_line_naming_the_runtime(spark):
    import iotgen.runs.spark

    if runtime.BATCH_SOURCES:
        iotgen.runs.spark.register(spark)
        assert spark.read.format("iotgen").option("numEvents", 10).option("seed", 1).load().count() == 10
        return
    with pytest.raises(RuntimeError) as error:
        iotgen.runs.spark.register(spark)
    assert _one_line(error.value) == (
        "the iotgen and iotgen_eventhubs Spark sources need Spark 4.0 or later (pyspark 4.0+, Databricks Runtime "
        "17.3 LTS+) or Databricks Runtime 15.4 LTS+ (its Python data source backport): this runtime's pyspark "
        f"{runtime.pyspark_version()} has no Python data sources (pyspark.sql.datasource)")


def test_variant_parsing_works_or_fails_with_one_line_naming_the_runtime(spark):
    from iotgen.runs.spark.parse import good_events, parse_events

    body = json_lines(events(1)).to_pylist()[0]
    frame = spark.createDataFrame([(body,)], "line STRING")
    if runtime.VARIANT:
        row = good_events(parse_events(frame, body_column="line")).selectExpr("event_id", "to_json(json_column)").first()
        assert row[0] == json.loads(body)["event_id"] and json.loads(row[1]) == json.loads(body)["json_column"]
        return
    with pytest.raises(RuntimeError) as error:
        parse_events(frame, body_column="line")
    assert _one_line(error.value).startswith("parsing json_column to VARIANT needs Spark 4.0 or later (pyspark 4.0+) "
                                             "or Databricks Runtime 15.3+: this runtime's pyspark ")


def test_spark_kafka_source_takes_the_kafka_routes_options(spark):
    """With spark-sql-kafka on the classpath (the runs given deps/maven/spark-<minor> as IOTGEN_SPARK_JARS), the
    Kafka source plans a stream from iotgen's options (reading an endpoint is the Kafka tests' part). Whether it
    runs follows the run's jars, not the session's conf (a Spark Connect client does not see ``spark.jars``)."""
    from iotgen.runs.spark.kafka import kafka_options

    jars = session_options()["jars"]
    if not jars or not any(Path(jars).glob("spark-sql-kafka-*.jar")):
        pytest.skip("spark-sql-kafka is not among this run's IOTGEN_SPARK_JARS (the runs of deps/maven/spark-<minor>)")
    raw = spark.readStream.format("kafka").options(**kafka_options(AZURE, shaded=False)).load()
    assert raw.isStreaming
    assert raw.columns == ["key", "value", "topic", "partition", "offset", "timestamp", "timestampType"]
