"""Vectorised random draws built from a numpy Generator's raw 64-bit words.

numpy's bounded-integer and float routines cost several nanoseconds per value, most of it in producing the
random bits; these helpers take the raw words once (``rng.bit_generator.random_raw``) and derive uniform
integers, coin flips and weighted category codes with a few whole-array operations, using 32 bits per value
where that is precise enough and 53 where it is not. They are pure functions of the generator's state, so a
block's events stay a function of its ``(seed, block)`` stream.

Precision: an integer below ``bound`` is ``floor(u * bound)`` for a uniform ``u`` on a grid of ``2**-32``
(bounds up to ``2**16``: every value's probability is within ``bound / 2**32 < 2e-5`` of ``1 / bound``,
relative) or of ``2**-53`` (larger bounds); coin flips and weighted draws compare 32-bit uniforms with
thresholds, so probabilities are exact to ``2**-32``.
"""

from __future__ import annotations

import numpy as np

SMALL_BOUND = 1 << 16  # bounds up to this use 32 random bits per value
_TWO32 = float(1 << 32)
_TWO53 = float(1 << 53)


def words32(rng: np.random.Generator, m: int) -> np.ndarray:
    """``m`` uniform 32-bit words (uint32)."""
    return rng.bit_generator.random_raw((m + 1) // 2).view(np.uint32)[:m]


def unit(rng: np.random.Generator, m: int) -> np.ndarray:
    """``m`` uniform floats in [0, 1) on a grid of 2**-53."""
    raw = rng.bit_generator.random_raw(m)
    raw >>= np.uint64(11)
    out = raw.astype(np.float64)
    out *= 1.0 / _TWO53
    return out


def below(rng: np.random.Generator, bound, m: int) -> np.ndarray:
    """``m`` uniform integers in ``[0, bound)`` (int64). ``bound`` is an int >= 1 or an array of them (one per
    value)."""
    if np.ndim(bound) == 0:
        bound = int(bound)
        if bound <= SMALL_BOUND:  # floor(u * bound) exactly: the product fits in 48 bits
            out = words32(rng, m).astype(np.uint64)
            out *= np.uint64(bound)
            out >>= np.uint64(32)
            return out.view(np.int64)
        scaled = unit(rng, m)
        scaled *= bound
        return scaled.astype(np.int64)
    bound = np.asarray(bound)
    if len(bound) and int(bound.max()) > SMALL_BOUND:
        return (unit(rng, m) * bound).astype(np.int64)
    scaled = np.multiply(words32(rng, m), bound, dtype=np.float64)
    scaled *= 1.0 / _TWO32
    return scaled.astype(np.int64)


def coin(rng: np.random.Generator, p: float, m: int) -> np.ndarray:
    """``m`` booleans, each True with probability ``p``."""
    if p <= 0:
        return np.zeros(m, dtype=bool)
    if p >= 1:
        return np.ones(m, dtype=bool)
    return words32(rng, m) < np.uint32(min(max(round(p * _TWO32), 1), (1 << 32) - 1))


def thresholds(probabilities) -> np.ndarray:
    """The uint32 cut points of a weighted draw over categories with these probabilities (see :func:`weighted`)."""
    cumulative = np.cumsum(np.asarray(probabilities, dtype=np.float64))
    cumulative /= cumulative[-1]
    return np.minimum(np.round(cumulative[:-1] * _TWO32), (1 << 32) - 1).astype(np.uint32)


def lookup(cuts: np.ndarray) -> np.ndarray:
    """A table for :func:`weighted`: the code of every word whose high 16 bits are ``p``, at ``p`` (uint8 or
    uint16), or the table's largest value where the cuts fall inside those words (resolved word by word).
    Build it once per ``cuts`` (the caller caches it)."""
    dtype = np.uint8 if len(cuts) < 255 else np.uint16 if len(cuts) < 65535 else np.uint32
    prefix = np.arange(65536, dtype=np.uint64) << np.uint64(16)
    low = np.searchsorted(cuts, prefix, side="right")
    high = np.searchsorted(cuts, prefix | np.uint64(0xFFFF), side="right")
    return np.where(low == high, low, np.iinfo(dtype).max).astype(dtype)


def weighted(rng: np.random.Generator, cuts: np.ndarray, m: int, table: np.ndarray | None = None) -> np.ndarray:
    """``m`` category codes (int32) drawn with the probabilities :func:`thresholds` turned into ``cuts``. With
    ``table`` (:func:`lookup` of ``cuts``) the same codes from one table read per word, as uint8 or uint16."""
    if len(cuts) == 0:
        return np.zeros(m, dtype=np.int32)
    words = words32(rng, m)
    if table is not None:
        codes = table[words >> np.uint32(16)]
        unsure = np.flatnonzero(codes == np.iinfo(table.dtype).max)
        if len(unsure):  # words whose high 16 bits hold a cut (about len(cuts) / 65536 of them)
            codes[unsure] = np.searchsorted(cuts, words[unsure], side="right")
        return codes
    if len(cuts) > 16:
        return np.searchsorted(cuts, words, side="right").astype(np.int32)
    codes = np.zeros(m, dtype=np.int32)
    for cut in cuts:  # a few comparisons beat a binary search per value
        codes += words >= cut
    return codes


class AliasTable:
    """Walker's alias method over a fixed discrete distribution: one 32-bit word per draw, any size.

    A word ``u`` picks column ``c = floor(u * K / 2**32)``; the low 32 bits of ``u * K`` (uniform within the
    column) keep ``c`` when below ``cuts[c]``, else give ``alias[c]``. Built once (Vose's method) and cached by
    the caller; probabilities are exact to about ``K / 2**32``.
    """

    def __init__(self, probabilities) -> None:
        p = np.asarray(probabilities, dtype=np.float64)
        k = len(p)
        scaled = list(p / p.sum() * k)
        alias = list(range(k))
        cut = [1.0] * k
        small = [i for i, s in enumerate(scaled) if s < 1.0]
        large = [i for i, s in enumerate(scaled) if s >= 1.0]
        while small and large:
            s, g = small.pop(), large.pop()
            cut[s], alias[s] = scaled[s], g
            scaled[g] -= 1.0 - scaled[s]
            (small if scaled[g] < 1.0 else large).append(g)
        self.size = k
        self.cuts = np.minimum(np.round(np.array(cut) * _TWO32), (1 << 32) - 1).astype(np.uint64)
        self.cuts[np.array(cut) >= 1.0] = 1 << 32  # always keep
        self.alias = np.array(alias, dtype=np.int32)

    def draw(self, rng: np.random.Generator, m: int) -> np.ndarray:
        """``m`` codes in ``[0, size)`` (int32) with the table's probabilities."""
        product = words32(rng, m).astype(np.uint64)
        product *= np.uint64(self.size)
        column = (product >> np.uint64(32)).astype(np.int32)
        product &= np.uint64(0xFFFFFFFF)
        return np.where(product < self.cuts[column], column, self.alias[column])
