"""Batch files: every format reads back as the generated events, byte-identical across workers and chunks,
atomic, never overwriting, split into parts with a manifest."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from iotgen import generate_table
from iotgen.generation.generator import event_dicts
from iotgen.runs.batch import write_files
from iotgen.settings.config import Config

ANCHOR = "2026-06-01T00:00:00Z"
NOW = dt.datetime(2026, 6, 1, 12, 30, 45, tzinfo=dt.timezone.utc)


def config(tmp_path, **changes) -> Config:
    values = dict(num_events=3000, random_seed=11, anchor_time=ANCHOR, output_dir=str(tmp_path), chunk_size=1000)
    values.update(changes)
    return Config(**values)


def only_visible(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("fmt", ["ndjson", "json", "parquet", "csv"])
def test_each_format_reads_back_as_the_generated_events(tmp_path, fmt):
    cfg = config(tmp_path, output_format=fmt)
    result = write_files(cfg, now=NOW)
    (path,) = result.paths
    assert path.name == f"iot_events_20260601_123045.{fmt}"
    expected = generate_table(cfg)
    if fmt == "ndjson":
        lines = path.read_text().splitlines()
        assert [json.loads(line) for line in lines] == event_dicts(expected.combine_chunks().to_batches()[0])
    elif fmt == "json":
        assert json.loads(path.read_text()) == event_dicts(expected.combine_chunks().to_batches()[0])
    elif fmt == "parquet":
        assert pq.read_table(path).equals(expected)
    else:
        read = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={"json_column": pa.string(), "event_id": pa.string()}))
        assert read.column_names == expected.column_names
        assert read.column("event_id").to_pylist() == expected.column("event_id").to_pylist()
        assert read.column("json_column").to_pylist() == expected.column("json_column").to_pylist()
        assert read.column("temperature").to_pylist() == expected.column("temperature").to_pylist()
        assert str(read.column("timestamp").type).startswith("timestamp")
    assert result.count == 3000 and result.seed == 11
    assert only_visible(tmp_path) == [path.name]  # no temporary file left behind


@pytest.mark.parametrize("fmt", ["ndjson", "json", "parquet", "csv"])
def test_bytes_identical_across_workers_and_chunk_sizes(tmp_path, fmt):
    paths = []
    for i, (workers, chunk) in enumerate([(1, 20_000), (2, 700), (2, 8192), (1, 333)]):
        folder = tmp_path / str(i)
        paths.append(write_files(config(folder, output_format=fmt, num_events=20_000, workers=workers,
                                        chunk_size=chunk), now=NOW).paths[0])
    contents = {p.read_bytes() for p in paths}
    assert len(contents) == 1


@pytest.mark.parametrize("fmt", ["ndjson", "parquet"])
def test_parts_written_by_workers_equal_those_of_one_process_with_labels_and_manifest(tmp_path, fmt):
    """With several parts, each worker writes whole parts (no event bytes through the parent): the folder is the
    same, part for part, labels and manifest included."""
    from pathlib import Path as P

    spec = P(__file__).resolve().parents[1] / "iotgen" / "spec" / "example_spec.yaml"
    runs = []
    for i, (workers, chunk) in enumerate([(1, 4_000), (2, 3_000), (3, 9_999)]):
        cfg = config(tmp_path / str(i), output_format=fmt, num_events=25_000, events_per_file=6_000,
                     workers=workers, chunk_size=chunk, spec_file=str(spec), device_count=50)
        (folder,) = write_files(cfg, now=NOW).paths
        manifest = json.loads((folder / "_manifest.json").read_text())
        manifest.pop("created_at")
        files = {p.name: (pq.read_table(p).to_pylist() if p.suffix == ".parquet" else p.read_bytes())
                 for p in sorted(folder.iterdir()) if p.name != "_manifest.json"}
        runs.append((manifest, files))
        assert [p["count"] for p in manifest["parts"]] == [6_000] * 4 + [1_000]
    assert runs[0] == runs[1] == runs[2]


def test_never_overwrites_an_existing_file(tmp_path):
    first = write_files(config(tmp_path, num_events=10), now=NOW).paths[0]
    before = first.read_bytes()
    second = write_files(config(tmp_path, num_events=20), now=NOW).paths[0]
    third = write_files(config(tmp_path, num_events=30), now=NOW).paths[0]
    assert first.read_bytes() == before
    assert [second.name, third.name] == ["iot_events_20260601_123045_1.ndjson", "iot_events_20260601_123045_2.ndjson"]
    assert len(third.read_text().splitlines()) == 30


def test_a_crash_leaves_nothing_under_a_final_name(tmp_path):
    seen = []

    def crash(count):
        seen.append(count)
        if len(seen) == 2:
            raise RuntimeError("disk on fire")

    for fmt, per_file in (("ndjson", 1_000_000), ("parquet", 1000)):
        with pytest.raises(RuntimeError, match="disk on fire"):
            write_files(config(tmp_path, output_format=fmt, events_per_file=per_file), now=NOW, on_progress=crash)
        seen.clear()
    assert only_visible(tmp_path) == []


def test_large_runs_split_into_parts_with_a_manifest(tmp_path):
    cfg = config(tmp_path, num_events=2500, events_per_file=1000, output_format="parquet", chunk_size=300)
    (folder,) = write_files(cfg, now=NOW).paths
    assert folder.is_dir() and folder.name == "iot_events_20260601_123045"
    manifest = json.loads((folder / "_manifest.json").read_text())
    assert manifest["count"] == 2500 and manifest["seed"] == 11 and manifest["schema_version"] == 1
    assert manifest["parts"] == [{"path": f"part-0000{i}.parquet", "count": c} for i, c in enumerate((1000, 1000, 500))]
    combined = pa.concat_tables(pq.read_table(folder / p["path"]) for p in manifest["parts"])
    assert combined.equals(generate_table(cfg))
    assert only_visible(tmp_path) == [folder.name]


def test_zero_events_writes_a_valid_empty_file(tmp_path):
    for fmt in ("ndjson", "json", "parquet", "csv"):
        path = write_files(config(tmp_path / fmt, num_events=0, output_format=fmt), now=NOW).paths[0]
        if fmt == "json":
            assert json.loads(path.read_text()) == []
        elif fmt == "parquet":
            assert pq.read_table(path).num_rows == 0
        elif fmt == "ndjson":
            assert path.read_bytes() == b""


def test_unwritable_output_dir_fails_before_writing(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(ValueError, match=r"OUTPUT_DIR '.*file.txt/sub' is not writable"):
        write_files(config(tmp_path, output_dir=str(blocker / "sub")), now=NOW)
    with pytest.raises(ValueError, match="exists and is not a folder"):
        write_files(config(tmp_path, output_dir=str(blocker)), now=NOW)
    assert only_visible(tmp_path) == ["file.txt"]


def test_published_files_and_run_folders_get_the_usual_mode(tmp_path):
    path = write_files(config(tmp_path, num_events=5), now=NOW).paths[0]
    (folder,) = write_files(config(tmp_path, num_events=5, events_per_file=2), now=NOW).paths
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700: others may list the parts


def test_output_inside_a_published_run_is_refused(tmp_path):
    (run,) = write_files(config(tmp_path, num_events=5, events_per_file=2), now=NOW).paths
    for inside in (run, run / "more" / "deeper"):
        with pytest.raises(ValueError, match=r"OUTPUT_DIR '.*' is inside the published run '.*' \(it holds _manifest"):
            write_files(config(tmp_path, output_dir=str(inside)), now=NOW)
    assert not (run / "more").exists()


def test_files_left_by_killed_runs_are_removed_by_the_next_run_only_when_provably_abandoned(tmp_path):
    from iotgen.outputs import files

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # exited: provably gone
    host = files.temporary_prefix().split("-")[1]
    abandoned_file = tmp_path / f".iotgen-{host}-{dead_pid}-x1.ndjson.tmp"
    abandoned_folder = tmp_path / f".iotgen-{host}-{dead_pid}-iot_events_20260101_000000.ab.tmp"
    live = tmp_path / f".iotgen-{host}-{os.getpid()}-x2.ndjson.tmp"          # a run still going
    other_host = tmp_path / f".iotgen-00000000-{dead_pid}-x3.ndjson.tmp"     # another host's (shared folder)
    not_ours = tmp_path / ".hidden-user-file"
    abandoned_folder.mkdir()
    (abandoned_folder / "part-00000.ndjson").write_bytes(b"x" * 1000)
    for path in (abandoned_file, live, other_host, not_ours):
        path.write_bytes(b"{}")
    write_files(config(tmp_path, num_events=5), now=NOW)
    assert not abandoned_file.exists() and not abandoned_folder.exists()
    assert live.exists() and other_host.exists() and not_ours.exists()


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_killing_generate_ends_its_workers_and_sigterm_cleans_up(tmp_path, signal_name):
    import psutil

    command = [str(Path(sys.executable).with_name("iotgen")), "generate", "-n", "50000000", "--workers", "2",
               "--chunk-size", "20000", "--events-per-file", "1000000", "-o", str(tmp_path), "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    parent = psutil.Process(process.pid)
    deadline = time.monotonic() + 60
    while len(parent.children()) < 2 or not list(tmp_path.iterdir()):
        assert process.poll() is None and time.monotonic() < deadline, "the workers never started"
        time.sleep(0.2)
    workers = [c for c in parent.children() if "resource_tracker" not in " ".join(c.cmdline())]
    assert len(workers) >= 2
    process.send_signal(getattr(signal, signal_name))
    process.wait(timeout=60)
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"workers outlived their parent: {alive}"
    if signal_name == "SIGTERM":
        assert process.returncode == 143 and "terminated (SIGTERM)" in process.stderr.read()
        assert list(tmp_path.iterdir()) == []  # the run's temporary folder went with it
