"""A well-behaved producer under trouble: endpoint killed and restarted, endpoint gone for good, Ctrl-C,
wrong key, unknown hub, nothing listening. Never an event lost silently, never a secret shown."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections import defaultdict

import pytest

import iotgen_helpers as h
from iotgen.generation.generator import generate_range
from iotgen.outputs.eventhubs import EventHubConfigError, EventHubProducer, EventHubUnavailable
from iotgen.runs.stream import stream_events
from iotgen.spec.spec_file import generator_spec


def event_ids(config, n):
    return generate_range(generator_spec(config), 0, n).column("event_id").to_pylist()


def run_in_thread(config, when, action):
    """Stream in a thread; call ``action()`` once a progress snapshot satisfies ``when``."""
    result: dict = {}
    triggered = threading.Event()

    def progress(snapshot):
        if not triggered.is_set() and when(snapshot):
            triggered.set()
            action()

    thread = threading.Thread(target=lambda: result.update(summary=stream_events(
        config, on_progress=progress, progress_interval=0.05)), daemon=True)
    thread.start()
    return thread, result, triggered


def test_endpoint_killed_and_restarted_mid_stream_loses_nothing_and_counts_duplicates(
        emulator_factory, tmp_path, stream_config, read_back):
    emulator = emulator_factory(hub="iot-events", partitions=4, data_dir=tmp_path / "hub")
    n = 6000
    config = stream_config(emulator.connection_string, stream_events=n, batch_size=300, rate_events_per_sec=3000,
                           send_retries=10, stream_time_mode="window")
    restarted = threading.Event()

    def crash_and_recover():
        def run():
            emulator.kill()  # SIGKILL: sends in flight get no answer
            threading.Event().wait(1.0)
            emulator.restart()  # same port, same data directory
            restarted.set()
        threading.Thread(target=run, daemon=True).start()

    thread, result, triggered = run_in_thread(config, lambda s: s.acknowledged >= 1500, crash_and_recover)
    thread.join(120)
    assert not thread.is_alive() and triggered.is_set() and restarted.is_set()
    summary = result["summary"]
    assert summary.ok and summary.stopped_by == "events"
    assert (summary.sent, summary.acknowledged, summary.failed) == (n, n, 0)
    assert summary.retried > 0

    received = read_back(emulator.connection_string, n, drain=True)
    ids = [r.body["event_id"] for r in received]
    expected = event_ids(config, n)
    assert set(ids) == set(expected), "an acknowledged event was lost"
    assert len(ids) - len(set(ids)) <= summary.retried, "duplicates that are not counted retries"
    index = {event_id: i for i, event_id in enumerate(expected)}
    first_seen = defaultdict(list)
    seen = set()
    for r in received:  # in partition, sequence order
        if r.body["event_id"] not in seen:
            seen.add(r.body["event_id"])
            first_seen[(r.partition, r.body["sensor_id"])].append(index[r.body["event_id"]])
    assert all(order == sorted(order) for order in first_seen.values()), "a device's events were reordered"


def test_an_endpoint_gone_for_good_fails_the_batch_reports_it_and_ends_the_run(
        emulator_factory, tmp_path, stream_config, read_back):
    emulator = emulator_factory(hub="iot-events", partitions=4, data_dir=tmp_path / "hub")
    config = stream_config(emulator.connection_string, batch_size=300, rate_events_per_sec=3000, send_retries=2,
                           send_timeout_sec=5, stream_time_mode="window")
    thread, result, triggered = run_in_thread(config, lambda s: s.acknowledged >= 900, emulator.kill)
    thread.join(90)
    assert not thread.is_alive() and triggered.is_set()
    summary = result["summary"]
    assert not summary.ok and summary.stopped_by == "failure"
    assert summary.failed > 0 and summary.sent == summary.acknowledged + summary.failed
    assert summary.errors and "not delivered" in summary.errors[0] and "after 2 retries" in summary.errors[0]
    assert f"STREAM_START_EVENT={summary.resume_from}" in str(summary)

    emulator.restart()  # what was acknowledged is durable: every event before resume_from is there
    received = {r.body["event_id"] for r in read_back(emulator.connection_string, summary.acknowledged, drain=True)}
    assert len(received) >= summary.acknowledged
    assert set(event_ids(config, summary.resume_from)) <= received


def test_ctrl_c_stops_after_the_batch_in_flight_is_settled_and_the_stream_resumes(emulator, stream_config,
                                                                                    read_back):
    config = stream_config(emulator.connection_string, batch_size=250, rate_events_per_sec=5000)  # no stop set
    interrupted = threading.Event()

    def progress(snapshot):
        if snapshot.acknowledged >= 1000 and not interrupted.is_set():
            interrupted.set()
            os.kill(os.getpid(), signal.SIGINT)  # what Jupyter's Stop button and Ctrl-C do

    with EventHubProducer.open(config) as producer:
        summary = stream_events(config, producer, on_progress=progress, progress_interval=0.05)
        assert summary.stopped_by == "interrupted" and summary.ok
        assert summary.sent == summary.acknowledged >= 1000 and summary.resume_from == summary.acknowledged
        again = stream_events(config.replace(stream_events=500, stream_start_event=summary.resume_from), producer)
        assert again.ok and again.stopped_by == "events" and again.acknowledged == 500
    total = summary.acknowledged + 500
    received = read_back(emulator.connection_string, total, drain=True)
    assert sorted(r.body["event_id"] for r in received) == sorted(event_ids(config, total))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(60)
def test_wrong_key_unknown_hub_and_nothing_listening_are_clear_errors(emulator, stream_config, caplog):
    caplog.set_level(logging.DEBUG)
    key = emulator.connection_string.split("SharedAccessKey=")[1].split(";")[0]
    wrong = emulator.connection_string.replace(key, "WrongKey" + key[8:])
    with pytest.raises(EventHubConfigError, match="authentication to .* failed .*InvalidSignature") as info:
        EventHubProducer.open(stream_config(wrong))
    assert "EVENTHUB_CONNECTION_STRING" in str(info.value)
    with pytest.raises(EventHubConfigError, match="EVENTHUB_NAME: event hub 'nohub' not found"):
        EventHubProducer.open(stream_config(emulator.connection_string.replace("EntityPath=iot-events",
                                                                               "EntityPath=nohub")))
    nothing = emulator.connection_string.replace(f":{emulator.port};", f":{free_port()};")
    with pytest.raises(EventHubUnavailable, match="cannot reach the Event Hubs endpoint .*refused"):
        EventHubProducer.open(stream_config(nothing, send_timeout_sec=10))
    for secret in (key, "WrongKey" + key[8:]):
        assert secret not in caplog.text


def test_no_secret_in_logs_output_or_summary(emulator, stream_config, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    key = emulator.connection_string.split("SharedAccessKey=")[1].split(";")[0]
    config = stream_config(emulator.connection_string, stream_events=500, batch_size=250)
    summary = stream_events(config, on_progress=lambda s: print(s.progress_text()))
    print(summary, summary.as_dict(), config)
    connection = h.connect_eventhub(config)  # the notebooks' face: prints where events go
    h.stream_report(h.stream_events(config.replace(stream_events=100), connection)).to_string()
    print(h.read_eventhub(connection, max_events=2).to_string())
    h.stop_local_endpoint()
    out = capsys.readouterr()
    assert summary.acknowledged == 500 and caplog.records
    for text in (caplog.text, out.out, out.err, repr(config)):
        assert key not in text
