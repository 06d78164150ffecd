"""Helpers of the Spark tests: the embedded reference events, sending to the local endpoint, bounded waits."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa

from iotgen import generate_table
from iotgen.formats.encoding import json_lines
from iotgen.generation.generator import GeneratorSpec
from iotgen.settings.config import Config
from iotgen.spec.spec_file import generator_spec

ANCHOR = "2026-01-08T00:00:00Z"


def session_options() -> dict:
    """``get_spark`` arguments of this test run: Spark Connect or classic, and the connector jars
    (``IOTGEN_SPARK_CONNECT``, ``IOTGEN_SPARK_JARS``: the Config parameters every iotgen run reads)."""
    config = Config.load()
    return {"connect": config.spark_connect, "jars": config.spark_jars or None}


def connectors(spark) -> set[str]:
    """The formats this session writes with Spark's own sinks (``delta``, ``iceberg``). A run given connector
    jars (``IOTGEN_SPARK_JARS``) must have them: its tests of Spark's sinks never skip silently."""
    from iotgen.runs.spark.write import native_support

    found = {kind for kind in ("delta", "iceberg") if native_support(spark, kind)}
    jars = session_options()["jars"]
    if jars:
        names = " ".join(p.name for p in Path(jars).glob("*.jar"))
        expected = {k for k, jar in (("delta", "delta-spark_"), ("iceberg", "iceberg-spark-runtime-")) if jar in names}
        assert expected <= found, f"IOTGEN_SPARK_JARS={jars} holds {sorted(expected)}, the session has {sorted(found)}"
    return found
QUERY_TIMEOUT = 120  # seconds any streaming query in these tests may take


def spec(seed: int = 7) -> GeneratorSpec:
    return generator_spec(Config(random_seed=seed, anchor_time=ANCHOR))


def events(n: int, seed: int = 7, start: int = 0) -> pa.Table:
    """Events ``start .. start + n`` of the embedded generator (the reference the Spark paths must match)."""
    table = generate_table(spec(seed), start + n)
    return table.slice(start, n)


def send_bodies(connection_string: str, bodies: list[bytes], partition_key_of: Callable[[int], str] | None = None
                ) -> None:
    """Send raw message bodies with the real SDK, spread over the partitions (round-robin or by key)."""
    from azure.eventhub import EventData, EventHubProducerClient

    producer = EventHubProducerClient.from_connection_string(connection_string)
    with producer:
        groups: dict[str | None, list[bytes]] = {}
        for i, body in enumerate(bodies):
            groups.setdefault(partition_key_of(i) if partition_key_of else None, []).append(body)
        for key, group in groups.items():
            batch = producer.create_batch(partition_key=key) if key else producer.create_batch()
            for body in group:
                try:
                    batch.add(EventData(body))
                except ValueError:  # batch full
                    producer.send_batch(batch)
                    batch = producer.create_batch(partition_key=key) if key else producer.create_batch()
                    batch.add(EventData(body))
            producer.send_batch(batch)


def send_events(connection_string: str, table: pa.Table) -> list[str]:
    """Send events as JSON bodies (one message per event, keyed by sensor_id); returns their event ids."""
    bodies = [line.encode() for line in json_lines(table).to_pylist()]
    sensors = table.column("sensor_id").to_pylist()
    send_bodies(connection_string, bodies, lambda i: sensors[i])
    return table.column("event_id").to_pylist()


def wait_until(condition: Callable[[], bool], timeout: float = QUERY_TIMEOUT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout:g} s")
        time.sleep(0.2)


def run_query(query: Any, timeout: float = QUERY_TIMEOUT) -> None:
    """Wait (bounded) for an availableNow/once query to finish; re-raise its error."""
    from pyspark.errors import StreamingQueryException

    try:
        finished = query.awaitTermination(timeout)
    except StreamingQueryException as exc:
        raise AssertionError(f"streaming query failed: {exc}") from None
    finally:
        if query.isActive:
            query.stop()
    if not finished:
        raise TimeoutError(f"streaming query did not finish within {timeout:g} s")
    if query.exception() is not None:
        raise AssertionError(f"streaming query failed: {query.exception()}")


def run_to_the_end(start_queries: Callable[[], list], checkpoints: list, timeout: float = QUERY_TIMEOUT) -> int:
    """Run availableNow queries (``start_queries()`` starts them) until a run commits no new micro-batch; returns
    the runs made. Spark before 4.2, restarted after a crash mid-batch, re-runs that micro-batch and stops (it
    gives a Python source no Trigger.AvailableNow of its own), so catching up can take a second run."""
    def committed() -> list[int]:
        return [len(committed_offsets(c)) if (Path(c) / "commits").exists() else 0 for c in checkpoints]

    for runs in range(1, 6):
        before = committed()
        for query in start_queries():
            run_query(query, timeout)
        if committed() == before:
            return runs
    raise AssertionError("the queries still committed new micro-batches after 5 availableNow runs")


def committed_offsets(checkpoint: str | os.PathLike) -> list[dict]:
    """The source offsets of each committed batch, from the checkpoint (offsets/N where commits/N exists)."""
    root = Path(checkpoint)
    out = []
    for commit in sorted((root / "commits").glob("[0-9]*"), key=lambda p: int(p.name)):
        lines = (root / "offsets" / commit.name).read_text().splitlines()
        out.append(json.loads(lines[-1]))
    return out


def duckdb_json(text: str):
    """A ``json_column::JSON`` text DuckDB gives for a VARIANT, parsed. DuckDB 1.5.5 prints a decimal below 1 of
    a Spark-written VARIANT without its leading zero (``.408``): restored here before parsing."""
    return json.loads(re.sub(r'([:,\[]-?)\.(\d)', r"\g<1>0.\2", text))


def duckdb_connection():
    """DuckDB with the delta and iceberg extensions loaded from their PyPI wheels (nothing is downloaded)."""
    import duckdb

    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    for name in ("avro", "delta", "iceberg"):
        module = __import__(f"duckdb_extension_{name}")
        (path,) = Path(module.__file__).parent.glob(f"extensions/v*/{name}.duckdb_extension")
        con.execute(f"LOAD '{path}'")
    con.execute("SET TimeZone = 'UTC'")
    return con
