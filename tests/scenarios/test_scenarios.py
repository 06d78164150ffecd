"""Data-quality scenarios: each one injects what it says, its labels match what was injected, rates hold."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scenario_support import EVEN_INTERVALS, build, clean, ms, rows

from iotgen import generate_events
from iotgen.generation import generator, scenarios
from iotgen.generation.generator import BLOCK_SIZE, generate_range, labelled_block, labelled_range
from iotgen.generation.scenarios import LABEL_SCHEMA, OUT_OF_RANGE_VALUES, label_counts, truth_range
from iotgen.settings.schema import ARROW_SCHEMA
from iotgen.spec.spec_file import generator_spec

N = 20_000
PROFILES = ("independent", "fleet")


def run(scenarios: dict, profile: str, n: int = N, **fleet):
    """(dirty events, clean events, labels) of the first ``n`` events of a spec with these scenarios."""
    spec = build({"profile": profile, "fleet": {"device_count": 200, **fleet}, "scenarios": scenarios})
    dirty = rows(spec, 0, n).to_pandas()
    labels = truth_range(spec, 0, n).labels.to_pandas()
    return spec, dirty, rows(clean(spec), 0, n).to_pandas(), labels


def assert_same_outside(dirty: pd.DataFrame, clean_: pd.DataFrame, labelled, columns) -> None:
    """Rows without a label, and the columns the scenario does not touch, are exactly the clean ones."""
    others = ~dirty.index.isin(labelled)
    pd.testing.assert_frame_equal(dirty[others], clean_[others])
    untouched = [c for c in dirty.columns if c not in columns]
    pd.testing.assert_frame_equal(dirty[untouched], clean_[untouched])


@pytest.mark.parametrize("profile", PROFILES)
def test_nulls_are_where_the_labels_say(profile):
    spec, dirty, clean_, labels = run({"nulls": {"temperature": 0.03, "json_column": 0.01, "timestamp": 0.01}}, profile)
    for column, rate in (("temperature", 0.03), ("json_column", 0.01), ("timestamp", 0.01)):
        at = labels.loc[(labels.kind == "null") & (labels.column == column), "event_index"]
        assert set(at) == set(np.flatnonzero(dirty[column].isna()))
        assert len(at) == pytest.approx(rate * N, rel=0.1)
    assert_same_outside(dirty, clean_, labels.event_index, ["temperature", "json_column", "timestamp"])
    batch = generate_range(spec, 0, 10)
    assert [f.nullable for f in batch.schema] == [f.name in ("temperature", "json_column", "timestamp")
                                                 for f in ARROW_SCHEMA]


@pytest.mark.parametrize("profile", PROFILES)
def test_duplicates_and_replays_are_exact_copies_of_earlier_events(profile):
    spec, dirty, clean_, labels = run({"duplicates": {"rate": 0.02, "max_distance": 300},
                                       "replays": {"rate": 0.02, "length": [5, 20], "max_distance": 500}}, profile)
    copies = labels[labels.kind.isin(["duplicate", "replay"])]
    assert len(copies) == len(labels)
    for kind in ("duplicate", "replay"):
        assert (copies.kind == kind).sum() == pytest.approx(0.02 * N, rel=0.1)
    target, source = copies.event_index.to_numpy(), copies.source_index.to_numpy().astype(int)
    assert (source < target).all()
    distance = np.where(copies.kind == "duplicate", 300, 500)
    assert (target - source <= distance + 50).all()
    pd.testing.assert_frame_equal(dirty.iloc[target].reset_index(drop=True),
                                  dirty.iloc[source].reset_index(drop=True))
    assert not set(source) & set(target)  # a copy is never copied: every source is an original
    assert dirty.event_id.nunique() == N - len(copies)
    replays = copies[copies.kind == "replay"].event_index.to_numpy()
    assert (np.diff(replays) == 1).mean() > 0.8  # replays come in runs
    originals = ~dirty.index.isin(target)
    pd.testing.assert_frame_equal(dirty[originals], clean_[originals])


@pytest.mark.parametrize("profile", PROFILES)
def test_out_of_order_moves_events_later_within_the_bound(profile):
    spec, dirty, clean_, labels = run({"out_of_order": {"rate": 0.03, "max_distance": 40}}, profile)
    assert len(labels) == pytest.approx(0.03 * N, rel=0.1)
    position = pd.Series(np.arange(N), index=clean_.event_id)
    was = position[dirty.event_id].to_numpy()
    assert sorted(was) == list(range(N))  # a permutation: nothing lost, nothing added
    moved = labels.event_index.to_numpy()
    overtaken_by = [np.count_nonzero(was[:r] > was[r]) for r in moved]  # events now before it, once after it
    assert np.array_equal(overtaken_by, labels.value.to_numpy())
    assert ((labels.value >= 1) & (labels.value <= 40)).all()
    stayed = np.setdiff1d(np.arange(N), moved)
    assert (np.diff(was[stayed]) > 0).all()  # the others keep their order
    if profile == "fleet":  # moved events arrive after newer ones
        t = ms(dirty.timestamp).to_numpy()
        assert (t[moved] < t[moved - 1]).mean() > 0.9


@pytest.mark.parametrize("profile", PROFILES)
def test_late_events_were_measured_earlier(profile):
    spec, dirty, clean_, labels = run({"late": {"rate": 0.02, "distribution": "lognormal", "median": "2m",
                                                "sigma": 1.0, "min": "5s", "max": "30m"}}, profile)
    assert len(labels) == pytest.approx(0.02 * N, rel=0.1)
    at = labels.event_index.to_numpy()
    lateness_ms = ms(clean_.timestamp[at]).to_numpy() - ms(dirty.timestamp[at]).to_numpy()
    assert np.array_equal(lateness_ms, np.rint(labels.value.to_numpy() * 1000))
    assert lateness_ms.min() >= 5000 and lateness_ms.max() <= 1_800_000
    assert np.median(lateness_ms) == pytest.approx(120_000, rel=0.25)
    assert (dirty.created_at[at] == clean_.created_at[at]).all()  # arrival unchanged: created_at shows it
    assert ((dirty.created_at - dirty.timestamp)[at] >= pd.Timedelta(seconds=5)).all()
    if profile == "fleet":  # the readings are the device's at that earlier time
        readings = spec.fleet.columns_at(spec, dirty.sensor_id[at].str[7:].astype(int) - 1,
                                         ms(dirty.timestamp[at]).to_numpy())
        for column in ("temperature", "battery_level", "uptime_hours", "status", "firmware_version"):
            assert dirty[column][at].tolist() == readings[column].to_pylist()
    else:
        assert (dirty.last_calibration[at] < dirty.timestamp[at]).all()
        assert_same_outside(dirty, clean_, at, ["timestamp", "last_calibration"])


@pytest.mark.parametrize("profile", PROFILES)
def test_clock_skew_shifts_every_event_of_some_devices(profile):
    spec, dirty, clean_, labels = run({"clock_skew": {"device_fraction": 0.1, "max_offset": "10m",
                                                      "max_drift_per_day": "1m"}}, profile, **EVEN_INTERVALS)
    skewed = set(labels.sensor_id)
    assert len(skewed) == round(0.1 * (200 if profile == "fleet" else 1000))
    assert set(dirty.index[dirty.sensor_id.isin(skewed)]) == set(labels.event_index)
    at = labels.event_index.to_numpy()
    shift = ms(dirty.timestamp[at]).to_numpy() - ms(clean_.timestamp[at]).to_numpy()
    assert np.array_equal(shift, np.rint(labels.value.to_numpy() * 1000))
    assert np.abs(shift).max() <= 600_000 + 60_000 * 8
    days = (ms(clean_.timestamp[at]).to_numpy() - spec.window_start_ms) / 86_400_000
    for _, group in labels.assign(days=days).groupby("sensor_id"):  # an offset per device plus a steady drift
        if len(group) > 2:
            slope, offset = np.polyfit(group.days, group.value, 1)
            assert np.abs(group.value - (offset + slope * group.days)).max() < 0.002
            assert abs(offset) <= 600 and abs(slope) <= 60
    assert len(labels) / N == pytest.approx(0.1, rel=0.1 if profile == "fleet" else 0.2)


@pytest.mark.parametrize("profile", PROFILES)
def test_malformed_json_column_breaks_the_value_not_the_line(profile):
    from iotgen.formats.encoding import json_lines

    spec, dirty, clean_, labels = run({"malformed_json": {"rate": 0.02}}, profile)
    assert len(labels) == pytest.approx(0.02 * N, rel=0.1)
    at = labels.event_index.to_numpy()
    for text, before, kind in zip(dirty.json_column[at], clean_.json_column[at], labels.note):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        assert not isinstance(parsed, dict)
        if kind == "truncated":
            assert before.startswith(text) and len(text) < len(before)
        elif kind == "double_encoded":
            assert parsed == before
        elif kind == "empty":
            assert text == ""
        else:
            assert "=" in text and not text.startswith("{")
    assert set(labels.note) == {"truncated", "invalid", "double_encoded", "empty"}
    assert_same_outside(dirty, clean_, at, ["json_column"])
    lines = json_lines(generate_range(spec, 0, N)).to_pylist()
    decoded = [json.loads(line)["json_column"] for line in lines]  # every line stays valid JSON
    assert all(isinstance(decoded[i], str) for i in at)


@pytest.mark.parametrize("profile", PROFILES)
def test_out_of_range_values_are_impossible_ones(profile):
    columns = ["temperature", "humidity", "battery_level", "signal_strength"]
    spec, dirty, clean_, labels = run({"out_of_range": {"rate": 0.02, "columns": columns}}, profile)
    assert len(labels) == pytest.approx(0.02 * N, rel=0.1)
    for column, group in labels.groupby("column"):
        values = dirty[column][group.event_index]
        assert set(values) <= set(OUT_OF_RANGE_VALUES[column])
        assert np.array_equal(values.to_numpy(dtype=float), group.value.to_numpy())
    assert set(labels.column) == set(columns)
    assert_same_outside(dirty, clean_, labels.event_index, columns)


@pytest.mark.parametrize("profile", PROFILES)
def test_anomalies_spikes_stuck_and_drift(profile):
    spec, dirty, clean_, labels = run({
        "spikes": {"rate": 0.01, "columns": {"pressure": [20, 30]}},
        "stuck": {"rate": 0.1, "duration": "1h", "columns": ["humidity"]},
        "drift": {"rate": 0.1, "duration": "3h", "columns": {"temperature": 5}},
    }, profile, **EVEN_INTERVALS)
    spikes = labels[labels.kind == "spike"]
    assert len(spikes) == pytest.approx(0.01 * N, rel=0.1)
    delta = dirty.pressure[spikes.event_index].to_numpy() - clean_.pressure[spikes.event_index].to_numpy()
    assert np.allclose(delta, spikes.value, atol=1e-6)
    assert ((np.abs(delta) >= 20 - 1e-6) & (np.abs(delta) <= 30 + 1e-6) | np.isin(
        dirty.pressure[spikes.event_index], [870, 1085])).all()
    stuck = labels[labels.kind == "stuck"]
    assert np.array_equal(dirty.humidity[stuck.event_index].to_numpy(), stuck.value.to_numpy())
    drift = labels[labels.kind == "drift"]
    delta = dirty.temperature[drift.event_index].to_numpy() - clean_.temperature[drift.event_index].to_numpy()
    assert np.allclose(delta, drift.value, atol=1e-6) and (np.abs(delta) <= 5 + 1e-6).all()
    # an episode: one device's consecutive labelled events; stuck ones hold one value, drifting ones ramp
    for frame, check in ((stuck, lambda v: len(set(v)) == 1), (drift, lambda v: np.all(np.diff(np.abs(v)) >= -0.011))):
        episodes = 0
        for _, events in frame.groupby("sensor_id"):
            t = ms(dirty.timestamp[events.event_index]).to_numpy()
            in_time = np.argsort(t, kind="stable")
            values, t = events.value.to_numpy()[in_time], t[in_time]
            for run_ in np.split(values, np.flatnonzero(np.diff(t) > 30 * 60_000) + 1):
                episodes += 1
                assert check(run_)
        assert episodes > 5
    if profile == "fleet":  # 10 % of the devices' time, at any moment
        assert len(stuck) / N == pytest.approx(0.1, rel=0.1)
        assert len(drift) / N == pytest.approx(0.1, rel=0.1)
    assert_same_outside(dirty, clean_, labels.event_index, ["pressure", "humidity", "temperature"])


@pytest.mark.parametrize("profile", PROFILES)
def test_schema_drift_follows_its_schedule(profile):
    spec, dirty, clean_, _ = run({"schema_drift": [
        {"at": "1h", "add_key": "firmware_channel", "value": ["choice", ["stable", "beta"]]},
        {"at": "2h", "change_type": "co2_ppm", "to": "string"},
        {"at": "3h", "remove_key": "voc_ppb"},
        {"at": "3h", "change_type": "rpm", "to": "object"}]}, profile)
    truth = truth_range(spec, 0, N)
    t = ms(clean_.timestamp) - spec.window_start_ms
    for number, hours in enumerate((1, 2, 3, 3)):
        assert truth.drift_counts[number] == (t >= hours * 3_600_000).sum()
    assert 0 < truth.drift_counts[0] < N
    objects = [json.loads(text) for text in dirty.json_column]
    before = [json.loads(text) for text in clean_.json_column]
    for o, b, ms_ in zip(objects, before, t):
        assert ("firmware_channel" in o) == (ms_ >= 3_600_000)
        if "co2_ppm" in b:
            assert isinstance(o["co2_ppm"], str if ms_ >= 7_200_000 else int)
        assert ("voc_ppb" in o) == ("voc_ppb" in b and ms_ < 10_800_000)
        if "rpm" in b and ms_ >= 10_800_000:
            assert o["rpm"] == {"value": b["rpm"]}
        assert {k: v for k, v in o.items() if k not in ("firmware_channel", "co2_ppm", "voc_ppb", "rpm")} == \
            {k: v for k, v in b.items() if k not in ("co2_ppm", "voc_ppb", "rpm")}


RATES = {
    "late": 0.02, "out_of_order": 0.03, "duplicate": 0.02, "replay": 0.01, "malformed_json": 0.01,
    "out_of_range": 0.01, "spike": 0.01, "stuck": 0.05, "drift": 0.05, "clock_skew": 0.05,
    "null:temperature": 0.02, "null:json_column": 0.01,
}
ALL_ON = {
    "late": {"rate": 0.02}, "out_of_order": {"rate": 0.03}, "duplicates": {"rate": 0.02},
    "replays": {"rate": 0.01}, "clock_skew": {"device_fraction": 0.05},
    "nulls": {"temperature": 0.02, "json_column": 0.01}, "malformed_json": {"rate": 0.01},
    "out_of_range": {"rate": 0.01, "columns": ["battery_level"]}, "spikes": {"rate": 0.01, "columns": ["pressure"]},
    "stuck": {"rate": 0.05, "duration": "2h", "columns": ["humidity"]},
    "drift": {"rate": 0.05, "duration": "6h", "columns": ["temperature"]},
    "schema_drift": [{"at": "90m", "remove_key": "voc_ppb"}],
}


@pytest.mark.parametrize("profile", PROFILES)
def test_all_scenarios_together_hit_their_rates_over_100k_events(profile):
    spec = build({"profile": profile, "fleet": {"device_count": 500, **EVEN_INTERVALS}, "scenarios": ALL_ON},
                 num_sensors=500)
    n = 100_000
    events = pa.Table.from_batches(list(generate_events(spec, n, chunk_size=30_000)))
    truth = truth_range(spec, 0, n)
    counts = label_counts(truth.labels)
    for kind, rate in RATES.items():
        assert counts[kind] / n == pytest.approx(rate, rel=0.1), kind
    assert truth.labels.schema == LABEL_SCHEMA
    assert truth.labels.column("event_id").to_pylist() == \
        events.column("event_id").take(truth.labels.column("event_index")).to_pylist()
    assert events.num_rows == n and events.schema.field("temperature").nullable


def test_labels_and_events_are_the_same_whatever_the_chunking():
    spec = build({"profile": "fleet", "fleet": {"device_count": 100}, "scenarios": ALL_ON})
    whole = rows(spec, 0, 20_000)
    labels = truth_range(spec, 0, 20_000).labels
    for chunk in (777, 8192, 12_000):
        assert pa.Table.from_batches(list(generate_events(spec, 20_000, chunk_size=chunk))).equals(whole)
        parts = [truth_range(spec, s, min(s + chunk, 20_000)).labels for s in range(0, 20_000, chunk)]
        assert pa.concat_tables(parts).equals(labels)
    again = build({"profile": "fleet", "fleet": {"device_count": 100}, "scenarios": ALL_ON})  # equal, not same
    assert truth_range(again, 5000, 15_000).labels.equals(
        labels.filter(pa.compute.and_(pa.compute.greater_equal(labels["event_index"], 5000),
                                      pa.compute.less(labels["event_index"], 15_000))))


def test_a_block_carries_its_labels_and_nothing_is_kept_between_calls(monkeypatch):
    spec = build({"profile": "fleet", "fleet": {"device_count": 100}, "scenarios": ALL_ON})
    first = labelled_block(spec, 1)
    assert first.truth.start == BLOCK_SIZE and first.truth.labels.num_rows > 0
    assert set(first.truth.labels["event_index"].to_pylist()) <= set(range(BLOCK_SIZE, 2 * BLOCK_SIZE))
    assert not hasattr(scenarios, "block_truth")  # no side channel: the labels travel with the events
    # a range's events and labels come from one generation of its blocks, and equal the per-range functions
    made = []
    real = generator.labelled_block
    monkeypatch.setattr(generator, "labelled_block", lambda sp, b, j="text": made.append(b) or real(sp, b, j))
    run = labelled_range(spec, 30_000, 40_000)
    assert made == [0, 1]
    monkeypatch.undo()
    assert pa.Table.from_batches([run.events]).equals(rows(spec, 30_000, 40_000))
    truth = truth_range(spec, 30_000, 40_000)
    assert run.truth.labels.equals(truth.labels) and run.truth.drift_counts == truth.drift_counts


def test_rate_table_measures_each_scenario_as_configured():
    from iotgen.generation.scenarios import rate_table

    spec = build({"profile": "fleet", "fleet": {"device_count": 50}, "scenarios": ALL_ON})
    events = rows(spec, 0, 30_000)
    table = {(r["scenario"], r["column"]): r for r in
             rate_table(spec.scenarios, truth_range(spec, 0, 30_000).labels, 30_000, events.column("sensor_id"))}
    assert table[("late", None)]["measured"] == pytest.approx(0.02, rel=0.1)
    assert table[("nulls", "temperature")]["configured"] == 0.02
    assert table[("clock_skew", None)]["measured"] == pytest.approx(0.05, abs=1 / 50)  # a share of devices
    skewed = {s for s, k in zip(truth_range(spec, 0, 30_000).labels["sensor_id"].to_pylist(),
                                truth_range(spec, 0, 30_000).labels["kind"].to_pylist()) if k == "clock_skew"}
    assert table[("clock_skew", None)]["measured"] == len(skewed) / 50
    assert {key[0] for key in table} == {"late", "out_of_order", "duplicates", "replays", "malformed_json",
                                         "out_of_range", "clock_skew", "spikes", "stuck", "drift", "nulls"}


@pytest.mark.parametrize("change, message", [
    (dict(operation="add_key", key="x"), "add_key 'x' needs a value spec"),
    (dict(operation="change_type", key="x"), "change_type of 'x' needs the type it changes to"),
    (dict(operation="rename_key", key="x"), "operation must be one of add_key, change_type, remove_key"),
])
def test_a_drift_change_that_cannot_be_applied_is_refused_when_the_spec_is_built(change, message):
    """Bad input is refused before any event is generated (not in the middle of a run)."""
    from iotgen.base.errors import InputError

    with pytest.raises(InputError, match=message):
        scenarios.DriftChange(at_ms=0, **change)


def test_helpers_that_need_a_fleet_or_scenarios_say_so_in_one_line():
    import iotgen_helpers as h
    from iotgen.base.errors import InputError
    from iotgen.settings.config import Config

    plain = generator_spec(Config(random_seed=1))
    with pytest.raises(InputError, match="device_table needs the fleet profile"):
        h.device_table(plain)
    with pytest.raises(InputError, match="scenario_rates needs a spec with scenarios"):
        h.scenario_rates(plain, pd.DataFrame(), pd.DataFrame())
