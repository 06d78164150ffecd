"""The Event Hubs -> table ingest against the local endpoint, with the real SDK over real AMQP."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pytest
from lakehouse_support import ROOT, bodies_of, events, ingest_command, ingest_env, kill_and_restart, send

from iotgen.settings.config import Config
from iotgen.runs.ingest import IngestOptions, offsets_app_id, run_ingest
from iotgen.outputs.table_target import parse_target
from iotgen.outputs.eventhubs import target_from_config

MALFORMED = {
    b"not json at all": "body is not valid JSON",
    b"[1, 2, 3]": "body must be a JSON object, got array",
    b"\xff\xfe\x00": "body is not valid UTF-8",
}


def _wrong(table: pa.Table, **changes) -> bytes:
    event = json.loads(bodies_of(table)[0])
    for key, value in changes.items():
        if value is KeyError:
            event.pop(key)
        else:
            event[key] = value
    return json.dumps(event).encode()


def _run(connection_string: str, target, **options):
    config = Config.load(env={"EVENTHUB_CONNECTION_STRING": connection_string})
    return run_ingest(config, target, IngestOptions(**options))


def test_malformed_events_are_quarantined_with_reasons_the_rest_land(tmp_path, emulator, duck):
    conn = emulator.connection_string_for("malformed")
    good = events(1500, seed=21)
    template = events(3, seed=22)
    wrong = {
        _wrong(template, timestamp=KeyError): "missing field timestamp",
        _wrong(template, temperature="hot"): 'field temperature must be a number, got string "hot"',
        _wrong(template, version=2.5): "field version must be an integer",
        _wrong(template, json_column=[1, 2]): "field json_column must be an object, got array",
        _wrong(template, json_column={"big": 18446744073709551615}): "integer 18446744073709551615 is outside",
        _wrong(template, json_column={"deep": json.loads("[" * 900 + "]" * 900)}): "JSON nests deeper than 64",
    }
    bad = {**MALFORMED, **wrong}
    bodies = bodies_of(good)
    mixed = bodies[:700] + list(bad) + bodies[700:]
    send(conn, mixed)
    target = parse_target(f"delta:{tmp_path / 'events'}")
    summary = _run(conn, target, max_batch_events=400, max_batch_seconds=0.5, until_idle=2.0)
    assert (summary.events, summary.quarantined) == (1500, len(bad))
    assert summary.stopped_by.startswith("idle") and set(summary.lag.values()) == {0}
    read = duck.sql(f"SELECT event_id, _partition, _sequence_number FROM delta_scan('{tmp_path / 'events'}')"
                    ).arrow().read_all()
    assert sorted(read.column("event_id").to_pylist()) == sorted(good.column("event_id").to_pylist())
    quarantine = duck.sql(f"SELECT body, reason, _partition, _sequence_number "
                          f"FROM delta_scan('{tmp_path / 'events_quarantine'}')").arrow().read_all()
    got = {row["body"]: row["reason"] for row in quarantine.to_pylist()}
    assert set(got) == set(bad)
    for body, reason in bad.items():
        assert got[body].startswith(reason), (body, got[body])
    # every (partition, sequence number) is in exactly one of the two tables
    seen = [(r["_partition"], r["_sequence_number"]) for r in read.to_pylist() + quarantine.to_pylist()]
    assert len(seen) == len(set(seen)) == len(mixed)
    # a second run resumes from the table: nothing new, nothing twice
    again = _run(conn, target, max_batch_events=400, max_batch_seconds=0.5, until_idle=1.0)
    assert (again.events, again.quarantined, again.batches) == (0, 0, 0)
    source = target_from_config(Config.load(env={"EVENTHUB_CONNECTION_STRING": conn}))
    offsets = target.app_versions([offsets_app_id(source, p) for p in "0123"])
    assert sum(v + 1 for v in offsets.values() if v is not None) == len(mixed)


def test_available_now_ingests_what_the_hub_holds_then_stops(tmp_path, emulator, duck):
    conn = emulator.connection_string_for("available-now")
    data = events(2500, seed=23)
    send(conn, bodies_of(data) + [b"{broken"])
    target = parse_target(f"delta:{tmp_path / 'events'}")
    summary = _run(conn, target, max_batch_events=1000, max_batch_seconds=600.0, available_now=True)
    # no idle wait, no latency timer: it stopped because every partition was read to its end at the start
    assert summary.stopped_by.startswith("available now"), summary.stopped_by
    assert (summary.events, summary.quarantined, summary.batches) == (2500, 1, 3)
    assert set(summary.lag.values()) == {0}
    ids = duck.sql(f"SELECT event_id FROM delta_scan('{tmp_path / 'events'}')").arrow().read_all()
    assert sorted(ids.column("event_id").to_pylist()) == sorted(data.column("event_id").to_pylist())
    # events sent later are the next run's: it takes exactly those, and a run with nothing new commits nothing
    more = events(300, seed=24)
    send(conn, bodies_of(more))
    again = _run(conn, target, available_now=True)
    assert (again.events, again.quarantined, again.batches) == (300, 0, 1)
    nothing = _run(conn, target, available_now=True)
    assert (nothing.events, nothing.batches) == (0, 0) and nothing.stopped_by.startswith("available now")


def test_available_now_on_an_empty_hub_stops_at_once_and_writes_nothing(tmp_path, emulator):
    target = parse_target(f"delta:{tmp_path / 'events'}")
    summary = _run(emulator.connection_string_for("available-empty"), target, available_now=True)
    assert (summary.events, summary.batches) == (0, 0) and summary.stopped_by.startswith("available now")
    assert not target.exists()


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_sigkill_at_random_moments_ten_times_keeps_every_event_exactly_once(tmp_path, emulator, duck, fmt):
    hub = f"kill-{fmt}"
    conn = emulator.connection_string_for(hub)
    data = events(4000, seed=31 if fmt == "delta" else 32)
    send(conn, bodies_of(data) + [b"{broken"])
    if fmt == "delta":
        target_arg, extra = f"delta:{tmp_path / 't'}", []
        exists = lambda: any((tmp_path / "t" / "_delta_log").glob("*.json"))  # noqa: E731
    else:
        from iotgen.outputs.iceberg import open_catalog

        target_arg, extra = "iceberg:iot.t", ["--catalog", str(tmp_path / "wh")]
        exists = lambda: (tmp_path / "wh").is_dir() and open_catalog(str(tmp_path / "wh")).table_exists("iot.t")  # noqa: E731
    landed = kill_and_restart(conn, target_arg, extra, kills=10, seed=len(fmt), table_exists=exists)
    assert landed >= 10
    if fmt == "delta":
        table = f"delta_scan('{tmp_path / 't'}')"
        quarantine = f"delta_scan('{tmp_path / 't_quarantine'}')"
    else:
        from iotgen.outputs.iceberg import open_catalog

        catalog = open_catalog(str(tmp_path / "wh"))
        table = f"iceberg_scan('{catalog.load_table('iot.t').metadata_location}')"
        quarantine = f"iceberg_scan('{catalog.load_table('iot.t_quarantine').metadata_location}')"
    ids = duck.sql(f"SELECT event_id FROM {table}").arrow().read_all().column("event_id").to_pylist()
    assert len(ids) == len(set(ids)) == 4000
    assert set(ids) == set(data.column("event_id").to_pylist())
    assert duck.sql(f"SELECT count(*) FROM {quarantine}").fetchone()[0] == 1
    # the values survived too, not just the ids
    row = duck.sql(f"SELECT temperature, sensor_id FROM {table} WHERE event_id = '{ids[0]}'").fetchone()
    expected = data.filter(pa.compute.equal(data.column("event_id"), ids[0])).to_pylist()[0]
    assert row == (expected["temperature"], expected["sensor_id"])


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the receiver process through /proc (Linux)")
def test_the_receiver_process_ends_when_the_ingest_is_killed(tmp_path, emulator):
    conn = emulator.connection_string_for("idle")  # no events: the receiver has nothing to send, it must notice
    process = subprocess.Popen(ingest_command("--target", f"delta:{tmp_path / 't'}"), env=ingest_env(conn),
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not _children(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        children = _children(process.pid)
        assert any("iotgen.runs.receiver" in Path(f"/proc/{c}/cmdline").read_text() for c in children)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        deadline = time.monotonic() + 10
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(c) for c in children), "a child process outlived the killed ingest"
    finally:
        if process.poll() is None:
            process.kill()


def test_ctrl_c_commits_what_is_buffered_and_prints_a_summary(tmp_path, emulator, duck):
    conn = emulator.connection_string_for("sigint")
    send(conn, bodies_of(events(800, seed=41)))
    process = subprocess.Popen(ingest_command("--target", f"delta:{tmp_path / 't'}", "--max-batch-seconds", "600",
                                              "--max-batch-events", "100000"),
                               env=ingest_env(conn), cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    time.sleep(6)  # usually connected and received by now; the assertions hold either way
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
    assert process.returncode == 0, stderr
    assert "stopped by stop request" in stderr and "Traceback" not in stderr
    # whatever had arrived is committed, and the summary accounts for every event: in the table or as lag
    import re

    ingested = int(re.search(r"ingested (\d+) events into delta:", stderr).group(1))
    lag = sum(int(v) for v in re.findall(r"\d+=(\d+)", stderr.split("lag per partition:")[1]))
    assert ingested + lag == 800
    if ingested:
        count = duck.sql(f"SELECT count(DISTINCT event_id) FROM delta_scan('{tmp_path / 't'}')").fetchone()[0]
        assert count == ingested


@pytest.mark.parametrize("args, message", [
    (["--target", "parquet:/x"], "--target must be delta:PATH or iceberg:NAMESPACE.TABLE, got 'parquet:/x'"),
    (["--target", "delta:"], "--target must be delta:PATH or iceberg:NAMESPACE.TABLE"),
    (["--target", "iceberg:events"], "the Iceberg target must be NAMESPACE.TABLE"),
    (["--target", "delta:{out}", "--catalog", "x"], "--catalog only applies to iceberg: targets"),
    (["--target", "delta:{out}", "--max-batch-events", "0"], "INGEST_MAX_BATCH_EVENTS must be an integer from 1 to 10^7"),
    (["--target", "delta:{out}", "--until-idle", "-1"], "INGEST_UNTIL_IDLE must be a number > 0 and <= 10^8"),
    (["--target", "delta:{out}", "--json-column-mode", "blob"], "JSON_COLUMN_MODE must be one of variant, string"),
    (["--target", "delta:{out}", "--source", "pulsar"], "--source must be one of eventhub, kafka, got 'pulsar'"),
    (["--target", "delta:{blocker}"], "is a non-empty folder that is not a Delta table"),
    (["--target", "delta:{out}", "--no-connection"], "the ingest needs the EVENTHUB_CONNECTION_STRING"),
])
def test_bad_targets_and_options_one_line_exit_2_nothing_written(tmp_path, emulator, args, message):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "notes.txt").write_text("mine")
    env = ingest_env(emulator.connection_string_for("errors"))
    if "--no-connection" in args:
        args = [a for a in args if a != "--no-connection"]
        env.pop("EVENTHUB_CONNECTION_STRING")
    args = [a.format(out=tmp_path / "out", blocker=blocker) for a in args]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    out = subprocess.run(ingest_command(*args, "--until-idle", "1") if "--until-idle" not in args
                         else ingest_command(*args), env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "Traceback" not in out.stderr and "SharedAccessKey=" not in out.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_wrong_key_is_a_clear_error_without_the_secret(tmp_path, emulator):
    conn = emulator.connection_string_for("errors").replace("SharedAccessKey=", "SharedAccessKey=wrong")
    out = subprocess.run(ingest_command("--target", f"delta:{tmp_path / 't'}", "--until-idle", "1"),
                         env=ingest_env(conn), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "cannot read the partitions of sb://127.0.0.1:" in out.stderr
    assert "wrong" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "t").exists()
