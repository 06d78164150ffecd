"""iotgen on Spark: the generator as a Spark data source, Event Hubs into Spark, VARIANT parsing and writers.

Pipelines layer: pyspark 4.0+ (local), Databricks Runtime 15.4 LTS+ (where pyspark is never installed by iotgen),
classic or Spark Connect (serverless, standard access mode). What each runtime supports is found out from the
runtime (:mod:`~iotgen.runs.spark.runtime`): every module imports on every runtime, and a missing feature fails with
one line naming the runtime it needs. Modules:

- :mod:`~iotgen.runs.spark.source_iotgen`: ``spark.read/readStream.format("iotgen")``;
- :mod:`~iotgen.runs.spark.source_eventhubs`: ``spark.readStream.format("iotgen_eventhubs")`` (azure-eventhub SDK);
- :mod:`~iotgen.runs.spark.kafka`: Event Hubs' Kafka endpoint through Spark's built-in Kafka source (Databricks);
- :mod:`~iotgen.runs.spark.parse`: message body -> 23 typed columns + ``json_column`` VARIANT, bad records apart;
- :mod:`~iotgen.runs.spark.write`: one streaming writer for Delta, Iceberg and Parquet, exactly once with checkpoints;
- :mod:`~iotgen.runs.spark.session`: a quiet local session, classic or Spark Connect (never a new one on Databricks);
- :mod:`~iotgen.runs.spark.runtime`: what this Spark runtime supports;
- :mod:`~iotgen.runs.spark.pipeline`: the same, driven by a Config (what notebooks, helpers and jobs call).
"""

from __future__ import annotations

from typing import Any

__all__ = ["register"]


def register(spark: Any) -> Any:
    """Register the ``iotgen`` and ``iotgen_eventhubs`` data sources with ``spark`` (idempotent); returns
    ``spark``. On a runtime without Python data sources: one ``RuntimeError`` naming the runtime they need."""
    from .runtime import require_data_sources
    from .source_eventhubs import EventHubsDataSource
    from .source_iotgen import IotgenDataSource

    require_data_sources("the iotgen and iotgen_eventhubs Spark sources")
    spark.dataSource.register(IotgenDataSource)
    spark.dataSource.register(EventHubsDataSource)
    return spark
