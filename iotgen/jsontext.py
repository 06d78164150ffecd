"""Vectorised JSON text: turn whole columns of numbers, choices and timestamps into JSON text with Arrow.

There is no Python loop per value. Numbers are *quantised* (a value is ``scaled / 10**decimals`` for an integer
``scaled``), so their text comes from a dictionary of pre-formatted strings (cached per grid, built once per
process) by one ``take``; grids too large for a dictionary are split into an integer part and a fraction part.
The text of a number is the shortest form that reads back to the same float (as ``json.dumps`` writes it, but
without a trailing ``.0``), so ``json.loads(text) == value`` holds for every value.
"""

from __future__ import annotations

import datetime as dt
import functools
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DICTIONARY_LIMIT = 1 << 17


def quote(values) -> list[str]:
    """JSON string literals (escaped and quoted) for Python strings."""
    return [json.dumps(v, ensure_ascii=False) for v in values]


@functools.lru_cache(maxsize=512)
def _grid_text(prefix: str, low: int, count: int, decimals: int) -> pa.StringArray:
    """``prefix + text(v)`` for v = (low + i) / 10**decimals, i in [0, count)."""
    scaled = low + np.arange(count, dtype=np.int64)
    values = np.round(scaled / 10.0**decimals, decimals) if decimals else scaled
    text = pc.cast(pa.array(values), pa.string())
    return pc.binary_join_element_wise(prefix, text, "") if prefix else text


def scaled_text(scaled: np.ndarray, decimals: int, low: int, high: int, prefix: str = "") -> pa.StringArray:
    """JSON text of ``scaled / 10**decimals`` (``low <= scaled <= high``), each string prefixed with ``prefix``."""
    count = high - low + 1
    if count <= DICTIONARY_LIMIT:
        return _grid_text(prefix, low, count, decimals).take(pa.array(scaled - low))
    values = np.round(scaled / 10.0**decimals, decimals) if decimals else scaled
    text = pc.cast(pa.array(values), pa.string())
    return pc.binary_join_element_wise(prefix, text, "") if prefix else text


def choice_text(codes: np.ndarray, values: tuple[str, ...], prefix: str = "") -> pa.StringArray:
    """JSON string literal of ``values[code]`` for each code, prefixed with ``prefix``."""
    return _choice_dictionary(values, prefix).take(pa.array(codes))


@functools.lru_cache(maxsize=512)
def _choice_dictionary(values: tuple[str, ...], prefix: str) -> pa.StringArray:
    return pa.array([prefix + q for q in quote(values)], pa.string())


def bool_text(flags: np.ndarray, prefix: str = "") -> pa.StringArray:
    return _bool_dictionary(prefix).take(pa.array(flags.astype(np.int8)))


@functools.lru_cache(maxsize=512)
def _bool_dictionary(prefix: str) -> pa.StringArray:
    return pa.array([prefix + "false", prefix + "true"], pa.string())


@functools.lru_cache(maxsize=16)
def _day_text(first_day: int, days: int) -> pa.StringArray:
    start = dt.date(1970, 1, 1) + dt.timedelta(days=first_day)
    return pa.array([(start + dt.timedelta(days=i)).isoformat() + "T" for i in range(days)], pa.string())


@functools.lru_cache(maxsize=1)
def _second_of_day_text() -> pa.StringArray:
    s = np.arange(86400)
    return pa.array([f"{h:02d}:{m:02d}:{x:02d}." for h, m, x in zip(s // 3600, s // 60 % 60, s % 60)], pa.string())


@functools.lru_cache(maxsize=1)
def _millis_text() -> pa.StringArray:
    return pa.array([f"{i:03d}Z" for i in range(1000)], pa.string())


def timestamp_text(epoch_ms: np.ndarray, prefix: str = "", quoted: bool = True) -> pa.StringArray:
    """ISO 8601 UTC text with milliseconds, e.g. ``"2026-11-20T13:45:12.345Z"`` (quoted for JSON by default)."""
    day = epoch_ms // 86_400_000
    first = int(day.min()) if len(day) else 0
    days = (int(day.max()) - first + 1) if len(day) else 1
    ms_of_day = epoch_ms - day * 86_400_000
    q = '"' if quoted else ""
    return pc.binary_join_element_wise(
        prefix + q,
        _day_text(first, days).take(pa.array(day - first)),
        _second_of_day_text().take(pa.array(ms_of_day // 1000)),
        _millis_text().take(pa.array(ms_of_day % 1000)),
        q,
        "",
    )


def join_rows(pieces: list, separator: str = "") -> pa.StringArray:
    """Row-wise concatenation of equally long string arrays (or scalars)."""
    return pc.binary_join_element_wise(*pieces, separator)


def join_lists(fragments: pa.StringArray, counts: np.ndarray, separator: str, opener: str, closer: str) -> pa.StringArray:
    """``opener + separator.join(fragments of row i) + closer`` where row i holds the next ``counts[i]`` fragments."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), fragments), separator)
    return pc.binary_join_element_wise(opener, joined, closer, "")
