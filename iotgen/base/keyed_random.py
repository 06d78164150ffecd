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
import sys

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
#: to_normal reads its 16 bits as a uint16 view of the hash where the machine is little-endian (5x faster).
_LITTLE_ENDIAN = sys.byteorder == "little"


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on a uint64 array (wrapping arithmetic), in place: ``x`` must be a fresh array."""
    x ^= x >> _S30
    x *= _M1
    x ^= x >> _S27
    x *= _M2
    x ^= x >> _S31
    return x


def _u64(value) -> np.ndarray:
    value = np.asarray(value)
    return value.view(np.uint64) if value.dtype == np.int64 else value.astype(np.uint64)


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


def to_normal(h: np.ndarray, part: int = 0) -> np.ndarray:
    """Standard normal floats from hashes: the normal quantile of 16 bits (a table lookup; values are on a grid
    of 65,536 quantiles, so the tails stop at about 4.3 standard deviations). ``part`` 0-3 picks which 16 bits,
    so one hash gives up to four independent normals."""
    if _LITTLE_ENDIAN and isinstance(h, np.ndarray) and h.ndim and h.dtype == np.uint64 and h.flags.c_contiguous:
        # Bits 48 - 16 * part and up are the uint16 number 3 - part of each hash (indexing by uint16 is fast).
        return _normal_quantiles()[h.view(np.uint16)[..., 3 - part::4]]
    bits = (h >> np.uint64(48 - 16 * part)) & np.uint64(0xFFFF)
    return _normal_quantiles()[bits.astype(np.intp)]


def uniform(seed: int, stream: int, *keys) -> np.ndarray:
    return to_uniform(keyed(seed, stream, *keys))


def normal(seed: int, stream: int, *keys) -> np.ndarray:
    return to_normal(keyed(seed, stream, *keys))


def choice(u: np.ndarray, probabilities) -> np.ndarray:
    """Index of the category each uniform ``u`` falls in, for categories with these probabilities."""
    cumulative = np.cumsum(np.asarray(probabilities, dtype=np.float64))
    return np.minimum(np.searchsorted(cumulative / cumulative[-1], u, side="right"), len(cumulative) - 1)


def stationary_walk(seed: int, stream: int, key, t_ms: np.ndarray, period_ms: int, sd: float,
                    levels: int = 8, on_grid: bool = False) -> np.ndarray:
    """A random walk with ``N(0, sd**2)`` values at every time, evaluated at ``t_ms`` with no history.

    Anchors every ``period_ms`` are independent ``N(0, sd**2)`` draws keyed by ``(key, anchor)``; between two
    anchors the path is a Brownian bridge whose diffusion (``2 sd**2`` per period) keeps the variance at
    ``sd**2`` everywhere, built by Lévy's construction: the straight line between the anchors plus, at each of
    ``levels`` levels, a keyed normal times a tent over each of the level's ``2**level`` intervals (midpoint
    displacement), so it is linear between the ``2**levels`` finest grid points. Nearby times are strongly
    correlated (it moves like a random walk), times a period or more apart nearly independent (it does not
    wander off). The same ``(seed, stream, key, t)`` always gives the same value, whatever else is evaluated.

    ``on_grid``: evaluate each distinct grid point once and interpolate: much faster when many events share
    few keys (a region's weather); the values differ from the direct sum only by float rounding, so a
    quantity must always be evaluated the same way.
    """
    return stationary_walks(seed, stream, key, t_ms, period_ms, (sd,), levels, on_grid)[0]


def stationary_walks(seed: int, stream: int, key, t_ms: np.ndarray, period_ms: int, sds: tuple[float, ...],
                     levels: int = 8, on_grid: bool = False) -> list[np.ndarray]:
    """Up to four independent :func:`stationary_walk` s with the same key, period and levels, one per ``sd``,
    for the price of one (each hash gives four normals)."""
    t_ms = np.asarray(t_ms, dtype=np.int64)
    key = np.broadcast_to(np.asarray(key, dtype=np.int64), t_ms.shape)
    if not t_ms.size:
        return [np.zeros(t_ms.shape) for _ in sds]
    if on_grid:
        steps = 1 << levels
        position = t_ms.astype(np.float64) * (steps / period_ms)
        point = np.floor(position).astype(np.int64)
        low = point.min()
        span = int(point.max() - low) + 2
        packed = np.concatenate([key * span + (point - low), key * span + (point + 1 - low)])
        unique, where = _unique_inverse(packed)
        grid_key, grid_point = np.divmod(unique, span)
        anchor, within = np.divmod(grid_point + low, steps)
        where = where.reshape(2, -1)
        fraction = position - point
        return [sd * (v[where[0]] * (1 - fraction) + v[where[1]] * fraction)
                for sd, v in zip(sds, _bridges(seed, stream, grid_key, anchor, within / steps, levels, len(sds)))]
    anchor = t_ms // period_ms
    u = (t_ms - anchor * period_ms) / period_ms
    return [sd * v for sd, v in zip(sds, _bridges(seed, stream, key, anchor, u, levels, len(sds)))]


def _unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` of an int64 array; when the values span a small range (a
    region's grid points over a block), by marking them in a table of that range instead of sorting."""
    low, high = int(values.min()), int(values.max())
    if high - low >= max(4 * len(values), 1 << 16):
        return np.unique(values, return_inverse=True)
    offset = values - low
    present = np.zeros(high - low + 1, dtype=bool)
    present[offset] = True
    rank = np.cumsum(present) - 1
    return np.flatnonzero(present) + low, rank[offset]


def _bridges(seed: int, stream: int, key: np.ndarray, anchor: np.ndarray, u: np.ndarray, levels: int,
             count: int) -> list[np.ndarray]:
    """``count`` unit-variance walks at fraction ``u`` of the way from ``anchor`` to ``anchor + 1``."""
    if not 1 <= count <= 4:
        raise ValueError("between 1 and 4 walks share one hash")
    base = keyed(seed, stream, key, anchor)
    left, right = extend(base, 0), extend(keyed(seed, stream, key, anchor + 1), 0)
    walks = []
    if levels:
        scale = np.exp2(np.arange(levels))[:, None]  # intervals per period at each level
        weight = u[None, :] * scale  # the position in intervals, then (in place) its tent * midpoint sd:
        index = weight.astype(np.int64)  # (1 - |2 (position - index) - 1|) * sqrt(0.5 / scale)
        weight -= index
        weight *= 2.0
        weight -= 1.0
        np.abs(weight, out=weight)
        np.subtract(1.0, weight, out=weight)
        weight *= np.sqrt(0.5 / scale)
        level = (np.arange(1, levels + 1, dtype=np.int64) << 32)[:, None]
        index |= level  # the displacement's hash is extend(base, level | index), computed in place:
        displacement = index.view(np.uint64)
        displacement ^= base
        displacement += _GOLDEN
        _mix(displacement)
    for part in range(count):
        a, b = to_normal(left, part), to_normal(right, part)
        value = a + (b - a) * u
        if levels:
            value += np.einsum("ij,ij->j", weight, to_normal(displacement, part))
        walks.append(value)
    return walks
