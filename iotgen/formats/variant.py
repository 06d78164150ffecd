"""JSON -> the Parquet VARIANT encoding, vectorised (for Delta's ``VARIANT`` column type).

A Parquet variant value is ``struct<metadata: binary not null, value: binary not null>``: ``metadata`` holds
the dictionary of object keys and ``value`` the self-describing binary value that refers to it (see
https://github.com/apache/parquet-format/blob/master/VariantEncoding.md). DuckDB's
``variant_to_parquet_variant(json::VARIANT)`` encodes a whole column in C++; integers become int64, other
numbers double, so a value's JSON reads back equal to the original. JSON out of the bounds of
:mod:`iotgen.formats.json_bounds` (an integer beyond int64, a number beyond a double, nesting over 64 levels) is
refused rather than changed. DuckDB 1.5 writes a string of exactly 64 bytes as an empty one (its short-string
header has 6 bits for the length): the rows that hold one are found with one regex pass and encoded again by
:func:`iotgen.base.variant_encoding.encode_json` (:func:`_fix_64_byte_strings`).
:func:`try_json_to_variant` encodes JSON text; :func:`try_field_to_variant` encodes one field of JSON object
texts (an event body's ``json_column``) without cutting it out as text first. The tests decode the results
with PySpark's independent pure-Python decoder (``pyspark.sql.types.VariantVal``) and read tables back in
DuckDB.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..base.variant_encoding import VARIANT_TYPE, encode_json, metadata, string_value
from .duckdb_local import connection, select_over
from .json_bounds import bound_broken, out_of_bounds


def json_to_variant(text: pa.Array | pa.ChunkedArray, name: str = "json_column") -> pa.Array:
    """The Parquet variant encoding of each JSON text value (null stays null); ``ValueError`` naming ``name``
    and the first row that is not valid JSON or cannot be encoded (an integer beyond the int64 range)."""
    encoded, failed = try_json_to_variant(text, name)
    if failed:
        row = failed[0]
        raise ValueError(f"{name} row {row} cannot be stored as VARIANT ({len(failed)} such rows): "
                         f"{variant_error(text[row].as_py())}")
    return encoded


def json_or_text_to_variant(text: pa.Array | pa.ChunkedArray, name: str = "json_column") -> pa.Array:
    """Like :func:`json_to_variant`, but a value that cannot be a VARIANT (not JSON, out of bounds) is kept as a
    VARIANT *string* holding its text, as a JSON file holds it (``"json_column": "<the text>"``): what the
    batch writer does with the malformed-JSON scenario's values, so that no generated event stops a write."""
    encoded, failed = try_json_to_variant(text, name)
    if not failed:
        return encoded
    text = _string_array(text, name)
    kept = text.take(pa.array(failed, pa.int64()))
    strings = _encode(kept, "variant_to_parquet_variant(j::VARIANT)")
    exact = np.flatnonzero(np.asarray(pc.fill_null(pc.equal(pc.binary_length(kept), 64), False)))
    if len(exact):  # DuckDB's 64-byte string (module docstring)
        fixed = [string_value(kept[int(i)].as_py()) for i in exact]
        strings = _replace_rows(strings, exact, [metadata(()) for _ in exact], fixed)
    replaced = np.zeros(len(text), dtype=bool)
    replaced[failed] = True
    mask = pa.array(replaced)
    fields = [pc.replace_with_mask(encoded.field(i).fill_null(b""), mask, strings.field(i)) for i in range(2)]
    return pa.StructArray.from_arrays(fields, fields=list(VARIANT_TYPE),
                                      mask=text.is_null() if text.null_count else None)


def try_json_to_variant(text: pa.Array | pa.ChunkedArray, name: str = "json_column") -> tuple[pa.Array, list[int]]:
    """Like :func:`json_to_variant`, but rows that cannot be encoded come back null and their indices are
    returned (so a caller can quarantine them instead of failing the batch)."""
    text = _string_array(text, name)
    broken = out_of_bounds(text)
    if broken:
        keep = pc.invert(pa.array([i in broken for i in range(len(text))]))
        text = pc.if_else(keep, text, pa.scalar(None, text.type))  # encoded as null, reported as failed
    encoded = _encode(text, "CASE WHEN json_valid(j) THEN TRY(variant_to_parquet_variant(j::JSON::VARIANT)) END")
    encoded = _fix_64_byte_strings(encoded, text, None)
    values, failed = _variant_array(encoded, text.is_valid())
    return values, sorted(set(failed).union(broken))


def try_field_to_variant(objects: pa.Array | pa.ChunkedArray, field: str, use_threads: bool = True
                         ) -> tuple[pa.Array, list[int]]:
    """The Parquet variant encoding of ``field`` of each JSON object text (one C++ pass: the field is not cut
    out as text first). A missing field is encoded as a variant null, as JSON ``null`` is; rows that are not
    JSON or whose field cannot be encoded come back null, with their indices returned. Null texts stay null.
    ``use_threads=False``: DuckDB works on one core. The caller checks :func:`out_of_bounds` first (the
    ingest's decoder does, for whole bodies)."""
    objects = _string_array(objects, "the JSON objects")
    path = '$."' + field.replace('"', '\\"') + '"'
    encoded = _encode(objects, "TRY(variant_to_parquet_variant(json_extract(j, ?)::VARIANT))", [path], use_threads)
    return _variant_array(_fix_64_byte_strings(encoded, objects, field), objects.is_valid())


def variant_error(text: str) -> str:
    """Why one JSON text cannot be encoded (out of bounds, or DuckDB's message, first line)."""
    import duckdb

    broken = bound_broken(text)
    if broken is not None:
        return broken

    try:
        connection().execute("SELECT variant_to_parquet_variant(?::JSON::VARIANT)", [text]).fetchall()
    except duckdb.Error as exc:
        return str(exc).splitlines()[0]
    return "unknown error"


def _string_array(text: pa.Array | pa.ChunkedArray, name: str) -> pa.Array:
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        raise ValueError(f"{name} must be JSON text (a string column), got {text.type}")
    return text


def _encode(text: pa.Array, expression: str, params: list | None = None, use_threads: bool = True) -> pa.Array:
    if len(text) == 0:
        return pa.array([], pa.struct([pa.field("metadata", pa.binary()), pa.field("value", pa.binary())]))
    return select_over(text, expression, params, use_threads=use_threads)


def _variant_array(encoded: pa.Array, wanted: pa.Array) -> tuple[pa.Array, list[int]]:
    """DuckDB's result as :data:`VARIANT_TYPE` (null where it is null) and the rows where ``wanted`` but null."""
    if len(encoded) == 0:
        return pa.array([], VARIANT_TYPE), []
    failed_mask = pc.and_(encoded.is_null(), wanted)
    failed = pc.indices_nonzero(failed_mask).to_pylist() if pc.any(failed_mask).as_py() else []
    nulls = encoded.is_null() if encoded.null_count else None  # DuckDB encodes SQL NULL as a variant null: keep NULL
    if not pc.all(wanted).as_py():
        unwanted = pc.invert(wanted)
        nulls = pc.or_(nulls, unwanted) if nulls is not None else unwanted
    fields = [encoded.field(0).fill_null(b""), encoded.field(1).fill_null(b"")]
    return pa.StructArray.from_arrays(fields, fields=list(VARIANT_TYPE), mask=nulls), failed


#: a string token of exactly 64 bytes with no escape; in a text with escapes, a token of 64 or more pieces (a
#: byte, or a backslash and the character after it: each piece decodes to at most one byte, so a string of 64 bytes
#: has 64 pieces or more). On the bytes; a match may also span the text between two tokens: the rows found are
#: checked exactly.
_PLAIN_64 = r'"[^"\\]{64}"'
_ESCAPED_LONG = r'"(?:[^"\\]|\\.){64,}"'


def _fix_64_byte_strings(encoded: pa.Array, texts: pa.Array, field: str | None) -> pa.Array:
    """DuckDB's encoding, with the rows that hold a string of exactly 64 bytes (which DuckDB 1.5 writes as an
    empty string) encoded again in Python: the value of each JSON text, or its ``field``."""
    if len(texts) == 0 or len(encoded) == 0:
        return encoded
    raw = texts.cast(pa.binary())
    found = pc.match_substring_regex(raw, _PLAIN_64)
    if pc.any(pc.match_substring(raw, "\\")).as_py():
        found = pc.or_(found, pc.match_substring_regex(raw, _ESCAPED_LONG))
    candidates = np.flatnonzero(np.asarray(pc.fill_null(pc.and_(found, encoded.is_valid()), False)))
    rows, metadatas, values = [], [], []
    for i in candidates:
        value = json.loads(texts[int(i)].as_py())
        if field is not None:
            value = value.get(field) if isinstance(value, dict) else None
        if _has_64_byte_string(value):
            meta, encoded_value = encode_json(value)
            rows.append(int(i))
            metadatas.append(meta)
            values.append(encoded_value)
    return _replace_rows(encoded, np.array(rows, dtype=np.int64), metadatas, values) if rows else encoded


def _has_64_byte_string(value) -> bool:
    if isinstance(value, str):
        return len(value.encode("utf-8")) == 64
    if isinstance(value, dict):
        return any(_has_64_byte_string(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_64_byte_string(v) for v in value)
    return False


def _replace_rows(encoded: pa.Array, rows: np.ndarray, metadatas: list[bytes], values: list[bytes]) -> pa.Array:
    """``encoded`` (struct of metadata and value) with ``rows`` replaced by the given bytes (nulls kept)."""
    mask = np.zeros(len(encoded), dtype=bool)
    mask[rows] = True
    arrow_mask = pa.array(mask)
    fields = [pc.replace_with_mask(encoded.field(i).cast(pa.binary()), arrow_mask, pa.array(new, pa.binary()))
              for i, new in enumerate((metadatas, values))]
    return pa.StructArray.from_arrays(fields, names=[f.name for f in encoded.type],
                                      mask=encoded.is_null() if encoded.null_count else None)
