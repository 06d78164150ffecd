"""The fleet profile: stable devices, per-device time series and their invariants, a stateless schedule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scenario_support import build, ms, rows

from iotgen import generate_events
from iotgen.generation.fleet import DAY_MS, HOUR_MS, fleet_devices
from iotgen.generation.generator import BLOCK_SIZE, generate_range
from iotgen.settings.schema import ARROW_SCHEMA, CALIBRATION_DUE_DAYS
from iotgen.spec.spec_file import generator_spec

ATTRIBUTES = ["device_type", "model", "region", "zone", "env", "source", "version"]


@pytest.fixture(scope="module")
def busy(busy_fleet) -> pd.DataFrame:
    """33 hours of a 40-device fleet."""
    df = rows(busy_fleet, 0, 30_000).to_pandas()
    df["index"] = np.arange(len(df))
    df["t"] = ms(df["timestamp"])
    return df


def per_device(df: pd.DataFrame):
    for sensor, events in df.groupby("sensor_id", sort=False):
        yield sensor, events.sort_values("index")


def test_schema_and_block_size(busy_fleet):
    batch = generate_range(busy_fleet, 0, BLOCK_SIZE)
    assert batch.schema == ARROW_SCHEMA
    assert batch.num_rows == BLOCK_SIZE
    assert batch.column("event_id").unique().__len__() == BLOCK_SIZE


def test_attributes_are_stable_per_device(busy):
    assert busy["sensor_id"].nunique() == 40
    assert (busy.groupby("sensor_id")[ATTRIBUTES].nunique() == 1).all().all()


def test_events_are_in_time_order_and_devices_report_at_their_interval(busy, busy_fleet):
    assert (np.diff(busy["t"].to_numpy()) >= 0).all()
    intervals = fleet_devices(busy_fleet).table().to_pandas().set_index("sensor_id")["interval_s"] * 1000
    jitter = busy_fleet.fleet.jitter
    for sensor, events in per_device(busy):
        gaps = np.diff(events["t"].to_numpy())
        interval = intervals[sensor]
        assert (gaps > 0).all()
        # consecutive reports are one interval apart, give or take the two reports' jitter
        assert np.all(np.abs(gaps - interval) <= jitter * interval + 2), sensor
        assert gaps.std() > 0  # the jitter is there


def test_uptime_faults_battery_follow_resets(busy):
    resets = battery_changes = 0
    for sensor, e in per_device(busy):
        hours = np.diff(e["t"].to_numpy()) / HOUR_MS
        uptime, faults, battery = (e[c].to_numpy() for c in ("uptime_hours", "fault_count", "battery_level"))
        grew = np.isclose(np.diff(uptime), hours, atol=0.011)
        reset = ~grew
        assert np.all(uptime[1:][reset] <= hours[reset] + 0.011), sensor  # a reset happened in between
        assert np.all(np.diff(faults)[grew] >= 0), sensor  # faults never decrease between resets
        recharged = np.diff(battery) > 20
        assert np.all(np.diff(battery)[~recharged] <= 0), sensor  # drains between recharges
        assert np.all(reset[recharged]), sensor  # a battery change restarts the device
        resets += reset.sum()
        battery_changes += recharged.sum()
    assert resets > 40 and battery_changes > 10  # the data does exercise both


def test_calibration_status_and_firmware_agree(busy):
    due = (busy["t"] - ms(busy["last_calibration"])) > CALIBRATION_DUE_DAYS * DAY_MS
    assert (busy["maintenance_due"] == due).all()
    assert (busy["last_calibration"] < busy["timestamp"]).all()
    assert (busy.loc[busy["battery_level"] <= 2, "status"] == "offline").all()
    assert set(busy["status"]) >= {"online", "error", "maintenance", "degraded"}
    order = ["3.0.2", "3.1.4", "3.2.0", "3.2.1"]
    for sensor, e in per_device(busy):
        assert (np.diff(ms(e["last_calibration"]).to_numpy()) >= 0).all(), sensor
        versions = e["firmware_version"].map(order.index).to_numpy()
        changed = np.diff(versions) != 0
        assert (np.diff(versions) >= 0).all(), sensor  # only forward, by rollouts
        assert set(e["firmware_version"].iloc[1:][changed]) <= {"3.2.0", "3.2.1"}, sensor
    assert busy["firmware_version"].nunique() == 4


def test_readings_are_random_walks_with_a_daily_cycle():
    spec = build({"profile": "fleet", "catalogs": {"regions": ["eastus"]}, "fleet": {"device_count": 30}})
    df = rows(spec, 0, 40_000).to_pandas()  # about 2.6 days
    local_hour = (df["timestamp"].dt.hour - 5) % 24
    afternoon = df.loc[local_hour.between(13, 17), "temperature"].mean()
    night = df.loc[local_hour.between(1, 5), "temperature"].mean()
    assert afternoon - night > 5  # eastus: daily amplitude 6 degC, peak at 15:00 local
    assert df.loc[local_hour.between(13, 17), "humidity"].mean() < df.loc[local_hour.between(1, 5), "humidity"].mean()
    # a device's consecutive readings are close (a walk), unlike independent draws
    lag = df.groupby("sensor_id")["pressure"].apply(lambda s: s.autocorr()).mean()
    assert lag > 0.8
    independent = rows(build(), 0, 20_000).to_pandas()
    assert abs(independent.groupby("sensor_id")["pressure"].apply(lambda s: s.autocorr()).mean()) < 0.1
    for column, (low, high) in {"temperature": (-40, 85), "humidity": (0, 100), "pressure": (870, 1085)}.items():
        assert df[column].between(low, high).all()


def test_series_continue_whatever_the_chunking_and_restart(busy_fleet):
    whole = generate_range(busy_fleet, 0, BLOCK_SIZE + 500)  # two blocks
    for chunk in (1000, 8192, BLOCK_SIZE + 1):
        pieces = list(generate_events(busy_fleet, BLOCK_SIZE + 500, chunk_size=chunk))
        assert pa.Table.from_batches(pieces).equals(pa.Table.from_batches([whole]))
    resumed = pa.Table.from_batches(list(generate_events(busy_fleet, 2400, start=BLOCK_SIZE - 2000)))
    assert resumed.equals(pa.Table.from_batches([whole]).slice(BLOCK_SIZE - 2000, 2400))


def test_schedule_counts_every_report_once():
    spec = build({"profile": "fleet", "fleet": {"device_count": 300, "jitter": 0.9,
                                                "interval_s": {"default": 20, "smart_meter": 3600}}})
    devices = fleet_devices(spec)
    device, k, t = devices.schedule(0, 200_000)
    assert t[-1] - t[0] > 2 * devices.epoch_ms  # the range spans several epochs
    assert (np.diff(t) >= 0).all()
    for d in range(300):  # each device's reports are numbered 0, 1, 2, ... in order
        mine = k[device == d]
        assert np.array_equal(mine, np.arange(len(mine)))
    # any window of the schedule is the same slice of it, across epoch boundaries
    for start, stop in ((0, 1), (65_000, 66_000), (31_234, 199_999)):
        part = devices.schedule(start, stop)
        assert all(np.array_equal(a, b[start:stop]) for a, b in zip(part, (device, k, t)))


def test_more_devices_keep_the_existing_ones():
    small = build({"profile": "fleet"}, device_count=50)
    large = build({"profile": "fleet"}, device_count=80)
    a = small.fleet.device_table(small).to_pandas()
    b = large.fleet.device_table(large).to_pandas().iloc[:50]
    b["sensor_id"] = a["sensor_id"]  # the id is zero-padded to the same width here
    pd.testing.assert_frame_equal(a, b)
    t = np.full(50, small.window_start_ms + 5 * HOUR_MS)
    d = np.arange(50)
    for name in ("temperature", "humidity", "pressure"):
        assert np.array_equal(small.fleet.reading_at(small, name, d, t), large.fleet.reading_at(large, name, d, t))


def test_device_count_comes_from_the_parameter_then_the_spec_then_num_sensors():
    assert build({"profile": "fleet", "fleet": {"device_count": 12}}, device_count=30).fleet.device_count == 30
    assert build({"profile": "fleet", "fleet": {"device_count": 12}}).fleet.device_count == 12
    assert build({"profile": "fleet"}, num_sensors=77).fleet.device_count == 77
    assert build({"profile": "fleet"}, profile="independent").fleet is None
    assert build({}, profile="fleet").fleet is not None
    batch = generate_range(build({"profile": "fleet"}, device_count=12), 0, 2000)
    assert sorted(set(batch.column("sensor_id").to_pylist())) == [f"sensor-{i:05d}" for i in range(1, 13)]


def test_the_independent_profile_is_unchanged():
    from iotgen.settings.config import Config

    config = Config(random_seed=3, anchor_time="2026-01-08")
    plain = generator_spec(config)
    via_spec = build(random_seed=3, anchor_time="2026-01-08")
    assert via_spec == plain
    assert generate_range(via_spec, 0, 5000).equals(generate_range(plain, 0, 5000))


def test_time_of_event_and_rate(busy_fleet):
    devices = fleet_devices(busy_fleet)
    t = generate_range(busy_fleet, 20_000, 20_001).column("timestamp")[0].value // 1000
    assert busy_fleet.fleet.time_of_event(busy_fleet, 20_000) == t
    hours = (t - busy_fleet.window_start_ms) / HOUR_MS
    assert busy_fleet.fleet.events_per_hour(busy_fleet) == pytest.approx(20_000 / hours, rel=0.05)
    assert devices.rate_per_ms * HOUR_MS == busy_fleet.fleet.events_per_hour(busy_fleet)
