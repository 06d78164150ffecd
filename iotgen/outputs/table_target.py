"""A lakehouse table as a target: where a Delta or Iceberg table is, written and read alike.

A :class:`TableTarget` names one table (``delta:PATH`` or ``iceberg:NAMESPACE.TABLE`` in a catalog) and hides
which writer (:mod:`~iotgen.outputs.delta`, :mod:`~iotgen.outputs.iceberg`) writes it, so the batch run
(``iotgen generate --format delta|iceberg``), the ingest, Spark's embedded writers and the notebooks treat both
formats alike; :func:`parse_target` reads ``delta:PATH`` / ``iceberg:NS.TABLE`` and :func:`config_target` the
Config's table settings.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa

from ..base.errors import InputError
from ..settings.config import TABLE_FORMATS, Config
from ..settings.databricks import check_location
from . import delta, iceberg
from .files import check_output_dir
from .lakehouse import TableCommit, check_json_column_mode

TARGET_HELP = "delta:PATH or iceberg:NAMESPACE.TABLE"


@dataclass(frozen=True)
class TableTarget:
    """One Delta table (``location`` = path or URI) or Iceberg table (``location`` = NAMESPACE.TABLE in the
    SQL catalog ``catalog_uri``, data under ``warehouse``)."""

    format: str
    location: str
    json_column_mode: str = "variant"
    catalog_uri: str | None = None
    warehouse: str | None = None
    named_by: str = field(default="the target", compare=False, repr=False)  # the parameter errors name
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.format not in TABLE_FORMATS:
            raise InputError(f"table format must be one of {', '.join(TABLE_FORMATS)}, got {self.format!r}")
        mode = check_json_column_mode(self.json_column_mode)
        if self.format == "iceberg":
            iceberg.check_identifier(self.location, "the Iceberg target")
            iceberg.catalog_location(self.catalog_uri, self.warehouse)  # validates
            mode = "string"  # Iceberg v2: JSON text
        elif not self.location.strip():
            raise InputError("the Delta target needs a path: delta:PATH")
        object.__setattr__(self, "json_column_mode", mode)

    def __str__(self) -> str:
        return f"{self.format}:{self.location}"

    def describe(self, commit: TableCommit | None = None) -> str:
        """``Delta table /abs/path (version 3)`` / ``Iceberg table ns.t in sqlite:///... (snapshot 123)``."""
        if self.format == "delta":
            where = f"Delta table {delta.table_uri(self.location)}"
        else:
            where = f"Iceberg table {self.location} in {iceberg.catalog_location(self.catalog_uri, self.warehouse)[0]}"
        if commit is None:
            return where
        if commit.skipped:
            return f"{where} (skipped: already recorded)"
        return f"{where} ({'version' if self.format == 'delta' else 'snapshot'} {commit.version})"

    # ---- the table ------------------------------------------------------------------------------------------
    def catalog(self):
        if "catalog" not in self._cache:
            self._cache["catalog"] = iceberg.open_catalog(self.catalog_uri, self.warehouse)
        return self._cache["catalog"]

    def check(self) -> None:
        """Raise ``ValueError`` naming the parameter now if the target cannot be written (a file, an unwritable or
        non-Delta folder), before any event is generated; only its (empty) folders may be created."""
        if self.format == "delta":
            uri = delta.table_uri(self.location)
            if "://" not in uri:
                check_output_dir(Path(uri).parent, self.named_by)
            table = delta.open_delta_table(self.location)
            if table is not None:
                self._cache["delta"] = table
        else:
            sql_uri, warehouse = iceberg.catalog_location(self.catalog_uri, self.warehouse)
            if sql_uri.startswith("sqlite:///"):
                check_output_dir(Path(sql_uri[len("sqlite:///"):]).parent, self.named_by)
            check_output_dir(warehouse, self.named_by)
            self.catalog()

    def exists(self) -> bool:
        if self.format == "delta":
            return delta.open_delta_table(self.location) is not None
        return self.catalog().table_exists(iceberg.check_identifier(self.location))

    def write(self, data, *, idempotency_key: tuple[str, int] | None = None,
              app_transactions: Mapping[str, int] | None = None) -> TableCommit:
        """Append ``data`` in one commit (see :func:`iotgen.outputs.delta.write_delta` and
        :func:`iotgen.outputs.iceberg.write_iceberg`)."""
        if self.format == "iceberg":
            return iceberg.write_iceberg(self.catalog(), self.location, data, idempotency_key=idempotency_key,
                                         app_transactions=app_transactions)
        table = self._cache.get("delta") or self.location
        try:
            return delta.write_delta(table, data, json_column_mode=self.json_column_mode,
                                     idempotency_key=idempotency_key, app_transactions=app_transactions)
        finally:
            self._remember_delta()

    def _remember_delta(self) -> None:
        if "delta" not in self._cache:
            opened = delta.open_delta_table(self.location)
            if opened is not None:
                self._cache["delta"] = opened

    def app_versions(self, app_ids: Iterable[str]) -> dict[str, int | None]:
        """The version each app id is recorded at (re-read from the table; None if never)."""
        if self.format == "iceberg":
            return iceberg.iceberg_app_versions(self.catalog(), self.location, app_ids)
        table = self._cache.get("delta")
        if table is not None:
            table.update_incremental()
        return delta.delta_app_versions(table or self.location, app_ids)

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits (Delta versions / Iceberg snapshots), newest first, with rows added and app transactions."""
        if self.format == "iceberg":
            return iceberg.iceberg_history(self.catalog(), self.location, limit)
        return delta.delta_history(self.location, limit)

    def read(self, columns: list[str] | None = None) -> pa.Table:
        """The whole table through its own library (delta-rs / pyiceberg scan); a Delta VARIANT ``json_column``
        comes back as its ``struct<metadata, value>`` encoding."""
        if self.format == "iceberg":
            table = self.catalog().load_table(iceberg.check_identifier(self.location))
            return table.scan(selected_fields=tuple(columns) if columns else ("*",)).to_arrow()
        opened = delta.open_delta_table(self.location)
        if opened is None:
            raise InputError(f"there is no Delta table at {self.location!r}")
        return opened.to_pyarrow_table(columns=columns)

    def query(self, sql: str, view: str = "events") -> pa.Table:
        """Run DuckDB ``sql`` over the table, visible as ``view`` with ``json_column`` as DuckDB JSON (so
        ``json_column->>'$.location.site'`` works for VARIANT and text alike). Needs DuckDB's delta / iceberg
        extensions: loaded from the ``duckdb-extension-*`` PyPI wheels when installed, else by name."""
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", view):
            raise InputError(f"view must be a plain SQL name, got {view!r}")
        con = duckdb_with_lakehouse_extensions()
        try:
            if self.format == "delta":
                scan = f"delta_scan('{_sql_text(delta.table_uri(self.location))}')"
            else:
                table = self.catalog().load_table(iceberg.check_identifier(self.location))
                scan = f"iceberg_scan('{_sql_text(table.metadata_location)}')"
            con.execute(f"CREATE VIEW {view} AS SELECT * REPLACE (json_column::JSON AS json_column) FROM {scan}"
                        if self._has_json_column() else f"CREATE VIEW {view} AS SELECT * FROM {scan}")
            return con.execute(sql).to_arrow_table()
        finally:
            con.close()

    def _has_json_column(self) -> bool:
        return not self.location.rstrip("/").endswith("_quarantine")

    def sibling(self, suffix: str) -> "TableTarget":
        """The table next to this one named with ``suffix`` (e.g. the ingest's ``_quarantine`` table)."""
        location = self.location.rstrip("/") + suffix
        return TableTarget(self.format, location, self.json_column_mode, self.catalog_uri, self.warehouse,
                           self.named_by)


def duckdb_with_lakehouse_extensions():
    """A DuckDB connection (UTC) with the json, avro, delta and iceberg extensions: from the
    ``duckdb-extension-*`` wheels when installed (offline), else installed/loaded by DuckDB by name."""
    import importlib

    import duckdb

    con = duckdb.connect()
    for name in ("json", "avro", "delta", "iceberg"):
        try:
            module = importlib.import_module(f"duckdb_extension_{name}")
            paths = sorted(Path(module.__file__).parent.glob(f"extensions/v*/{name}.duckdb_extension"))
            con.execute(f"LOAD '{_sql_text(str(paths[-1]))}'" if paths else f"LOAD {name}")
        except ImportError:
            con.execute(f"INSTALL {name}; LOAD {name}")
    con.execute("SET TimeZone = 'UTC'")
    return con


def _sql_text(text: str) -> str:
    return text.replace("'", "''")


def parse_target(text: str, *, catalog: str | None = None, output_dir: str = "output",
                 json_column_mode: str = "variant") -> TableTarget:
    """``delta:PATH`` or ``iceberg:NAMESPACE.TABLE`` (catalog ``catalog``, default ``OUTPUT_DIR/iceberg``)."""
    if not isinstance(text, str) or ":" not in text:
        raise InputError(f"--target must be {TARGET_HELP}, got {text!r}")
    kind, _, location = text.partition(":")
    kind = kind.strip().lower()
    if kind not in TABLE_FORMATS or not location.strip():
        raise InputError(f"--target must be {TARGET_HELP}, got {text!r}")
    if kind == "delta" and catalog:
        raise InputError("--catalog only applies to iceberg: targets")
    if kind == "iceberg":
        return TableTarget("iceberg", location.strip(), "string", catalog or None,
                           None if catalog else str(Path(output_dir) / "iceberg"),
                           named_by="--catalog" if catalog else "--output")
    return TableTarget("delta", location, json_column_mode, named_by="--target")


def config_target(config: Config, fmt: str | None = None) -> TableTarget:
    """The table a Config names: ``DELTA_TABLE_NAME`` (a path, or a name under ``OUTPUT_DIR``) or
    ``ICEBERG_TABLE_NAME`` in ``ICEBERG_CATALOG_URI`` (default ``OUTPUT_DIR/iceberg/catalog.db``)."""
    fmt = fmt or config.output_format
    if fmt == "delta":
        name = config.delta_table_name
        if not name.strip():
            raise InputError("DELTA_TABLE_NAME must not be empty")
        is_path = "://" in name or "/" in name or os.sep in name
        check_location("DELTA_TABLE_NAME" if is_path else "OUTPUT_DIR", name if is_path else config.output_dir,
                       "the Delta table")
        return TableTarget("delta", name if is_path else str(Path(config.output_dir) / name),
                           config.json_column_mode, named_by="DELTA_TABLE_NAME" if is_path else "OUTPUT_DIR")
    if fmt == "iceberg":
        iceberg.check_identifier(config.iceberg_table_name, "ICEBERG_TABLE_NAME")
        uri = config.iceberg_catalog_uri or None
        if uri is None:
            check_location("OUTPUT_DIR", config.output_dir, "the Iceberg warehouse")
        return TableTarget("iceberg", config.iceberg_table_name, "string", uri,
                           None if uri else str(Path(config.output_dir) / "iceberg"),
                           named_by="ICEBERG_CATALOG_URI" if uri else "OUTPUT_DIR")
    raise InputError(f"OUTPUT_FORMAT must be one of {', '.join(TABLE_FORMATS)} for a table, got {fmt!r}")
