"""The event generator: pure, vectorised and deterministic.

Events are numbered 0, 1, 2, ... and cut into fixed blocks of :data:`BLOCK_SIZE`. Block ``b`` is computed
from its own random stream, derived from ``(seed, b)`` alone, so event ``i`` is the same whatever the chunk
size, the worker count, the order blocks are produced in, or how many events are asked for (the idea of
dbldatagen's partition-independent seeding). Every column of a block, ``json_column`` included, is computed
with whole-array numpy/Arrow operations: there is no Python loop per event. Nothing here does I/O or keeps
state between calls.

The core takes a :class:`GeneratorSpec` and nothing else: a :class:`~iotgen.settings.config.Config` becomes a
spec in one place, :func:`iotgen.spec.spec_file.generator_spec`, a layer above this one (the package's public
functions, :func:`iotgen.generate_events` and friends, accept a Config and call it). A block with data-quality
scenarios comes with its ground truth (:func:`labelled_block`); :class:`BlockCursor` is the one piece that cuts
ranges of events (and their truth) out of blocks.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Protocol, Sequence

import numpy as np
import pyarrow as pa

from ..base import draws, variant_encoding
from ..base.errors import InputError
from ..base.times import DAY_MS, HOUR_MS, iso_utc
from ..settings.catalogs import Catalogs, Categorical
from ..settings.schema import ARROW_SCHEMA, CALIBRATION_DUE_DAYS, events_schema, timestamps_ms
from .dynamic_json import build_json_column, joined_text, piece_table, text_codes
from .truth import Truth

if TYPE_CHECKING:
    from ..settings.config import Config

BLOCK_SIZE = 32768


# ---- the extension points ---------------------------------------------------------------------------------------
class FleetProfile(Protocol):
    """``spec.fleet``: makes each block's events instead of the independent draw (:class:`~.fleet.Fleet`).
    Everything must be a pure function of the arguments."""

    @property
    def device_count(self) -> int:
        """How many devices the fleet has (read-only: a profile is immutable)."""

    def build_block(self, spec: "GeneratorSpec", block: int, json_column: str = "text") -> pa.RecordBatch:
        """The :data:`BLOCK_SIZE` events of ``block``."""

    def readings_at(self, spec: "GeneratorSpec", device: np.ndarray, t_ms: np.ndarray) -> dict[str, Any]:
        """The readings of devices (0-based) at times (epoch ms): what a late event measured back then."""

    def reading_at(self, spec: "GeneratorSpec", name: str, device: np.ndarray, t_ms: np.ndarray) -> np.ndarray:
        """One reading (``temperature``, ``humidity`` or ``pressure``) of devices at times: a stuck sensor's
        value (the ``stuck`` scenario)."""

    def events_per_hour(self, spec: "GeneratorSpec") -> float:
        """How many events the fleet reports per hour of event time (a run's manifest)."""

    def time_of_event(self, spec: "GeneratorSpec", index: int) -> int:
        """The (clean) timestamp in epoch ms of event number ``index`` (``iotgen spec``)."""

    def columns_at(self, spec: "GeneratorSpec", device: np.ndarray, t_ms: np.ndarray) -> dict[str, pa.Array]:
        """The device-dependent columns of devices at times: what an uploaded backlog measured back then (the
        ``offline`` scenario)."""

    def reports_before(self, spec: "GeneratorSpec", device: np.ndarray, t_ms: np.ndarray) -> np.ndarray:
        """How many reports each device makes before epoch-ms ``t_ms`` (the ``offline`` and ``dropped``
        scenarios' schedule of arrivals; with the device registry, only those between the device's commissioning
        and decommissioning)."""

    def report_times(self, spec: "GeneratorSpec", device: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Epoch-ms time of each device's ``k``-th report (0-based; with the device registry, counted from its
        commissioning)."""

    def active_span(self, spec: "GeneratorSpec", device: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Epoch ms ``[from, until)`` in which each device reports (the device registry's lifecycle)."""

    def sensor_ids_at(self, spec: "GeneratorSpec", device: np.ndarray, t_ms: np.ndarray) -> pa.Array:
        """The ``sensor_id`` of each device (slot) at epoch-ms ``t_ms``."""


class ScenarioSet(Protocol):
    """``spec.scenarios``: transforms each block and says what it did (:class:`iotgen.generation.scenarios.Scenarios`).
    Must be a pure function of the arguments and keep :data:`BLOCK_SIZE` rows."""

    @property
    def schema_drift(self) -> Sequence[Any]:
        """The schedule of schema-drift changes (read-only: a scenario set is immutable)."""

    def apply(self, spec: "GeneratorSpec", block: int, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, Truth]:
        """The block with the scenarios applied, and its ground truth."""


@dataclass(frozen=True)
class GeneratorSpec:
    """Everything that determines the events: a seed, the catalogs and the ranges. Immutable and picklable.

    Build it from a Config with :func:`iotgen.spec.spec_file.generator_spec` (every face does), or directly."""

    seed: int
    catalogs: Catalogs
    window_start_ms: int
    window_span_ms: int
    min_keys: int = 5
    max_keys: int = 25
    num_sensors: int = 1000
    # Extension points (see generate_block): a device-fleet profile and data-quality scenarios.
    fleet: FleetProfile | None = None
    scenarios: ScenarioSet | None = None

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise InputError(f"RANDOM_SEED must be an integer in [0, 2**63), got {self.seed!r}")
        pool = len(self.catalogs.key_pool)
        if not 1 <= self.min_keys <= self.max_keys:
            raise InputError(f"MIN_KEYS must be between 1 and MAX_KEYS ({self.max_keys}), got {self.min_keys}")
        if self.max_keys > pool:
            raise InputError(f"MAX_KEYS must be <= the number of keys in IOT_KEY_POOL ({pool}), got {self.max_keys}")
        if self.window_span_ms <= 0:
            raise InputError(f"TIME_SPREAD_HOURS must be > 0, got a window of {self.window_span_ms} ms")
        if self.num_sensors < 1:
            raise InputError(f"NUM_SENSORS must be >= 1, got {self.num_sensors}")


def block_rng(seed: int, block: int, stream: int = 0) -> np.random.Generator:
    """The random stream of one block: a function of (seed, block, stream) only."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, block, stream])))


# ---- blocks and ranges ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelledEvents:
    """Events and their ground truth (None for a spec without scenarios)."""

    events: pa.RecordBatch
    truth: Truth | None = None


def labelled_block(spec: GeneratorSpec, block: int, json_column: str = "text") -> LabelledEvents:
    """The :data:`BLOCK_SIZE` events numbered ``block * BLOCK_SIZE`` and up, with their ground truth.

    With ``spec.fleet`` set, ``spec.fleet.build_block(spec, block, json_column)`` makes the events instead of
    the independent draw; with ``spec.scenarios`` set, ``spec.scenarios.apply(spec, block, batch)`` then
    transforms them and gives their truth. ``json_column="variant"`` writes ``json_column`` directly as VARIANT
    (the same values; not with scenarios, which rewrite ``json_column`` text: a writer encodes their output
    itself).
    """
    if json_column == "variant" and spec.scenarios is not None:
        raise InputError("json_column='variant' is for specs without data-quality scenarios: generate text and "
                         "encode it (iotgen.formats.variant.json_or_text_to_variant)")
    if spec.fleet is not None:
        batch = spec.fleet.build_block(spec, block, json_column)
    else:
        batch = build_events(spec, block_rng(spec.seed, block), BLOCK_SIZE, json_column)
    if spec.scenarios is None:
        return LabelledEvents(batch)
    return LabelledEvents(*spec.scenarios.apply(spec, block, batch))


def generate_block(spec: GeneratorSpec, block: int, json_column: str = "text") -> pa.RecordBatch:
    """The events of :func:`labelled_block` (their ground truth left out)."""
    return labelled_block(spec, block, json_column).events


def block_slices(start: int, stop: int) -> Iterator[tuple[int, int, int]]:
    """``(block, offset, length)`` of each block's share of events ``start .. stop``, in order."""
    position = start
    while position < stop:
        block = position // BLOCK_SIZE
        offset = position - block * BLOCK_SIZE
        take = min(stop - position, BLOCK_SIZE - offset)
        yield block, offset, take
        position += take


def _joined(pieces: list[pa.RecordBatch]) -> pa.RecordBatch:
    """One batch of the pieces' rows (a VARIANT column's shared metadata is not copied: see
    :func:`iotgen.base.variant_encoding.concat`)."""
    if len(pieces) == 1:
        return pieces[0]
    schema = pieces[0].schema
    columns = [_joined_arrays([p.column(i) for p in pieces]) for i in range(len(schema))]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _joined_arrays(arrays: list[pa.Array]) -> pa.Array:
    if len(arrays) == 1:
        return arrays[0]
    if arrays[0].type.equals(variant_encoding.VARIANT_TYPE):
        return variant_encoding.concat(arrays)
    return pa.concat_arrays(arrays)


class BlockCursor:
    """Ranges of events (with their truth) cut out of blocks; the last block read is kept, so reading a run in
    order, in steps of any size, generates each block once. ``take(n)`` reads on from :attr:`position`."""

    def __init__(self, spec: GeneratorSpec, start: int = 0, json_column: str = "text") -> None:
        self.spec, self.json_column, self.position = spec, json_column, start
        self._kept: tuple[int, LabelledEvents] | None = None

    def block(self, block: int) -> LabelledEvents:
        if self._kept is None or self._kept[0] != block:
            self._kept = (block, labelled_block(self.spec, block, self.json_column))
        return self._kept[1]

    def read(self, start: int, stop: int) -> LabelledEvents:
        """Events ``start`` (inclusive) to ``stop`` (exclusive), identical to the same events of any other read;
        :attr:`position` moves to ``stop``."""
        if not 0 <= start <= stop:
            raise InputError(f"event range must satisfy 0 <= start <= stop, got {start}..{stop}")
        self.position = stop
        if start == stop:
            changes = len(self.spec.scenarios.schema_drift) if self.spec.scenarios is not None else 0
            return LabelledEvents(pa.RecordBatch.from_pylist([], schema=events_schema(self.json_column)),
                                  None if self.spec.scenarios is None else Truth.empty(start, changes))
        if self.spec.fleet is None and self.spec.scenarios is None and start % BLOCK_SIZE == 0 and (
                stop - start >= 2 * BLOCK_SIZE and stop % BLOCK_SIZE == 0):  # whole blocks: no join of columns
            return LabelledEvents(build_blocks(self.spec, range(start // BLOCK_SIZE, stop // BLOCK_SIZE),
                                               self.json_column))
        events, truth = self.read_pieces(start, stop)
        return LabelledEvents(_joined(events), truth)

    def read_pieces(self, start: int, stop: int) -> tuple[list[pa.RecordBatch], Truth | None]:
        """Events ``start .. stop`` as one slice per block they span (not joined into one batch: no copy), and
        their truth; ``start < stop``. :attr:`position` moves to ``stop``."""
        self.position = stop
        events, truths = [], []
        for block, offset, take in block_slices(start, stop):
            whole = self.block(block)
            events.append(whole.events.slice(offset, take))
            if whole.truth is not None:
                first = block * BLOCK_SIZE + offset
                truths.append(whole.truth.slice(first, first + take))
        return events, Truth.concat(truths) if truths else None

    def take(self, n: int) -> LabelledEvents:
        """The next ``n`` events."""
        return self.read(self.position, self.position + n)


def generate_range(spec: GeneratorSpec, start: int, stop: int, json_column: str = "text") -> pa.RecordBatch:
    """Events ``start`` (inclusive) to ``stop`` (exclusive), identical to the same events of any other call."""
    return BlockCursor(spec, json_column=json_column).read(start, stop).events


def labelled_range(spec: GeneratorSpec, start: int, stop: int) -> LabelledEvents:
    """Events ``start .. stop`` and their ground truth, from one generation of their blocks."""
    return BlockCursor(spec).read(start, stop)


def labelled_pieces(spec: GeneratorSpec, start: int, stop: int) -> tuple[list[pa.RecordBatch], Truth | None]:
    """Events ``start .. stop`` as one batch per block they span (a writer takes them one by one, with no copy to
    join them), and their ground truth; an empty range is one empty batch."""
    if start == stop:
        chunk = labelled_range(spec, start, stop)
        return [chunk.events], chunk.truth
    return BlockCursor(spec).read_pieces(start, stop)


def generate_events(
    spec: GeneratorSpec,
    num_events: int | None = None,
    *,
    chunk_size: int | None = None,
    start: int = 0,
    as_pandas: bool = False,
    json_column: str = "text",
) -> Iterator[Any]:
    """Yield events ``start .. start + num_events`` of ``spec`` as Arrow record batches (pandas DataFrames on
    request); ``num_events`` and ``chunk_size`` default to Config's ``NUM_EVENTS`` and ``CHUNK_SIZE``. Chunks are
    cut by one :class:`BlockCursor`, so each block is computed once; memory is bounded by ``chunk_size``.
    ``json_column="variant"``: see :func:`labelled_block`. From a Config: :func:`iotgen.generate_events`.
    """
    if not isinstance(spec, GeneratorSpec):
        raise TypeError(f"generate_events takes a GeneratorSpec, got {type(spec).__name__}; from a Config use "
                        "iotgen.generate_events (or iotgen.spec.spec_file.generator_spec first)")
    defaults = _config_defaults()
    num_events = defaults.num_events if num_events is None else num_events
    chunk_size = defaults.chunk_size if chunk_size is None else chunk_size
    for name, value, minimum in (("NUM_EVENTS", num_events, 0), ("CHUNK_SIZE", chunk_size, 1), ("start", start, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return _chunks(spec, start, start + num_events, chunk_size, as_pandas, json_column)


def _config_defaults() -> "Config":
    from ..settings.config import Config  # the defaults of NUM_EVENTS, CHUNK_SIZE, MIN_KEYS, ...: the one table of them

    return Config()


def _chunks(spec: GeneratorSpec, start: int, stop: int, chunk_size: int, as_pandas: bool,
            json_column: str = "text") -> Iterator[Any]:
    cursor = BlockCursor(spec, start, json_column)
    while cursor.position < stop:
        batch = cursor.take(min(chunk_size, stop - cursor.position)).events
        yield batch.to_pandas() if as_pandas else batch


def generate_table(spec: GeneratorSpec, num_events: int | None = None, **kwargs) -> pa.Table:
    """All events of ``spec`` (``generate_events``' arguments) as one Arrow table."""
    return table_of(list(generate_events(spec, num_events, **kwargs)))


def table_of(batches: list[pa.RecordBatch]) -> pa.Table:
    """Record batches of events as one table (the event schema when there are none)."""
    return pa.Table.from_batches(batches, schema=batches[0].schema if batches else ARROW_SCHEMA)


# ---- one batch of events ------------------------------------------------------------------------------------
def build_events(spec: GeneratorSpec, rng: np.random.Generator, n: int, json_column: str = "text") -> pa.RecordBatch:
    """``n`` events drawn from ``rng`` (the draw order is part of the output format: change it knowingly)."""
    return _columns(spec, [_draw_block(spec, rng, n, json_column)], json_column)


def build_blocks(spec: GeneratorSpec, blocks: range, json_column: str = "text") -> pa.RecordBatch:
    """The events of whole consecutive ``blocks`` of a spec without fleet or scenarios, as one batch: each block
    drawn from its own stream as :func:`labelled_block` does, then each column made once for all of them
    (cheaper than joining the blocks' columns: the text of ``json_column`` is joined once)."""
    parts = [_draw_block(spec, block_rng(spec.seed, block), BLOCK_SIZE, json_column) for block in blocks]
    return _columns(spec, parts, json_column)


def _draw_block(spec: GeneratorSpec, rng: np.random.Generator, n: int, json_column: str) -> list:
    """The random draws of ``n`` events as numpy arrays, in column order (``json_column`` as text: its piece
    codes and where each row's start; as VARIANT: the Arrow array)."""
    cats = spec.catalogs
    event_id = _uuid4_text(rng, n)
    ts = spec.window_start_ms + draws.below(rng, spec.window_span_ms, n)
    device_type = _draw_codes(cats.device_types, rng, n)
    firmware = draws.below(rng, _FIRMWARE_COUNT, n)
    battery = _grid_draw(rng, ("beta", 5.0, 1.5, 100.0), 0, 100, 1, n)
    sensor = 1 + draws.below(rng, spec.num_sensors, n)
    temperature = _quantise(_normal(rng, 22.0, 8.0, n), -40, 85, 2)
    humidity = _quantise(_normal(rng, 50.0, 15.0, n), 0, 100, 1)
    pressure = _quantise(_normal(rng, 1013.25, 8.0, n), 870, 1085, 2)
    status = _draw_codes(cats.status_values, rng, n)
    region = _draw_codes(cats.regions, rng, n)
    zone = _draw_codes(cats.zones, rng, n)
    model = _draw_codes(cats.models, rng, n)
    version = (1 + draws.below(rng, 5, n)).astype(np.int32)
    signal = np.clip(np.rint(_normal(rng, -70.0, 12.0, n)), -120, -30).astype(np.int32)
    uptime = _quantise(720.0 * rng.standard_exponential(n, dtype=np.float32), 0, 8760, 2)
    faults = draws.weighted(rng, _FAULT_CUTS, n, _FAULT_TABLE).astype(np.int32)
    calibration = ts - (DAY_MS + draws.below(rng, 364 * DAY_MS + 1, n))
    maintenance_due = (ts - calibration) > CALIBRATION_DUE_DAYS * DAY_MS
    delay = np.exp(_normal(rng, np.log(800.0), 1.0, n))
    created = ts + np.minimum(np.rint(delay), 30_000).astype(np.int64)
    updated = created + np.where(draws.coin(rng, 0.2, n), 1 + draws.below(rng, HOUR_MS, n), 0)
    source = _draw_codes(cats.sources, rng, n)
    env = _draw_codes(cats.envs, rng, n)
    payload = (text_codes(cats.key_pool, spec.min_keys, spec.max_keys, rng, n) if json_column == "text" and n
               else build_json_column(cats.key_pool, spec.min_keys, spec.max_keys, rng, n, json_column))
    return [event_id, ts, device_type, firmware, battery, sensor, temperature, humidity, pressure, status, region,
            zone, model, version, signal, uptime, faults, calibration, maintenance_due, created, updated, source,
            env, payload]


# How _columns makes each of _draw_block's arrays (but the last, json_column) an Arrow column.
_KINDS = ("uuid", "timestamp", "device_types", "firmware", "number", "sensor", "number", "number", "number",
          "status_values", "regions", "zones", "models", "number", "number", "number", "number", "timestamp",
          "number", "timestamp", "timestamp", "sources", "envs")


def _columns(spec: GeneratorSpec, parts: list[list], json_column: str) -> pa.RecordBatch:
    """The record batch of one or more blocks' draws (:func:`_draw_block`), in order."""
    cats = spec.catalogs
    columns: list[Any] = []
    for i, kind in enumerate(_KINDS):
        x = parts[0][i] if len(parts) == 1 else np.concatenate([p[i] for p in parts])
        if kind == "uuid":
            columns.append(_fixed_width(x))
        elif kind == "timestamp":
            columns.append(_ts(x))
        elif kind == "firmware":
            columns.append(_firmware().take(x))
        elif kind == "sensor":
            columns.append(_sensor_ids(x, spec.num_sensors))
        elif kind == "number":
            columns.append(pa.array(x))
        else:  # a catalog's codes
            columns.append(_categorical_strings(getattr(cats, kind), x))
    payloads = [p[23] for p in parts]
    if not isinstance(payloads[0], tuple):  # VARIANT, or no rows
        columns.append(_joined_arrays(payloads))
    else:
        shift = 0
        codes, firsts = [], []
        for block_codes, first in payloads:
            codes.append(block_codes)
            firsts.append(first + shift if shift else first)
            shift += len(block_codes)
        compiled = piece_table(cats.key_pool)
        columns.append(joined_text(compiled, codes[0] if len(codes) == 1 else np.concatenate(codes),
                                   firsts[0] if len(firsts) == 1 else np.concatenate(firsts)))
    return pa.RecordBatch.from_arrays(columns, schema=events_schema(json_column))


def _ts(epoch_ms: np.ndarray) -> pa.Array:
    return timestamps_ms(epoch_ms)


def _normal(rng: np.random.Generator, mean: float, sigma: float, n: int) -> np.ndarray:
    """Normal draws (float32 ziggurat: half the random bits; values are quantised to 1-2 decimals anyway)."""
    x = rng.standard_normal(n, dtype=np.float32).astype(np.float64)
    x *= sigma
    x += mean
    return x


def _quantise(x: np.ndarray, low: float, high: float, decimals: int) -> np.ndarray:
    """``x`` clipped to ``[low, high]`` and rounded to ``decimals`` in float64 (in place when it is float64)."""
    x = x.astype(np.float64, copy=False)
    np.clip(x, low, high, out=x)
    return np.round(x, decimals, out=x)


def _cdf(distribution: tuple, x: np.ndarray) -> np.ndarray:
    kind = distribution[0]
    if kind == "normal":
        _, mean, sigma = distribution
        erf = np.frompyfunc(math.erf, 1, 1)
        return 0.5 * (1.0 + erf((x - mean) / (sigma * math.sqrt(2.0))).astype(np.float64))
    if kind == "beta" and distribution[1:3] == (5.0, 1.5):  # closed form: with t = sqrt(1 - y) the density is
        scale = distribution[3]                               # a polynomial, 2 t**2 (1 - t**2)**4 dt
        t = np.sqrt(1.0 - np.clip(x / scale, 0.0, 1.0))
        q = t**3 / 3 - 4 * t**5 / 5 + 6 * t**7 / 7 - 4 * t**9 / 9 + t**11 / 11
        return 1.0 - q / (1 / 3 - 4 / 5 + 6 / 7 - 4 / 9 + 1 / 11)
    raise ValueError(f"no CDF for {distribution!r}")


@functools.lru_cache(maxsize=32)
def _grid_table(distribution: tuple, low: float, high: float, decimals: int) -> draws.AliasTable:
    """The exact distribution of ``round(clip(x, low, high), decimals)`` for ``x`` from ``distribution``."""
    unit = 10**decimals
    grid = np.arange(round(low * unit), round(high * unit) + 1) / unit
    edges = _cdf(distribution, (grid[:-1] + grid[1:]) / 2)
    return draws.AliasTable(np.diff(np.concatenate([[0.0], edges, [1.0]])))


def _grid_draw(rng: np.random.Generator, distribution: tuple, low: float, high: float, decimals: int,
               n: int) -> np.ndarray:
    """Draws of ``round(clip(x, low, high), decimals)`` (float64) straight from its discrete distribution."""
    unit = 10**decimals
    codes = _grid_table(distribution, low, high, decimals).draw(rng, n) + round(low * unit)
    return codes / unit if decimals else codes.astype(np.float64)


@functools.lru_cache(maxsize=64)
def _categorical(cat: Categorical) -> tuple[pa.StringArray, np.ndarray, np.ndarray, np.ndarray | None]:
    """The values as Arrow strings, the draw's cuts and lookup table, and (when every value has the same
    length in bytes) the values as fixed-width items for :func:`_fixed_width`."""
    cuts = draws.thresholds(cat.probabilities)
    encoded = [value.encode("utf-8") for value in cat.values]
    same = len({len(value) for value in encoded}) == 1 and len(encoded[0]) > 0
    fixed = np.frombuffer(b"".join(encoded), dtype=f"V{len(encoded[0])}") if same else None
    return pa.array(cat.values, pa.string()), cuts, draws.lookup(cuts), fixed


def _categorical_strings(cat: Categorical, codes: np.ndarray) -> pa.Array:
    """The values of the codes (a gather of fixed-width items when every value has the same length)."""
    values, _, _, fixed = _categorical(cat)
    if fixed is None:
        return values.take(codes)
    return _fixed_width(fixed[codes].view(np.uint8).reshape(len(codes), fixed.itemsize))


def _draw(cat: Categorical, rng: np.random.Generator, n: int) -> pa.Array:
    return _categorical_strings(cat, _draw_codes(cat, rng, n))


def _draw_codes(cat: Categorical, rng: np.random.Generator, n: int) -> np.ndarray:
    _, cuts, table, _ = _categorical(cat)
    return draws.weighted(rng, cuts, n, table)


def _fixed_width(text: np.ndarray) -> pa.StringArray:
    """A string array from an ``(n, width)`` uint8 matrix of ASCII text, one string per row."""
    n, width = text.shape
    offsets = np.arange(0, width * (n + 1), width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(text)))


@functools.lru_cache(maxsize=1)
def _hex_quads() -> np.ndarray:
    """The 4 lower-case hex digits of every 16-bit value, as uint32 (their bytes in text order)."""
    value = np.arange(65536)
    nibbles = np.stack([(value >> shift) & 15 for shift in (12, 8, 4, 0)], axis=1)
    return np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[nibbles].view(np.uint32).ravel()


def _row_items(matrix: np.ndarray, start: int, width: int) -> np.ndarray:
    """Bytes ``start .. start + width`` of every row of an ``(n, k)`` uint8 matrix, as one item per row."""
    return np.ndarray((matrix.shape[0],), dtype=f"V{width}", buffer=matrix, offset=start, strides=(matrix.strides[0],))


def _uuid4(rng: np.random.Generator, n: int) -> pa.Array:
    """Random (version 4, variant 1) UUIDs as text."""
    return _fixed_width(_uuid4_text(rng, n))


def _uuid4_text(rng: np.random.Generator, n: int) -> np.ndarray:
    """:func:`_uuid4`'s text as an ``(n, 36)`` uint8 matrix."""
    raw = rng.bit_generator.random_raw(2 * n).view(np.uint8).reshape(n, 16)
    raw[:, 6] &= 0x0F
    raw[:, 6] |= 0x40
    raw[:, 8] &= 0x3F
    raw[:, 8] |= 0x80
    hexed = _hex_quads()[raw.view(">u2")].view(np.uint8).reshape(n, 32)
    text = np.empty((n, 36), dtype=np.uint8)
    for dash in (8, 13, 18, 23):
        text[:, dash] = ord("-")
    for start, stop, at in ((0, 8, 0), (8, 12, 9), (12, 16, 14), (16, 20, 19), (20, 32, 24)):
        _row_items(text, at, stop - start)[...] = _row_items(hexed, start, stop - start)
    return text


#: firmware versions "1.0.0" .. "4.9.19". Built on first use: pyarrow imports pandas at its first pa.array() (a second
#: of CPU), which `iotgen --help` and a command that fails on its input should not pay.
_FIRMWARE_COUNT = 4 * 10 * 20


@functools.lru_cache(maxsize=1)
def _firmware() -> pa.Array:
    return pa.array([f"{a}.{b}.{c}" for a in range(1, 5) for b in range(10) for c in range(20)], pa.string())
_FAULT_PROBABILITIES = [math.exp(-0.4) * 0.4**k / math.factorial(k) for k in range(50)]
# Poisson(0.4), capped at 50
_FAULT_CUTS = draws.thresholds(_FAULT_PROBABILITIES + [max(0.0, 1.0 - sum(_FAULT_PROBABILITIES))])
_FAULT_TABLE = draws.lookup(_FAULT_CUTS)


SENSOR_TABLE_LIMIT = 1 << 17  # sensor ids come from a cached table up to this many sensors


def _sensor_text(number: np.ndarray, width: int) -> np.ndarray:
    """``sensor-`` and the numbers zero-padded to ``width`` digits, one row of ASCII per id."""
    text = np.empty((len(number), 7 + width), dtype=np.uint8)
    text[:, :7] = np.frombuffer(b"sensor-", dtype=np.uint8)
    for column in range(6 + width, 6, -1):
        higher = number // 10
        text[:, column] = number - higher * 10 + 48
        number = higher
    return text


@functools.lru_cache(maxsize=4)
def _sensor_table(num_sensors: int, width: int) -> np.ndarray:
    return _row_items(_sensor_text(np.arange(1, num_sensors + 1), width), 0, 7 + width)


def _sensor_ids(sensor: np.ndarray, num_sensors: int) -> pa.Array:
    """``sensor-00042``: zero-padded to at least five digits (a fixed-size gather from a cached table)."""
    width = max(5, len(str(num_sensors)))
    if num_sensors > SENSOR_TABLE_LIMIT:
        return _fixed_width(_sensor_text(sensor, width))
    return _fixed_width(_sensor_table(num_sensors, width)[sensor - 1].view(np.uint8).reshape(len(sensor), 7 + width))


# ---- the seed notebook's per-row functions --------------------------------------------------------------------
def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def generate_fixed_row(spec: GeneratorSpec, rng: np.random.Generator | int | None = None) -> dict[str, Any]:
    """One event's 23 fixed columns as a dict of JSON values (timestamps as ISO 8601 text), as in the seed;
    ``rng`` is a numpy Generator, a seed, or None (fresh). With a Config and catalog overrides:
    :func:`iotgen.generate_fixed_row`."""
    event = event_dicts(build_events(spec, _rng(rng), 1))[0]
    event.pop("json_column")
    return event


def generate_dynamic_json(
    min_keys: int | None = None,
    max_keys: int | None = None,
    key_pool: Any = None,
    nested_keys: Any = None,
    rng: np.random.Generator | int | None = None,
) -> dict[str, Any]:
    """One ``json_column`` object with ``min_keys..max_keys`` keys from ``key_pool`` (seed-compatible)."""
    config = _config_defaults()
    min_keys = config.min_keys if min_keys is None else min_keys
    max_keys = config.max_keys if max_keys is None else max_keys
    catalogs = Catalogs.build(iot_key_pool=key_pool, nested_keys=nested_keys)
    spec_check = GeneratorSpec(0, catalogs, 0, 1, min_keys, max_keys)
    text = build_json_column(catalogs.key_pool, spec_check.min_keys, spec_check.max_keys, _rng(rng), 1)
    return json.loads(text[0].as_py())


def event_dicts(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """Events as dicts of JSON values (what one NDJSON line holds): ISO 8601 timestamps, json_column a dict."""
    rows = batch.to_pylist()
    for row in rows:
        for key, value in row.items():
            if isinstance(value, dt.datetime):
                row[key] = iso_utc(value)
        row["json_column"] = json.loads(row["json_column"])
    return rows
