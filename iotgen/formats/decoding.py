"""Event bodies (the JSON of :func:`iotgen.formats.encoding.json_lines`) back into typed Arrow rows, vectorised.

The inverse of :mod:`iotgen.formats.encoding`: each body is one JSON object with the 23 fixed columns and
``json_column`` as a nested object. The common case costs two C++ passes over the whole batch: pyarrow's JSON
reader parses the fixed columns with the exact schema (so a string where a number belongs fails instead of being
coerced), and DuckDB cuts out ``json_column``, as JSON text or straight into the Parquet VARIANT encoding (for a
Delta ``VARIANT`` column). Only when a chunk fails is it split in halves until the failing rows are found; those
rows alone are examined one by one to say why. Bodies out of the bounds of :mod:`iotgen.formats.json_bounds`
(nesting over 64 levels, an integer beyond int64, a number beyond a double) are rejected first, whatever the
``json_column`` mode. Nothing is dropped: every body ends up either as an event row or as a rejected row with a
reason. Unknown extra top-level fields are
ignored (like Spark's ``from_json``).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from ..base.errors import InputError
from ..settings.catalogs import Catalogs, ValueSpec
from ..settings.schema import ARROW_SCHEMA, COLUMNS, TIMESTAMP
from .duckdb_local import select_over
from .json_bounds import out_of_bounds
from .pool_json import PoolShape, compile_pool, encode
from .variant import VARIANT_TYPE, try_field_to_variant, variant_error

_PARSE_SCHEMA = pa.schema([pa.field(c.name, c.arrow_type) if c.name != "json_column"
                           else pa.field("json_column", pa.struct([])) for c in COLUMNS])
_SMALLEST_CHUNK = 16
KeyPool = tuple[tuple[str, ValueSpec], ...]
_INT32 = (-(2**31), 2**31 - 1)


@dataclass(frozen=True)
class DecodedBodies:
    """``events``: the good bodies as rows of :data:`iotgen.settings.schema.ARROW_SCHEMA` (``json_column`` as JSON text,
    or as :data:`iotgen.formats.variant.VARIANT_TYPE` when decoded for VARIANT), in input order;
    ``indices``: the input position of each event row; ``rejected``: ``(input position, reason)`` of the rest,
    in input order."""

    events: pa.Table
    indices: np.ndarray
    rejected: list[tuple[int, str]]


def decode_bodies(bodies: pa.Array | Sequence[bytes], json_column: str = "text",
                  use_threads: bool = True, key_pool: KeyPool | None = None) -> DecodedBodies:
    """Parse event bodies (bytes) into typed events; bodies that are not events are rejected with a reason.
    ``json_column``: ``"text"`` (JSON text) or ``"variant"`` (Parquet VARIANT encoded; a body whose
    ``json_column`` cannot be a VARIANT is rejected). ``use_threads=False`` keeps the work on one core (the
    ingest leaves the other to the Event Hubs receiver). ``key_pool`` (VARIANT only): the pool iotgen drew
    ``json_column`` from (default: the default catalogs' pool; ``()``: none): bodies whose ``json_column`` is
    iotgen's own JSON of that pool are encoded from the typed parse (:mod:`iotgen.formats.pool_json`), the rest
    by DuckDB; either way the values are the same."""
    if json_column not in ("text", "variant"):
        raise InputError(f"json_column must be 'text' or 'variant', got {json_column!r}")
    if not isinstance(bodies, (pa.Array, pa.ChunkedArray)):
        bodies = pa.array(bodies, pa.binary())
    if isinstance(bodies, pa.ChunkedArray):
        bodies = bodies.combine_chunks()
    if pa.types.is_string(bodies.type) or pa.types.is_large_string(bodies.type):
        bodies = bodies.cast(pa.binary())
    n = len(bodies)
    reasons: dict[int, str] = {}
    text, invalid_utf8 = _as_text(bodies)
    for i in invalid_utf8:
        reasons[i] = "body is not valid UTF-8"
    for i, reason in out_of_bounds(text).items():  # before any recursive parser sees it
        reasons.setdefault(i, reason)
    # Fast path: bodies that start with "{" and end with "}". Every such line gives pyarrow at least one row, so
    # a chunk whose row count differs from its line count holds a body with several values and is split.
    filled = pc.fill_null(text, "")
    braced = pc.and_(pc.starts_with(filled, "{"), pc.ends_with(filled, "}"))
    for i in pc.indices_nonzero(pc.equal(pc.binary_length(filled), 0)).to_pylist():
        reasons.setdefault(i, "body is empty")
    slow = set(pc.indices_nonzero(pc.invert(braced)).to_pylist()) - set(reasons)
    if reasons or slow:
        candidates = np.flatnonzero(np.asarray(braced)).astype(np.int64)
        candidates = candidates[~np.isin(candidates, np.fromiter(reasons, dtype=np.int64, count=len(reasons)))]
    else:
        candidates = np.arange(n, dtype=np.int64)
    good_parts: list[tuple[np.ndarray, pa.Table]] = []
    shape = _pool_shape(key_pool) if json_column == "variant" else None
    fast_parts: list[tuple[np.ndarray, pa.Table]] = []
    if shape is not None and len(candidates):
        # iotgen's own json_column parses typed in the same pass as the fixed columns; a body that fails so (a
        # key given twice, a fixed column's error: rare, so the chunks are split down to the one body) is
        # parsed again the general way with the rest
        looked_at = text if len(candidates) == n else text.take(pa.array(candidates))  # candidates: ascending
        matches = np.asarray(pc.fill_null(pc.match_substring_regex(looked_at, shape.pattern), False))
        schema = _PARSE_SCHEMA.set(_PARSE_SCHEMA.get_field_index("json_column"),
                                   pa.field("json_column", shape.struct))
        retry = _parse_chunks(text, candidates[matches], fast_parts, use_threads, schema, smallest=1)
        candidates = np.sort(np.concatenate([candidates[~matches], np.array(retry, dtype=np.int64)]))
        good_parts.extend(fast_parts)
    failed = _parse_chunks(text, candidates, good_parts, use_threads)
    for i in sorted(slow.union(failed)):
        why = _row_reason(text[i].as_py())
        if why is None:
            parsed = _parse(text.take(pa.array([i])))  # Python says fine: the parser must agree, or say why not
            why = f"invalid value: {parsed}" if isinstance(parsed, str) else _null_reason(parsed)
            if why is None:
                good_parts.append((np.array([i], dtype=np.int64), parsed))
                continue
        reasons[i] = why
    indices, fixed = _merge(good_parts)
    objects = text.take(pa.array(indices))
    if json_column == "variant":
        values, failed_rows = _variant_column(objects, indices, fast_parts, shape, use_threads)
        schema = ARROW_SCHEMA.set(ARROW_SCHEMA.get_field_index("json_column"),
                                  pa.field("json_column", VARIANT_TYPE, nullable=False))
    else:
        values = _json_column_text(objects, use_threads)
        failed_rows = pc.indices_nonzero(pc.is_null(values)).to_pylist() if values.null_count else []
        schema = ARROW_SCHEMA
    if failed_rows:
        for position in failed_rows:
            reasons[int(indices[position])] = _json_column_reason(objects[position].as_py())
        keep = np.ones(len(indices), dtype=bool)
        keep[failed_rows] = False
        indices, fixed, values = indices[keep], fixed.filter(pa.array(keep)), values.filter(pa.array(keep))
    columns = [fixed.column(c.name) if c.name != "json_column" else values for c in COLUMNS]
    events = pa.Table.from_arrays([col.cast(f.type) for col, f in zip(columns, schema)], schema=schema)
    return DecodedBodies(events, indices, sorted(reasons.items()))


def _as_text(bodies: pa.Array) -> tuple[pa.Array, list[int]]:
    try:
        return bodies.cast(pa.string()), []
    except pa.ArrowInvalid:
        values, invalid = [], []
        for i, body in enumerate(bodies.to_pylist()):
            try:
                values.append(None if body is None else body.decode("utf-8"))
            except UnicodeDecodeError:
                values.append(None)
                invalid.append(i)
        return pa.array(values, pa.string()), invalid


def _pool_shape(key_pool: KeyPool | None) -> PoolShape | None:
    if key_pool is None:
        key_pool = _default_pool()
    return compile_pool(key_pool) if key_pool else None


@functools.lru_cache(maxsize=1)
def _default_pool() -> KeyPool:
    return Catalogs.build().key_pool


def _variant_column(objects: pa.Array, indices: np.ndarray, fast_parts: list[tuple[np.ndarray, pa.Table]],
                    shape: PoolShape | None, use_threads: bool) -> tuple[pa.Array, list[int]]:
    """``json_column`` of the good bodies (``objects``, at input ``indices``) as VARIANT: the typed parses of
    ``fast_parts`` (the bodies whose json_column is iotgen's own JSON) encoded directly, the rest by DuckDB;
    and the positions (in ``objects``) that cannot be encoded."""
    fast_positions = np.concatenate([p for p, _ in fast_parts]) if fast_parts else np.array([], dtype=np.int64)
    fast = np.isin(indices, fast_positions) if len(fast_positions) else np.zeros(len(indices), dtype=bool)
    if shape is None or not fast.any():
        return try_field_to_variant(objects, "json_column", use_threads)
    # every fast row parsed without error is a good row (the general checks are about the fixed columns only)
    # every row of fast_parts is a good row (the general checks after the parse are about other fields)
    structs = pa.concat_arrays([t.column("json_column").combine_chunks() for _, t in fast_parts])
    order = np.argsort(fast_positions, kind="stable")
    if (order != np.arange(len(order))).any():
        structs = structs.take(pa.array(order))
    encoded = encode(structs, shape)
    if fast.all():
        return encoded, []
    slow_rows = np.flatnonzero(~fast)
    slow_values, slow_failed = try_field_to_variant(objects.take(pa.array(slow_rows)), "json_column", use_threads)
    joined = pa.concat_arrays([encoded, slow_values])
    place = np.empty(len(indices), dtype=np.int64)
    place[np.flatnonzero(fast)] = np.arange(len(encoded))
    place[slow_rows] = len(encoded) + np.arange(len(slow_rows))
    return joined.take(pa.array(place)), [int(slow_rows[i]) for i in slow_failed]


def _parse(text: pa.Array, use_threads: bool = True, schema: pa.Schema = _PARSE_SCHEMA) -> pa.Table | str:
    """The fixed columns (and an empty struct, or ``schema``'s type, for json_column) of JSON lines, or
    pyarrow's error message."""
    data = _lines(text)
    longest = pc.max(pc.binary_length(text)).as_py() or 0
    try:
        table = pajson.read_json(
            pa.BufferReader(data),
            read_options=pajson.ReadOptions(use_threads=use_threads, block_size=max(1 << 20, 2 * longest + 2)),
            parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore",
                                              newlines_in_values=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        return str(exc).splitlines()[0]
    if table.num_rows != len(text):
        return "body holds more than one JSON value"
    return table


def _lines(text: pa.Array) -> pa.Buffer:
    """The values of a string array, each followed by a newline, as one buffer (one C++ pass, no copy out)."""
    if len(text) == 0:
        return pa.py_buffer(b"")
    joined = pc.binary_join_element_wise(pc.fill_null(text, ""), "", "\n")
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int32, count=len(joined) + 1, offset=4 * joined.offset)
    return joined.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0]))


def _parse_chunks(text: pa.Array, positions: np.ndarray, good: list[tuple[np.ndarray, pa.Table]],
                  use_threads: bool = True, schema: pa.Schema = _PARSE_SCHEMA, smallest: int = _SMALLEST_CHUNK
                  ) -> list[int]:
    """Parse the rows at ``positions``; good rows are appended to ``good``; returns the rows that failed
    (a failing chunk is split in halves down to ``smallest`` rows)."""
    if len(positions) == 0:
        return []
    parsed = _parse(text.take(pa.array(positions)), use_threads, schema)
    if not isinstance(parsed, str):
        nulls = _rows_with_nulls(parsed)
        if not nulls.any():
            good.append((positions, parsed))
            return []
        good.append((positions[~nulls], parsed.filter(pa.array(~nulls))))
        return positions[nulls].tolist()
    if len(positions) <= smallest:
        return positions.tolist()
    middle = len(positions) // 2
    return (_parse_chunks(text, positions[:middle], good, use_threads, schema, smallest)
            + _parse_chunks(text, positions[middle:], good, use_threads, schema, smallest))


def _rows_with_nulls(table: pa.Table) -> np.ndarray:
    mask = np.zeros(table.num_rows, dtype=bool)
    for column in table.columns:
        if column.null_count:  # json_column: the struct itself (its missing keys are null children)
            mask |= np.asarray(column.is_null())
    return mask


def _null_reason(table: pa.Table) -> str | None:
    for name, column in zip(table.column_names, table.columns):
        if column.null_count:
            return f"missing field {name}"
    return None


def _merge(parts: list[tuple[np.ndarray, pa.Table]]) -> tuple[np.ndarray, pa.Table]:
    if not parts:
        return np.array([], dtype=np.int64), _PARSE_SCHEMA.empty_table()
    indices = np.concatenate([p[0] for p in parts])
    table = pa.concat_tables([p[1].drop_columns(["json_column"]) for p in parts])  # json_column: see _variant_column
    order = np.argsort(indices, kind="stable")
    if (order != np.arange(len(order))).any():
        return indices[order], table.take(pa.array(order))
    return indices, table


def _json_column_text(text: pa.Array, use_threads: bool = True) -> pa.Array:
    """``json_column`` of each body (already known to be a JSON object) as JSON text; null where DuckDB cannot
    read the body."""
    if len(text) == 0:
        return pa.array([], pa.string())
    return select_over(text, "TRY(json_extract(j, '$.\"json_column\"'))::VARCHAR",
                       use_threads=use_threads).cast(pa.string())


def _json_column_reason(body: str) -> str:
    """Why DuckDB could not take ``json_column`` out of a body pyarrow parsed (as text, or as a VARIANT)."""
    text = _json_column_text(pa.array([body], pa.string()))[0].as_py()
    if text is None:
        return "json_column cannot be read as JSON"
    return f"json_column cannot be stored as VARIANT: {variant_error(text)}"


# ---- one row: why it is not an event ------------------------------------------------------------------------
def _json_kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _row_reason(text: str) -> str | None:
    """Why one body is not an event, or None if every field has the right JSON type."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"body is not valid JSON: {exc.msg} at character {exc.pos}"
    if not isinstance(obj, dict):
        return f"body must be a JSON object, got {_json_kind(obj)}"
    for column in COLUMNS:
        value = obj.get(column.name)
        if value is None:
            return f"missing field {column.name}" if column.name not in obj else f"field {column.name} is null"
        expected = _expected(column)
        if not _has_type(value, column):
            return f"field {column.name} must be {expected}, got {_json_kind(value)} {_short(value)}"
    return None


def _expected(column) -> str:
    t = column.arrow_type
    if column.name == "json_column":
        return "an object"
    if t == TIMESTAMP:
        return "an ISO 8601 date-time string"
    if pa.types.is_floating(t):
        return "a number"
    if pa.types.is_integer(t):
        return f"an integer in [{_INT32[0]}, {_INT32[1]}]"
    if pa.types.is_boolean(t):
        return "a boolean"
    return "a string"


def _has_type(value, column) -> bool:
    t = column.arrow_type
    if column.name == "json_column":
        return isinstance(value, dict)
    if t == TIMESTAMP or pa.types.is_string(t):
        return isinstance(value, str)
    if isinstance(value, bool):
        return pa.types.is_boolean(t)
    if pa.types.is_floating(t):
        return isinstance(value, (int, float))
    if pa.types.is_integer(t):
        return isinstance(value, int) and _INT32[0] <= value <= _INT32[1]
    return False


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
