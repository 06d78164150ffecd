"""One streaming writer for Delta, Iceberg and Parquet: good events and bad records, exactly once, checkpointed.

:func:`write_stream` starts one query over a frame from :func:`iotgen.spark.parse.parse_events` (or any frame
with the 24 event columns) that, for every micro-batch, appends the good events to the target table and the
bad records to a second table next to it (``<table>_bad_records``). Exactly once end to end: the source's
offsets are in the checkpoint, and every append is keyed by ``(app id, batch id)`` where the app id is the
query id Spark keeps in the checkpoint (a new checkpoint is a new app id, so its batch 0 is never taken for the
old query's):

========  =================================================================================================
target    how it is written
========  =================================================================================================
delta     *spark* engine (Databricks, or open-source Spark with delta-spark): Spark's Delta writer with
          ``txnAppId``/``txnVersion``; a table name (``catalog.schema.table``, Unity Catalog) or a path.
          ``json_column`` is VARIANT (the table gets the variant feature) or JSON text.
          *embedded* engine (plain local pyspark, no Delta jars): :func:`iotgen.sinks.delta.write_delta` with
          ``idempotency_key=(app id, batch id)`` inside ``foreachBatch``; a path.
iceberg   *spark* engine (Databricks, or Spark with an Iceberg catalog): ``writeTo(table).append()`` with the
          snapshot property ``iotgen.txn.<app id> = <batch id>``, checked before each append; a new table is
          created as format v3 with a VARIANT ``json_column`` where the runtime supports it, else v2 with JSON
          text. *embedded*: :func:`iotgen.sinks.iceberg.write_iceberg` (SQLite catalog, v2, JSON text).
parquet   Spark writes each micro-batch's files to a hidden staging folder; they are renamed into the target
          folder as ``part-<batch>-<n>-<app>.parquet`` and a commit marker is written last. A replayed batch
          whose marker exists is skipped; one without (a crash mid-batch) first deletes its leftovers. A local or
          mounted path (``/Volumes/...`` on Databricks). ``json_column`` is JSON text.
========  =================================================================================================

Triggers: ``availableNow`` (read what is there, then stop), ``once``, or a processing-time interval such as
``"10 seconds"``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .parse import BODY, EVENT_COLUMNS, GOOD, PROVENANCE, bad_records, good_events, has_provenance, parse_events
from .session import on_databricks

TARGETS = ("delta", "iceberg", "parquet")
ENGINES = ("auto", "spark", "embedded")
JSON_COLUMN_MODES = ("variant", "string")
BAD_RECORDS_SUFFIX = "_bad_records"
_INTERVAL = re.compile(r"^\s*(?:processingTime\s*[:=]\s*)?(\d+(?:\.\d+)?)\s*"
                       r"(ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hours?)\s*$", re.IGNORECASE)


# ---- triggers ----------------------------------------------------------------------------------------------
def parse_trigger(text: str) -> dict[str, Any]:
    """``availableNow`` | ``once`` | ``<n> seconds`` (or ``processingTime=<n> seconds``) as ``trigger()``
    keyword arguments; ``ValueError`` naming SPARK_TRIGGER otherwise."""
    value = str(text).strip()
    if value.replace("_", "").replace("-", "").lower() in ("availablenow", ""):
        return {"availableNow": True}
    if value.lower() == "once":
        return {"once": True}
    match = _INTERVAL.match(value)
    if match:
        number, unit = match.groups()
        unit = unit.lower()
        word = ("milliseconds" if unit.startswith(("ms", "milli")) else "minutes" if unit.startswith("m") else
                "hours" if unit.startswith("h") else "seconds")
        return {"processingTime": f"{number} {word}"}
    raise ValueError(f"SPARK_TRIGGER must be availableNow, once or an interval such as '10 seconds', got {text!r}")


# ---- targets -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StreamTarget:
    """Where a stream goes: ``kind`` (delta | iceberg | parquet), ``table`` (name or path), ``bad_records``
    (name or path), ``engine`` (spark | embedded | files), ``json_column_mode`` and, for embedded Iceberg,
    the catalog location."""

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
        kind = _choice("SPARK_TARGET", kind, TARGETS)
        engine = _choice("SPARK_ENGINE", engine, ENGINES)
        mode = _choice("JSON_COLUMN_MODE", json_column_mode, JSON_COLUMN_MODES)
        if not isinstance(table, str) or not table.strip():
            raise ValueError(f"the {kind} target needs a table name or path, got {table!r}")
        table = table.strip()
        if kind == "parquet":
            engine = "files"
            if "://" in table and not table.startswith("file://"):
                raise ValueError(f"the parquet target needs a local or mounted folder (e.g. /Volumes/...), got "
                                 f"{table!r}; use the delta target for cloud storage URIs")
            table = table[len("file://"):] if table.startswith("file://") else table
        elif engine == "auto":
            engine = "spark" if native_support(spark, kind) else "embedded"
        elif engine == "spark" and not native_support(spark, kind):
            raise ValueError(f"SPARK_ENGINE=spark needs {kind} support in this Spark session "
                             f"({_NATIVE_HINT[kind]}); plain local pyspark has no {kind} jars: use SPARK_ENGINE=embedded")
        if engine == "embedded":
            _check_embedded(kind, table)
        if kind == "iceberg" and engine == "embedded":
            from ..sinks.iceberg import check_identifier

            check_identifier(table)
        bad = bad_records or _bad_records_name(table, kind)
        if bad == table:
            raise ValueError("SPARK_BAD_RECORDS must differ from the target table")
        return cls(kind, table, bad, engine, mode, iceberg_catalog_uri or None, iceberg_warehouse or None)


_NATIVE_HINT = {
    "delta": "Databricks, or delta-spark's configure_spark_with_delta_pip and the DeltaSparkSessionExtension",
    "iceberg": "Databricks, or the iceberg-spark-runtime jar, IcebergSparkSessionExtensions and a catalog",
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


def _check_embedded(kind: str, table: str) -> None:
    module = {"delta": "deltalake", "iceberg": "pyiceberg"}[kind]
    try:
        __import__(module)
    except ImportError:
        raise ValueError(f"the embedded {kind} writer needs the {module} package (pip install -r requirements.txt), "
                         f"or a Spark session with {kind} support") from None


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.strip().lower() not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value.strip().lower()


def _bad_records_name(table: str, kind: str) -> str:
    if "/" in table or "\\" in table:
        return table.rstrip("/\\") + BAD_RECORDS_SUFFIX
    return table + BAD_RECORDS_SUFFIX


def _is_path(table: str) -> bool:
    return "/" in table or "\\" in table or "://" in table


# ---- one micro-batch ---------------------------------------------------------------------------------------
def _json_text(columns: list[str], mode: str = "string") -> list[str]:
    """Select expressions with ``json_column`` as JSON text (``to_json``) or kept VARIANT."""
    return [("to_json(json_column) AS json_column" if mode == "string" else "json_column")
            if c == "json_column" else f"`{c}`" for c in columns]


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
    """The ``foreachBatch`` function of :func:`write_stream`: good events to ``target.table``, bad records to
    ``target.bad_records``, each append keyed by (app id, batch id). Picklable (Spark Connect ships it)."""

    def __init__(self, target: StreamTarget, checkpoint_location: str, provenance: bool) -> None:
        self.target = target
        self.checkpoint_location = checkpoint_location
        self.provenance = provenance
        self._app: str | None = None
        self.log: list[dict[str, Any]] = []  # per batch: ids, rows written, skipped (driver side, classic Spark)

    def __call__(self, batch_df: Any, batch_id: int) -> None:
        spark = batch_df.sparkSession
        if self._app is None:
            self._app = _app_id(spark, self.checkpoint_location)
        batch_df = batch_df.persist()
        try:
            good = good_events(batch_df, provenance=self.provenance)
            bad = bad_records(batch_df)
            written = _append(spark, self.target, self.target.table, good, "events", self._app, batch_id)
            rejected = 0
            if not bad.isEmpty():
                rejected = _append(spark, self.target, self.target.bad_records, bad, "quarantine", self._app,
                                   batch_id)
            self.log.append({"batch_id": batch_id, "events": written, "bad_records": rejected})
        finally:
            batch_df.unpersist()


def _append(spark: Any, target: StreamTarget, table: str, df: Any, layout: str, app_id: str, batch_id: int) -> int:
    """Append ``df`` to ``table`` unless (app_id, batch_id) is recorded there; rows appended (-1: skipped)."""
    if target.kind == "parquet":
        return append_parquet(df.selectExpr(*_json_text(df.columns)), table, app_id, batch_id)
    if target.engine == "embedded":
        data = df.selectExpr(*_json_text(df.columns)).toArrow()
        if data.num_rows == 0:
            return 0
        commit = embedded_table(target, table).write(data, idempotency_key=(app_id, batch_id))
        return -1 if commit.skipped else commit.rows
    if target.kind == "delta":
        return _append_spark_delta(df, table, layout, target.json_column_mode, app_id, batch_id)
    return _append_spark_iceberg(spark, df, table, layout, target.json_column_mode, app_id, batch_id)


def embedded_table(target: StreamTarget, table: str) -> Any:
    """The :class:`~iotgen.pipelines.tables.TableTarget` the embedded writers append ``table`` through."""
    from ..pipelines.tables import TableTarget

    if target.kind == "delta":
        return TableTarget("delta", table, target.json_column_mode)
    return TableTarget("iceberg", table, "string", target.iceberg_catalog_uri, target.iceberg_warehouse)


def _with_event_date(df: Any, layout: str) -> Any:
    return df.selectExpr("*", "to_date(timestamp) AS event_date") if layout == "events" else df


def _append_spark_delta(df: Any, table: str, layout: str, mode: str, app_id: str, batch_id: int) -> int:
    """Spark's own Delta writer; ``txnAppId``/``txnVersion`` make a replayed batch a no-op."""
    data = _with_event_date(df.selectExpr(*_json_text(df.columns, mode)), layout)
    writer = (data.write.format("delta").mode("append")
              .option("txnAppId", app_id).option("txnVersion", str(batch_id)))
    if layout == "events":
        writer = writer.partitionBy("event_date")
    if _is_path(table):
        writer.save(table)
    else:
        writer.saveAsTable(table)
    return data.count()


def iceberg_recorded_version(spark: Any, table: str, app_id: str) -> int | None:
    """The batch id ``app_id`` is recorded at in an Iceberg table (snapshot summaries), via Spark."""
    key = "iotgen.txn." + app_id
    row = spark.sql(f"SELECT max(CAST(summary['{key}'] AS BIGINT)) FROM {table}.snapshots").first()
    return None if row is None else row[0]


def _create_iceberg(spark: Any, df: Any, table: str, layout: str, mode: str) -> str:
    """Create the Iceberg table if missing: format v3 with VARIANT when asked and supported, else v2 with text.
    Returns the json_column mode the table has."""
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
        except Exception:  # noqa: BLE001 - runtime without Iceberg v3 / VARIANT: fall back to JSON text
            pass
    fields = [f"`{f.name}` {'string' if f.name == 'json_column' else f.dataType.simpleString()}"
              for f in df.schema.fields]
    spark.sql(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(fields)}) USING iceberg{partition} "
              "TBLPROPERTIES ('format-version'='2')")
    return "string"


def _append_spark_iceberg(spark: Any, df: Any, table: str, layout: str, mode: str, app_id: str,
                          batch_id: int) -> int:
    table_mode = _create_iceberg(spark, df, table, layout, mode)
    recorded = iceberg_recorded_version(spark, table, app_id)
    if recorded is not None and recorded >= batch_id:
        return -1
    data = df.selectExpr(*_json_text(df.columns, table_mode))
    data.writeTo(table).option(f"snapshot-property.iotgen.txn.{app_id}", str(batch_id)).append()
    return data.count()


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


def append_parquet(df: Any, folder: str, app_id: str, batch_id: int) -> int:
    """Append one micro-batch to a folder of Parquet files, exactly once per (app_id, batch_id)."""
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
        df.write.mode("overwrite").option("compression", "zstd").parquet(str(staging.absolute()))
        files = sorted(staging.glob("part-*.parquet"))
        rows = 0
        names = []
        import pyarrow.parquet as pq

        for i, path in enumerate(files):
            count = pq.ParquetFile(path).metadata.num_rows
            if count == 0:
                continue
            name = f"{prefix}{i:05d}{suffix}"
            os.replace(path, root / name)
            names.append(name)
            rows += count
        marker.parent.mkdir(parents=True, exist_ok=True)
        temporary = marker.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
        temporary.write_text(json.dumps({"app_id": app_id, "batch_id": batch_id, "rows": rows, "files": names}))
        os.replace(temporary, marker)
        return rows
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
    """Start the streaming query writing ``frame`` to ``target`` (delta | iceberg | parquet) ``table``, with its
    checkpoint at ``checkpoint_location``; returns the ``StreamingQuery``. ``frame`` is parsed with
    :func:`~iotgen.spark.parse.parse_events` first unless it already is. Every argument is checked before the
    query starts."""
    if not frame.isStreaming:
        raise ValueError("write_stream needs a streaming frame (spark.readStream...); for a static frame use "
                         "frame.write")
    if not isinstance(checkpoint_location, str) or not checkpoint_location.strip():
        raise ValueError("CHECKPOINT_DIR must be a non-empty folder path for the streaming checkpoint")
    trigger_args = parse_trigger(trigger) if isinstance(trigger, str) else dict(trigger)
    parsed = frame if GOOD in frame.columns and BODY in frame.columns else parse_events(frame)
    spark = frame.sparkSession
    resolved = StreamTarget.resolve(spark, target, table, bad_records=bad_records, engine=engine,
                                    json_column_mode=json_column_mode, iceberg_catalog_uri=iceberg_catalog_uri,
                                    iceberg_warehouse=iceberg_warehouse)
    writer = MicroBatchWriter(resolved, checkpoint_location.rstrip("/"), has_provenance(parsed))
    stream = (parsed.writeStream.foreachBatch(writer)
              .option("checkpointLocation", checkpoint_location).trigger(**trigger_args))
    if query_name:
        stream = stream.queryName(query_name)
    query = stream.start()
    query.iotgen_writer = writer  # the per-batch log, for notebooks and tests (classic Spark)
    return query


def checkpoint_for(checkpoint_dir: str, target: StreamTarget | str, table: str | None = None) -> str:
    """A query's own checkpoint folder under CHECKPOINT_DIR: ``<dir>/<target>-<table slug>``."""
    kind, name = (target.kind, target.table) if isinstance(target, StreamTarget) else (target, table or "")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip("/\\")).strip("_") or "table"
    return f"{checkpoint_dir.rstrip('/')}/{kind}-{slug[-80:]}"


__all__ = [
    "BODY", "EVENT_COLUMNS", "PROVENANCE", "MicroBatchWriter", "StreamTarget", "append_parquet", "checkpoint_for",
    "native_support", "parquet_committed", "parse_trigger", "write_stream",
]
