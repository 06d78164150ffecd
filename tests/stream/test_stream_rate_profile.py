"""Streams that follow the clock, to a real local endpoint with the real SDK: on a simulated clock (a day of
profile in moments: the per-minute counts follow the target), a fleet whose devices report at their own
intervals, events kept by their region's local time, and one short real-time run through the command line."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections import Counter, defaultdict

import numpy as np
import pytest
import yaml

from iotgen.base import keyed_random as kr
from iotgen.faces.cli import main
from iotgen.generation.generator import generate_range
from iotgen.generation.rate_profile import KEEP_STREAM
from iotgen.runs.stream import Clock, stream_events
from iotgen.spec.spec_file import generator_spec

#: A simulated run starts at this wall time: 19:00 UTC is 14:00 in eastus (UTC-5), 04:00 in japaneast (UTC+9).
START = dt.datetime(2031, 7, 14, 19, 0, tzinfo=dt.timezone.utc).timestamp()


class SimulatedClock(Clock):
    """Time moves only when the stream sleeps (sending takes no simulated time)."""

    def __init__(self, wall: float = START) -> None:
        self.mono, self.wall = 1000.0, wall

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.wall + self.mono - 1000.0

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.mono += seconds


def spec_file(tmp_path, **sections) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(sections))
    return str(path)


def test_a_simulated_day_of_daily_curve_and_bursts_follows_the_target_minute_by_minute(emulator, stream_config,
                                                                                       tmp_path):
    profile = {"preset": "daily+bursts", "speed": 144, "timezone": "utc",  # a day in 10 minutes
               "bursts": {"per_hour": 1, "size": 3, "duration": "10m"}}
    config = stream_config(emulator.connection_string, rate_events_per_sec=20, batch_size=40,
                           stream_duration_sec=600, spec_file=spec_file(tmp_path, rate_profile=profile))
    summary = stream_events(config, clock=SimulatedClock())
    assert summary.ok and summary.stopped_by == "duration", summary
    minutes = summary.per_minute
    assert [m["minute"] for m in minutes] == list(range(10)) and minutes[0]["start"] == "2031-07-14T19:00:00Z"
    for m in minutes:
        assert abs(m["sent"] - m["target"]) <= 40 + 0.01 * m["target"], m  # within one step
    target = np.array([m["target"] for m in minutes])
    assert target.max() > 3 * target.min()  # the day's curve (peak/trough 4) and the bursts are in it
    assert sum(m["sent"] for m in minutes) == summary.sent == summary.acknowledged
    assert summary.resume_from == summary.sent  # one time zone: no event is dropped, the seeded order is kept
    text = str(summary)
    assert "per minute: target (rate profile) vs sent" in text and "daily+bursts" in text
    assert summary.as_dict()["per_minute"] == minutes


def test_with_the_fleet_and_no_rate_each_device_reports_at_its_own_interval(emulator, stream_config, read_back,
                                                                             tmp_path):
    """PROFILE=fleet, RATE_PROFILE=flat, no RATE_EVENTS_PER_SEC: 20 simulated minutes; read back, each device's
    live timestamps are its reporting interval apart."""
    config = stream_config(emulator.connection_string, profile="fleet", device_count=150, rate_profile="flat",
                           batch_size=10, stream_duration_sec=1200, stream_time_mode="live")
    spec = generator_spec(config)
    summary = stream_events(config, clock=SimulatedClock())
    assert summary.ok and summary.rate_profile.startswith("flat")
    assert summary.target_rate == pytest.approx(spec.fleet.events_per_hour(spec) / 3600, rel=1e-6)
    assert summary.sent == pytest.approx(1200 * summary.target_rate, abs=10)
    intervals = {row["sensor_id"]: row["interval_s"] for row in spec.fleet.device_table(spec).to_pylist()}
    times: dict[str, list[float]] = defaultdict(list)
    for event in read_back(emulator.connection_string, summary.sent):
        stamp = dt.datetime.fromisoformat(event.body["timestamp"].replace("Z", "+00:00")).timestamp()
        times[event.body["sensor_id"]].append(stamp)
    assert START <= min(min(t) for t in times.values()) and max(max(t) for t in times.values()) <= START + 1201
    checked = 0
    for sensor, stamps in times.items():
        if len(stamps) >= 4:
            gap = float(np.median(np.diff(sorted(stamps))))
            step = 10 / summary.target_rate  # live times are spread over a step
            assert abs(gap - intervals[sensor]) <= 0.25 * intervals[sensor] + step, (sensor, gap, intervals[sensor])
            checked += 1
    assert checked >= 20


def test_events_are_kept_by_their_regions_local_time(emulator, stream_config, read_back, tmp_path):
    """At 19:00 UTC eastus is at its 14:00 peak and japaneast at 04:00: eastus is sent at its generated share,
    japaneast at about 0.3 of it; the resume point is past the last event sent."""
    config = stream_config(emulator.connection_string, rate_events_per_sec=100, batch_size=100, stream_events=3000,
                           rate_profile="daily", stream_time_mode="window")
    summary = stream_events(config, clock=SimulatedClock())
    assert summary.ok and summary.sent == 3000
    generated = generate_range(generator_spec(config), 0, summary.resume_from)
    regions_generated = Counter(generated.column("region").to_pylist())
    received = read_back(config.eventhub_connection_string.reveal(), 3000)
    regions_sent = Counter(e.body["region"] for e in received)
    kept = {r: regions_sent[r] / regions_generated[r] for r in ("eastus", "japaneast")}
    assert kept["eastus"] == pytest.approx(1.0)  # at its peak: every event kept
    assert kept["japaneast"] == pytest.approx(0.31, abs=0.08)  # 1/4 + 3/4 * (1 + cos(10h)) / 2
    ids = set(generated.column("event_id").to_pylist())
    assert {e.body["event_id"] for e in received} <= ids and generated.num_rows > 3000


def test_a_short_real_stream_with_the_profile_prints_the_minute_table(emulator, read_back, monkeypatch, capsys):
    for name in [n for n in os.environ if n.startswith("IOTGEN_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("EVENTHUB_CONNECTION_STRING", emulator.connection_string)
    assert main(["stream", "--rate", "200", "--rate-profile", "daily+bursts", "--duration", "3", "--batch-size",
                 "50", "--seed", "5", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "profile    daily+bursts" in out and "per minute: target (rate profile) vs sent" in out
    sent = int(out.split(" sent,")[0].split()[-1].replace(",", ""))
    (row,) = re.findall(r"^ +0  \S+ \S+ +([\d,]+) +([\d,]+) .*\(last [\d.]+ s\)$", out, re.MULTILINE)
    assert int(row[1].replace(",", "")) == sent  # the run's one (partial) minute holds every event sent
    assert float(row[0].replace(",", "")) == pytest.approx(sent, rel=0.25)  # real time: a lagging hub is short
    assert len(read_back(emulator.connection_string, sent)) == sent


def test_bad_profile_values_are_one_line_and_status_2_before_connecting(monkeypatch, capsys):
    for name in [n for n in os.environ if n.startswith("IOTGEN_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("EVENTHUB_CONNECTION_STRING", "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=a;"
                       "SharedAccessKey=b;UseDevelopmentEmulator=true;EntityPath=h")
    assert main(["stream", "--rate-profile", "hourly"]) == 2
    err = capsys.readouterr().err
    assert err == ("iotgen stream: error: RATE_PROFILE must be one of off, flat, daily, bursts, daily+bursts, got "
                   "'hourly'\n")
    assert main(["stream", "--rate-profile", "daily", "--sleep", "0"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "RATE_PROFILE=daily needs a rate to shape" in err


def test_a_failure_while_events_are_kept_by_zone_resumes_from_the_first_kept_event_not_delivered(
        emulator_factory, stream_config, read_back, tmp_path):
    """Two regions twelve hours apart, peak/trough 1000, at eastus's peak: eastus events are all kept, japaneast's
    almost none. The endpoint dies mid-stream; the resume point is the generator index of the first kept event
    not delivered (not a position among the kept events), and every kept event before it is stored."""
    emulator = emulator_factory(hub="iot-events", partitions=4, data_dir=tmp_path / "hub")
    spec = spec_file(tmp_path, profile="fleet", catalogs={"regions": ["eastus", "japaneast"]},
                     fleet={"climate": {"japaneast": {"utc_offset_h": 7}}},
                     rate_profile={"preset": "daily", "peak_to_trough": 1000})
    config = stream_config(emulator.connection_string, rate_events_per_sec=3000, batch_size=300, send_retries=1,
                           send_timeout_sec=5, stream_time_mode="window", device_count=300, spec_file=spec)
    killed = []

    def progress(snapshot):
        if not killed and snapshot.acknowledged >= 900:
            killed.append(snapshot.acknowledged)
            emulator.kill()

    summary = stream_events(config, on_progress=progress, progress_interval=0, clock=SimulatedClock())
    assert killed and summary.stopped_by == "failure" and summary.failed > 0
    resume = summary.resume_from
    generated = generate_range(generator_spec(config), 0, resume + 1)
    regions, ids = generated.column("region").to_pylist(), generated.column("event_id").to_pylist()
    emulator.restart()
    received = {r.body["event_id"] for r in read_back(emulator.connection_string, summary.acknowledged, drain=True)}
    # the event to resume from is one the stream kept (eastus; japaneast only by its 1-in-1000 draw) ...
    factor = 1 / 1000 + 0.01  # japaneast's daily factor at 02:00 local, with room for the minutes streamed
    assert regions[resume] == "eastus" or kr.uniform(11, KEEP_STREAM, np.array([resume]))[0] < factor
    # ... every kept event before it is stored (at least once: a batch in flight when the endpoint died may be too)
    east_before = [i for i, r in zip(ids[:resume], regions) if r == "eastus"]
    assert len(east_before) > 500 and set(east_before) <= received
    # ... and it is a generator index: the japaneast events skipped before it count
    assert resume > summary.acknowledged + 300
    numbers = [int(n) for e in summary.errors for n in re.findall(r"first event #(\d+)", e)]
    assert min(numbers) == resume  # the producer's error lines number events the same way
