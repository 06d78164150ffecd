"""The device registry of the fleet profile and its change feed (CDC), deterministic from the seed.

What a device is here. The fleet has ``DEVICE_COUNT`` *slots* (a place that reports on a schedule, see
:mod:`iotgen.generation.fleet`); a slot is occupied by one physical device at a time, and the registry holds one
row per device: ``sensor_id``, ``device_type``, ``model``, hardware ``version``, ``firmware_version``,
``region``, ``zone``, ``env``, ``source``, ``interval_s``, ``install_time``, ``lifecycle_status`` and
``replaces``. Over time (all drawn per slot with keyed random numbers, so adding devices changes none of the
others):

- **commissioning**: ``commissioned_fraction`` of the slots get their device during the time window (an insert;
  no events before it); the others' devices were installed up to ``install_days`` before the window (an insert
  at that time: the feed's initial load);
- **firmware rollouts** (the fleet's ``firmware.rollouts``): each device adopts a rollout at its keyed time (an
  update); ``rollback_fraction`` of the adopters fail and roll back to their previous firmware within
  ``rollback_within`` (an update, ``lifecycle_status`` ``rolled_back`` until a later rollout succeeds);
- **relocations**: about ``relocations_per_device_day`` per device and day, to another zone and, for
  ``cross_region_fraction`` of them, another region too (an update);
- **replacement**: about ``replacements_per_device_day``: the device is deleted and a new one (the next free
  ``sensor_id`` after the fleet's, the same type and model, hardware version + 1, the slot's firmware and place)
  is inserted at the same time, and reports on the slot's schedule from then on;
- **decommissioning**: about ``decommissions_per_device_day``: the device is deleted and its slot reports no
  more (device 1 is never decommissioned, so the fleet never runs out of events).

Every attribute of a slot is a closed-form function of ``(slot, time)`` (:meth:`Lifecycle.state`), used both by
the fleet for each event and here for each change, so an event's device attributes are the registry's *as of
the event's time* by construction (the ground truth of an as-of join). Late and clock-skewed events of the
data-quality scenarios carry a timestamp other than their device's time: the as-of rule holds for the rest.

The change feed: one change per commit, numbered by ``_commit_version`` (1, 2, ... in commit-time order) with
its ``_commit_timestamp``. Two layouts (:data:`LAYOUTS`):

- ``flat`` (the default): Delta's change-data-feed layout, what ``readChangeFeed`` gives and what Databricks
  ``AUTO CDC`` / ``APPLY CHANGES`` and a ``MERGE`` consume: the row's columns plus ``_change_type`` (``insert``,
  ``update_preimage``, ``update_postimage``, ``delete``), ``_commit_version``, ``_commit_timestamp`` and
  ``change_reason``; an update is two rows (before and after), a delete carries the deleted row;
- ``debezium``: one row per change, ``before`` and ``after`` (structs of the row, null where there is none),
  ``op`` (``c``, ``u``, ``d``), ``ts_ms`` (the commit time) and ``source`` (``seq``: the commit version,
  ``table``, ``reason``).

Delivery faults for CDC consumers (:class:`CdcFaults`, off by default), applied to whole changes and labelled
(:data:`CHANGE_LABEL_SCHEMA`): ``duplicates`` (a change delivered again up to ``max_distance`` changes later),
``out_of_order`` (delivered up to ``window`` changes late) and ``late`` (delivered after the changes committed up
to ``max`` after it). Nothing here does I/O; the feed is computed whole (it is small: a few rows per device),
once per spec, so any range of it is the same at any partition count.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..base import keyed_random as kr
from ..base.errors import InputError
from ..base.times import DAY_MS, HOUR_MS
from ..settings.config import CDC_LAYOUTS
from ..settings.schema import TIMESTAMP

if TYPE_CHECKING:
    from .fleet import Devices
    from .generator import GeneratorSpec

LAYOUTS = CDC_LAYOUTS  # flat (the default) | debezium
CHANGE_TYPES = ("insert", "update_preimage", "update_postimage", "delete")
REASONS = ("commission", "firmware_rollout", "firmware_rollback", "relocation", "replacement", "decommission")
LIFECYCLE_STATUSES = ("active", "rolled_back")
FAULT_KINDS = ("duplicate", "out_of_order", "late")
MAX_RELOCATIONS = 4  # per slot over the window
NEVER = np.iinfo(np.int64).max // 4  # "no such time" (ms): beyond any event, safe to add to

# keyed_random streams of the lifecycle (the fleet's are 100-111, the scenarios' 201-420)
_LIFE, _RELOCATE, _FAIL, _FAULTS = 500, 501, 502, 503

REGISTRY_SCHEMA = pa.schema([
    pa.field("sensor_id", pa.string(), nullable=False),
    pa.field("device_type", pa.string()),
    pa.field("model", pa.string()),
    pa.field("version", pa.int32()),
    pa.field("firmware_version", pa.string()),
    pa.field("region", pa.string()),
    pa.field("zone", pa.string()),
    pa.field("env", pa.string()),
    pa.field("source", pa.string()),
    pa.field("interval_s", pa.float64()),
    pa.field("install_time", TIMESTAMP),
    pa.field("lifecycle_status", pa.string()),
    pa.field("replaces", pa.string()),
])
#: The columns the events share with the registry (equal, as of the event's time).
EVENT_ATTRIBUTES = ("device_type", "model", "version", "firmware_version", "region", "zone", "env", "source")
FLAT_SCHEMA = pa.schema([*REGISTRY_SCHEMA, pa.field("_change_type", pa.string(), nullable=False),
                         pa.field("_commit_version", pa.int64(), nullable=False),
                         pa.field("_commit_timestamp", TIMESTAMP, nullable=False),
                         pa.field("change_reason", pa.string(), nullable=False)])
_ROW = pa.struct(list(REGISTRY_SCHEMA))
DEBEZIUM_SCHEMA = pa.schema([
    pa.field("before", _ROW), pa.field("after", _ROW), pa.field("op", pa.string(), nullable=False),
    pa.field("ts_ms", pa.int64(), nullable=False),
    pa.field("source", pa.struct([pa.field("seq", pa.int64(), nullable=False), pa.field("table", pa.string()),
                                  pa.field("reason", pa.string())]), nullable=False),
])
HISTORY_SCHEMA = pa.schema([*REGISTRY_SCHEMA, pa.field("valid_from", TIMESTAMP, nullable=False),
                            pa.field("valid_to", TIMESTAMP), pa.field("_commit_version", pa.int64(), nullable=False)])
CHANGE_LABEL_SCHEMA = pa.schema([
    pa.field("row_index", pa.int64(), nullable=False),
    pa.field("_commit_version", pa.int64(), nullable=False),
    pa.field("sensor_id", pa.string()),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("value", pa.float64()),
    pa.field("source_index", pa.int64()),
    pa.field("note", pa.string()),
])


# ---- parameters (the defaults of the spec file's registry section: one place) --------------------------------
@dataclass(frozen=True)
class CdcFaults:
    """Delivery faults of the change feed: rates are shares of changes."""

    duplicates: float = 0.0
    duplicate_distance: int = 10
    out_of_order: float = 0.0
    out_of_order_window: int = 10
    late: float = 0.0
    late_max_ms: int = 6 * HOUR_MS

    def enabled(self) -> bool:
        return self.duplicates > 0 or self.out_of_order > 0 or self.late > 0


@dataclass(frozen=True)
class Registry:
    """How the fleet's devices change over the time window (``spec.fleet.registry``; rates per device and day)."""

    commissioned_fraction: float = 0.05
    install_days: float = 730.0
    rollback_fraction: float = 0.05
    rollback_within_ms: int = 2 * HOUR_MS
    relocations_per_device_day: float = 0.02
    cross_region_fraction: float = 0.2
    replacements_per_device_day: float = 0.002
    decommissions_per_device_day: float = 0.002
    faults: CdcFaults = field(default_factory=CdcFaults)


# ---- the lifecycle of every slot ---------------------------------------------------------------------------------
class Lifecycle:
    """Per slot: when its device was installed, replaced, decommissioned and relocated, and which rollouts fail;
    :meth:`state` evaluates every changing attribute at any (slot, time). Built by the fleet's ``Devices``."""

    def __init__(self, devices: "Devices", registry: Registry, window_span_ms: int) -> None:
        self.devices, self.registry = devices, registry
        self.lock = threading.Lock()
        self.built: dict[str, Any] = {}  # the memo of _cached (history, feeds)
        seed, n, t0 = devices.seed, devices.count, devices.t0
        self.t0, self.t_end = t0, t0 + window_span_ms
        d = np.arange(n, dtype=np.int64)
        days = window_span_ms / DAY_MS

        def u(k: int) -> np.ndarray:
            return kr.uniform(seed, _LIFE, d, k)

        def within(start: np.ndarray, stop: np.ndarray, k: int) -> np.ndarray:
            return start + np.floor(u(k) * np.maximum(stop - start, 1)).astype(np.int64)

        # Commissioning (device 1 is always there from the start), else installed before the window.
        commissioned = (u(0) < registry.commissioned_fraction) & (d > 0)
        before = t0 - 1 - np.floor(u(2) * registry.install_days * DAY_MS).astype(np.int64)
        self.install_at = np.where(commissioned, within(np.full(n, t0), np.full(n, self.t_end), 1), before)
        starts = np.maximum(self.install_at + 1, t0)
        # Replacement (at most one per slot) and decommissioning (after it, if both).
        replaced = u(3) < -np.expm1(-registry.replacements_per_device_day * days)
        self.replace_at = np.where(replaced, within(starts, np.full(n, self.t_end), 4), NEVER)
        decommissioned = (u(5) < -np.expm1(-registry.decommissions_per_device_day * days)) & (d > 0)
        after = np.where(replaced, self.replace_at + 1, starts)
        self.decommission_at = np.where(decommissioned & (after < self.t_end),
                                        within(after, np.full(n, self.t_end), 6), NEVER)
        self.replacement = np.full(n, -1, dtype=np.int64)  # the replacement device's number (0-based), else -1
        self.replacement[replaced] = n + np.arange(int(replaced.sum()))
        self.entities = n + int(replaced.sum())
        # Relocations: a keyed Poisson count over the slot's active time, at sorted uniform times.
        active_until = np.minimum(self.decommission_at, self.t_end)
        mean = registry.relocations_per_device_day * np.maximum(active_until - starts, 0) / DAY_MS
        count = _poisson(u(7), mean, MAX_RELOCATIONS)
        k = np.arange(MAX_RELOCATIONS)
        v = kr.uniform(seed, _RELOCATE, d[:, None], k[None, :])
        times = np.sort(starts[:, None] + np.floor(v * (active_until - starts)[:, None]).astype(np.int64), axis=1)
        self.relocate_at = np.where(k[None, :] < count[:, None], times, NEVER)
        cats = devices.catalogs
        zones, regions = cats.zones, cats.regions
        zone, region = devices.zone.copy(), devices.region.copy()
        self.zone_after = np.empty((n, MAX_RELOCATIONS), dtype=np.int64)
        self.region_after = np.empty((n, MAX_RELOCATIONS), dtype=np.int64)
        for j in range(MAX_RELOCATIONS):
            new_zone = kr.choice(kr.uniform(seed, _RELOCATE, d, 100 + j), zones.probabilities)
            if len(zones.values) > 1:
                new_zone = np.where(new_zone == zone, (new_zone + 1) % len(zones.values), new_zone)
            moves = kr.uniform(seed, _RELOCATE, d, 200 + j) < registry.cross_region_fraction
            new_region = kr.choice(kr.uniform(seed, _RELOCATE, d, 300 + j), regions.probabilities)
            if len(regions.values) > 1:
                new_region = np.where(new_region == region, (new_region + 1) % len(regions.values), new_region)
            zone, region = new_zone, np.where(moves, new_region, region)
            self.zone_after[:, j], self.region_after[:, j] = zone, region
        # Firmware: each rollout adopted at its integer ms (the fleet's keyed time, rounded up); some roll back.
        self.rollouts = []  # (version code, adopted at, rolled back at): NEVER where it does not happen
        for r, (code, when) in enumerate(devices.rollouts):
            adopt = np.where(np.isfinite(when), np.ceil(np.where(np.isfinite(when), when, 0)), NEVER).astype(np.int64)
            fails = (kr.uniform(seed, _FAIL, d, 2 * r) < registry.rollback_fraction) & (adopt < NEVER)
            back = adopt + 1 + np.floor(kr.uniform(seed, _FAIL, d, 2 * r + 1) * registry.rollback_within_ms)
            self.rollouts.append((code, adopt, np.where(fails, back.astype(np.int64), NEVER)))
        # Schedule bounds of each slot, ms after the window start: reports in [active_from, active_until).
        self.active_from = np.maximum(self.install_at - t0, 0)
        self.active_until = np.where(self.decommission_at < NEVER, self.decommission_at - t0, NEVER)
        width = max(5, len(str(n)))
        self.sensor_ids = pa.array([f"sensor-{i + 1:0{width}d}" for i in range(self.entities)], pa.string())

    # ---- state at (slot, time) ----------------------------------------------------------------------------
    def entity(self, slot: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The device (0-based: < DEVICE_COUNT the slot's first, above it a replacement) in ``slot`` at ``t``."""
        return np.where(t >= self.replace_at[slot], self.replacement[slot], slot)

    def place(self, slot: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(region, zone) codes of ``slot`` at ``t``."""
        moved = (self.relocate_at[slot] <= t[:, None]).sum(axis=1)
        last = np.maximum(moved - 1, 0)
        region = np.where(moved > 0, self.region_after[slot, last], self.devices.region[slot])
        zone = np.where(moved > 0, self.zone_after[slot, last], self.devices.zone[slot])
        return region, zone

    def firmware(self, slot: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(firmware code, rolled back?) of ``slot`` at ``t``."""
        firmware = self.devices.firmware[slot].copy()
        rolled = np.zeros(len(slot), dtype=bool)
        for code, adopt, back in self.rollouts:
            on = t >= adopt[slot]
            undone = t >= back[slot]
            firmware = np.where(on & ~undone, code, firmware)
            rolled = np.where(on, undone, rolled)
        return firmware, rolled

    def stable(self, entity: np.ndarray, slot: np.ndarray) -> dict[str, np.ndarray]:
        """Model and hardware version of devices (a replacement: its slot's model, the next hardware version)."""
        devices = self.devices
        replacement = entity >= devices.count
        version = np.where(replacement, np.minimum(devices.version[slot] + 1, 5), devices.version[slot])
        return {"model": devices.model[slot], "version": version.astype(np.int32)}

    def rows(self, slot: np.ndarray, t: np.ndarray, entity: np.ndarray | None = None) -> pa.Table:
        """Registry rows (:data:`REGISTRY_SCHEMA`) of the devices in ``slot`` at ``t`` (``entity``: a given one)."""
        devices, cats = self.devices, self.devices.catalogs
        entity = self.entity(slot, t) if entity is None else entity
        region, zone = self.place(slot, t)
        firmware, rolled = self.firmware(slot, t)
        replacement = entity >= devices.count
        install = np.where(replacement, self.replace_at[slot], self.install_at[slot])
        return pa.table({
            "sensor_id": self.sensor_ids.take(pa.array(entity)),
            "device_type": _take(cats.device_types.values, devices.type[slot]),
            "model": _take(cats.models.values, devices.model[slot]),
            "version": pa.array(self.stable(entity, slot)["version"]),
            "firmware_version": devices.firmware_values.take(pa.array(firmware)),
            "region": _take(cats.regions.values, region),
            "zone": _take(cats.zones.values, zone),
            "env": _take(cats.envs.values, devices.env[slot]),
            "source": _take(cats.sources.values, devices.source[slot]),
            "interval_s": pa.array(devices.interval[slot] / 1000.0),
            "install_time": pa.array(install * 1000, type=TIMESTAMP),
            "lifecycle_status": pa.array(np.array(LIFECYCLE_STATUSES)[rolled.astype(np.int64)], pa.string()),
            "replaces": pc.if_else(pa.array(replacement), self.sensor_ids.take(pa.array(slot)),
                                   pa.scalar(None, pa.string())),
        }, schema=REGISTRY_SCHEMA)

    # ---- the changes ----------------------------------------------------------------------------------------
    @functools.cached_property
    def changes(self) -> "_Changes":
        return _changes(self)


def _poisson(u: np.ndarray, mean: np.ndarray, cap: int) -> np.ndarray:
    """Poisson(mean) by the inverse CDF of ``u``, at most ``cap``."""
    count = np.zeros(len(u), dtype=np.int64)
    p = np.exp(-mean)
    cumulative = p.copy()
    for k in range(1, cap + 1):
        above = u >= cumulative
        count += above
        p = p * mean / k
        cumulative = cumulative + p
    return count


def _take(values: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    return pa.array(values, pa.string()).take(pa.array(codes))


@dataclass(frozen=True)
class _Changes:
    """Every change in commit order: its row image (after it; a delete: the deleted row), the row before it
    (updates), its kind and reason, its commit time (ms) and version (1, 2, ...)."""

    after: pa.Table
    before: pa.Table  # rows of updates only, in the order of the updates
    kind: np.ndarray  # 0 insert, 1 update, 2 delete
    reason: np.ndarray  # index into REASONS
    time_ms: np.ndarray
    before_of: np.ndarray  # per change: its row in ``before``, -1 if none

    @property
    def count(self) -> int:
        return len(self.kind)


_INSERT, _UPDATE, _DELETE = 0, 1, 2


def _changes(life: Lifecycle) -> _Changes:
    n = life.devices.count
    slot_all = np.arange(n, dtype=np.int64)
    parts: list[tuple[np.ndarray, np.ndarray, int, int, np.ndarray]] = []  # (slot, time, kind, reason, entity)

    def add(mask: np.ndarray, time: np.ndarray, kind: int, reason: str, entity: np.ndarray | None = None) -> None:
        slot = slot_all[mask]
        t = time[mask]
        parts.append((slot, t, kind, REASONS.index(reason), life.entity(slot, t) if entity is None else entity[mask]))

    def active(t: np.ndarray) -> np.ndarray:
        return (t >= life.install_at) & (t < life.decommission_at) & (t < NEVER)

    add(np.ones(n, dtype=bool), life.install_at, _INSERT, "commission", slot_all)
    for _, adopt, back in life.rollouts:
        add(active(adopt), adopt, _UPDATE, "firmware_rollout")
        add(active(back), back, _UPDATE, "firmware_rollback")
    for j in range(MAX_RELOCATIONS):
        at = life.relocate_at[:, j]
        add(active(at), at, _UPDATE, "relocation")
    replaced = life.replace_at < NEVER
    add(replaced, life.replace_at, _DELETE, "replacement", slot_all)
    add(replaced, life.replace_at, _INSERT, "replacement", life.replacement)
    add(life.decommission_at < NEVER, life.decommission_at, _DELETE, "decommission")
    slot, time, entity = (np.concatenate([p[i] for p in parts]) for i in (0, 1, 4))
    kind = np.concatenate([np.full(len(p[0]), p[2]) for p in parts])
    reason = np.concatenate([np.full(len(p[0]), p[3]) for p in parts])
    # Commit order: time, then deletes before inserts (a replacement), then slot, then kind of change.
    order = np.lexsort((reason, slot, np.where(kind == _DELETE, 0, 1), time))
    slot, time, entity, kind, reason = slot[order], time[order], entity[order], kind[order], reason[order]
    # Row images: after the change (a delete: the row as it was just before).
    image_time = np.where(kind == _DELETE, time - 1, time)
    after = life.rows(slot, image_time, entity)
    # An update's preimage is the previous image of the same device; updates that change nothing are dropped.
    by_entity = np.lexsort((np.arange(len(entity)), entity))
    previous = np.full(len(entity), -1, dtype=np.int64)
    same = entity[by_entity][1:] == entity[by_entity][:-1]
    previous[by_entity[1:][same]] = by_entity[:-1][same]
    updates = np.flatnonzero(kind == _UPDATE)
    assert (previous[updates] >= 0).all(), "an update before its device's insert"
    before = after.take(pa.array(previous[updates]))
    changed = _rows_differ(before, after.take(pa.array(updates)))
    keep = np.ones(len(kind), dtype=bool)
    keep[updates[~changed]] = False
    updates = updates[changed]
    before = before.filter(pa.array(changed))
    # Updates dropped above may be the "previous" of later ones: recompute from the kept rows.
    kept = np.flatnonzero(keep)
    before_of = np.full(len(kept), -1, dtype=np.int64)
    before_of[np.searchsorted(kept, updates)] = np.arange(len(updates))
    return _Changes(after.take(pa.array(kept)), before, kind[kept], reason[kept], time[kept], before_of)


def _rows_differ(a: pa.Table, b: pa.Table) -> np.ndarray:
    differ = np.zeros(a.num_rows, dtype=bool)
    for name in a.column_names:
        x, y = a.column(name), b.column(name)
        equal = pc.fill_null(pc.equal(x, y), False)
        both_null = pc.and_(pc.is_null(x), pc.is_null(y))
        differ |= ~np.asarray(pc.or_(equal, both_null).to_numpy(zero_copy_only=False), dtype=bool)
    return differ


# ---- the public API: registry, history, change feed --------------------------------------------------------------
def registry_of(spec: "GeneratorSpec") -> Registry | None:
    """The registry parameters of ``spec`` (None: the registry is off, or the profile is not the fleet)."""
    return getattr(spec.fleet, "registry", None) if spec.fleet is not None else None


def lifecycle(spec: "GeneratorSpec") -> Lifecycle:
    """The lifecycle of ``spec``'s fleet (cached with its devices); InputError without a registry."""
    from .fleet import fleet_devices

    if registry_of(spec) is None:
        raise InputError("DEVICE_REGISTRY is off: the device registry needs PROFILE=fleet and DEVICE_REGISTRY=true "
                         "(or a registry section in the spec file)")
    life = fleet_devices(spec).lifecycle
    assert life is not None
    return life


def registry_history(spec: "GeneratorSpec") -> pa.Table:
    """Every version of every device (SCD type 2, :data:`HISTORY_SCHEMA`): the row, ``valid_from`` (its commit
    time), ``valid_to`` (the next change's, null while current; a deleted device's last row ends at its delete)
    and ``_commit_version``. The ground truth of an as-of join: an event of ``sensor_id`` at ``t`` has the
    attributes of the version with ``valid_from <= t < valid_to``."""
    return _history(lifecycle(spec))


def registry_snapshot(spec: "GeneratorSpec", as_of_ms: int | None = None) -> pa.Table:
    """The registry (:data:`REGISTRY_SCHEMA`, one row per device present, by ``sensor_id``) as of epoch-ms
    ``as_of_ms`` (every change committed at or before it applied); None: after every change."""
    history = _history(lifecycle(spec))
    if as_of_ms is None:
        mask = pc.is_null(history.column("valid_to"))
    else:
        t = pa.scalar(int(as_of_ms) * 1000, TIMESTAMP)
        mask = pc.and_(pc.less_equal(history.column("valid_from"), t),
                       pc.fill_null(pc.greater(history.column("valid_to"), t), True))
    rows = history.filter(mask).select(REGISTRY_SCHEMA.names)
    return rows.take(pc.sort_indices(rows, [("sensor_id", "ascending")]))


@dataclass(frozen=True)
class ChangeFeed:
    """The change feed as delivered (faults applied) and the labels of its faults (:data:`CHANGE_LABEL_SCHEMA`)."""

    changes: pa.Table
    labels: pa.Table
    layout: str


def change_feed(spec: "GeneratorSpec", layout: str = "flat") -> ChangeFeed:
    """The change feed of ``spec``'s registry in ``layout`` (:data:`LAYOUTS`), with the delivery faults of
    ``spec.fleet.registry.faults`` applied and labelled. Cached per spec and layout."""
    if layout not in LAYOUTS:
        raise InputError(f"CDC_LAYOUT must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    return _feed(lifecycle(spec), layout)


def change_count(spec: "GeneratorSpec", layout: str = "flat") -> int:
    """Rows of the delivered change feed (what a reader cuts into partitions)."""
    return change_feed(spec, layout).changes.num_rows


def change_range(spec: "GeneratorSpec", start: int, stop: int, layout: str = "flat") -> pa.Table:
    """Rows ``start .. stop`` of the delivered change feed: the same rows whatever the ranges a reader asks for."""
    if not 0 <= start <= stop:
        raise InputError(f"change range must satisfy 0 <= start <= stop, got {start}..{stop}")
    changes = change_feed(spec, layout).changes
    return changes.slice(start, max(0, min(stop, changes.num_rows) - start))


def _cached(life: Lifecycle, key: str, build) -> Any:
    """``build()`` once per lifecycle (the history and feeds are pure functions of it, so a memo on the object that
    holds them changes no result; no module state)."""
    with life.lock:
        if key not in life.built:
            life.built[key] = build()
        return life.built[key]


def _history(life: Lifecycle) -> pa.Table:
    return _cached(life, "history", lambda: _build_history(life))


def _build_history(life: Lifecycle) -> pa.Table:
    c = life.changes
    version = np.arange(1, c.count + 1, dtype=np.int64)
    ids = c.after.column("sensor_id").to_numpy(zero_copy_only=False)
    order = np.lexsort((version, ids.astype(str)))
    nxt = np.full(c.count, -1, dtype=np.int64)
    same = ids[order][1:] == ids[order][:-1]
    nxt[order[:-1][same]] = order[1:][same]
    rows = np.flatnonzero(c.kind != _DELETE)
    valid_to = np.where(nxt[rows] >= 0, c.time_ms[np.maximum(nxt[rows], 0)], -1)
    table = c.after.take(pa.array(rows))
    table = table.append_column(HISTORY_SCHEMA.field("valid_from"),
                                pa.array(c.time_ms[rows] * 1000, type=TIMESTAMP))
    table = table.append_column(HISTORY_SCHEMA.field("valid_to"),
                                pa.array(np.where(valid_to >= 0, valid_to * 1000, 0), type=TIMESTAMP,
                                         mask=valid_to < 0))
    return table.append_column(HISTORY_SCHEMA.field("_commit_version"), pa.array(version[rows]))


def _feed(life: Lifecycle, layout: str) -> ChangeFeed:
    return _cached(life, f"feed/{layout}", lambda: _build_feed(life, layout))


def _delivery(life: Lifecycle) -> tuple[np.ndarray, list[tuple[np.ndarray, str, np.ndarray]]]:
    """The order changes are delivered in (indices into the commits, duplicates repeated) and its labels."""
    c, faults, seed = life.changes, life.registry.faults, life.devices.seed
    m = c.count
    version = np.arange(1, m + 1, dtype=np.int64)
    key = np.arange(m, dtype=np.float64)  # delivery position of each change
    kinds: list[tuple[np.ndarray, str, np.ndarray]] = []  # (changes, kind, value)
    if faults.late > 0:  # delivered after every change committed up to L after it
        late = np.flatnonzero(kr.uniform(seed, _FAULTS, version, 0) < faults.late)
        delay = 1 + np.floor(kr.uniform(seed, _FAULTS, version[late], 1) * faults.late_max_ms).astype(np.int64)
        key[late] = np.searchsorted(c.time_ms, c.time_ms[late] + delay, side="right") - 0.5
        kinds.append((late, "late", delay / 1000.0))
    if faults.out_of_order > 0:  # delivered up to `window` changes later
        moved = np.flatnonzero(kr.uniform(seed, _FAULTS, version, 2) < faults.out_of_order)
        by = 1 + np.floor(kr.uniform(seed, _FAULTS, version[moved], 3) * faults.out_of_order_window)
        key[moved] += by + 0.25
        kinds.append((moved, "out_of_order", by))
    order = np.argsort(key, kind="stable")
    if faults.duplicates > 0:  # delivered again, up to `distance` changes later
        position = np.empty(m, dtype=np.int64)
        position[order] = np.arange(m)
        copied = np.flatnonzero(kr.uniform(seed, _FAULTS, version, 4) < faults.duplicates)
        by = 1 + np.floor(kr.uniform(seed, _FAULTS, version[copied], 5) * faults.duplicate_distance)
        keys = np.concatenate([np.arange(m, dtype=np.float64), position[copied] + by + 0.5])
        items = np.concatenate([order, copied])
        order = items[np.argsort(keys, kind="stable")]
        kinds.append((copied, "duplicate", by))
    return order, kinds


def _build_feed(life: Lifecycle, layout: str) -> ChangeFeed:
    c = life.changes
    order, kinds = _delivery(life)
    # Rows per change in the flat layout: an update is two (preimage, postimage).
    rows_per = np.where(c.kind == _UPDATE, 2, 1) if layout == "flat" else np.ones(c.count, dtype=np.int64)
    delivered_rows = rows_per[order]
    first_row = np.cumsum(delivered_rows) - delivered_rows  # delivered row of each delivered change
    table = _flat(c, order) if layout == "flat" else _debezium(c, order)
    # Labels: the delivered position of each faulty change (a duplicate: its second copy).
    positions = np.arange(len(order))
    first, last = np.empty(c.count, dtype=np.int64), np.empty(c.count, dtype=np.int64)
    first[order[::-1]] = positions[::-1]
    last[order] = positions
    ids = c.after.column("sensor_id")
    label_rows: list[pa.Table] = []
    for changes, kind, values in kinds:
        values = np.asarray(values, dtype=np.float64)
        at = (last if kind == "duplicate" else first)[changes]
        note = {"late": "delivered after the changes committed up to value s later",
                "out_of_order": "delivered up to value changes late",
                "duplicate": "a second copy, value changes after the first (source_index)"}[kind]
        label_rows.append(pa.table({
            "row_index": pa.array(first_row[at], pa.int64()),
            "_commit_version": pa.array(changes + 1, pa.int64()),
            "sensor_id": ids.take(pa.array(changes)),
            "kind": pa.array([kind] * len(changes), pa.string()),
            "value": pa.array(values),
            "source_index": pa.array(first_row[first[changes]], pa.int64()) if kind == "duplicate"
            else pa.nulls(len(changes), pa.int64()),
            "note": pa.array([note] * len(changes), pa.string()),
        }, schema=CHANGE_LABEL_SCHEMA))
    labels = pa.concat_tables(label_rows) if label_rows else CHANGE_LABEL_SCHEMA.empty_table()
    labels = labels.take(pc.sort_indices(labels, [("row_index", "ascending"), ("kind", "ascending")]))
    return ChangeFeed(table, labels, layout)


def _flat(c: _Changes, order: np.ndarray) -> pa.Table:
    kind = c.kind[order]
    update = kind == _UPDATE
    rows_per = np.where(update, 2, 1)
    change = np.repeat(order, rows_per)
    total = len(change)
    starts = np.cumsum(rows_per) - rows_per
    is_pre = np.zeros(total, dtype=bool)
    is_pre[starts[update]] = True
    # Row images: a preimage from ``before``, any other from ``after`` (one concatenated table, one take).
    source = np.where(is_pre, c.count + c.before_of[change], change)
    images = pa.concat_tables([c.after, c.before]).take(pa.array(source))
    change_type = np.where(is_pre, 1, np.where(c.kind[change] == _UPDATE, 2, np.where(c.kind[change] == _INSERT,
                                                                                        0, 3)))
    columns = {name: images.column(name) for name in REGISTRY_SCHEMA.names}
    columns["_change_type"] = pa.array(np.array(CHANGE_TYPES)[change_type], pa.string())
    columns["_commit_version"] = pa.array(change + 1, pa.int64())
    columns["_commit_timestamp"] = pa.array(c.time_ms[change] * 1000, type=TIMESTAMP)
    columns["change_reason"] = pa.array(np.array(REASONS)[c.reason[change]], pa.string())
    return pa.table(columns, schema=FLAT_SCHEMA)


def _debezium(c: _Changes, order: np.ndarray) -> pa.Table:
    kind = c.kind[order]
    images = pa.concat_tables([c.after, c.before]).combine_chunks()
    before_index = np.where(kind == _UPDATE, c.count + c.before_of[order], np.where(kind == _DELETE, order, 0))
    after_index = np.where(kind == _DELETE, 0, order)

    def struct(index: np.ndarray, missing: np.ndarray) -> pa.Array:
        rows = images.take(pa.array(index))
        return pa.StructArray.from_arrays([rows.column(n).combine_chunks() for n in REGISTRY_SCHEMA.names],
                                          fields=list(REGISTRY_SCHEMA), mask=pa.array(missing))

    source = pa.StructArray.from_arrays(
        [pa.array(order + 1, pa.int64()), pa.array(["devices"] * len(order), pa.string()),
         pa.array(np.array(REASONS)[c.reason[order]], pa.string())],
        fields=list(DEBEZIUM_SCHEMA.field("source").type))
    return pa.table({
        "before": struct(before_index, kind == _INSERT),
        "after": struct(after_index, kind == _DELETE),
        "op": pa.array(np.array(["c", "u", "d"])[kind], pa.string()),
        "ts_ms": pa.array(c.time_ms[order], pa.int64()),
        "source": source,
    }, schema=DEBEZIUM_SCHEMA)


def describe_registry(spec: "GeneratorSpec", layout: str = "flat") -> dict[str, Any]:
    """What a manifest records of the registry: devices, changes by reason, faults by kind (JSON-ready)."""
    life = lifecycle(spec)
    c = life.changes
    feed = change_feed(spec, layout)
    reasons = {REASONS[r]: int(n) for r, n in zip(*np.unique(c.reason, return_counts=True))}
    kinds = pc.value_counts(feed.labels.column("kind")).to_pylist() if feed.labels.num_rows else []
    return {
        "devices": int(registry_snapshot(spec).num_rows),
        "devices_ever": life.entities,
        "changes": c.count,
        "changes_by_reason": dict(sorted(reasons.items())),
        "change_rows": feed.changes.num_rows,
        "layout": layout,
        "faults": {k["values"]: k["counts"] for k in kinds},
    }
