"""``json_column``: JSON objects with a random subset of the key pool, built without a loop per event.

How it is fast. The key pool is compiled once (cached) into a *piece table*: a dictionary of short text
pieces and, for each key, a fixed number of piece slots. A key's text is the concatenation of its slots'
pieces: ``,"co2_ppm":1234`` is one piece; a number with many possible values is split into pieces of three
digits (``,"energy_kwh":12`` ``345`` ``.678``); a nested object's members follow one another
(``,"location":{"lat":45`` ``.123`` ``456`` ``,"site":"plant-1"}``); an array has an opener, one slot per
possible item (empty when absent) and a closer. Drawing a block is then: choose each row's keys (selection
sampling, vectorised over rows), compute every piece's dictionary index with numpy, and do one Arrow ``take``
of all pieces in row order. That take's data buffer *is* the concatenated JSON text of all rows, so the
column needs no join: only the offsets of each row's first piece, and the first comma of each row patched
to ``{`` (every row's last piece is ``}``).

Numbers keep their spec's decimals (``21.50``): valid JSON that reads back to the drawn value.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .catalogs import ValueSpec

WHOLE_NUMBER_LIMIT = 1 << 14  # numbers with at most this many possible values are one piece
_BRACE = ord("{")


def quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


class _Table:
    """The growing list of pieces; identical runs of pieces are stored once."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self._runs: dict[tuple[str, ...], int] = {}

    def add(self, pieces: list[str] | tuple[str, ...]) -> int:
        """Index of the first of ``pieces`` (stored consecutively)."""
        run = tuple(pieces)
        base = self._runs.get(run)
        if base is None:
            base = self._runs[run] = len(self.pieces)
            self.pieces.extend(run)
        return base


def _fixed(value: int, decimals: int) -> str:
    sign = "-" if value < 0 else ""
    whole, fraction = divmod(abs(value), 10**decimals)
    return f"{sign}{whole}.{fraction:0{decimals}d}" if decimals else f"{sign}{whole}"


class _Number:
    """A number on the grid ``scaled / 10**decimals`` for integer ``scaled`` in ``[low, high]``."""

    def __init__(self, table: _Table, prefix: str, suffix: str, low: int, high: int, decimals: int) -> None:
        self.low, self.high, self.decimals = low, high, decimals
        if high - low < WHOLE_NUMBER_LIMIT:
            self.whole = table.add([prefix + _fixed(v, decimals) + suffix for v in range(low, high + 1)])
            self.width = 1
            return
        self.whole = None
        unit = 10**decimals
        biggest = max(abs(low), abs(high)) // unit
        self.groups = max(1, (len(str(biggest)) + 2) // 3)
        self.fraction_groups = [min(3, decimals - i) for i in range(0, decimals, 3)]
        self.width = self.groups + len(self.fraction_groups)
        last_int = suffix if not decimals else ""
        # Top integer group: sign, then the group's digits (none when zero and more groups follow).
        top = []
        for negative in (False, True):
            for g in range(1000):
                digits = "" if (g == 0 and self.groups > 1) else str(g)
                top.append(prefix + ("-" if negative else "") + digits + (last_int if self.groups == 1 else ""))
        self.top = table.add(top)
        # Other integer groups: 0..999 padded; or unpadded when every higher group is zero ("" if also zero).
        self.padded, self.leading = [], []
        for i in range(1, self.groups):
            end = last_int if i == self.groups - 1 else ""
            self.padded.append(table.add([f"{g:03d}{end}" for g in range(1000)]))
            zero = "0" if i == self.groups - 1 else ""
            self.leading.append(table.add([(str(g) if g else zero) + end for g in range(1000)]))
        self.fractions = []
        for i, digits in enumerate(self.fraction_groups):
            end = suffix if i == len(self.fraction_groups) - 1 else ""
            dot = "." if i == 0 else ""
            self.fractions.append(table.add([f"{dot}{g:0{digits}d}{end}" for g in range(10**digits)]))

    def codes(self, scaled: np.ndarray) -> np.ndarray:
        if self.whole is not None:
            return (self.whole + (scaled - self.low))[:, None]
        out = np.empty((len(scaled), self.width), dtype=np.int64)
        magnitude = np.abs(scaled)
        unit = 10**self.decimals
        whole, fraction = magnitude // unit, magnitude % unit
        powers = [1000 ** (self.groups - 1 - i) for i in range(self.groups)]
        groups = [(whole // p) % 1000 for p in powers]
        out[:, 0] = self.top + (scaled < 0) * 1000 + groups[0]
        higher_zero = groups[0] == 0
        for i in range(1, self.groups):
            out[:, i] = np.where(higher_zero, self.leading[i - 1], self.padded[i - 1]) + groups[i]
            higher_zero &= groups[i] == 0
        rest = self.decimals
        for i, digits in enumerate(self.fraction_groups):
            rest -= digits
            out[:, self.groups + i] = self.fractions[i] + (fraction // 10**rest) % 10**digits
        return out


class _Slots:
    """A compiled value: ``width`` piece slots and a way to draw their codes."""

    width: int

    def draw(self, rng: np.random.Generator, m: int) -> np.ndarray:  # (m, width) piece indices
        raise NotImplementedError


class _NumberSlots(_Slots):
    def __init__(self, table, prefix, suffix, spec: ValueSpec) -> None:
        decimals = spec.params[2] if spec.kind == "float" else 0
        low, high = round(spec.params[0] * 10**decimals), round(spec.params[1] * 10**decimals)
        self.number = _Number(table, prefix, suffix, low, high, decimals)
        self.width = self.number.width

    def draw(self, rng, m):
        return self.number.codes(rng.integers(self.number.low, self.number.high + 1, m))


class _ChoiceSlots(_Slots):
    width = 1

    def __init__(self, table, prefix, suffix, values: tuple[str, ...], probability_first: float | None = None):
        self.base = table.add([prefix + v + suffix for v in values])
        self.count = len(values)
        self.p_first = probability_first

    def draw(self, rng, m):
        if self.p_first is not None:  # booleans: entries (true, false)
            return (self.base + (rng.random(m) >= self.p_first))[:, None]
        return (self.base + rng.integers(0, self.count, m))[:, None]


class _ArraySlots(_Slots):
    """``prefix[`` item, item, ... ``]suffix`` with ``min_len..max_len`` items (absent items are empty)."""

    def __init__(self, table, prefix, suffix, spec: ValueSpec) -> None:
        p = spec.params
        self.min_len, self.max_len = p[0], p[1]
        self.opener = table.add([prefix + "["])
        self.closer = table.add(["]" + suffix])
        self.empty = table.add([""])
        if spec.kind == "float_array":
            item = ValueSpec("float", (p[2], p[3], p[4]))
            self.items = [_NumberSlots(table, "" if i == 0 else ",", "", item) for i in range(self.max_len)]
            self.strings = None
        else:
            self.strings = p[2]
            self.items = [_ChoiceSlots(table, "" if i == 0 else ",", "", tuple(quote(v) for v in p[2]))
                          for i in range(self.max_len)]
        self.width = 2 + sum(item.width for item in self.items)

    def draw(self, rng, m):
        lengths = rng.integers(self.min_len, self.max_len + 1, m)
        out = np.empty((m, self.width), dtype=np.int64)
        out[:, 0], out[:, -1] = self.opener, self.closer
        if self.strings is not None:  # distinct items: the first `length` of a random permutation
            order = rng.permuted(np.broadcast_to(np.arange(len(self.strings)), (m, len(self.strings))), axis=1)
        column = 1
        for i, item in enumerate(self.items):
            if self.strings is not None:
                codes = (item.base + order[:, i])[:, None]
            else:
                codes = item.draw(rng, m)
            out[:, column:column + item.width] = np.where((i < lengths)[:, None], codes, self.empty)
            column += item.width
        return out


class _ObjectSlots(_Slots):
    """``prefix{`` members ``}suffix``: the braces ride on the first and last members' pieces."""

    def __init__(self, table, prefix, suffix, children) -> None:
        self.members = []
        for i, (name, child) in enumerate(children):
            member_prefix = (prefix + "{" if i == 0 else ",") + quote(name) + ":"
            member_suffix = "}" + suffix if i == len(children) - 1 else ""
            self.members.append(compile_value(table, member_prefix, member_suffix, child))
        self.width = sum(member.width for member in self.members)

    def draw(self, rng, m):
        return np.concatenate([member.draw(rng, m) for member in self.members], axis=1)


def compile_value(table: _Table, prefix: str, suffix: str, spec: ValueSpec) -> _Slots:
    if spec.kind in ("float", "int"):
        return _NumberSlots(table, prefix, suffix, spec)
    if spec.kind == "bool":
        return _ChoiceSlots(table, prefix, suffix, ("true", "false"), probability_first=spec.params[0])
    if spec.kind == "choice":
        return _ChoiceSlots(table, prefix, suffix, tuple(quote(v) for v in spec.params[0]))
    if spec.kind in ("float_array", "string_array"):
        return _ArraySlots(table, prefix, suffix, spec)
    if spec.kind == "object":
        return _ObjectSlots(table, prefix, suffix, spec.children)
    raise ValueError(f"unknown value kind {spec.kind!r}")


@dataclass(frozen=True)
class PieceTable:
    pieces: pa.StringArray
    keys: tuple[_Slots, ...]
    widths: np.ndarray  # slots per key
    closer: int         # the "}" piece


@functools.lru_cache(maxsize=32)
def piece_table(key_pool: tuple[tuple[str, ValueSpec], ...]) -> PieceTable:
    """Compile a key pool (cached: pools are immutable)."""
    table = _Table()
    keys = tuple(compile_value(table, "," + quote(name) + ":", "", spec) for name, spec in key_pool)
    closer = table.add(["}"])
    return PieceTable(pa.array(table.pieces, pa.string()), keys,
                      np.array([k.width for k in keys], dtype=np.int64), closer)


def choose_keys(rng: np.random.Generator, n: int, pool: int, min_keys: int, max_keys: int) -> np.ndarray:
    """A (pool, n) mask: row i takes a uniformly random subset of ``k_i ~ U[min_keys, max_keys]`` keys.

    Knuth's selection sampling (algorithm S): one pass over the keys, vectorised over rows.
    """
    needed = rng.integers(min_keys, max_keys + 1, n)
    draws = rng.random((pool, n))
    chosen = np.empty((pool, n), dtype=bool)
    for j in range(pool):
        np.less(draws[j] * (pool - j), needed, out=chosen[j])
        needed -= chosen[j]
    return chosen


def build_json_column(
    key_pool: tuple[tuple[str, ValueSpec], ...], min_keys: int, max_keys: int, rng: np.random.Generator, n: int
) -> pa.StringArray:
    """``n`` JSON objects, each with ``min_keys..max_keys`` distinct keys of ``key_pool``, in pool order."""
    compiled = piece_table(key_pool)
    pool = len(key_pool)
    chosen = choose_keys(rng, n, pool, min_keys, max_keys)
    # Pieces per (row, key), plus one closing piece per row; exclusive prefix sums give each one's position.
    counts = np.zeros((n, pool + 1), dtype=np.int64)
    counts[:, :pool] = chosen.T * compiled.widths
    counts[:, pool] = 1
    ends = np.cumsum(counts.ravel()).reshape(n, pool + 1)
    starts = ends - counts
    codes = np.empty(int(ends[-1, -1]), dtype=np.int64)
    for j, key in enumerate(compiled.keys):
        rows = np.flatnonzero(chosen[j])
        if len(rows):
            positions = starts[rows, j][:, None] + np.arange(key.width)
            codes[positions] = key.draw(rng, len(rows))
    codes[ends[:, pool] - 1] = compiled.closer
    taken = compiled.pieces.take(pa.array(codes))
    piece_offsets = np.frombuffer(taken.buffers()[1], dtype=np.int32, count=len(codes) + 1, offset=4 * taken.offset)
    row_offsets = np.empty(n + 1, dtype=np.int32)
    row_offsets[:n] = piece_offsets[starts[:, 0]]
    row_offsets[n] = piece_offsets[-1]
    row_offsets -= row_offsets[0].copy()
    data = np.frombuffer(taken.buffers()[2], dtype=np.uint8)[piece_offsets[0]:piece_offsets[-1]].copy()
    data[row_offsets[:n]] = _BRACE  # each row's leading comma
    return pa.StringArray.from_buffers(n, pa.py_buffer(row_offsets), pa.py_buffer(data))
