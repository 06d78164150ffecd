"""Vectorised JSON text (pieces, numbers, timestamps), the raw-bit draws and the allocator switch."""

from __future__ import annotations

import datetime as dt
import json
import math
import os

import numpy as np
import pyarrow as pa
import pytest

from iotgen.base import draws, jsontext
from iotgen.base.allocator import retain_freed_memory
from iotgen.base.jsontext import NumberPieces, PieceTable, TimestampPieces, fixed_text, join_pieces


def render(pieces: PieceTable, codes: np.ndarray) -> list[str]:
    """Strings from a (width, m) code matrix, one per column."""
    width, m = codes.shape
    return join_pieces(pieces.array(), codes.T.ravel(), np.arange(0, width * m, width, dtype=np.int32)).to_pylist()


def expected_fixed(scaled: int, decimals: int) -> str:
    sign = "-" if scaled < 0 else ""
    whole, fraction = divmod(abs(scaled), 10**decimals)
    return f"{sign}{whole}.{fraction:0{decimals}d}" if decimals else f"{sign}{whole}"


@pytest.mark.parametrize("low, high, decimals", [
    (0, 5000, 0), (380, 5000, 0), (-5, 5, 0), (-120, -30, 0), (0, 10**6, 1), (-60_000_000, 70_000_000, 6),
    (-180_000_000, 180_000_000, 6), (0, 10**8, 3), (1, 2000, 0), (4950, 6050, 2), (0, 10**12, 9), (-999, -1, 3),
    (10, 86400, 0), (-10**15, 10**15, 2),
])
def test_number_pieces_fixed_text_everywhere(low, high, decimals):
    table = PieceTable()
    number = NumberPieces(table, low, high, decimals, ',"k":', "}")
    rng = np.random.default_rng(low & 0xFFFF)
    edges = [low, high, 0, 1, -1, 999, 1000, 1001, -1000, -1001, 10**decimals, -(10**decimals), 10**6, -(10**6)]
    values = np.array(sorted({v for v in edges if low <= v <= high} | set(rng.integers(low, high + 1, 3000).tolist())))
    texts = render(table, number.codes(values))
    assert texts == [',"k":' + expected_fixed(int(v), decimals) + "}" for v in values]
    for text, v in zip(texts[:200], values[:200]):
        assert json.loads(text[5:-1]) == pytest.approx(v / 10**decimals, abs=0)


@pytest.mark.parametrize("low, high, decimals", [(0, 1000, 1), (-4096, 12287, 2), (0, 1048575, 2), (-50, 3000, 0),
                                                  (-2, 2, 3), (0, 10**7, 3)])
def test_number_pieces_shortest_text_is_repr(low, high, decimals):
    table = PieceTable()
    number = NumberPieces(table, low, high, decimals, "", "", shortest=True)
    rng = np.random.default_rng(1)
    values = np.unique(np.concatenate([[low, high, 0] if low <= 0 <= high else [low, high],
                                       rng.integers(low, high + 1, 3000)]))
    texts = render(table, number.codes(values))
    assert texts == [repr(round(int(v) / 10**decimals, decimals)) for v in values]


def test_number_pieces_split_keeps_tables_small():
    table = PieceTable()
    number = NumberPieces(table, -180_000_000, 180_000_000, 6)
    assert number.width == 3 and len(table.pieces) < 6000
    shared = len(table.pieces)
    NumberPieces(table, -60_000_000, 70_000_000, 6, ',"lat":')  # digit groups are shared
    assert len(table.pieces) - shared < 300
    with pytest.raises(ValueError):
        NumberPieces(PieceTable(), 0, 10**9, 6, shortest=True)


def test_fixed_text():
    assert [fixed_text(v, d) for v, d in ((2150, 2), (-5, 2), (0, 0), (7, 3))] == ["21.50", "-0.05", "0", "0.007"]
    assert [fixed_text(v, d, shortest=True) for v, d in ((2150, 2), (3, 0), (0, 1))] == ["21.5", "3.0", "0.0"]


@pytest.mark.parametrize("days", [8, 400])
def test_timestamp_pieces_iso_text(days):
    start = dt.datetime(1969, 12, 25, tzinfo=dt.timezone.utc)
    rng = np.random.default_rng(days)
    first_ms = int(start.timestamp() * 1000)
    millis = np.sort(first_ms + rng.integers(0, days * 86_400_000, 2000))
    table = PieceTable()
    stamps = TimestampPieces(table, *jsontext.day_span(millis), prefix="<", suffix=">")
    assert stamps.width == (3 if days < 100 else 4)
    expected = ['<"' + (start + dt.timedelta(milliseconds=int(m - first_ms))).isoformat(timespec="milliseconds")
                .replace("+00:00", "Z") + '">' for m in millis]
    assert render(table, stamps.codes(millis)) == expected
    unquoted = jsontext.timestamp_text(millis, quoted=False).to_pylist()
    assert unquoted == [e[2:-2] for e in expected]


def test_join_pieces_runs_and_patch():
    pieces = pa.array(["a", "bc", "", "def"])
    strings = join_pieces(pieces, np.array([1, 0, 3, 2, 0], dtype=np.int32), np.array([0, 2, 4], dtype=np.int32))
    assert strings.to_pylist() == ["bca", "def", "a"]
    jsontext.data_view(strings)[jsontext.offsets_view(strings)[:-1]] = ord("X")
    assert strings.to_pylist() == ["Xca", "Xef", "X"]


def test_piece_table_stores_identical_runs_once():
    table = PieceTable()
    assert table.add(["x", "y"]) == 0 and table.add(["z"]) == 2 and table.add(["x", "y"]) == 0
    assert table.pieces == ["x", "y", "z"]


# ---- draws ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bound", [1, 2, 7, 1000, 65536, 65537, 10**8 + 1, 2**40])
def test_below_stays_in_bounds_and_covers_them(bound):
    rng = np.random.default_rng(bound)
    values = draws.below(rng, bound, 60_000)
    assert values.min() >= 0 and values.max() < bound
    if bound <= 1000:
        counts = np.bincount(values, minlength=bound)
        assert (counts > 0).all()
        expected = 60_000 / bound
        assert np.abs(counts - expected).max() < 6 * math.sqrt(expected)
    else:
        assert abs(values.mean() / (bound - 1) - 0.5) < 0.01


def test_below_per_value_bounds_and_unit():
    rng = np.random.default_rng(3)
    bounds = np.array([1, 2, 5, 840, 70_000] * 2000)
    values = draws.below(rng, bounds, len(bounds))
    assert (values >= 0).all() and (values < bounds).all()
    assert (draws.below(rng, bounds[:4], 4) < bounds[:4]).all()
    u = draws.unit(rng, 100_000)
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.005


def test_coin_and_weighted_follow_their_probabilities():
    rng = np.random.default_rng(4)
    assert not draws.coin(rng, 0.0, 1000).any() and draws.coin(rng, 1.0, 1000).all()
    assert abs(draws.coin(rng, 0.2, 200_000).mean() - 0.2) < 0.005
    probabilities = [0.5, 0.0, 0.3, 0.2]
    codes = draws.weighted(rng, draws.thresholds(probabilities), 200_000)
    shares = np.bincount(codes, minlength=4) / len(codes)
    assert shares[1] == 0 and np.allclose(shares, probabilities, atol=0.005)
    many = np.full(40, 1 / 40)  # more than 16 categories: binary search
    codes = draws.weighted(rng, draws.thresholds(many), 80_000)
    assert codes.min() == 0 and codes.max() == 39 and np.bincount(codes).min() > 1700
    assert (draws.weighted(rng, draws.thresholds([1.0]), 10) == 0).all()


def test_draws_are_a_function_of_the_generator_state():
    a, b = np.random.default_rng(9), np.random.default_rng(9)
    assert (draws.below(a, 1000, 50) == draws.below(b, 1000, 50)).all()
    assert (draws.words32(a, 7) == draws.words32(b, 7)).all()


def test_retain_freed_memory_is_explicit_and_repeatable():
    first = retain_freed_memory()
    assert isinstance(first, bool) and retain_freed_memory() == first


def test_freed_memory_returned_gives_large_blocks_back_then_retains_again():
    """Inside freed_memory_returned a freed 64 MB block leaves the process (a parent that only writes what workers
    generate); after it, retain_freed_memory's setting holds again (the block stays for reuse). glibc only."""
    import subprocess
    import sys

    code = """
import sys
from iotgen.base.allocator import freed_memory_returned, retain_freed_memory
def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096
def given_back():
    block = bytearray(64 << 20)
    during = rss()
    del block
    return during - rss() > (32 << 20)
if not retain_freed_memory():
    print('no glibc'); sys.exit()
with freed_memory_returned():
    inside = given_back()
print(inside, given_back())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}).stdout.split()
    if out == ["no", "glibc"]:
        pytest.skip("not glibc")
    assert out == ["True", "False"]


def test_alias_table_reproduces_its_distribution():
    rng = np.random.default_rng(8)
    probabilities = np.array([0.0, 0.5, 0.25, 1e-3, 0.249, 0.0])
    table = draws.AliasTable(probabilities)
    codes = table.draw(rng, 400_000)
    shares = np.bincount(codes, minlength=6) / len(codes)
    assert codes.dtype == np.int32 and shares[0] == 0 and shares[5] == 0
    assert np.allclose(shares, probabilities, atol=0.003) and 200 < np.bincount(codes)[3] < 600
    wide = draws.AliasTable(np.arange(1, 20_002, dtype=float))  # a large, skewed table
    drawn = wide.draw(rng, 200_000)
    assert drawn.min() >= 0 and drawn.max() < 20_001 and abs(drawn.mean() - 2 * 20_001 / 3) < 60


def test_retain_freed_memory_sets_deltalakes_jemalloc_unless_set(monkeypatch):
    from iotgen.base.allocator import DELTALAKE_JEMALLOC

    monkeypatch.delenv("_RJEM_MALLOC_CONF", raising=False)
    retain_freed_memory()
    assert os.environ["_RJEM_MALLOC_CONF"] == DELTALAKE_JEMALLOC
    monkeypatch.setenv("_RJEM_MALLOC_CONF", "narenas:1")
    retain_freed_memory()
    assert os.environ["_RJEM_MALLOC_CONF"] == "narenas:1"
