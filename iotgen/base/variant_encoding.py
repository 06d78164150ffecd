"""The Parquet/Spark VARIANT binary encoding, built for whole columns at once (no parse, no loop per value).

A VARIANT value is ``struct<metadata: binary, value: binary>`` (https://github.com/apache/parquet-format/blob/
master/VariantEncoding.md): ``metadata`` is a dictionary of object keys, ``value`` a self-describing binary value
whose objects name their fields by index into that dictionary. The generator knows every key and value it puts
in ``json_column``, so it can write this encoding directly (:mod:`~.dynamic_json`): one metadata dictionary
for the whole key pool (sorted, so a row's field ids in key order are ascending), shared by every row, and values
assembled from per-type pieces with whole-array numpy and Arrow operations:

* scalars: ``int64`` (integers), ``double`` (numbers with decimals: the value ``scaled / 10**decimals``, the same
  double a JSON reader gets from the text), ``true``/``false``, strings (short strings up to 63 bytes);
* containers (:func:`containers`): objects and arrays of any number of elements per row: the element values put
  in row order with one Arrow ``take`` (each element's place from one running count per slot, no loop per row or
  per element), the headers, field ids and offsets computed with numpy, and each row's pieces joined in C++; when
  every row has every element, the lead and the fixed-width elements are written as one byte matrix.

What it gives decodes to the same JSON value as the text path (DuckDB's JSON -> VARIANT encoder): tested with
PySpark's decoder, DuckDB and Spark's ``variant_get``. Nothing here does I/O.
"""

from __future__ import annotations

import struct

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

VARIANT_TYPE = pa.struct([
    pa.field("metadata", pa.binary(), nullable=False),
    pa.field("value", pa.binary(), nullable=False),
])

_PRIMITIVE, _SHORT_STRING, _OBJECT, _ARRAY = 0, 1, 2, 3
_TRUE, _FALSE, _INT64, _DOUBLE, _STRING = 1, 2, 6, 7, 16


def metadata(names) -> bytes:
    """A sorted, unique key dictionary (version 1, ``sorted_strings`` set); field id = index in ``sorted(names)``."""
    keys = [n.encode("utf-8") for n in sorted(set(names))]
    data = b"".join(keys)
    offsets = np.concatenate([[0], np.cumsum([len(k) for k in keys])]).astype(np.int64)
    size = _width(max(len(keys), int(offsets[-1])))
    header = 0x01 | 0x10 | ((size - 1) << 6)
    return bytes([header]) + _le(np.array([len(keys)]), size) + _le(offsets, size) + data


def string_value(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) <= 63:
        return bytes([(len(raw) << 2) | _SHORT_STRING]) + raw
    return bytes([(_STRING << 2) | _PRIMITIVE]) + struct.pack("<I", len(raw)) + raw


def encode_json(value) -> tuple[bytes, bytes]:
    """One JSON value (as :func:`json.loads` gives it) as ``(metadata, value)``, one Python call per node: for the
    rare rows a whole-column encoder cannot take (see :mod:`iotgen.formats.variant`). Integers are ``int64``,
    other numbers ``double``, as DuckDB's JSON encoder gives them; an integer beyond int64 is a ``ValueError``."""
    names: set[str] = set()
    _collect_keys(value, names)
    ids = {name: i for i, name in enumerate(sorted(names, key=lambda n: n.encode("utf-8")))}
    return metadata(names), _encode_node(value, ids)


def _collect_keys(value, names: set[str]) -> None:
    if isinstance(value, dict):
        names.update(value)
        for item in value.values():
            _collect_keys(item, names)
    elif isinstance(value, list):
        for item in value:
            _collect_keys(item, names)


def _encode_node(value, ids: dict[str, int]) -> bytes:
    if value is None:
        return bytes([_PRIMITIVE])
    if isinstance(value, bool):
        return boolean_value(value)
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise ValueError(f"integer {value} is outside the int64 range")
        return bytes([(_INT64 << 2) | _PRIMITIVE]) + struct.pack("<q", value)
    if isinstance(value, float):
        return bytes([(_DOUBLE << 2) | _PRIMITIVE]) + struct.pack("<d", value)
    if isinstance(value, str):
        return string_value(value)
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: k.encode("utf-8"))
        items = [_encode_node(value[k], ids) for k in keys]
        field_ids = [ids[k] for k in keys]
    else:
        items = [_encode_node(item, ids) for item in value]
        field_ids = []
    offsets = np.concatenate([[0], np.cumsum([len(i) for i in items], dtype=np.int64)])
    large = len(items) > 255
    offset_size = _width(int(offsets[-1]))
    count = struct.pack("<I", len(items)) if large else bytes([len(items)])
    if isinstance(value, dict):
        id_size = _width(max(field_ids, default=0))
        header = (((int(large) << 4) | ((id_size - 1) << 2) | (offset_size - 1)) << 2) | _OBJECT
        lead = bytes([header]) + count + _le(np.array(field_ids, dtype=np.int64), id_size)
    else:
        lead = bytes([(((int(large) << 2) | (offset_size - 1)) << 2) | _ARRAY]) + count
    return lead + _le(offsets, offset_size) + b"".join(items)


def boolean_value(flag: bool) -> bytes:
    return bytes([((_TRUE if flag else _FALSE) << 2) | _PRIMITIVE])


def ints(values: np.ndarray) -> pa.BinaryArray:
    """``int64`` values, 9 bytes each."""
    return _fixed(np.asarray(values, dtype="<i8").view(np.uint8), _INT64)


def doubles(values: np.ndarray) -> pa.BinaryArray:
    """``double`` values, 9 bytes each."""
    return _fixed(np.asarray(values, dtype="<f8").view(np.uint8), _DOUBLE)


#: one fixed-width value: its header byte and 8 bytes (packed: 9 bytes, written as two fields, not byte by byte)
_NINE = np.dtype([("header", np.uint8), ("value", "V8")])


def _fixed(raw: np.ndarray, type_id: int) -> pa.BinaryArray:
    m = len(raw) // 8
    out = np.empty(m, dtype=_NINE)
    out["header"] = (type_id << 2) | _PRIMITIVE
    out["value"] = raw.view("V8")
    return _binary(out, np.arange(0, 9 * m + 1, 9, dtype=np.int32))


def table(values) -> pa.BinaryArray:
    """A piece table of encoded values (``take`` indices into it)."""
    return pa.array(list(values), pa.binary())


def containers(m: int, elements: list[pa.BinaryArray], present: np.ndarray | None = None,
               field_ids: np.ndarray | None = None) -> pa.BinaryArray:
    """``m`` objects (with ``field_ids``) or arrays (without), one per row.

    Element slot ``j`` (in the order the container lists them: ascending field id for objects, item order for
    arrays) holds ``elements[j]``: the encoded values of the rows where ``present[j]`` is true, in row order
    (``present`` None: every row has every slot). Sizes (1, 2, 3 or 4 bytes) for the counts, field ids and
    offsets are the smallest that fit the whole batch.
    """
    k = len(elements)
    offsets = [np.frombuffer(e.buffers()[1], dtype=np.int32, count=len(e) + 1, offset=4 * e.offset) for e in elements]
    if present is None and k:
        return _full_containers(m, elements, offsets, [np.diff(o) for o in offsets], field_ids)
    value_bytes = sum(int(o[-1] - o[0]) for o in offsets)
    if value_bytes >= 2**31:
        raise ValueError("too many bytes for one VARIANT batch")
    # The elements, slot by slot, are put in row order ("row-major": row 0's in slot order, then row 1's, ...):
    # each element's place there is its row's first place plus the row's elements in the slots before it,
    # counted slot by slot over whole rows of the (slot, row) mask.
    present = np.zeros((0, m), dtype=bool) if present is None else np.asarray(present, dtype=bool)
    counts = present.sum(axis=0, dtype=np.int32)
    starts = np.zeros(m + 1, dtype=np.intp)  # each row's first place in row-major order
    np.cumsum(counts, out=starts[1:])
    places = np.empty((k, m), dtype=np.int32)
    if k:
        places[0] = starts[:-1]
    for j in range(1, k):
        np.add(places[j - 1], present[j - 1], out=places[j])
    # (int32 tables and gathers, intp indices for the scatter: numpy converts other index types first)
    place = np.take(places.reshape(-1), np.flatnonzero(present)).astype(np.intp)  # of each element, slot by slot
    order = np.empty(len(place), dtype=np.int32)  # the elements in row-major order (indices into their concat)
    order[place] = np.arange(len(place), dtype=np.int32)
    # One take puts the values in that order; its offsets are the running sum of their lengths, so an element's end
    # in its row is its end there less the row's start.
    running = np.zeros(1, dtype=np.int32)
    if k:
        taken = pc.take(pa.concat_arrays(elements), pa.array(order), boundscheck=False)  # (in range by construction)
        running = np.frombuffer(taken.buffers()[1], dtype=np.int32, count=len(order) + 1, offset=4 * taken.offset)
    row_starts = running[starts]
    totals = np.diff(row_starts)
    ends = running[1:] - np.repeat(row_starts[:-1], counts)
    large = bool(m and counts.max() > 255)
    count_size = 4 if large else 1
    offset_size = _width(int(totals.max()) if m else 0)
    id_size = _width(int(field_ids.max())) if field_ids is not None and k else 0
    if field_ids is not None:
        header = (((int(large) << 4) | ((max(id_size, 1) - 1) << 2) | (offset_size - 1)) << 2) | _OBJECT
    else:
        header = (((int(large) << 2) | (offset_size - 1)) << 2) | _ARRAY
    if m * (1 + count_size + offset_size) + int(starts[-1]) * (id_size + offset_size) + value_bytes >= 2**31:
        raise ValueError("too many bytes for one VARIANT batch")
    heads = np.empty((m, 1 + count_size), dtype=np.uint8)
    heads[:, 0] = header
    heads[:, 1:] = _le_bytes(counts, count_size)
    # Each row: header, count, its field ids, offsets (0, then each element's end), its element values.
    pieces = [_binary(heads, np.arange(0, (1 + count_size) * m + 1, 1 + count_size))]
    if id_size:
        ids = np.repeat(np.asarray(field_ids, dtype=np.int32), [len(e) for e in elements])  # of each element
        pieces.append(_binary(_le_bytes(np.take(ids, order), id_size), starts * id_size))
    pieces.append(pa.scalar(bytes(offset_size), pa.binary()))
    pieces.append(_binary(_le_bytes(ends, offset_size), starts * offset_size))
    if k:
        pieces.append(_binary(taken.buffers()[2], row_starts))
    return pc.binary_join_element_wise(*pieces, pa.scalar(b"", pa.binary()))


def _full_containers(m: int, elements: list[pa.BinaryArray], offsets: list[np.ndarray], lengths: list[np.ndarray],
                     field_ids: np.ndarray | None) -> pa.BinaryArray:
    """:func:`containers` where every row has every slot: the same lead but its offsets. The lead and each run of
    fixed-width elements after it are written side by side into one byte matrix, column block by column block
    (whole-array copies); the join (row by row, in C++) then takes those matrices and the other elements."""
    if not m:
        return pa.array([], pa.binary())
    k = len(elements)
    ends = np.empty((k, m), dtype=np.int64)  # each element's end in its row, slot by slot
    np.copyto(ends[0], lengths[0])
    for j in range(1, k):  # (a running sum row by row: numpy's cumsum along the first axis is much slower)
        np.add(ends[j - 1], lengths[j], out=ends[j])
    offset_size = _width(int(ends[-1].max()))
    large = k > 255
    count_size = 4 if large else 1
    id_size = _width(int(field_ids.max())) if field_ids is not None else 0
    if field_ids is not None:
        header = (((int(large) << 4) | ((max(id_size, 1) - 1) << 2) | (offset_size - 1)) << 2) | _OBJECT
    else:
        header = (((int(large) << 2) | (offset_size - 1)) << 2) | _ARRAY
    fixed = bytes([header]) + _le(np.array([k]), count_size)
    if field_ids is not None:
        fixed += _le(np.asarray(field_ids), id_size)
    lead = len(fixed) + (k + 1) * offset_size
    pieces: list[pa.Array] = []
    block: list[tuple[int, np.ndarray | None]] = [(lead, None)]  # (width, an (m, width) byte matrix or the lead)
    for element, where, length in zip(elements, offsets, lengths):
        width = int(length[0])
        if (length == width).all():
            if not width:  # no bytes in any row
                continue
            block.append((width, np.frombuffer(element.buffers()[2] or b"", dtype=np.uint8, count=m * width,
                                               offset=int(where[0])).reshape(m, width)))
            continue
        if block:
            pieces.append(_block(m, block, fixed, ends, offset_size))
            block = []
        pieces.append(element)
    if block:
        pieces.append(_block(m, block, fixed, ends, offset_size))
    return pieces[0] if len(pieces) == 1 else pc.binary_join_element_wise(*pieces, pa.scalar(b"", pa.binary()))


def _block(m: int, columns: list[tuple[int, np.ndarray | None]], fixed: bytes, ends: np.ndarray,
           offset_size: int) -> pa.BinaryArray:
    """Rows of ``columns`` side by side: the lead (``fixed`` bytes, a zero offset and each element's end) where the
    matrix is None, else the matrix. Each column is written as one fixed-size item per row (a ``V<width>`` view),
    not byte by byte."""
    out = np.empty((m, sum(width for width, _ in columns)), dtype=np.uint8)
    at = 0
    for width, matrix in columns:
        if matrix is None:
            _column(out, at, len(fixed))[:] = np.void(fixed)
            at += len(fixed)
            for values in (np.zeros(1, dtype=np.int64), *ends):
                _put_column(out, at, values, offset_size)
                at += offset_size
        else:
            _column(out, at, width)[:] = np.ascontiguousarray(matrix).view(f"V{width}")[:, 0]
            at += width
    return _binary(out, np.arange(0, out.shape[1] * m + 1, out.shape[1]))


def _column(out: np.ndarray, at: int, width: int) -> np.ndarray:
    """Columns ``at .. at + width`` of a byte matrix as one ``V<width>`` item per row."""
    return out[:, at:at + width].view(f"V{width}")[:, 0]


def _put_column(out: np.ndarray, at: int, values: np.ndarray, size: int) -> None:
    """``values`` as ``size``-byte little-endian integers in columns ``at .. at + size`` of a byte matrix."""
    if size != 3:
        out[:, at:at + size].view(f"<u{size}")[:, 0] = values
        return
    for byte in range(3):
        out[:, at + byte] = (values >> (8 * byte)) & 0xFF


def with_metadata(values: pa.BinaryArray, metadata_bytes: bytes) -> pa.StructArray:
    """The VARIANT struct array: every row with the same (shared) metadata."""
    return pa.StructArray.from_arrays([_repeated(metadata_bytes, len(values)), values], fields=list(VARIANT_TYPE))


_REPEATED: dict[tuple[bytes, int], pa.BinaryArray] = {}  # the few most recent, oldest first


def _repeated(data: bytes, m: int) -> pa.BinaryArray:
    """``data`` ``m`` times (cached: every block of a run has the same metadata and the same size, and Arrow
    arrays are immutable, so the blocks share one array)."""
    key = (data, m)
    cached = _REPEATED.pop(key, None)
    if cached is None:
        if len(data) * m >= 2**31:
            raise ValueError("too many rows for one VARIANT batch")
        offsets = np.arange(0, len(data) * m + 1, len(data), dtype=np.int32)
        cached = pa.BinaryArray.from_buffers(pa.binary(), m, [None, pa.py_buffer(offsets),
                                                               pa.py_buffer(np.tile(np.frombuffer(data, np.uint8), m))])
        while len(_REPEATED) >= 8:
            del _REPEATED[next(iter(_REPEATED))]
    _REPEATED[key] = cached
    return cached


def shared_metadata(column: pa.Array) -> bytes | None:
    """The metadata every row of ``column`` (a :data:`VARIANT_TYPE` array, maybe a slice) shares when it was made
    by :func:`with_metadata` (its metadata child is a slice of one of the cached repeated arrays), else None."""
    if column.null_count or not len(column) or not column.type.equals(VARIANT_TYPE):
        return None
    child = column.field(0)
    buffers = child.buffers()
    for (data, _), repeated in list(_REPEATED.items()):
        if buffers[1].address == repeated.buffers()[1].address and buffers[2].address == repeated.buffers()[2].address:
            return data
    return None


def concat(columns: list[pa.Array]) -> pa.Array:
    """:func:`pyarrow.concat_arrays` of VARIANT columns; when they all share one metadata (:func:`shared_metadata`),
    only the values are copied and the metadata is the cached repeated array."""
    shared = {shared_metadata(c) for c in columns}
    metadata_bytes = shared.pop() if len(shared) == 1 else None
    if metadata_bytes is None:
        return pa.concat_arrays(columns)
    return with_metadata(pa.concat_arrays([c.field(1) for c in columns]), metadata_bytes)


def _width(largest: int) -> int:
    """Bytes (1 to 4) of an unsigned little-endian integer that holds ``largest``."""
    for size in (1, 2, 3, 4):
        if largest < 1 << (8 * size):
            return size
    raise ValueError(f"{largest} does not fit a VARIANT offset")


def _le(values: np.ndarray, size: int) -> bytes:
    return _le_bytes(values, size).tobytes()


def _le_bytes(values: np.ndarray, size: int) -> np.ndarray:
    """``values`` (that fit) as ``size``-byte little-endian unsigned integers: an ``(n, size)`` byte array."""
    values = np.asarray(values)
    if size != 3:  # a plain cast, much faster than cutting bytes out of wider integers
        return values.astype(f"<u{size}").view(np.uint8).reshape(-1, size)
    return np.ascontiguousarray(values.astype("<u4").view(np.uint8).reshape(-1, 4)[:, :size])


def _binary(data, offsets: np.ndarray) -> pa.BinaryArray:
    """A binary array of the bytes ``data`` (a numpy array or an Arrow buffer) cut at ``offsets``."""
    return pa.BinaryArray.from_buffers(pa.binary(), len(offsets) - 1, [
        None, pa.py_buffer(np.asarray(offsets, dtype=np.int32)),
        data if isinstance(data, pa.Buffer) else pa.py_buffer(data)])


# ---- typed Arrow columns -> VARIANT values --------------------------------------------------------------------
def strings(values: pa.Array) -> pa.BinaryArray:
    """Non-null Arrow strings as VARIANT strings: short strings (up to 63 bytes) with a one-byte header, longer
    ones as ``string`` primitives with a 4-byte length."""
    values = values.cast(pa.binary())
    lengths = pc.binary_length(values).to_numpy(zero_copy_only=False).astype(np.int64)
    m = len(lengths)
    long = lengths > 63
    widths = np.where(long, 5, 1)
    offsets = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(widths, out=offsets[1:])
    head = np.empty(int(offsets[-1]), dtype=np.uint8)
    starts = offsets[:-1]
    head[starts] = np.where(long, (_STRING << 2) | _PRIMITIVE, (lengths << 2) | _SHORT_STRING).astype(np.uint8)
    if long.any():
        at, size = starts[long] + 1, lengths[long]
        for byte in range(4):
            head[at + byte] = (size >> (8 * byte)) & 0xFF
    heads = pa.BinaryArray.from_buffers(pa.binary(), m, [None, pa.py_buffer(offsets.astype(np.int32)),
                                                          pa.py_buffer(head)])
    return pc.binary_join_element_wise(heads, values, pa.scalar(b"", pa.binary()))


#: false, true (index: the value as an int8); raw buffers, not pa.array, which would import pandas at module load
_BOOLEANS = pa.BinaryArray.from_buffers(pa.binary(), 2, [None, pa.py_buffer(np.array([0, 1, 2], dtype=np.int32)),
                                                          pa.py_buffer(bytes([(_FALSE << 2) | _PRIMITIVE,
                                                                              (_TRUE << 2) | _PRIMITIVE]))])


def arrow_values(values: pa.Array, ids: dict[str, int]) -> pa.BinaryArray:
    """VARIANT values of a typed Arrow array with no nulls at its top level: ``int64``, ``double``, ``bool``,
    ``string``, lists of those (no null items), structs (a null child is a missing field) whose field names
    are keys of ``ids`` (the field ids of the shared metadata, :func:`metadata`). Whole-array operations, no
    loop per value: the inverse shape of what a JSON reader makes of iotgen's ``json_column``."""
    t = values.type
    m = len(values)
    if not m:
        return pa.array([], pa.binary())
    if pa.types.is_int64(t):
        return ints(values.to_numpy(zero_copy_only=False))
    if pa.types.is_float64(t):
        return doubles(values.to_numpy(zero_copy_only=False))
    if pa.types.is_boolean(t):
        return _BOOLEANS.take(values.cast(pa.int8()))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return strings(values)
    if pa.types.is_list(t):
        offsets = values.offsets.to_numpy()
        lengths = np.diff(offsets)
        items = arrow_values(values.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0])), ids)
        starts = offsets[:-1] - offsets[0]
        longest = int(lengths.max()) if m else 0
        present = np.arange(longest)[:, None] < lengths[None, :]
        elements = [items.take(pa.array(starts[present[j]] + j)) for j in range(longest)]
        return containers(m, elements, present)
    if pa.types.is_struct(t):
        names = [t.field(i).name for i in range(t.num_fields)]
        order = sorted(range(len(names)), key=lambda i: ids[names[i]])
        children = values.flatten()  # the slice's rows of each child
        present = np.empty((len(order), m), dtype=bool)
        elements = []
        for slot, i in enumerate(order):
            child = children[i]
            if child.null_count:
                valid = child.is_valid()
                present[slot] = valid.to_numpy(zero_copy_only=False)
                child = child.filter(valid)
            else:
                present[slot] = True
            elements.append(arrow_values(child, ids))
        field_ids = np.array([ids[names[i]] for i in order], dtype=np.int64)
        return containers(m, elements, present if not present.all() else None, field_ids)
    raise TypeError(f"no VARIANT encoding for Arrow type {t}")
