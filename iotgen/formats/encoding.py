"""Events as JSON text, vectorised: the body of an Event Hubs message and one line of an NDJSON file.

An event is one JSON object with the 23 fixed columns and ``json_column`` as a nested object. Timestamps are
ISO 8601 UTC with milliseconds (``2026-11-20T13:45:12.345Z``), numbers as Python's ``repr`` writes them
(``21.5``, ``3.0``, ``-70``), nulls are ``null``. A ``json_column`` that is not an object (for example a
deliberately malformed payload) is written as a JSON string instead, so every line stays valid JSON.

How it is fast: a line is a run of pieces (see :mod:`iotgen.base.jsontext`). Each column contributes pieces from a
small compiled table (numbers on a decimal grid, timestamps, booleans; the column's name and the neighbouring
punctuation ride on them) or its own values as they are (strings, ``json_column``). The tables are cached by
the shape of the data, so consecutive chunks reuse them, and one Arrow ``take`` over the tables and the
columns' strings writes every line, newline included, back to back. Columns the fast path does not cover
(floats off a short decimal grid, nulls in numbers, other types) fall back to Arrow's text conversion.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..base import jsontext

ROWS_PER_TAKE = 1 << 16   # lines built per take (keeps every offset far below 2**31)
MAX_DECIMALS = 3          # floats on a grid of up to this many decimals use number tables
HEAD_LIMIT = 2048         # number tables' head pieces (see jsontext.NumberPieces)
_GRID_SAFE = float(2**52)


# ---- what each column contributes ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Table:
    """A column written from a compiled table: ``key`` says which table, ``values`` its numbers."""

    key: tuple
    values: np.ndarray


@dataclass(frozen=True)
class _Raw:
    """A column written as its own strings: ``quoted`` when they go between quotes."""

    strings: pa.Array
    quoted: bool


def _canonical(low: int, high: int) -> tuple[int, int]:
    """A wider range that chunks of similar data share, so their tables are cached: ``[0, 2**k)`` or
    ``[-2**k, 2**k)`` (or ``[-2**k, 0)``) for the smallest ``2**k >= 64`` above every magnitude."""
    top = max(64, 1 << max(abs(low), abs(high)).bit_length())
    return (0 if low >= 0 else -top), (top - 1 if high >= 0 else -1)


def _needs_escape(strings: pa.Array) -> bool:
    """Whether any value holds a character JSON must escape (``"``, ``\\`` or a control character)."""
    data = strings.buffers()[2]
    if not len(strings) or data is None:
        return False
    offsets = jsontext.offsets_view(strings)
    data = np.frombuffer(data, dtype=np.uint8)[offsets[0]:offsets[-1]]
    return bool(((data < 0x20) | (data == 0x22) | (data == 0x5C)).any())


def _quoted(strings: pa.Array) -> pa.Array:
    """JSON string literals of the values (null stays null)."""
    if _needs_escape(strings):
        return pa.array([None if v is None else jsontext.quote(v) for v in strings.to_pylist()], pa.string())
    return pc.binary_join_element_wise('"', strings, '"', "")


def _string_part(column: pa.Array):
    if column.type != pa.string():
        column = column.cast(pa.string())
    if column.null_count == 0 and not _needs_escape(column):
        return _Raw(column, True)
    return _Raw(pc.fill_null(_quoted(column), "null"), False)


def _object_part(column: pa.Array):
    if column.type != pa.string():
        column = column.cast(pa.string())
    if column.null_count == 0 and column.buffers()[2] is not None:
        offsets = jsontext.offsets_view(column)
        data = np.frombuffer(column.buffers()[2], dtype=np.uint8)
        if (offsets[1:] - offsets[:-1]).min() >= 2 and (data[offsets[:-1]] == ord("{")).all() \
                and (data[offsets[1:] - 1] == ord("}")).all():
            return _Raw(column, False)
    is_object = pc.and_(pc.starts_with(column, "{"), pc.ends_with(column, "}"))
    return _Raw(pc.fill_null(pc.if_else(is_object, column, _quoted(column)), "null"), False)


def _on_grid(values: np.ndarray, decimals: int) -> bool:
    """Whether every value is the double nearest to a number with ``decimals`` decimals (its text reads back
    equal) and small enough for exact integer arithmetic."""
    scaled = np.rint(values * 10.0**decimals)
    return bool(np.array_equal(scaled / 10.0**decimals, values)) and float(np.abs(scaled).max()) < _GRID_SAFE


def _grid_decimals(values: np.ndarray) -> int | None:
    """The fewest decimals (up to :data:`MAX_DECIMALS`) every value has, or None."""
    probe = values[:512]
    for decimals in range(MAX_DECIMALS + 1):
        if _on_grid(probe, decimals) and (len(values) == len(probe) or _on_grid(values, decimals)):
            return decimals
    return None


def _number_part(column: pa.Array):
    if column.null_count == 0:
        values = column.to_numpy(zero_copy_only=False)
        if pa.types.is_integer(column.type):
            low, high = int(values.min()), int(values.max())
            if -(2**62) < low and high < 2**62:
                return _Table(("number", *_canonical(low, high), 0, False), values.astype(np.int64, copy=False))
        elif np.isfinite(values).all():
            decimals = _grid_decimals(values)
            if decimals is not None:
                scaled = np.rint(values * 10.0**decimals).astype(np.int64)
                return _Table(("number", *_canonical(int(scaled.min()), int(scaled.max())), decimals, True), scaled)
    if pa.types.is_floating(column.type):
        column = pc.if_else(pc.is_finite(column), column, pa.scalar(None, column.type))
    return _Raw(pc.fill_null(pc.cast(column, pa.string()), "null"), False)


_PER_MILLISECOND = {"s": (1000, 1), "ms": (1, 1), "us": (1, 1000), "ns": (1, 1_000_000)}


def _timestamp_part(column: pa.Array):
    scale, divisor = _PER_MILLISECOND[column.type.unit]
    raw = pc.fill_null(pc.cast(column, pa.int64()), 0).to_numpy(zero_copy_only=False)
    millis = raw * scale if scale > 1 else raw // divisor
    if column.null_count == 0:
        return _Table(("timestamp", *jsontext.day_span(millis)), millis)
    text = jsontext.timestamp_text(millis)
    return _Raw(pc.if_else(pc.is_valid(column), text, pa.scalar("null")), False)


def _part(column: pa.Array, name: str):
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    t = column.type
    if name == "json_column":
        return _object_part(column)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return _string_part(column)
    if pa.types.is_timestamp(t):
        return _timestamp_part(column)
    if pa.types.is_boolean(t):
        if column.null_count == 0:
            return _Table(("bool",), column.to_numpy(zero_copy_only=False))
        return _Raw(pc.fill_null(pc.cast(column, pa.string()), "null"), False)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return _number_part(column)
    raise TypeError(f"no JSON encoding for column {name!r} of type {t}")


# ---- a line layout, compiled once per shape ------------------------------------------------------------------
class _CompiledTable:
    def __init__(self, table: jsontext.PieceTable, key: tuple, prefix: str, suffix: str) -> None:
        kind = key[0]
        self.pieces: jsontext.NumberPieces | jsontext.TimestampPieces | None
        if kind == "number":
            _, low, high, decimals, shortest = key
            self.pieces = jsontext.NumberPieces(table, low, high, decimals, prefix, suffix, shortest=shortest,
                                                head_limit=HEAD_LIMIT)
        elif kind == "timestamp":
            self.pieces = jsontext.TimestampPieces(table, key[1], key[2], prefix, suffix)
        else:
            self.base = table.add([prefix + "false" + suffix, prefix + "true" + suffix])
            self.pieces = None
        self.width = 1 if self.pieces is None else self.pieces.width

    def codes(self, values: np.ndarray, out: np.ndarray) -> None:
        if self.pieces is None:
            np.add(values, self.base, out=out[0], casting="unsafe")
        else:
            self.pieces.codes(values, out)


@functools.lru_cache(maxsize=64)
def _layout(slots: tuple) -> tuple[pa.StringArray, tuple]:
    """Compile a line layout: ``slots`` holds ``("const", text)``, ``("table", key, prefix, suffix)`` and
    ``("raw", index)`` entries in line order. Returns the piece table and, per slot, what fills it."""
    table = jsontext.PieceTable()
    compiled: list[tuple] = []
    for slot in slots:
        if slot[0] == "const":
            compiled.append(("const", table.add([slot[1]])))
        elif slot[0] == "table":
            compiled.append(("table", _CompiledTable(table, slot[1], slot[2], slot[3])))
        else:
            compiled.append(slot)
    return table.array(), tuple(compiled)


def _slots(names: list[str], parts: list, before: str, after: str) -> tuple:
    """The line layout: punctuation and names around the columns' parts. Text next to a table column rides on
    it (as prefix, or as suffix when no table follows); text between two raw columns is a piece of its own."""
    texts = []
    text = before + "{"
    for i, (name, part) in enumerate(zip(names, parts)):
        quoted = isinstance(part, _Raw) and part.quoted
        texts.append(text + ("," if i else "") + json.dumps(name) + ":" + ('"' if quoted else ""))
        text = '"' if quoted else ""
    texts.append(text + "}" + after)
    slots: list[tuple] = []
    raw = 0
    for k, part in enumerate(parts):
        if isinstance(part, _Table):
            prefix, texts[k] = texts[k], ""
            suffix = ""
            if k + 1 == len(parts) or not isinstance(parts[k + 1], _Table):
                suffix, texts[k + 1] = texts[k + 1], ""
            slots.append(("table", part.key, prefix, suffix))
        else:
            if texts[k]:
                slots.append(("const", texts[k]))
            slots.append(("raw", raw))
            raw += 1
    if texts[-1]:
        slots.append(("const", texts[-1]))
    return tuple(slots)


def _encode(batch: pa.RecordBatch, before: str = "", after: str = "") -> pa.StringArray:
    """``before + JSON object + after`` for each event of a batch of at most :data:`ROWS_PER_TAKE` rows."""
    n = batch.num_rows
    parts = [_part(batch.column(i), name) for i, name in enumerate(batch.schema.names)]
    pieces, compiled = _layout(_slots(batch.schema.names, parts, before, after))
    raws = [p.strings for p in parts if isinstance(p, _Raw)]
    tables = iter([p for p in parts if isinstance(p, _Table)])
    width = sum(1 if kind != "table" else entry.width for kind, entry in compiled)
    codes = np.empty((n, width), dtype=np.int32)
    column = 0
    raw_base = len(pieces)
    raw_starts = np.cumsum([0] + [len(r) for r in raws])
    for kind, entry in compiled:
        if kind == "const":
            codes[:, column] = entry
            column += 1
        elif kind == "table":
            entry.codes(next(tables).values, codes[:, column:column + entry.width].T)
            column += entry.width
        else:
            codes[:, column] = np.arange(raw_base + raw_starts[entry], raw_base + raw_starts[entry] + n,
                                         dtype=np.int32)
            column += 1
    source = pa.concat_arrays([pieces, *raws]) if raws else pieces
    return jsontext.join_pieces(source, codes.ravel(), np.arange(0, n * width, width, dtype=np.int32))


def _batches(data: pa.RecordBatch | pa.Table):
    """Record batches of at most :data:`ROWS_PER_TAKE` rows; a table's chunks are combined only that far."""
    for start in range(0, data.num_rows, ROWS_PER_TAKE):
        part = data.slice(start, ROWS_PER_TAKE)
        if isinstance(part, pa.Table):
            batches = part.to_batches()
            part = batches[0] if len(batches) == 1 else part.combine_chunks().to_batches()[0]
        yield part


def _text(data: pa.RecordBatch | pa.Table, before: str, after: str) -> list[pa.StringArray]:
    return [_encode(batch, before, after) for batch in _batches(data)]


def _joined(arrays: list[pa.StringArray]) -> bytes:
    """The text of string arrays, back to back, as one bytes object."""
    out = []
    for strings in arrays:
        offsets = jsontext.offsets_view(strings)
        if strings.buffers()[2] is not None:
            out.append(strings.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0])).to_pybytes())
    return out[0] if len(out) == 1 else b"".join(out)


def value_text(column: pa.Array, name: str = "") -> pa.Array:
    """JSON text of each value of an Arrow column (null stays null)."""
    batch = pa.RecordBatch.from_arrays([column], names=[name or "value"])
    prefix = len(json.dumps(name or "value")) + 2
    lines = json_lines(batch)
    text = pc.utf8_slice_codeunits(lines, prefix, -1)
    return text if column.null_count == 0 else pc.if_else(pc.is_valid(column), text, pa.scalar(None, pa.string()))


def json_lines(batch: pa.RecordBatch | pa.Table) -> pa.StringArray:
    """One JSON object per event (no trailing newline), columns in schema order."""
    arrays = _text(batch, "", "")
    if not arrays:
        return pa.array([], pa.string())
    return arrays[0] if len(arrays) == 1 else pa.concat_arrays(arrays)


def json_bytes(batch: pa.RecordBatch | pa.Table, before: str = "", after: str = "") -> bytes:
    """``before + JSON object + after`` for every event, as one bytes object."""
    return _joined(_text(batch, before, after))


def ndjson_bytes(batch: pa.RecordBatch | pa.Table) -> bytes:
    """The events as NDJSON: one object per line, each line ending in a newline."""
    return json_bytes(batch, after="\n")
