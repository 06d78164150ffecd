"""Vectorised JSON text: many strings built at once from a table of short, pre-formatted text pieces.

The one primitive is :func:`join_pieces`. A *piece table* is an Arrow string array of short texts, compiled
once per shape of data and cached (``,"co2_ppm":`` followed by a number's leading digits, three more digits
``.045``, ``true``, ``"2026-06-01T13:`` ...). Every output string is a run of piece codes; one Arrow ``take``
of all codes in output order writes every string back to back, so its data buffer *is* the concatenated text
and the strings only need their offsets. The cost is about one ``take`` element per piece, wherever the text
comes from, and no Python loop per value.

Numbers are quantised (``scaled / 10**decimals`` for an integer ``scaled``): :class:`NumberPieces` compiles a
range of them into a head piece (the text before, the sign and the leading digits) and groups of three digits
whose tables are shared by every number of the same shape, so tables stay small enough to stay in the CPU
caches. Timestamps are pieces of day, time of day and milliseconds (:class:`TimestampPieces`).
"""

from __future__ import annotations

import datetime as dt
import functools
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .times import DAY_MS

WHOLE_LIMIT = 1024  # a number with at most this many possible values is one piece per value
HEAD_LIMIT = 1024   # most head pieces of a number split into head + groups of three digits


def quote(text: str) -> str:
    """The JSON string literal (escaped and quoted) of a Python string."""
    return json.dumps(text, ensure_ascii=False)


class PieceTable:
    """A growing list of text pieces; a run of pieces identical to one already added is stored once."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self._runs: dict[tuple[str, ...], int] = {}

    def add(self, pieces) -> int:
        """The code of the first of ``pieces`` (stored consecutively)."""
        run = tuple(pieces)
        base = self._runs.get(run)
        if base is None:
            base = self._runs[run] = len(self.pieces)
            self.pieces.extend(run)
        return base

    def array(self) -> pa.StringArray:
        return pa.array(self.pieces, pa.string())


def join_pieces(pieces: pa.StringArray, codes: np.ndarray, first: np.ndarray) -> pa.StringArray:
    """String ``i`` is the concatenation of ``pieces[codes[first[i]:first[i + 1]]]`` (the last runs to the end).

    ``codes`` are int32 (or int16) piece codes in output order and ``first`` (non-decreasing, ``first[0] == 0``)
    says where each string's run starts. The result's data buffer is the ``take`` output itself (fresh, so callers may
    patch bytes in place through :func:`data_view`).
    """
    n = len(first)
    if len(codes) and not 0 <= int(codes.min()) <= int(codes.max()) < len(pieces):
        raise IndexError(f"piece codes out of range: {int(codes.min())}..{int(codes.max())} of {len(pieces)} pieces")
    # Checked above with two whole-array reductions: Arrow's own check of every index costs more.
    taken = pc.take(pieces, pa.array(codes, pa.int16() if codes.dtype == np.int16 else pa.int32()), boundscheck=False)
    piece_offsets = np.frombuffer(taken.buffers()[1], dtype=np.int32, count=len(codes) + 1)
    offsets = np.empty(n + 1, dtype=np.int32)
    offsets[:n] = piece_offsets[first]
    offsets[n] = piece_offsets[-1]
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), taken.buffers()[2])


def data_view(strings: pa.StringArray) -> np.ndarray:
    """The bytes of a string array made by :func:`join_pieces`, writable."""
    return np.frombuffer(strings.buffers()[2], dtype=np.uint8)


def offsets_view(strings: pa.StringArray) -> np.ndarray:
    return np.frombuffer(strings.buffers()[1], dtype=np.int32, count=len(strings) + 1, offset=4 * strings.offset)


# ---- numbers --------------------------------------------------------------------------------------------------
def _digits(value: int, low: int, high: int, decimals: int, leading: bool) -> str:
    """Digit positions ``high`` down to ``low`` (0 is the last decimal) of a fixed-point number whose digits
    there are those of ``value``, with the decimal point in place; leading zeros of the integer part are left
    out when ``leading`` (nothing above them is printed), except the units digit."""
    out = []
    printing = not leading
    for p in range(high, low - 1, -1):
        digit = value // 10 ** (p - low) % 10
        if p == decimals - 1:
            out.append(".")
        if not printing and digit == 0 and p > decimals:
            continue
        printing = True
        out.append(chr(48 + digit))
    return "".join(out)


def _shortest(text: str, decimals: int) -> str:
    """Trailing zeros of the fraction removed, one kept (``21.50`` -> ``21.5``, ``3`` -> ``3.0``): repr style."""
    if decimals == 0:
        return text + ".0"
    whole, _, fraction = text.rpartition(".")
    return f"{whole}.{fraction.rstrip('0') or '0'}"


def fixed_text(scaled: int, decimals: int, shortest: bool = False) -> str:
    """The JSON text of ``scaled / 10**decimals``: all decimals kept, or (``shortest``) as Python's repr."""
    sign = "-" if scaled < 0 else ""
    whole, fraction = divmod(abs(scaled), 10**decimals)
    text = f"{sign}{whole}.{fraction:0{decimals}d}" if decimals else f"{sign}{whole}"
    return _shortest(text, decimals) if shortest else text


@functools.lru_cache(maxsize=256)
def _group_texts(group: int, decimals: int, shortest: bool) -> tuple[str, ...]:
    """The texts of digit group ``group`` (digits 3*group..3*group+2) for values 0..999; then, when the group
    holds integer digits above the units, the same without leading zeros (for when nothing above is printed)."""
    low, high = 3 * group, 3 * group + 2
    texts = [_digits(g, low, high, decimals, False) for g in range(1000)]
    if high > decimals:
        texts += [_digits(g, low, high, decimals, True) for g in range(1000)]
    if shortest and group == 0:
        texts = [_shortest(t, decimals) for t in texts]
    return tuple(texts)


class NumberPieces:
    """The text ``prefix + number + suffix`` of ``scaled / 10**decimals`` for integers ``scaled`` in
    ``[low, high]``, as :attr:`width` pieces of one :class:`PieceTable`.

    A range of at most ``whole_limit`` values is one piece per value. A larger one is a head piece (prefix,
    sign and leading digits, at most about ``head_limit`` of them) and ``width - 1`` groups of three digits
    (the decimal point inside the group it falls in; the last group carries the suffix). A group's table has
    a second half for when every digit above it is zero (then its own leading zeros are not printed).
    ``shortest`` prints as Python's ``repr`` does (``21.5``, ``3.0``); otherwise every decimal is kept
    (``21.50``); shortest with a split needs ``decimals <= 3``.
    """

    def __init__(self, table: PieceTable, low: int, high: int, decimals: int, prefix: str = "", suffix: str = "",
                 *, shortest: bool = False, whole_limit: int | None = None, head_limit: int | None = None) -> None:
        if low > high:
            raise ValueError(f"empty number range {low}..{high}")
        self.low, self.high, self.decimals = low, high, decimals
        self.count = high - low + 1
        whole_limit = WHOLE_LIMIT if whole_limit is None else whole_limit
        head_limit = HEAD_LIMIT if head_limit is None else head_limit
        if self.count <= whole_limit:
            self.groups = 0
            self.width = 1
            self.base = table.add([prefix + fixed_text(v, decimals, shortest) + suffix for v in range(low, high + 1)])
            return
        biggest = max(abs(low), abs(high))
        groups = 1
        while biggest // 1000 ** groups >= head_limit:
            groups += 1
        if shortest and decimals > 3:
            raise ValueError("shortest number text with more than 3 decimals needs a single piece per value")
        self.groups, self.width = groups, groups + 1
        self.dtype = np.int32 if biggest < 2**31 else np.int64
        unit = 1000 ** groups
        # Head pieces: non-negative values' heads, then negative values' heads (index by |scaled| // unit).
        heads = []
        if high >= 0:
            self.first_head = max(low, 0) // unit
            heads += [prefix + self._head(h, False) for h in range(self.first_head, high // unit + 1)]
        if low < 0:
            self.negative_base = len(heads)
            heads += [prefix + self._head(h, True) for h in range(0, -low // unit + 1)]
        self.base = table.add(heads)
        self.group_bases = []
        self.group_variants = []
        for i in range(groups):
            texts = _group_texts(i, decimals, shortest and i == 0)
            self.group_bases.append(table.add([t + suffix for t in texts] if i == 0 and suffix else texts))
            self.group_variants.append(len(texts) > 1000)

    def _head(self, h: int, negative: bool) -> str:
        start = 3 * self.groups
        top = max(start + len(str(h)) - 1, self.decimals)
        return ("-" if negative else "") + _digits(h, start, top, self.decimals, True)

    def codes(self, scaled: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Piece codes, shape ``(width, len(scaled))`` (int32: one row per slot), of values in ``[low, high]``."""
        m = len(scaled)
        if out is None:
            out = np.empty((self.width, m), dtype=np.int32)
        if not self.groups:
            np.add(scaled, self.base - self.low, out=out[0], casting="unsafe")
            return out
        scaled = np.asarray(scaled).astype(self.dtype, copy=False)
        negative = scaled < 0 if self.low < 0 else None
        magnitude = np.abs(scaled) if negative is not None else scaled
        quotient = magnitude
        for i in range(self.groups):  # group i: digits 3i..3i+2, in slot groups - i
            higher = quotient // 1000
            group = quotient - higher * 1000
            group += self.group_bases[i]
            if self.group_variants[i]:
                group += (higher == 0) * 1000
            out[self.groups - i] = group
            quotient = higher
        if negative is None:
            np.add(quotient, self.base - self.first_head, out=out[0], casting="unsafe")
        elif self.high < 0:
            np.add(quotient, self.base, out=out[0], casting="unsafe")
        else:
            out[0] = np.where(negative, quotient + (self.base + self.negative_base),
                              quotient + (self.base - self.first_head))
        return out


# ---- timestamps -----------------------------------------------------------------------------------------------
DAY_ALIGN = 64  # day tables cover whole 64-day spans, so consecutive chunks share them
_MINUTES_SECONDS = tuple(f":{s // 60:02d}:{s % 60:02d}." for s in range(3600))


class TimestampPieces:
    """ISO 8601 UTC text with milliseconds of epoch-millisecond values, ``prefix + 2026-06-01T13:45:12.345Z +
    suffix`` (``quote`` puts ``"`` around the timestamp), as 3 pieces: date and hour, ``:MM:SS.``,
    milliseconds; or 4 (date, ``HH``, ``:MM:SS.``, milliseconds) when the values span many days."""

    def __init__(self, table: PieceTable, first_day: int, days: int, prefix: str = "", suffix: str = "",
                 quote: bool = True) -> None:
        q = '"' if quote else ""
        self.first_day = first_day
        start = dt.date(1970, 1, 1) + dt.timedelta(days=first_day)
        dates = [prefix + q + (start + dt.timedelta(days=i)).isoformat() + "T" for i in range(days)]
        self.by_hour = days * 24 <= WHOLE_LIMIT * 4
        if self.by_hour:
            self.base = table.add([d + f"{h:02d}" for d in dates for h in range(24)])
            self.width = 3
        else:
            self.base = table.add(dates)
            self.hours = table.add([f"{h:02d}" for h in range(24)])
            self.width = 4
        self.minutes = table.add(_MINUTES_SECONDS)
        self.millis = table.add([f"{ms:03d}Z{q}{suffix}" for ms in range(1000)])

    def codes(self, epoch_ms: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Piece codes, shape ``(width, len(epoch_ms))`` (int32: one row per slot), of int64 epoch milliseconds."""
        if out is None:
            out = np.empty((self.width, len(epoch_ms)), dtype=np.int32)
        hours = epoch_ms // 3_600_000
        rest = epoch_ms - hours * 3_600_000
        seconds = rest // 1000
        np.add(rest - seconds * 1000, self.millis, out=out[-1], casting="unsafe")
        np.add(seconds, self.minutes, out=out[-2], casting="unsafe")
        if self.by_hour:
            np.add(hours, self.base - 24 * self.first_day, out=out[0], casting="unsafe")
        else:
            days = hours // 24
            np.add(days, self.base - self.first_day, out=out[0], casting="unsafe")
            np.add(hours - days * 24, self.hours, out=out[1], casting="unsafe")
        return out


def day_span(epoch_ms: np.ndarray) -> tuple[int, int]:
    """(first day, number of days) of a table covering the values, aligned to :data:`DAY_ALIGN` days."""
    if not len(epoch_ms):
        return 0, DAY_ALIGN
    first = int(epoch_ms.min()) // DAY_MS // DAY_ALIGN * DAY_ALIGN
    last = int(epoch_ms.max()) // DAY_MS
    return first, (last - first) // DAY_ALIGN * DAY_ALIGN + DAY_ALIGN


@functools.lru_cache(maxsize=64)
def _timestamp_table(first_day: int, days: int, prefix: str, suffix: str, quoted: bool):
    table = PieceTable()
    stamps = TimestampPieces(table, first_day, days, prefix, suffix, quoted)
    return table.array(), stamps


def timestamp_text(epoch_ms: np.ndarray, prefix: str = "", quoted: bool = True, suffix: str = "") -> pa.StringArray:
    """ISO 8601 UTC text with milliseconds, e.g. ``"2026-11-20T13:45:12.345Z"`` (quoted for JSON by default)."""
    epoch_ms = np.asarray(epoch_ms, dtype=np.int64)
    pieces, stamps = _timestamp_table(*day_span(epoch_ms), prefix, suffix, quoted)
    codes = stamps.codes(epoch_ms)
    return join_pieces(pieces, codes.T.ravel(), np.arange(0, codes.size, stamps.width, dtype=np.int32))


def join_rows(pieces: list, separator: str = "") -> pa.StringArray:
    """Row-wise concatenation of equally long string arrays (or scalars)."""
    return pc.binary_join_element_wise(*pieces, separator)
