"""Helpers of the lakehouse tests: an independent reader (DuckDB with the PyPI extension wheels, offline), a
local Event Hubs endpoint (iotgen.emulator, a real AMQP server in a subprocess) and a real SDK producer."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pyarrow as pa

from iotgen import generate_table
from iotgen.formats.encoding import json_lines
from iotgen.settings.config import Config

HUBS = ("kill-delta", "kill-iceberg", "malformed", "sigint", "errors", "available-now", "available-empty", "idle")
ROOT = Path(__file__).resolve().parents[2]


def duckdb_with_extensions():
    """A DuckDB connection with the delta, iceberg (+ avro) and json extensions loaded from their PyPI wheels;
    nothing is downloaded."""
    import duckdb

    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    for name in ("json", "avro", "delta", "iceberg"):
        module = __import__(f"duckdb_extension_{name}")
        (path,) = Path(module.__file__).parent.glob(f"extensions/v*/{name}.duckdb_extension")
        con.execute(f"LOAD '{path}'")
    con.execute("SET TimeZone = 'UTC'")
    return con


def events(n: int, seed: int = 7) -> pa.Table:
    return generate_table(Config(random_seed=seed, num_events=n, anchor_time="2026-03-01T00:00:00Z"))


def send(connection_string: str, bodies: list[bytes | str]) -> None:
    """Send bodies with the real azure-eventhub producer (content type application/json), in order."""
    from azure.eventhub import EventData, EventHubProducerClient

    producer = EventHubProducerClient.from_connection_string(connection_string)
    with producer:
        batch = producer.create_batch()
        for body in bodies:
            event = EventData(body)
            event.content_type = "application/json"
            try:
                batch.add(event)
            except ValueError:
                producer.send_batch(batch)
                batch = producer.create_batch()
                batch.add(event)
        if len(batch):
            producer.send_batch(batch)


def bodies_of(table: pa.Table) -> list[str]:
    return json_lines(table).to_pylist()


def ingest_env(connection_string: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOTGEN_")}
    env["EVENTHUB_CONNECTION_STRING"] = connection_string
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def ingest_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "iotgen.faces.cli", "ingest", *args]


def as_json(value) -> object:
    return json.loads(value) if isinstance(value, str) else value


def kill_and_restart(conn: str, target_arg: str, extra: list[str], kills: int, seed: int,
                     table_exists: Callable[[], bool]) -> int:
    """Start the ingest CLI and SIGKILL it, ``kills`` times; then run it with ``--available-now`` to the end.
    Even rounds kill at a random moment 1-3 s after the start (often before the first commit); odd rounds
    wait until the table exists, then kill 0.2-1.5 s later, so restarts on an existing table, mid-write,
    are always among them. Returns how many kills landed on a running ingest."""
    rng = random.Random(seed)
    env = ingest_env(conn)
    args = ["--target", target_arg, "--max-batch-events", "300", "--max-batch-seconds", "0.3", *extra]
    landed = 0
    for round_ in range(kills):
        process = subprocess.Popen(ingest_command(*args), env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        if round_ % 2:
            deadline = time.monotonic() + 60
            while not table_exists() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert table_exists(), "the ingest never created its table"
            time.sleep(rng.uniform(0.2, 1.5))
        else:
            time.sleep(rng.uniform(1.0, 3.0))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            landed += 1
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == -signal.SIGKILL, f"the ingest ended by itself: {stderr}"
    final = subprocess.run(ingest_command(*args, "--available-now"), env=env, cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    assert "stopped by available now" in final.stderr
    return landed
