"""Data-quality scenarios: feeds that break the way real feeds do, with the ground truth of every break.

:class:`Scenarios` is ``spec.scenarios`` of a :class:`~iotgen.generation.generator.GeneratorSpec`: ``generate_block``
calls :meth:`Scenarios.apply` on each block of :data:`~iotgen.generation.generator.BLOCK_SIZE` clean events. Every
scenario is off unless configured, and each is a rate or a schedule. They are applied in this order, so a
later one acts on what the earlier ones made (and a copy carries its source's faults):

0. ``offline`` and ``dropped`` (fleet profile only; :mod:`iotgen.generation.offline`): devices go offline for
   periods and upload their buffered reports in a burst on reconnecting (a bounded buffer: the overflow is
   lost), and ``rate`` of each device's reports are never sent. They decide which reports the block holds: its
   events are then the reports in order of arrival. Labels: ``catch_up`` per uploaded event, ``offline`` per
   gap, ``overflow`` and ``dropped`` per report that never arrived (at the position it would have had).
1. ``late``: the event arrives in its slot but was measured ``L`` earlier (``L`` from a lateness
   distribution, at most ``max``): its timestamp (and, in the fleet profile, every reading, recomputed at that
   time) is ``L`` older, while ``created_at``/``updated_at`` keep the arrival, so ``created_at - timestamp``
   shows the lateness. Labels carry ``L`` in seconds.
2. anomalies: ``stuck`` (a reading frozen at its value when the episode began) and ``drift`` (a reading
   ramping away, up to ``max_offset``), in per-device episodes covering ``rate`` of each device's time, and
   ``spikes`` (``rate`` of events get a jump of the configured magnitude).
3. ``out_of_range``: ``rate`` of events get an impossible value (-273.15 degC, 110 % RH, ...).
4. ``clock_skew``: ``device_fraction`` of the devices report timestamps off by a per-device offset that drifts
   by up to ``max_drift_per_day``.
5. ``schema_drift``: on a schedule of event time, a key appears in ``json_column``, changes type, or
   disappears (recorded as a timeline with counts, not per event).
6. ``malformed_json``: ``rate`` of ``json_column`` values are truncated, not JSON, double-encoded or empty.
7. ``nulls``: per column, ``rate`` of values are null (those columns become nullable: :meth:`output_schema`).
8. ``duplicates`` and ``replays``: a slot is replaced by an exact copy (same ``event_id``) of an earlier event,
   or a run of slots by a run of earlier events, from at most ``max_distance`` events before.
9. ``out_of_order``: ``rate`` of events are delivered up to ``max_distance`` positions later.

Rates are met per block (``floor(rate * BLOCK_SIZE + u)`` events), so a run's counts are close to the
configured rates; episode scenarios (stuck, drift) and clock skew are spread evenly over the devices, so the
share of device time affected is close to the rate at any moment.

Ground truth: :meth:`Scenarios.apply` returns the block with its :class:`~iotgen.generation.truth.Truth`: the
labels (one row per injected fault and event, or per gap or report that never arrived: ``event_index``,
``event_id``, ``sensor_id``, ``kind``, ``column``, ``value``, ``source_index``, ``note``; see
:data:`LABEL_SCHEMA`) and which events each schema-drift change touches. Everything is a pure function of
``(spec, block)``: the truth travels with the events (:func:`iotgen.generation.generator.labelled_range`);
:func:`truth_range` returns the labels of any event range by generating its blocks.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..base import keyed_random as kr
from ..base.errors import InputError
from ..base.times import DAY_MS, HOUR_MS, iso_time
from ..settings.catalogs import ValueSpec
from ..settings.schema import ARROW_SCHEMA, TIMESTAMP, timestamps_ms
from .dynamic_json import build_json_column
from .fleet import READING_RANGES
from .generator import BLOCK_SIZE, GeneratorSpec, block_rng, labelled_range
from .offline import MISSING_KINDS, Delivered, Dropped, Offline, delivered_block
from .truth import LABEL_SCHEMA, Truth

KINDS = ("late", "stuck", "drift", "spike", "out_of_range", "clock_skew", "malformed_json", "null", "duplicate",
         "replay", "out_of_order", "catch_up", "offline", "overflow", "dropped")
ANOMALY_COLUMNS = ("temperature", "humidity", "pressure")
DEFAULT_SPIKES = {"temperature": (8.0, 25.0), "humidity": (15.0, 40.0), "pressure": (15.0, 40.0)}
DEFAULT_DRIFT = {"temperature": 6.0, "humidity": 15.0, "pressure": 12.0}
OUT_OF_RANGE_VALUES: dict[str, tuple[float, ...]] = {
    "temperature": (-273.15, -99.99, 150.0, 999.99),
    "humidity": (-5.0, 110.0, 255.0),
    "pressure": (0.0, 500.0, 1200.0, 9999.99),
    "battery_level": (-1.0, 101.0, 255.0),
    "signal_strength": (0, 10, -150),
    "uptime_hours": (-1.0, 99999.0),
    "fault_count": (-1, 999),
}
MALFORMED_KINDS = ("truncated", "invalid", "double_encoded", "empty")
LATENESS_DISTRIBUTIONS = ("exponential", "lognormal", "uniform")
DRIFT_OPERATIONS = ("add_key", "change_type", "remove_key")
DRIFT_TYPES = ("string", "float", "object")
# Typical value of a reading in the independent profile (what a stuck sensor freezes at there).
_TYPICAL = {"temperature": (22.0, 8.0), "humidity": (50.0, 15.0), "pressure": (1013.25, 8.0)}
_PRIMES = (1_000_003, 998_244_353, 2_147_483_647)

# block_rng streams (per block) and keyed streams (per device/time) of the scenarios.
_LATE, _SPIKE, _OUT_OF_RANGE, _MALFORMED, _COPIES, _DISORDER, _ADD_KEY = range(201, 208)
_NULLS = 300  # + column number
_STUCK, _DRIFT, _SKEW = 400, 410, 420  # + column number for the episode kinds


# ---- the scenarios' parameters ------------------------------------------------------------------------------
# The defaults of every scenario are the defaults of these dataclasses (the spec file reader takes them from here).
@dataclass(frozen=True)
class WithinDistance:
    """A rate of events, each copied from (duplicates) or delivered up to (out of order) ``max_distance``
    events before or after its slot."""

    rate: float
    max_distance: int


@dataclass(frozen=True)
class Duplicates(WithinDistance):
    max_distance: int = 1000


@dataclass(frozen=True)
class OutOfOrder(WithinDistance):
    max_distance: int = 100


@dataclass(frozen=True)
class Replays:
    rate: float
    min_length: int = 5
    max_length: int = 50
    max_distance: int = 2000


#: The default ``scale_ms`` of each lateness distribution: an exponential's mean, a lognormal's median.
LATENESS_SCALE_MS = {"exponential": 120_000, "lognormal": 60_000, "uniform": 0}


@dataclass(frozen=True)
class Lateness:
    """``distribution``: exponential (mean ``scale_ms``), lognormal (median ``scale_ms``, ``sigma``) or uniform
    (``min_ms`` to ``max_ms``); every draw is between ``min_ms`` and ``max_ms``. ``scale_ms`` left out: the
    distribution's default (:data:`LATENESS_SCALE_MS`)."""

    rate: float
    distribution: str = "exponential"
    scale_ms: int | None = None
    sigma: float = 1.0
    min_ms: int = 1_000
    max_ms: int = 3_600_000

    def __post_init__(self) -> None:
        if self.scale_ms is None:
            object.__setattr__(self, "scale_ms", LATENESS_SCALE_MS[self.distribution])


@dataclass(frozen=True)
class ClockSkew:
    device_fraction: float
    max_offset_ms: int = 600_000
    max_drift_ms_per_day: int = 30_000


@dataclass(frozen=True)
class MalformedJson:
    rate: float
    kinds: tuple[tuple[str, float], ...] = (("truncated", 0.4), ("invalid", 0.3), ("double_encoded", 0.2),
                                            ("empty", 0.1))


@dataclass(frozen=True)
class OutOfRange:
    rate: float
    columns: tuple[str, ...] = ("temperature", "humidity", "pressure", "battery_level")


@dataclass(frozen=True)
class Spikes:
    rate: float
    columns: tuple[tuple[str, tuple[float, float]], ...] = (("temperature", DEFAULT_SPIKES["temperature"]),)


@dataclass(frozen=True)
class Episodes:
    """Per-device episodes covering ``rate`` of each device's time, ``duration_ms`` long (stuck and drift).
    ``max_offset``: how far a drifting reading gets by the end of its episode."""

    rate: float
    duration_ms: int
    columns: tuple[str, ...] = ("temperature",)
    max_offset: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Stuck(Episodes):
    duration_ms: int = 6 * HOUR_MS


@dataclass(frozen=True)
class Drift(Episodes):
    duration_ms: int = DAY_MS
    max_offset: tuple[tuple[str, float], ...] = (("temperature", DEFAULT_DRIFT["temperature"]),)


@dataclass(frozen=True)
class DriftChange:
    """One schema-drift change of ``json_column``, from ``at_ms`` after the window start (event time)."""

    at_ms: int
    operation: str
    key: str
    value: ValueSpec | None = None  # add_key
    to: str | None = None           # change_type

    def __post_init__(self) -> None:
        if self.operation not in DRIFT_OPERATIONS:
            raise InputError(f"schema drift: operation must be one of {', '.join(DRIFT_OPERATIONS)}, "
                             f"got {self.operation!r}")
        if self.operation == "add_key" and self.value is None:
            raise InputError(f"schema drift: add_key {self.key!r} needs a value spec")
        if self.operation == "change_type" and not self.to:
            raise InputError(f"schema drift: change_type of {self.key!r} needs the type it changes to")

    def describe(self) -> str:
        if self.operation == "add_key":
            return f"key {self.key} appears"
        if self.operation == "remove_key":
            return f"key {self.key} disappears"
        return f"key {self.key} becomes {self.to}"


@dataclass(frozen=True)
class Scenarios:
    """The data-quality scenarios of a run (immutable, hashable, picklable); ``spec.scenarios``."""

    offline: Offline | None = None
    dropped: Dropped | None = None
    late: Lateness | None = None
    stuck: Episodes | None = None
    drift: Episodes | None = None
    spikes: Spikes | None = None
    out_of_range: OutOfRange | None = None
    clock_skew: ClockSkew | None = None
    schema_drift: tuple[DriftChange, ...] = ()
    malformed_json: MalformedJson | None = None
    nulls: tuple[tuple[str, float], ...] = ()
    duplicates: WithinDistance | None = None
    replays: Replays | None = None
    out_of_order: WithinDistance | None = None

    def enabled(self) -> bool:
        return any(getattr(self, f) for f in self.__dataclass_fields__)

    def output_schema(self) -> pa.Schema:
        """ARROW_SCHEMA, with the columns that get nulls nullable."""
        nullable = {column for column, rate in self.nulls if rate > 0}
        return pa.schema([f.with_nullable(f.name in nullable) for f in ARROW_SCHEMA],
                         metadata=ARROW_SCHEMA.metadata)

    # ---- the GeneratorSpec extension point ------------------------------------------------------------
    def apply(self, spec: GeneratorSpec, block: int, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, Truth]:
        """The block with the scenarios applied, and its ground truth."""
        delivered = None
        if self.offline or self.dropped:  # which reports arrive, and when: first, as it decides what the block holds
            delivered = delivered_block(spec, self.offline, self.dropped, block)
            batch = _arrivals(spec, batch, delivered)
        work = _Work(spec, block, batch)
        if delivered is not None:
            up = np.flatnonzero(delivered.catch_up)
            work.label(up, "catch_up", None, (delivered.arrival[up] - delivered.time[up]) / 1000.0,
                       _iso(delivered.arrival[up]).to_numpy(zero_copy_only=False))
        if self.late:
            _late(self.late, work)
        for kind, episodes in (("stuck", self.stuck), ("drift", self.drift)):
            if episodes:
                _episodes(kind, episodes, work)
        if self.spikes:
            _spikes(self.spikes, work)
        if self.out_of_range:
            _out_of_range(self.out_of_range, work)
        if self.clock_skew:
            _clock_skew(self.clock_skew, work)
        drifted = _schema_drift(self.schema_drift, work)
        if self.malformed_json:
            _malformed(self.malformed_json, work)
        for number, (column, rate) in enumerate(self.nulls):
            if rate > 0:
                _nulls(column, rate, number, work)
        copied_from, copy_kind = _copies(self.duplicates, self.replays, work)
        order, moved = _disorder(self.out_of_order, work)
        look_back = self.out_of_order.max_distance + len(moved) + 1 if self.out_of_order else 0
        batch, truth = work.finish(self.output_schema(), copied_from, copy_kind, order, moved, look_back, drifted)
        if delivered is not None and len(delivered.missing_index):
            labels = pa.concat_tables([truth.labels, _missing_labels(spec, delivered)])
            truth = Truth(labels.take(pc.sort_indices(labels, [("event_index", "ascending")])), truth.drifted,
                          truth.start)
        return batch, truth


# ---- offline devices and dropped reports: what arrives, and what does not ---------------------------------------
def _arrivals(spec: GeneratorSpec, batch: pa.RecordBatch, delivered: Delivered) -> pa.RecordBatch:
    """The block's arrivals: each the fleet's event of its device and measurement time, with the per-event draws
    of the slot it arrives in (``event_id``, ``json_column``, the gateway's delays after its arrival)."""
    assert spec.fleet is not None  # delivered_block checked
    columns: dict[str, Any] = spec.fleet.columns_at(spec, delivered.device, delivered.time)
    names = batch.schema.names
    measured, created, updated = (_epoch_ms(batch.column(names.index(n))) for n in ("timestamp", "created_at",
                                                                                    "updated_at"))
    arrived = delivered.arrival + (created - measured)
    columns["created_at"] = timestamps_ms(arrived)
    columns["updated_at"] = timestamps_ms(arrived + updated - created)
    for name in ("event_id", "json_column"):
        columns[name] = batch.column(names.index(name))
    return pa.RecordBatch.from_arrays([columns[name] for name in names], schema=batch.schema)


def _missing_labels(spec: GeneratorSpec, delivered: Delivered) -> pa.Table:
    """Labels of what did not arrive: a gap (value: its length in seconds, note: ``start/end``), a report lost
    from the full buffer or dropped at the source (note: when it was measured); at the position of the first
    event arriving after it, with no ``event_id``."""
    assert spec.fleet is not None  # delivered_block checked
    m = len(delivered.missing_index)
    kind = np.asarray(MISSING_KINDS)[delivered.missing_kind]
    gap = kind == "offline"
    measured = _iso(delivered.missing_time)
    notes = pc.if_else(pa.array(gap), pc.binary_join_element_wise(measured, _iso(delivered.missing_end), "/"), measured)
    value = np.where(gap, (delivered.missing_end - delivered.missing_time) / 1000.0, np.nan)
    return pa.table({
        "event_index": pa.array(delivered.missing_index, pa.int64()),
        "event_id": pa.nulls(m, pa.string()),
        "sensor_id": spec.fleet.sensor_ids_at(spec, delivered.missing_device, delivered.missing_time),
        "kind": pa.array(kind.tolist(), pa.string()),
        "column": pa.nulls(m, pa.string()),
        "value": pa.array(value, pa.float64(), mask=np.isnan(value)),
        "source_index": pa.nulls(m, pa.int64()),
        "note": notes,
    }, schema=LABEL_SCHEMA)


def _iso(ms: np.ndarray) -> pa.Array:
    """Epoch ms as ISO 8601 UTC text with milliseconds, as :func:`~iotgen.base.times.iso_time` writes one."""
    return pc.strftime(pa.array(ms, pa.timestamp("ms", tz="UTC")), format="%Y-%m-%dT%H:%M:%SZ")


# ---- the working state of one block ------------------------------------------------------------------------
_NUMERIC = ("battery_level", "temperature", "humidity", "pressure", "version", "signal_strength", "uptime_hours",
            "fault_count", "maintenance_due")
_TIMES = ("timestamp", "last_calibration", "created_at", "updated_at")


class _Strings:
    """A string column being edited: replacing some rows' values rewrites the column once (Arrow's
    ``replace_with_mask``: one pass, whatever the number of rows)."""

    def __init__(self, original: pa.Array) -> None:
        self.current = original

    def get(self, rows: np.ndarray | None = None) -> pa.Array:
        """The current values of ``rows`` (all rows, in order, when None)."""
        return self.current if rows is None else self.current.take(pa.array(rows))

    def set(self, rows: np.ndarray, values: pa.Array) -> None:
        """Give the (increasing) ``rows`` these values."""
        values = values.cast(pa.string())
        if len(rows) == len(self.current):
            self.current = values
        elif len(rows):
            mask = np.zeros(len(self.current), dtype=bool)
            mask[rows] = True
            self.current = pc.replace_with_mask(self.current, pa.array(mask), values)


def _sensor_numbers(sensor: pa.Array) -> np.ndarray:
    """42 for ``sensor-00042``: straight from the text bytes when every id has the same width."""
    offsets = np.frombuffer(sensor.buffers()[1], dtype=np.int32, count=len(sensor) + 1, offset=4 * sensor.offset)
    width = int(offsets[1] - offsets[0]) if len(sensor) else 0
    if sensor.null_count or width <= 7 or offsets[-1] - offsets[0] != width * len(sensor):
        return pc.cast(pc.utf8_slice_codeunits(sensor, 7), pa.int64()).to_numpy(zero_copy_only=False)
    text = np.frombuffer(sensor.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]].reshape(-1, width)
    digits = text[:, 7:].astype(np.int64) - 48
    return digits @ (10 ** np.arange(width - 8, -1, -1, dtype=np.int64))


def _epoch_ms(column: pa.Array) -> np.ndarray:
    return pc.cast(column, pa.int64()).to_numpy(zero_copy_only=False) // 1000


class _Columns(dict):
    """The block's columns, each converted on first use: times to epoch-ms and numbers to numpy (writable
    copies), strings to :class:`_Strings`."""

    def __init__(self, batch: pa.RecordBatch) -> None:
        super().__init__()
        self.batch = batch

    def __missing__(self, name: str) -> Any:
        column = self.batch.column(self.batch.schema.get_field_index(name))
        value: Any
        if name in _TIMES:
            value = _epoch_ms(column)
        elif name in _NUMERIC:
            value = column.to_numpy(zero_copy_only=False).copy()
        else:
            value = _Strings(column)
        self[name] = value
        return value


class _Work:
    """A block being transformed: numeric and time columns as numpy (times in epoch ms), strings as
    :class:`_Strings`, a null mask per column, and the labels so far (by slot of the pre-copy block)."""

    def __init__(self, spec: GeneratorSpec, block: int, batch: pa.RecordBatch) -> None:
        self.spec, self.block, self.n = spec, block, batch.num_rows
        self.names = batch.schema.names
        self.original = batch
        self.values = _Columns(batch)  # a column is converted when a scenario first touches it
        self.null: dict[str, np.ndarray] = {}
        self.device_count = spec.fleet.device_count if spec.fleet is not None else spec.num_sensors
        self.labels: list[tuple[np.ndarray, str, str | None, Any, Any]] = []

    @functools.cached_property
    def device(self) -> np.ndarray:
        """Device number of each event (``sensor-00042`` is 41)."""
        return _sensor_numbers(self.original.column(self.names.index("sensor_id"))) - 1

    @functools.cached_property
    def time(self) -> np.ndarray:
        """When each event was measured, epoch ms (the clean timestamp; earlier for late events)."""
        return _epoch_ms(self.original.column(self.names.index("timestamp")))

    def rng(self, stream: int) -> np.random.Generator:
        return block_rng(self.spec.seed, self.block, stream)

    def pick(self, rng: np.random.Generator, rate: float, exclude: np.ndarray | None = None) -> np.ndarray:
        """Sorted slots, ``floor(rate * n + u)`` of them (fewer if ``exclude`` leaves too few)."""
        k = min(self.n, int(np.floor(rate * self.n + rng.random())))
        if exclude is None:
            return np.sort(rng.choice(self.n, k, replace=False)) if k else np.zeros(0, np.int64)
        free = np.flatnonzero(~exclude)
        return np.sort(rng.choice(free, min(k, len(free)), replace=False)) if k else np.zeros(0, np.int64)

    def label(self, slots: np.ndarray, kind: str, column: str | None = None, value: Any = None,
              note: Any = None) -> None:
        if len(slots):
            self.labels.append((np.asarray(slots, dtype=np.int64), kind, column, value, note))

    def supersede(self, slots: np.ndarray, column: str) -> None:
        """Drop earlier value labels of these slots' ``column`` (a later scenario replaced the value)."""
        kept = []
        for entry in self.labels:
            entry_slots, kind, entry_column = entry[:3]
            if entry_column != column:
                kept.append(entry)
                continue
            keep = ~np.isin(entry_slots, slots)
            if keep.all():
                kept.append(entry)
            elif keep.any():
                kept.append((entry_slots[keep], kind, entry_column, _subset(entry[3], keep), _subset(entry[4], keep)))
        self.labels = kept

    def finish(self, schema: pa.Schema, copied_from: np.ndarray, copy_kind: np.ndarray, order: np.ndarray,
               moved: np.ndarray, look_back: int, drifted: list[np.ndarray]) -> tuple[pa.RecordBatch, Truth]:
        content = order if copied_from is None else copied_from[order]  # final row -> content slot
        arrays = []
        for f in schema:
            mask = self.null.get(f.name)
            if f.name not in self.values and mask is None:
                arrays.append(self.original.column(self.names.index(f.name)))  # untouched
                continue
            value = self.values[f.name]
            if f.name in _TIMES:
                arrays.append(pa.array(value * 1000, TIMESTAMP, mask=mask))
            elif f.name in _NUMERIC:
                arrays.append(pa.array(value, ARROW_SCHEMA.field(f.name).type, mask=mask))
            else:
                array = value.get()
                arrays.append(array if mask is None
                              else pc.if_else(pa.array(mask), pa.scalar(None, pa.string()), array))
        batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
        if not np.array_equal(content, np.arange(self.n)):
            batch = batch.take(pa.array(content))  # copies and delays: one take of every column
        labels = self._labels(batch, content, copied_from, copy_kind, order, moved, look_back)
        return batch, Truth(labels, tuple(mask[content] for mask in drifted), self.block * BLOCK_SIZE)

    def _labels(self, batch, content, copied_from, copy_kind, order, moved, look_back) -> pa.Table:
        first = self.block * BLOCK_SIZE
        slots = [e[0] for e in self.labels]
        columns: dict[str, list] = {"slot": slots, "kind": [], "column": [], "value": [], "note": []}
        for entry_slots, kind_name, column_name, value, note in self.labels:
            m = len(entry_slots)
            columns["kind"].append(np.full(m, KINDS.index(kind_name)))
            columns["column"].append(np.full(m, -1 if column_name is None else self.names.index(column_name)))
            columns["value"].append(np.full(m, np.nan) if value is None else np.broadcast_to(
                np.asarray(value, dtype=np.float64), (m,)))
            columns["note"].append(np.full(m, None, dtype=object) if note is None else np.broadcast_to(
                np.asarray(note, dtype=object), (m,)))
        slot = np.concatenate(slots) if slots else np.zeros(0, np.int64)
        by_slot = np.argsort(slot, kind="stable")
        slot = slot[by_slot]
        cat = {k: (np.concatenate(v)[by_slot] if v else np.zeros(0)) for k, v in columns.items() if k != "slot"}
        # Each final row carries the labels of the content it holds (a copy carries its source's labels).
        lo, hi = np.searchsorted(slot, content, "left"), np.searchsorted(slot, content, "right")
        counts = hi - lo
        row = np.repeat(np.arange(self.n), counts)
        pick = np.repeat(lo, counts) + (np.arange(len(row)) - np.repeat(np.cumsum(counts) - counts, counts))
        kind, column = cat["kind"][pick].astype(np.int64), cat["column"][pick].astype(np.int64)
        value, note = cat["value"][pick].astype(np.float64), cat["note"][pick]
        source = np.full(len(row), -1, dtype=np.int64)
        final_of = np.empty(self.n, dtype=np.int64)
        final_of[order] = np.arange(self.n)  # pre-disorder position -> final row
        extra: list[tuple] = []  # (rows, kind, column, value, source) of labels added after the disorder
        if copied_from is not None:
            targets = np.flatnonzero(copied_from != np.arange(self.n))
            extra.append((final_of[targets], copy_kind[targets], -1, np.nan, final_of[copied_from[targets]]))
        if len(moved):
            rows, overtaken_by = _overtaken(order, final_of[moved], look_back)
            extra.append((rows, KINDS.index("out_of_order"), -1, overtaken_by.astype(np.float64), -1))
        for rows, k, c, v, s in extra:
            m = len(rows)
            row = np.concatenate([row, rows])
            kind = np.concatenate([kind, np.broadcast_to(k, (m,))])
            column = np.concatenate([column, np.full(m, c)])
            value = np.concatenate([value, np.broadcast_to(v, (m,))])
            source = np.concatenate([source, np.where(np.broadcast_to(s, (m,)) >= 0, first + np.asarray(s), -1)])
            note = np.concatenate([note, np.full(m, None, dtype=object)])
        ordering = np.lexsort((column, kind, row))
        row, kind, column, value, source, note = (a[ordering] for a in (row, kind, column, value, source, note))
        names = pa.array(list(self.names), pa.string())
        column_array = (names.take(pa.array(np.where(column < 0, 0, column))) if len(column)
                        else pa.array([], pa.string()))
        return pa.table({
            "event_index": pa.array(first + row, pa.int64()),
            "event_id": batch.column(self.names.index("event_id")).take(pa.array(row, pa.int64())),
            "sensor_id": self.original.column(self.names.index("sensor_id")).take(pa.array(content[row])),
            "kind": pa.array(KINDS, pa.string()).take(pa.array(kind, pa.int64())),
            "column": pc.if_else(pa.array(column < 0), pa.scalar(None, pa.string()), column_array),
            "value": pa.array(value, pa.float64(), mask=np.isnan(value)),
            "source_index": pa.array(source, pa.int64(), mask=source < 0),
            "note": pa.array(list(note), pa.string()),
        }, schema=LABEL_SCHEMA)


def _overtaken(order: np.ndarray, rows: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Of the final ``rows`` of delayed events, those some later event overtook, and by how many events.

    Only delayed events can be overtaken (the others keep their order), and only by events that were at most
    ``max_distance`` after them, now within ``window`` (``max_distance`` plus the delayed events) before them.
    """
    rows = np.sort(rows)
    window = min(window, len(order))
    padded = np.concatenate([np.full(window, -1, dtype=order.dtype), order])
    before = np.lib.stride_tricks.sliding_window_view(padded, window)[rows]  # the ``window`` events before each
    counts = np.count_nonzero(before > order[rows][:, None], axis=1)
    overtaken = counts > 0
    return rows[overtaken], counts[overtaken]


def _subset(value: Any, keep: np.ndarray) -> Any:
    return value[keep] if isinstance(value, np.ndarray) and value.shape else value


def _quantise(values: np.ndarray, column: str) -> np.ndarray:
    low, high, decimals = READING_RANGES[column]
    return np.round(np.clip(values, low, high), decimals)


# ---- the scenarios, in order ----------------------------------------------------------------------------------
def _late(late: Lateness, work: _Work) -> None:
    rng = work.rng(_LATE)
    slots = work.pick(rng, late.rate)
    lateness = _lateness(late, rng, len(slots))
    measured = work.time[slots] - lateness
    work.time[slots] = measured
    fleet = work.spec.fleet
    if fleet is not None:  # the reading the device took back then, recomputed
        for name, values in fleet.readings_at(work.spec, work.device[slots], measured).items():
            if isinstance(values, pa.Array):
                work.values[name].set(slots, values)
            else:
                work.values[name][slots] = values
    else:  # independent events: the same event, measured earlier
        work.values["timestamp"][slots] = measured
        work.values["last_calibration"][slots] -= lateness
    work.label(slots, "late", "timestamp", lateness / 1000.0)


def _lateness(late: Lateness, rng: np.random.Generator, m: int) -> np.ndarray:
    """``m`` draws of the lateness distribution in ms, each in [min_ms, max_ms] (redrawn until it is)."""
    scale_ms = late.scale_ms
    assert scale_ms is not None  # Lateness.__post_init__ fills it in

    def draw(k: int) -> np.ndarray:
        if late.distribution == "exponential":
            return rng.exponential(scale_ms, k)
        if late.distribution == "lognormal":
            return scale_ms * np.exp(late.sigma * rng.standard_normal(k))
        return rng.uniform(late.min_ms, late.max_ms, k)

    values = draw(m)
    for _ in range(20):
        bad = np.flatnonzero((values < late.min_ms) | (values > late.max_ms))
        if not len(bad):
            break
        values[bad] = draw(len(bad))
    return np.rint(np.clip(values, late.min_ms, late.max_ms)).astype(np.int64)


def _permuted(device: np.ndarray, count: int, seed: int, stream: int) -> np.ndarray:
    """A keyed permutation of ``0..count-1`` applied to device numbers (spreads devices evenly)."""
    prime = next(p for p in _PRIMES if count % p)
    shift = int(kr.keyed(seed, stream, 0)[0] % np.uint64(count))
    return (device * (prime % count) + shift) % count if count > 1 else np.zeros_like(device)


def _episodes(kind: str, episodes: Episodes, work: _Work) -> None:
    """Stuck/drift episodes: device ``d``'s episode in period ``s`` (``duration / rate`` long) starts at an
    offset that spreads the devices evenly over the period, rotated by a keyed amount per period."""
    spec = work.spec
    period = max(episodes.duration_ms, int(round(episodes.duration_ms / episodes.rate)))
    offsets = dict(episodes.max_offset)
    for column in episodes.columns:
        stream = (_STUCK if kind == "stuck" else _DRIFT) + ANOMALY_COLUMNS.index(column)
        spread = _permuted(work.device, work.device_count, spec.seed, stream) / work.device_count
        t = work.time
        inside = np.zeros(work.n, dtype=bool)
        start = np.zeros(work.n, dtype=np.int64)
        for s in (t // period, t // period - 1):
            periods, which = np.unique(s, return_inverse=True)  # a block spans few periods
            rotation = kr.uniform(spec.seed, stream, periods)[which]
            begins = s * period + np.floor(((spread + rotation) % 1.0) * period).astype(np.int64)
            now = (t >= begins) & (t < begins + episodes.duration_ms) & ~inside
            start = np.where(now, begins, start)
            inside |= now
        slots = np.flatnonzero(inside)
        if not len(slots):
            continue
        values = work.values[column]
        if kind == "stuck":
            if spec.fleet is not None:
                frozen = spec.fleet.reading_at(spec, column, work.device[slots], start[slots])
            else:
                mean, sd = _TYPICAL[column]
                frozen = _quantise(mean + sd * kr.normal(spec.seed, stream, work.device[slots], start[slots]), column)
            values[slots] = frozen
            work.label(slots, "stuck", column, frozen)
        else:
            sign = np.where(kr.uniform(spec.seed, stream + 5, work.device[slots], start[slots]) < 0.5, -1.0, 1.0)
            elapsed = t[slots] - start[slots]
            offset = sign * offsets.get(column, DEFAULT_DRIFT[column]) * elapsed / episodes.duration_ms
            before = values[slots]
            values[slots] = _quantise(before + offset, column)
            work.label(slots, "drift", column, values[slots] - before)


def _spikes(spikes: Spikes, work: _Work) -> None:
    rng = work.rng(_SPIKE)
    slots = work.pick(rng, spikes.rate)
    which = rng.integers(0, len(spikes.columns), len(slots))
    size = rng.random(len(slots))
    sign = np.where(rng.random(len(slots)) < 0.5, -1.0, 1.0)
    for number, (column, (low, high)) in enumerate(spikes.columns):
        mine = slots[which == number]
        values = work.values[column]
        before = values[mine]
        values[mine] = _quantise(before + sign[which == number] * (low + (high - low) * size[which == number]), column)
        work.label(mine, "spike", column, values[mine] - before)


def _out_of_range(scenario: OutOfRange, work: _Work) -> None:
    rng = work.rng(_OUT_OF_RANGE)
    slots = work.pick(rng, scenario.rate)
    which = rng.integers(0, len(scenario.columns), len(slots))
    for number, column in enumerate(scenario.columns):
        mine = slots[which == number]
        choices = np.asarray(OUT_OF_RANGE_VALUES[column])
        values = choices[rng.integers(0, len(choices), len(mine))]
        work.supersede(mine, column)
        work.values[column][mine] = values
        work.label(mine, "out_of_range", column, values.astype(np.float64))


def _clock_skew(skew: ClockSkew, work: _Work) -> None:
    spec = work.spec
    count = work.device_count
    skewed_devices = int(round(skew.device_fraction * count))
    slots = np.flatnonzero(_permuted(work.device, count, spec.seed, _SKEW) < skewed_devices)
    device = work.device[slots]
    offset = (2 * kr.uniform(spec.seed, _SKEW, device, 1) - 1) * skew.max_offset_ms
    drift = (2 * kr.uniform(spec.seed, _SKEW, device, 2) - 1) * skew.max_drift_ms_per_day
    amount = np.rint(offset + drift * (work.time[slots] - spec.window_start_ms) / DAY_MS).astype(np.int64)
    work.values["timestamp"][slots] = work.time[slots] + amount
    work.values["last_calibration"][slots] += amount  # the device's clock stamps both
    work.label(slots, "clock_skew", "timestamp", amount / 1000.0)


def _schema_drift(changes: tuple[DriftChange, ...], work: _Work) -> list[np.ndarray]:
    """Apply each change to the events measured at or after its time; per change, which events it touched.

    Each change cuts the affected rows' JSON text at the member it acts on and re-joins the pieces with what it
    inserts (:class:`_JsonText`): a couple of whole-column copies, no pattern matching per row.
    """
    masks = [work.time >= work.spec.window_start_ms + change.at_ms for change in changes]
    if not any(mask.any() for mask in masks):
        return masks
    column = work.values["json_column"]
    text = _JsonText(column.get())
    for number, (change, mask) in enumerate(zip(changes, masks)):
        if not mask.any():
            continue
        if change.operation == "add_key":
            if change.value is None:
                raise InputError(f"schema drift: add_key {change.key!r} needs a value spec")
            rows = np.flatnonzero(mask)
            added = build_json_column(((change.key, change.value),), 1, 1, work.rng(_ADD_KEY + 10 * number), len(rows))
            text.add_member(rows, added)
            continue
        rows, key_at = text.find(json.dumps(change.key) + ":", mask)
        starts = key_at + len(json.dumps(change.key)) + 1
        ends = text.value_ends(starts)
        if change.operation == "remove_key":
            text.remove(rows, key_at, ends)
        elif change.to == "string":
            text.splice(rows, np.stack([starts, ends], 1), [0, b'"', 1, b'"', 2])
        elif change.to == "float":
            whole = ~text.contains_any(starts, ends, b".eE")
            text.splice(rows[whole], ends[whole][:, None], [0, b".0", 1])
        else:
            text.splice(rows, np.stack([starts, ends], 1), [0, b'{"value":', 1, b"}", 2])
    column.set(np.arange(work.n), text.array)
    return masks


class _JsonText:
    """A column of JSON objects edited as text: find a member, find where a value ends, and :meth:`splice`."""

    def __init__(self, array: pa.StringArray) -> None:
        if array.null_count:
            raise ValueError("json_column has nulls before schema drift")  # nulls come later, by design
        self.array = array

    def _buffers(self) -> tuple[np.ndarray, np.ndarray]:
        array = self.array
        offsets = np.frombuffer(array.buffers()[1], np.int32, len(array) + 1, 4 * array.offset).astype(np.int64)
        return np.frombuffer(array.buffers()[2], np.uint8), offsets

    def find(self, needle: str, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows (among ``mask``) holding ``needle``, and the absolute byte position where it first starts.

        One pass over the bytes for the needle's rarest-looking byte (a letter or digit of the key), then
        the other bytes checked at those candidates only."""
        data, offsets = self._buffers()
        data = data[offsets[0]:offsets[-1]]
        pattern = np.frombuffer(needle.encode(), np.uint8)
        anchor = next((i for i, c in enumerate(needle) if c.isalnum()), 0)
        at = np.flatnonzero(data[anchor:len(data) - len(pattern) + anchor + 1] == pattern[anchor])
        for k in range(len(pattern)):
            if k != anchor:
                at = at[data[at + k] == pattern[k]]
        at += offsets[0]
        row = np.searchsorted(offsets, at, "right") - 1
        row, first = np.unique(row, return_index=True)
        keep = mask[row]
        return row[keep], at[first][keep]

    def value_ends(self, starts: np.ndarray) -> np.ndarray:
        """Where each JSON value starting at byte ``starts`` ends (exclusive): after its closing quote,
        bracket or brace, or at the ``,``/``}`` after a number or literal (nested objects hold scalars).
        Steps one byte at a time over the values not yet ended: values are short."""
        data = self._buffers()[0]
        first = data[starts]
        closer = np.select([first == ord('"'), first == ord("["), first == ord("{")],
                           [ord('"'), ord("]"), ord("}")], 0).astype(np.uint8)
        ends = np.full(len(starts), -1, dtype=np.int64)
        todo = np.arange(len(starts))
        for step in range(1, 65_536):
            if not len(todo):
                break
            at = starts[todo] + step
            byte = data[np.minimum(at, len(data) - 1)]
            scalar = closer[todo] == 0
            done = np.where(scalar, (byte == ord(",")) | (byte == ord("}")),
                            (byte == closer[todo]) & (data[at - 1] != ord("\\")))
            ends[todo[done]] = at[done] + ~scalar[done]
            todo = todo[~done]
        if len(todo):
            raise ValueError("schema drift: a json_column value does not end")
        return ends

    def contains_any(self, starts: np.ndarray, ends: np.ndarray, characters: bytes) -> np.ndarray:
        data = self._buffers()[0]
        at = np.minimum(starts[:, None] + np.arange(64), len(data) - 1)
        inside = (at < ends[:, None]) & np.isin(data[at], np.frombuffer(characters, np.uint8))
        return np.asarray(inside.any(axis=1))  # an array for 2-D input (numpy's stubs say "or a scalar")

    def splice(self, rows: np.ndarray, cuts: np.ndarray, pattern: list, inserts: pa.Array | None = None) -> None:
        """Cut each of ``rows`` at its byte positions ``cuts`` (one row of increasing absolute positions per
        row) into segments 0, 1, ...; rebuild the row as ``pattern``: segment numbers, bytes to insert, or
        None for the row's value of ``inserts``. One take of all the pieces: its data is the new text."""
        if not len(rows):
            return
        data, offsets = self._buffers()
        n = len(offsets) - 1
        points = np.concatenate([offsets, cuts.ravel()])
        points.sort()
        views = pa.StringArray.from_buffers(len(points) - 1, pa.py_buffer(points.astype(np.int32)),
                                            self.array.buffers()[2])
        constants = [p for p in pattern if isinstance(p, bytes)]
        sources = [views, pa.array([c.decode() for c in constants], pa.string())]
        if inserts is not None:
            sources.append(inserts)
        counts = np.ones(n, dtype=np.int64)
        counts[rows] = len(pattern)
        first = np.cumsum(counts) - counts
        index = np.empty(int(counts.sum()), dtype=np.int64)
        index[first] = np.searchsorted(points, offsets[:-1])  # other rows: their whole text, one view
        starts = np.concatenate([offsets[rows][:, None], cuts], axis=1)  # where each segment starts
        for slot, piece in enumerate(pattern):
            if isinstance(piece, bytes):
                index[first[rows] + slot] = len(views) + constants.index(piece)
            elif piece is None:
                index[first[rows] + slot] = len(views) + len(constants) + np.arange(len(rows))
            else:
                index[first[rows] + slot] = np.searchsorted(points, starts[:, piece])
        pieces = pa.concat_arrays(sources).take(pa.array(index))
        piece_offsets = np.frombuffer(pieces.buffers()[1], np.int32, len(pieces) + 1, 4 * pieces.offset)
        row_offsets = np.append(piece_offsets[first], piece_offsets[-1]) - piece_offsets[0]
        body = pieces.buffers()[2][piece_offsets[0]:piece_offsets[-1]] if len(pieces) else pa.py_buffer(b"")
        self.array = pa.StringArray.from_buffers(n, pa.py_buffer(row_offsets.astype(np.int32)), body)

    def remove(self, rows: np.ndarray, key_at: np.ndarray, ends: np.ndarray) -> None:
        """Remove the members ``"key":value`` starting at ``key_at``, with the comma that joins them."""
        data = self._buffers()[0]
        after_comma = data[key_at - 1] == ord(",")
        starts = np.where(after_comma, key_at - 1, key_at)
        stops = np.where(~after_comma & (data[ends] == ord(",")), ends + 1, ends)
        self.splice(rows, np.stack([starts, stops], 1), [0, 2])

    def add_member(self, rows: np.ndarray, added: pa.StringArray) -> None:
        """Add the one member of each ``added`` object (``{"k":v}``) at the end of each row's object."""
        closing = self._buffers()[1][rows + 1] - 1
        empty = pc.equal(self.array.take(pa.array(rows)), "{}").to_numpy(zero_copy_only=False)
        member = pc.utf8_slice_codeunits(added, 1, -1)
        member = pc.if_else(pa.array(empty), member, pc.binary_join_element_wise(",", member, ""))
        self.splice(rows, closing[:, None], [0, None, 1], member)


def _malformed(scenario: MalformedJson, work: _Work) -> None:
    rng = work.rng(_MALFORMED)
    slots = work.pick(rng, scenario.rate)
    kinds = [k for k, _ in scenario.kinds]
    which = kr.choice(rng.random(len(slots)), [w for _, w in scenario.kinds])
    cuts = rng.random(len(slots))
    texts = work.values["json_column"].get(slots)
    invalid = pc.replace_substring(pc.replace_substring(pc.utf8_slice_codeunits(texts, 2, -1), '":', "="), ',"', ";")
    out = [_break_json(text, kinds[k], cut, bad) for text, k, cut, bad in
           zip(texts.to_pylist(), which, cuts, invalid.to_pylist())]
    work.values["json_column"].set(slots, pa.array(out, pa.string()))
    work.label(slots, "malformed_json", "json_column", note=np.array([kinds[k] for k in which], dtype=object))


def _break_json(text: str, kind: str, cut: float, invalid: str) -> str:
    """A broken ``json_column``: never a ``{...}`` that the encoders would take for an object."""
    if kind == "truncated":
        broken = text[:max(1, int(cut * (len(text) - 1)))]
        return broken.rstrip("}") or "{"
    if kind == "invalid":  # key=value;key=value, as a device with the wrong encoder sends them
        return invalid or "="
    if kind == "double_encoded":
        return json.dumps(text)
    return ""


def _nulls(column: str, rate: float, number: int, work: _Work) -> None:
    slots = work.pick(work.rng(_NULLS + number), rate)
    mask = work.null.setdefault(column, np.zeros(work.n, dtype=bool))
    mask[slots] = True
    work.supersede(slots, column)
    work.label(slots, "null", column)


def _copies(duplicates: WithinDistance | None, replays: Replays | None, work: _Work):
    """Copy targets and sources: replayed runs first, then single duplicates; no source is a target."""
    if not duplicates and not replays:
        return None, None
    n = work.n
    rng = work.rng(_COPIES)
    source = np.arange(n)
    kind = np.full(n, -1)
    taken = np.zeros(n, dtype=bool)  # targets and replay sources: not to be overwritten or used again
    if replays and replays.rate > 0:
        budget = int(np.floor(replays.rate * n + rng.random()))
        for _ in range(4 * budget):
            if budget <= 0:
                break
            length = min(budget, int(rng.integers(replays.min_length, replays.max_length + 1)))
            start = int(rng.integers(length, n - length + 1)) if n >= 2 * length else n
            if start >= n or taken[start:start + length].any():
                continue
            back = int(rng.integers(length, min(replays.max_distance, start) + 1))
            origin = start - back
            if taken[origin:origin + length].any():
                continue
            source[start:start + length] = np.arange(origin, origin + length)
            kind[start:start + length] = KINDS.index("replay")
            taken[start:start + length] = taken[origin:origin + length] = True
            budget -= length
    if duplicates and duplicates.rate > 0:
        targets = work.pick(rng, duplicates.rate, exclude=taken)
        targets = targets[targets > 0]
        is_target = kind >= 0
        is_target[targets] = True
        back = np.floor(rng.random(len(targets)) * np.minimum(duplicates.max_distance, targets)).astype(np.int64) + 1
        usable = np.where(~is_target, np.arange(n), -1)
        np.maximum.accumulate(usable, out=usable)  # latest non-target at or before each slot
        origin = usable[targets - back]
        ok = origin >= 0
        source[targets[ok]] = origin[ok]
        kind[targets[ok]] = KINDS.index("duplicate")
    return source, kind


def _disorder(disorder: WithinDistance | None, work: _Work) -> tuple[np.ndarray, np.ndarray]:
    n = work.n
    if not disorder or disorder.rate <= 0:
        return np.arange(n), np.zeros(0, np.int64)
    rng = work.rng(_DISORDER)
    slots = work.pick(rng, disorder.rate)
    slots = slots[slots < n - 1]
    shift = np.minimum(rng.integers(1, disorder.max_distance + 1, len(slots)), n - 1 - slots)
    key = np.arange(n, dtype=np.float64)
    key[slots] += shift + 0.5
    order = np.argsort(key, kind="stable")
    return order, slots


# ---- labels of any range --------------------------------------------------------------------------------------
def truth_range(spec: GeneratorSpec, start: int, stop: int) -> Truth:
    """Labels of events ``start .. stop`` (any range; the same whatever the chunking), from generating their
    blocks; :func:`iotgen.generation.generator.labelled_range` gives the events and their truth from one generation."""
    changes = len(spec.scenarios.schema_drift) if spec.scenarios is not None else 0
    if spec.scenarios is None or start >= stop:
        return Truth.empty(start, changes)
    truth = labelled_range(spec, start, stop).truth
    assert truth is not None  # a spec with scenarios labels every range
    return truth


def label_counts(labels: pa.Table) -> dict[str, int]:
    """Labels per ``kind`` and per ``kind:column`` (what a manifest reports)."""
    out: dict[str, int] = {}
    if not labels.num_rows:
        return out
    for row in labels.group_by(["kind", "column"]).aggregate([("event_index", "count")]).to_pylist():
        out[row["kind"]] = out.get(row["kind"], 0) + row["event_index_count"]
        if row["column"] is not None:
            key = f"{row['kind']}:{row['column']}"
            out[key] = out.get(key, 0) + row["event_index_count"]
    return dict(sorted(out.items()))


def rate_table(scenarios: Scenarios, labels: pa.Table, count: int, sensor_ids: pa.Array | None = None
               ) -> list[dict[str, Any]]:
    """Per configured scenario (and column): the configured rate against what the labels show. Rates of
    events are the labelled share of the ``count`` events; given the events' ``sensor_ids``, the per-device
    scenarios are measured as they are configured: ``stuck``/``drift`` as the mean over devices of the share of
    a device's events in an episode, ``clock_skew`` as the share of devices; ``dropped`` is the share of the
    reports made (arrived or dropped). One dict per row."""
    counts = label_counts(labels)
    per_device = None
    if sensor_ids is not None and count:
        devices = pc.value_counts(sensor_ids)
        per_device = dict(zip(devices.field("values").to_pylist(), devices.field("counts").to_pylist()))
    rows = []

    def row(name: str, kind: str, configured: float, column: str | None = None) -> None:
        n = counts.get(f"{kind}:{column}" if column else kind, 0)
        measured = n / count if count else 0.0
        if kind == "dropped":  # a share of the reports: those that arrived and those that did not
            measured = n / (count + n) if count + n else 0.0
        if per_device is not None and kind in ("stuck", "drift", "clock_skew"):
            mine = labels.filter(pc.equal(labels["kind"], kind))
            if column:
                mine = mine.filter(pc.equal(mine["column"], column))
            hits = pc.value_counts(mine["sensor_id"]) if mine.num_rows else None
            hit = dict(zip(hits.field("values").to_pylist(), hits.field("counts").to_pylist())) if hits else {}
            if kind == "clock_skew":
                measured = len(hit) / len(per_device)
            else:
                measured = sum(hit.get(d, 0) / c for d, c in per_device.items()) / len(per_device)
        rows.append({"scenario": name, "column": column, "configured": configured, "labels": n,
                     "measured": round(measured, 5)})

    s = scenarios
    for name, kind in (("late", "late"), ("out_of_order", "out_of_order"), ("duplicates", "duplicate"),
                       ("replays", "replay"), ("malformed_json", "malformed_json"), ("out_of_range", "out_of_range")):
        if getattr(s, name):
            row(name, kind, getattr(s, name).rate)
    if s.dropped:
        row("dropped", "dropped", s.dropped.rate)
    if s.clock_skew:
        row("clock_skew", "clock_skew", s.clock_skew.device_fraction)
    if s.spikes:
        row("spikes", "spike", s.spikes.rate)
    for name in ("stuck", "drift"):
        for column in (getattr(s, name).columns if getattr(s, name) else ()):
            row(name, name, getattr(s, name).rate, column)
    for column, rate in s.nulls:
        row("nulls", "null", rate, column)
    return rows


#: Scenarios that move, copy or re-time events: with them an event's ``timestamp`` no longer names the report
#: it delivers, so :func:`report_accounting` cannot count by it.
RETIMING = ("late", "clock_skew", "duplicates", "replays", "out_of_order")


def report_accounting(spec: GeneratorSpec, events: pa.Table, labels: pa.Table, until_ms: int | None = None
                      ) -> dict[str, Any]:
    """Every report the fleet measured before ``until_ms`` (epoch ms) is exactly one of: an event of ``events``
    (delivered as measured, or ``catch_up``: uploaded after a gap), an ``overflow`` label (lost from a full
    buffer) or a ``dropped`` label (never sent); ``reports`` is the fleet's own count (its closed form, without
    the scenarios). Returns those counts, ``unaccounted`` (reports less the three: 0 when nothing was lost
    silently) and ``until`` (ISO 8601).

    ``events`` and ``labels`` are a run's first events (``timestamp`` and ``event_id`` columns: the events as a
    pipeline received them, in any order) and their labels (``kind``, ``event_id``, ``note``). By default
    ``until_ms`` is the last event's timestamp less the longest a report waits (a gap and a full upload): every
    report measured before it has arrived or been labelled within them."""
    if spec.fleet is None:
        raise InputError("report_accounting needs the fleet profile (PROFILE=fleet): the independent profile has no "
                         "reporting schedule")
    s = spec.scenarios if isinstance(spec.scenarios, Scenarios) else Scenarios()
    moved = [name for name in RETIMING if getattr(s, name)]
    if moved:
        raise InputError(f"report_accounting counts reports by their timestamp: it needs a spec without "
                         f"{', '.join(moved)} (they move, copy or re-time events)")
    stamp = _epoch_ms(_whole(events.column("timestamp")))
    if until_ms is None:
        wait = s.offline.duration_ms + s.offline.upload_ms if s.offline and s.offline.rate > 0 else 0
        until_ms = int(stamp.max()) - wait if len(stamp) else spec.window_start_ms
    devices = np.arange(spec.fleet.device_count, dtype=np.int64)
    reports = int(spec.fleet.reports_before(spec, devices, np.full(len(devices), until_ms)).sum())
    kind = _whole(labels.column("kind")).to_numpy(zero_copy_only=False).astype(str) if labels.num_rows else \
        np.zeros(0, str)
    before = stamp < until_ms
    catch_up = _whole(labels.column("event_id")).filter(pa.array(kind == "catch_up"))
    uploaded = pc.is_in(_whole(events.column("event_id")), value_set=catch_up).to_numpy(zero_copy_only=False)
    counts = {}
    for name in ("overflow", "dropped"):
        notes = _whole(labels.column("note")).filter(pa.array(kind == name))
        measured = pc.cast(pc.cast(notes, pa.timestamp("ms", tz="UTC")), pa.int64()).to_numpy(zero_copy_only=False)
        counts[name] = int((measured < until_ms).sum())
    delivered = int(before.sum())
    return {"until": iso_time(until_ms), "reports": reports, "delivered": delivered,
            "on_time": int((before & ~uploaded).sum()), "catch_up": int((before & uploaded).sum()), **counts,
            "unaccounted": reports - delivered - counts["overflow"] - counts["dropped"]}


def _whole(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column of a RecordBatch or a Table as one Array."""
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
