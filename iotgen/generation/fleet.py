"""The fleet profile: ``DEVICE_COUNT`` devices that report time series, deterministic from the seed.

What a device is. Device ``d`` (``sensor_id`` ``sensor-{d+1:05d}``) has stable attributes (``device_type``,
``model``, ``region``, ``zone``, ``env``, ``source``, hardware ``version``, its reporting interval, its sensor
offsets...), each a keyed draw from ``(seed, d)``: adding devices never changes the existing ones.

When it reports. Device ``d`` reports every ``I_d`` ms (its type's interval, varied per device), starting at
a random phase; each report moves by a keyed jitter of at most ``+-jitter/2`` of ``I_d``, so its own reports
never swap. The events of the whole fleet are numbered in time order (ties by device), so event ``i`` is the
``i``-th report of the fleet after the window start: a pure function of ``i``. To find the events of a block
without state, time is cut into epochs of ``E`` ms (``E`` chosen so an epoch holds about 65,536 events): how
many reports each device makes before any time is closed-form (its schedule is arithmetic and its jitter keyed
by its report number), so the number of events before an epoch is a sum over devices, and an epoch's events
are listed and sorted once (cached). ``E`` only affects speed, never the events.

What it reports. Every reading is a closed-form function of ``(seed, device, time)``, so it continues across
blocks, chunks, workers and stream restarts and can be evaluated at any time (the scenarios use this for late
and stuck readings):

- ``temperature``, ``humidity``, ``pressure``: the region's climate, a daily cycle in the region's local time
  (a semi-daily tide for pressure), regional weather and a per-device random walk (both
  :func:`~iotgen.base.keyed_random.stationary_walk`), a per-device offset and sensor noise;
- ``battery_level`` drains (faster for devices that report more often) and is recharged or replaced when
  it falls to the device's threshold; ``uptime_hours`` grows and restarts at each reset (a reboot, about
  every ``reboot_every_days``, or a battery change); ``fault_count`` counts faults (a Poisson process per
  device, some devices much flakier than others) since the last reset, so it never decreases between resets;
- ``last_calibration``: calibrations every 60-330 days (per device); ``maintenance_due`` is true when the
  last one is more than 180 days old; ``status`` follows the device's state: ``offline`` (battery empty),
  ``error`` (a fault in the last hour), ``maintenance`` (just calibrated), ``degraded`` (many faults or a low
  battery), ``idle`` (some whole hours), else ``online``;
- ``firmware_version`` starts from an initial mix and changes only by rollouts: each device adopts a rollout
  at a random time within its duration, a fraction of devices never does;
- ``signal_strength``: a per-device level plus noise; ``event_id``, ``json_column`` and the ingest delays of
  ``created_at``/``updated_at`` are drawn per event as in the independent profile.

Build a :class:`Fleet` from a spec file (:mod:`iotgen.spec.spec_file`), which validates every field.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ..base import draws
from ..base import keyed_random as kr
from ..base.errors import InputError
from ..base.times import DAY_MS, HOUR_MS
from ..settings.catalogs import Catalogs
from ..settings.schema import CALIBRATION_DUE_DAYS, events_schema, timestamps_ms
from .devices import NEVER, Lifecycle, Registry
from .dynamic_json import build_json_column
from .generator import BLOCK_SIZE, GeneratorSpec, _uuid4, block_rng  # _uuid4: the generator's UUID text

SECOND_MS = 1000
EPOCH_EVENTS = 65_536

# Sensor readings: (low, high, decimals), as documented in iotgen.settings.schema.
READING_RANGES: dict[str, tuple[float, float, int]] = {
    "temperature": (-40.0, 85.0, 2),
    "humidity": (0.0, 100.0, 1),
    "pressure": (870.0, 1085.0, 2),
    "battery_level": (0.0, 100.0, 1),
    "signal_strength": (-120.0, -30.0, 0),
    "uptime_hours": (0.0, 8760.0, 2),
    "fault_count": (0.0, 50.0, 0),
}
STATUS_ROLES = ("online", "idle", "degraded", "maintenance", "error", "offline")

# Keyed-random streams (see iotgen.base.keyed_random); block_rng stream 1 is the per-event base draw.
BASE_STREAM = 1
_ATTRIBUTE, _JITTER, _NOISE, _BATTERY, _REBOOT, _FAULT, _CALIBRATION, _IDLE, _ROLLOUT = range(100, 109)
_READINGS = ("temperature", "humidity", "pressure")
_WALK, _WEATHER = 110, 111


@dataclass(frozen=True)
class Series:
    """How one reading varies: per-device offset, device random walk, regional weather, sensor noise."""

    device_sd: float
    walk_sd: float
    walk_hours: float
    weather_sd: float
    weather_hours: float
    noise_sd: float


@dataclass(frozen=True)
class Climate:
    """A region's climate: UTC offset of its local time, mean readings and daily amplitudes."""

    utc_offset_h: float = 0.0
    temperature_c: float = 15.0
    temperature_daily_c: float = 5.0
    humidity_pct: float = 65.0
    humidity_daily_pct: float = 12.0
    pressure_hpa: float = 1013.25


@dataclass(frozen=True)
class Rollout:
    """A firmware rollout: devices adopt ``version`` between ``start`` and ``start + duration`` (ms after the
    window start); a ``fraction`` of the fleet does, the rest never."""

    version: str
    start_ms: int
    duration_ms: int = 48 * HOUR_MS
    fraction: float = 1.0


DEFAULT_INTERVALS_S: dict[str, float] = {
    "temperature_sensor": 300, "humidity_sensor": 300, "pressure_sensor": 600, "smart_meter": 900,
    "air_quality_monitor": 300, "vibration_sensor": 60, "gps_tracker": 30, "smart_thermostat": 600,
    "water_flow_meter": 300,
}
DEFAULT_CLIMATES: dict[str, Climate] = {
    "eastus": Climate(-5, 14, 6, 66, 14, 1017), "eastus2": Climate(-5, 15, 6, 68, 14, 1017),
    "westus2": Climate(-8, 11, 6, 72, 15, 1016), "centralus": Climate(-6, 11, 7, 66, 15, 1015),
    "northeurope": Climate(0, 10, 4, 81, 10, 1012), "westeurope": Climate(1, 11, 5, 79, 12, 1013),
    "uksouth": Climate(0, 11, 5, 76, 12, 1013), "southeastasia": Climate(8, 28, 4, 80, 10, 1009),
    "japaneast": Climate(9, 16, 5, 66, 12, 1014), "australiaeast": Climate(10, 18, 5, 66, 12, 1016),
}
DEFAULT_MODELS: dict[str, tuple[str, ...]] = {
    "temperature_sensor": ("TX-100", "TX-200"), "humidity_sensor": ("HX-310",), "pressure_sensor": ("PX-420",),
    "smart_meter": ("MX-500",), "air_quality_monitor": ("AQ-610",), "vibration_sensor": ("VB-720",),
    "gps_tracker": ("GX-830",), "smart_thermostat": ("TX-200",), "water_flow_meter": ("WF-940",),
}
DEFAULT_SERIES: dict[str, Series] = {
    "temperature": Series(device_sd=1.5, walk_sd=0.8, walk_hours=6, weather_sd=3.0, weather_hours=48, noise_sd=0.05),
    "humidity": Series(device_sd=5.0, walk_sd=3.0, walk_hours=6, weather_sd=8.0, weather_hours=48, noise_sd=0.3),
    "pressure": Series(device_sd=1.0, walk_sd=0.3, walk_hours=6, weather_sd=6.0, weather_hours=72, noise_sd=0.05),
}
DEFAULT_ROLLOUTS = (
    Rollout("3.2.0", 36 * HOUR_MS, 72 * HOUR_MS, 0.9),
    Rollout("3.2.1", 120 * HOUR_MS, 24 * HOUR_MS, 0.6),
)


def _pairs(mapping: dict) -> tuple:
    return tuple(mapping.items())


@dataclass(frozen=True)
class Fleet:
    """The fleet profile's parameters (immutable, hashable, picklable). ``spec.fleet`` of a GeneratorSpec.

    Mappings are tuples of pairs. ``interval_s``, ``climate`` and ``models`` are merged over the built-in
    defaults (``DEFAULT_*``); device types, regions and models missing from both fall back to
    ``default_interval_s``, ``default_climate`` and the MODELS catalog.
    """

    device_count: int = 1000
    interval_s: tuple[tuple[str, float], ...] = _pairs(DEFAULT_INTERVALS_S)
    default_interval_s: float = 300.0
    interval_spread: float = 0.1
    jitter: float = 0.2
    climate: tuple[tuple[str, Climate], ...] = _pairs(DEFAULT_CLIMATES)
    default_climate: Climate = Climate()
    temperature: Series = DEFAULT_SERIES["temperature"]
    humidity: Series = DEFAULT_SERIES["humidity"]
    pressure: Series = DEFAULT_SERIES["pressure"]
    battery_drain_pct_per_day: float = 1.5
    recharge_below_pct: tuple[float, float] = (10.0, 30.0)
    reboot_every_days: float = 12.0
    faults_per_day: float = 0.2
    error_hours: float = 1.0
    calibration_every_days: tuple[float, float] = (60.0, 330.0)
    maintenance_hours: float = 2.0
    idle_fraction: float = 0.08
    firmware_initial: tuple[tuple[str, float], ...] = (("3.1.4", 0.7), ("3.0.2", 0.3))
    rollouts: tuple[Rollout, ...] = DEFAULT_ROLLOUTS
    models: tuple[tuple[str, tuple[str, ...]], ...] = _pairs(DEFAULT_MODELS)
    status: tuple[tuple[str, str], ...] = tuple((role, role) for role in STATUS_ROLES)
    #: The device registry and its change feed (:mod:`iotgen.generation.devices`); None: off, and the events
    #: are those of a fleet whose devices never move, fail an update, get replaced or decommissioned.
    registry: Registry | None = None

    # ---- the GeneratorSpec extension point ------------------------------------------------------------
    def build_block(self, spec: GeneratorSpec, block: int, json_column: str = "text") -> pa.RecordBatch:
        """The :data:`~iotgen.generation.generator.BLOCK_SIZE` events numbered ``block * BLOCK_SIZE`` and up
        (``json_column``: ``text`` or ``variant``, see :func:`iotgen.generation.generator.generate_block`)."""
        devices = fleet_devices(spec)
        n = BLOCK_SIZE
        device, _, t = devices.schedule(block * n, (block + 1) * n)
        columns = devices.columns(device, t)
        # Per event, as in the independent profile: the id, the payload and the gateway's ingest delays.
        rng = block_rng(spec.seed, block, BASE_STREAM)
        columns["event_id"] = _uuid4(rng, n)
        columns["json_column"] = build_json_column(spec.catalogs.key_pool, spec.min_keys, spec.max_keys, rng, n,
                                                   json_column)
        delay = np.exp(np.log(800.0) + rng.standard_normal(n, dtype=np.float32))
        created = t + np.minimum(np.rint(delay), 30_000).astype(np.int64)
        updated = created + np.where(draws.coin(rng, 0.2, n), 1 + draws.below(rng, HOUR_MS, n), 0)
        columns["created_at"], columns["updated_at"] = _timestamps(created), _timestamps(updated)
        schema = events_schema(json_column)
        return pa.RecordBatch.from_arrays([columns[name] for name in schema.names], schema=schema)

    # ---- for scenarios, notebooks and docs ------------------------------------------------------------------
    def columns_at(self, spec: GeneratorSpec, device: np.ndarray, t_ms: np.ndarray) -> dict[str, pa.Array]:
        """The device-dependent columns of ``device`` (0-based) at epoch-ms ``t_ms`` (any time: the series are
        closed-form), as Arrow arrays keyed by column name (all fixed columns but the event's own)."""
        return fleet_devices(spec).columns(np.asarray(device, dtype=np.int64), np.asarray(t_ms, dtype=np.int64))

    def readings_at(self, spec: GeneratorSpec, device: np.ndarray, t_ms: np.ndarray) -> dict[str, Any]:
        """Every column that changes over time, of ``device`` at ``t_ms``, by column name: numbers as numpy
        (times in epoch ms), ``status`` and ``firmware_version`` as Arrow strings."""
        return fleet_devices(spec).changing(np.asarray(device, dtype=np.int64), np.asarray(t_ms, dtype=np.int64))

    def reading_at(self, spec: GeneratorSpec, name: str, device: np.ndarray, t_ms: np.ndarray) -> np.ndarray:
        """One reading (``temperature``, ``humidity`` or ``pressure``) of ``device`` at ``t_ms``."""
        devices = fleet_devices(spec)
        device, t = np.asarray(device, dtype=np.int64), np.asarray(t_ms, dtype=np.int64)
        return devices.reading(name, device, t)

    def device_table(self, spec: GeneratorSpec) -> pa.Table:
        """One row per device: its stable attributes and reporting interval."""
        return fleet_devices(spec).table()

    def events_per_hour(self, spec: GeneratorSpec) -> float:
        """How many events the fleet reports per hour of event time."""
        return fleet_devices(spec).rate_per_ms * HOUR_MS

    def reports_before(self, spec: GeneratorSpec, device: np.ndarray, t_ms: np.ndarray) -> np.ndarray:
        """How many reports each ``device`` makes before epoch-ms ``t_ms`` (closed form; the offline scenario's
        delivery schedule)."""
        devices = fleet_devices(spec)
        return devices.reports_before(np.asarray(device, dtype=np.int64), np.asarray(t_ms, dtype=np.int64) - devices.t0)

    def report_times(self, spec: GeneratorSpec, device: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Epoch-ms time of each ``device``'s ``k``-th report (0-based, counted as :meth:`reports_before` does)."""
        devices = fleet_devices(spec)
        return devices.report_times(np.asarray(device, dtype=np.int64), np.asarray(k, dtype=np.int64)) + devices.t0

    def active_span(self, spec: GeneratorSpec, device: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Epoch ms ``[from, until)`` in which each ``device`` reports (the registry's commissioning and
        decommissioning; without it, the window start and a time beyond any event)."""
        devices = fleet_devices(spec)
        start, stop = devices.active_span(np.asarray(device, dtype=np.int64))
        return start + devices.t0, np.where(stop < NEVER, stop + devices.t0, NEVER)

    def sensor_ids_at(self, spec: GeneratorSpec, device: np.ndarray, t_ms: np.ndarray) -> pa.Array:
        """The ``sensor_id`` of ``device`` (0-based slot) at epoch-ms ``t_ms`` (the registry's device then)."""
        return fleet_devices(spec).sensor_ids_at(np.asarray(device, dtype=np.int64), np.asarray(t_ms, dtype=np.int64))

    def time_of_event(self, spec: GeneratorSpec, index: int) -> int:
        """The (clean) timestamp in epoch ms of event number ``index``."""
        return int(fleet_devices(spec).schedule(index, index + 1)[2][0])

    def check(self, catalogs: Catalogs) -> None:
        """Raise ``ValueError`` (naming the spec field) when the status mapping does not fit the catalogs."""
        allowed = catalogs.status_values.values
        for role, value in self.status:
            if value not in allowed:
                raise InputError(f"fleet.status.{role} must be one of STATUS_VALUES ({', '.join(allowed)}), "
                                 f"got {value!r}: map each of {', '.join(STATUS_ROLES)} to a status value")


def _timestamps(epoch_ms: np.ndarray) -> pa.Array:
    return timestamps_ms(epoch_ms)


def _quantise(x: np.ndarray, name: str) -> np.ndarray:
    low, high, decimals = READING_RANGES[name]
    return np.round(np.clip(x, low, high), decimals)


_BY_SPEC: OrderedDict[int, tuple[GeneratorSpec, "Devices"]] = OrderedDict()
_BY_SPEC_LOCK = threading.Lock()


def fleet_devices(spec: GeneratorSpec) -> "Devices":
    """The (cached) per-device arrays of ``spec``'s fleet. Looked up by identity first: hashing a spec (its
    catalogs and key pool) costs more than a block's share of the work."""
    with _BY_SPEC_LOCK:
        known = _BY_SPEC.get(id(spec))
        if known is not None and known[0] is spec:
            return known[1]
    if not isinstance(spec.fleet, Fleet):
        raise InputError("PROFILE is not fleet: this GeneratorSpec has no iotgen.generation.fleet.Fleet")
    span = spec.window_span_ms if spec.fleet.registry is not None else 0  # the registry's changes need it
    devices = _devices(spec.fleet, spec.seed, spec.catalogs, spec.window_start_ms, span)
    with _BY_SPEC_LOCK:
        _BY_SPEC[id(spec)] = (spec, devices)
        while len(_BY_SPEC) > 8:
            _BY_SPEC.popitem(last=False)
    return devices


@functools.lru_cache(maxsize=8)
def _devices(fleet: Fleet, seed: int, catalogs: Catalogs, window_start_ms: int, window_span_ms: int = 0) -> "Devices":
    return Devices(fleet, seed, catalogs, window_start_ms, window_span_ms)


class Devices:
    """Every device's attributes and parameters as numpy arrays, plus the schedule (epoch tables, cached)."""

    def __init__(self, fleet: Fleet, seed: int, catalogs: Catalogs, window_start_ms: int,
                 window_span_ms: int = 0) -> None:
        fleet.check(catalogs)
        self.fleet, self.seed, self.catalogs, self.t0 = fleet, seed, catalogs, window_start_ms
        n = self.count = fleet.device_count
        d = self.index = np.arange(n, dtype=np.int64)
        u = functools.partial(kr.uniform, seed, _ATTRIBUTE, d)
        z = functools.partial(kr.normal, seed, _ATTRIBUTE, d)
        types = catalogs.device_types
        self.type = kr.choice(u(0), types.probabilities)
        self.region = kr.choice(u(1), catalogs.regions.probabilities)
        self.zone = kr.choice(u(2), catalogs.zones.probabilities)
        self.env = kr.choice(u(3), catalogs.envs.probabilities)
        self.source = kr.choice(u(4), catalogs.sources.probabilities)
        self.version = (1 + np.floor(u(5) * 5)).astype(np.int32)
        self.model = self._models(u(6))
        # Reporting schedule: interval I (ms), phase in [0, I), jitter bound J with 2J < I.
        by_type = dict(fleet.interval_s)
        type_interval = np.array([by_type.get(t, fleet.default_interval_s) for t in types.values]) * SECOND_MS
        interval = type_interval[self.type] * np.exp(fleet.interval_spread * z(7))
        self.interval = np.maximum(np.rint(interval), 1000).astype(np.int64)
        self.phase = np.floor(u(8) * self.interval).astype(np.int64)
        self.jitter = np.floor(fleet.jitter * self.interval / 2).astype(np.int64)
        self.rate_per_ms = float(np.sum(1.0 / self.interval))
        self.epoch_ms = max(1000, int(round(max(EPOCH_EVENTS, 2 * n) / self.rate_per_ms)))
        # Sensors: offsets, signal level; climate of the device's region.
        self.offset = {name: getattr(fleet, name).device_sd * z(9 + i)
                       for i, name in enumerate(("temperature", "humidity", "pressure"))}
        self.signal_level = np.clip(-70 + 10 * z(12), -110, -40)
        climates = dict(fleet.climate)
        region_climate = [climates.get(r, fleet.default_climate) for r in catalogs.regions.values]
        self.region_climate = {f: np.array([getattr(c, f) for c in region_climate])
                               for f in Climate.__dataclass_fields__}
        self.climate = {f: by_region[self.region] for f, by_region in self.region_climate.items()}
        # Battery: drain (%/ms, faster for frequent reporters), threshold, cycle length and phase.
        drain = fleet.battery_drain_pct_per_day / DAY_MS * np.sqrt(300_000 / self.interval) * np.exp(0.3 * z(13))
        low, high = fleet.recharge_below_pct
        self.recharge_at = low + (high - low) * u(14)
        self.cycle = (100 - self.recharge_at) / drain
        self.cycle_phase = u(15) * self.cycle
        # Reboots about every reboot_every_days; faults per ms (log-normal: a few devices are flaky).
        self.reboot_slot = fleet.reboot_every_days * DAY_MS * np.exp(0.3 * z(16))
        self.reboot_phase = u(17) * self.reboot_slot
        self.fault_rate = fleet.faults_per_day / DAY_MS * np.exp(z(18) - 0.5)
        low, high = fleet.calibration_every_days
        self.calibration_period = (low + (high - low) * u(19)) * DAY_MS
        self.calibration_phase = u(20) * self.calibration_period
        # Firmware: the initial version, then each rollout adopted at a keyed time (never, for some devices).
        versions = [v for v, _ in fleet.firmware_initial]
        versions += [r.version for r in fleet.rollouts if r.version not in versions]
        self.firmware_values = pa.array(versions, pa.string())
        self.firmware = kr.choice(u(21), [p for _, p in fleet.firmware_initial])
        self.rollouts = []
        for r, rollout in enumerate(sorted(fleet.rollouts, key=lambda x: x.start_ms)):
            adopts = kr.uniform(seed, _ROLLOUT, d, 2 * r) < rollout.fraction
            when = window_start_ms + rollout.start_ms + kr.uniform(seed, _ROLLOUT, d, 2 * r + 1) * rollout.duration_ms
            self.rollouts.append((versions.index(rollout.version), np.where(adopts, when, np.inf)))
        status = dict(fleet.status)
        self.status_values = pa.array([status[role] for role in STATUS_ROLES], pa.string())
        width = max(5, len(str(n)))
        self.sensor_ids = pa.array([f"sensor-{i + 1:0{width}d}" for i in range(n)], pa.string())
        self._lock = threading.Lock()
        self._epochs: OrderedDict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()
        self._before: dict[int, int] = {}
        # The registry: devices commissioned, relocated, replaced and decommissioned; firmware that rolls back.
        self.lifecycle = Lifecycle(self, fleet.registry, window_span_ms) if fleet.registry is not None else None
        # Per device, the number of its first report (those before its commissioning are never made).
        self._first = self._reports_before(0) if self.lifecycle is not None else np.zeros(n, dtype=np.int64)
        self._skipped = int(self._first.sum())

    def _models(self, u: np.ndarray) -> np.ndarray:
        """Model index per device: one of its type's models when they are in the MODELS catalog, else any."""
        catalog = self.catalogs.models
        by_type = dict(self.fleet.models)
        out = kr.choice(u, catalog.probabilities)
        for t, type_name in enumerate(self.catalogs.device_types.values):
            known = [catalog.values.index(m) for m in by_type.get(type_name, ()) if m in catalog.values]
            if known:
                mine = self.type == t
                out[mine] = np.asarray(known)[np.minimum((u[mine] * len(known)).astype(np.int64), len(known) - 1)]
        return out

    # ---- schedule ---------------------------------------------------------------------------------------
    def _report_time(self, device: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Time (ms after the window start) of device's ``k``-th report: nominal slot plus keyed jitter."""
        j = self.jitter[device]
        shift = np.rint((2 * kr.uniform(self.seed, _JITTER, device, k) - 1) * j).astype(np.int64)
        return j + self.phase[device] + k * self.interval[device] + shift

    def _reports_before(self, t: int) -> np.ndarray:
        """Per device, how many of its reports fall before ``t`` ms after the window start."""
        return self._numbered_before(self.index, t)

    def _numbered_before(self, device: np.ndarray, t: Any) -> np.ndarray:
        """Per device, how many reports of its schedule (numbered from the window start, as its keyed jitter is)
        fall before ``t`` ms after the window start clipped to its lifecycle: with the registry, those skipped
        before its commissioning included (see :meth:`reports_before`)."""
        j, interval = self.jitter[device], self.interval[device]
        if self.lifecycle is not None:  # a device reports from its commissioning until its decommissioning
            t = np.clip(t, self.lifecycle.active_from[device], self.lifecycle.active_until[device])
        # Reports whose latest possible time is before t; at most one more (2J < I) may be, depending on jitter.
        sure = np.maximum(0, -((2 * j + self.phase[device] - t) // interval))
        return sure + (self._report_time(device, sure) < t)

    def reports_before(self, device: np.ndarray, t: Any) -> np.ndarray:
        """How many reports each ``device`` makes before ``t`` ms after the window start (``t`` per device or one):
        with the registry, only those between its commissioning and decommissioning, counted from its first."""
        return self._numbered_before(device, t) - self._first[device]

    def report_times(self, device: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Time (ms after the window start) of each ``device``'s ``k``-th report (0-based, as
        :meth:`reports_before` counts them: with the registry, from its commissioning)."""
        return self._report_time(device, k + self._first[device])

    def active_span(self, device: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """When each ``device`` reports, ms after the window start: ``[from, until)`` (commissioning and
        decommissioning with the registry; else from the window start, for ever)."""
        if self.lifecycle is None:
            return np.zeros(len(device), dtype=np.int64), np.full(len(device), NEVER, dtype=np.int64)
        return self.lifecycle.active_from[device], self.lifecycle.active_until[device]

    def sensor_ids_at(self, device: np.ndarray, t: np.ndarray) -> pa.Array:
        """The ``sensor_id`` of the device in each slot at epoch-ms ``t`` (with the registry: the replacement
        after a replacement)."""
        if self.lifecycle is None:
            return self.sensor_ids.take(pa.array(device))
        return self.lifecycle.sensor_ids.take(pa.array(self.lifecycle.entity(device, t)))

    def _events_before_epoch(self, e: int) -> int:
        if e not in self._before:
            # (less those a device skipped before its commissioning: its report numbers start there)
            self._before[e] = int(self._reports_before(e * self.epoch_ms).sum()) - self._skipped if e > 0 else 0
        return self._before[e]

    def _epoch(self, e: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(device, report number, time) of the events of epoch ``e``, in event order."""
        cached = self._epochs.get(e)
        if cached is not None:
            self._epochs.move_to_end(e)
            return cached
        first = self._reports_before(e * self.epoch_ms)
        counts = self._reports_before((e + 1) * self.epoch_ms) - first
        device = np.repeat(self.index, counts)
        starts = np.cumsum(counts) - counts
        k = first[device] + (np.arange(len(device)) - starts[device])
        t = self._report_time(device, k)
        order = np.argsort(t * self.count + device)  # the keys are distinct: any sort gives this order
        table = (device[order], k[order], t[order])
        self._epochs[e] = table
        self._before.setdefault(e + 1, self._events_before_epoch(e) + len(device))
        while len(self._epochs) > 4:
            self._epochs.popitem(last=False)
        return table

    def _epoch_of(self, index: int) -> int:
        e = int(index // (self.rate_per_ms * self.epoch_ms))
        while e > 0 and self._events_before_epoch(e) > index:
            e -= 1
        while self._events_before_epoch(e + 1) <= index:
            e += 1
        return e

    def schedule(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(device, report number, epoch-ms time) of events ``start .. stop``."""
        with self._lock:
            e = self._epoch_of(start)
            pieces = []
            position = start
            while position < stop:
                device, k, t = self._epoch(e)
                before = self._events_before_epoch(e)
                lo, hi = position - before, min(stop - before, len(device))
                if lo < hi:
                    pieces.append((device[lo:hi], k[lo:hi], t[lo:hi]))
                    position = before + hi
                e += 1
        device, k, t = (np.concatenate(parts) for parts in zip(*pieces)) if pieces else (np.zeros(0, np.int64),) * 3
        return device, k, t + self.t0

    # ---- readings ---------------------------------------------------------------------------------------
    def _readings(self, names: tuple[str, ...], device: np.ndarray, t: np.ndarray,
                  noise: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Temperature, humidity and/or pressure: climate, daily cycle, regional weather, device walk, noise
        (the climate and weather of the region the device is in at ``t``)."""
        if self.lifecycle is None:
            climate, index, region = self.climate, device, self.region[device]
        else:
            climate, index = self.region_climate, self.lifecycle.place(device, t)[0]
            region = index
        local = (t / HOUR_MS + climate["utc_offset_h"][index]) % 24
        daily = _cycle(local, 24, 15)
        noise = kr.keyed(self.seed, _NOISE, device, t) if noise is None else noise
        models = {name: getattr(self.fleet, name) for name in names}
        variation = {name: np.zeros(len(t)) for name in names}
        for stream, key, hours, sd, levels, grid in ((_WEATHER, region, "weather_hours", "weather_sd", 6, True),
                                                     (_WALK, device, "walk_hours", "walk_sd", 7, False)):
            by_period: dict[int, list[str]] = {}
            for name in names:
                by_period.setdefault(max(1, int(getattr(models[name], hours) * HOUR_MS)), []).append(name)
            for period, group in by_period.items():  # walks of the same period share their random bits
                walks = kr.stationary_walks(self.seed, (stream << 40) + period, key, t, period,
                                            tuple(getattr(models[n], sd) for n in group), levels, on_grid=grid)
                for name, walk in zip(group, walks):
                    variation[name] += walk
        out = {}
        for name in names:
            if name == "temperature":
                level = climate["temperature_c"][index] + climate["temperature_daily_c"][index] * daily
            elif name == "humidity":
                level = climate["humidity_pct"][index] - climate["humidity_daily_pct"][index] * daily
            else:
                level = climate["pressure_hpa"][index] + 0.6 * _cycle(local, 12, 10)
            sensor_noise = models[name].noise_sd * kr.to_normal(noise, _READINGS.index(name))
            out[name] = _quantise(level + self.offset[name][device] + variation[name] + sensor_noise, name)
        return out

    def reading(self, name: str, device: np.ndarray, t: np.ndarray) -> np.ndarray:
        return self._readings((name,), device, t)[name]

    def _local_hours(self, device: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The hour of the day (float) at the device's region at epoch-ms ``t``."""
        return (t / HOUR_MS + self.climate["utc_offset_h"][device]) % 24

    def readings(self, device: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
        """Every time-dependent value of ``device`` at epoch-ms ``t`` (closed form, vectorised)."""
        out: dict[str, Any] = {}
        tf = t.astype(np.float64)
        noise = kr.keyed(self.seed, _NOISE, device, t)  # four normals: three sensors' noise and the signal's
        out.update(self._readings(_READINGS, device, t, noise))
        out["signal_strength"] = np.clip(np.rint(self.signal_level[device] + 2.5 * kr.to_normal(noise, 3)),
                                         -120, -30).astype(np.int32)
        # Battery: a sawtooth, one drain cycle after another; each cycle starts near full and drains a bit
        # faster or slower than the device's mean.
        position = tf + self.cycle_phase[device]
        cycle = np.floor(position / self.cycle[device])
        into = position - cycle * self.cycle[device]
        c = cycle.astype(np.int64)
        drawn = kr.keyed(self.seed, _BATTERY, device, c)
        pace = 1 + 0.25 * kr.to_normal(drawn, 0)
        top = 100 - 2 * (drawn & np.uint64(0xFFFFFFFF)).astype(np.float64) / 2**32
        battery = top - (100 - self.recharge_at[device]) * (into / self.cycle[device]) * pace
        out["battery_level"] = _quantise(battery, "battery_level")
        battery_changed, next_battery = tf - into, tf - into + self.cycle[device]
        # Resets: the later of the last reboot (one per reboot slot, at a keyed point) and the last battery change.
        phase, every = self.reboot_phase[device], self.reboot_slot[device]
        slot = np.floor((tf - phase) / every).astype(np.int64)
        this = phase + (slot + kr.uniform(self.seed, _REBOOT, device, slot)) * every  # this slot's reboot
        passed = this <= tf  # it is the last one and the next slot's is next, else the previous one is last
        s = np.where(passed, 1, -1)
        other = phase + (slot + s + kr.uniform(self.seed, _REBOOT, device, slot + s)) * every
        last_reboot, next_reboot = np.where(passed, this, other), np.where(passed, other, this)
        reset = np.maximum(last_reboot, battery_changed)
        next_reset = np.minimum(next_reboot, next_battery)
        out["uptime_hours"] = _quantise((tf - reset) / HOUR_MS, "uptime_hours")
        faults, last_fault = self._faults(device, tf, reset, next_reset)
        out["fault_count"] = faults.astype(np.int32)
        calibration = self._last_calibration(device, tf)
        out["last_calibration"] = calibration
        out["maintenance_due"] = (t - calibration) > CALIBRATION_DUE_DAYS * DAY_MS
        # Status, by priority.
        fleet = self.fleet
        role = np.where(kr.uniform(self.seed, _IDLE, device, t // HOUR_MS) < fleet.idle_fraction, 1, 0)
        role = np.where((faults >= 5) | (out["battery_level"] < 15), 2, role)
        role = np.where(t - calibration < fleet.maintenance_hours * HOUR_MS, 3, role)
        role = np.where(tf - last_fault < fleet.error_hours * HOUR_MS, 4, role)
        out["status"] = np.where(out["battery_level"] <= 2, 5, role)
        if self.lifecycle is None:
            firmware = self.firmware[device].copy()
            for code, when in self.rollouts:
                firmware = np.where(tf >= when[device], code, firmware)
            out["firmware"] = firmware
        else:  # rollouts as above, and the failed ones rolled back
            out["firmware"] = self.lifecycle.firmware(device, t)[0]
        return out

    def _faults(self, device, tf, reset, next_reset) -> tuple[np.ndarray, np.ndarray]:
        """Faults since the reset and the time of the last one: per reset period, a keyed Poisson number of
        faults (at most 50) at keyed uniform times, so the count only grows until the next reset.

        A reset period's faults depend only on (device, reset, next reset), which a device's events of one
        block mostly share: they are drawn once per distinct triple, then each event counts those before it."""
        n = len(device)
        if not n:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        group, first = _runs(device, self.count, reset, next_reset)
        g_device, g_reset, g_next = device[first], reset[first], next_reset[first]
        period = kr.keyed(self.seed, _FAULT, g_device, np.floor(g_reset).astype(np.int64))
        mean = self.fault_rate[g_device] * (g_next - g_reset)
        u = kr.to_uniform(period)
        total = np.zeros(len(first), dtype=np.int64)
        p = np.exp(-mean)
        cumulative = p.copy()
        rows = np.flatnonzero(u >= cumulative)
        for k in range(1, 51):  # inverse CDF of Poisson(mean), over the rows still above it
            if not len(rows):
                break
            total[rows] += 1
            p[rows] *= mean[rows] / k
            cumulative[rows] += p[rows]
            rows = rows[u[rows] >= cumulative[rows]]
        most = int(total.max())
        times = np.full((len(first), most + 1), np.inf)  # each period's fault times, ascending, then inf
        rows = np.flatnonzero(total > 0)
        for j in range(most):
            rows = rows[total[rows] > j]
            times[rows, j] = g_reset[rows] + kr.to_uniform(kr.extend(period[rows], j)) * (g_next[rows] - g_reset[rows])
        times.sort(axis=1)
        count = np.zeros(n, dtype=np.int64)
        rows = np.flatnonzero(times[group, 0] <= tf)
        for j in range(1, most + 1):  # faults at or before each event's time: a prefix of its period's times
            if not len(rows):
                break
            count[rows] += 1
            rows = rows[times[group[rows], j] <= tf[rows]]
        last = np.where(count > 0, times[group, np.maximum(count - 1, 0)], -np.inf)
        return count, last

    def _last_calibration(self, device: np.ndarray, tf: np.ndarray) -> np.ndarray:
        period, phase = self.calibration_period[device], self.calibration_phase[device]
        slot = np.floor((tf - phase) / period).astype(np.int64)

        def at(s):
            return phase + (s + 0.05 * kr.uniform(self.seed, _CALIBRATION, device, s)) * period

        this = at(slot)
        return np.floor(np.where(this < tf, this, at(slot - 1))).astype(np.int64)

    def changing(self, device: np.ndarray, t: np.ndarray) -> dict[str, Any]:
        """The columns that change over time (see :meth:`Fleet.readings_at`)."""
        r = self.readings(device, t)
        r["timestamp"] = t
        r["status"] = self.status_values.take(pa.array(r["status"]))
        r["firmware_version"] = self.firmware_values.take(pa.array(r.pop("firmware")))
        return r

    def columns(self, device: np.ndarray, t: np.ndarray) -> dict[str, pa.Array]:
        """Arrow columns of the device's attributes and readings at ``t`` (all fixed columns but event_id,
        created_at and updated_at)."""
        out = {name: _timestamps(v) if name in ("timestamp", "last_calibration") else pa.array(v)
               for name, v in self.changing(device, t).items()}
        cats = self.catalogs
        out.update({
            "sensor_id": self.sensor_ids.take(pa.array(device)),
            "device_type": _take(cats.device_types.values, self.type[device]),
            "region": _take(cats.regions.values, self.region[device]),
            "zone": _take(cats.zones.values, self.zone[device]),
            "model": _take(cats.models.values, self.model[device]),
            "version": pa.array(self.version[device]),
            "source": _take(cats.sources.values, self.source[device]),
            "env": _take(cats.envs.values, self.env[device]),
        })
        if self.lifecycle is not None:  # the registry's device in the slot, its place and hardware, as of t
            life = self.lifecycle
            entity = life.entity(device, t)
            region, zone = life.place(device, t)
            out["sensor_id"] = life.sensor_ids.take(pa.array(entity))
            out["region"] = _take(cats.regions.values, region)
            out["zone"] = _take(cats.zones.values, zone)
            out["version"] = pa.array(life.stable(entity, device)["version"])
        return out

    def table(self) -> pa.Table:
        cats = self.catalogs
        return pa.table({
            "sensor_id": self.sensor_ids,
            "device_type": _take(cats.device_types.values, self.type),
            "model": _take(cats.models.values, self.model),
            "region": _take(cats.regions.values, self.region),
            "zone": _take(cats.zones.values, self.zone),
            "env": _take(cats.envs.values, self.env),
            "source": _take(cats.sources.values, self.source),
            "version": pa.array(self.version),
            "interval_s": pa.array(self.interval / SECOND_MS),
        })


def _cycle(local_hours: np.ndarray, period_h: float, peak_h: float) -> np.ndarray:
    """A cosine of the local time with its peak at ``peak_h`` (a daily or semi-daily cycle)."""
    return np.cos(2 * np.pi * (local_hours - peak_h) / period_h)


def _runs(device: np.ndarray, devices: int, *values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group events by device and equal ``values``: (group of each event, first event of each group). A
    device's events are taken in their order and a group is a run of equal values, so events with equal
    values may fall in several groups (never one group with different values)."""
    small = device.astype(np.uint16) if devices <= 1 << 16 else device  # 16-bit keys: a radix sort
    order = np.argsort(small, kind="stable")
    ordered = device[order]
    start = np.ones(len(device), dtype=bool)
    start[1:] = ordered[1:] != ordered[:-1]
    for value in values:
        ordered = value[order]
        start[1:] |= ordered[1:] != ordered[:-1]
    group = np.empty(len(device), dtype=np.int64)
    group[order] = np.cumsum(start) - 1
    return group, order[start]


def _take(values: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    return _dictionary(values).take(pa.array(codes))


@functools.lru_cache(maxsize=64)
def _dictionary(values: tuple[str, ...]) -> pa.Array:
    return pa.array(values, pa.string())
