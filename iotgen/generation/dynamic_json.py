"""``json_column``: JSON objects with a random subset of the key pool, built without a loop per event.

How it is fast. The key pool is compiled once (cached) into a piece table (see :mod:`iotgen.base.jsontext`): each
key is a fixed number of piece *slots* whose texts concatenate to ``,"key":value``. A number with few values
is one piece per value (``,"noise_db":71.5``); a bigger range is a head piece with the key and the leading
digits (``,"energy_kwh":12``) and groups of three digits (``345``, ``.678``) from tables shared by all keys;
a string array with few possible contents is one piece per content (``,"tags":["pilot","indoor"]``); an array
of numbers has an opener, one number per item (absent items dropped) and a closer; a nested object's members
follow one another with the braces on the first and last. Drawing a block is then: choose each row's keys
(selection sampling, vectorised over rows), draw each key's values for the rows that have it and turn them
into piece codes with a few whole-array operations (a number split into pieces with few enough values: one
gather from a table of every value's codes), place the codes in row order, and do one Arrow ``take``
(:func:`iotgen.base.jsontext.join_pieces`). Each row's leading comma is then patched to ``{``; a ``}`` piece ends it.

Numbers keep their spec's decimals (``21.50``): valid JSON that reads back to the drawn value.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..base import draws, variant_encoding
from ..base.errors import InputError
from ..base.jsontext import NumberPieces, PieceTable, data_view, join_pieces, offsets_view, quote
from ..settings.catalogs import ValueSpec

COMBINATION_LIMIT = 2048  # string arrays with at most this many possible contents are one piece per content
LOOKUP_LIMIT = 1 << 16  # a number split into pieces with at most this many values takes its codes from a table
_BRACE = ord("{")


class _Value:
    """A compiled value: :attr:`width` piece slots. :meth:`sample` makes the random draws for ``m`` rows (and
    nothing else, so text and VARIANT consume the random stream alike); :meth:`codes` turns them into text piece
    codes, :meth:`variant` into VARIANT value bytes.

    ``codes`` returns ``(codes, keep)``: ``codes`` of shape ``(width, m)`` (``dtype``: int32, or the pool's
    :attr:`~CompiledPool.code_type`; one row per slot) and ``keep`` None (every slot used) or a boolean array of
    the same shape (slots of absent items are dropped).
    """

    width: int

    def sample(self, rng: np.random.Generator, m: int):
        raise NotImplementedError

    def codes(self, sample, m: int, dtype=np.int32) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def variant(self, sample, m: int) -> pa.BinaryArray:
        raise NotImplementedError

    def draw(self, rng: np.random.Generator, m: int, dtype=np.int32) -> tuple[np.ndarray, np.ndarray | None]:
        return self.codes(self.sample(rng, m), m, dtype)


class _Number(_Value):
    """Uniform on the grid of ``decimals`` decimals inside ``[low, high]``."""

    def __init__(self, table: PieceTable, prefix: str, suffix: str, low: float, high: float, decimals: int):
        unit = 10**decimals
        self.low, self.high = math.ceil(low * unit - 1e-9), math.floor(high * unit + 1e-9)
        if self.low > self.high or max(abs(self.low), abs(self.high)) >= 2**62:
            where = ".".join(re.findall(r'"([^"]*)":', prefix)) or "an array item"
            raise InputError(f"IOT_KEY_POOL/NESTED_KEYS value spec of {where}: no number with {decimals} decimals "
                             f"in [{low}, {high}], or the range is too large for {decimals} decimals")
        self.number = NumberPieces(table, self.low, self.high, decimals, prefix, suffix)
        self.width = self.number.width
        self.decimals = decimals
        self._lookups: dict[np.dtype, np.ndarray] = {}  # dtype -> the codes of every value (see codes)

    def sample(self, rng, m):
        return draws.below(rng, self.number.count, m)  # scaled value - low

    def codes(self, drawn, m, dtype=np.int32):
        if not self.number.groups:  # one piece per value: the code is the table's start plus the draw
            return np.add(drawn, self.number.base, dtype=dtype, casting="unsafe").reshape(1, m), None
        if self.number.count > LOOKUP_LIMIT:
            return self.number.codes(drawn + self.low, np.empty((self.width, m), dtype=dtype)), None
        # Not too many values: every value's codes computed once, then one gather per slot.
        lookup = self._lookups.get(np.dtype(dtype))
        if lookup is None:
            lookup = self.number.codes(np.arange(self.low, self.high + 1)).astype(dtype)
            self._lookups[np.dtype(dtype)] = lookup
        return lookup.take(drawn, axis=1), None

    def variant(self, drawn, m):
        scaled = drawn + self.low
        if not self.decimals:
            return variant_encoding.ints(scaled)
        return variant_encoding.doubles(scaled / 10.0**self.decimals)  # the double a JSON reader gets from the text


class _Choice(_Value):
    """One of a few texts: uniform, or (``p_first`` given) the first with that probability."""

    width = 1

    def __init__(self, table: PieceTable, prefix: str, suffix: str, texts: list[str], p_first: float | None = None,
                 values: list[bytes] | None = None):
        self.base = table.add([prefix + t + suffix for t in texts])
        self.count = len(texts)
        self.p_first = p_first
        self.values = variant_encoding.table(values) if values is not None else None  # VARIANT bytes per text

    def sample(self, rng, m):
        if self.p_first is not None:
            return (~draws.coin(rng, self.p_first, m)).astype(np.int64)
        return draws.below(rng, self.count, m)

    def codes(self, index, m, dtype=np.int32):
        return np.add(index, self.base, dtype=dtype, casting="unsafe").reshape(1, m), None

    def variant(self, index, m):
        return self.values.take(pa.array(index))


class _Combination(_Value):
    """A string array as one piece: its length uniform in range, then a uniform ordered choice of distinct
    items (the first ``length`` of a random permutation)."""

    width = 1

    def __init__(self, table, prefix, suffix, min_len: int, max_len: int, values: tuple[str, ...]):
        pieces: list[str] = []
        starts: list[int] = []
        counts: list[int] = []
        encoded: list[list[bytes]] = []
        items = [variant_encoding.string_value(v) for v in values]
        for length in range(min_len, max_len + 1):
            starts.append(len(pieces))
            for chosen in itertools.permutations(range(len(values)), length):
                pieces.append(prefix + "[" + ",".join(quote(values[i]) for i in chosen) + "]" + suffix)
                encoded.append([items[i] for i in chosen])
            counts.append(len(pieces) - starts[-1])
        self.base = table.add(pieces)
        self.starts = np.array(starts, dtype=np.int64)
        self.counts = np.array(counts, dtype=np.int64)
        self._encoded = encoded  # the arrays as lists of item values, encoded when first needed

    @functools.cached_property
    def values(self) -> pa.BinaryArray:
        """The VARIANT array of every combination, in code order."""
        lengths = [len(items) for items in self._encoded]
        slots = max(lengths, default=0)
        present = np.array([[i < n for n in lengths] for i in range(slots)], dtype=bool).reshape(slots, len(lengths))
        elements = [variant_encoding.table([items[i] for items in self._encoded if i < len(items)])
                    for i in range(slots)]
        return variant_encoding.containers(len(lengths), elements, present)

    @staticmethod
    def size(min_len: int, max_len: int, values: int) -> int:
        return sum(math.perm(values, k) for k in range(min_len, max_len + 1))

    def sample(self, rng, m):
        length = draws.below(rng, len(self.counts), m)
        return self.starts[length] + draws.below(rng, self.counts[length], m)

    def codes(self, index, m, dtype=np.int32):
        return np.add(index, self.base, dtype=dtype, casting="unsafe").reshape(1, m), None

    def variant(self, index, m):
        return self.values.take(pa.array(index))


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
                self.items.append(_Choice(table, before, "", [quote(v) for v in p[2]],
                                          values=[variant_encoding.string_value(v) for v in p[2]]))
            else:
                self.items.append(_Number(table, before, "", p[2], p[3], p[4]))
        self.item_width = self.items[0].width if self.items else 0
        self.lead = 0 if merged else 1
        self.width = self.lead + self.max_len * self.item_width + 1

    def sample(self, rng, m):
        length = self.min_len + draws.below(rng, self.max_len - self.min_len + 1, m)
        if self.strings:
            return length, _distinct_prefix(rng, m, self.items[0].count, self.max_len)
        return length, [item.sample(rng, m) for item in self.items]

    def codes(self, sample, m, dtype=np.int32):
        length, items = sample
        codes = np.empty((self.width, m), dtype=dtype)
        keep = np.ones((self.width, m), dtype=bool)
        if self.lead:
            codes[0] = self.opener
        codes[-1] = self.closer
        w = self.item_width
        for i, item in enumerate(self.items):
            slots = slice(self.lead + i * w, self.lead + (i + 1) * w)
            if self.strings:
                codes[slots.start] = item.base + items[i]
            else:
                codes[slots] = item.codes(items[i], m, dtype)[0]
            if i >= self.min_len:
                keep[slots] = i < length
        return codes, (keep if self.max_len > self.min_len else None)

    def variant(self, sample, m):
        length, items = sample
        present = np.arange(self.max_len)[:, None] < length[None, :]
        elements = []
        for i, item in enumerate(self.items):  # the values of the rows that have item i: numpy filters the draws
            drawn = items[i] if present[i].all() else items[i][present[i]]
            elements.append(item.variant(drawn, len(drawn)))
        return variant_encoding.containers(m, elements, present)


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
        self.names = [name for name, _ in children]
        for i, (name, child) in enumerate(children):
            member_prefix = (prefix + "{" if i == 0 else ",") + quote(name) + ":"
            member_suffix = "}" + suffix if i == len(children) - 1 else ""
            self.members.append(compile_value(table, member_prefix, member_suffix, child))
        self.width = sum(member.width for member in self.members)
        self.field_ids: np.ndarray | None = None  # set by piece_table once the key dictionary is known
        self.order: list[int] = []

    def sample(self, rng, m):
        return [member.sample(rng, m) for member in self.members]

    def codes(self, samples, m, dtype=np.int32):
        parts = [member.codes(sample, m, dtype) for member, sample in zip(self.members, samples)]
        codes = np.concatenate([c for c, _ in parts])
        if all(k is None for _, k in parts):
            return codes, None
        keep = np.concatenate([np.ones(c.shape, dtype=bool) if k is None else k for c, k in parts])
        return codes, keep

    def variant(self, samples, m):
        elements = [self.members[i].variant(samples[i], m) for i in self.order]
        return variant_encoding.containers(m, elements, None, self.field_ids)

    def number_fields(self, ids: dict[str, int]) -> None:
        """Give the members their field ids (key dictionary indices), listed in ascending id order."""
        self.order = sorted(range(len(self.names)), key=lambda i: ids[self.names[i]])
        self.field_ids = np.array([ids[self.names[i]] for i in self.order], dtype=np.int64)
        for member in self.members:
            for nested in _objects(member):
                nested.number_fields(ids)


def compile_value(table: PieceTable, prefix: str, suffix: str, spec: ValueSpec) -> _Value:
    """The pieces of ``prefix + value + suffix`` for values drawn per ``spec``."""
    p = spec.params
    if spec.kind == "float":
        return _Number(table, prefix, suffix, p[0], p[1], p[2])
    if spec.kind == "int":
        return _Number(table, prefix, suffix, p[0], p[1], 0)
    if spec.kind == "bool":
        return _Choice(table, prefix, suffix, ["true", "false"], p_first=p[0],
                       values=[variant_encoding.boolean_value(True), variant_encoding.boolean_value(False)])
    if spec.kind == "choice":
        return _Choice(table, prefix, suffix, [quote(v) for v in p[0]],
                       values=[variant_encoding.string_value(v) for v in p[0]])
    if spec.kind == "string_array" and _Combination.size(p[0], p[1], len(p[2])) <= COMBINATION_LIMIT:
        return _Combination(table, prefix, suffix, p[0], p[1], p[2])
    if spec.kind in ("float_array", "string_array"):
        return _Array(table, prefix, suffix, spec)
    if spec.kind == "object":
        return _Object(table, prefix, suffix, spec.children)
    raise ValueError(f"unknown value kind {spec.kind!r}")


def _objects(value: _Value) -> list[_Object]:
    """The nested objects directly inside ``value`` (itself, or an array's items: none here)."""
    return [value] if isinstance(value, _Object) else []


def _names(spec: ValueSpec) -> list[str]:
    return [n for name, child in spec.children for n in (name, *_names(child))]


@dataclass(frozen=True)
class CompiledPool:
    pieces: pa.StringArray
    keys: tuple[_Value, ...]
    closer: int  # the "}" piece
    metadata: bytes  # the VARIANT key dictionary of every key and nested key, sorted
    order: tuple[int, ...]  # the pool's keys in ascending field id (name) order
    field_ids: np.ndarray  # their field ids, in that order

    @property
    def code_type(self) -> type:
        """The narrowest integer type of the piece codes (int16 for most pools: less memory to place them in)."""
        return np.int16 if len(self.pieces) <= np.iinfo(np.int16).max else np.int32


@functools.lru_cache(maxsize=32)
def piece_table(key_pool: tuple[tuple[str, ValueSpec], ...]) -> CompiledPool:
    """Compile a key pool (cached: pools are immutable)."""
    table = PieceTable()
    keys = tuple(compile_value(table, "," + quote(name) + ":", "", spec) for name, spec in key_pool)
    closer = table.add(["}"])
    names = sorted({n for name, spec in key_pool for n in (name, *_names(spec))})
    ids = {name: i for i, name in enumerate(names)}
    for key in keys:
        for nested in _objects(key):
            nested.number_fields(ids)
    order = tuple(sorted(range(len(key_pool)), key=lambda j: ids[key_pool[j][0]]))
    return CompiledPool(table.array(), keys, closer, variant_encoding.metadata(names), order,
                        np.array([ids[key_pool[j][0]] for j in order], dtype=np.int64))


def choose_keys(rng: np.random.Generator, n: int, pool: int, min_keys: int, max_keys: int) -> np.ndarray:
    """A (pool, n) mask: row i takes a uniformly random subset of ``k_i ~ U[min_keys, max_keys]`` keys.

    Knuth's selection sampling (algorithm S): one pass over the keys, vectorised over rows. Key ``j`` is taken
    when ``floor(u * (pool - j)) < needed`` for a 16-bit uniform ``u``, so every row gets exactly its count.
    """
    small = np.uint8 if pool < 256 else np.uint16 if pool < 65536 else np.uint32
    wide = np.uint32 if pool < 65536 else np.uint64
    needed = (min_keys + draws.below(rng, max_keys - min_keys + 1, n)).astype(small)
    words = draws.words32(rng, (pool * n + 1) // 2).view(np.uint16)[:pool * n].reshape(pool, n)
    ranks: np.ndarray = words.astype(wide)  # uint32 or uint64 (numpy cannot type a dtype chosen at run time)
    ranks *= (pool - np.arange(pool, dtype=wide))[:, None]
    ranks >>= 16
    ranks = ranks.astype(small)
    chosen = np.empty((pool, n), dtype=bool)
    for j in range(pool):
        np.less(ranks[j], needed, out=chosen[j])
        np.subtract(needed, chosen[j], out=needed)
    return chosen


def build_json_column(
    key_pool: tuple[tuple[str, ValueSpec], ...], min_keys: int, max_keys: int, rng: np.random.Generator, n: int,
    encoding: str = "text",
) -> pa.Array:
    """``n`` JSON objects, each with ``min_keys..max_keys`` distinct keys of ``key_pool``, in pool order: as JSON
    text, or (``encoding="variant"``) as :data:`~iotgen.base.variant_encoding.VARIANT_TYPE` values that decode to the
    same JSON, from the same random draws (the rest of a block is the same either way)."""
    compiled = piece_table(key_pool)
    if encoding not in ("text", "variant"):
        raise InputError(f"encoding must be 'text' or 'variant', got {encoding!r}")
    if n == 0:
        return pa.array([], pa.string() if encoding == "text" else variant_encoding.VARIANT_TYPE)
    chosen = choose_keys(rng, n, len(key_pool), min_keys, max_keys)
    if encoding == "variant":
        return _variant_objects(compiled, chosen, rng, n)
    out, first = _piece_codes(compiled, chosen, rng, n)
    return joined_text(compiled, out, first)


def text_codes(
    key_pool: tuple[tuple[str, ValueSpec], ...], min_keys: int, max_keys: int, rng: np.random.Generator, n: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The piece codes of :func:`build_json_column`'s text, before the join: ``(codes, first)`` (row ``i``'s
    pieces start at ``codes[first[i]]``). Blocks' codes put end to end (``first`` shifted) join into their
    texts end to end (:func:`joined_text`)."""
    chosen = choose_keys(rng, n, len(key_pool), min_keys, max_keys)
    return _piece_codes(piece_table(key_pool), chosen, rng, n)


def joined_text(compiled: "CompiledPool", codes: np.ndarray, first: np.ndarray) -> pa.StringArray:
    """The JSON texts of rows' piece codes (:func:`text_codes`)."""
    text = join_pieces(compiled.pieces, codes, first)
    data_view(text)[offsets_view(text)[:-1]] = _BRACE  # each row's leading comma
    return text


def _piece_codes(compiled: "CompiledPool", chosen: np.ndarray, rng: np.random.Generator,
                 n: int) -> tuple[np.ndarray, np.ndarray]:
    # Draw every key for the rows that have it; count each row's pieces before each key (the counts of every row
    # at once: a whole-array add costs less than a scatter into the rows that have the key).
    used = np.zeros(n, dtype=np.int32)
    drawn = []
    for j, key in enumerate(compiled.keys):
        rows = np.flatnonzero(chosen[j])
        if not len(rows):
            continue
        codes, keep = key.draw(rng, len(rows), compiled.code_type)  # the type of out: a scatter with no cast
        before = used[rows]
        if keep is not None or len(codes) > 255:
            used[rows] = before + (len(codes) if keep is None else keep.sum(axis=0, dtype=np.int32))
        else:
            used += chosen[j].view(np.uint8) * np.uint8(len(codes))
        drawn.append((rows, before, codes, keep))
    # Row i's pieces start at first[i]; its last piece is the closer.
    used += 1
    ends = np.cumsum(used, dtype=np.intp)
    first = ends - used
    total = int(ends[-1])
    out: np.ndarray = np.empty(total + 1, dtype=compiled.code_type)  # the last slot takes the dropped slots' codes
    out[ends - 1] = compiled.closer
    for rows, before, codes, keep in drawn:
        start = first[rows]
        start += before
        for slot in range(len(codes)):
            if slot:
                start += keep[slot - 1] if keep is not None else 1
            out[start if keep is None else np.where(keep[slot], start, total)] = codes[slot]
    return out[:total], first


def _variant_objects(compiled: CompiledPool, chosen: np.ndarray, rng: np.random.Generator, n: int) -> pa.StructArray:
    """The rows' objects as VARIANT: each key sampled as for the text (same draws, pool order), its values
    encoded, then every row's object assembled with its keys in field id order."""
    values: list[pa.BinaryArray | None] = []
    for j, key in enumerate(compiled.keys):
        m = int(chosen[j].sum())
        values.append(key.variant(key.sample(rng, m), m) if m else None)
    empty = pa.array([], pa.binary())
    elements = [values[j] if values[j] is not None else empty for j in compiled.order]
    objects = variant_encoding.containers(n, elements, chosen[list(compiled.order)], compiled.field_ids)
    return variant_encoding.with_metadata(objects, compiled.metadata)
