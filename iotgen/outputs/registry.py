"""The device registry's outputs: the snapshot, the change feed, the SCD2 history and the fault labels as files
(every event file format) and as Delta / Iceberg tables next to the events table.

The data is :mod:`iotgen.generation.devices`' (:func:`registry_datasets`); here it is only encoded and written.
Files go into a run's temporary folder, published with the events as a whole (nothing half-written under a
final name): ``devices``, ``device_changes``, ``_device_history`` (the ground truth of an as-of join) and, with
delivery faults, ``_device_change_labels``, each with the events' extension. Text formats write timestamps as
the events do (ISO 8601 UTC); a nested column (the ``debezium`` layout's ``before``, ``after``, ``source``) is a
JSON object in NDJSON/JSON and JSON text in a CSV cell. Tables are written one commit each, replacing the
previous run's (``mode=overwrite``): a table holds the registry of the latest run, not an accumulation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..base.errors import InputError
from ..base.times import iso_utc
from ..generation.devices import change_feed, registry_history, registry_of, registry_snapshot
from ..generation.generator import GeneratorSpec
from .files import EXTENSIONS, encode_chunk

#: The datasets a run writes, by name (file stem, table suffix): what each holds.
DATASETS = {
    "devices": "the registry snapshot after every change: one row per device present",
    "device_changes": "the change feed as delivered (layout CDC_LAYOUT, delivery faults applied)",
    "_device_history": "every version of every device with valid_from / valid_to (SCD type 2): the ground truth",
    "_device_change_labels": "the delivery faults of the change feed, one row per faulty change",
}


def registry_datasets(spec: GeneratorSpec, layout: str) -> dict[str, pa.Table]:
    """The registry's datasets of ``spec`` by name (labels only when delivery faults are configured)."""
    feed = change_feed(spec, layout)
    out = {"devices": registry_snapshot(spec), "device_changes": feed.changes,
           "_device_history": registry_history(spec)}
    registry = registry_of(spec)
    if registry is not None and registry.faults.enabled():
        out["_device_change_labels"] = feed.labels
    return out


def registry_enabled(spec: GeneratorSpec) -> bool:
    return registry_of(spec) is not None


# ---- files -------------------------------------------------------------------------------------------------------
def _nested_as_json(table: pa.Table) -> pa.Table:
    """``table`` with each struct column as JSON text (null stays null), timestamps inside as ISO 8601 UTC."""
    columns = []
    for column in table.columns:
        if pa.types.is_struct(column.type):
            values = [None if v is None else json.dumps(_jsonable(v), separators=(",", ":"))
                      for v in column.to_pylist()]
            column = pa.array(values, pa.string())
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if hasattr(value, "isoformat"):
        return iso_utc(value)
    return value


def encode_file(table: pa.Table, fmt: str) -> bytes:
    """A whole text file (``ndjson``, ``json``, ``csv``) of ``table``, encoded as the events are."""
    nested = [n for n, t in zip(table.column_names, table.schema.types) if pa.types.is_struct(t)]
    if nested and fmt in ("ndjson", "json"):
        flat = _nested_as_json(table)
        lines = []
        for row in flat.to_pylist():
            lines.append(json.dumps({k: (json.loads(v) if k in nested and v is not None else _jsonable(v))
                                     for k, v in row.items()}, separators=(",", ":")))
        if fmt == "ndjson":
            return "".join(line + "\n" for line in lines).encode()
        return ("[" + ",\n".join("\n" + line if i == 0 else line for i, line in enumerate(lines))
                + ("\n]\n" if lines else "]\n")).encode()
    if nested:
        table = _nested_as_json(table)
    if not table.num_rows:
        empty = pa.RecordBatch.from_arrays([pa.array([], f.type) for f in table.schema], schema=table.schema)
        return {"ndjson": b"", "json": b"[]\n", "csv": encode_chunk(empty, "csv", True)}[fmt]
    batch = table.combine_chunks().to_batches(max_chunksize=table.num_rows)[0]
    body = encode_chunk(batch, fmt, True)
    return b"[" + body + b"\n]\n" if fmt == "json" else body


def write_registry_files(folder: Path, spec: GeneratorSpec, fmt: str, layout: str) -> dict[str, Any]:
    """Write the registry's datasets into ``folder`` (a run's temporary folder) as ``fmt``; the manifest's
    ``registry.files`` section: per dataset its file and rows."""
    if fmt not in EXTENSIONS:
        raise InputError(f"OUTPUT_FORMAT must be one of {', '.join(EXTENSIONS)} for registry files, got {fmt!r}")
    files = {}
    for name, table in registry_datasets(spec, layout).items():
        path = Path(folder) / f"{name}{EXTENSIONS[fmt]}"
        if fmt == "parquet":
            pq.write_table(table, path, compression="zstd")
        else:
            path.write_bytes(encode_file(table, fmt))
        files[name] = {"path": path.name, "rows": table.num_rows}
    return files


# ---- tables -------------------------------------------------------------------------------------------------------
def write_registry_delta(location: str, table: pa.Table) -> int:
    """Replace the Delta table at ``location`` with ``table`` in one commit; its new version."""
    from deltalake import DeltaTable, write_deltalake

    from .delta import table_uri

    uri = table_uri(location)
    if "://" not in uri:
        Path(uri).mkdir(parents=True, exist_ok=True)
    write_deltalake(uri, table, mode="overwrite", schema_mode="overwrite")
    return DeltaTable(uri).version()


def write_registry_iceberg(catalog, identifier: str, table: pa.Table) -> int:
    """Replace the Iceberg table ``identifier`` (created if missing) with ``table`` in one snapshot; its id."""
    from pyiceberg.exceptions import NoSuchTableError

    from .iceberg import check_identifier

    parts = check_identifier(identifier)
    catalog.create_namespace_if_not_exists(parts[:-1])
    try:
        existing = catalog.load_table(parts)
        if existing.schema().as_arrow().names != table.schema.names:  # another layout: replaced
            catalog.drop_table(parts)
            raise NoSuchTableError(identifier)
    except NoSuchTableError:
        created = catalog.create_table(parts, schema=table.schema)
        created.append(table.cast(created.schema().as_arrow()))
    else:
        existing.overwrite(table.cast(existing.schema().as_arrow()))
    return catalog.load_table(parts).current_snapshot().snapshot_id

