"""The ``iotgen`` Spark data source: the core generator as a batch and streaming Spark source.

Partitions run the same pure generator as the embedded API, block by block, and hand Spark Arrow record
batches, so a seed gives exactly the events :func:`iotgen.generation.generator.generate_events` gives, whatever the
number of partitions (event ``i`` depends only on the seed and its block ``i // BLOCK_SIZE``), with the
fleet profile and data-quality scenarios of a spec file too (``specFile``).

Batch::

    import iotgen.runs.spark
    iotgen.runs.spark.register(spark)
    df = (spark.read.format("iotgen")
          .option("numEvents", 1_000_000).option("seed", 42).option("numPartitions", 8)
          .load())

Streaming (offsets are event positions; each micro-batch is cut into block-aligned partitions)::

    stream = (spark.readStream.format("iotgen")
              .option("seed", 42).option("rowsPerSecond", 5000)       # or .option("rowsPerBatch", 50_000)
              .load())
    bounded = spark.readStream.format("iotgen").option("numEvents", 100_000).load()  # ends after 100k events

Options (case-insensitive; values are strings as always in Spark):

===================  ===========================================================================================
``numEvents``        Batch: events to generate (default ``NUM_EVENTS``). Streaming: optional end of the stream.
``seed``             ``RANDOM_SEED``; without it a seed is drawn once per query (and kept in the checkpoint).
``numPartitions``    Spark partitions (batch) or partitions per micro-batch (default: the driver's cores).
``rowsPerSecond``    Streaming: events per second of wall-clock time since the query (re)started.
``rowsPerBatch``     Streaming: at most this many events per micro-batch (the pace is the trigger interval).
``startEvent``       Streaming: position of the first event of a new query (default 0).
``minKeys``,         ``MIN_KEYS``, ``MAX_KEYS``, ``NUM_SENSORS``, ``ANCHOR_TIME``, ``BASE_TIME_DAYS_AGO``,
``maxKeys``, ...     ``TIME_SPREAD_HOURS``: the Config parameter of the same name (camelCase or UPPER_CASE).
``catalogs``         JSON object of catalog overrides, e.g. ``{"DEVICE_TYPES": ["a", "b"], "IOT_KEY_POOL": [...]}``
                     (they win over a spec file's catalogs).
``specFile``         ``SPEC_FILE``: a YAML generation spec (catalogs, the fleet, data-quality scenarios; see
                     docs/scenarios.md), read on the driver when the query is planned.
``profile``,         ``PROFILE`` (``independent`` | ``fleet``) and ``DEVICE_COUNT``: they win over the spec file's.
``deviceCount``
``dataset``          ``events`` (default), ``devices`` (the device registry's snapshot) or ``device_changes`` (its
                     change feed as delivered): the rows of :mod:`iotgen.generation.devices`, whole per spec.
``deviceRegistry``,  ``DEVICE_REGISTRY`` and ``CDC_LAYOUT`` (``flat`` | ``debezium``): the fleet's registry and the
``cdcLayout``        change feed's layout.
===================  ===========================================================================================

With a spec file the source gives the fleet's series and the scenarios' faults (nulls, duplicates, late and
out-of-order events, malformed ``json_column``...) exactly as the embedded generator does for the same
parameters; every column of the declared schema is nullable, so the nulls of the ``nulls`` scenario pass.

A streaming query pins its seed and time window in its checkpoint: restarted, it continues the same sequence
of events with no gap and no duplicate; ``trigger(availableNow=True)`` reads up to ``numEvents`` (or, for an
endless stream, one batch: ``rowsPerBatch`` or one second of ``rowsPerSecond``) and stops.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import pyarrow as pa

from ...base.errors import InputError
from ...base.values import parse_choice, parse_int, parse_number
from ...generation.devices import (
    DEBEZIUM_SCHEMA, FLAT_SCHEMA, REGISTRY_SCHEMA, change_count, change_range, registry_of, registry_snapshot,
)
from ...generation.generator import BLOCK_SIZE, GeneratorSpec, block_slices, generate_block
from ...settings.catalogs import Catalogs
from ...settings.config import CDC_LAYOUTS, Config
from ...settings.schema import ARROW_SCHEMA, spark_ddl
from ...spec.spec_file import generator_spec
from .runtime import (
    AVAILABLE_NOW_BASES,
    DataSource,
    DataSourceReader,
    DataSourceStreamReader,
    InputPartition,
    OffsetTracker,
    ReadAllAvailable,
    ReadLimit,
    ReadMaxRows,
)

NAME = "iotgen"
#: The schema Spark hands the source (all columns nullable, no metadata): batches are relabelled to it.
SPARK_ARROW_SCHEMA = pa.schema([pa.field(f.name, f.type, nullable=True) for f in ARROW_SCHEMA])
#: Config parameters the source accepts as options (camelCase or UPPER_CASE).
GENERATOR_PARAMS = ("NUM_EVENTS", "RANDOM_SEED", "MIN_KEYS", "MAX_KEYS", "NUM_SENSORS", "ANCHOR_TIME",
                    "BASE_TIME_DAYS_AGO", "TIME_SPREAD_HOURS", "SPEC_FILE", "PROFILE", "DEVICE_COUNT",
                    "DEVICE_REGISTRY", "CDC_LAYOUT")
SOURCE_OPTIONS = ("seed", "numPartitions", "rowsPerSecond", "rowsPerBatch", "startEvent", "catalogs", "dataset")


def _key(name: str) -> str:
    return name.replace("_", "").lower()


_PARAM_BY_KEY = {_key(p): p for p in GENERATOR_PARAMS}
_OPTION_BY_KEY = {_key(o): o for o in SOURCE_OPTIONS}


@dataclass(frozen=True)
class IotgenOptions:
    """The source's options, validated (a bad one raises one ``ValueError`` naming the option)."""

    config: Config
    catalogs: Catalogs | None  # the catalogs option; None: the spec file's, else the defaults
    num_events: int | None
    seed: int | None
    num_partitions: int
    rows_per_second: float | None
    rows_per_batch: int | None
    start_event: int
    explicit: frozenset[str]
    dataset: str = "events"

    @classmethod
    def parse(cls, options: Mapping[str, Any], streaming: bool = False) -> "IotgenOptions":
        params: dict[str, Any] = {}
        source: dict[str, str] = {}
        given: dict[str, str] = {}  # parameter -> the option as the user named it
        for raw_key, value in options.items():
            key = _key(str(raw_key))
            if key in _OPTION_BY_KEY:
                source[_OPTION_BY_KEY[key]] = value
                if key == "seed":
                    given["RANDOM_SEED"] = str(raw_key)
            elif key in _PARAM_BY_KEY:
                params[_PARAM_BY_KEY[key]] = value
                given[_PARAM_BY_KEY[key]] = str(raw_key)
            elif key != "path":
                allowed = ", ".join(list(SOURCE_OPTIONS) + [_option_name(p) for p in GENERATOR_PARAMS
                                                            if p != "RANDOM_SEED"])
                raise InputError(f"unknown option {raw_key!r} for the iotgen source; allowed: {allowed}")
        if "seed" in source:
            if "RANDOM_SEED" in params:
                raise InputError("give the iotgen source either seed or randomSeed, not both")
            params["RANDOM_SEED"] = source["seed"]
        try:
            config = Config.load(params=params, env={})
        except InputError as exc:  # the message names the parameter; name the option too
            raise InputError(f"iotgen source option {_option_of(exc, given)}: {exc}") from None
        num_events = config.num_events if (not streaming or "NUM_EVENTS" in params) else None
        num_partitions = parse_int("numPartitions", source.get("numPartitions", max(1, os.cpu_count() or 1)), 1)
        rows_per_second = None
        if source.get("rowsPerSecond") is not None:
            rows_per_second = parse_number("rowsPerSecond", source["rowsPerSecond"], 0.0, strict=True)
        rows_per_batch = None
        if source.get("rowsPerBatch") is not None:
            rows_per_batch = parse_int("rowsPerBatch", source["rowsPerBatch"], 1)
        start_event = parse_int("startEvent", source.get("startEvent", 0), 0)
        dataset = _dataset(source.get("dataset"))
        if dataset != "events" and "NUM_EVENTS" in params:
            raise InputError(f"numEvents applies to dataset events only: dataset {dataset} holds the whole registry "
                             "of the time window")
        if streaming and dataset in ENDLESS and num_events is None and rows_per_second is None \
                and rows_per_batch is None:
            raise InputError(f"a streaming iotgen source of {dataset} needs rowsPerSecond, rowsPerBatch or "
                             "numEvents")
        if not streaming and (rows_per_second is not None or rows_per_batch is not None or "startEvent" in source):
            raise InputError("rowsPerSecond, rowsPerBatch and startEvent apply to spark.readStream only")
        catalogs = _catalogs(source.get("catalogs"))
        explicit = frozenset(params) | frozenset(source)
        return cls(config, catalogs, num_events, config.random_seed, num_partitions, rows_per_second,
                   rows_per_batch, start_event, explicit, dataset)

    def spec(self, seed: int | None = None, window: tuple[int, int] | None = None) -> GeneratorSpec:
        """The generator spec (a fresh seed is drawn here when none was given), with its fleet and scenarios
        when ``specFile`` / ``profile`` ask for them. ``seed`` and ``window`` (start ms, span ms: a stream's
        pinned values) replace the options' before the spec file's points in time are resolved."""
        config = self.config
        if seed is not None:
            config = config.replace(random_seed=seed)
        if window is not None:
            start = dt.datetime.fromtimestamp(window[0] / 1000, dt.timezone.utc)
            config = config.replace(anchor_time=start + dt.timedelta(days=config.base_time_days_ago))
        try:
            spec = generator_spec(config, self.catalogs)
        except (InputError, OSError) as exc:
            if config.spec_file is None:
                raise
            raise InputError(f"iotgen source option specFile ({config.spec_file!r}): {exc}") from None
        if window is not None:
            spec = dataclasses.replace(spec, window_start_ms=window[0], window_span_ms=window[1])
        return spec


def _option(options: Mapping[str, Any], name: str) -> Any:
    """An option's value whatever its case or underscores (None when not given)."""
    return next((value for key, value in options.items() if _key(str(key)) == _key(name)), None)


def _option_name(param: str) -> str:
    """``TIME_SPREAD_HOURS`` -> ``timeSpreadHours``."""
    first, *rest = param.lower().split("_")
    return first + "".join(word.capitalize() for word in rest)


def _option_of(error: ValueError, given: Mapping[str, str]) -> str:
    """The option a Config error is about (its message starts with the parameter's name)."""
    named = [p for p in given if str(error).startswith(p)]
    return given[max(named, key=len)] if named else "value"


def _catalogs(text: Any) -> Catalogs | None:
    if text is None or text == "":
        return None
    try:
        overrides = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError as exc:
        raise InputError(f"catalogs must be a JSON object of catalog overrides: {exc.msg}") from None
    if not isinstance(overrides, dict):
        raise InputError("catalogs must be a JSON object such as {\"DEVICE_TYPES\": [\"a\", \"b\"]}")
    return Catalogs.build(**{str(k).lower(): v for k, v in overrides.items()})


def catalogs_option(catalogs: Catalogs | Mapping[str, Any] | None) -> str | None:
    """The ``catalogs`` option text for overrides given as a mapping (``{"DEVICE_TYPES": [...], ...}``)."""
    if catalogs is None:
        return None
    if isinstance(catalogs, Catalogs):
        raise InputError("pass the catalog overrides (a mapping such as {'DEVICE_TYPES': [...]}), not a Catalogs "
                         "object: options travel to Spark as JSON text")
    return json.dumps({str(k).upper(): v for k, v in catalogs.items()})


# ---- partitions --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EventRange(InputPartition):
    """Rows ``start`` (inclusive) to ``stop`` (exclusive) of one dataset of one spec (events by default)."""

    spec: GeneratorSpec
    start: int
    stop: int
    dataset: str = "events"
    layout: str = "flat"  # of the change feed


def split_range(start: int, stop: int, parts: int, align: int = BLOCK_SIZE) -> list[tuple[int, int]]:
    """Cut ``[start, stop)`` into at most ``parts`` contiguous, non-empty ranges aligned on multiples of
    ``align`` (the generator's blocks for events)."""
    if stop <= start:
        return []
    first, last = start // align, (stop - 1) // align
    blocks = last - first + 1
    parts = max(1, min(parts, blocks))
    out = []
    for i in range(parts):
        lo = first + (blocks * i) // parts
        hi = first + (blocks * (i + 1)) // parts
        out.append((max(start, lo * align), min(stop, hi * align)))
    return out


_BLOCK_CACHE: OrderedDict[tuple[GeneratorSpec, int], pa.RecordBatch] = OrderedDict()
_BLOCK_CACHE_SIZE = 2


def _block(spec: GeneratorSpec, block: int) -> pa.RecordBatch:
    """One block, kept in a small per-worker cache: streaming micro-batches smaller than a block read the same
    block several times (Spark reuses Python workers), and a block is costly to compute."""
    try:
        key = (spec, block)
        hash(key)
    except TypeError:  # a spec with an unhashable extension (fleet/scenarios): no caching
        return generate_block(spec, block)
    batch = _BLOCK_CACHE.get(key)
    if batch is None:
        batch = _BLOCK_CACHE[key] = generate_block(spec, block)
        while len(_BLOCK_CACHE) > _BLOCK_CACHE_SIZE:
            _BLOCK_CACHE.popitem(last=False)
    else:
        _BLOCK_CACHE.move_to_end(key)
    return batch


def read_range(spec: GeneratorSpec, start: int, stop: int, dataset: str = "events", layout: str = "flat"
               ) -> Iterator[pa.RecordBatch]:
    """The rows of one partition as Arrow record batches (of at most one block, for events), in Spark's schema."""
    if dataset != "events":
        yield from _registry_rows(spec, dataset, start, stop, layout)
        return
    for block, offset, take in block_slices(start, stop):
        batch = _block(spec, block).slice(offset, take)
        yield pa.RecordBatch.from_arrays(batch.columns, schema=SPARK_ARROW_SCHEMA)


# ---- datasets: the events, the device registry and its change feed -----------------------------------------
DATASETS = ("events", "devices", "device_changes")
#: Datasets without an end (a stream of them needs a pace or numEvents).
ENDLESS = ("events",)
#: The offset key of a stream's position in each dataset.
POSITION = {"events": "event", "devices": "device", "device_changes": "change"}


def _dataset(value: Any) -> str:
    return "events" if value is None or not str(value).strip() else parse_choice("dataset", value, DATASETS)


def dataset_schema(dataset: str, layout: str = "flat") -> pa.Schema:
    """The Arrow schema Spark gets for ``dataset`` (top-level columns nullable, no metadata; ``layout``: the
    change feed's, ``CDC_LAYOUT``)."""
    if dataset == "events":
        return SPARK_ARROW_SCHEMA
    return pa.schema([_nullable(f) for f in _registry_schema(dataset, layout)])


def _nullable(field: pa.Field) -> pa.Field:
    """``field`` nullable, and so are the fields of a struct (Spark declares the debezium layout's so)."""
    kind = field.type
    if pa.types.is_struct(kind):
        kind = pa.struct([_nullable(kind.field(i)) for i in range(kind.num_fields)])
    return pa.field(field.name, kind, nullable=True)


def spark_schema(dataset: str, layout: str = "flat") -> Any:
    """The Spark schema of ``dataset``: the events' DDL, or the registry's Arrow schema as a StructType."""
    if dataset == "events":
        return spark_ddl()
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(dataset_schema(dataset, layout))


def _registry_schema(dataset: str, layout: str) -> pa.Schema:
    if dataset == "devices":
        return REGISTRY_SCHEMA
    return FLAT_SCHEMA if layout == "flat" else DEBEZIUM_SCHEMA


def _registry_size(spec: GeneratorSpec, dataset: str, layout: str) -> int:
    return registry_snapshot(spec).num_rows if dataset == "devices" else change_count(spec, layout)


def _registry_rows(spec: GeneratorSpec, dataset: str, start: int, stop: int, layout: str
                   ) -> Iterator[pa.RecordBatch]:
    """Rows ``start .. stop`` of the registry snapshot or the delivered change feed (both computed whole once per
    spec and cached in the worker, so any partition of them is the same rows)."""
    if dataset == "devices":
        rows = registry_snapshot(spec).slice(start, stop - start)
    else:
        rows = change_range(spec, start, stop, layout)
    schema = dataset_schema(dataset, layout)
    for batch in rows.combine_chunks().to_batches():
        yield pa.RecordBatch.from_arrays([c.cast(f.type) for c, f in zip(batch.columns, schema)], schema=schema)


def _check_dataset(spec: GeneratorSpec, dataset: str) -> None:
    if dataset != "events" and registry_of(spec) is None:
        raise InputError(f"dataset {dataset} needs the device registry: options profile=fleet and "
                         "deviceRegistry=true, or a specFile with profile: fleet and a registry section")


# ---- readers -----------------------------------------------------------------------------------------------
class IotgenBatchReader(DataSourceReader):
    def __init__(self, options: IotgenOptions) -> None:
        self.spec = options.spec()
        self.dataset = options.dataset
        _check_dataset(self.spec, self.dataset)
        self.layout = options.config.cdc_layout
        if self.dataset == "events":
            self.num_rows = options.num_events or 0
        else:
            self.num_rows = _registry_size(self.spec, self.dataset, self.layout)
        self.num_partitions = options.num_partitions

    def partitions(self) -> list[EventRange]:
        ranges = split_range(0, self.num_rows, self.num_partitions, _align(self.dataset))
        return [EventRange(self.spec, lo, hi, self.dataset, self.layout) for lo, hi in ranges] or \
            [EventRange(self.spec, 0, 0, self.dataset, self.layout)]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        assert isinstance(partition, EventRange)  # Spark hands back what partitions() returned
        return read_range(partition.spec, partition.start, partition.stop, partition.dataset, partition.layout)


def _align(dataset: str) -> int:
    """Partitions of events start on block boundaries (each block is generated by one partition)."""
    return BLOCK_SIZE if dataset == "events" else 1


# The ignore below: mypy cannot follow bases unpacked from a tuple (SupportsTriggerAvailableNow on Spark 4.2+)
class IotgenStreamReader(DataSourceStreamReader, *AVAILABLE_NOW_BASES):  # type: ignore[misc]
    """Offsets are ``{"event": next event position, "seed": ..., "windowStartMs": ..., "windowSpanMs": ...}``
    (``"device"`` / ``"change"`` instead of ``"event"`` for the registry's datasets).

    The seed and time window live in the offset, so a query restarted from its checkpoint generates exactly
    the rows it would have generated had it never stopped. Spark 4.2+ hands ``latestOffset`` the start and
    the read limit (``rowsPerBatch``); older Spark hands it nothing and the reader tracks the start itself
    (see :mod:`iotgen.runs.spark.runtime`).
    """

    def __init__(self, options: IotgenOptions) -> None:
        self.options = options
        self.spec = options.spec()
        self.dataset = options.dataset
        self.key = POSITION[self.dataset]
        _check_dataset(self.spec, self.dataset)
        self.layout = options.config.cdc_layout
        self.end = options.num_events  # None: endless
        if self.dataset != "events":  # the registry's datasets end
            self.end = _registry_size(self.spec, self.dataset, self.layout)
        self._clock: tuple[float, int] | None = None  # (monotonic time, position) of the first request
        self._target: int | None = None
        self._available_now = False
        self._pinned: dict[tuple, GeneratorSpec] = {}
        self._tracker = OffsetTracker()

    def initialOffset(self) -> dict:
        return {self.key: self.options.start_event, "seed": self.spec.seed,
                "windowStartMs": self.spec.window_start_ms, "windowSpanMs": self.spec.window_span_ms}

    def _position(self, offset: dict) -> int:
        if self.key not in offset:
            found = next((name for name, key in POSITION.items() if key in offset), "?")
            raise InputError(f"dataset {self.dataset} differs from the dataset {found} in this query's checkpoint: "
                             "use a new checkpoint location to change the dataset")
        return int(offset[self.key])

    def _spec_for(self, offset: dict) -> GeneratorSpec:
        self._position(offset)
        seed, window = offset["seed"], (offset["windowStartMs"], offset["windowSpanMs"])
        if "RANDOM_SEED" in self.options.explicit and self.spec.seed != seed:
            raise InputError(f"seed {self.spec.seed} differs from the seed {seed} in this query's "
                             "checkpoint: use a new checkpoint location to change the seed")
        if (seed, *window) == (self.spec.seed, self.spec.window_start_ms, self.spec.window_span_ms):
            return self.spec
        if self.spec.fleet is None and self.spec.scenarios is None:
            return dataclasses.replace(self.spec, seed=seed, window_start_ms=window[0], window_span_ms=window[1])
        # A fleet or scenarios hold times resolved against the window (ISO dates of the spec file): rebuild
        # them for the pinned one.
        spec = self._pinned.get((seed, window))
        if spec is None:
            spec = self._pinned[(seed, window)] = self.options.spec(seed, window)
        return spec

    def _produced(self, start: int) -> int | None:
        """Rows available now (None: unbounded)."""
        rate = self.options.rows_per_second
        if rate is None:
            return self.end
        now = time.monotonic()
        if self._clock is None:  # the first request gets one second's worth (an availableNow run is not empty)
            self._clock = (now - 1.0, start)
        since, base = self._clock
        produced = base + int((now - since) * rate)
        return produced if self.end is None else min(produced, self.end)

    def getDefaultReadLimit(self) -> ReadLimit:
        if self.options.rows_per_batch is not None:
            return ReadMaxRows(self.options.rows_per_batch)
        return ReadAllAvailable()

    def prepareForTriggerAvailableNow(self) -> None:
        self._available_now = True

    def latestOffset(self, start: dict | None = None, limit: ReadLimit | None = None) -> dict:
        if start is None:  # Spark < 4.2: no start offset, no admission control
            start, limit = self._tracker.start(self.initialOffset), self.getDefaultReadLimit()
        position = self._position(start)
        if self._available_now:
            if self._target is None:  # fixed at the first request: data "available now" ignores the pace
                per_trigger = self.options.rows_per_batch or max(1, int(self.options.rows_per_second or 0))
                self._target = self.end if self.end is not None else position + per_trigger
            end = self._target
        else:
            produced = self._produced(position)
            end = produced if produced is not None else position + (self.options.rows_per_batch or BLOCK_SIZE)
        if isinstance(limit, ReadMaxRows):
            end = min(end, position + limit.max_rows)
        return {**start, self.key: max(position, end)}

    def reportLatestOffset(self) -> dict | None:
        return None

    def partitions(self, start: dict, end: dict) -> list[EventRange]:
        self._tracker.seen(end)
        spec = self._spec_for(start)
        ranges = split_range(self._position(start), self._position(end), self.options.num_partitions,
                             _align(self.dataset))
        return [EventRange(spec, lo, hi, self.dataset, self.layout) for lo, hi in ranges]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        assert isinstance(partition, EventRange)  # Spark hands back what partitions() returned
        return read_range(partition.spec, partition.start, partition.stop, partition.dataset, partition.layout)

    def commit(self, end: dict) -> None:
        self._tracker.seen(end)


class IotgenDataSource(DataSource):
    """``spark.read.format("iotgen")`` / ``spark.readStream.format("iotgen")``: see the module docstring."""

    @classmethod
    def name(cls) -> str:
        return NAME

    def schema(self) -> Any:
        layout = str(_option(self.options, "cdcLayout") or "flat").strip().lower()
        return spark_schema(_dataset(_option(self.options, "dataset")), layout if layout in CDC_LAYOUTS else "flat")

    def reader(self, schema: Any) -> IotgenBatchReader:
        return IotgenBatchReader(IotgenOptions.parse(self.options))

    def streamReader(self, schema: Any) -> IotgenStreamReader:
        return IotgenStreamReader(IotgenOptions.parse(self.options, streaming=True))
