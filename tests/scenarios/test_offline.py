"""Offline devices that catch up, and events dropped at the source: every report is delivered once, lost from an
overflowing buffer or dropped, and the labels say which; the schedule is the same at any chunking."""

from __future__ import annotations

import dataclasses

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from iotgen.base.errors import InputError
from iotgen.base.times import iso_time
from iotgen.generation.devices import EVENT_ATTRIBUTES, registry_history
from iotgen.generation.generator import BLOCK_SIZE, generate_events, labelled_range
from iotgen.generation.offline import Offline
from iotgen.generation.scenarios import rate_table, report_accounting

from scenario_support import EVEN_INTERVALS, build, clean, ms, rows

DEVICES = 50  # every 60 s: 50 events a minute, a block about 11 h
OFFLINE = {"rate": 0.1, "duration": "1h", "buffer": 30, "upload_interval": "100ms"}  # a gap every 10 h
N = 3 * BLOCK_SIZE + 1234


def spec_with(scenarios: dict, devices: int = DEVICES):
    return build({"profile": "fleet", "fleet": {"device_count": devices, **EVEN_INTERVALS}, "scenarios": scenarios})


def run(scenarios: dict, n: int = N):
    """(spec, events, labels) of events 0 .. n."""
    spec = spec_with(scenarios)
    got = labelled_range(spec, 0, n)
    assert got.truth is not None
    return spec, got.events.to_pandas(), got.truth.labels.to_pandas()


def clean_reports(spec, until_ms: int) -> pd.DataFrame:
    """The fleet's reports measured before ``until_ms`` (epoch ms), from the clean generator."""
    plain = clean(spec)
    per_hour = plain.fleet.events_per_hour(plain)
    n = int((until_ms - plain.window_start_ms) / 3_600_000 * per_hour * 1.05) + 1000
    events = rows(plain, 0, n).to_pandas()
    events = events[ms(events.timestamp) < until_ms]
    assert len(events) < n  # the clean run reached past until_ms
    return events


def arrival_ms(events: pd.DataFrame, labels: pd.DataFrame) -> np.ndarray:
    """When each event arrived: its measurement time, or for an upload its label's time after it."""
    arrival = ms(events.timestamp).to_numpy().copy()
    up = labels[labels.kind == "catch_up"]
    arrival[up.event_index.to_numpy()] += np.rint(up.value.to_numpy() * 1000).astype(np.int64)
    return arrival


def iso_ms(text: pd.Series) -> np.ndarray:
    return pd.to_datetime(text, utc=True, format="ISO8601").dt.as_unit("ms").astype("int64").to_numpy()


def gaps(labels: pd.DataFrame) -> pd.DataFrame:
    g = labels[labels.kind == "offline"].copy()
    bounds = g.note.str.split("/", expand=True)
    g["start"], g["end"] = iso_ms(bounds[0]), iso_ms(bounds[1])
    return g


def test_every_report_is_delivered_once_lost_or_dropped_and_labelled():
    spec, events, labels = run({"offline": OFFLINE, "dropped": {"rate": 0.02}})
    assert set(labels.kind) == {"offline", "catch_up", "overflow", "dropped"}
    # Every report measured before `cut` has arrived (or was lost) within the run: the last arrival less the
    # longest a report waits (a gap, its upload) and a margin.
    cut = int(ms(events.timestamp).max()) - 3 * 3_600_000
    expected = clean_reports(spec, cut)
    key = list(zip(expected.sensor_id, ms(expected.timestamp)))
    delivered = list(zip(events.sensor_id, ms(events.timestamp)))
    missing = labels[labels.kind.isin(["overflow", "dropped"])]
    gone = list(zip(missing.sensor_id, iso_ms(missing.note)))
    assert missing.event_id.isna().all()
    accounted = pd.Series([k for k in delivered + gone if k[1] < cut])
    assert not accounted.duplicated().any()  # nothing delivered twice, nothing both delivered and missing
    assert set(accounted) == set(key)  # nothing lost silently, nothing invented
    # the delivered events are the fleet's events of that device and time (the readings measured then)
    plain = clean(spec)
    by_key = expected.set_index([expected.sensor_id, ms(expected.timestamp)])
    mine = events[ms(events.timestamp) < cut]
    same = by_key.loc[list(zip(mine.sensor_id, ms(mine.timestamp)))]
    for column in ("temperature", "humidity", "battery_level", "status", "firmware_version", "region"):
        assert (same[column].to_numpy() == mine[column].to_numpy()).all(), column
    assert plain.fleet is not None
    # each position is still a distinct event of its own
    assert events.event_id.is_unique and len(events) == N


def test_gaps_hold_no_events_and_bursts_arrive_after_reconnecting_in_order():
    spec, events, labels = run({"offline": OFFLINE})
    arrival = arrival_ms(events, labels)
    assert (np.diff(arrival) >= 0).all()  # events come in order of arrival
    delay = ms(events.created_at).to_numpy() - arrival
    assert ((delay >= 0) & (delay <= 30_000)).all()  # created_at follows the arrival (the gateway's delay)
    found = gaps(labels)
    assert len(found) > 2 * DEVICES  # every device goes offline, more than once
    reports = clean_reports(spec, int(found.end.max()))
    assert (found.end - found.start == 3_600_000).all() and (found.value == 3600).all()
    assert list(found.note) == [f"{iso_time(int(a))}/{iso_time(int(b))}" for a, b in zip(found.start, found.end)]
    ups = labels[labels.kind == "catch_up"]
    lost = labels[labels.kind == "overflow"]
    stamp = ms(events.timestamp).to_numpy()
    for gap in found.itertuples():
        device = (events.sensor_id == gap.sensor_id).to_numpy()
        # while offline, the device sends nothing: no arrival of it between the gap's start and end
        assert not (device & (arrival >= gap.start) & (arrival < gap.end)).any()
        assert not (device & (np.arange(N) < gap.event_index) & (arrival >= gap.start)).any()
        # its upload: old times (measured in the gap), in order, one every 100 ms from the reconnection
        burst = ups[(ups.sensor_id == gap.sensor_id) & (stamp[ups.event_index] >= gap.start)
                    & (stamp[ups.event_index] < gap.end)]
        at = burst.event_index.to_numpy()
        assert (at >= gap.event_index).all()
        assert (np.diff(stamp[at]) > 0).all()
        assert list(arrival[at]) == [gap.end + 100 * j for j in range(len(at))]
        assert list(burst.note) == [iso_time(int(t)) for t in arrival[at]]  # the arrival, as text too
        # the buffer holds 30: the rest of the gap's reports are lost, exactly counted, the oldest ones
        dropped = lost[(lost.sensor_id == gap.sensor_id) & (lost.event_index == gap.event_index)]
        taken = ms(reports.timestamp)
        measured = ((reports.sensor_id == gap.sensor_id) & (taken >= gap.start) & (taken < gap.end)).sum()
        assert len(at) + len(dropped) == measured and len(at) == min(30, measured)
        if len(dropped):
            assert len(at) == 30 and iso_ms(dropped.note).max() < stamp[at].min()


def test_report_accounting_balances_every_report_and_finds_one_lost_silently():
    """The accounting a pipeline test (and notebook 07) uses: reports = on time + uploaded + overflow + dropped,
    each count checked against the clean fleet and the labels, and a missing event shows as unaccounted."""
    spec = spec_with({"offline": OFFLINE, "dropped": {"rate": 0.02}})
    got = labelled_range(spec, 0, BLOCK_SIZE)
    events, labels = got.events.to_pandas(), got.truth.labels.to_pandas()
    count = report_accounting(spec, got.events, got.truth.labels)
    until = int(ms(events.timestamp).max()) - 3_600_000 - 30 * 100  # the last event less a gap and a full upload
    assert count["until"] == iso_time(until)
    assert count["reports"] == len(clean_reports(spec, until))
    before = ms(events.timestamp).to_numpy() < until
    uploaded = np.isin(np.arange(len(events)), labels[labels.kind == "catch_up"].event_index)
    assert (count["on_time"], count["catch_up"]) == ((before & ~uploaded).sum(), (before & uploaded).sum())
    for kind in ("overflow", "dropped"):
        assert count[kind] == (iso_ms(labels[labels.kind == kind].note) < until).sum() > 0
    assert count["delivered"] == count["on_time"] + count["catch_up"] and count["unaccounted"] == 0
    assert count["catch_up"] > 0
    # one event lost silently (a pipeline that dropped a row), the rest in another order: one report unaccounted
    kept = np.arange(1, len(events))[::-1]
    assert report_accounting(spec, got.events.take(pa.array(kept)), got.truth.labels)["unaccounted"] == 1
    # an earlier cut: fewer reports, still balanced
    early = report_accounting(spec, got.events, got.truth.labels, until_ms=until - 6 * 3_600_000)
    assert early["reports"] < count["reports"] and early["unaccounted"] == 0
    # the helper of the notebooks gives the same from pandas frames
    import iotgen_helpers as h
    assert h.report_accounting(spec, events, labels).to_dict() == count
    with pytest.raises(InputError, match="plot_arrivals needs labels with offline gaps"):
        h.plot_arrivals(events, labels[labels.kind != "offline"])


def test_report_accounting_refuses_what_it_cannot_count_in_one_line():
    with pytest.raises(InputError, match="report_accounting counts reports by their timestamp: it needs a spec "
                                         "without late, duplicates"):
        late = spec_with({"offline": OFFLINE, "late": {"rate": 0.01}, "duplicates": {"rate": 0.01}})
        report_accounting(late, pa.table({"timestamp": []}), pa.table({"kind": []}))
    independent = build({"scenarios": {"nulls": {"temperature": 0.1}}})
    with pytest.raises(InputError, match="report_accounting needs the fleet profile"):
        report_accounting(independent, pa.table({"timestamp": []}), pa.table({"kind": []}))


def test_drop_newest_keeps_the_first_reports_of_a_gap():
    spec, events, labels = run({"offline": {**OFFLINE, "overflow": "drop_newest"}}, n=BLOCK_SIZE)
    stamp = ms(events.timestamp).to_numpy()
    ups, lost = labels[labels.kind == "catch_up"], labels[labels.kind == "overflow"]
    checked = 0
    for gap in gaps(labels).itertuples():
        at = ups[(ups.sensor_id == gap.sensor_id) & (ups.event_index >= gap.event_index)
                 & (ups.event_index < gap.event_index + 5000)].event_index.to_numpy()
        gone = lost[(lost.sensor_id == gap.sensor_id) & (lost.event_index == gap.event_index)]
        if len(gone) and len(at) == 30:
            assert stamp[at].max() < iso_ms(gone.note).min()
            checked += 1
    assert checked > 10


def test_dropped_reports_are_missing_and_labelled_at_their_place():
    spec, events, labels = run({"dropped": {"rate": 0.03}}, n=BLOCK_SIZE + 500)
    assert set(labels.kind) == {"dropped"}
    cut = int(ms(events.timestamp).max())
    expected = clean_reports(spec, cut)
    assert len(expected) == len(events[ms(events.timestamp) < cut]) + len(labels[iso_ms(labels.note) < cut])
    assert len(labels) == pytest.approx(0.03 * len(expected), rel=0.05)
    # a dropped report is labelled at the position of the first event measured after it
    stamp = ms(events.timestamp).to_numpy()
    at, when = labels.event_index.to_numpy(), iso_ms(labels.note)
    assert (stamp[at[at < len(events)]] >= when[at < len(events)]).all()
    assert (stamp[at[at > 0] - 1] <= when[at > 0]).all()
    # every device loses its share: one report in each stratum of 1 / rate
    per_device = labels.groupby("sensor_id").size()
    assert len(per_device) == DEVICES and per_device.min() >= 0.5 * per_device.mean()
    (row,) = rate_table(spec.scenarios, pa.Table.from_pandas(labels, preserve_index=False), len(events))
    assert row["scenario"] == "dropped" and row["measured"] == pytest.approx(0.03, rel=0.05)


@pytest.mark.parametrize("rate", [0.37, 0.9])
def test_each_device_drops_its_share_of_reports_at_any_rate(rate):
    spec, events, labels = run({"dropped": {"rate": rate}}, n=3000)
    cut = int(ms(events.timestamp).max())
    made = clean_reports(spec, cut).groupby("sensor_id").size()
    dropped = labels[iso_ms(labels.note) < cut].groupby("sensor_id").size()
    assert made.sum() == dropped.sum() + (ms(events.timestamp) < cut).sum()
    share = dropped.reindex(made.index, fill_value=0) / made
    assert share.between(rate - 1.5 / made, rate + 1.5 / made).all()  # one drop per stratum of 1 / rate reports


@pytest.mark.parametrize("chunk", [999, 32_769])
def test_the_same_events_and_labels_at_any_chunking(chunk):
    spec = spec_with({"offline": OFFLINE, "dropped": {"rate": 0.02}, "late": {"rate": 0.01},
                      "duplicates": {"rate": 0.01}})
    start, stop = 20_000, 2 * BLOCK_SIZE + 3_000
    whole = labelled_range(spec, start, stop)
    pieces = [labelled_range(spec, a, min(a + chunk, stop)) for a in range(start, stop, chunk)]
    assert pa.Table.from_batches([p.events for p in pieces]).equals(pa.Table.from_batches([whole.events]))
    assert pa.concat_tables([p.truth.labels for p in pieces]).equals(whole.truth.labels)
    batches = list(generate_events(spec, stop - start, start=start, chunk_size=chunk))
    assert pa.Table.from_batches(batches).equals(pa.Table.from_batches([whole.events]))


def test_the_independent_profile_and_bad_values_are_one_line_errors():
    with pytest.raises(InputError, match=r"scenarios.offline needs the fleet profile"):
        build({"scenarios": {"offline": OFFLINE}})
    with pytest.raises(InputError, match=r"scenarios.dropped needs the fleet profile"):
        build({"scenarios": {"dropped": {"rate": 0.1}}})
    for bad, message in (({"offline": {"rate": 0.6, "duration": "1h", "buffer": 100000}},
                          r"scenarios.offline.rate must be <= duration / \(duration \+ buffer \* upload_interval\)"),
                         ({"offline": {"rate": 0.1, "overflow": "newest"}},
                          r"scenarios.offline.overflow must be one of drop_oldest, drop_newest"),
                         ({"offline": {"rate": 0.1, "buffer": -1}}, r"scenarios.offline.buffer must be an integer"),
                         ({"dropped": {"rate": 0.95}}, r"scenarios.dropped.rate must be a number >= 0.0 and <= 0.9")):
        with pytest.raises(InputError, match=message) as caught:
            spec_with(bad)
        assert "\n" not in str(caught.value)
    with pytest.raises(InputError, match="offline: rate"):
        Offline(rate=1.0)
    assert dataclasses.replace(Offline(0.1), buffer=0).buffer == 0  # a device that buffers nothing loses every gap


# ---- with the device registry: devices commissioned, relocated, replaced and decommissioned -------------------
REGISTRY = {"commissioned_fraction": 0.2, "rollback": {"fraction": 0.3, "within": "3h"},
            "relocations": {"per_device_day": 0.5, "cross_region_fraction": 0.5},
            "replacements_per_device_day": 0.05, "decommissions_per_device_day": 0.05}


def with_registry(scenarios: dict):
    return build({"profile": "fleet", "fleet": {"device_count": DEVICES, **EVEN_INTERVALS}, "registry": REGISTRY,
                  "scenarios": scenarios}, time_spread_hours=48.0)


def test_offline_and_dropped_follow_the_device_registry():
    """Reports are made only between a device's commissioning and decommissioning; each is delivered once, lost or
    dropped; an uploaded backlog keeps its measurement time, so its attributes are the registry's as of then."""
    spec = with_registry({"offline": OFFLINE, "dropped": {"rate": 0.02}})
    got = labelled_range(spec, 0, N)
    assert got.truth is not None
    events, labels = got.events.to_pandas(), got.truth.labels.to_pandas()
    assert set(labels.kind) == {"offline", "catch_up", "overflow", "dropped"}
    # Every report of the registry's fleet (the clean run, which follows it) is delivered, lost or dropped.
    cut = int(ms(events.timestamp).max()) - 3 * 3_600_000
    expected = clean_reports(spec, cut)
    missing = labels[labels.kind.isin(["overflow", "dropped"])]
    accounted = pd.Series([k for k in list(zip(events.sensor_id, ms(events.timestamp)))
                           + list(zip(missing.sensor_id, iso_ms(missing.note))) if k[1] < cut])
    assert not accounted.duplicated().any()
    assert set(accounted) == set(zip(expected.sensor_id, ms(expected.timestamp)))
    # Each event falls in exactly one version of its device, with the registry's attributes of that version.
    history = registry_history(spec)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("events", got.events)
    con.register("history", history)
    on = ("e.sensor_id = v.sensor_id AND v.valid_from <= e.timestamp "
          "AND (v.valid_to IS NULL OR e.timestamp < v.valid_to)")
    matched = con.execute(f"SELECT count(*), count(DISTINCT e.event_id) FROM events e JOIN history v ON {on}")
    assert matched.fetchone() == (N, N)
    differ = " OR ".join(f"e.{c} IS DISTINCT FROM v.{c}" for c in EVENT_ATTRIBUTES)
    assert con.execute(f"SELECT count(*) FROM events e JOIN history v ON {on} WHERE {differ}").fetchone()[0] == 0
    # No event, loss or gap of a device outside its life (its first version's start to its last one's end).
    life = history.to_pandas().groupby("sensor_id").agg(born=("valid_from", "min"), gone=("valid_to", "max"),
                                                        open=("valid_to", lambda v: v.isna().any()))
    life["gone"] = ms(life.gone.where(~life.open, pd.Timestamp.max.tz_localize("UTC")))
    life["born"] = ms(life.born)
    at = life.loc[events.sensor_id]
    assert ((ms(events.timestamp).to_numpy() >= at.born.to_numpy())
            & (ms(events.timestamp).to_numpy() < at.gone.to_numpy())).all()
    at = life.loc[missing.sensor_id]
    assert ((iso_ms(missing.note) >= at.born.to_numpy()) & (iso_ms(missing.note) < at.gone.to_numpy())).all()
    found = gaps(labels)
    at = life.loc[found.sensor_id]
    assert ((found.start.to_numpy() >= at.born.to_numpy()) & (found.start.to_numpy() < at.gone.to_numpy())).all()
    assert len(found) > 2 * DEVICES
    # (the run holds devices commissioned, replaced and decommissioned while it reports)
    first = int(ms(events.timestamp).min())
    assert ((life.born > first) & (life.born < cut)).sum() >= 3 and ((life.gone > first) & (life.gone < cut)).sum() >= 3
    # Some uploads arrive after their device changed (moved, updated, replaced or was deleted): only a join as of
    # the event's time gives their attributes.
    arrival = arrival_ms(events, labels)
    up = labels[labels.kind == "catch_up"].event_index.to_numpy()
    con.register("uploads", pa.table({"sensor_id": got.events["sensor_id"].take(up),
                                      "timestamp": got.events["timestamp"].take(up),
                                      "arrival": pa.array(arrival[up] * 1000, pa.timestamp("us", tz="UTC"))}))
    crossed = con.execute(f"SELECT count(*) FROM uploads e JOIN history v ON {on} "
                          "WHERE v.valid_to IS NOT NULL AND v.valid_to <= e.arrival").fetchone()[0]
    assert crossed > 0
    # The same events and labels at any chunking.
    start, stop = 20_000, 2 * BLOCK_SIZE + 3_000
    whole = labelled_range(spec, start, stop)
    for chunk in (7_777, 32_769):
        pieces = [labelled_range(spec, a, min(a + chunk, stop)) for a in range(start, stop, chunk)]
        assert pa.Table.from_batches([p.events for p in pieces]).equals(pa.Table.from_batches([whole.events]))
        assert pa.concat_tables([p.truth.labels for p in pieces]).equals(whole.truth.labels)
        batches = list(generate_events(spec, stop - start, start=start, chunk_size=chunk))
        assert pa.Table.from_batches(batches).equals(pa.Table.from_batches([whole.events]))
