"""Keyed (counter-based) random numbers: each value is a pure function of ``(seed, stream, keys...)``.

The fleet and the data-quality scenarios need randomness that does not depend on which block, chunk or worker
asks for it: device 17's reboot times, the jitter of its 12,345th report or the walk of its temperature at a
given millisecond must come out the same whatever else is generated. A keyed draw hashes its keys with the
SplitMix64 finaliser (a bijection on 64-bit integers with good avalanche), vectorised over numpy arrays, so
there is no state to carry and no loop per value.

:func:`stationary_walk` builds on it: a random walk that can be evaluated at any time without its history
(a Brownian bridge refined level by level between keyed anchors, Lévy's construction).
"""

from __future__ import annotations

import functools
import statistics

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on a uint64 array (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def _u64(value) -> np.ndarray:
    return np.asarray(value).astype(np.uint64)


def keyed(seed: int, stream: int, *keys) -> np.ndarray:
    """A uint64 hash of ``(seed, stream, *keys)``; keys are integers or integer arrays (broadcast together)."""
    h = _mix(np.asarray([(seed + 0x9E3779B97F4A7C15 * (stream + 1)) % 2**64], dtype=np.uint64))
    for key in keys:
        h = _mix((h ^ _u64(key)) + _GOLDEN)
    return h


def extend(h: np.ndarray, key) -> np.ndarray:
    """The hash of one more key after the keys behind ``h``."""
    return _mix((h ^ _u64(key)) + _GOLDEN)


def to_uniform(h: np.ndarray) -> np.ndarray:
    """Floats in [0, 1) from hashes (53 bits)."""
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


@functools.lru_cache(maxsize=1)
def _normal_quantiles() -> np.ndarray:
    inverse = statistics.NormalDist().inv_cdf
    return np.array([inverse((i + 0.5) / 65536) for i in range(65536)])


def to_normal(h: np.ndarray) -> np.ndarray:
    """Standard normal floats from hashes: the normal quantile of the top 16 bits (a table lookup; values are
    on a grid of 65,536 quantiles, so the tails stop at about 4.3 standard deviations)."""
    return _normal_quantiles()[(h >> np.uint64(48)).astype(np.intp)]


def uniform(seed: int, stream: int, *keys) -> np.ndarray:
    return to_uniform(keyed(seed, stream, *keys))


def normal(seed: int, stream: int, *keys) -> np.ndarray:
    return to_normal(keyed(seed, stream, *keys))


def choice(u: np.ndarray, probabilities) -> np.ndarray:
    """Index of the category each uniform ``u`` falls in, for categories with these probabilities."""
    cumulative = np.cumsum(np.asarray(probabilities, dtype=np.float64))
    return np.minimum(np.searchsorted(cumulative / cumulative[-1], u, side="right"), len(cumulative) - 1)


def stationary_walk(seed: int, stream: int, key, t_ms: np.ndarray, period_ms: int, sd: float,
                    levels: int = 8) -> np.ndarray:
    """A random walk with ``N(0, sd**2)`` values at every time, evaluated at ``t_ms`` with no history.

    Anchors every ``period_ms`` are independent ``N(0, sd**2)`` draws keyed by ``(key, anchor)``; between two
    anchors the path is a Brownian bridge whose diffusion (``2 sd**2`` per period) keeps the variance at
    ``sd**2`` everywhere, refined by midpoint displacement ``levels`` times (so down to ``period / 2**levels``)
    and linear below that. Nearby times are strongly correlated (it moves like a random walk), times a period
    or more apart are nearly independent (it does not wander off). The same ``(seed, stream, key, t)`` always
    gives the same value, whatever else is evaluated with it.
    """
    if sd == 0:
        return np.zeros(np.shape(t_ms))
    t_ms = np.asarray(t_ms, dtype=np.int64)
    anchor = t_ms // period_ms
    u = (t_ms - anchor * period_ms) / period_ms
    base = keyed(seed, stream, key, anchor)
    left = to_normal(extend(base, 0))
    right = to_normal(extend(keyed(seed, stream, key, anchor + 1), 0))
    low = np.zeros_like(u)
    width = 1.0
    index = np.zeros(u.shape, dtype=np.int64)
    for level in range(levels):
        half = width / 2
        mid = (left + right) / 2 + np.sqrt(half) * to_normal(extend(base, ((level + 1) << 32) | index))
        upper = u >= low + half
        left = np.where(upper, mid, left)
        right = np.where(upper, right, mid)
        low = np.where(upper, low + half, low)
        index = 2 * index + upper
        width = half
    return sd * (left + (right - left) * ((u - low) / width))
