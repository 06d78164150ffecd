"""Events as JSON text, vectorised: the body of an Event Hubs message and one line of an NDJSON file.

An event is one JSON object with the 23 fixed columns and ``json_column`` as a nested object. Timestamps are
ISO 8601 UTC with milliseconds (``2026-11-20T13:45:12.345Z``), nulls are ``null``. A ``json_column`` that is
not an object (for example a deliberately malformed payload) is written as a JSON string instead, so every
line stays valid JSON.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import jsontext

_NEEDS_ESCAPE = r'["\\\x00-\x1f\x7f]'


def _string_text(column: pa.Array) -> pa.Array:
    needs = pc.match_substring_regex(column, _NEEDS_ESCAPE)
    if pc.any(needs).as_py():
        return pa.array([None if v is None else json.dumps(v, ensure_ascii=False) for v in column.to_pylist()],
                        pa.string())
    return pc.binary_join_element_wise('"', column, '"', "")


def _number_text(column: pa.Array) -> pa.Array:
    if pa.types.is_floating(column.type):
        finite = pc.is_finite(column)
        column = pc.if_else(finite, column, pa.scalar(None, column.type))
    return pc.cast(column, pa.string())


def _timestamp_text(column: pa.Array) -> pa.Array:
    micros = pc.cast(column.cast(pa.timestamp("us", tz="UTC")), pa.int64())
    valid = pc.is_valid(micros)
    millis = np.asarray(pc.fill_null(micros, 0).to_numpy(zero_copy_only=False)) // 1000
    text = jsontext.timestamp_text(millis)
    return text if column.null_count == 0 else pc.if_else(valid, text, pa.scalar(None, pa.string()))


def _object_text(column: pa.Array) -> pa.Array:
    is_object = pc.and_(pc.starts_with(column, "{"), pc.ends_with(column, "}"))
    if pc.all(pc.fill_null(is_object, True)).as_py():
        return column
    return pc.if_else(is_object, column, _string_text(column))


def value_text(column: pa.Array, name: str = "") -> pa.Array:
    """JSON text of each value of an Arrow column (null stays null)."""
    t = column.type
    if name == "json_column":
        return _object_text(column)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return _string_text(column)
    if pa.types.is_timestamp(t):
        return _timestamp_text(column)
    if pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t):
        return _number_text(column)
    raise TypeError(f"no JSON encoding for column {name!r} of type {t}")


def json_lines(batch: pa.RecordBatch | pa.Table) -> pa.StringArray:
    """One JSON object per event (no trailing newline), columns in schema order."""
    if isinstance(batch, pa.Table):
        batch = batch.combine_chunks().to_batches()[0] if batch.num_rows else pa.RecordBatch.from_pylist(
            [], schema=batch.schema)
    pieces = []
    for i, name in enumerate(batch.schema.names):
        text = pc.fill_null(value_text(batch.column(i), name), "null")
        pieces.append(pc.binary_join_element_wise(("{" if i == 0 else ",") + json.dumps(name) + ":", text, ""))
    pieces.append("}")
    return jsontext.join_rows(pieces, "")


def concatenated(lines: pa.StringArray, before: str = "", after: str = "") -> bytes:
    """``before + line + after`` for every line, as one bytes object (no per-line Python work)."""
    if not len(lines):
        return b""
    joined = jsontext.join_rows([before, lines, after], "") if (before or after) else lines
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int32, count=len(joined) + 1, offset=4 * joined.offset)
    return joined.buffers()[2].to_pybytes()[offsets[0]:offsets[-1]]


def ndjson_bytes(batch: pa.RecordBatch | pa.Table) -> bytes:
    """The events as NDJSON: one object per line, each line ending in a newline."""
    return concatenated(json_lines(batch), after="\n")
