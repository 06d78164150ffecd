"""Load that follows the clock: a streaming rate profile (a daily curve in the devices' local time, bursts).

A :class:`RateProfile` is a pure description (a preset and its parameters, from ``RATE_PROFILE`` and the spec
file's ``rate_profile`` section); a :class:`RateCurve` binds it to one run: the target rate, in events per
second, as a pure function of the seconds elapsed since the run started (and so of the wall time: the
profile's clock is ``start + speed x elapsed``), with the stream's ramp-up folded in. The token bucket follows
the curve (:class:`~iotgen.runs.token_bucket.TokenBucket` with ``curve=``), so tests drive it with a fake
clock.

The shape at profile time ``t`` (epoch seconds):

* **daily**: each time zone ``z`` has a factor ``s_z(t)`` between ``1`` (at ``peak_hour`` local time) and
  ``1 / peak_to_trough`` (twelve hours later), a cosine of the local hour. Zones come from ``timezone``:
  ``region`` (each event's ``region``, at its climate's UTC offset: the fleet's, else the built-in table) or one
  zone (``utc``, or an offset such as ``+05:30``). The fleet of zones has weights ``w_z`` (the share of the
  generated events in that zone: per device ``1 / interval`` with the fleet profile, the ``REGIONS`` catalog's
  probabilities otherwise), and the stream's factor is ``S(t) = sum_z w_z s_z(t)``.
* **bursts**: in every window of ``1 / per_hour`` hours of profile time, one burst of ``duration`` at a keyed
  random moment (from the seed and the window's number since the epoch: a pure function of the time), during
  which the rate is ``size`` times higher.

The target rate is ``peak x S(t) / S_max x burst(t) x ramp(elapsed)``: with ``RATE_EVENTS_PER_SEC`` it is the
stream's peak outside bursts (``S_max``: the highest ``S`` of the day); without it, with the fleet profile,
``peak`` is the fleet's own rate (each device reporting at its interval) and ``S_max = 1``: a device reports at
its interval at its local peak hour, ``peak_to_trough`` times less often at its local night.

Which events: with more than one zone, each event is kept with probability ``s_z(t)`` of its own zone (a keyed
draw on its index, :meth:`RateCurve.keep`), so devices in their local daytime report more and the others less,
while the bucket sends ``target(t)`` of the kept events per second. With one zone nothing is dropped (every
event has the same factor: the bucket alone shapes the load), and with the profile off the stream is unchanged.

The run is cut into cells of at most :data:`GRID_S` seconds (shorter when the profile clock runs fast), each
with its mean rate (the daily curve and the ramp at its middle, the exact share of a burst in it), extended as
the run goes on: the bucket's ``issued`` and ``time_for`` are exact inverses and the per-minute targets add up
to the run's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..base import keyed_random as kr
from ..base.errors import InputError
from ..settings.config import RATE_PROFILES as PRESETS
from .fleet import DEFAULT_CLIMATES, Fleet
from .generator import GeneratorSpec

#: The longest and the shortest cell of a run's curve (constant rate), in seconds of the run.
GRID_S = 0.5
MIN_CELL_S = 0.001
_BURST_STREAM, KEEP_STREAM = 200, 201  # keyed-random streams (the fleet uses 100-111)
_OFFSET = re.compile(r"^(?:utc)?([+-])(\d{1,2})(?::?(\d{2}))?$")


@dataclass(frozen=True)
class Bursts:
    """One burst of ``duration_s`` in every ``1 / per_hour`` hours of profile time, ``size`` times the rate."""

    per_hour: float = 2.0
    size: float = 3.0
    duration_s: float = 30.0

    @property
    def window_s(self) -> float:
        return 3600.0 / self.per_hour


@dataclass(frozen=True)
class RateProfile:
    """How the target rate varies: the daily curve, bursts, the time zones and the profile clock's speed."""

    preset: str = "flat"
    peak_to_trough: float = 1.0
    peak_hour: float = 14.0
    timezone: str = "region"
    bursts: Bursts | None = None
    speed: float = 1.0

    @classmethod
    def named(cls, name: str) -> "RateProfile | None":
        """The preset ``name`` (``off``: None)."""
        if name not in PRESETS:
            raise InputError(f"RATE_PROFILE must be one of {', '.join(PRESETS)}, got {name!r}")
        if name == "off":
            return None
        daily = "daily" in name
        return cls(name, 4.0 if daily else 1.0, bursts=Bursts() if "bursts" in name else None)

    @property
    def daily(self) -> bool:
        return self.peak_to_trough > 1.0

    def utc_offset_h(self) -> float | None:
        """The one zone's UTC offset in hours; None for ``region`` (each event's region)."""
        return timezone_offset(self.timezone)

    def shape(self, local_hours: np.ndarray) -> np.ndarray:
        """The daily factor at these local hours: 1 at ``peak_hour``, ``1 / peak_to_trough`` twelve hours away."""
        trough = 1.0 / self.peak_to_trough
        wave = 0.5 * (1 + np.cos(2 * np.pi * (np.asarray(local_hours, dtype=np.float64) - self.peak_hour) / 24))
        return trough + (1 - trough) * wave

    def burst_factor(self, seed: int, t_s: np.ndarray) -> np.ndarray:
        """``size`` where profile time ``t_s`` (epoch seconds) is inside a burst, else 1."""
        t = np.asarray(t_s, dtype=np.float64)
        if self.bursts is None:
            return np.ones_like(t)
        start = self._burst_start(seed, np.floor(t / self.bursts.window_s))
        return np.where((t >= start) & (t < start + self.bursts.duration_s), self.bursts.size, 1.0)

    def _burst_start(self, seed: int, window: np.ndarray) -> np.ndarray:
        """When the burst of each window (its number since the epoch) starts, in profile time."""
        b = self.bursts
        assert b is not None
        return window * b.window_s + kr.uniform(seed, _BURST_STREAM, window.astype(np.int64)) * (
            b.window_s - b.duration_s)

    def burst_overlap(self, seed: int, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """Seconds of each profile-time interval ``[low, high)`` inside a burst."""
        low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
        if self.bursts is None or not len(low):
            return np.zeros_like(low)
        b = self.bursts
        total = np.zeros_like(low)
        first = np.floor(low / b.window_s)
        for j in range(int(np.max(np.floor(high / b.window_s) - first)) + 1):
            start = self._burst_start(seed, first + j)
            total += np.clip(np.minimum(high, start + b.duration_s) - np.maximum(low, start), 0, None)
        return total

    def describe(self) -> str:
        parts = [self.preset]
        if self.daily:
            zone = "each region's local time" if self.timezone == "region" else self.timezone
            parts.append(f"daily peak at {self.peak_hour:g}h ({zone}), peak/trough {self.peak_to_trough:g}")
        if self.bursts is not None:
            b = self.bursts
            parts.append(f"bursts x{b.size:g} for {b.duration_s:g} s, {b.per_hour:g}/h")
        if self.speed != 1:
            parts.append(f"clock x{self.speed:g}")
        return ", ".join(parts)


def timezone_offset(value: Any) -> float | None:
    """``region`` -> None, ``utc`` -> 0, ``+05:30`` / ``UTC-8`` / ``-8`` / a number of hours -> the offset in
    hours (from -14 to +14); anything else raises InputError."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        hours = float(value)
    elif isinstance(value, str) and value.strip().lower() in ("region", "utc"):
        return None if value.strip().lower() == "region" else 0.0
    else:
        match = _OFFSET.match(value.strip().lower()) if isinstance(value, str) else None
        if match is None or (match.group(3) is not None and int(match.group(3)) >= 60):
            raise InputError(f"rate_profile.timezone must be region, utc or a UTC offset such as +05:30 or -8, "
                             f"got {value!r}")
        hours = (int(match.group(2)) + int(match.group(3) or 0) / 60) * (1 if match.group(1) == "+" else -1)
    if not -14 <= hours <= 14:
        raise InputError(f"rate_profile.timezone must be a UTC offset from -14 to +14 hours, got {value!r}")
    return hours


def normal_timezone(value: Any) -> str:
    """``region``, ``utc`` or an offset as ``+05:30`` (see :func:`timezone_offset`)."""
    hours = timezone_offset(value)
    if hours is None:
        return "region"
    if hours == 0 and isinstance(value, str) and value.strip().lower() == "utc":
        return "utc"
    minutes = int(round(abs(hours) * 60))
    return f"{'-' if hours < 0 else '+'}{minutes // 60:02d}:{minutes % 60:02d}"


# ---- time zones of the generated events --------------------------------------------------------------------
def region_offsets(spec: GeneratorSpec) -> dict[str, float]:
    """Each region's UTC offset in hours: the fleet's climates (its default for regions it lacks), else the
    built-in table (UTC for regions it lacks)."""
    fleet = spec.fleet if isinstance(spec.fleet, Fleet) else None
    climates = dict(fleet.climate) if fleet is not None else dict(DEFAULT_CLIMATES)
    default = fleet.default_climate.utc_offset_h if fleet is not None else 0.0
    return {region: climates[region].utc_offset_h if region in climates else default
            for region in spec.catalogs.regions.values}


def zone_weights(spec: GeneratorSpec) -> list[tuple[float, float]]:
    """(UTC offset, share of the generated events) per region: with the fleet profile each device weighs
    ``1 / its interval``, otherwise the ``REGIONS`` catalog's probabilities."""
    offsets = region_offsets(spec)
    if isinstance(spec.fleet, Fleet):
        devices = spec.fleet.device_table(spec)
        rates = pa.table({"region": devices.column("region"), "rate": pc.divide(1.0, devices.column("interval_s"))})
        sums = rates.group_by("region").aggregate([("rate", "sum")])
        return [(offsets[r], w) for r, w in zip(sums.column("region").to_pylist(), sums.column("rate_sum").to_pylist())]
    catalog = spec.catalogs.regions
    return [(offsets[r], p) for r, p in zip(catalog.values, catalog.probabilities)]


def event_offsets(events: pa.RecordBatch, offsets: dict[str, float]) -> np.ndarray:
    """The UTC offset (hours) of each event's ``region`` (0 where it is null or unknown)."""
    names = pa.array(list(offsets), pa.string())
    hours = np.append(np.array(list(offsets.values()), dtype=np.float64), 0.0)
    where = pc.index_in(events.column("region"), value_set=names)
    return hours[pc.fill_null(where, len(names)).to_numpy(zero_copy_only=False)]


class RateCurve:
    """One run's target rate as a function of the seconds elapsed since its start (see the module doc)."""

    def __init__(self, profile: RateProfile, peak: float, *, start_s: float, seed: int,
                 zones: Iterable[tuple[float, float]], ramp_up: float = 0.0, normalise: bool = True) -> None:
        if not (math.isfinite(peak) and peak > 0):
            raise InputError(f"the rate profile's peak rate must be a finite number > 0, got {peak!r}")
        self.profile, self.peak, self.start_s, self.seed, self.ramp_up = profile, float(peak), start_s, seed, ramp_up
        offset = profile.utc_offset_h()
        pairs = [(offset, 1.0)] if offset is not None else [(o, w) for o, w in zones if w > 0]
        if not pairs:
            pairs = [(0.0, 1.0)]
        total = sum(w for _, w in pairs)
        merged: dict[float, float] = {}
        for o, w in pairs:
            merged[o] = merged.get(o, 0.0) + w / total
        self.zones = sorted(merged.items())
        self._offsets = np.array([o for o, _ in self.zones])
        self._weights = np.array([w for _, w in self.zones])
        #: Events are kept by their zone's factor only when zones differ (else the bucket alone shapes the load).
        self.thins = profile.daily and len(self.zones) > 1
        day = np.arange(0, 24, 1 / 60)
        self.norm = float(self._daily(day * 3600.0).max()) if normalise else 1.0
        # Cells of the run: at most GRID_S seconds and a 2000th of a (profile) day, at least MIN_CELL_S.
        self.cell = max(MIN_CELL_S, min(GRID_S, 86400 / profile.speed / 2000))
        self._chunk = int(min(200_000, max(1000, 600 / self.cell)))  # cells added at a time: 10 minutes of the run
        self._cumulative = np.zeros(1)  # events due at the start of each cell
        self._rates = np.zeros(0)  # each cell's mean rate

    # ---- the rate -----------------------------------------------------------------------------------------
    def profile_time(self, elapsed: np.ndarray | float) -> np.ndarray:
        """Profile time (epoch seconds) at ``elapsed`` seconds into the run."""
        return self.start_s + self.profile.speed * np.asarray(elapsed, dtype=np.float64)

    def _daily(self, t_s: np.ndarray) -> np.ndarray:
        if not self.profile.daily:
            return np.ones(len(t_s))
        hours = (t_s[:, None] / 3600.0 + self._offsets[None, :]) % 24
        return self.profile.shape(hours) @ self._weights

    def _cell_rates(self, k: np.ndarray) -> np.ndarray:
        """The mean rate of cells ``k``: the daily curve and the ramp at the cell's middle, the bursts' exact
        share of it."""
        middle = (k + 0.5) * self.cell
        ramp = np.minimum(1.0, middle / self.ramp_up) if self.ramp_up > 0 else 1.0
        rate = self.peak * self._daily(self.profile_time(middle)) / self.norm * ramp
        bursts = self.profile.bursts
        if bursts is not None:
            low, high = self.profile_time(k * self.cell), self.profile_time((k + 1) * self.cell)
            inside = self.profile.burst_overlap(self.seed, low, high)
            rate = rate * (1 + (bursts.size - 1) * inside / (high - low))
        return rate

    def _extend(self, cells: int) -> None:
        """Grow the grid to at least ``cells`` cells."""
        while len(self._rates) < cells:
            k = np.arange(len(self._rates), len(self._rates) + self._chunk, dtype=np.float64)
            rates = self._cell_rates(k)
            self._cumulative = np.concatenate([self._cumulative, self._cumulative[-1] + np.cumsum(rates * self.cell)])
            self._rates = np.concatenate([self._rates, rates])

    def rate_at(self, elapsed: float) -> float:
        """The target rate (events/s) at ``elapsed`` seconds: its cell's mean."""
        k = max(0, int(elapsed // self.cell))
        self._extend(k + 1)
        return float(self._rates[k])

    def issued(self, elapsed: float) -> float:
        """Events due from the start until ``elapsed`` seconds (the integral of :meth:`rate_at`)."""
        if elapsed <= 0:
            return 0.0
        k = int(elapsed // self.cell)
        self._extend(k + 1)
        return float(self._cumulative[k] + self._rates[k] * (elapsed - k * self.cell))

    def time_for(self, issued: float) -> float:
        """The elapsed time at which ``issued`` events are due (the inverse of :meth:`issued`)."""
        if issued <= 0:
            return 0.0
        while self._cumulative[-1] < issued:
            self._extend(len(self._rates) + 1)
        k = max(0, int(np.searchsorted(self._cumulative, issued, side="left")) - 1)
        return k * self.cell + min(self.cell, (issued - self._cumulative[k]) / self._rates[k])

    # ---- which events ------------------------------------------------------------------------------------
    def keep(self, index: np.ndarray, utc_offset_h: np.ndarray, elapsed: float) -> np.ndarray:
        """Which events (generator indices ``index``, in zones ``utc_offset_h``) a stream sends at ``elapsed``:
        each with its zone's daily factor as probability, a keyed draw on its index."""
        if not self.thins:
            return np.ones(len(index), dtype=bool)
        t = float(self.profile_time(elapsed))
        factor = self.profile.shape((t / 3600.0 + np.asarray(utc_offset_h, dtype=np.float64)) % 24)
        return kr.uniform(self.seed, KEEP_STREAM, np.asarray(index, dtype=np.int64)) < factor
