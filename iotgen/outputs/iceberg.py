"""Apache Iceberg tables through pyiceberg with an embedded SQLite catalog: no JVM, no catalog server.

* The catalog is a SQLite file (``SqlCatalog``) next to the warehouse folder that holds the tables' data and
  metadata, both under one folder by default (``<warehouse>/catalog.db``).
* Tables are Iceberg format version 2; event tables are partitioned by ``day(timestamp)`` (needs the
  ``pyiceberg-core`` extra). ``json_column`` is JSON text: pyiceberg cannot write format v3 or the VARIANT
  type yet. When it can, a v3 table with a ``variant`` column is a new table layout here; readers that use
  ``json_column`` through JSON functions keep working after an upgrade via ``parse_json`` in the engine.
* Every write is one snapshot. ``idempotency_key=(app_id, version)`` and ``app_transactions`` are recorded
  in that snapshot's summary as ``iotgen.txn.<app_id> = <version>``; the version an app id is at is the one
  in the newest snapshot of the current lineage that has it. Tables set ``commit.retry.num-retries=0``, so a
  writer that loses a race fails (then :func:`write_iceberg` re-reads the table: skipped if the key is now
  recorded, else :class:`CommitConflict`) instead of pyiceberg re-applying the append on top of the winner's.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import re
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from ..base.errors import InputError
from .lakehouse import (
    LAYOUTS,
    CommitConflict,
    UNINDEXED_COLUMN,
    TableCommit,
    already_recorded,
    check_app_transactions,
    conform,
    event_date,
    layout_of,
    record_batches,
)
from .private_api import IcebergDataFile, iceberg_append_files, iceberg_append_tables, iceberg_files_supported
from .table_files import TableFiles

TXN_PREFIX = "iotgen.txn."
CATALOG_FILE = "catalog.db"
TABLE_PROPERTIES = {
    "format-version": "2",
    "commit.retry.num-retries": "0",
    "write.parquet.compression-codec": "zstd",
}
GROUP_ROWS = 262_144  # rows per pyiceberg append when iotgen cannot write the files itself (public API only)
#: Rows waiting over all open partitions before they are written out as row groups (as for Delta: a long
#: write's memory is bounded by this; bench/results/memory.md), and the size data files are cut at.
PENDING_ROWS = 131_072
TARGET_FILE_SIZE_PROPERTY = "write.target-file-size-bytes"
TARGET_FILE_SIZE = 512 * 2**20  # Iceberg's default for the property above
METRICS_PREFIX = "write.metadata.metrics.column."
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_identifier(identifier: str, parameter: str = "ICEBERG_TABLE_NAME") -> tuple[str, ...]:
    """``namespace.table`` (namespaces may nest: ``a.b.table``) as a tuple; ``ValueError`` naming
    ``parameter`` otherwise."""
    parts = tuple(identifier.split(".")) if isinstance(identifier, str) else ()
    if len(parts) < 2 or not all(_NAME.match(p) for p in parts):
        raise InputError(f"{parameter} must be NAMESPACE.TABLE (letters, digits, _; not starting with a digit), "
                         f"got {identifier!r}")
    return parts


def catalog_location(uri: str | None = None, warehouse: str | os.PathLike | None = None) -> tuple[str, str]:
    """(SQLAlchemy URI, warehouse folder) of a catalog: ``uri`` may be ``sqlite:///path/catalog.db``, another
    SQLAlchemy URI (then ``warehouse`` is required) or a folder (its ``catalog.db``); without ``uri`` the
    catalog is ``<warehouse>/catalog.db``."""
    if uri:
        if not isinstance(uri, str):
            raise InputError(f"ICEBERG_CATALOG_URI must be a string, got {uri!r}")
        if uri.startswith("sqlite:///"):
            db = Path(uri[len("sqlite:///"):]).expanduser().absolute()
            if db.is_dir():
                raise InputError(f"ICEBERG_CATALOG_URI {uri!r} names a folder; use sqlite:///FOLDER/{CATALOG_FILE}")
            return f"sqlite:///{db}", str(Path(warehouse).absolute() if warehouse else db.parent)
        if "://" in uri:
            if warehouse is None:
                raise InputError(f"ICEBERG_CATALOG_URI {uri!r} is not a sqlite:/// file: also give a warehouse folder")
            return uri, str(Path(warehouse).absolute())
        folder = Path(uri).expanduser().absolute()
        return f"sqlite:///{folder / CATALOG_FILE}", str(Path(warehouse).absolute() if warehouse else folder)
    if warehouse is None:
        raise InputError("an Iceberg catalog needs ICEBERG_CATALOG_URI or a warehouse folder")
    folder = Path(warehouse).expanduser().absolute()
    return f"sqlite:///{folder / CATALOG_FILE}", str(folder)


def open_catalog(uri: str | None = None, warehouse: str | os.PathLike | None = None, name: str = "iotgen"):
    """A pyiceberg ``SqlCatalog`` (see :func:`catalog_location`); folders are created as needed."""
    from pyiceberg.catalog.sql import SqlCatalog

    sql_uri, folder = catalog_location(uri, warehouse)
    if sql_uri.startswith("sqlite:///"):
        db = Path(sql_uri[len("sqlite:///"):])
        if db.exists() and not db.is_file():
            raise InputError(f"Iceberg catalog {db} exists and is not a file")
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"Iceberg catalog folder {db.parent} cannot be created: {exc.strerror}") from None
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"Iceberg warehouse {folder} cannot be created: {exc.strerror}") from None
    return SqlCatalog(name, uri=sql_uri, warehouse=Path(folder).as_uri())


def iceberg_schema(layout: str):
    """The Iceberg schema of a layout (field ids 1..n in column order; non-null columns are required)."""
    from pyiceberg.schema import Schema
    from pyiceberg.types import (
        BinaryType,
        BooleanType,
        DoubleType,
        IntegerType,
        LongType,
        NestedField,
        StringType,
        TimestamptzType,
    )

    types = {pa.string(): StringType(), pa.float64(): DoubleType(), pa.int32(): IntegerType(),
             pa.int64(): LongType(), pa.bool_(): BooleanType(), pa.binary(): BinaryType()}
    fields = []
    for i, f in enumerate(LAYOUTS[layout], 1):
        kind = TimestamptzType() if pa.types.is_timestamp(f.type) else types[f.type]
        fields.append(NestedField(i, f.name, kind, required=not f.nullable))
    return Schema(*fields)


def _partition_spec(layout: str):
    from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionField, PartitionSpec
    from pyiceberg.transforms import DayTransform

    names = LAYOUTS[layout].names
    if "timestamp" not in names:
        return UNPARTITIONED_PARTITION_SPEC
    return PartitionSpec(PartitionField(source_id=names.index("timestamp") + 1, field_id=1000,
                                        transform=DayTransform(), name="timestamp_day"))


def table_layout(table) -> str:
    """The layout of an existing iotgen Iceberg table; ``ValueError`` if it has another schema."""
    names = [f.name for f in table.schema().fields]
    try:
        return layout_of(names)
    except ValueError as exc:
        raise InputError(f"Iceberg table {'.'.join(table.name())} does not have an iotgen layout: {exc}") from None


def iceberg_table(catalog, identifier: str, layout: str | None = "events", *, create: bool = True):
    """The table (created with ``layout``, and its namespace, when missing); ``ValueError`` when it has
    another layout (``layout=None``: any iotgen layout, for reading)."""
    from pyiceberg.exceptions import NoSuchTableError, TableAlreadyExistsError

    parts = check_identifier(identifier)
    try:
        table = catalog.load_table(parts)
    except NoSuchTableError:
        if not create or layout is None:
            return None
        catalog.create_namespace_if_not_exists(parts[:-1])
        try:
            table = catalog.create_table(parts, iceberg_schema(layout), partition_spec=_partition_spec(layout),
                                         properties=TABLE_PROPERTIES)
        except TableAlreadyExistsError:  # created concurrently
            table = catalog.load_table(parts)
    existing = table_layout(table)
    if layout is not None and existing != layout:
        raise InputError(f"Iceberg table {identifier} holds {existing} rows, not {layout} rows")
    return table


def write_iceberg(
    catalog,
    identifier: str,
    data,
    *,
    idempotency_key: tuple[str, int] | None = None,
    app_transactions: Mapping[str, int] | None = None,
    pending_rows: int | None = None,
    target_file_size: int | None = None,
) -> TableCommit:
    """Append ``data`` (Table, RecordBatch, RecordBatchReader or iterable of batches) to ``identifier`` in one
    snapshot, creating the namespace and table if needed. See the module docs for the app transactions. iotgen
    writes the data files itself (:class:`IcebergFiles`: at most ``pending_rows``, default :data:`PENDING_ROWS`,
    wait to be written, which bounds a long write's memory; files are cut at ``target_file_size`` bytes, default the
    table's ``write.target-file-size-bytes`` or 512 MiB); the files are removed if the write fails."""
    from pyiceberg.exceptions import CommitFailedException

    txns = check_app_transactions(idempotency_key, app_transactions)
    schema, batches = record_batches(data)
    layout = layout_of(schema.names)
    table = iceberg_table(catalog, identifier, layout)
    key_ids = [idempotency_key[0]] if idempotency_key else []
    if already_recorded(app_versions(table, key_ids), idempotency_key):
        return TableCommit(identifier, None, 0, skipped=True)
    arrow_schema = table.schema().as_arrow()  # with the field ids
    properties = {TXN_PREFIX + app_id: str(version) for app_id, version in txns.items()}
    conformed = (pa.RecordBatch.from_arrays(conform(b, LAYOUTS[layout]).columns, schema=arrow_schema)
                 for b in batches)
    files = None
    try:
        if iceberg_files_supported() and IcebergFiles.can_write(table):
            files = IcebergFiles(table, PENDING_ROWS if pending_rows is None else pending_rows, target_file_size)
            for batch in conformed:
                files.add(batch)
            data_files = files.close()
            with table.transaction() as tx:
                iceberg_append_files(tx, data_files, properties)
            rows = files.rows
        else:
            with table.transaction() as tx:
                rows = iceberg_append_tables(tx, _groups(conformed, arrow_schema), properties)
    except CommitFailedException as exc:
        if files is not None:
            files.discard()
        table = catalog.load_table(check_identifier(identifier))
        if already_recorded(app_versions(table, key_ids), idempotency_key):
            return TableCommit(identifier, None, 0, skipped=True)
        raise CommitConflict(f"Iceberg table {identifier}: {exc}") from None
    except BaseException:
        if files is not None:
            files.discard()
        raise
    table = catalog.load_table(check_identifier(identifier))
    return TableCommit(identifier, table.current_snapshot().snapshot_id, rows)


class IcebergFiles(TableFiles):
    """The Parquet data files of one Iceberg write (:class:`~iotgen.outputs.table_files.TableFiles`), written
    through the table's file IO where its location provider puts them (``data/timestamp_day=YYYY-MM-DD/`` for
    event tables), with the table's schema (field ids) and Parquet compression; :meth:`close` returns their data
    file records with pyiceberg's statistics. ``json_column`` gets no column statistics (metrics mode ``none``:
    no reader prunes files on JSON text, and they are a large share of a write's CPU)."""

    def __init__(self, table, pending_rows: int = PENDING_ROWS, target_file_size: int | None = None) -> None:
        self._io = table.io
        metadata = table.metadata
        self._spec = table.spec()
        self._iceberg_schema = table.schema()
        self._records = IcebergDataFile(metadata, {METRICS_PREFIX + UNINDEXED_COLUMN: "none"})
        self._write_id = uuid.uuid4()
        schema = self._iceberg_schema.as_arrow()
        level = metadata.properties.get("write.parquet.compression-level")
        if target_file_size is None:
            target_file_size = int(metadata.properties.get(TARGET_FILE_SIZE_PROPERTY, TARGET_FILE_SIZE))
        super().__init__(schema, target_file_size, pending_rows,
                         compression=metadata.properties.get("write.parquet.compression-codec", "zstd"),
                         compression_level=int(level) if level else None,
                         statistics=[f.name for f in schema if f.name != UNINDEXED_COLUMN])
        self._partitioned = not self._spec.is_unpartitioned()

    @staticmethod
    def can_write(table) -> bool:
        """Whether the table is partitioned as iotgen creates its tables (by ``day(timestamp)``, or not at all);
        another engine's table with another partition spec is written by pyiceberg's public append."""
        from pyiceberg.transforms import DayTransform

        spec = table.spec()
        if spec.is_unpartitioned():
            return True
        names = table.schema().column_names
        timestamp = table.schema().find_field("timestamp").field_id if "timestamp" in names else None
        return (len(spec.fields) == 1 and isinstance(spec.fields[0].transform, DayTransform)
                and spec.fields[0].source_id == timestamp)

    def add(self, batch: pa.RecordBatch, partitions: pa.Array | None = None) -> None:
        """Rows of the table's schema; event rows go to the partition of their timestamp's day."""
        if self._partitioned:
            partitions = pc.cast(event_date(batch.column("timestamp")), pa.int32())  # days since 1970-01-01
        super().add(batch, partitions)

    def _create(self, partition, number: int) -> tuple[str, Any]:
        from pyiceberg.typedef import Record

        name = f"{number:05d}-0-{self._write_id}.parquet"
        if self._partitioned:
            name = f"{self._spec.partition_to_path(Record(partition), self._iceberg_schema)}/{name}"
        location = self._records.location(name)
        return location, self._io.new_output(location).create(overwrite=False)

    def _finished(self, partition, location: str, size: int, metadata) -> Any:
        return self._records(location, (partition,) if self._partitioned else (), size, metadata)

    def _delete(self, location: str) -> None:
        try:
            self._io.delete(location)
        except FileNotFoundError:
            pass


def _groups(batches: Iterator[pa.RecordBatch], arrow_schema: pa.Schema) -> Iterator[pa.Table]:
    """Conformed batches gathered into tables of about :data:`GROUP_ROWS` rows (the public append's way)."""
    pending: list[pa.RecordBatch] = []
    size = 0
    for batch in batches:
        pending.append(batch)
        size += batch.num_rows
        if size >= GROUP_ROWS:
            yield pa.Table.from_batches(pending, schema=arrow_schema)
            pending, size = [], 0
    if pending and size:
        yield pa.Table.from_batches(pending, schema=arrow_schema)


def app_versions(table, app_ids: Iterable[str]) -> dict[str, int | None]:
    """The version each app id is at: from the newest snapshot of the current lineage that records it."""
    from pyiceberg.table.snapshots import ancestors_of

    wanted: dict[str, int | None] = {app_id: None for app_id in app_ids}
    missing = set(wanted)
    for snapshot in ancestors_of(table.current_snapshot(), table.metadata):
        if not missing:
            break
        summary = snapshot.summary.additional_properties if snapshot.summary else {}
        for app_id in list(missing):
            value = summary.get(TXN_PREFIX + app_id)
            if value is not None:
                wanted[app_id] = int(value)
                missing.discard(app_id)
    return wanted


def iceberg_app_versions(catalog, identifier: str, app_ids: Iterable[str]) -> dict[str, int | None]:
    """:func:`app_versions` of a table by name (all None when there is no such table)."""
    table = iceberg_table(catalog, identifier, None, create=False) if _exists(catalog, identifier) else None
    return {app_id: None for app_id in app_ids} if table is None else app_versions(table, app_ids)


def _exists(catalog, identifier: str) -> bool:
    return catalog.table_exists(check_identifier(identifier))


def iceberg_history(catalog, identifier: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The snapshots of the current lineage, newest first: id, UTC time, operation, rows added, app
    transactions."""
    from pyiceberg.table.snapshots import ancestors_of

    if not _exists(catalog, identifier):
        raise InputError(f"there is no Iceberg table {identifier}")
    table = catalog.load_table(check_identifier(identifier))
    out = []
    for snapshot in itertools.islice(ancestors_of(table.current_snapshot(), table.metadata), limit):
        summary = snapshot.summary.additional_properties if snapshot.summary else {}
        out.append({
            "snapshot_id": snapshot.snapshot_id,
            "timestamp": dt.datetime.fromtimestamp(snapshot.timestamp_ms / 1000, dt.timezone.utc),
            "operation": snapshot.summary.operation.value if snapshot.summary else None,
            "rows_added": int(summary.get("added-records", 0)),
            "files_added": int(summary.get("added-data-files", 0)),
            "app_transactions": {k[len(TXN_PREFIX):]: int(v) for k, v in sorted(summary.items())
                                 if k.startswith(TXN_PREFIX)},
        })
    return out
