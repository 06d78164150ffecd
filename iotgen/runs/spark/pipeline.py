"""Config-driven Spark pipelines: what the notebooks, helpers and jobs call.

Generate at cluster scale, read the event hub as a stream (Kafka endpoint or the ``iotgen_eventhubs`` source),
parse to typed columns with ``json_column`` as VARIANT, and write Delta / Iceberg / Parquet with a checkpoint, all
from one :class:`~iotgen.settings.config.Config` (``SPARK_*`` parameters, ``DELTA_TABLE_NAME``, ``ICEBERG_TABLE_NAME``,
``CHECKPOINT_DIR``/``CATALOG_VOLUME_PATH``, ``JSON_COLUMN_MODE``, the Event Hubs connection).

On Databricks (see :mod:`iotgen.settings.databricks`) checkpoints and outputs must be volumes or cloud URIs, serverless
takes only ``availableNow``/``once``, and a bare table name is a Unity Catalog table; elsewhere a bare table name
is a folder under ``OUTPUT_DIR``, whichever engine writes it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ...base.errors import InputError
from ...outputs.eventhubs import parse_connection_string
from ...settings.config import Config
from ...settings.databricks import check_location, check_trigger, on_databricks
from ...outputs.table_target import config_target
from .parse import parse_events
from .runtime import available_now_limits
from .write import StreamTarget, checkpoint_for, parse_trigger, start_stream

SOURCES = ("auto", "iotgen_eventhubs", "kafka")
_LOGGER = logging.getLogger(__name__)


def _iotgen_options(config: Config, num_partitions: int | None = None) -> dict[str, str]:
    options = {"minKeys": config.min_keys, "maxKeys": config.max_keys, "numSensors": config.num_sensors,
               "baseTimeDaysAgo": config.base_time_days_ago, "timeSpreadHours": config.time_spread_hours,
               "anchorTime": config.resolved_anchor_time().isoformat()}
    if config.random_seed is not None:
        options["seed"] = config.random_seed
    if config.spec_file is not None:  # read by the driver's Python worker: an absolute path where it exists here
        from ...spec.spec_file import locate

        options["specFile"] = locate(config.spec_file)
    for key, value in (("profile", config.profile), ("deviceCount", config.device_count),
                       ("deviceRegistry", config.device_registry)):
        if value is not None:
            options[key] = str(value).lower() if isinstance(value, bool) else value
    options["cdcLayout"] = config.cdc_layout
    partitions = num_partitions or config.spark_num_partitions
    if partitions:
        options["numPartitions"] = partitions
    return {k: str(v) for k, v in options.items()}


def _default_partitions(spark: Any) -> int:
    try:
        return max(1, int(spark.sparkContext.defaultParallelism))
    except Exception:  # noqa: BLE001 - Spark Connect has no sparkContext
        return 8


def generate(spark: Any, config: Config, num_events: int | None = None, dataset: str = "events") -> Any:
    """``NUM_EVENTS`` events as a Spark DataFrame from the ``iotgen`` source (``SPARK_NUM_PARTITIONS``, or the
    cluster's default parallelism): the same events the embedded generator gives for the same seed, with the
    fleet and scenarios of ``SPEC_FILE`` / ``PROFILE`` / ``DEVICE_COUNT`` when set. ``dataset``: ``devices``
    or ``device_changes`` for the device registry's snapshot or change feed (``DEVICE_REGISTRY``,
    ``CDC_LAYOUT``)."""
    from . import register

    register(spark)
    options = _iotgen_options(config, config.spark_num_partitions or _default_partitions(spark))
    options["dataset"] = dataset
    if dataset == "events":
        options["numEvents"] = str(config.num_events if num_events is None else num_events)
    return spark.read.format("iotgen").options(**options).load()


def generate_stream(spark: Any, config: Config, *, rows_per_second: float | None = None,
                    rows_per_batch: int | None = None, num_events: int | None = None, dataset: str = "events") -> Any:
    """A streaming DataFrame from the ``iotgen`` source (bounded by ``num_events`` when given; ``dataset``: see
    :func:`generate`)."""
    from . import register

    register(spark)
    options = _iotgen_options(config, config.spark_num_partitions or _default_partitions(spark))
    options["dataset"] = dataset
    for key, value in (("rowsPerSecond", rows_per_second), ("rowsPerBatch", rows_per_batch),
                       ("numEvents", num_events)):
        if value is not None:
            options[key] = str(value)
    return spark.readStream.format("iotgen").options(**options).load()


def choose_source(config: Config, basic_tier: bool = False, kafka_source: bool | None = None) -> str:
    """``kafka`` or ``iotgen_eventhubs`` for SPARK_SOURCE. ``auto``: Spark's Kafka source where the session has it
    (``kafka_source``; None: only on Databricks) and the hub has a Kafka endpoint: a key-based connection string
    (off Databricks the local endpoint too, which serves Kafka like Microsoft's emulator, when
    KAFKA_BOOTSTRAP_SERVERS gives its Kafka port), or EVENTHUB_SERVICE_CREDENTIAL, not on the Basic tier; the
    ``iotgen_eventhubs`` source otherwise. ``kafka`` on the Basic tier: ``ValueError`` saying why."""
    source = config.spark_source
    connection = config.eventhub_connection_string
    fields = parse_connection_string(connection.reveal()) if connection is not None else {}
    if source == "kafka" and basic_tier:
        raise InputError("SPARK_SOURCE=kafka: the namespace is on the Basic tier (256 KB messages), which has no "
                         "Kafka endpoint: use SPARK_SOURCE=iotgen_eventhubs, or a Standard namespace or above")
    if source != "auto":
        return source
    if not (on_databricks() if kafka_source is None else kafka_source) or basic_tier:
        return "iotgen_eventhubs"
    if fields.get("usedevelopmentemulator", "").lower() == "true" and (
            on_databricks() or not config.kafka_bootstrap_servers):
        return "iotgen_eventhubs"  # a local endpoint whose Kafka port nobody told us, or on a Databricks driver
    keyed = "sharedaccesskey" in fields or "sharedaccesssignature" in fields
    return "kafka" if keyed or config.eventhub_service_credential else "iotgen_eventhubs"


def _rate_limit(config: Config, streaming: bool) -> int | None:
    """SPARK_MAX_EVENTS_PER_TRIGGER, unless Spark cannot apply it to this run: a Python stream reader under
    ``availableNow`` on Spark < 4.2 gets one micro-batch only, so the limit would end the run early."""
    limit = config.spark_max_events_per_trigger if streaming else None
    if limit and parse_trigger(config.spark_trigger) == {"availableNow": True} and not available_now_limits():
        _LOGGER.warning("SPARK_MAX_EVENTS_PER_TRIGGER=%s not applied: with availableNow, Spark < 4.2 reads a Python "
                        "source in one micro-batch (the limit applies to interval triggers)", limit)
        return None
    return limit


def event_source(config: Config, *, streaming: bool = True, basic_tier: bool = False,
                 kafka_source: bool | None = None) -> tuple[str, dict[str, str]]:
    """(format, options) of the reader for the configured event hub, by :func:`choose_source`: ``kafka`` with
    :func:`~iotgen.runs.spark.kafka.kafka_options`, or the ``iotgen_eventhubs`` source. The options may hold the
    connection string: pass them to Spark, never print them."""
    connection = config.eventhub_connection_string
    if choose_source(config, basic_tier, kafka_source) == "kafka":
        if connection is None and not (config.eventhub_service_credential and config.eventhub_namespace):
            raise InputError("SPARK_SOURCE=kafka needs EVENTHUB_CONNECTION_STRING (env var or Databricks secret) or "
                             "EVENTHUB_SERVICE_CREDENTIAL with EVENTHUB_NAMESPACE")
        from .kafka import kafka_options

        return "kafka", kafka_options(
            connection.reveal() if connection is not None else None, namespace=config.eventhub_namespace or None,
            topic=config.kafka_topic or config.eventhub_name or None,
            service_credential=config.eventhub_service_credential or None,
            bootstrap_servers=config.kafka_bootstrap_servers or None, starting_offsets=config.spark_starting_position,
            max_offsets_per_trigger=config.spark_max_events_per_trigger if streaming else None)
    if config.eventhub_service_credential and connection is None:
        raise InputError("EVENTHUB_SERVICE_CREDENTIAL is for the Kafka route (SPARK_SOURCE=kafka, Databricks Runtime "
                         "16.1+): the iotgen_eventhubs source reads on the executors, where dbutils is not available; "
                         "give it EVENTHUB_CONNECTION_STRING or EVENTHUB_NAMESPACE (Azure AD) instead")
    options = {"startingPosition": config.spark_starting_position}
    if connection is not None:
        options["connectionString"] = connection.reveal()
    elif config.eventhub_namespace:
        options["fullyQualifiedNamespace"] = config.eventhub_namespace
    else:
        raise InputError("reading Event Hubs needs EVENTHUB_CONNECTION_STRING (env var or Databricks secret) or "
                         "EVENTHUB_NAMESPACE and EVENTHUB_NAME (Azure AD)")
    if config.eventhub_name:
        options["eventHubName"] = config.eventhub_name
    if config.eventhub_transport != "amqp":
        options["transport"] = config.eventhub_transport
    limit = _rate_limit(config, streaming)
    if limit:
        options["maxEventsPerTrigger"] = str(limit)
    return "iotgen_eventhubs", options


def read_event_stream(spark: Any, config: Config, *, streaming: bool = True, basic_tier: bool = False) -> Any:
    """The event hub as a DataFrame of raw messages (see :func:`event_source`): a stream, or
    (``streaming=False``) the messages there now."""
    from . import register
    from .kafka import kafka_source_available

    kafka_source = kafka_source_available(spark) if config.spark_source == "auto" else None
    fmt, options = event_source(config, streaming=streaming, basic_tier=basic_tier, kafka_source=kafka_source)
    if fmt == "iotgen_eventhubs":
        register(spark)
    reader = spark.readStream if streaming else spark.read
    return reader.format(fmt).options(**options).load()


def target_table(config: Config, target: str | None = None, engine: str = "embedded") -> str:
    """The table (or path) a target writes to: SPARK_TABLE, else DELTA_TABLE_NAME / ICEBERG_TABLE_NAME /
    OUTPUT_DIR/parquet/iot_events. A bare Delta name is a Unity Catalog table for Spark's sink on Databricks, and
    a folder under OUTPUT_DIR everywhere else (as everywhere in iotgen, see
    :func:`iotgen.outputs.table_target.config_target`)."""
    kind = (target or config.spark_target).lower()
    if config.spark_table:
        return config.spark_table
    if kind == "parquet":
        return str(Path(config.output_dir) / "parquet" / "iot_events")
    if engine == "embedded" or not on_databricks():
        return config_target(config, kind).location
    return config.delta_table_name if kind == "delta" else config.iceberg_table_name


def resolve_target(spark: Any, config: Config, target: str | None = None) -> StreamTarget:
    """The :class:`StreamTarget` a Config describes (checked; engine chosen)."""
    kind = (target or config.spark_target).lower()
    engine = config.spark_engine
    if kind in ("delta", "iceberg") and engine == "auto":
        from .write import native_support

        engine = "spark" if native_support(spark, kind) else "embedded"
    table = target_table(config, kind, engine)
    if not config.spark_table and (kind == "parquet" or engine == "embedded" or not on_databricks()):
        check_location("OUTPUT_DIR", config.output_dir, f"the {kind} target")
    uri = config.iceberg_catalog_uri or None
    warehouse = None if uri else str(Path(config.output_dir) / "iceberg")
    return StreamTarget.resolve(spark, kind, table, bad_records=config.spark_bad_records or None, engine=engine,
                                json_column_mode=config.json_column_mode, iceberg_catalog_uri=uri,
                                iceberg_warehouse=warehouse)


def write_events(frame: Any, config: Config, target: str | None = None, *, query_name: str | None = None) -> Any:
    """Start the query writing a (raw or parsed) stream to SPARK_TARGET with trigger SPARK_TRIGGER and a checkpoint
    of its own under CHECKPOINT_DIR (``<dir>/<target>-<table>``). Returns the ``StreamingQuery``."""
    trigger = parse_trigger(config.spark_trigger)
    check_trigger("SPARK_TRIGGER", trigger)
    checkpoint_dir = config.resolved_checkpoint_dir()
    check_location("CHECKPOINT_DIR" if config.checkpoint_dir or not config.catalog_volume_path
                   else "CATALOG_VOLUME_PATH", checkpoint_dir, "streaming checkpoints")
    resolved = resolve_target(frame.sparkSession, config, target)
    return start_stream(frame, resolved, checkpoint_for(checkpoint_dir, resolved), trigger, query_name)


def await_query(query: Any, timeout: float = 600.0) -> list[dict[str, Any]]:
    """Wait (at most ``timeout`` seconds) for an ``availableNow``/``once`` query to end, then its micro-batches:
    batch id, input rows, events written and bad records (-1: a replayed batch, skipped). Raises the query's
    error, or ``TimeoutError`` (after stopping it) if it did not end in time."""
    finished = query.awaitTermination(timeout)
    if not finished:
        query.stop()
        raise TimeoutError(f"the streaming query did not finish within {timeout:g} s (a processing-time trigger "
                           "runs until stopped: use query.stop())")
    return batch_report(query)


def batch_report(query: Any) -> list[dict[str, Any]]:
    """The micro-batches a query ran: batch id and input rows (the messages it read), plus, where the writer's
    log is at hand (``foreachBatch`` on classic Spark), events written and bad records."""
    written = {entry["batch_id"]: entry for entry in getattr(getattr(query, "iotgen_writer", None), "log", [])}
    rows = []
    for progress in query.recentProgress:
        batch, count = _progress(progress, "batchId"), _progress(progress, "numInputRows")
        if count == 0 and batch not in written:
            continue
        entry = written.get(batch, {})
        rows.append({"batch": batch, "input_rows": count,
                     "events_written": entry.get("events"), "bad_records": entry.get("bad_records")})
    return rows


def _progress(progress: Any, name: str) -> Any:
    """A field of a query progress (Spark Connect's progress objects fill some only as attributes)."""
    value = getattr(progress, name, None)
    return progress[name] if value is None else value


def table_counts(spark: Any, config: Config, target: str | None = None) -> dict[str, int]:
    """Rows, distinct event ids and bad records of the table a Config's stream writes (read with Spark where
    Spark wrote it, else with the embedded readers)."""
    resolved = resolve_target(spark, config, target)
    rows, distinct = _rows_and_distinct(spark, resolved, resolved.table, "event_id")
    bad, _ = _rows_and_distinct(spark, resolved, resolved.bad_records, "reason")
    return {"rows": rows, "distinct event_id": distinct, "bad records": bad}


def _rows_and_distinct(spark: Any, resolved: StreamTarget, table: str, column: str) -> tuple[int, int]:
    if resolved.engine == "embedded":
        import pyarrow.compute as pc

        from .write import embedded_table

        handle = embedded_table(resolved, table)
        if not handle.exists():
            return 0, 0
        values = handle.read([column]).column(0)
        return len(values), pc.count_distinct(values).as_py()
    from pyspark.sql import functions as F

    if resolved.kind == "parquet" or "/" in table:
        if resolved.kind == "parquet" and not any(Path(table).glob("*.parquet")):
            return 0, 0
        frame = (spark.read.parquet(table) if resolved.kind == "parquet"
                 else spark.read.format(resolved.kind).load(table))
    else:
        if not spark.catalog.tableExists(table):
            return 0, 0
        # Iceberg 1.10 on Spark 4.0: the vectorized reader fails on a v3 table with VARIANT ("Not implemented for
        # variant") even where the column is not read; the row reader works
        reader = spark.read.option("vectorization-enabled", "false") if resolved.kind == "iceberg" else spark.read
        frame = reader.table(table)
    row = frame.agg(F.count(F.lit(1)), F.countDistinct(column)).first()
    return int(row[0]), int(row[1])


__all__ = ["SOURCES", "await_query", "batch_report", "choose_source", "event_source", "generate", "generate_stream",
           "parse_events", "read_event_stream", "resolve_target", "table_counts", "target_table", "write_events"]
