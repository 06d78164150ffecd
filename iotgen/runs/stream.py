"""Streaming: generate events and send them to Azure Event Hubs at a steady rate, until told to stop.

The loop takes ``BATCH_SIZE`` events at a time from the seeded generator (blocks are generated once and
sliced), paces them with a :class:`~iotgen.runs.token_bucket.TokenBucket`, and hands them to an
:class:`~iotgen.outputs.eventhubs.EventHubProducer`, which sends in a background thread while the next events are
generated and encoded. It stops on ``STREAM_EVENTS``, ``STREAM_DURATION_SEC``, Ctrl-C / the notebook's Stop
button (after the batch in flight is settled) or a batch that cannot be delivered, and returns a
:class:`StreamSummary`.

Pacing:

* ``RATE_EVENTS_PER_SEC`` set: that many events per second, ``BATCH_SIZE`` events per step;
* otherwise ``BATCH_SIZE`` events every ``SLEEP_INTERVAL_SEC`` seconds (the seed notebook's parameters; the
  time spent sending is part of the interval, so the rate does not drift); ``SLEEP_INTERVAL_SEC = 0`` sends as
  fast as the hub takes them;
* ``MAX_MB_PER_SEC`` caps the bytes sent; ``RAMP_UP_SEC`` climbs linearly to the rate;
* ``RATE_PROFILE`` (and the spec file's ``rate_profile`` section) makes the rate follow the clock: a daily
  curve in the devices' local time and bursts (:mod:`iotgen.generation.rate_profile`); with the fleet profile
  and no ``RATE_EVENTS_PER_SEC``, each device reports at its own interval. The summary then has the target and
  the events sent per minute.

The clock (monotonic time for pacing, wall time for event times and the rate profile, sleeping) is a
:class:`Clock`: tests pass a simulated one and stream a day without waiting for it.

Event time (``STREAM_TIME_MODE``): ``live`` (default) re-bases ``timestamp`` to the time the event is released
(spread evenly since the previous step) and moves ``created_at``, ``updated_at`` and ``last_calibration`` with
it, so ingest delays and calibration ages are kept; ``window`` keeps the generated times. Everything else, the
``event_id`` and payload included, comes from the seeded generator unchanged: the same seed streams the same
events.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import math
import secrets
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..base.errors import InputError
from ..formats.eventhub_messages import MessageLayout
from ..generation.devices import change_feed, registry_of
from ..generation.generator import BLOCK_SIZE, BlockCursor, GeneratorSpec
from ..generation.rate_profile import RateCurve, RateProfile, event_offsets, region_offsets, zone_weights
from ..outputs.eventhubs import (
    EventHubConfigError, EventHubProducer, SendStats, target_from_config, without_entity_path,
)
from ..outputs.registry import encode_file
from ..settings.catalogs import Catalogs
from ..settings.config import Config, Secret
from ..settings.databricks import on_databricks
from ..spec.spec_file import Spec, generator_spec, load_spec
from .token_bucket import TokenBucket

_LOGGER = logging.getLogger(__name__)
MB = 1_000_000
LIVE_TIME_COLUMNS = ("timestamp", "created_at", "updated_at", "last_calibration")


# ---- the plan ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StreamPlan:
    """When to send and when to stop, from a Config (validated: a bad combination raises ValueError)."""

    batch_size: int
    rate: float | None  # events/s; None: as fast as possible
    max_bytes_per_sec: float | None
    ramp_up: float
    max_events: int | None
    duration: float | None
    time_mode: str
    start: int
    changes_hub: str = ""  # the event hub / topic of the device change feed; empty: none
    profile: RateProfile | None = None
    fleet_pace: bool = False  # the rate profile's peak is the fleet's own rate (each device at its interval)

    @classmethod
    def from_config(cls, config: Config, spec: Spec | None = None) -> "StreamPlan":
        """The plan of ``config`` (and of its spec file, or ``spec``: the rate profile)."""
        spec = spec if spec is not None else load_spec(config.spec_file)
        profile = spec.build_rate_profile(config.rate_profile)
        if config.ramp_up_sec > 0 and config.rate_events_per_sec is None and profile is None:
            raise InputError(f"RAMP_UP_SEC={config.ramp_up_sec:g} needs RATE_EVENTS_PER_SEC (--rate), the rate to "
                             "climb to")
        changes_hub = config.stream_changes_hub.strip()
        if changes_hub and config.stream_time_mode == "live":
            raise InputError("STREAM_CHANGES_HUB needs STREAM_TIME_MODE=window (--time-mode window): live re-times "
                             "every event to its send time, so no event would match its device's registry as of "
                             "its time")
        rate = config.rate_events_per_sec
        fleet_pace = profile is not None and rate is None and (config.profile or spec.profile) == "fleet"
        if rate is None and config.sleep_interval_sec > 0 and not fleet_pace:
            rate = config.batch_size / config.sleep_interval_sec
        if profile is not None and rate is None and not fleet_pace:
            raise InputError(f"RATE_PROFILE={profile.preset} needs a rate to shape: RATE_EVENTS_PER_SEC (--rate), "
                             "SLEEP_INTERVAL_SEC > 0, or PROFILE=fleet (each device at its reporting interval)")
        return cls(
            batch_size=config.batch_size,
            rate=rate,
            max_bytes_per_sec=None if config.max_mb_per_sec is None else config.max_mb_per_sec * MB,
            ramp_up=config.ramp_up_sec,
            max_events=config.stream_events,
            duration=config.stream_duration_sec,
            time_mode=config.stream_time_mode,
            start=config.stream_start_event,
            changes_hub=changes_hub,
            profile=profile,
            fleet_pace=fleet_pace,
        )

    def describe(self) -> str:
        pace = "as fast as the hub takes them" if self.rate is None else f"{self.rate:,.0f} events/s"
        if self.fleet_pace:
            pace = "each device at its reporting interval"
        if self.profile is not None:
            pace += f", rate profile {self.profile.describe()}"
        if self.ramp_up:
            pace += f" (ramp-up {self.ramp_up:g} s)"
        if self.max_bytes_per_sec:
            pace += f", at most {self.max_bytes_per_sec / MB:g} MB/s"
        stops = []
        if self.max_events is not None:
            stops.append(f"{self.max_events:,} events")
        if self.duration is not None:
            stops.append(f"{self.duration:g} s")
        until = " or ".join(stops) if stops else "Ctrl-C / Stop"
        changes = f", device changes to {self.changes_hub}" if self.changes_hub else ""
        return f"{pace}, {self.batch_size:,} events per step, until {until}{changes}"


# ---- the result ----------------------------------------------------------------------------------------------------
@dataclass
class StreamSummary(SendStats):
    """What a stream did: the producer's counts for the run (see :class:`~iotgen.outputs.eventhubs.SendStats`),
    how long it took and why it stopped; also the live progress snapshot (``stopped_by`` None while running)."""

    endpoint: str = ""
    seed: int = 0
    first_event: int = 0
    target_rate: float | None = None
    time_mode: str = "live"
    elapsed_sec: float = 0.0
    resume_from: int = 0
    stopped_by: str | None = None  # "events", "duration", "interrupted", "failure"
    changes_endpoint: str = ""  # where the device change feed went (STREAM_CHANGES_HUB); empty: nowhere
    changes_sent: int = 0
    changes_acknowledged: int = 0
    changes_failed: int = 0
    first_change: int = 0
    next_change: int = 0
    rate_profile: str | None = None  # the profile's description, when one shaped the rate
    #: Per minute of the run (paced runs): ``minute``, ``start`` (ISO 8601 UTC), ``seconds`` (60, less for the
    #: last), ``target`` (events due by the rate curve in it) and ``sent`` (events released to the producer).
    per_minute: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no event (and no change of the device change feed) failed."""
        return self.failed == 0 and self.changes_failed == 0

    @property
    def events_per_sec(self) -> float:
        return self.acknowledged / self.elapsed_sec if self.elapsed_sec > 0 else 0.0

    @property
    def mb_per_sec(self) -> float:
        return self.bytes / MB / self.elapsed_sec if self.elapsed_sec > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(events_per_sec=self.events_per_sec, mb_per_sec=self.mb_per_sec, ok=self.ok)
        return data

    def progress_text(self) -> str:
        """One line: counts, rate, elapsed time."""
        return (f"{self.sent:,} sent, {self.acknowledged:,} acknowledged, {self.retried:,} retried, "
                f"{self.failed:,} failed | {self.events_per_sec:,.0f} ev/s, {self.mb_per_sec:.2f} MB/s | "
                f"{self.elapsed_sec:.1f} s")

    def lines(self) -> list[str]:
        why = {"events": "event count reached", "duration": "duration reached", "interrupted": "interrupted",
               "failure": "a batch could not be delivered", None: "running"}[self.stopped_by]
        out = [
            f"streamed to {self.endpoint}: {why}",
            f"  events     {self.sent:,} sent, {self.acknowledged:,} acknowledged, {self.retried:,} retried, "
            f"{self.failed:,} failed",
            f"  rate       {self.events_per_sec:,.0f} ev/s, {self.mb_per_sec:.2f} MB/s over {self.elapsed_sec:.1f} s"
            + (f" (target {self.target_rate:,.0f} ev/s)" if self.target_rate else ""),
            *([f"  profile    {self.rate_profile}"] if self.rate_profile else []),
            f"  batches    {self.batches:,} ({self.bytes / MB:,.1f} MB); partitions "
            + ", ".join(f"{p}: {n:,}" for p, n in self.partitions.items()),
            f"  events     #{self.first_event:,} to #{self.resume_from - 1:,}, seed {self.seed}, "
            f"event time {self.time_mode}",
        ]
        if self.changes_endpoint:
            out.append(f"  changes    {self.changes_sent:,} sent to {self.changes_endpoint}, "
                       f"{self.changes_acknowledged:,} acknowledged, {self.changes_failed:,} failed "
                       + (f"(changes #{self.first_change:,} to #{self.next_change - 1:,})"
                          if self.next_change > self.first_change else "(none due yet)"))
        if self.retried:
            out.append(f"  note       up to {self.retried:,} events may be duplicated (re-sent after a failure): "
                       "de-duplicate on event_id")
        out += [f"  error      {e}" for e in self.errors]
        if self.stopped_by in ("failure", "interrupted"):
            out.append(f"  resume     STREAM_START_EVENT={self.resume_from} (same RANDOM_SEED) sends the rest")
        if self.rate_profile and self.per_minute:
            out += self.minute_table()
        return out

    def minute_table(self, most_rows: int = 30) -> list[str]:
        """Target vs sent per minute (per few minutes when the run is longer than ``most_rows`` minutes)."""
        rows = self.per_minute
        width = max(1, math.ceil(len(rows) / most_rows))
        out = [f"  per {'minute' if width == 1 else f'{width} minutes'}: target (rate profile) vs sent",
               f"    {'minute':>6}  {'start (UTC)':<16}  {'target':>10}  {'sent':>10}  {'diff':>7}"]
        for i in range(0, len(rows), width):
            group = rows[i:i + width]
            target, sent = sum(r["target"] for r in group), sum(r["sent"] for r in group)
            seconds = sum(r["seconds"] for r in group)
            # a step is counted when it is released: a few seconds' share says little, so no diff for them
            diff = f"{(sent - target) / target:+.1%}" if target >= 1 and seconds >= 30 else ""
            out.append(f"    {group[0]['minute']:>6}  {group[0]['start'][:16].replace('T', ' '):<16}  "
                       f"{target:>10,.0f}  {sent:>10,}  {diff:>7}"
                       + (f"  (last {seconds:.1f} s)" if seconds < 60 * len(group) else ""))
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


# ---- event time --------------------------------------------------------------------------------------------------
def rebase_times(batch: pa.RecordBatch, after_us: int, until_us: int) -> pa.RecordBatch:
    """Events with ``timestamp`` spread evenly over the interval (after_us, until_us] (epoch microseconds; the
    last event at ``until_us``; whole milliseconds) and ``created_at``, ``updated_at``, ``last_calibration``
    moved by the same amount as their event's ``timestamp``. Nulls stay null; an event without a ``timestamp``
    has its other times moved by the step's mean shift."""
    n = batch.num_rows
    if n == 0:
        return batch
    offsets = np.arange(1, n + 1, dtype=np.float64) * ((until_us - after_us) / n)
    new = (np.floor((after_us + offsets) / 1000) * 1000).astype(np.int64)
    old, known = _micros(batch.column("timestamp"))
    shift = new - old
    if not known.all():
        shift[~known] = int(shift[known].mean()) if known.any() else 0
    columns = []
    for name, column in zip(batch.schema.names, batch.columns):
        if name in LIVE_TIME_COLUMNS:
            values, valid = (new, known) if name == "timestamp" else _micros(column)
            values = values if name == "timestamp" else values + shift
            column = pa.array(values, type=pa.int64(), mask=None if valid.all() else ~valid).cast(column.type)
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)


def _micros(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Epoch microseconds of a timestamp column (0 where null) and where it is not null."""
    micros = pc.cast(column.cast(pa.timestamp("us", tz="UTC")), pa.int64())
    return pc.fill_null(micros, 0).to_numpy(), pc.is_valid(micros).to_numpy(zero_copy_only=False)


# ---- the loop ------------------------------------------------------------------------------------------------------
def stream_events(
    config: Config,
    producer: EventHubProducer | None = None,
    *,
    catalogs: Catalogs | None = None,
    on_progress: Callable[[StreamSummary], None] | None = None,
    progress_interval: float = 0.5,
    changes_producer: Any = None,
    clock: "Clock | None" = None,
) -> StreamSummary:
    """Stream events as ``config`` says to ``producer`` (by default one opened from ``config`` and closed
    after), and with ``STREAM_CHANGES_HUB`` the fleet's device change feed to ``changes_producer`` (by default
    one opened with :func:`open_changes_producer`). Returns the summary; it never raises for a batch that fails
    (see ``summary.ok``), only for bad settings (``ValueError``) and an endpoint that cannot be reached when
    opening. ``clock``: the system's by default (see :class:`Clock`)."""
    spec_file = load_spec(config.spec_file)
    plan = StreamPlan.from_config(config, spec_file)
    spec = generator_spec(config, catalogs, spec=spec_file)  # + SPEC_FILE's catalogs, fleet (PROFILE), scenarios
    if plan.changes_hub:
        check_changes(spec)
    at_own_pace = plan.fleet_pace and plan.profile is not None and plan.profile.speed == 1
    if plan.time_mode == "live" and ((spec.fleet is not None and not at_own_pace) or spec.scenarios is not None):
        # (a fleet streamed at its own rate keeps its schedule: each device's live times are its interval apart)
        _LOGGER.warning("STREAM_TIME_MODE=live re-times every event to its send time, which replaces the fleet's "
                        "schedule and the scenarios' late, skewed or out-of-order times; STREAM_TIME_MODE=window "
                        "keeps them")
    with contextlib.ExitStack() as owned:
        if producer is None:
            producer = owned.enter_context(open_producer(config))
        if plan.changes_hub and changes_producer is None:
            changes_producer = owned.enter_context(open_changes_producer(config))
        changes = _Changes(changes_producer, spec, plan.start, config.cdc_layout) if plan.changes_hub else None
        return _run(plan, spec, producer, on_progress, progress_interval, changes, clock)


def check_changes(spec: GeneratorSpec) -> None:
    """Raise one InputError when ``spec`` has no device registry to stream the change feed of."""
    if registry_of(spec) is None:
        raise InputError("STREAM_CHANGES_HUB needs the device registry: PROFILE=fleet with DEVICE_REGISTRY=true "
                         "(--profile fleet --registry true), or a SPEC_FILE with profile: fleet and a registry section")


class _Changes:
    """The device change feed streamed beside the events (``STREAM_CHANGES_HUB``), in ``CDC_LAYOUT``.

    Before a step of events is submitted, every change released by the (clean, scheduled) time of the step's
    last event is sent to the changes producer and acknowledged: a consumer has each change before the events
    from its commit time on. Where the feed starts follows from the first event alone (the changes released
    by the time of event ``start - 1`` went out with the events before it), so a resumed stream
    (``STREAM_START_EVENT``) goes on with the changes too, with no state kept anywhere.
    """

    def __init__(self, producer: Any, spec: GeneratorSpec, start: int, layout: str) -> None:
        self.producer = producer
        self.spec = spec
        self.feed = ChangeMessages.of(spec, layout)
        producer.layout = self.feed.layout
        self.baseline = producer.stats
        self.first = self.position = 0 if start == 0 else self._released(start - 1)

    def _released(self, event: int) -> int:
        """How many rows of the feed are released by the clean time of event number ``event``."""
        assert self.spec.fleet is not None
        horizon = self.spec.fleet.time_of_event(self.spec, event)
        return int(np.searchsorted(self.feed.release_ms, horizon, side="right"))

    def send_until(self, last_event: int) -> bool:
        """Send (and settle) the changes released by event ``last_event``; False when some failed."""
        stop = self._released(last_event)
        if stop <= self.position:
            return True
        rows, bodies = self.feed.slice(self.position, stop)
        producer = self.producer
        outcome = producer.settle(producer.submit(producer.prepare(rows, self.position, bodies)))
        if outcome.first_failed is not None:
            return False
        self.position = stop
        return True

    def report(self, summary: StreamSummary) -> StreamSummary:
        stats = self.producer.stats.since(self.baseline)
        return dataclasses.replace(summary, changes_endpoint=self.producer.target.description,
                                   changes_sent=stats["sent"], changes_acknowledged=stats["acknowledged"],
                                   changes_failed=stats["failed"], first_change=self.first,
                                   next_change=self.position, errors=summary.errors + stats["errors"])


@dataclass(frozen=True)
class ChangeMessages:
    """The registry's delivered change feed as messages: per row its key, id and routing property (``rows``),
    its body (``bodies``, None: the rows' own JSON) and when it is released (``release_ms``).

    ``flat``: the feed's rows are the messages (id ``_commit_version``, property ``_change_type``: an update's
    two images share the id of their change). ``debezium``: the body is the change (``before``, ``after``,
    ``op``, ``ts_ms``, ``source``), the key the device's ``sensor_id``, the id ``source.seq`` and the property
    ``op``. A change is released at its commit time, never before an earlier row of the feed: a change the
    feed delivers late or out of order goes out at its place in the feed.
    """

    rows: pa.Table
    bodies: pa.Array | None
    release_ms: np.ndarray
    layout: MessageLayout

    @classmethod
    def of(cls, spec: GeneratorSpec, layout: str) -> "ChangeMessages":
        changes = change_feed(spec, layout).changes
        if layout == "flat":
            commit = changes.column("_commit_timestamp").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
            commit_ms = commit.to_numpy() // 1000
            rows, bodies = changes, None
            messages = MessageLayout(message_id="_commit_version", property="_change_type")
        else:
            commit_ms = changes.column("ts_ms").to_numpy()
            after, before = changes.column("after"), changes.column("before")
            rows = pa.table({
                "sensor_id": pc.coalesce(pc.struct_field(after, "sensor_id"), pc.struct_field(before, "sensor_id")),
                "seq": pc.struct_field(changes.column("source"), "seq"), "op": changes.column("op")})
            text = encode_file(changes, "ndjson").decode("utf-8").split("\n")[:-1]
            bodies = pa.array(text, pa.string())
            messages = MessageLayout(message_id="seq", property="op")
        release = np.maximum.accumulate(commit_ms) if len(commit_ms) else np.zeros(0, dtype=np.int64)
        return cls(rows, bodies, release, messages)

    def slice(self, start: int, stop: int) -> tuple[pa.RecordBatch, pa.Array | None]:
        rows = self.rows.slice(start, stop - start).combine_chunks().to_batches()
        batch = rows[0] if rows else pa.RecordBatch.from_pylist([], schema=self.rows.schema)
        return batch, None if self.bodies is None else self.bodies.slice(start, stop - start)


class Clock:
    """The time a stream paces by (:meth:`monotonic`), stamps events and follows a rate profile by
    (:meth:`time`, epoch seconds), and how it waits (:meth:`sleep`): the system's. A simulated clock (one whose
    sleep moves both times on) streams a day of a rate profile in moments."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _Stream:
    """State of one run: the plan, the producer's counters at the start, and the summary being built."""

    def __init__(self, plan: StreamPlan, spec: GeneratorSpec, producer: EventHubProducer,
                 changes: "_Changes | None" = None, clock: "Clock | None" = None) -> None:
        self.plan = plan
        self.producer = producer
        self.changes = changes
        self.clock = clock or Clock()
        self.baseline = producer.stats
        self.summary = StreamSummary(endpoint=producer.target.description, seed=spec.seed, first_event=plan.start,
                                     target_rate=plan.rate, time_mode=plan.time_mode, resume_from=plan.start,
                                     rate_profile=None if plan.profile is None else plan.profile.describe())
        self.started = self.clock.monotonic()

    def snapshot(self) -> StreamSummary:
        summary = dataclasses.replace(self.summary, **self.producer.stats.since(self.baseline),
                                      elapsed_sec=self.clock.monotonic() - self.started)
        return summary if self.changes is None else self.changes.report(summary)

    def settle(self, in_flight: deque) -> bool:
        """Wait for the oldest chunk in flight; True when every event of it was acknowledged."""
        futures, end = in_flight[0]
        outcome = self.producer.settle(futures)  # (an interrupt here leaves the chunk in flight, to settle again)
        in_flight.popleft()
        if outcome.first_failed is not None:  # an event number (the chunk's numbers when events were skipped)
            self.summary.resume_from = min(outcome.first_failed, self.summary.resume_from) \
                if self.summary.stopped_by == "failure" else outcome.first_failed
            self.summary.stopped_by = "failure"
            return False
        if self.summary.stopped_by != "failure":
            self.summary.resume_from = end
        return True

    def settle_all(self, in_flight: deque) -> None:
        while in_flight:
            self.settle(in_flight)


#: A paced STREAM_DURATION_SEC run sends the events due in the duration; when the hub lags, it may finish them
#: this many seconds late, then stops anyway.
DURATION_GRACE = 1.0
#: Steps sent while the next is generated and encoded: a partition's lane sends the next step's batches as soon
#: as it is done with the previous ones.
IN_FLIGHT = 2


def rate_curve(plan: StreamPlan, spec: GeneratorSpec, start_s: float) -> RateCurve | None:
    """The target rate a stream of ``plan`` follows when it starts at wall time ``start_s`` (epoch seconds): its
    rate profile bound to the run, ramp-up included (None without a profile). The peak is RATE_EVENTS_PER_SEC
    (the day's highest rate outside bursts), else the fleet's own rate (each device at its interval at its local
    peak hour); with ``timezone: region`` the zones weigh by their share of the events. A pure function: what
    ``iotgen stream`` will send, per second of the run, without sending anything."""
    if plan.profile is None:
        return None
    peak = plan.rate if plan.rate is not None else \
        spec.fleet.events_per_hour(spec) / 3600 * plan.profile.speed  # type: ignore[union-attr]
    by_region = plan.profile.daily and plan.profile.utc_offset_h() is None  # else one zone: no weights needed
    return RateCurve(plan.profile, peak, start_s=start_s, seed=spec.seed, zones=zone_weights(spec) if by_region else [],
                     ramp_up=plan.ramp_up, normalise=plan.rate is not None)


def _run(plan: StreamPlan, spec: GeneratorSpec, producer: EventHubProducer,
         on_progress: Callable[[StreamSummary], None] | None, progress_interval: float,
         changes: _Changes | None = None, clock: Clock | None = None) -> StreamSummary:
    clock = clock or Clock()
    producer.reset()
    state = _Stream(plan, spec, producer, changes, clock)
    events_bucket = bytes_bucket = None
    curve = rate_curve(plan, spec, clock.time())
    if curve is not None:
        peak = curve.peak
        highest = peak * (curve.profile.bursts.size if curve.profile.bursts else 1)  # banks a second of a burst
        events_bucket = TokenBucket(peak, max(2 * plan.batch_size, highest), curve=curve, clock=clock.monotonic,
                                    sleep=clock.sleep)
    elif plan.rate is not None:
        events_bucket = TokenBucket(plan.rate, max(2 * plan.batch_size, plan.rate), ramp_up=plan.ramp_up,
                                    clock=clock.monotonic, sleep=clock.sleep)
    if plan.max_bytes_per_sec is not None:
        bytes_bucket = TokenBucket(plan.max_bytes_per_sec, max(2 * producer.max_batch_bytes, plan.max_bytes_per_sec),
                                   clock=clock.monotonic, sleep=clock.sleep)
    source = _Source(spec, plan.start, curve)
    minutes = _Minutes()
    limit = plan.max_events
    if plan.duration is not None and events_bucket is not None:  # the events due by the end of the duration
        due = math.floor(events_bucket.issued(plan.duration) + 1e-9)
        limit = due if limit is None else min(limit, due)
    in_flight: deque = deque()
    released = clock.time()
    last_report = 0.0
    taken = 0
    try:
        while True:
            if limit is not None and taken >= limit:
                state.summary.stopped_by = "events" if limit == plan.max_events else "duration"
                break
            late = DURATION_GRACE if events_bucket is not None else 0.0
            if plan.duration is not None and clock.monotonic() - state.started >= plan.duration + late:
                state.summary.stopped_by = "duration"
                break
            n = plan.batch_size if limit is None else min(plan.batch_size, limit - taken)
            elapsed = 0.0
            if events_bucket is not None:
                events_bucket.acquire(n)
                elapsed = events_bucket.elapsed()
                minutes.add(elapsed, n)
            now = clock.time()
            events, first, index = source.take(n, elapsed)
            taken += n
            if plan.time_mode == "live":  # the events happened since the previous step
                events = rebase_times(events, int(released * 1e6), int(now * 1e6))
            released = now
            last = first + n - 1 if index is None else int(index[-1])
            if changes is not None and not changes.send_until(last):  # the changes go first
                state.summary.stopped_by = "failure"
                state.summary.resume_from = first
                break
            chunk = producer.prepare(events, first) if index is None else producer.prepare(events, first, numbers=index)
            if bytes_bucket is not None:
                bytes_bucket.acquire(chunk.size)
            while len(in_flight) >= getattr(producer, "in_flight", IN_FLIGHT):
                if not state.settle(in_flight):
                    break
            if state.summary.stopped_by == "failure":
                break
            in_flight.append((producer.submit(chunk), first + n if index is None else int(index[-1]) + 1))
            if on_progress is not None and clock.monotonic() - last_report >= progress_interval:
                last_report = clock.monotonic()
                on_progress(state.snapshot())
        state.settle_all(in_flight)
    except KeyboardInterrupt:
        if state.summary.stopped_by != "failure":
            state.summary.stopped_by = "interrupted"
        producer.stop_retrying()
        if changes is not None:
            changes.producer.stop_retrying()
        state.settle_all(in_flight)
    if events_bucket is not None:
        state.summary.per_minute = minutes.rows(events_bucket, released)
        if curve is not None and minutes.end > 0:  # the run's mean target
            state.summary.target_rate = events_bucket.issued(minutes.end) / minutes.end
    summary = state.snapshot()
    if on_progress is not None:
        on_progress(summary)
    return summary


class _Source:
    """The events a stream sends, in order: the generator's from ``start`` or, when the rate curve keeps events
    by their time zone (:attr:`RateCurve.thins`), those it keeps, with their generator indices."""

    def __init__(self, spec: GeneratorSpec, start: int, curve: RateCurve | None) -> None:
        self.cursor = BlockCursor(spec, start)  # each block generated once, cut into steps of any size
        self.curve = curve if curve is not None and curve.thins else None
        self.offsets = region_offsets(spec) if self.curve is not None else {}
        self.pending: list[tuple[pa.RecordBatch, np.ndarray]] = []
        self.count = 0
        self.kept = 0.5  # the share of events kept lately: how many to read for the next step

    def take(self, n: int, elapsed: float) -> tuple[pa.RecordBatch, int, np.ndarray | None]:
        """The next ``n`` events, the index of the first, and every index (None: consecutive)."""
        if self.curve is None:
            first = self.cursor.position
            return self.cursor.take(n).events, first, None
        while self.count < n:
            first = self.cursor.position
            events = self.cursor.take(int(min(BLOCK_SIZE, max(64, 1.2 * (n - self.count) / self.kept)))).events
            index = first + np.arange(events.num_rows, dtype=np.int64)
            keep = self.curve.keep(index, event_offsets(events, self.offsets), elapsed)
            self.kept = max(0.01, 0.5 * self.kept + 0.5 * float(keep.mean()))
            self.pending.append((events.filter(pa.array(keep)), index[keep]))
            self.count += int(keep.sum())
        events = pa.Table.from_batches([e for e, _ in self.pending]).combine_chunks().to_batches()[0] \
            if len(self.pending) > 1 else self.pending[0][0]
        index = np.concatenate([i for _, i in self.pending])
        self.pending = [(events.slice(n), index[n:])] if len(index) > n else []
        self.count = len(index) - n
        return events.slice(0, n), int(index[0]), index[:n]


class _Minutes:
    """Events released per minute of a paced run, against the target of its rate curve."""

    def __init__(self) -> None:
        self.sent: dict[int, int] = {}
        self.end = 0.0

    def add(self, elapsed: float, n: int) -> None:
        minute = int(elapsed // 60)
        self.sent[minute] = self.sent.get(minute, 0) + n
        self.end = max(self.end, elapsed)

    def rows(self, bucket: TokenBucket, wall_now: float) -> list[dict[str, Any]]:
        """One row per minute up to the last release; ``wall_now``: the wall time of the last release."""
        start = wall_now - self.end
        out = []
        for minute in range(math.floor(self.end / 60) + 1):
            low, high = 60.0 * minute, min(60.0 * (minute + 1), self.end)
            if high <= low and minute:
                break
            at = dt.datetime.fromtimestamp(start + low, dt.timezone.utc)
            out.append({"minute": minute, "start": at.isoformat(timespec="seconds").replace("+00:00", "Z"),
                        "seconds": round(high - low, 3), "target": round(bucket.issued(high) - bucket.issued(low), 1),
                        "sent": self.sent.get(minute, 0)})
        return out


# ---- the endpoint ------------------------------------------------------------------------------------------------
def open_producer(config: Config) -> Any:
    """The producer ``STREAM_PROTOCOL`` names, connected and checked: the azure-eventhub SDK (``amqp``) or
    librdkafka (``kafka``: Event Hubs' Kafka endpoint, the local emulator's, or any Kafka)."""
    if config.stream_protocol == "kafka":
        from ..outputs.kafka import KafkaProducer

        return KafkaProducer.open(config)
    return EventHubProducer.open(config)


def open_changes_producer(config: Config) -> Any:
    """The producer of the device change feed: ``STREAM_CHANGES_HUB`` as the event hub (same namespace and
    credentials as the events'; a connection string's EntityPath is the events' hub, so a namespace-level key is
    needed) or, with ``STREAM_PROTOCOL=kafka``, as the topic (same servers and credentials). Its messages have
    the change's number as message id and its change type as routing property (see :class:`ChangeMessages`),
    keyed by ``sensor_id`` (``PARTITION_KEY``): one device's changes stay in order in one partition."""
    hub = config.stream_changes_hub.strip()
    if not hub:
        raise InputError("STREAM_CHANGES_HUB is empty: name the event hub (or topic) of the device change feed")
    producer: Any
    try:
        if config.stream_protocol == "kafka":
            from ..outputs.kafka import KafkaProducer

            secret = config.eventhub_connection_string  # the password: the namespace's, for another topic
            # the change feed always carries its id and routing headers (message-id, op / _change_type): few
            # messages, and consumers route on them; KAFKA_HEADERS is the events'
            producer = KafkaProducer.open(config.replace(
                kafka_topic=hub, kafka_headers="all", eventhub_connection_string=None if secret is None
                else Secret(without_entity_path(secret.reveal()))))
        else:
            target = target_from_config(config)
            if target is None:  # EventHubProducer.open says what is missing
                producer = EventHubProducer.open(config)
            else:
                secret = target.connection_string
                if secret is not None:
                    secret = Secret(without_entity_path(secret.reveal()))
                producer = EventHubProducer.open(config, dataclasses.replace(target, eventhub=hub,
                                                                             connection_string=secret))
    except InputError as exc:
        raise type(exc)(_for_changes(str(exc), hub)) from None
    except ConnectionError as exc:
        raise type(exc)(_for_changes(str(exc), hub)) from None
    return producer


def _for_changes(message: str, hub: str) -> str:
    """An error of opening the change feed's hub or topic, naming STREAM_CHANGES_HUB."""
    for name in ("EVENTHUB_NAME: ", "KAFKA_TOPIC: "):
        if message.startswith(name):
            return "STREAM_CHANGES_HUB: " + message[len(name):]
    return f"STREAM_CHANGES_HUB {hub!r}: {message}"


@dataclass
class EventHubConnection:
    """An open producer (AMQP or Kafka), and the local emulator it streams to when nothing is configured."""

    producer: Any
    config: Config
    emulator: Any = None

    @property
    def target(self) -> Any:
        """The producer's target (an EventHubTarget or a KafkaTarget; both have ``description``)."""
        return self.producer.target

    @property
    def local(self) -> bool:
        return self.emulator is not None

    def close(self) -> None:
        """Close the producer and stop the local emulator if this connection started one."""
        try:
            self.producer.close()
        finally:
            if self.emulator is not None:
                self.emulator.close()
                self.emulator = None

    def __enter__(self) -> "EventHubConnection":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def connect(config: Config, *, local_fallback: bool | None = None, partitions: int = 4) -> EventHubConnection:
    """Open a producer for the configured event hub; with none configured (no connection string, no
    EVENTHUB_NAMESPACE) and ``local_fallback``, start a local emulator (``iotgen.emulator``, 127.0.0.1, a fresh
    random key, in memory) and stream to it. ``local_fallback`` None follows EVENTHUB_LOCAL_ENDPOINT: ``auto``
    falls back everywhere but on Databricks (where Spark's executors cannot reach the driver's 127.0.0.1: it
    takes ``yes`` there). The returned connection's ``config`` holds the connection string used (as a Secret)."""
    emulator = None
    if local_fallback is None:
        local_fallback = config.eventhub_local_endpoint == "yes" or (
            config.eventhub_local_endpoint == "auto" and not on_databricks())
    kafka = config.stream_protocol == "kafka"
    configured = target_from_config(config) is not None or (kafka and config.kafka_bootstrap_servers)
    if not configured and not local_fallback and on_databricks() and config.eventhub_local_endpoint == "auto":
        raise EventHubConfigError(
            "no event hub configured (EVENTHUB_SECRET_SCOPE/EVENTHUB_SECRET_KEY, EVENTHUB_NAMESPACE with "
            "EVENTHUB_SERVICE_CREDENTIAL or Azure AD): on Databricks iotgen starts no local endpoint unless "
            "EVENTHUB_LOCAL_ENDPOINT=yes (single-node clusters only: executors cannot reach the driver's 127.0.0.1)")
    if not configured and local_fallback:
        from ..emulator import start_emulator_process

        hubs = [config.eventhub_name or "iot-events"] + [h for h in [config.stream_changes_hub.strip()] if h]
        emulator = start_emulator_process(hub=hubs, partitions=partitions, key=secrets.token_urlsafe(32),
                                          kafka_port="any")
        # Kafka is served too (a free port), as Microsoft's emulator does: Spark's Kafka source reads it.
        config = config.replace(eventhub_connection_string=Secret(emulator.connection_string),
                                kafka_bootstrap_servers=emulator.kafka_bootstrap)
    try:
        return EventHubConnection(open_producer(config), config, emulator)
    except BaseException:
        if emulator is not None:
            emulator.close()
        raise


# ---- showing progress ----------------------------------------------------------------------------------------------
class ProgressLine:
    """A one-line live display on a text stream, rewritten in place with ``\\r`` (on a terminal the rest of
    the line is cleared too; notebooks clear it themselves), ended with a newline by :meth:`close`."""

    def __init__(self, stream: TextIO | None = None, prefix: str = "streaming: ") -> None:
        self.stream = stream or sys.stderr
        self.prefix = prefix
        self._clear = "\x1b[K" if getattr(self.stream, "isatty", lambda: False)() else ""
        self._shown = False

    def __call__(self, summary: StreamSummary) -> None:
        self.stream.write("\r" + self.prefix + summary.progress_text() + self._clear)
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False

