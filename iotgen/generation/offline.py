"""Offline devices that catch up, and events dropped at the source: which of a fleet's reports are delivered,
and when they arrive.

Without these scenarios event ``i`` is the fleet's ``i``-th report in time order, delivered as it is measured.
With them event ``i`` is the ``i``-th report to **arrive**, in order of arrival (ties by device, then report):

* ``offline``: each device is offline ``rate`` of its time, in gaps ``duration_ms`` long, one per period of
  ``duration_ms / rate`` (at a keyed point of the period: ``[g, e)``). Its reports measured in a gap are
  buffered, at most ``buffer`` of them (``overflow``: ``drop_oldest`` keeps the newest, as a ring buffer does,
  ``drop_newest`` the first ones); on reconnecting at ``e`` it uploads them, oldest first, the ``j``-th
  arriving at ``e + j * upload_interval_ms``. The rest are lost.
* ``dropped``: ``rate`` of each device's reports are never sent: one report in each stratum of ``1 / rate``
  consecutive reports of the device, at a keyed position in it.

Nothing is carried between blocks: how many reports arrive before any time ``T`` is a sum over the devices of
closed forms (the fleet's reports before ``T``, the drops among them, the gap of ``T``'s period, and a
per-device table of the reports lost in earlier periods), so block ``b`` finds the times of its first and last
arrivals by a search on ``T`` and lists the arrivals between them. A delivered event is the fleet's event of that
device and time (readings recomputed at its measurement time), with the per-event draws (``event_id``,
``json_column``, the gateway's delays) of the slot it arrives in; ``created_at`` and ``updated_at`` follow its
arrival.

What is not delivered is labelled where it would have been: ``event_index`` is the position of the first event
arriving after it (a dropped report at its measurement time, a gap and its lost reports at the reconnection).

With the device registry the fleet's ``reports_before``/``report_times`` count only the reports a device makes
between its commissioning and decommissioning (numbered from its first), so everything above acts on those; a
gap is labelled only where it overlaps the device's service, and a backlog keeps its measurement time (the
registry's attributes as of then), even when its upload comes after a decommissioning or replacement.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..base import keyed_random as kr
from ..base.errors import InputError
from ..base.times import HOUR_MS
from .generator import BLOCK_SIZE, GeneratorSpec

OVERFLOW_POLICIES = ("drop_oldest", "drop_newest")
MAX_DROP_RATE = 0.9
# Keyed streams (see iotgen.keyed_random), next to the scenarios' 400-422.
_GAP, _DROP = 430, 431


@dataclass(frozen=True)
class Offline:
    """Offline gaps and the catch-up upload (see the module docstring). Defaults: the spec file's."""

    rate: float
    duration_ms: int = 2 * HOUR_MS
    buffer: int = 100
    overflow: str = "drop_oldest"
    upload_interval_ms: int = 100

    def __post_init__(self) -> None:
        if self.overflow not in OVERFLOW_POLICIES:
            raise InputError(f"offline: overflow must be one of {', '.join(OVERFLOW_POLICIES)}, got {self.overflow!r}")
        most = self.max_rate(self.duration_ms, self.upload_ms)
        if not 0 <= self.rate <= most:
            raise InputError(f"offline: rate must be >= 0 and <= duration / (duration + buffer * upload_interval) = "
                             f"{most:.6g} (each gap and its upload fit in one period of duration / rate), "
                             f"got {self.rate}")

    @property
    def period_ms(self) -> int:
        """One gap per period this long."""
        return int(round(self.duration_ms / self.rate)) if self.rate > 0 else 0

    @property
    def upload_ms(self) -> int:
        """The longest upload (a full buffer)."""
        return self.buffer * self.upload_interval_ms

    @staticmethod
    def max_rate(duration_ms: int, upload_ms: int) -> float:
        """The highest rate at which a gap and a full upload fit in each period."""
        return duration_ms / (duration_ms + upload_ms + 1)


@dataclass(frozen=True)
class Dropped:
    """``rate`` of each device's reports are never sent."""

    rate: float

    def __post_init__(self) -> None:
        if not 0 <= self.rate <= MAX_DROP_RATE:
            raise InputError(f"dropped: rate must be >= 0 and <= {MAX_DROP_RATE}, got {self.rate}")


@dataclass(frozen=True)
class Delivered:
    """The events of one block, in order of arrival, and what was not delivered around them.

    Per event: ``device`` (0-based), ``time`` (when it was measured, epoch ms) and ``arrival`` (epoch ms),
    ``catch_up`` (uploaded after a gap). Per undelivered report or gap: ``missing_index`` (the position of the
    first event arriving after it), ``missing_device``, ``missing_kind`` (``offline``, ``overflow``,
    ``dropped``), ``missing_time`` (measured, or the gap's start) and ``missing_end`` (the gap's end, or -1)."""

    device: np.ndarray
    time: np.ndarray
    arrival: np.ndarray
    catch_up: np.ndarray
    missing_index: np.ndarray
    missing_device: np.ndarray
    missing_kind: np.ndarray
    missing_time: np.ndarray
    missing_end: np.ndarray


MISSING_KINDS = ("offline", "overflow", "dropped")


def delivered_block(spec: GeneratorSpec, offline: Offline | None, dropped: Dropped | None, block: int) -> Delivered:
    """The arrivals of ``block`` (positions ``block * BLOCK_SIZE`` and up): a pure function of the arguments.
    A rate of 0 is the scenario off."""
    offline = offline if offline is not None and offline.rate > 0 else None
    dropped = dropped if dropped is not None and dropped.rate > 0 else None
    if spec.fleet is None:
        raise InputError("the offline and dropped scenarios need the fleet profile (PROFILE=fleet): the independent "
                         "profile has no reporting schedule")
    return _schedule(spec, offline, dropped).block(block)


@functools.lru_cache(maxsize=8)
def _schedule(spec: GeneratorSpec, offline: Offline | None, dropped: Dropped | None) -> "_Schedule":
    """The delivery schedule of a spec, memoised like the fleet's devices (a pure function of its arguments:
    the memo changes no result, it only spares the blocks of one run from rebuilding it)."""
    return _Schedule(spec, offline, dropped)


def _keep(cache: OrderedDict, key: Any, value: Any, size: int, lock: threading.Lock) -> Any:
    """Remember ``value`` under ``key`` in a cache of the ``size`` latest; returns ``value``."""
    with lock:
        cache[key] = value
        while len(cache) > size:
            cache.popitem(last=False)
    return value


class _Schedule:
    """The delivery schedule of one spec. Times are ms after the window start unless said otherwise."""

    def __init__(self, spec: GeneratorSpec, offline: Offline | None, dropped: Dropped | None) -> None:
        assert spec.fleet is not None
        self.spec, self.offline, self.dropped = spec, offline, dropped
        self.fleet, self.t0 = spec.fleet, spec.window_start_ms
        self.count = spec.fleet.device_count
        self.devices = np.arange(self.count, dtype=np.int64)
        self.rate_per_ms = spec.fleet.events_per_hour(spec) / HOUR_MS * (1 - (dropped.rate if dropped else 0))
        self._lost = np.zeros((self.count, 1), dtype=np.int64)  # reports lost before each period, per device
        self._reaching: OrderedDict[int, int] = OrderedDict()
        self._periods: OrderedDict[int, tuple[np.ndarray, ...]] = OrderedDict()
        self._lock = threading.Lock()

    # ---- the fleet's reports, and the drops among them -------------------------------------------------------
    def reports_before(self, device: np.ndarray, t: np.ndarray) -> np.ndarray:
        return self.fleet.reports_before(self.spec, device, self.t0 + t)

    def report_time(self, device: np.ndarray, k: np.ndarray) -> np.ndarray:
        return self.fleet.report_times(self.spec, device, k) - self.t0

    def active_span(self, device: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        start, stop = self.fleet.active_span(self.spec, device)
        return start - self.t0, stop - self.t0

    def _stratum(self, j: np.ndarray) -> np.ndarray:
        """The first report of drop stratum ``j`` (strata of ``1 / rate`` reports, ``floor(j / rate)``)."""
        assert self.dropped is not None
        return np.floor(j / self.dropped.rate).astype(np.int64)

    def drops_before(self, device: np.ndarray, k: np.ndarray) -> np.ndarray:
        """How many of a device's first ``k`` reports are dropped: one per stratum, at a keyed place in it."""
        if self.dropped is None:
            return np.zeros(np.broadcast(device, k).shape, dtype=np.int64)
        k = np.asarray(k, dtype=np.int64)
        strata = np.ceil(k * self.dropped.rate).astype(np.int64)  # strata starting before report k ...
        strata += self._stratum(strata) < k                       # ... with float rounding mended
        strata -= (strata > 0) & (self._stratum(np.maximum(strata - 1, 0)) >= k)
        last = np.maximum(strata - 1, 0)
        first, following = self._stratum(last), self._stratum(last + 1)
        at = first + np.floor(kr.uniform(self.spec.seed, _DROP, device, last) * (following - first)).astype(np.int64)
        return np.where(strata > 0, last + (at < k), 0)

    def sent_before(self, device: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Reports measured before ``t`` and not dropped."""
        k = self.reports_before(device, t)
        return k - self.drops_before(device, k)

    # ---- gaps ----------------------------------------------------------------------------------------------
    def gap(self, device: np.ndarray, period: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start and end of each device's gap in ``period``: at a keyed point of the period, leaving room for the
        upload before the period ends."""
        o = self.offline
        assert o is not None
        room = o.period_ms - o.duration_ms - o.upload_ms
        start = period * o.period_ms + np.floor(kr.uniform(self.spec.seed, _GAP, device, period) * (room + 1))
        start = start.astype(np.int64)
        return start, start + o.duration_ms

    def _gap_counts(self, device: np.ndarray, period: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per gap: start, end, reports sent before the start, reports buffered, reports kept."""
        assert self.offline is not None
        start, end = self.gap(device, period)
        before = self.sent_before(device, start)
        buffered = self.sent_before(device, end) - before
        return start, end, before, buffered, np.minimum(buffered, self.offline.buffer)

    def lost_before(self, device: np.ndarray, period: np.ndarray) -> np.ndarray:
        """Reports lost (buffer overflow) in the device's gaps before ``period``."""
        need = int(period.max()) + 1 if len(period) else 1
        with self._lock:
            table = self._lost
            if table.shape[1] < need:
                width = max(need, 2 * table.shape[1])
                periods = np.arange(width - 1, dtype=np.int64)
                d = np.repeat(self.devices, len(periods))
                _, _, _, buffered, kept = self._gap_counts(d, np.tile(periods, self.count))
                lost = (buffered - kept).reshape(self.count, len(periods))
                table = np.zeros((self.count, width), dtype=np.int64)
                np.cumsum(lost, axis=1, out=table[:, 1:])
                self._lost = table
        return table[device, period]

    def _period(self, period: int) -> tuple[np.ndarray, ...]:
        """Every device's gap in ``period`` (start, end, reports sent before it, buffered, kept) and the reports it
        lost before the period: what the arrivals at any time of the period depend on (cached)."""
        with self._lock:
            known = self._periods.get(period)
        if known is None:
            p = np.full(self.count, period, dtype=np.int64)
            known = _keep(self._periods, period, (*self._gap_counts(self.devices, p),
                                                  self.lost_before(self.devices, p)), 8, self._lock)
        return known

    # ---- arrivals ----------------------------------------------------------------------------------------------
    def delivered_before(self, t: int) -> int:
        """How many events arrive before ``t``: a sum over the devices of closed forms."""
        sent = self.sent_before(self.devices, np.full(self.count, t, dtype=np.int64))
        o = self.offline
        if o is None:
            return int(sent.sum())
        start, end, before, buffered, kept, lost = self._period(t // o.period_ms)
        uploaded = np.minimum(kept, -((end - t) // o.upload_interval_ms))  # arrivals e + j * step before t
        arrived = np.where(t <= start, sent, np.where(t <= end, before, sent - buffered + uploaded))
        return int((arrived - lost).sum())

    def first_time_reaching(self, m: int) -> int:
        """The earliest time before which ``m`` events arrive (m >= 1): a search that steps by the mean rate
        while the step is large, then halves."""
        with self._lock:
            known = self._reaching.get(m)
        if known is not None:
            return known
        low, below = 0, 0  # delivered_before(low) = below < m <= delivered_before(high)
        high, t = None, max(1, int(m / self.rate_per_ms))
        while high is None:
            count = self.delivered_before(t)
            if count >= m:
                high = t
            else:
                low, below = t, count
                t += max(1000, int(1.5 * (m - count) / self.rate_per_ms))
        for step in range(200):
            if high - low <= 1:
                break
            guess = low + int((m - below) / self.rate_per_ms)
            t = guess if step % 2 == 0 and low < guess < high else (low + high) // 2
            count = self.delivered_before(t)
            if count >= m:
                high = t
            else:
                low, below = t, count
        return _keep(self._reaching, m, high, 16, self._lock)

    def block(self, block: int) -> Delivered:
        n = BLOCK_SIZE
        first = block * n
        low = self.first_time_reaching(first) - 1 if first else 0  # fewer than `first` arrive before `low`
        high = self.first_time_reaching(first + n)  # `first + n` or more arrive before `high`
        already = self.delivered_before(low)
        found = _Found()
        # The reports measured in [low, high): delivered as measured, unless dropped or in a gap.
        d = self.devices
        device, k = _expand(d, self.reports_before(d, np.full(self.count, low)),
                            self.reports_before(d, np.full(self.count, high)))
        t = self.report_time(device, k)
        dropped = self.drops_before(device, k + 1) > self.drops_before(device, k)
        in_gap = np.zeros(len(k), dtype=bool)
        if self.offline is not None:
            start, end = self.gap(device, t // self.offline.period_ms)
            in_gap = (t >= start) & (t < end)
            self._catch_up(low, high, found)
        regular = ~dropped & ~in_gap
        found.event(t[regular], device[regular], k[regular], t[regular], False)
        found.missing("dropped", t[dropped], device[dropped], k[dropped], t[dropped])
        c = found.columns()
        order = np.lexsort((c["report"], c["device"], c["key"]))  # arrival order: time, device, report
        is_event = c["is_event"][order]
        rank = already + np.cumsum(is_event) - is_event  # events arriving before each, in the whole run
        if int(is_event.sum()) != self.delivered_before(high) - already:
            raise AssertionError(f"block {block}: the arrivals listed do not match their count")
        mine = (rank >= first) & (rank < first + n)
        rows, gone = order[mine & is_event], order[mine & ~is_event]
        if len(rows) != n:
            raise AssertionError(f"block {block}: {len(rows)} arrivals, not {n}")
        t0 = self.t0
        return Delivered(c["device"][rows], c["time"][rows] + t0, c["key"][rows] + t0, c["catch_up"][rows],
                         rank[mine & ~is_event], c["device"][gone], c["kind"][gone], c["time"][gone] + t0,
                         np.where(c["end"][gone] >= 0, c["end"][gone] + t0, -1))

    def _catch_up(self, low: int, high: int, found: "_Found") -> None:
        """The uploads arriving in [low, high), and the gaps (with their lost reports) ending in it."""
        o = self.offline
        assert o is not None
        periods = np.arange(max(0, (low - o.upload_ms) // o.period_ms - 1), high // o.period_ms + 1, dtype=np.int64)
        gd = np.repeat(self.devices, len(periods))
        start, end, _, buffered, kept = self._gap_counts(gd, np.tile(periods, self.count))
        near = (end < high) & (end + o.upload_ms >= low)
        gd, start, end, buffered, kept = gd[near], start[near], end[near], buffered[near], kept[near]
        gap, k = _expand(np.arange(len(gd)), self.reports_before(gd, start), self.reports_before(gd, end))
        device = gd[gap]
        sent = self.drops_before(device, k + 1) == self.drops_before(device, k)
        gap, k, device = gap[sent], k[sent], device[sent]
        place = np.arange(len(gap)) - np.searchsorted(gap, gap)  # in its gap's buffer, oldest first
        slot = place - ((buffered - kept)[gap] if o.overflow == "drop_oldest" else 0)
        kept_ = (slot >= 0) & (slot < kept[gap])
        arrival = end[gap] + slot * o.upload_interval_ms
        t = self.report_time(device, k)
        arrives = kept_ & (arrival >= low) & (arrival < high)
        found.event(arrival[arrives], device[arrives], k[arrives], t[arrives], True)
        # A gap is labelled where the device is in service (with the registry: commissioned and not yet
        # decommissioned), from its start or the commissioning; its position is its end, as for every device.
        active_from, active_until = self.active_span(gd)
        ending = (end >= low) & (end < high) & (end > active_from) & (start < active_until)
        found.missing("offline", end[ending], gd[ending], -1, np.maximum(start, active_from)[ending], end[ending])
        lost = ~kept_ & ending[gap]
        found.missing("overflow", end[gap][lost], device[lost], -1, t[lost])


class _Found:
    """Arrivals and missing reports of a block, gathered as arrays of columns."""

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []

    def _add(self, key, device, report, time, is_event, catch_up=False, kind=-1, end=-1) -> None:
        m = len(key)
        self.parts.append({name: np.broadcast_to(value, (m,)) for name, value in (
            ("key", key), ("device", device), ("report", report), ("time", time), ("is_event", is_event),
            ("catch_up", catch_up), ("kind", kind), ("end", end))})

    def event(self, arrival, device, report, time, catch_up: bool) -> None:
        self._add(arrival, device, report, time, True, catch_up)

    def missing(self, kind: str, key, device, report, time, end=-1) -> None:
        self._add(key, device, report, time, False, kind=MISSING_KINDS.index(kind), end=end)

    def columns(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate([p[name] for p in self.parts]) for name in self.parts[0]}


def _expand(group: np.ndarray, k0: np.ndarray, k1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(group, k) for every k in ``k0 .. k1`` of each group, groups in order."""
    counts = np.maximum(k1 - k0, 0)
    which = np.repeat(np.arange(len(group)), counts)
    starts = np.cumsum(counts) - counts
    return group[which], k0[which] + (np.arange(len(which)) - starts[which])
