"""JSON text -> the Parquet VARIANT encoding, vectorised (for Delta's ``VARIANT`` column type).

A Parquet variant value is ``struct<metadata: binary not null, value: binary not null>``: ``metadata`` holds
the dictionary of object keys and ``value`` the self-describing binary value that refers to it (see
https://github.com/apache/parquet-format/blob/master/VariantEncoding.md). DuckDB's
``variant_to_parquet_variant(text::JSON::VARIANT)`` encodes a whole column in C++; integers become int64,
other numbers double, so a value's JSON reads back equal to the original. The tests decode the result with
PySpark's independent pure-Python decoder (``pyspark.sql.types.VariantVal``) and read tables back in DuckDB.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

VARIANT_TYPE = pa.struct([
    pa.field("metadata", pa.binary(), nullable=False),
    pa.field("value", pa.binary(), nullable=False),
])


def json_to_variant(text: pa.Array | pa.ChunkedArray, name: str = "json_column") -> pa.Array:
    """The Parquet variant encoding of each JSON text value (null stays null); ``ValueError`` naming ``name``
    and the first row that is not valid JSON or cannot be encoded (an integer beyond the int64 range)."""
    encoded, failed = try_json_to_variant(text, name)
    if failed:
        row = failed[0]
        raise ValueError(f"{name} row {row} cannot be stored as VARIANT ({len(failed)} such rows): "
                         f"{variant_error(text[row].as_py())}")
    return encoded


def try_json_to_variant(text: pa.Array | pa.ChunkedArray, name: str = "json_column") -> tuple[pa.Array, list[int]]:
    """Like :func:`json_to_variant`, but rows that cannot be encoded come back null and their indices are
    returned (so a caller can quarantine them instead of failing the batch)."""
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        raise ValueError(f"{name} must be JSON text (a string column), got {text.type}")
    if len(text) == 0:
        return pa.array([], VARIANT_TYPE), []
    with _connect() as con:
        con.register("source", pa.table({"j": text}))
        result = con.execute(
            "SELECT CASE WHEN json_valid(j) THEN TRY(variant_to_parquet_variant(j::JSON::VARIANT)) END AS v "
            "FROM source"
        ).to_arrow_table()
    encoded = result.column(0).combine_chunks()
    if len(encoded) != len(text):  # guards the row order/count contract of the query
        raise AssertionError("variant encoding changed the number of rows")
    failed_mask = pc.and_(encoded.is_null(), text.is_valid())
    failed = pc.indices_nonzero(failed_mask).to_pylist() if pc.any(failed_mask).as_py() else []
    nulls = encoded.is_null() if encoded.null_count else None  # DuckDB encodes SQL NULL as a variant null: keep NULL
    if text.null_count:
        nulls = pc.or_(nulls, text.is_null()) if nulls is not None else text.is_null()
    fields = [encoded.field(0).fill_null(b""), encoded.field(1).fill_null(b"")]
    return pa.StructArray.from_arrays(fields, fields=list(VARIANT_TYPE), mask=nulls), failed


def variant_error(text: str) -> str:
    """Why one JSON text cannot be encoded (DuckDB's message, first line)."""
    import duckdb

    with _connect() as con:
        try:
            con.execute("SELECT variant_to_parquet_variant(?::JSON::VARIANT)", [text]).fetchall()
        except duckdb.Error as exc:
            return str(exc).splitlines()[0]
    return "unknown error"


def _connect():
    import duckdb

    return duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
