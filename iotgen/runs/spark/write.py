"""One streaming writer for Delta, Iceberg and Parquet: good events and bad records, exactly once, checkpointed.

:func:`write_stream` takes a frame from :func:`iotgen.runs.spark.parse.parse_events` (or any frame with the 24 event
columns) and writes the good events to the target table and the bad records to a second table next to it
(``<table>_bad_records``), exactly once end to end (the source offsets are in the checkpoint):

========  =================================================================================================
engine    how it is written
========  =================================================================================================
spark     Spark's own streaming sinks, one query per output (checkpoints ``<checkpoint>/events`` and
          ``<checkpoint>/bad_records``): ``writeStream.format("delta"|"iceberg").toTable(name)`` (or ``start(path)``
          for a Delta path). Where: Databricks, or a session with delta-spark / iceberg-spark-runtime (see
          :func:`iotgen.runs.spark.session.connector_conf`). Delta: ``json_column`` VARIANT (the table gets Delta's
          ``variantType`` feature) or JSON text, partitioned by ``event_date``; the sink records (query id, batch
          id) in the Delta log, so a replayed batch is skipped. Iceberg: a new table is created as format v3 with
          a VARIANT ``json_column`` where the Iceberg/Spark pair supports it, else as v2 with JSON text and the
          reason logged; ``days(timestamp)`` partitions; Iceberg's sink records the query id and epoch in each
          snapshot. Locally an Iceberg ``NAMESPACE.TABLE`` lives in a Hadoop catalog over the warehouse folder
          (:func:`iceberg_catalog`).
embedded  no connector in the session (plain local pyspark): ``foreachBatch`` collects each micro-batch once
          (Arrow) and appends the good events with :func:`iotgen.outputs.delta.write_delta` (delta-rs, VARIANT or
          JSON text) or :func:`iotgen.outputs.iceberg.write_iceberg` (pyiceberg, SQLite catalog, v2, JSON text),
          keyed by ``(app id, batch id)`` where the app id is the query id Spark keeps in the checkpoint. Used
          only where no connector is on the classpath, and said so (logged, and :meth:`StreamTarget.describe`).
files     the ``parquet`` target: ``foreachBatch`` writes each micro-batch's Parquet file to a hidden staging
          folder, renames it into the target folder as ``part-<batch>-<n>-<app>.parquet`` and writes a commit
          marker last; a replayed batch whose marker exists is skipped, one without first deletes its
          leftovers. A local or mounted folder (``/Volumes/...`` on Databricks); ``json_column`` is JSON text.
========  =================================================================================================

Nothing here uses ``sparkContext``, RDDs, ``persist`` or ``cache``: the same code runs on classic Spark and on
Spark Connect (serverless, standard access mode). Triggers: ``availableNow`` (read what is there, then stop),
``once``, or a processing-time interval such as ``"10 seconds"`` (not on serverless).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...base.errors import InputError
from ...base.values import parse_choice
from ...settings.config import parse_trigger  # noqa: F401  (re-exported: spark.write.parse_trigger)
from ...settings.databricks import check_location, check_trigger, on_databricks
from .parse import BODY, EVENT_COLUMNS, GOOD, PROVENANCE, bad_records, good_events, has_provenance, parse_events
from .runtime import to_arrow

_LOGGER = logging.getLogger(__name__)

TARGETS = ("delta", "iceberg", "parquet")
ENGINES = ("auto", "spark", "embedded")
JSON_COLUMN_MODES = ("variant", "string")
BAD_RECORDS_SUFFIX = "_bad_records"


# ---- targets ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StreamTarget:
    """Where a stream goes: ``kind`` (delta | iceberg | parquet), ``table`` (name or path; for the spark engine's
    local Iceberg tables ``<catalog>.<namespace>.<table>``), ``bad_records`` (name or path), ``engine``
    (spark | embedded | files), ``json_column_mode`` and, for Iceberg, the catalog location."""

    kind: str
    table: str
    bad_records: str
    engine: str
    json_column_mode: str = "variant"
    iceberg_catalog_uri: str | None = None
    iceberg_warehouse: str | None = None

    @classmethod
    def resolve(cls, spark: Any, kind: str, table: str, *, bad_records: str | None = None, engine: str = "auto",
                json_column_mode: str = "variant", iceberg_catalog_uri: str | None = None,
                iceberg_warehouse: str | None = None) -> "StreamTarget":
        """Check everything (before any output) and pick the engine; ``ValueError`` naming the parameter."""
        kind = parse_choice("SPARK_TARGET", kind, TARGETS)
        engine = parse_choice("SPARK_ENGINE", engine, ENGINES)
        mode = parse_choice("JSON_COLUMN_MODE", json_column_mode, JSON_COLUMN_MODES)
        if not isinstance(table, str) or not table.strip():
            raise InputError(f"the {kind} target needs a table name or path, got {table!r}")
        table = table.strip()
        if kind == "parquet":
            engine = "files"
            if "://" in table and not table.startswith("file://"):
                raise InputError(f"the parquet target needs a local or mounted folder (e.g. /Volumes/...), got "
                                 f"{table!r}; use the delta target for cloud storage URIs")
            table = table[len("file://"):] if table.startswith("file://") else table
        elif engine == "auto":
            engine = "spark" if native_support(spark, kind) else "embedded"
        elif engine == "spark" and not native_support(spark, kind):
            raise InputError(f"SPARK_ENGINE=spark needs {kind} support in this Spark session "
                             f"({_NATIVE_HINT[kind]}); plain local pyspark has no {kind} jars: "
                             "use SPARK_ENGINE=embedded")
        if engine in ("embedded", "files") and _is_path(table):
            check_location("SPARK_TABLE" if kind == "parquet" else "OUTPUT_DIR", table, f"the {kind} target")
        if engine == "embedded":
            _check_embedded(kind, table)
        if kind == "iceberg" and (engine == "embedded" or not on_databricks()):
            from ...outputs.iceberg import check_identifier

            check_identifier(table)
        bad = bad_records or _bad_records_name(table, kind)
        if bad == table:
            raise InputError("SPARK_BAD_RECORDS must differ from the target table")
        if kind == "iceberg" and engine == "spark" and not on_databricks():  # a local Hadoop catalog
            from ...outputs.iceberg import catalog_location

            catalog = iceberg_catalog(spark, catalog_location(iceberg_catalog_uri or None, iceberg_warehouse)[1])
            table, bad = f"{catalog}.{table}", f"{catalog}.{bad}"
        return cls(kind, table, bad, engine, mode, iceberg_catalog_uri or None, iceberg_warehouse or None)

    def describe(self) -> str:
        """Which writer writes the table, in one line (the fallback says why it is used)."""
        name = {"delta": "Delta", "iceberg": "Iceberg", "parquet": "Parquet"}[self.kind]
        if self.engine == "spark":
            return f"{name} table {self.table}: Spark's {name} streaming sink"
        if self.engine == "files":
            return f"Parquet folder {self.table}: Parquet files committed per micro-batch in foreachBatch"
        writer = "delta-rs" if self.kind == "delta" else "pyiceberg"
        return (f"{name} table {self.table}: iotgen's embedded writer ({writer}) in foreachBatch, no {name} "
                "connector in this Spark session")


_NATIVE_HINT = {
    "delta": "Databricks, or delta-spark's jars with the DeltaSparkSessionExtension (SPARK_JARS)",
    "iceberg": "Databricks, or the iceberg-spark-runtime jar with IcebergSparkSessionExtensions (SPARK_JARS)",
}


def native_support(spark: Any, kind: str) -> bool:
    """True when the session writes ``kind`` tables itself (Databricks, or the format's extension is set)."""
    if kind == "parquet":
        return True
    if on_databricks():
        return True
    try:
        extensions = spark.conf.get("spark.sql.extensions", "") or ""
    except Exception:  # noqa: BLE001 - a conf the server will not show
        extensions = ""
    marker = {"delta": "DeltaSparkSessionExtension", "iceberg": "IcebergSparkSessionExtensions"}[kind]
    return marker in extensions


def iceberg_catalog(spark: Any, warehouse: str) -> str:
    """The name of an Iceberg Hadoop catalog over ``warehouse`` in this session (``iotgen_<hash>``, registered
    at run time: one per warehouse folder, so tables of different folders never meet)."""
    folder = str(Path(warehouse).expanduser().absolute())
    name = "iotgen_" + hashlib.sha1(folder.encode()).hexdigest()[:10]
    prefix = f"spark.sql.catalog.{name}"
    for key, value in (("", "org.apache.iceberg.spark.SparkCatalog"), (".type", "hadoop"), (".warehouse", folder)):
        spark.conf.set(prefix + key, value)
    return name


def _check_embedded(kind: str, table: str) -> None:
    module = {"delta": "deltalake", "iceberg": "pyiceberg"}[kind]
    try:
        __import__(module)
    except ImportError:
        raise InputError(f"the embedded {kind} writer needs the {module} package (pip install -r requirements.txt), "
                         f"or a Spark session with {kind} support") from None


def _bad_records_name(table: str, kind: str) -> str:
    if "/" in table or "\\" in table:
        return table.rstrip("/\\") + BAD_RECORDS_SUFFIX
    return table + BAD_RECORDS_SUFFIX


def _is_path(table: str) -> bool:
    return "/" in table or "\\" in table or "://" in table


def _json_text(columns: list[str], mode: str = "string") -> list[str]:
    """Select expressions with ``json_column`` as JSON text (``to_json``) or kept VARIANT."""
    return [("to_json(json_column) AS json_column" if mode == "string" else "json_column")
            if c == "json_column" else f"`{c}`" for c in columns]


# ---- engine spark: Spark's own streaming sinks ----------------------------------------------------------------
class OutputQueries:
    """The two streaming queries of the spark engine (good events, bad records), used as one query: wait for,
    stop, and read the progress (of the events query) of both together."""

    def __init__(self, events: Any, bad_records: Any) -> None:
        self.events = events
        self.bad_records = bad_records
        self.queries = (events, bad_records)

    @property
    def id(self) -> str:
        return self.events.id

    @property
    def name(self) -> str | None:
        return self.events.name

    @property
    def isActive(self) -> bool:  # noqa: N802 - Spark's name
        return any(q.isActive for q in self.queries)

    def awaitTermination(self, timeout: float | None = None) -> bool | None:  # noqa: N802
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        for query in self.queries:
            if deadline is None:
                query.awaitTermination()
            elif not query.awaitTermination(max(0.0, deadline - time.monotonic())):
                return False
        return None if timeout is None else True

    def stop(self) -> None:
        for query in self.queries:
            query.stop()

    def exception(self) -> Any:
        for query in self.queries:
            error = query.exception()
            if error is not None:
                return error
        return None

    @property
    def recentProgress(self) -> list[dict]:  # noqa: N802
        return self.events.recentProgress

    @property
    def lastProgress(self) -> dict | None:  # noqa: N802
        return self.events.lastProgress


def _start_native(parsed: Any, target: StreamTarget, checkpoint: str, trigger: dict[str, Any],
                  query_name: str | None) -> OutputQueries:
    spark = parsed.sparkSession
    events = good_events(parsed)
    if target.kind == "delta":
        events = events.selectExpr(*_json_text(events.columns, target.json_column_mode),
                                   "to_date(timestamp) AS event_date")
    else:
        mode = _create_iceberg(spark, events, target.table, "events", target.json_column_mode)
        events = events.selectExpr(*_json_text(events.columns, mode))
    names = (query_name, f"{query_name}_bad_records") if query_name else (None, None)
    first = _native_query(events, target, target.table, f"{checkpoint}/events", trigger, names[0],
                          ["event_date"] if target.kind == "delta" else [])
    try:
        second = _native_query(bad_records(parsed), target, target.bad_records, f"{checkpoint}/bad_records",
                               trigger, names[1], [])
    except BaseException:
        first.stop()
        raise
    return OutputQueries(first, second)


def _native_query(frame: Any, target: StreamTarget, table: str, checkpoint: str, trigger: dict[str, Any],
                  name: str | None, partition_by: list[str]) -> Any:
    writer = (frame.writeStream.format(target.kind).outputMode("append")
              .option("checkpointLocation", checkpoint).trigger(**trigger))
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    if target.kind == "iceberg":
        writer = writer.option("fanout-enabled", "true")  # no sort by partition before each write
    if name:
        writer = writer.queryName(name)
    if target.kind == "delta" and _is_path(table):
        return writer.start(table)
    return writer.toTable(table)


def _create_iceberg(spark: Any, df: Any, table: str, layout: str, mode: str) -> str:
    """Create the Iceberg table if missing: format v3 with VARIANT when asked and supported, else v2 with text
    (the reason logged). Returns the json_column mode the table has."""
    if spark.catalog.tableExists(table):
        types = {f.name: f.dataType.typeName() for f in spark.table(table).schema.fields}
        return "variant" if types.get("json_column") == "variant" else "string"
    partition = " PARTITIONED BY (days(timestamp))" if layout == "events" else ""
    columns = [f"`{f.name}` {f.dataType.simpleString()}" for f in df.schema.fields if f.name != "json_column"]
    if layout == "events" and mode == "variant":
        ddl = ", ".join(columns[:23] + ["`json_column` variant"] + columns[23:])
        try:
            spark.sql(f"CREATE TABLE IF NOT EXISTS {table} ({ddl}) USING iceberg{partition} "
                      "TBLPROPERTIES ('format-version'='3')")
            return "variant"
        except Exception as exc:  # noqa: BLE001 - this Iceberg/Spark pair has no v3 VARIANT: JSON text instead
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            _LOGGER.warning("Iceberg table %s: format v3 with a VARIANT json_column is not supported here (%s); "
                            "created as format v2 with json_column as JSON text", table, reason)
    fields = [f"`{f.name}` {'string' if f.name == 'json_column' else f.dataType.simpleString()}"
              for f in df.schema.fields]
    spark.sql(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(fields)}) USING iceberg{partition} "
              "TBLPROPERTIES ('format-version'='2')")
    return "string"


# ---- engines embedded and files: foreachBatch ------------------------------------------------------------------
def _app_id(spark: Any, checkpoint_location: str) -> str:
    """``iotgen-<query id>``: the id Spark keeps in the checkpoint's ``metadata`` file (stable across restarts,
    new with a new checkpoint)."""
    location = checkpoint_location.rstrip("/") + "/metadata"
    local = Path(location[len("file:"):] if location.startswith("file:") else location)
    if "://" not in location and local.exists():
        text = local.read_text(encoding="utf-8").splitlines()[0]
    else:
        text = spark.read.text(location).first()[0]
    return "iotgen-" + json.loads(text)["id"]


class MicroBatchWriter:
    """The ``foreachBatch`` function of :func:`write_stream` for the embedded writers and Parquet: each
    micro-batch is collected once (Arrow; no ``persist``), its good events go to ``target.table`` and its bad
    records (their reasons worked out by Spark for those rows only) to ``target.bad_records``, each append keyed
    by (app id, batch id). Picklable (Spark Connect runs it in a Python process of the server)."""

    def __init__(self, target: StreamTarget, checkpoint_location: str, provenance: bool) -> None:
        self.target = target
        self.checkpoint_location = checkpoint_location
        self.provenance = provenance
        self._app: str | None = None
        self.log: list[dict[str, Any]] = []  # per batch: ids, rows written, skipped (driver side, classic Spark)

    def __call__(self, batch_df: Any, batch_id: int) -> None:
        import pyarrow.compute as pc

        spark = batch_df.sparkSession
        if self._app is None:
            self._app = _app_id(spark, self.checkpoint_location)
        data = to_arrow(batch_df.selectExpr(*_json_text(list(EVENT_COLUMNS)), *PROVENANCE, GOOD,
                                            f"CASE WHEN {GOOD} THEN NULL ELSE {BODY} END AS {BODY}"))
        good = data.filter(data.column(GOOD))
        good = good.select(list(EVENT_COLUMNS) + (list(PROVENANCE) if self.provenance else []))
        written = _append(self.target, self.target.table, good, self._app, batch_id)
        rejected = 0
        rows = data.filter(pc.invert(data.column(GOOD))).select([*PROVENANCE, GOOD, BODY])
        if rows.num_rows:
            bad = to_arrow(bad_records(spark.createDataFrame(rows)))
            rejected = _append(self.target, self.target.bad_records, bad, self._app, batch_id)
        self.log.append({"batch_id": batch_id, "events": written, "bad_records": rejected})


def _append(target: StreamTarget, table: str, data: Any, app_id: str, batch_id: int) -> int:
    """Append an Arrow table to ``table`` unless (app_id, batch_id) is recorded there; rows appended (-1:
    skipped)."""
    if target.kind == "parquet":
        return append_parquet(data, table, app_id, batch_id)
    if data.num_rows == 0:
        return 0
    commit = embedded_table(target, table).write(data, idempotency_key=(app_id, batch_id))
    return -1 if commit.skipped else commit.rows


def embedded_table(target: StreamTarget, table: str) -> Any:
    """The :class:`~iotgen.outputs.table_target.TableTarget` the embedded writers append ``table`` through."""
    from ...outputs.table_target import TableTarget

    if target.kind == "delta":
        return TableTarget("delta", table, target.json_column_mode)
    return TableTarget("iceberg", table, "string", target.iceberg_catalog_uri, target.iceberg_warehouse)


# ---- parquet: staged files, renamed in, then a commit marker -------------------------------------------------
COMMITS_DIR = "_iotgen_commits"
STAGING_DIR = "_iotgen_staging"


def _short(app_id: str) -> str:
    return hashlib.sha1(app_id.encode()).hexdigest()[:10]


def parquet_committed(folder: str | os.PathLike, app_id: str) -> dict[int, dict]:
    """The committed batches of ``app_id`` in a parquet target folder: batch id -> marker contents."""
    commits = Path(folder) / COMMITS_DIR / _short(app_id)
    out = {}
    if commits.is_dir():
        for marker in commits.glob("*.json"):
            out[int(marker.stem)] = json.loads(marker.read_text(encoding="utf-8"))
    return out


def append_parquet(data: Any, folder: str, app_id: str, batch_id: int) -> int:
    """Append one micro-batch (an Arrow table) to a folder of Parquet files, exactly once per
    (app_id, batch_id): staged, renamed in, then the commit marker."""
    import pyarrow.parquet as pq

    root = Path(folder)
    short = _short(app_id)
    marker = root / COMMITS_DIR / short / f"{batch_id:012d}.json"
    if marker.exists():
        return -1
    prefix = f"part-{batch_id:012d}-"
    suffix = f"-{short}.parquet"
    root.mkdir(parents=True, exist_ok=True)
    for leftover in root.glob(f"{prefix}*{suffix}"):  # an attempt that died before its marker
        leftover.unlink()
    staging = root / STAGING_DIR / f"{short}-{batch_id:012d}-{uuid.uuid4().hex[:8]}"
    try:
        names = []
        if data.num_rows:
            staging.mkdir(parents=True)
            name = f"{prefix}{0:05d}{suffix}"
            pq.write_table(data, staging / name, compression="zstd")
            os.replace(staging / name, root / name)
            names.append(name)
        marker.parent.mkdir(parents=True, exist_ok=True)
        temporary = marker.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
        temporary.write_text(json.dumps({"app_id": app_id, "batch_id": batch_id, "rows": data.num_rows,
                                         "files": names}))
        os.replace(temporary, marker)
        return data.num_rows
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---- the query ---------------------------------------------------------------------------------------------
def write_stream(
    frame: Any,
    target: str,
    table: str,
    checkpoint_location: str,
    *,
    trigger: str | dict[str, Any] = "availableNow",
    bad_records: str | None = None,
    engine: str = "auto",
    json_column_mode: str = "variant",
    iceberg_catalog_uri: str | None = None,
    iceberg_warehouse: str | None = None,
    query_name: str | None = None,
) -> Any:
    """Start writing ``frame`` to ``target`` (delta | iceberg | parquet) ``table``, with its checkpoint at
    ``checkpoint_location``; returns the ``StreamingQuery`` (engine spark: :class:`OutputQueries`, the events and
    bad-records queries as one). ``frame`` is parsed with :func:`~iotgen.runs.spark.parse.parse_events` first unless
    it already is. Every argument is checked before the query starts."""
    trigger_args = _check_stream(frame, checkpoint_location, trigger)
    resolved = StreamTarget.resolve(frame.sparkSession, target, table, bad_records=bad_records, engine=engine,
                                    json_column_mode=json_column_mode, iceberg_catalog_uri=iceberg_catalog_uri,
                                    iceberg_warehouse=iceberg_warehouse)
    return start_stream(frame, resolved, checkpoint_location, trigger_args, query_name)


def _check_stream(frame: Any, checkpoint_location: str, trigger: str | dict[str, Any]) -> dict[str, Any]:
    if not frame.isStreaming:
        raise InputError("write_stream needs a streaming frame (spark.readStream...); for a static frame use "
                         "frame.write")
    if not isinstance(checkpoint_location, str) or not checkpoint_location.strip():
        raise InputError("CHECKPOINT_DIR must be a non-empty folder path for the streaming checkpoint")
    check_location("CHECKPOINT_DIR", checkpoint_location, "streaming checkpoints")
    trigger_args = parse_trigger(trigger) if isinstance(trigger, str) else dict(trigger)
    check_trigger("SPARK_TRIGGER", trigger_args)
    return trigger_args


def start_stream(frame: Any, target: StreamTarget, checkpoint_location: str,
                 trigger: str | dict[str, Any] = "availableNow", query_name: str | None = None) -> Any:
    """:func:`write_stream` for a target already resolved (:meth:`StreamTarget.resolve`)."""
    trigger_args = _check_stream(frame, checkpoint_location, trigger)
    parsed = frame if GOOD in frame.columns and BODY in frame.columns else parse_events(frame)
    checkpoint = checkpoint_location.rstrip("/")
    if target.engine == "spark":
        return _start_native(parsed, target, checkpoint, trigger_args, query_name)
    if target.engine == "embedded":
        _LOGGER.warning("%s", target.describe())
    writer = MicroBatchWriter(target, checkpoint, has_provenance(parsed))
    stream = parsed.writeStream.foreachBatch(writer).option("checkpointLocation", checkpoint).trigger(**trigger_args)
    if query_name:
        stream = stream.queryName(query_name)
    query = stream.start()
    try:
        query.iotgen_writer = writer  # the per-batch log, for notebooks and tests (classic Spark)
    except AttributeError:  # a query object that takes no new attributes: the log stays with the writer
        pass
    return query


def checkpoint_for(checkpoint_dir: str, target: StreamTarget | str, table: str | None = None) -> str:
    """A query's own checkpoint folder under CHECKPOINT_DIR: ``<dir>/<target>-<table slug>``."""
    kind, name = (target.kind, target.table) if isinstance(target, StreamTarget) else (target, table or "")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip("/\\")).strip("_") or "table"
    return f"{checkpoint_dir.rstrip('/')}/{kind}-{slug[-80:]}"


__all__ = [
    "BODY", "EVENT_COLUMNS", "PROVENANCE", "MicroBatchWriter", "OutputQueries", "StreamTarget", "append_parquet",
    "checkpoint_for", "iceberg_catalog", "native_support", "parquet_committed", "parse_trigger", "start_stream",
    "write_stream",
]
