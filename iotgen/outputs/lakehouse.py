"""What the Delta Lake and Iceberg sinks share: the table layouts, the input checks and the commit result.

Three layouts are written:

* ``events``: the 24 columns of :data:`iotgen.settings.schema.ARROW_SCHEMA` (``json_column`` as JSON text);
* ``ingested``: the same plus ``_partition``, ``_sequence_number`` and ``_enqueued_time`` (from Event Hubs);
* ``quarantine``: events the ingest could not parse: their raw ``body``, the ``reason``, and where they came from.

Writers accept any Arrow data whose column names are exactly one layout's (in any order, any compatible type);
:func:`conform` checks and casts it, one ``ValueError`` naming the column when it cannot.

Exactly-once writes rest on *app transactions*: ``{app_id: version}`` pairs recorded in the same atomic commit
as the data (a Delta ``txn`` action, an Iceberg snapshot summary property). A writer that finds its key already
recorded at a version >= its own skips the write (:func:`already_recorded`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from ..base.errors import InputError
from ..base.values import parse_choice
from ..settings.schema import ARROW_SCHEMA, TIMESTAMP

JSON_COLUMN_MODES = ("variant", "string")
#: Parquet column statistics (min/max per page and file) are not written for ``json_column``: no reader skips
#: files on the range of JSON texts or VARIANT bytes, and computing them is a large share of a write's CPU
#: time (bench/results/lakehouse.md; the VARIANT metadata is 640 bytes a row for the default key pool); Iceberg
#: records no metrics for it. delta-rs takes column properties by top-level name only (``json_column.value`` is
#: not found), so its statistics are off by default and on (page level, Parquet's default) for every other column.
UNINDEXED_COLUMN = "json_column"

INGEST_FIELDS = (
    pa.field("_partition", pa.string(), nullable=False),
    pa.field("_sequence_number", pa.int64(), nullable=False),
    pa.field("_enqueued_time", TIMESTAMP, nullable=False),
)
# Event columns may hold nulls in tables (data-quality scenarios inject them); event_id never does.
EVENTS_SCHEMA = pa.schema([f.with_nullable(f.name != "event_id") for f in ARROW_SCHEMA])
INGESTED_SCHEMA = pa.schema(list(EVENTS_SCHEMA) + list(INGEST_FIELDS))
QUARANTINE_SCHEMA = pa.schema(list(INGEST_FIELDS) + [
    pa.field("reason", pa.string(), nullable=False),
    pa.field("body", pa.binary(), nullable=False),
])
LAYOUTS = {"events": EVENTS_SCHEMA, "ingested": INGESTED_SCHEMA, "quarantine": QUARANTINE_SCHEMA}


class CommitConflict(RuntimeError):
    """Another writer committed the same app transaction first and the table does not record ours: re-read the
    table's versions, drop what it already holds, and write again."""


@dataclass(frozen=True)
class TableCommit:
    """The result of one write: the table, the version (Delta) or snapshot id (Iceberg) it created, the rows
    appended, and whether it was skipped because the table already records the idempotency key."""

    table: str
    version: int | None
    rows: int
    skipped: bool = False


def layout_of(names: Iterable[str]) -> str:
    """The layout whose column names are exactly ``names``; else a ``ValueError`` listing what is expected."""
    given = set(names)
    for layout, schema in LAYOUTS.items():
        if given == set(schema.names):
            return layout
    events = set(EVENTS_SCHEMA.names)
    missing = sorted(events - given)
    extra = sorted(given - set(INGESTED_SCHEMA.names))
    details = "; ".join(part for part in (
        f"missing {', '.join(missing)}" if missing else "",
        f"unexpected {', '.join(extra)}" if extra else "") if part)
    raise InputError(
        "table data must have the 24 event columns of iotgen.settings.schema.ARROW_SCHEMA (optionally with "
        "_partition, _sequence_number, _enqueued_time), or the quarantine columns; "
        f"{details or 'got ' + str(sorted(given))}")


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with ``schema``'s columns, order and types; ``ValueError`` naming a column that is missing,
    extra, of an incompatible type, or null where the schema forbids nulls."""
    if set(batch.schema.names) != set(schema.names) or len(batch.schema.names) != len(schema.names):
        layout_of(batch.schema.names)  # raises with the difference spelled out
        raise InputError(f"table data columns {batch.schema.names} do not match the table's {schema.names}")
    columns = []
    for field in schema:
        column = batch.column(batch.schema.get_field_index(field.name))
        if not field.type.equals(column.type):
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise InputError(f"table column {field.name} must be {field.type}, got {column.type}: {exc}") from None
        if not field.nullable and column.null_count:
            raise InputError(f"table column {field.name} must not be null ({column.null_count} null values)")
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def record_batches(data) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The schema and the record batches of a Table, RecordBatch, RecordBatchReader or iterable of batches."""
    if isinstance(data, pa.RecordBatch):
        return data.schema, iter([data])
    if isinstance(data, pa.Table):
        return data.schema, iter(data.to_batches())
    if isinstance(data, pa.RecordBatchReader):
        return data.schema, iter(data)
    if hasattr(data, "__arrow_c_stream__"):
        reader = pa.RecordBatchReader.from_stream(data)
        return reader.schema, iter(reader)
    iterator = iter(data)
    try:
        first = next(iterator)
    except StopIteration:
        raise InputError("table data is an empty iterable: pass a pyarrow Table to write no rows") from None
    if isinstance(first, pa.Table):
        first = first.combine_chunks()
        batches = first.to_batches() or [pa.RecordBatch.from_pylist([], schema=first.schema)]
    elif isinstance(first, pa.RecordBatch):
        batches = [first]
    else:
        raise InputError(f"table data must be pyarrow Tables or RecordBatches, got {type(first).__name__}")

    def chained() -> Iterator[pa.RecordBatch]:
        yield from batches
        for item in iterator:
            yield from (item.to_batches() if isinstance(item, pa.Table) else [item])

    return batches[0].schema, chained()


def check_json_column_mode(mode: str) -> str:
    return parse_choice("JSON_COLUMN_MODE", mode, JSON_COLUMN_MODES)


def check_app_transactions(idempotency_key: tuple[str, int] | None,
                           app_transactions: Mapping[str, int] | None) -> dict[str, int]:
    """``{app_id: version}`` from an idempotency key and extra app transactions, checked."""
    txns: dict[str, int] = {}
    if idempotency_key is not None:
        if not (isinstance(idempotency_key, tuple) and len(idempotency_key) == 2):
            raise InputError(f"idempotency_key must be a tuple (app_id, version), got {idempotency_key!r}")
        txns[idempotency_key[0]] = idempotency_key[1]
    for app_id, version in (app_transactions or {}).items():
        if app_id in txns and txns[app_id] != version:
            raise InputError(f"app transaction {app_id!r} is given twice with different versions")
        txns[app_id] = version
    for app_id, version in txns.items():
        if not isinstance(app_id, str) or not app_id.strip():
            raise InputError(f"an app transaction id must be a non-empty string, got {app_id!r}")
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise InputError(f"app transaction {app_id!r} needs an integer version >= 0, got {version!r}")
    return txns


def already_recorded(recorded: Mapping[str, int | None], idempotency_key: tuple[str, int] | None) -> bool:
    """True when the table records the idempotency key's app id at a version >= the key's."""
    if idempotency_key is None:
        return False
    current = recorded.get(idempotency_key[0])
    return current is not None and current >= idempotency_key[1]


_MICROS_PER_DAY = 86_400_000_000


def event_date(timestamp: pa.Array) -> pa.Array:
    """The UTC date of each timestamp."""
    micros = pc.cast(timestamp.cast(pa.timestamp("us", tz="UTC")), pa.int64())
    days = pc.floor(pc.divide(pc.cast(micros, pa.float64()), float(_MICROS_PER_DAY)))
    return pc.cast(pc.cast(days, pa.int32()), pa.date32())
