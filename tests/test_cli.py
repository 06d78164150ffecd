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
    (["--events", "-5"], "NUM_EVENTS must be an integer from 0 to 10^12, got -5"),
    (["--events", "ten"], "NUM_EVENTS must be an integer from 0 to 10^12, got 'ten'"),
    (["--min-keys", "9", "--max-keys", "3"], "MIN_KEYS must be <= MAX_KEYS"),
    (["--max-keys", "99"], "MAX_KEYS must be <= the number of keys in IOT_KEY_POOL (38), got 99"),
    (["--format", "xml"], "OUTPUT_FORMAT must be one of ndjson, json, parquet, csv, delta, iceberg, got 'xml'"),
    (["--workers", "0"], "WORKERS must be an integer from 1 to 256, got 0"),
    (["--seed", "-1"], "RANDOM_SEED must be an integer from 0 to 2^64 - 1, got -1"),
    (["--anchor-time", "soon"], "ANCHOR_TIME must be an ISO 8601 date-time"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    # values no run could honour (issue 13)
    (["--anchor-time", "0001-01-01T00:00:00Z"], "ANCHOR_TIME must be from 1971-01-01 to 9998-01-01 (UTC)"),
    (["--anchor-time", "9999-12-31T23:59:59Z"], "ANCHOR_TIME must be from 1971-01-01 to 9998-01-01 (UTC)"),
    (["--events", str(10**30)], "NUM_EVENTS must be an integer from 0 to 10^12"),
    (["--sensors", str(10**30)], "NUM_SENSORS must be an integer from 1 to 10^9"),
    (["--format", "delta", "--output", "/proc/no-such-dir"], "OUTPUT_DIR '/proc/no-such-dir' is not writable"),
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


@pytest.mark.parametrize("env, message", [
    ({"IOTGEN_BASE_TIME_DAYS_AGO": "1e300"}, "BASE_TIME_DAYS_AGO must be a number >= 0 and <= 36500, got 1e+300"),
    ({"IOTGEN_TIME_SPREAD_HOURS": "1e300"}, "TIME_SPREAD_HOURS must be a number > 0 and <= 876000"),
    ({"IOTGEN_BASE_TIME_DAYS_AGO": "30000"}, "puts the event-time window's start before 1971-01-01"),
])
def test_environment_values_out_of_range_exit_2(tmp_path, env, message):
    out = run("generate", "--output", str(tmp_path / "out"), "-n", "5", env=env)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "out").exists()


def test_tables_in_a_file_or_unwritable_place_fail_naming_output_dir(tmp_path):
    blocker = tmp_path / "plain-file"
    blocker.write_text("")
    for fmt in ("delta", "iceberg"):
        out = run("generate", "--format", fmt, "--output", str(blocker), "-n", "5")
        assert out.returncode == 2 and f"OUTPUT_DIR '{blocker}" in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def _aliases() -> str:  # a billion laughs: 9^9 values from a few lines
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        previous, name = chr(96 + i), chr(97 + i)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text, message", [
    ("NUM_EVENTS: " + _deep(3000) + "\n", "nests deeper than 32 levels"),
    ("NUM_EVENTS: " + _deep(40) + "\n", "nests deeper than 32 levels"),
    (_aliases(), "holds more than 100,000 values"),
    ("# padding\n" * 150_000, "is larger than 1,000,000 bytes"),
], ids=["deep-3000", "deep-40", "aliases", "large"])
def test_hostile_yaml_files_fail_fast_with_one_line(tmp_path, text, message):
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    for args, parameter in ((["generate", "--config", str(path), "-o", str(tmp_path / "o")], "CONFIG_FILE"),
                            (["spec", str(path)], "SPEC_FILE"),
                            (["generate", "--spec", str(path), "-o", str(tmp_path / "o")], "SPEC_FILE")):
        out = run(*args)
        assert out.returncode == 2 and f"{parameter} '{path}' {message}" in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_variables_of_other_faces_do_not_break_this_one(tmp_path):
    out = run("generate", "-n", "3", "-o", str(tmp_path), env={"IOTGEN_EMULATOR_KEY": "my-local-key"})
    assert out.returncode == 0, out.stderr


def test_help_states_the_range_of_numeric_flags():
    out = run("generate", "--help")
    assert "(NUM_EVENTS: 0 - 10^12)" in out.stdout and "(WORKERS: 1 - 256)" in out.stdout
    stream = run("stream", "--help").stdout
    assert "RATE_EVENTS_PER_SEC: > 0, <= 10^8" in " ".join(stream.split())


def test_ramp_up_without_a_rate_exits_2_before_connecting():
    out = run("stream", "--ramp-up", "10", "-n", "5",
              env={"EVENTHUB_CONNECTION_STRING": "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=k;"
                                                 "SharedAccessKey=abc;UseDevelopmentEmulator=true;EntityPath=h"})
    assert out.returncode == 2 and "RAMP_UP_SEC=10 needs RATE_EVENTS_PER_SEC" in out.stderr, out.stderr


def test_bad_input_is_one_line_exit_2_and_a_bug_is_a_traceback_exit_1(tmp_path, monkeypatch, capsys):
    """InputError (bad input) -> one line, status 2; any other exception, a ValueError from deep inside
    included, is a bug -> its traceback, status 1 (not passed off as bad input)."""
    from iotgen.generation import generator
    from iotgen.faces.cli import main

    assert main(["generate", "--events", "10", "--min-keys", "0", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MIN_KEYS" in err and "Traceback" not in err

    def broken(*args, **kwargs):
        raise ValueError("operands could not be broadcast together")  # as numpy says

    monkeypatch.setattr(generator, "build_events", broken)
    assert main(["generate", "--events", "10", "--seed", "1", "--output", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "operands could not be broadcast" in err and "internal error" in err
    assert list(tmp_path.iterdir()) == []  # nothing published


def test_the_command_line_starts_without_pandas():
    """``iotgen --help`` and a command refused on its input load every subcommand's module, but not pandas (a
    second of CPU at each start: pyarrow imports it at its first ``pa.array``); generating loads it when needed."""
    probe = ("import importlib, sys\nfrom iotgen.faces import cli\n"
             "for module in cli.COMMANDS.values():\n    importlib.import_module(module)\n"
             "print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"], out.stderr
