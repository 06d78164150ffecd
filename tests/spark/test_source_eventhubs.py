"""The ``eventhubs`` source against the local Event Hubs endpoint: exactly once through a kill and a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from iotgen.spark.source_eventhubs import EventHubsOptions, parse_connection_string, share_limit
from iotgen.spark.write import parquet_committed

from spark_support import (
    committed_offsets, duckdb_connection, events, run_query, send_bodies, send_events, wait_until,
)
from stream_worker import queries

MALFORMED = [b"not json", b'{"event_id": "x"}', b"[1, 2, 3]"]


def _parquet_rows(folder: Path, column: str) -> list:
    files = sorted(folder.glob("*.parquet"))
    return [v for f in files for v in pq.read_table(f, columns=[column]).column(0).to_pylist()]


def _delta_rows(path: Path, column: str) -> list:
    with duckdb_connection() as con:
        return [r[0] for r in con.execute(f"SELECT {column} FROM delta_scan('{path}')").fetchall()]


def test_killed_stream_restarts_from_its_checkpoint_with_every_event_exactly_once(spark, emulator, tmp_path):
    table = events(600, seed=5)
    sent = send_events(emulator.connection_string, table)
    send_bodies(emulator.connection_string, MALFORMED)
    worker = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("stream_worker.py")), str(tmp_path)],
        env={**os.environ, "EVENTHUB_CONNECTION_STRING": emulator.connection_string,
             "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: len(committed_offsets(tmp_path / "checkpoint-parquet")) >= 1
                   and len(committed_offsets(tmp_path / "checkpoint-delta")) >= 1,
                   timeout=240, what="a committed micro-batch in each query of the worker")
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # the worker's own process group: its Python, JVM and workers
        worker.wait(30)
    at_kill = [len(_parquet_rows(tmp_path / "parquet", "event_id")), len(_delta_rows(tmp_path / "delta", "event_id"))]
    assert min(at_kill) < len(sent)  # killed mid-stream
    for query in queries(spark, str(tmp_path), emulator.connection_string, "availableNow", max_events=None):
        run_query(query)
    for ids in (_parquet_rows(tmp_path / "parquet", "event_id"), _delta_rows(tmp_path / "delta", "event_id")):
        assert sorted(ids) == sorted(sent)  # every event once: no loss, no duplicate
    for bodies in (_parquet_rows(tmp_path / "parquet_bad_records", "body"),
                   _delta_rows(tmp_path / "delta_bad_records", "body")):
        assert sorted(bodies) == sorted(MALFORMED)
    # the provenance columns are the Event Hubs partition and sequence numbers, each (partition, seq) once
    provenance = list(zip(_parquet_rows(tmp_path / "parquet", "_partition") +
                          _parquet_rows(tmp_path / "parquet_bad_records", "_partition"),
                          _parquet_rows(tmp_path / "parquet", "_sequence_number") +
                          _parquet_rows(tmp_path / "parquet_bad_records", "_sequence_number")))
    assert len(set(provenance)) == len(sent) + len(MALFORMED)
    last = committed_offsets(tmp_path / "checkpoint-parquet")[-1]["sequenceNumbers"]
    assert {p: n for p, n in last.items()} == {p: sum(1 for q, _ in provenance if q == p) for p in last}


def test_available_now_reads_what_is_there_in_batches_of_max_events(spark, emulator, tmp_path):
    table = events(300, seed=9)
    sent = send_events(emulator.connection_string, table)
    raw = (spark.readStream.format("eventhubs").option("connectionString", emulator.connection_string)
           .option("maxEventsPerTrigger", 120).load())
    from iotgen.spark.write import write_stream

    query = write_stream(raw, "parquet", str(tmp_path / "out"), str(tmp_path / "cp"), trigger="availableNow")
    run_query(query)
    assert sorted(_parquet_rows(tmp_path / "out", "event_id")) == sorted(sent)
    sizes = [entry["rows"] for entry in parquet_committed(tmp_path / "out", _app(tmp_path / "cp")).values()]
    assert sum(sizes) == 300 and max(sizes) <= 120 and len(sizes) == 3  # 120 + 120 + 60
    plan = raw._jdf.queryExecution().toString() + str(query.lastProgress)
    assert emulator.connection_string.split("SharedAccessKey=")[1].split(";")[0] not in plan


def _app(checkpoint: Path) -> str:
    import json

    return "iotgen-" + json.loads((checkpoint / "metadata").read_text().splitlines()[0])["id"]


def test_options_are_checked_and_the_key_never_shows():
    good = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=TOPSECRET;EntityPath=hub"
    options = EventHubsOptions.parse({"connectionString": good})
    assert options.hub == "hub" and options.starting_position == "earliest" and "TOPSECRET" not in repr(options)
    cases = [
        ({}, "needs the connectionString option"),
        ({"connectionString": "Endpoint=sb://ns/;SharedAccessKey=TOPSECRET"}, "eventHubName is required"),
        ({"connectionString": "garbage-TOPSECRET"}, "Key=Value pairs"),
        ({"connectionString": good, "startingPosition": "middle"}, "startingPosition must be"),
        ({"connectionString": good, "maxEventsPerTrigger": "0"}, "maxEventsPerTrigger must be"),
        ({"connectionString": good, "receiveTimeout": "-1"}, "receiveTimeout must be"),
        ({"connectionString": good, "failOnDataLoss": "maybe"}, "failOnDataLoss must be"),
        ({"connectionString": good, "startingOffsets": "earliest"}, "unknown option 'startingOffsets'"),
    ]
    for given, message in cases:
        with pytest.raises(ValueError, match=message) as error:
            EventHubsOptions.parse(given)
        assert "TOPSECRET" not in str(error.value)
    assert EventHubsOptions.parse({"connectionString": good, "startingPosition": '{"0": 5, "3": 0}'}
                                  ).starting_position == {"0": 5, "3": 0}
    assert parse_connection_string(good)["entitypath"] == "hub"


def test_max_events_are_shared_fairly_across_partitions():
    start = {"0": 10, "1": 0, "2": 5, "3": 7}
    end = {"0": 110, "1": 3, "2": 5, "3": 57}
    limited = share_limit(start, end, 60)
    assert sum(limited[p] - start[p] for p in start) == 60
    assert limited["1"] == 3 and limited["2"] == 5 and all(start[p] <= limited[p] <= end[p] for p in start)
    assert share_limit(start, end, 10_000) == end
    assert share_limit(start, {**end, "4": 9}, 1000)["4"] == 9  # a new partition starts where it is
