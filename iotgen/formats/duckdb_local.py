"""The in-process DuckDB the sinks compute with (JSON extraction, VARIANT encoding): one connection per thread,
no extension autoloading or downloads (the ``json`` extension is built into the PyPI wheel).

A connection is kept per thread because the ingest encodes a micro-batch every few seconds, and opening a fresh
connection each time cost as much as encoding a small batch.
"""

from __future__ import annotations

import threading
from typing import Any, Sequence

import pyarrow as pa

_LOCAL = threading.local()
_SOURCE = "iotgen_source"


def connection():
    """This thread's DuckDB connection (created on first use)."""
    con = getattr(_LOCAL, "connection", None)
    if con is None:
        import duckdb

        con = _LOCAL.connection = duckdb.connect(
            config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    return con


def select_over(column: pa.Array, expression: str, params: Sequence[Any] | None = None, *,
                use_threads: bool = True) -> pa.Array:
    """DuckDB's ``expression`` over ``column`` (named ``j`` in it) for each row, in row order, as one array;
    ``use_threads=False`` runs it on one core."""
    con = connection()
    con.register(_SOURCE, pa.table({"j": column}))
    if not use_threads:
        con.execute("SET threads = 1")
    try:
        result = con.execute(f"SELECT {expression} AS v FROM {_SOURCE}", params).to_arrow_table()
    finally:
        con.unregister(_SOURCE)
        if not use_threads:
            con.execute("RESET threads")
    out = result.column(0).combine_chunks()
    if len(out) != len(column):  # guards the row order/count contract of the query
        raise AssertionError("the DuckDB query changed the number of rows")
    return out
