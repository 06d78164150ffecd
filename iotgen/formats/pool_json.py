"""The VARIANT of iotgen's own ``json_column`` straight from a typed parse, without DuckDB (the ingest's fast path).

iotgen writes ``json_column`` in one shape (:mod:`iotgen.base.jsontext`, :mod:`iotgen.generation.dynamic_json`):
no whitespace, each key of the key pool at most once with a value of its spec's JSON type (integers without a
decimal point, numbers with decimals always with one, no exponent), strings without escapes, arrays without
nulls, nested objects the same way, and ``json_column`` the last member of the body. :func:`compile_pool` turns a
key pool into

* one RE2 pattern (:attr:`PoolShape.pattern`) that a body matches only when its top-level ``json_column`` is such
  an object: every member a known key with a literal of the one JSON type its Arrow type reads exactly (so no
  ``null``, no integer literal in a double field, no unknown key, no escapes to unescape);
* the Arrow struct type (:attr:`PoolShape.struct`) for pyarrow's JSON reader: every key optional (missing is null,
  and the pattern rules out an explicit ``null``), integers ``int64``, numbers with decimals ``double``;
  a key given twice makes the reader fail, and the caller sends such rows to the general path;
* the shared metadata and field ids, so :func:`iotgen.base.variant_encoding.arrow_values` encodes the parsed
  struct as the generator encodes the same object.

A value so encoded decodes to the same value as DuckDB's ``json -> VARIANT`` of the same text (int64 for integer
literals, double for the rest, short strings up to 63 bytes, keys sorted); the bytes differ only in the metadata
(DuckDB lists one row's keys, here every row shares the pool's dictionary). Anything else keeps the general path.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pyarrow as pa

from ..base import variant_encoding
from ..base.jsontext import quote
from ..settings.catalogs import ValueSpec

_INT = r"-?(?:0|[1-9][0-9]*)"
_DOUBLE = r"-?(?:0|[1-9][0-9]*)\.[0-9]+"
_STRING = r'"[^"\\\x00-\x1f]*"'
_BOOL = r"(?:true|false)"


@dataclass(frozen=True)
class PoolShape:
    pattern: str                 # RE2: a body whose top-level json_column the fast path takes
    struct: pa.StructType        # json_column's type for pyarrow's JSON reader
    metadata: bytes              # the VARIANT key dictionary of every key and nested key, sorted
    ids: dict[str, int]          # key -> field id in it


def _literal(text: str) -> str:
    """``text`` as an RE2 pattern that matches it alone."""
    return "".join(c if c.isalnum() or c == "_" else f"\\x{{{ord(c):x}}}" for c in text)


def _number(decimals: int) -> tuple[str, pa.DataType]:
    return (_INT, pa.int64()) if decimals == 0 else (_DOUBLE, pa.float64())


def _array(item: str) -> str:
    return r"\[(?:" + item + "(?:," + item + r")*)?\]"


def _value(spec: ValueSpec) -> tuple[str, pa.DataType]:
    p = spec.params
    if spec.kind == "float":
        return _number(p[2])
    if spec.kind == "int":
        return _number(0)
    if spec.kind == "bool":
        return _BOOL, pa.bool_()
    if spec.kind == "choice":
        return _STRING, pa.string()
    if spec.kind == "string_array":
        return _array(_STRING), pa.list_(pa.string())
    if spec.kind == "float_array":
        item, item_type = _number(p[4])
        return _array(item), pa.list_(item_type)
    if spec.kind == "object":
        return _object(spec.children)
    raise ValueError(f"unknown value kind {spec.kind!r}")


def _object(children) -> tuple[str, pa.DataType]:
    members, fields = [], []
    for name, child in children:
        pattern, arrow_type = _value(child)
        members.append(_literal(quote(name) + ":") + pattern)
        fields.append(pa.field(name, arrow_type))
    if not members:
        return r"\{\}", pa.struct([])
    member = "(?:" + "|".join(members) + ")"
    return r"\{(?:" + member + "(?:," + member + r")*)?\}", pa.struct(fields)


def _names(spec: ValueSpec) -> list[str]:
    return [n for name, child in spec.children for n in (name, *_names(child))]


@functools.lru_cache(maxsize=16)
def compile_pool(key_pool: tuple[tuple[str, ValueSpec], ...], field: str = "json_column") -> PoolShape:
    """The fast path's pattern, struct type and metadata for ``json_column`` objects drawn from ``key_pool``."""
    pattern, struct = _object(key_pool)
    names = sorted({n for name, spec in key_pool for n in (name, *_names(spec))})
    # [,{] before the key: a key of the top-level object (a quote there cannot be inside a string of a valid
    # body); the object, then the body's last character closes the top-level object.
    body = "[,{]" + _literal(quote(field) + ":") + pattern + r"\}$"
    return PoolShape(body, struct, variant_encoding.metadata(names), {n: i for i, n in enumerate(names)})


def encode(objects: pa.StructArray, shape: PoolShape) -> pa.StructArray:
    """The VARIANT column of parsed ``json_column`` structs (no top-level nulls), every row with the pool's
    metadata."""
    if not len(objects):
        return pa.array([], variant_encoding.VARIANT_TYPE)
    return variant_encoding.with_metadata(variant_encoding.arrow_values(objects, shape.ids), shape.metadata)
