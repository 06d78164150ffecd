"""Scenario data in every output: files with labels and a manifest, read back by independent readers, and
Event Hubs through the real azure-eventhub SDK against the local emulator."""

from __future__ import annotations

import json
import secrets
import threading
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from iotgen.faces.cli import main
from iotgen.settings.config import Config
from iotgen.generation.generator import generate_range
from iotgen.runs.batch import write_files
from iotgen.generation.scenarios import truth_range
from iotgen.formats.encoding import json_lines
from iotgen.spec.spec_file import EXAMPLE_PATH, generator_spec

from scenario_support import ANCHOR

SPEC = {
    "profile": "fleet",
    "fleet": {"device_count": 60},
    "scenarios": {
        "nulls": {"temperature": 0.02, "timestamp": 0.01, "json_column": 0.01, "maintenance_due": 0.01},
        "malformed_json": {"rate": 0.01}, "duplicates": {"rate": 0.01}, "replays": {"rate": 0.01},
        "late": {"rate": 0.02}, "out_of_order": {"rate": 0.02}, "spikes": {"rate": 0.01},
        "schema_drift": [{"at": "2h", "add_key": "firmware_channel"}],
    },
}


def run_cli(tmp_path: Path, *args: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(json.dumps(SPEC))  # JSON is YAML
    out = tmp_path / "out"
    code = main(["generate", "--spec", str(spec_path), "--seed", "5", "--anchor-time", ANCHOR, "-o", str(out),
                 "--no-progress", *args])
    assert code == 0
    (folder,) = out.iterdir()
    return folder


def test_generate_writes_events_labels_and_manifest_together(tmp_path):
    folder = run_cli(tmp_path, "-n", "20000", "--chunk-size", "7000")
    assert sorted(p.name for p in folder.iterdir()) == ["_labels.ndjson", "_manifest.json", "part-00000.ndjson"]
    lines = (folder / "part-00000.ndjson").read_text().splitlines()
    events = [json.loads(line) for line in lines]  # every line is valid JSON, malformed payloads included
    labels = [json.loads(line) for line in (folder / "_labels.ndjson").read_text().splitlines()]
    manifest = json.loads((folder / "_manifest.json").read_text())
    assert len(events) == manifest["count"] == 20_000
    assert manifest["profile"] == "fleet" and manifest["device_count"] == 60
    assert manifest["labels"]["count"] == len(labels) > 0
    by_kind = {}
    for label in labels:
        by_kind[label["kind"]] = by_kind.get(label["kind"], 0) + 1
        assert events[label["event_index"]]["event_id"] == label["event_id"]
        if label["kind"] == "null":
            assert events[label["event_index"]][label["column"]] is None
    assert {k: v for k, v in manifest["labels"]["by_kind"].items() if ":" not in k} == by_kind
    nulls = sum(1 for e in events for v in e.values() if v is None)
    assert nulls == by_kind["null"]
    (drift,) = manifest["schema_drift"]
    visible = sum("firmware_channel" in e["json_column"] for e in events if isinstance(e["json_column"], dict))
    hidden = sum(1 for label in labels if label["kind"] == "malformed_json"
                 or (label["kind"] == "null" and label["column"] == "json_column"))
    assert 0 < visible <= drift["events"] <= visible + hidden and drift["events"] < 20_000
    spec = generator_spec(Config(spec_file=str(tmp_path / "spec.yaml"), random_seed=5, anchor_time=ANCHOR))
    assert truth_range(spec, 0, 20_000).drift_counts == (drift["events"],)


def test_workers_and_chunks_do_not_change_a_byte(tmp_path):
    one = run_cli(tmp_path / "a", "-n", "30000", "--chunk-size", "30000")
    two = run_cli(tmp_path / "b", "-n", "30000", "--chunk-size", "5000", "--workers", "2")
    for name in ("part-00000.ndjson", "_labels.ndjson"):
        assert (one / name).read_bytes() == (two / name).read_bytes()


def test_parquet_and_csv_carry_nulls_read_back_by_duckdb(tmp_path):
    parquet = run_cli(tmp_path / "p", "-n", "12000", "--format", "parquet")
    csv = run_cli(tmp_path / "c", "-n", "12000", "--format", "csv")
    assert (parquet / "_labels.parquet").exists() and (csv / "_labels.ndjson").exists()
    con = duckdb.connect()
    expected = dict(con.execute(
        f"select \"column\", count(*) from read_parquet('{parquet / '_labels.parquet'}') "
        "where kind = 'null' group by 1").fetchall())
    for source in (f"read_parquet('{parquet / 'part-00000.parquet'}')",
                   f"read_csv('{csv / 'part-00000.csv'}', header=true, allow_quoted_nulls=false, "  # "" is an empty string
                   "timestampformat='%Y-%m-%dT%H:%M:%S.%gZ')"):
        counts = con.execute(
            "select count(*) - count(temperature), count(*) - count(\"timestamp\"), count(*) - count(json_column), "
            f"count(*) - count(maintenance_due), count(*) from {source}").fetchone()
        assert counts == (expected["temperature"], expected["timestamp"], expected["json_column"],
                          expected["maintenance_due"], 12_000)
    distinct = con.execute(
        f"select count(distinct event_id) from read_parquet('{parquet / 'part-00000.parquet'}')").fetchone()[0]
    copies = con.execute(f"select count(*) from read_parquet('{parquet / '_labels.parquet'}') "
                         "where kind in ('duplicate', 'replay')").fetchone()[0]
    assert distinct == 12_000 - copies


def test_offline_devices_and_drops_reach_the_files_labels_and_manifest(tmp_path):
    """The same spec through ``iotgen generate`` (Parquet, in chunks): the events in arrival order, every gap,
    upload, lost and dropped report in the labels (read back by DuckDB) and counted in the manifest."""
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(json.dumps({"profile": "fleet", "fleet": {"device_count": 30, "interval_s": {"default": 60}},
                                     "scenarios": {"offline": {"rate": 0.1, "duration": "1h", "buffer": 20},
                                                   "dropped": {"rate": 0.02}}}))
    out = tmp_path / "out"
    assert main(["generate", "--spec", str(spec_path), "--seed", "5", "--anchor-time", ANCHOR, "-o", str(out),
                 "--no-progress", "-n", "40000", "--chunk-size", "7000", "--format", "parquet"]) == 0
    (folder,) = out.iterdir()
    con = duckdb.connect()
    events = con.execute(f"select event_id, sensor_id from read_parquet('{folder / 'part-*.parquet'}')").arrow()
    events = events.read_all()  # before the next query: it ends this one's reader
    labels = con.execute(f"select * from read_parquet('{folder / '_labels.parquet'}')").arrow().read_all()
    manifest = json.loads((folder / "_manifest.json").read_text())
    spec = generator_spec(Config(spec_file=str(spec_path), random_seed=5, anchor_time=ANCHOR))
    assert events.num_rows == manifest["count"] == 40_000
    embedded = generate_range(spec, 0, 40_000)
    for name in ("event_id", "sensor_id"):  # the embedded generator's events, in the same (arrival) order
        assert events.column(name).to_pylist() == embedded.column(name).to_pylist()
    assert labels.to_pylist() == truth_range(spec, 0, 40_000).labels.to_pylist()
    by_kind = manifest["labels"]["by_kind"]
    assert {kind: by_kind.get(kind, 0) > 0 for kind in ("offline", "catch_up", "overflow", "dropped")} == \
        dict.fromkeys(("offline", "catch_up", "overflow", "dropped"), True)
    assert sum(by_kind[k] for k in ("offline", "catch_up", "overflow", "dropped")) == manifest["labels"]["count"]
    assert manifest["scenarios"]["offline"]["buffer"] == 20 and manifest["scenarios"]["dropped"]["rate"] == 0.02


def test_a_failed_run_leaves_nothing_under_a_final_name(tmp_path, monkeypatch):
    import iotgen.runs.batch as batch

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    config = Config(spec_file=str(EXAMPLE_PATH), random_seed=1, num_events=20_000, chunk_size=5000,
                    output_dir=str(tmp_path))
    calls = {"n": 0}
    real = batch.LabelsWriter.add

    def add_then_fail(self, truth):
        calls["n"] += 1
        if calls["n"] == 3:
            broken()
        real(self, truth)

    monkeypatch.setattr(batch.LabelsWriter, "add", add_then_fail)
    with pytest.raises(RuntimeError):
        write_files(config)
    assert list(tmp_path.iterdir()) == []


def test_iotgen_stream_sends_scenario_events_intact(tmp_path, monkeypatch, capsys):
    """``iotgen stream --spec`` through the real SDK and AMQP to the local emulator, read back with the SDK."""
    from azure.eventhub import EventHubConsumerClient

    from iotgen.emulator import start_emulator_process

    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(json.dumps(SPEC))
    spec = generator_spec(Config(random_seed=9, anchor_time=ANCHOR, spec_file=str(spec_path)))
    expected = [json.loads(line) for line in json_lines(generate_range(spec, 0, 3000)).to_pylist()]
    labels = truth_range(spec, 0, 3000).labels
    with start_emulator_process(hub="iot-events", partitions=2, key=secrets.token_urlsafe(24)) as emulator:
        monkeypatch.setenv("EVENTHUB_CONNECTION_STRING", emulator.connection_string)
        monkeypatch.setenv("IOTGEN_ANCHOR_TIME", ANCHOR)
        code = main(["stream", "--spec", str(spec_path), "--seed", "9", "-n", "3000", "--time-mode", "window",
                     "--sleep", "0", "--no-progress"])
        assert code == 0, capsys.readouterr().err
        received: list[str] = []
        done = threading.Event()

        def on_batch(context, events):
            received.extend(e.body_as_str() for e in events)
            if len(received) >= len(expected):
                done.set()

        consumer = EventHubConsumerClient.from_connection_string(emulator.connection_string, consumer_group="$Default")
        thread = threading.Thread(target=consumer.receive_batch, kwargs=dict(
            on_event_batch=on_batch, starting_position="-1", max_wait_time=0.5, max_batch_size=500), daemon=True)
        thread.start()
        try:
            assert done.wait(60), f"received {len(received)} of {len(expected)}"
        finally:
            consumer.close()
            thread.join(30)
    events = [json.loads(body) for body in received]  # every body is one valid JSON event
    canonical = sorted(json.dumps(e, sort_keys=True) for e in events)
    assert canonical == sorted(json.dumps(e, sort_keys=True) for e in expected)  # duplicates included
    by_id = {e["event_id"]: e for e in events}
    nulls = pc.filter(labels["event_id"], pc.and_(pc.equal(labels["kind"], "null"),
                                                   pc.equal(labels["column"], "temperature"))).to_pylist()
    assert nulls and all(by_id[i]["temperature"] is None for i in nulls)
    broken = pc.filter(labels["event_id"], pc.equal(labels["kind"], "malformed_json")).to_pylist()
    assert broken and all(isinstance(by_id[i]["json_column"], str) for i in broken)
