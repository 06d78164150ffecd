"""The ``iotgen`` console script, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

IOTGEN = str(Path(sys.executable).with_name("iotgen"))


def run(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("IOTGEN_")}
    full_env.update(env or {})
    return subprocess.run([IOTGEN, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=120)


def test_generate_prints_the_written_path(tmp_path):
    out = run("generate", "--events", "1500", "--seed", "4", "--output", str(tmp_path), "--format", "parquet")
    assert out.returncode == 0, out.stderr
    (line,) = out.stdout.splitlines()
    path = Path(line)
    assert path.parent == tmp_path and path.suffix == ".parquet"
    assert pq.read_table(path).num_rows == 1500
    assert "wrote 1500 events (seed 4)" in out.stderr


def test_generate_with_workers_and_same_seed_is_reproducible(tmp_path):
    a = run("generate", "-n", "30000", "--seed", "9", "-o", str(tmp_path / "a"), "--workers", "2", "--chunk-size", "4000")
    b = run("generate", "-n", "30000", "--seed", "9", "-o", str(tmp_path / "b"))
    assert a.returncode == b.returncode == 0, a.stderr + b.stderr
    assert Path(a.stdout.strip()).read_bytes() == Path(b.stdout.strip()).read_bytes()


def test_config_file_env_and_flags(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"NUM_EVENTS: 7\nOUTPUT_DIR: {tmp_path / 'from-file'}\nRANDOM_SEED: 1\nMIN_KEYS: 2\nMAX_KEYS: 2\n")
    out = run("generate", "--config", str(cfg), "--events", "5", env={"IOTGEN_OUTPUT_FORMAT": "json"})
    assert out.returncode == 0, out.stderr
    events = json.loads(Path(out.stdout.strip()).read_text())
    assert len(events) == 5 and all(len(e["json_column"]) == 2 for e in events)
    assert Path(out.stdout.strip()).parent == tmp_path / "from-file"


@pytest.mark.parametrize("args, message", [
    (["--events", "-5"], "NUM_EVENTS must be an integer >= 0, got -5"),
    (["--events", "ten"], "NUM_EVENTS must be an integer >= 0, got 'ten'"),
    (["--min-keys", "9", "--max-keys", "3"], "MIN_KEYS must be <= MAX_KEYS"),
    (["--max-keys", "99"], "MAX_KEYS must be <= the number of keys in IOT_KEY_POOL (38), got 99"),
    (["--format", "xml"], "OUTPUT_FORMAT must be one of ndjson, json, parquet, csv, delta, iceberg, got 'xml'"),
    (["--workers", "0"], "WORKERS must be an integer >= 1, got 0"),
    (["--seed", "-1"], "RANDOM_SEED must be an integer >= 0, got -1"),
    (["--anchor-time", "soon"], "ANCHOR_TIME must be an ISO 8601 date-time"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, args, message):
    out = run("generate", "--output", str(tmp_path / "out"), *args)
    assert out.returncode == 2
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bad_config_file_and_unwritable_output(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("NUM_EVENTS: [1,\n")
    out = run("generate", "--config", str(bad))
    assert out.returncode == 2 and "is not valid YAML" in out.stderr
    blocker = tmp_path / "f"
    blocker.write_text("")
    out = run("generate", "--output", str(blocker / "x"))
    assert out.returncode == 2 and "OUTPUT_DIR" in out.stderr and "is not writable" in out.stderr
    secret = tmp_path / "secret.yaml"
    secret.write_text("EVENTHUB_CONNECTION_STRING: Endpoint=sb://x/;SharedAccessKey=abc\n")
    out = run("generate", "--config", str(secret), "--output", str(tmp_path / "o"))
    assert out.returncode == 2 and "must not be set in the config file" in out.stderr and "abc" not in out.stderr


def test_schema_forms():
    spark = run("schema", "--format", "spark")
    assert spark.returncode == 0
    assert spark.stdout.strip().startswith("event_id STRING, timestamp TIMESTAMP")
    assert spark.stdout.count(",") == 23
    schema = json.loads(run("schema", "--format", "jsonschema").stdout)
    assert len(schema["properties"]) == 24 and schema["properties"]["json_column"]["type"] == "object"
    arrow = run("schema", "--format", "arrow").stdout
    assert "timestamp: timestamp[us, tz=UTC] not null" in arrow
    assert run("schema", "--format", "xml").returncode == 2
