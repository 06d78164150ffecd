"""What a batch run looked like, gathered from its chunks as they pass: memory stays flat whatever NUM_EVENTS.

A notebook shows a preview DataFrame, a summary and an overview plot of the batch it wrote. Holding the whole
batch in pandas costs gigabytes at load-test sizes (a 20M-event run) and generating it twice (once for the
DataFrame, once for the files) doubles the time. Instead each chunk, where it is generated (in a worker process
with ``WORKERS`` > 1), is reduced by :func:`chunk_stats` to a few numbers and to its share of a preview sample;
:class:`BatchStats` merges them in event order in the parent:

* counts, the event-time range and the consistency checks, over **every** event;
* the device-type mix and the mean temperature per time bucket (at most about 1,000 buckets), over every event;
* a preview of at most ``PREVIEW_EVENTS`` rows: every event when the run is that small, else every k-th event
  (a systematic sample spread over the whole run, the same for the same seed);
* ``json_column`` keys per event, counted (vectorised, by DuckDB) on the preview rows only.

Everything here is pure except :meth:`BatchStats.key_counts`, which runs DuckDB on the preview.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

HOUR_US = 3_600_000_000
MAX_BUCKETS = 1000


@dataclass
class ChunkStats:
    """One chunk reduced: picklable and small (the preview rows are at most its share of ``PREVIEW_EVENTS``)."""

    count: int
    timestamp_min_us: int | None
    timestamp_max_us: int | None
    updated_after_created: bool
    calibrated_before: bool
    device_types: dict[str, int]
    temperature_by_bucket: dict[int, tuple[float, int]]  # bucket start (µs since the epoch) -> (sum, count)
    preview: pa.RecordBatch | None


def sample_every(num_events: int, preview_events: int) -> int:
    """Keep every k-th event so that at most ``preview_events`` are kept (1: keep all; 0: keep none)."""
    if preview_events <= 0:
        return 0
    return max(1, math.ceil(num_events / preview_events))


def bucket_us(window_span_ms: int) -> int:
    """The width of the temperature time buckets: an hour, or wider so that a window holds at most about
    :data:`MAX_BUCKETS`."""
    hours = max(1, math.ceil(window_span_ms / 3_600_000 / MAX_BUCKETS))
    return hours * HOUR_US


def chunk_stats(batch: pa.RecordBatch, start: int, every: int, bucket: int = HOUR_US) -> ChunkStats:
    """Reduce the events ``start .. start + len(batch)`` (whole-column Arrow operations, no loop per event)."""
    ts = pc.cast(batch.column("timestamp"), pa.int64())
    created, updated = batch.column("created_at"), batch.column("updated_at")
    calibrated = batch.column("last_calibration")
    updated_ok = pc.all(pc.greater_equal(updated, created)).as_py()
    calibrated_ok = pc.all(pc.less(calibrated, batch.column("timestamp"))).as_py()
    types = pc.value_counts(batch.column("device_type"))
    device_types = {v.as_py(): c.as_py() for v, c in zip(types.field("values"), types.field("counts"))
                    if v.as_py() is not None}
    temperature = batch.column("temperature")
    buckets = pc.multiply(pc.divide(ts, bucket), bucket)
    grouped = pa.table({"b": buckets, "t": temperature}).group_by("b").aggregate([("t", "sum"), ("t", "count")])
    by_bucket = {b: (s or 0.0, n) for b, s, n in zip(grouped["b"].to_pylist(), grouped["t_sum"].to_pylist(),
                                                       grouped["t_count"].to_pylist()) if b is not None and n}
    preview = None
    if every:
        first = (-start) % every  # the first position in this chunk that is a multiple of `every` overall
        preview = batch.take(pa.array(np.arange(first, len(batch), every, dtype=np.int64)))
    return ChunkStats(len(batch), pc.min(ts).as_py(), pc.max(ts).as_py(), updated_ok is not False,
                      calibrated_ok is not False, device_types, by_bucket, preview)


@dataclass
class BatchStats:
    """The merged statistics of a run (add the chunks in event order with :meth:`add`)."""

    num_events: int
    preview_events: int
    count: int = 0
    timestamp_min_us: int | None = None
    timestamp_max_us: int | None = None
    updated_after_created: bool = True
    calibrated_before: bool = True
    device_types: dict[str, int] = field(default_factory=dict)
    temperature_by_bucket: dict[int, tuple[float, int]] = field(default_factory=dict)
    _preview: list[pa.RecordBatch] = field(default_factory=list, repr=False)

    @property
    def every(self) -> int:
        return sample_every(self.num_events, self.preview_events)

    @property
    def sampled(self) -> bool:
        """Whether the preview is a sample (every k-th event) rather than every event."""
        return self.every > 1

    def add(self, chunk: ChunkStats) -> None:
        self.count += chunk.count
        for attr, pick in (("timestamp_min_us", min), ("timestamp_max_us", max)):
            value = getattr(chunk, attr)
            if value is not None:
                current = getattr(self, attr)
                setattr(self, attr, value if current is None else pick(current, value))
        self.updated_after_created &= chunk.updated_after_created
        self.calibrated_before &= chunk.calibrated_before
        for name, n in chunk.device_types.items():
            self.device_types[name] = self.device_types.get(name, 0) + n
        for b, (total, n) in chunk.temperature_by_bucket.items():
            old_total, old_n = self.temperature_by_bucket.get(b, (0.0, 0))
            self.temperature_by_bucket[b] = (old_total + total, old_n + n)
        if chunk.preview is not None and chunk.preview.num_rows:
            self._preview.append(chunk.preview)

    def preview(self) -> pa.Table:
        """The preview rows (every event, or every k-th: see :attr:`sampled`), in event order."""
        from ..settings.schema import ARROW_SCHEMA

        return pa.Table.from_batches(self._preview, schema=self._preview[0].schema if self._preview
                                     else ARROW_SCHEMA)

    def key_counts(self) -> np.ndarray:
        """Top-level keys of each preview row's ``json_column`` (-1 where it is not a JSON object, as the
        malformed-JSON scenario makes some), counted by DuckDB in one vectorised pass."""
        from ..formats.duckdb_local import select_over

        text = self.preview().column("json_column").combine_chunks()
        if len(text) == 0:
            return np.zeros(0, dtype=np.int64)
        counts = select_over(text, "TRY(json_array_length(json_keys(j)))::BIGINT")
        return np.asarray(pc.fill_null(counts, -1), dtype=np.int64)

    def mean_temperature(self) -> tuple[np.ndarray, np.ndarray]:
        """(bucket start in µs since the epoch, mean temperature), sorted by time."""
        buckets = sorted(self.temperature_by_bucket)
        means = [self.temperature_by_bucket[b][0] / self.temperature_by_bucket[b][1] for b in buckets]
        return np.array(buckets, dtype=np.int64), np.array(means, dtype=float)
