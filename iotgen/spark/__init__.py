"""iotgen on Spark: the generator as a Spark data source, Event Hubs into Spark, VARIANT parsing and writers.

Pipelines layer: needs pyspark 4.0+ (local) or Databricks Runtime 15.4 LTS+ (where pyspark is never installed
by iotgen). Modules:

- :mod:`~iotgen.spark.source_iotgen`: ``spark.read/readStream.format("iotgen")``;
- :mod:`~iotgen.spark.source_eventhubs`: ``spark.readStream.format("eventhubs")`` (azure-eventhub SDK);
- :mod:`~iotgen.spark.kafka`: Event Hubs' Kafka endpoint through Spark's built-in Kafka source (Databricks);
- :mod:`~iotgen.spark.parse`: message body -> 23 typed columns + ``json_column`` VARIANT, bad records apart;
- :mod:`~iotgen.spark.write`: one streaming writer for Delta, Iceberg and Parquet, exactly once with checkpoints;
- :mod:`~iotgen.spark.session`: a quiet local session (never a new one on Databricks);
- :mod:`~iotgen.spark.pipeline`: the same, driven by a Config (what notebooks, helpers and jobs call).
"""

from __future__ import annotations

from typing import Any

__all__ = ["register"]


def register(spark: Any) -> Any:
    """Register the ``iotgen`` and ``eventhubs`` data sources with ``spark`` (idempotent); returns ``spark``."""
    from .source_eventhubs import EventHubsDataSource
    from .source_iotgen import IotgenDataSource

    spark.dataSource.register(IotgenDataSource)
    spark.dataSource.register(EventHubsDataSource)
    return spark
