"""``json_column``: JSON objects with a random subset of the key pool, built without a loop per event.

How it is fast. The key pool is compiled once (cached) into a piece table (see :mod:`iotgen.jsontext`): each
key is a fixed number of piece *slots* whose texts concatenate to ``,"key":value``. A number with few values
is one piece per value (``,"noise_db":71.5``); a bigger range is a head piece with the key and the leading
digits (``,"energy_kwh":12``) and groups of three digits (``345``, ``.678``) from tables shared by all keys;
a string array with few possible contents is one piece per content (``,"tags":["pilot","indoor"]``); an array
of numbers has an opener, one number per item (absent items dropped) and a closer; a nested object's members
follow one another with the braces on the first and last. Drawing a block is then: choose each row's keys
(selection sampling, vectorised over rows), draw each key's values for the rows that have it and turn them
into piece codes with a few whole-array operations, place the codes in row order, and do one Arrow ``take``
(:func:`iotgen.jsontext.join_pieces`). Each row's leading comma is then patched to ``{``; a ``}`` piece ends it.

Numbers keep their spec's decimals (``21.50``): valid JSON that reads back to the drawn value.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from . import draws
from .catalogs import ValueSpec
from .jsontext import NumberPieces, PieceTable, data_view, join_pieces, offsets_view

COMBINATION_LIMIT = 2048  # string arrays with at most this many possible contents are one piece per content
_BRACE = ord("{")


def quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


class _Value:
    """A compiled value: :attr:`width` piece slots; :meth:`draw` gives codes for ``m`` rows.

    ``draw`` returns ``(codes, keep)``: ``codes`` of shape ``(width, m)`` (int32, one row per slot) and
    ``keep`` None (every slot used) or a boolean array of the same shape (slots of absent items are dropped).
    """

    width: int

    def draw(self, rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError


class _Number(_Value):
    """Uniform on the grid of ``decimals`` decimals inside ``[low, high]``."""

    def __init__(self, table: PieceTable, prefix: str, suffix: str, low: float, high: float, decimals: int):
        unit = 10**decimals
        self.low, self.high = math.ceil(low * unit - 1e-9), math.floor(high * unit + 1e-9)
        if self.low > self.high or max(abs(self.low), abs(self.high)) >= 2**62:
            where = ".".join(re.findall(r'"([^"]*)":', prefix)) or "an array item"
            raise ValueError(f"IOT_KEY_POOL/NESTED_KEYS value spec of {where}: no number with {decimals} decimals "
                             f"in [{low}, {high}], or the range is too large for {decimals} decimals")
        self.number = NumberPieces(table, self.low, self.high, decimals, prefix, suffix)
        self.width = self.number.width

    def draw(self, rng, m):
        drawn = draws.below(rng, self.number.count, m)
        if not self.number.groups:  # one piece per value: the code is the table's start plus the draw
            return np.add(drawn, self.number.base, dtype=np.int32, casting="unsafe").reshape(1, m), None
        drawn += self.low
        return self.number.codes(drawn), None


class _Choice(_Value):
    """One of a few texts: uniform, or (``p_first`` given) the first with that probability."""

    width = 1

    def __init__(self, table: PieceTable, prefix: str, suffix: str, texts: list[str], p_first: float | None = None):
        self.base = table.add([prefix + t + suffix for t in texts])
        self.count = len(texts)
        self.p_first = p_first

    def draw(self, rng, m):
        if self.p_first is not None:
            codes = self.base + (~draws.coin(rng, self.p_first, m))
        else:
            codes = self.base + draws.below(rng, self.count, m)
        return codes.astype(np.int32).reshape(1, m), None


class _Combination(_Value):
    """A string array as one piece: its length uniform in range, then a uniform ordered choice of distinct
    items (the first ``length`` of a random permutation)."""

    width = 1

    def __init__(self, table, prefix, suffix, min_len: int, max_len: int, values: tuple[str, ...]):
        pieces, starts, counts = [], [], []
        for length in range(min_len, max_len + 1):
            starts.append(len(pieces))
            items = itertools.permutations([quote(v) for v in values], length)
            texts = [prefix + "[" + ",".join(c) + "]" + suffix for c in items]
            counts.append(len(texts))
            pieces.extend(texts)
        self.base = table.add(pieces)
        self.starts = np.array(starts, dtype=np.int64) + self.base
        self.counts = np.array(counts, dtype=np.int64)

    @staticmethod
    def size(min_len: int, max_len: int, values: int) -> int:
        return sum(math.perm(values, k) for k in range(min_len, max_len + 1))

    def draw(self, rng, m):
        length = draws.below(rng, len(self.counts), m)
        codes = self.starts[length] + draws.below(rng, self.counts[length], m)
        return codes.astype(np.int32).reshape(1, m), None


class _Array(_Value):
    """``prefix[`` item, item, ... ``]suffix`` with ``min_len..max_len`` items; absent items' slots dropped.

    Items are numbers (``float_array``) or distinct strings (``string_array`` with too many possible
    contents for :class:`_Combination`). With ``min_len >= 1`` the opener rides on the first item's first piece.
    """

    def __init__(self, table, prefix, suffix, spec: ValueSpec) -> None:
        p = spec.params
        self.min_len, self.max_len = p[0], p[1]
        self.strings = spec.kind == "string_array"
        merged = self.min_len >= 1
        self.opener = None if merged else table.add([prefix + "["])
        self.closer = table.add(["]" + suffix])
        self.items: list[_Value] = []
        for i in range(self.max_len):
            before = (prefix + "[" if merged else "") if i == 0 else ","
            if self.strings:
                self.items.append(_Choice(table, before, "", [quote(v) for v in p[2]]))
            else:
                self.items.append(_Number(table, before, "", p[2], p[3], p[4]))
        self.item_width = self.items[0].width if self.items else 0
        self.lead = 0 if merged else 1
        self.width = self.lead + self.max_len * self.item_width + 1

    def draw(self, rng, m):
        length = self.min_len + draws.below(rng, self.max_len - self.min_len + 1, m)
        codes = np.empty((self.width, m), dtype=np.int32)
        keep = np.ones((self.width, m), dtype=bool)
        if self.lead:
            codes[0] = self.opener
        codes[-1] = self.closer
        if self.strings:
            order = _distinct_prefix(rng, m, self.items[0].count, self.max_len)
        w = self.item_width
        for i, item in enumerate(self.items):
            slots = slice(self.lead + i * w, self.lead + (i + 1) * w)
            if self.strings:
                codes[slots.start] = item.base + order[i]
            else:
                codes[slots] = item.draw(rng, m)[0]
            if i >= self.min_len:
                keep[slots] = i < length
        return codes, (keep if self.max_len > self.min_len else None)


def _distinct_prefix(rng: np.random.Generator, m: int, count: int, length: int) -> np.ndarray:
    """Shape ``(length, m)``: per column, the first ``length`` entries of a uniform random permutation of
    ``range(count)`` (a partial Fisher-Yates shuffle, vectorised over columns)."""
    order = np.broadcast_to(np.arange(count, dtype=np.int32)[:, None], (count, m)).copy()
    columns = np.arange(m)
    for i in range(length):
        j = i + draws.below(rng, count - i, m)
        picked = order[j, columns]
        order[j, columns] = order[i]
        order[i] = picked
    return order[:length]


class _Object(_Value):
    """``prefix{`` members ``}suffix``: the braces ride on the first and last members' pieces."""

    def __init__(self, table, prefix, suffix, children) -> None:
        self.members = []
        for i, (name, child) in enumerate(children):
            member_prefix = (prefix + "{" if i == 0 else ",") + quote(name) + ":"
            member_suffix = "}" + suffix if i == len(children) - 1 else ""
            self.members.append(compile_value(table, member_prefix, member_suffix, child))
        self.width = sum(member.width for member in self.members)

    def draw(self, rng, m):
        parts = [member.draw(rng, m) for member in self.members]
        codes = np.concatenate([c for c, _ in parts])
        if all(k is None for _, k in parts):
            return codes, None
        keep = np.concatenate([np.ones(c.shape, dtype=bool) if k is None else k for c, k in parts])
        return codes, keep


def compile_value(table: PieceTable, prefix: str, suffix: str, spec: ValueSpec) -> _Value:
    """The pieces of ``prefix + value + suffix`` for values drawn per ``spec``."""
    p = spec.params
    if spec.kind == "float":
        return _Number(table, prefix, suffix, p[0], p[1], p[2])
    if spec.kind == "int":
        return _Number(table, prefix, suffix, p[0], p[1], 0)
    if spec.kind == "bool":
        return _Choice(table, prefix, suffix, ["true", "false"], p_first=p[0])
    if spec.kind == "choice":
        return _Choice(table, prefix, suffix, [quote(v) for v in p[0]])
    if spec.kind == "string_array" and _Combination.size(p[0], p[1], len(p[2])) <= COMBINATION_LIMIT:
        return _Combination(table, prefix, suffix, p[0], p[1], p[2])
    if spec.kind in ("float_array", "string_array"):
        return _Array(table, prefix, suffix, spec)
    if spec.kind == "object":
        return _Object(table, prefix, suffix, spec.children)
    raise ValueError(f"unknown value kind {spec.kind!r}")


@dataclass(frozen=True)
class CompiledPool:
    pieces: pa.StringArray
    keys: tuple[_Value, ...]
    closer: int  # the "}" piece


@functools.lru_cache(maxsize=32)
def piece_table(key_pool: tuple[tuple[str, ValueSpec], ...]) -> CompiledPool:
    """Compile a key pool (cached: pools are immutable)."""
    table = PieceTable()
    keys = tuple(compile_value(table, "," + quote(name) + ":", "", spec) for name, spec in key_pool)
    closer = table.add(["}"])
    return CompiledPool(table.array(), keys, closer)


def choose_keys(rng: np.random.Generator, n: int, pool: int, min_keys: int, max_keys: int) -> np.ndarray:
    """A (pool, n) mask: row i takes a uniformly random subset of ``k_i ~ U[min_keys, max_keys]`` keys.

    Knuth's selection sampling (algorithm S): one pass over the keys, vectorised over rows. Key ``j`` is taken
    when ``floor(u * (pool - j)) < needed`` for a 16-bit uniform ``u``, so every row gets exactly its count.
    """
    small = np.uint8 if pool < 256 else np.uint16 if pool < 65536 else np.uint32
    wide = np.uint32 if pool < 65536 else np.uint64
    needed = (min_keys + draws.below(rng, max_keys - min_keys + 1, n)).astype(small)
    words = draws.words32(rng, (pool * n + 1) // 2).view(np.uint16)[:pool * n].reshape(pool, n)
    ranks = words.astype(wide)
    ranks *= (pool - np.arange(pool, dtype=wide))[:, None]
    ranks >>= 16
    ranks = ranks.astype(small)
    chosen = np.empty((pool, n), dtype=bool)
    for j in range(pool):
        np.less(ranks[j], needed, out=chosen[j])
        np.subtract(needed, chosen[j], out=needed)
    return chosen


def build_json_column(
    key_pool: tuple[tuple[str, ValueSpec], ...], min_keys: int, max_keys: int, rng: np.random.Generator, n: int
) -> pa.StringArray:
    """``n`` JSON objects, each with ``min_keys..max_keys`` distinct keys of ``key_pool``, in pool order."""
    compiled = piece_table(key_pool)
    if n == 0:
        return pa.array([], pa.string())
    chosen = choose_keys(rng, n, len(key_pool), min_keys, max_keys)
    # Draw every key for the rows that have it; count each row's pieces before each key.
    used = np.zeros(n, dtype=np.intp)
    drawn = []
    for j, key in enumerate(compiled.keys):
        rows = np.flatnonzero(chosen[j])
        if not len(rows):
            continue
        codes, keep = key.draw(rng, len(rows))
        before = used[rows]
        used[rows] = before + (len(codes) if keep is None else keep.sum(axis=0))
        drawn.append((rows, before, codes, keep))
    # Row i's pieces start at first[i]; its last piece is the closer.
    used += 1
    ends = np.cumsum(used)
    first = ends - used
    out = np.empty(int(ends[-1]), dtype=np.int32)
    out[ends - 1] = compiled.closer
    for rows, before, codes, keep in drawn:
        start = first[rows]
        start += before
        if keep is None:
            out[start] = codes[0]
            for slot in range(1, len(codes)):
                start += 1
                out[start] = codes[slot]
        else:
            position = np.cumsum(keep, axis=0)
            position += start - 1
            out[position[keep]] = codes[keep]
    text = join_pieces(compiled.pieces, out, first)
    data_view(text)[offsets_view(text)[:-1]] = _BRACE  # each row's leading comma
    return text
