"""The rate profile on a simulated clock: the daily curve, bursts, time zones, the bucket following it, and
one-line errors for bad settings. No endpoint and no waiting."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from iotgen.base.errors import InputError
from iotgen.generation.rate_profile import Bursts, RateCurve, RateProfile, timezone_offset, zone_weights
from iotgen.runs.stream import StreamPlan
from iotgen.runs.token_bucket import TokenBucket
from iotgen.settings.config import Config
from iotgen.spec.spec_file import generator_spec, load_spec
from test_stream_token_bucket import FakeClock  # the simulated clock of the token bucket's tests

#: 2031-07-14 00:00 UTC: profile times below are hours after it.
MIDNIGHT = dt.datetime(2031, 7, 14, tzinfo=dt.timezone.utc).timestamp()


def documented_shape(hour: np.ndarray, ratio: float, peak_hour: float) -> np.ndarray:
    """The daily factor as docs/eventhubs.md states it: 1 at the peak hour, 1/ratio twelve hours away, a cosine."""
    return 1 / ratio + (1 - 1 / ratio) * (1 + np.cos(2 * np.pi * (hour - peak_hour) / 24)) / 2


def test_one_zone_daily_curve_peaks_at_the_rate_and_falls_to_rate_over_ratio():
    profile = RateProfile("daily", peak_to_trough=4, peak_hour=14, timezone="+02:00")
    curve = RateCurve(profile, 1000, start_s=MIDNIGHT, seed=1, zones=[])
    assert curve.rate_at(12 * 3600) == pytest.approx(1000)  # 12:00 UTC = 14:00 at +02:00
    assert curve.rate_at(24 * 3600) == pytest.approx(250)  # 02:00 local
    hours = np.arange(0, 48, 0.25)
    rates = np.array([curve.rate_at(h * 3600) for h in hours])
    assert rates == pytest.approx(1000 * documented_shape(hours + 2, 4, 14), rel=1e-4)
    # a day's events: the mean of the curve (5/8 of the peak at ratio 4) times a day
    assert curve.issued(86400) == pytest.approx(1000 * 86400 * (1 / 4 + 3 / 8), rel=1e-4)
    assert not curve.thins  # one zone: every event has the same factor, nothing is dropped


def test_with_several_zones_the_stream_peaks_at_the_rate_and_only_then_drops_events_by_zone():
    profile = RateProfile("daily", peak_to_trough=4, peak_hour=14, timezone="region")
    zones = [(-5.0, 0.5), (9.0, 0.5)]
    curve = RateCurve(profile, 1000, start_s=MIDNIGHT, seed=1, zones=zones)
    rates = np.array([curve.rate_at(m * 60) for m in range(24 * 60)])
    assert rates.max() == pytest.approx(1000, rel=1e-3)  # normalised: the day's peak is RATE
    mix = 0.5 * documented_shape(np.arange(24 * 60) / 60 - 5, 4, 14) + 0.5 * documented_shape(
        np.arange(24 * 60) / 60 + 9, 4, 14)
    assert rates == pytest.approx(1000 * mix / mix.max(), rel=1e-4)
    assert curve.thins
    # at 19:00 UTC it is 14:00 in the UTC-5 zone (its peak) and 04:00 in the UTC+9 zone
    index = np.arange(200_000)
    east = curve.keep(index, np.full(len(index), -5.0), 19 * 3600).mean()
    japan = curve.keep(index, np.full(len(index), 9.0), 19 * 3600).mean()
    assert east == pytest.approx(1.0) and japan == pytest.approx(documented_shape(np.array(4.0), 4, 14), abs=0.01)
    again = curve.keep(index, np.full(len(index), 9.0), 19 * 3600)  # keyed on the event index: repeatable
    assert np.array_equal(again, curve.keep(index, np.full(len(index), 9.0), 19 * 3600))


def test_bursts_multiply_the_rate_once_per_window_at_a_seeded_moment():
    profile = RateProfile("bursts", bursts=Bursts(per_hour=4, size=3, duration_s=60))
    times = MIDNIGHT + np.arange(0, 6 * 3600, 1.0)
    factor = profile.burst_factor(7, times)
    assert set(np.unique(factor)) == {1.0, 3.0}
    inside = np.flatnonzero(factor > 1)
    starts = inside[np.insert(np.diff(inside) > 1, 0, True)]
    assert len(starts) == 24 and (np.diff(np.append(starts, inside[-1] + 1)) > 0).all()  # 4 per hour for 6 hours
    assert (factor > 1).sum() == 24 * 60
    assert (np.floor(starts / 900) == np.arange(24)).all()  # one in each 15-minute window
    assert not np.array_equal(factor, profile.burst_factor(8, times))  # another seed, other moments
    curve = RateCurve(profile, 100, start_s=MIDNIGHT, seed=7, zones=[])
    assert curve.rate_at(float(starts[0]) + 30) == pytest.approx(300)
    assert curve.issued(6 * 3600) == pytest.approx(100 * (6 * 3600 + 2 * 24 * 60), rel=2e-3)


def test_the_bucket_follows_the_curve_minute_by_minute_on_a_simulated_clock():
    """A day at speed 96 (15 minutes) with bursts and a ramp-up: per minute, the events the bucket releases
    are the curve's target within one step."""
    spec = load_spec({"rate_profile": {"preset": "daily+bursts", "speed": 96, "timezone": "utc",
                                       "bursts": {"per_hour": 2, "size": 4, "duration": "5m"}}})
    profile = spec.build_rate_profile()
    clock = FakeClock()
    curve = RateCurve(profile, 200, start_s=MIDNIGHT, seed=3, zones=[], ramp_up=30)
    bucket = TokenBucket(200, 400, curve=curve, clock=clock, sleep=clock.sleep)
    sent = np.zeros(15)
    while True:
        bucket.acquire(50)
        if bucket.elapsed() >= 900:
            break
        sent[int(bucket.elapsed() // 60)] += 50
        clock.now += 0.05  # each send takes time: it is not added to the schedule
    target = np.array([curve.issued(60 * (m + 1)) - curve.issued(60 * m) for m in range(15)])
    assert np.abs(sent - target).max() <= 50
    assert sent.sum() == pytest.approx(target.sum(), abs=50)
    assert target.max() > 4 * target.min()  # the curve, and bursts of 4x, are in the per-minute counts
    # the documented formula, integrated independently (one-second samples)
    t = np.arange(0, 900, 0.01)
    profile_time = MIDNIGHT + 96 * t
    rate = 200 * documented_shape(profile_time / 3600 % 24, 4, 14) * profile.burst_factor(3, profile_time)
    rate *= np.minimum(1, t / 30)
    assert target == pytest.approx(rate.reshape(15, -1).sum(axis=1) * 0.01, rel=0.01)


def test_fleet_zones_weigh_devices_by_how_often_they_report():
    spec = generator_spec(Config(random_seed=5, profile="fleet", device_count=400))
    zones: dict[float, float] = {}
    for offset, weight in zone_weights(spec):
        zones[offset] = zones.get(offset, 0.0) + weight
    table = spec.fleet.device_table(spec)
    gps = sum(1 / i for r, i in zip(table.column("region").to_pylist(), table.column("interval_s").to_pylist())
              if r == "japaneast")
    total = sum(1 / i for i in table.column("interval_s").to_pylist())
    assert sum(zones.values()) == pytest.approx(total)
    assert zones[9] == pytest.approx(gps)  # japaneast, UTC+9, alone at that offset in the default regions


@pytest.mark.parametrize("value, hours", [("utc", 0), ("region", None), ("+05:30", 5.5), ("UTC-8", -8), (-3, -3),
                                          ("-09:30", -9.5)])
def test_time_zone_sources(value, hours):
    assert timezone_offset(value) == hours


@pytest.mark.parametrize("section, message", [
    ({"preset": "hourly"}, "rate_profile.preset must be one of off, flat, daily, bursts, daily+bursts"),
    ({"peak_to_trough": 0.5}, "rate_profile.peak_to_trough must be a number >= 1"),
    ({"peak_hour": 25}, "rate_profile.peak_hour must be a number >= 0.0 and <= 24"),
    ({"timezone": "mars"}, "rate_profile.timezone must be region, utc or a UTC offset"),
    ({"timezone": "+15:00"}, "rate_profile.timezone must be a UTC offset from -14 to +14 hours"),
    ({"speed": 0}, "rate_profile.speed must be a number > 0"),
    ({"bursts": {"per_hour": 0}}, "rate_profile.bursts.per_hour must be a number > 0"),
    ({"bursts": {"size": 0.5}}, "rate_profile.bursts.size must be a number >= 1"),
    ({"bursts": {"per_hour": 60, "duration": "2m"}}, "rate_profile.bursts.duration must be at most the time between"),
    ({"peak": 3}, "rate_profile.peak is not a known field"),
])
def test_bad_profile_fields_are_one_error_naming_the_field(section, message):
    with pytest.raises(InputError, match=message.replace("+", r"\+")) as info:
        load_spec({"rate_profile": section})
    assert "\n" not in str(info.value)


def test_presets_and_precedence():
    assert load_spec(None).build_rate_profile() is None  # no section, no RATE_PROFILE: off
    assert load_spec({"rate_profile": "daily"}).build_rate_profile().peak_to_trough == 4
    spec = load_spec({"rate_profile": {"preset": "daily+bursts", "peak_to_trough": 2}})
    assert spec.build_rate_profile().peak_to_trough == 2 and spec.build_rate_profile().bursts == Bursts()
    assert spec.build_rate_profile("off") is None  # RATE_PROFILE wins over the section's preset
    assert spec.build_rate_profile("flat").bursts is None and spec.build_rate_profile("flat").peak_to_trough == 2
    with pytest.raises(InputError, match="RATE_PROFILE must be one of off, flat, daily, bursts, daily.bursts"):
        Config(rate_profile="hourly")


def test_a_profile_needs_a_rate_to_shape_unless_the_fleet_gives_it():
    with pytest.raises(InputError, match="RATE_PROFILE=daily needs a rate"):
        StreamPlan.from_config(Config(rate_profile="daily", sleep_interval_sec=0))
    plan = StreamPlan.from_config(Config(rate_profile="daily", sleep_interval_sec=0, profile="fleet"))
    assert plan.fleet_pace and plan.rate is None and "each device at its reporting interval" in plan.describe()
    assert StreamPlan.from_config(Config(rate_profile="daily", rate_events_per_sec=50, ramp_up_sec=5)).rate == 50
    assert StreamPlan.from_config(Config(rate_profile="flat", ramp_up_sec=5)).rate == 500  # BATCH_SIZE/SLEEP


def test_the_curve_a_stream_will_follow_is_known_before_it_starts():
    """``rate_curve`` (what the stream's token bucket follows, and notebook 07 shows): with the fleet and no rate,
    each zone's devices at their interval scaled by the zone's daily factor; with a rate, normalised to it."""
    import iotgen_helpers as h
    from iotgen.runs.stream import rate_curve

    config = Config(random_seed=5, profile="fleet", device_count=300, rate_profile="daily", sleep_interval_sec=0)
    spec = generator_spec(config)
    curve = rate_curve(StreamPlan.from_config(config), spec, MIDNIGHT)
    fleet_rate = spec.fleet.events_per_hour(spec) / 3600
    assert curve.peak == pytest.approx(fleet_rate)
    zones = zone_weights(spec)
    total = sum(w for _, w in zones)
    hours = np.arange(0, 24, 0.5)
    expected = fleet_rate * sum(w / total * documented_shape(hours + o, 4, 14) for o, w in zones)
    assert [curve.rate_at(h * 3600) for h in hours] == pytest.approx(expected, rel=1e-4)
    assert max(expected) < fleet_rate  # the zones peak at different hours: the fleet never all at once
    with_rate = rate_curve(StreamPlan.from_config(config.replace(rate_events_per_sec=100)), spec, MIDNIGHT)
    assert max(with_rate.rate_at(m * 60) for m in range(24 * 60)) == pytest.approx(100, rel=1e-3)
    assert rate_curve(StreamPlan.from_config(config.replace(rate_profile="off")), spec, MIDNIGHT) is None
    # the notebooks' helpers: the same curve from the Config (started at ANCHOR_TIME), tabled per hour
    anchored = config.replace(anchor_time="2031-07-14T00:00:00Z", rate_profile="daily+bursts")
    bursts = h.rate_curve(anchored, {"profile": "fleet"})
    assert bursts.start_s == MIDNIGHT and bursts.profile.bursts is not None
    table = h.rate_curve_table(bursts)
    assert list(table.index[:2]) == ["00:00", "01:00"] and len(table) == 24
    assert table["events"].sum() == pytest.approx(bursts.issued(86400), abs=12)
    assert table["target events/s"].to_numpy() == pytest.approx(
        [(bursts.issued(3600 * (i + 1)) - bursts.issued(3600 * i)) / 3600 for i in range(24)], abs=0.005)
    daily = h.rate_curve_table(h.rate_curve(anchored.replace(rate_profile="daily"), {"profile": "fleet"}))
    # two bursts of 30 s at 3x in every hour (one per half-hour window): each hour 1 + 2 * 2 * 30 / 3600 times
    assert (table["events"] / daily["events"]).to_numpy() == pytest.approx(1 + 120 / 3600, rel=2e-3)
    with pytest.raises(InputError, match="rate_curve needs a rate profile"):
        h.rate_curve(anchored.replace(rate_profile="off"), {"profile": "fleet"})


def test_the_example_specs_commented_rate_profile_is_valid():
    import yaml

    from iotgen.spec.spec_file import EXAMPLE_PATH

    text = EXAMPLE_PATH.read_text(encoding="utf-8")
    block = text[text.index("# rate_profile:"):]
    section = yaml.safe_load("\n".join(line[2:] for line in block.splitlines()))
    assert load_spec(section).build_rate_profile() == RateProfile.named("daily+bursts")


def test_iotgen_spec_shows_the_rate_profile(tmp_path, capsys):
    import json

    from iotgen.faces.cli import main

    path = tmp_path / "spec.yaml"
    path.write_text("rate_profile: {preset: daily, timezone: utc, peak_hour: 13}\n")
    assert main(["spec", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["rate_profile"] == "daily, daily peak at 13h (utc), peak/trough 4"
    path.write_text("rate_profile: {preset: daily, timezone: mars}\n")
    assert main(["spec", str(path)]) == 2
    assert "rate_profile.timezone must be region, utc or a UTC offset" in capsys.readouterr().err
