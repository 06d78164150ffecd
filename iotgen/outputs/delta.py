"""Delta Lake tables through delta-rs (``deltalake``): no JVM, no cluster.

* ``json_column`` is stored as ``VARIANT`` (the table is created with delta-rs ``VariantType``, which turns on
  the ``variantType`` reader/writer feature; values are Parquet-variant encoded by :mod:`iotgen.formats.variant`)
  or as JSON text (``json_column_mode="string"``).
* Event tables are partitioned by ``event_date`` (the UTC date of ``timestamp``); quarantine tables are not.
* Every write is one atomic Delta commit. ``idempotency_key=(app_id, version)`` and ``app_transactions``
  are recorded in that commit as Delta app transactions (``txn`` actions, read back with
  ``DeltaTable.transaction_version``); a write whose key the table already records at a version >= its own is
  skipped, and a commit that loses a race for the same app id fails with :class:`CommitConflict` instead of
  appending twice. The app transactions are also put in the commit info (``iotgen.app_transactions``) so the
  table history shows them.
* Deletion vectors are never enabled (delta-rs would then refuse to read the table).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..base.errors import InputError
from ..base.variant_encoding import shared_metadata
from ..formats.variant import VARIANT_TYPE, json_or_text_to_variant
from .lakehouse import (
    LAYOUTS,
    CommitConflict,
    UNINDEXED_COLUMN,
    TableCommit,
    already_recorded,
    check_app_transactions,
    check_json_column_mode,
    conform,
    event_date,
    layout_of,
    record_batches,
)
from .table_files import TableFiles

PARTITION_COLUMN = "event_date"
COMMIT_INFO_KEY = "iotgen.app_transactions"
#: Rows and files added by a commit iotgen wrote its own files for (delta-rs puts no operation metrics in such a
#: commit).
ROWS_KEY = "iotgen.rows_added"
FILES_KEY = "iotgen.files_added"
#: The folder of rows whose partition value is null (Hive's name, which delta-rs and Spark use too).
HIVE_DEFAULT_PARTITION = "__HIVE_DEFAULT_PARTITION__"
#: Data files are cut at this size. delta-rs (remote tables) buffers each open partition's file in memory up to it
#: (100 MiB by its default), so its write's memory grows with the partitions (event dates) it spans; iotgen's own
#: writer (local tables, :class:`DataFiles`) holds at most PENDING_ROWS rows whatever the size (figures:
#: bench/results/notebook_memory.md and memory.md). Small files are merged later with compact_delta (OPTIMIZE).
TARGET_FILE_SIZE = 32 * 2**20
#: ``json_column`` as delta-rs is given it in variant mode: VARIANT with its metadata dictionary-encoded. The
#: generator's rows share one metadata (640 bytes a row for the default key pool); as a dictionary it is one value
#: and an int32 per row, which delta-rs splits by partition and Parquet encodes without hashing each row's copy
#: (a quarter of the write's CPU). The files and the table hold the same binary values (the column is VARIANT).
WRITE_VARIANT_TYPE = pa.struct([
    pa.field("metadata", pa.dictionary(pa.int32(), pa.binary()), nullable=False),
    pa.field("value", pa.binary(), nullable=False),
])


def _deltalake():
    import deltalake

    return deltalake


def table_uri(target: str | os.PathLike) -> str:
    """A local path as an absolute path (folders are created on write); URIs (``abfss://``, ``s3://``) as given."""
    text = os.fspath(target)
    if not text.strip():
        raise InputError("the Delta table path must not be empty")
    return text if "://" in text else str(Path(text).expanduser().absolute())


def write_schema(layout: str, json_column_mode: str) -> pa.Schema:
    """The Arrow schema of the batches given to delta-rs: the layout, ``json_column`` encoded for the mode,
    plus ``event_date`` for event layouts."""
    schema = LAYOUTS[layout]
    fields = [pa.field(f.name, WRITE_VARIANT_TYPE, f.nullable)
              if f.name == "json_column" and json_column_mode == "variant" else f for f in schema]
    if "timestamp" in schema.names:
        fields.append(pa.field(PARTITION_COLUMN, pa.date32(), nullable=False))
    return pa.schema(fields)


def delta_schema(layout: str, json_column_mode: str):
    """The Delta schema of a new table (``json_column`` as ``VARIANT`` in variant mode)."""
    dl = _deltalake()
    from deltalake.schema import Field, VariantType

    arrow = write_schema(layout, "string")
    fields = []
    for f in arrow:
        if f.name == "json_column" and json_column_mode == "variant":
            fields.append(Field(f.name, VariantType(), nullable=f.nullable))
        else:
            fields.append(Field.from_arrow(f))
    return dl.Schema(fields)


def prepare_batch(batch: pa.RecordBatch, layout: str, json_column_mode: str) -> pa.RecordBatch:
    """A batch of ``layout`` data as delta-rs is given it: ``json_column`` variant-encoded in variant mode
    (unless it already is a :data:`VARIANT_TYPE` struct) and ``event_date`` (re)computed from ``timestamp``."""
    target = write_schema(layout, json_column_mode)
    if batch.schema.equals(target):
        return batch
    if PARTITION_COLUMN in batch.schema.names:
        batch = batch.drop_columns([PARTITION_COLUMN])
    schema = LAYOUTS[layout]
    encoded = "json_column" in schema.names and batch.schema.field("json_column").type.equals(VARIANT_TYPE)
    if encoded:
        if json_column_mode != "variant":
            raise InputError("json_column is VARIANT-encoded but JSON_COLUMN_MODE is 'string'")
        index = schema.get_field_index("json_column")
        schema = schema.set(index, schema.field(index).with_type(VARIANT_TYPE))
    batch = conform(batch, schema)
    columns = list(batch.columns)
    names = batch.schema.names
    if "json_column" in names and json_column_mode == "variant":
        i = names.index("json_column")
        columns[i] = _metadata_dictionary(columns[i] if encoded else json_or_text_to_variant(columns[i]))
    if "timestamp" in names:
        columns.append(event_date(batch.column(names.index("timestamp"))))
    return pa.RecordBatch.from_arrays(columns, schema=target)


def _metadata_dictionary(variant: pa.StructArray) -> pa.StructArray:
    """A :data:`VARIANT_TYPE` column as :data:`WRITE_VARIANT_TYPE` (the same values, nulls kept)."""
    shared = shared_metadata(variant)
    metadata = variant.field(0)
    if shared is not None:  # one value for every row: no hashing
        metadata = pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(variant), dtype=np.int32)),
                                                  pa.array([shared], pa.binary()))
    else:
        metadata = pc.dictionary_encode(metadata)
    return pa.StructArray.from_arrays([metadata, variant.field(1)], fields=list(WRITE_VARIANT_TYPE),
                                      mask=variant.is_null() if variant.null_count else None)


def open_delta_table(target, storage_options: dict[str, str] | None = None):
    """The Delta table at ``target`` (a path, URI or DeltaTable), or None if there is none yet; a
    ``ValueError`` when the path is a file or a non-empty folder that is not a Delta table."""
    dl = _deltalake()
    if isinstance(target, dl.DeltaTable):
        return target
    uri = table_uri(target)
    if "://" not in uri and Path(uri).exists() and not Path(uri).is_dir():
        raise InputError(f"Delta table path {uri!r} is a file, not a folder")
    if dl.DeltaTable.is_deltatable(uri, storage_options):
        return dl.DeltaTable(uri, storage_options=storage_options)
    if "://" not in uri:
        path = Path(uri)
        if path.is_dir() and any(not p.name.startswith(".") for p in path.iterdir()):
            raise InputError(f"Delta table path {uri!r} is a non-empty folder that is not a Delta table; "
                             "choose a new or empty folder")
    return None


def table_layout(table) -> tuple[str, str]:
    """(layout, json_column_mode) of an existing iotgen Delta table; ``ValueError`` if it is not one."""
    from deltalake.schema import VariantType

    fields = {f.name: f for f in table.schema().fields}
    names = [n for n in fields if n != PARTITION_COLUMN]
    try:
        layout = layout_of(names)
    except ValueError as exc:
        raise InputError(f"Delta table {table.table_uri} does not have an iotgen layout: {exc}") from None
    mode = "variant" if "json_column" in fields and isinstance(fields["json_column"].type, VariantType) else "string"
    return layout, mode


def _create(uri: str, layout: str, json_column_mode: str, storage_options):
    dl = _deltalake()
    partition_by = [PARTITION_COLUMN] if "timestamp" in LAYOUTS[layout].names else None
    if "://" not in uri:
        Path(uri).mkdir(parents=True, exist_ok=True)
    return dl.DeltaTable.create(uri, delta_schema(layout, json_column_mode), mode="ignore",
                                partition_by=partition_by, storage_options=storage_options)


def delta_table(target, layout: str = "events", json_column_mode: str = "variant",
                storage_options: dict[str, str] | None = None):
    """The Delta table at ``target``, created (empty) with ``layout`` if there is none; ``ValueError`` when an
    existing table has another layout or ``json_column`` mode."""
    mode = check_json_column_mode(json_column_mode)
    table = open_delta_table(target, storage_options)
    if table is None:
        table = _create(table_uri(target), layout, mode, storage_options)
    existing_layout, existing_mode = table_layout(table)
    if existing_layout != layout:
        raise InputError(f"Delta table {table.table_uri} holds {existing_layout} rows, not {layout} rows")
    if "json_column" in LAYOUTS[layout].names and existing_mode != mode:
        raise InputError(f"JSON_COLUMN_MODE is {mode!r} but Delta table {table.table_uri} stores json_column as "
                         f"{'VARIANT' if existing_mode == 'variant' else 'STRING'}: use {existing_mode!r}")
    return table


def write_delta(
    target,
    data,
    *,
    json_column_mode: str = "variant",
    idempotency_key: tuple[str, int] | None = None,
    app_transactions: Mapping[str, int] | None = None,
    storage_options: dict[str, str] | None = None,
    target_file_size: int = TARGET_FILE_SIZE,
    pending_rows: int | None = None,
) -> TableCommit:
    """Append ``data`` (Table, RecordBatch, RecordBatchReader or iterable of batches) to the Delta table at
    ``target`` (path, URI or DeltaTable) in one commit, creating the table if needed. See the module docs for
    ``idempotency_key`` and ``app_transactions``; everything is checked before anything is written. Data files
    are cut at ``target_file_size`` bytes. A local table's files are written by iotgen (:class:`DataFiles`: at most
    ``pending_rows``, default :data:`PENDING_ROWS`, wait to be written, which bounds a long write's memory) and
    committed by delta-rs; a remote table (``abfss://``, ``s3://``) is written by delta-rs, whose buffers grow with
    the partitions open and ``target_file_size`` (:data:`TARGET_FILE_SIZE`)."""
    dl = _deltalake()
    from deltalake import CommitProperties, Transaction

    mode = check_json_column_mode(json_column_mode)
    txns = check_app_transactions(idempotency_key, app_transactions)
    schema, batches = record_batches(data)
    layout = layout_of([n for n in schema.names if n != PARTITION_COLUMN])
    table = delta_table(target, layout, mode, storage_options)
    if already_recorded(delta_app_versions(table, [idempotency_key[0]]) if idempotency_key else {},
                        idempotency_key):
        return TableCommit(table.table_uri, None, 0, skipped=True)
    first = [prepare_batch(b, layout, mode) for b in itertools.islice(batches, 1)]  # bad data fails here, early
    prepared = itertools.chain(first, (prepare_batch(b, layout, mode) for b in batches))
    properties = CommitProperties(
        app_transactions=[Transaction(app_id, version) for app_id, version in txns.items()] or None,
        custom_metadata={COMMIT_INFO_KEY: json.dumps(txns, sort_keys=True)} if txns else None)
    local = "://" not in table_uri(target) if not isinstance(target, dl.DeltaTable) else \
        table.table_uri.startswith("file://")
    try:
        if local:
            rows = _write_and_commit(table, layout, mode, prepared, txns, target_file_size,
                                     PENDING_ROWS if pending_rows is None else pending_rows)
        else:
            counter = _RowCounter()
            dl.write_deltalake(table, pa.RecordBatchReader.from_batches(write_schema(layout, mode),
                                                                        counter.count(prepared)),
                               mode="append", commit_properties=properties, target_file_size=target_file_size,
                               writer_properties=_writer_properties(layout, mode))
            rows = counter.rows
    except dl.exceptions.CommitFailedError as exc:
        table.update_incremental()
        if already_recorded(delta_app_versions(table, [idempotency_key[0]]) if idempotency_key else {},
                            idempotency_key):
            return TableCommit(table.table_uri, None, 0, skipped=True)
        raise CommitConflict(f"Delta table {table.table_uri}: {exc}") from None
    except dl.exceptions.DeltaError as exc:  # a later batch of a stream failed its checks: nothing committed
        message = str(exc)
        if "ValueError: " in message:
            raise InputError(message.rsplit("ValueError: ", 1)[1].strip()) from None
        raise
    table.update_incremental()
    return TableCommit(table.table_uri, table.version(), rows)


def _writer_properties(layout: str, mode: str):
    """delta-rs' Parquet settings for a write through ``write_deltalake`` (remote tables)."""
    dl = _deltalake()
    return dl.WriterProperties(
        default_column_properties=dl.ColumnProperties(statistics_enabled="NONE"),
        column_properties={name: dl.ColumnProperties(statistics_enabled="PAGE")
                           for name in write_schema(layout, mode).names if name != UNINDEXED_COLUMN})


def _write_and_commit(table, layout: str, mode: str, batches: Iterable[pa.RecordBatch], txns: Mapping[str, int],
                      target_file_size: int, pending_rows: int) -> int:
    """Write ``batches`` as Parquet data files under a local table's folder (:class:`DataFiles`) and commit them
    with delta-rs in one transaction with the app transactions; the files are removed if anything fails."""
    from deltalake import CommitProperties, Transaction

    root = Path(_local_path(table.table_uri))
    partitioned = "timestamp" in LAYOUTS[layout].names
    files = DataFiles(root, write_schema(layout, mode), partitioned, target_file_size, pending_rows)
    try:
        for batch in batches:
            files.add(batch)
        actions = files.close()
        metadata = {COMMIT_INFO_KEY: json.dumps(dict(txns), sort_keys=True)} if txns else {}
        metadata[ROWS_KEY] = str(files.rows)
        metadata[FILES_KEY] = str(len(actions))
        properties = CommitProperties(
            app_transactions=[Transaction(app_id, version) for app_id, version in txns.items()] or None,
            custom_metadata=metadata)
        table.create_write_transaction(actions, mode="append", schema=table.schema(),
                                       partition_by=[PARTITION_COLUMN] if partitioned else None,
                                       commit_properties=properties)
    except BaseException:
        files.discard()
        raise
    return files.rows


def _local_path(uri: str) -> str:
    from urllib.parse import unquote, urlparse

    return unquote(urlparse(uri).path) if uri.startswith("file://") else uri


#: Rows waiting over all open partitions before every partition's rows are written out as a row group: a long
#: write's memory is bounded by this, not by the partitions it spans or their file size (bench/results/memory.md).
PENDING_ROWS = 131_072
#: Compression of the data files iotgen writes itself: none, as delta-rs wrote them (the same size). Snappy halves
#: the files (200,000 events: 101 -> 47 MB as text, 66 -> 46 MB as VARIANT) for about half again the write's CPU;
#: compact_delta (OPTIMIZE) rewrites them with delta-rs' settings anyway.
COMPRESSION = "none"


class DataFiles(TableFiles):
    """The Parquet data files of one Delta write (:class:`~iotgen.outputs.table_files.TableFiles`), split by
    ``event_date`` into Hive-style folders; :meth:`close` returns the delta-rs add actions, with per-file statistics
    read back from the Parquet footers, as delta-rs would write them. (A null date would go to Hive's default
    partition, but ``event_date`` is not nullable: the commit refuses it, as delta-rs' own writer did.)"""

    def __init__(self, root: Path, schema: pa.Schema, partitioned: bool, target_file_size: int,
                 pending_rows: int = PENDING_ROWS) -> None:
        self.root = root
        self.partitioned = partitioned
        schema = schema.remove(schema.get_field_index(PARTITION_COLUMN)) if partitioned else schema
        super().__init__(schema, target_file_size, pending_rows, compression=COMPRESSION,
                         statistics=[f.name for f in schema if f.name != UNINDEXED_COLUMN])

    def add(self, batch: pa.RecordBatch, partitions: pa.Array | None = None) -> None:
        """A :func:`prepare_batch` batch (its ``event_date`` says the partition)."""
        if self.partitioned:
            batch, partitions = batch.drop_columns([PARTITION_COLUMN]), batch.column(PARTITION_COLUMN)
        super().add(batch, partitions)

    def _create(self, partition, number: int) -> tuple[str, Any]:
        value = HIVE_DEFAULT_PARTITION if partition is None else str(partition)
        folder = self.root / f"{PARTITION_COLUMN}={value}" if self.partitioned else self.root
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"part-{number:05d}-{uuid.uuid4()}-c000.{COMPRESSION}.parquet"
        return str(path), open(path, "wb")

    def _finished(self, partition, location: str, size: int, metadata) -> Any:
        from deltalake.transaction import AddAction

        path = Path(location)
        return AddAction(
            path.relative_to(self.root).as_posix(), size,
            {PARTITION_COLUMN: None if partition is None else str(partition)} if self.partitioned else {},
            int(path.stat().st_mtime * 1000), True, json.dumps(file_statistics(metadata)))

    def _delete(self, location: str) -> None:
        Path(location).unlink(missing_ok=True)

    def discard(self) -> None:
        super().discard()
        for folder in {Path(location).parent for location in self._written} - {self.root}:
            try:
                folder.rmdir()  # a partition folder this write made, if nothing else is in it
            except OSError:
                pass


def file_statistics(metadata) -> dict[str, Any]:
    """Delta file statistics (``numRecords``, ``minValues``, ``maxValues``, ``nullCount``) of a Parquet file's
    top-level columns, from the column chunk statistics in its footer; timestamps to the millisecond, the
    minimum rounded down and the maximum up (so they still bound the values)."""
    low: dict[str, Any] = {}
    high: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    skip: set[str] = set()
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        for c in range(group.num_columns):
            column = group.column(c)
            name = column.path_in_schema
            stats = column.statistics
            if "." in name or name in skip:
                continue
            if stats is None or not stats.has_null_count:
                skip.add(name)
                continue
            nulls[name] = nulls.get(name, 0) + stats.null_count
            if stats.has_min_max:
                low[name] = stats.min if name not in low else min(low[name], stats.min)
                high[name] = stats.max if name not in high else max(high[name], stats.max)
    for name in skip:
        nulls.pop(name, None)
        low.pop(name, None)
        high.pop(name, None)
    return {"numRecords": metadata.num_rows,
            "minValues": {k: _stat_value(v, up=False) for k, v in low.items()},
            "maxValues": {k: _stat_value(v, up=True) for k, v in high.items()},
            "nullCount": nulls}


def _stat_value(value: Any, up: bool) -> Any:
    if isinstance(value, dt.datetime):
        if up and value.microsecond % 1000:
            value += dt.timedelta(microseconds=1000 - value.microsecond % 1000)
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


class _RowCounter:
    def __init__(self) -> None:
        self.rows = 0

    def count(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            self.rows += batch.num_rows
            yield batch


def delta_app_versions(target, app_ids: Iterable[str], storage_options: dict[str, str] | None = None
                       ) -> dict[str, int | None]:
    """The version each app id is recorded at in the table (None if never, or if there is no table)."""
    table = open_delta_table(target, storage_options)
    return {app_id: (None if table is None else table.transaction_version(app_id)) for app_id in app_ids}


def _count(value: Any) -> int | None:
    return int(value) if value is not None else None


def delta_history(target, limit: int | None = None, storage_options: dict[str, str] | None = None
                  ) -> list[dict[str, Any]]:
    """The table's commits, newest first: version, UTC time, operation, rows added, app transactions."""
    table = open_delta_table(target, storage_options)
    if table is None:
        raise InputError(f"there is no Delta table at {os.fspath(target)!r}")
    out = []
    for commit in table.history(limit):
        metrics = commit.get("operationMetrics") or {}
        rows = metrics.get("num_added_rows", commit.get(ROWS_KEY))
        txns = commit.get(COMMIT_INFO_KEY)
        out.append({
            "version": commit.get("version"),
            "timestamp": dt.datetime.fromtimestamp(commit["timestamp"] / 1000, dt.timezone.utc),
            "operation": commit.get("operation"),
            "rows_added": _count(rows),
            "files_added": _count(metrics.get("num_added_files", commit.get(FILES_KEY))),
            "app_transactions": json.loads(txns) if isinstance(txns, str) else (txns or {}),
        })
    return out


def compact_delta(target, *, target_size: int | None = None, storage_options: dict[str, str] | None = None
                  ) -> dict[str, Any]:
    """Bin-pack small files into larger ones (delta-rs OPTIMIZE compact); returns delta-rs' metrics. App
    transactions are kept, so an ingest resumes from the same offsets afterwards."""
    table = open_delta_table(target, storage_options)
    if table is None:
        raise InputError(f"there is no Delta table at {os.fspath(target)!r}")
    return table.optimize.compact(target_size=target_size)


def vacuum_delta(target, *, retention_hours: int = 168, dry_run: bool = True,
                 storage_options: dict[str, str] | None = None) -> list[str]:
    """Delete files no longer referenced by the table and older than ``retention_hours`` (also files left by
    a killed writer); with ``dry_run`` only list them. Less than 168 hours needs ``retention_hours=0`` explicitly
    and is only safe when no reader or writer is running."""
    if isinstance(retention_hours, bool) or not isinstance(retention_hours, int) or retention_hours < 0:
        raise InputError(f"retention_hours must be an integer >= 0, got {retention_hours!r}")
    table = open_delta_table(target, storage_options)
    if table is None:
        raise InputError(f"there is no Delta table at {os.fspath(target)!r}")
    return table.vacuum(retention_hours=retention_hours, dry_run=dry_run,
                        enforce_retention_duration=retention_hours >= 168)
