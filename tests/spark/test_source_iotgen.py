"""The ``iotgen`` Spark source gives exactly the embedded generator's events, batch and streaming."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from iotgen.generator import BLOCK_SIZE
from iotgen.spark.source_iotgen import IotgenOptions, split_range
from iotgen.spark.write import parquet_committed, write_stream

from spark_support import ANCHOR, committed_offsets, events, run_query, wait_until

N = 2 * BLOCK_SIZE + 1234  # three blocks, the last one partial


def _load(spark, **options):
    reader = spark.read.format("iotgen").option("anchorTime", ANCHOR)
    for key, value in options.items():
        reader = reader.option(key, str(value))
    return reader.load()


@pytest.mark.parametrize("partitions", [1, 2, 4])
def test_same_rows_as_the_embedded_generator_whatever_the_partition_count(spark, partitions):
    df = _load(spark, numEvents=N, seed=7, numPartitions=partitions)
    assert df.rdd.getNumPartitions() == min(partitions, 3)
    got = df.toArrow()
    expected = events(N, seed=7)
    assert got.num_rows == N
    got = got.cast(expected.schema)
    differing = [name for name in expected.column_names if not got.column(name).equals(expected.column(name))]
    assert differing == []  # same values, same order, every column


def test_generator_parameters_and_catalogs_travel_as_options(spark):
    df = _load(spark, numEvents=500, seed=3, minKeys=2, maxKeys=3, numSensors=7,
               catalogs=json.dumps({"DEVICE_TYPES": ["pump", "valve"], "REGIONS": {"north": 1, "south": 3}}))
    rows = df.selectExpr("device_type", "region", "sensor_id",
                         "size(map_keys(cast(parse_json(json_column) as map<string, variant>))) AS keys").collect()
    assert {r.device_type for r in rows} == {"pump", "valve"}
    assert {r.region for r in rows} == {"north", "south"}
    assert {r.sensor_id for r in rows} <= {f"sensor-{i:05d}" for i in range(1, 8)}
    assert {r["keys"] for r in rows} == {2, 3}


def test_a_bad_option_is_one_clear_error(spark):
    with pytest.raises(ValueError, match="unknown option 'numEvent'.*allowed: seed"):
        IotgenOptions.parse({"numEvent": "5"})
    with pytest.raises(ValueError, match="MAX_KEYS must be"):
        IotgenOptions.parse({"maxKeys": "500"}).spec()
    with pytest.raises(ValueError, match="rowsPerSecond must be a finite number > 0"):
        IotgenOptions.parse({"rowsPerSecond": "fast"}, streaming=True)
    with pytest.raises(ValueError, match="needs rowsPerSecond, rowsPerBatch or numEvents"):
        IotgenOptions.parse({"seed": "1"}, streaming=True)
    with pytest.raises(Exception, match="unknown option 'bogus'"):  # surfaced by Spark at load time
        _load(spark, numEvents=10, bogus=1).collect()


def test_split_range_is_block_aligned_and_covers_everything():
    for start, stop, parts in [(0, N, 4), (5, 5 + 3 * BLOCK_SIZE, 2), (100, 200, 8), (0, 1, 3), (7, 7, 2)]:
        ranges = split_range(start, stop, parts)
        assert sum(hi - lo for lo, hi in ranges) == stop - start
        assert all(lo < hi for lo, hi in ranges) and len(ranges) <= parts
        assert [lo for lo, _ in ranges[1:]] == [hi for _, hi in ranges[:-1]]
        assert all(lo % BLOCK_SIZE == 0 for lo, _ in ranges[1:])


def _stream(spark, **options):
    reader = spark.readStream.format("iotgen").option("anchorTime", ANCHOR).option("numPartitions", 2)
    for key, value in options.items():
        reader = reader.option(key, str(value))
    return reader.load()


def _event_ids(folder) -> list[str]:
    files = sorted(p for p in folder.glob("*.parquet"))
    return [e for f in files for e in pq.read_table(f, columns=["event_id"]).column(0).to_pylist()]


def test_stream_stopped_and_restarted_from_its_checkpoint_has_no_gap_and_no_duplicate(spark, tmp_path):
    total, per_batch = 12_000, 2_500
    out, checkpoint = tmp_path / "events", str(tmp_path / "checkpoint")
    # first run: an endless-pace query stopped after two micro-batches
    query = write_stream(_stream(spark, seed=11, numEvents=total, rowsPerBatch=per_batch), "parquet", str(out),
                         checkpoint, trigger="0.2 seconds")
    try:
        wait_until(lambda: len(committed_offsets(checkpoint)) >= 2, what="two committed micro-batches")
    finally:
        query.stop()
    first = _event_ids(out)
    assert 2 * per_batch <= len(first) < total
    # restarted from the same checkpoint: continues where it stopped and ends at numEvents
    run_query(write_stream(_stream(spark, seed=11, numEvents=total, rowsPerBatch=per_batch), "parquet", str(out),
                           checkpoint, trigger="availableNow"))
    ids = _event_ids(out)
    expected = events(total, seed=11).column("event_id").to_pylist()
    assert sorted(ids) == sorted(expected)  # every event exactly once
    offsets = [o["event"] for o in committed_offsets(checkpoint)]
    assert offsets == sorted(offsets) and offsets[-1] == total
    assert all(entry["rows"] <= per_batch for entry in parquet_committed(out, _app(checkpoint)).values())


def _app(checkpoint) -> str:
    from pathlib import Path

    return "iotgen-" + json.loads(Path(checkpoint, "metadata").read_text().splitlines()[0])["id"]


def test_unseeded_stream_keeps_its_seed_in_the_checkpoint(spark, tmp_path):
    out, checkpoint = tmp_path / "events", str(tmp_path / "checkpoint")
    run_query(write_stream(_stream(spark, numEvents=BLOCK_SIZE, rowsPerBatch=3000), "parquet", str(out), checkpoint,
                           trigger="availableNow"))
    seed = committed_offsets(checkpoint)[0]["seed"]
    run_query(write_stream(_stream(spark, numEvents=2 * BLOCK_SIZE, rowsPerBatch=5000), "parquet", str(out),
                           checkpoint, trigger="availableNow"))
    assert sorted(_event_ids(out)) == sorted(events(2 * BLOCK_SIZE, seed=seed).column("event_id").to_pylist())
    # an explicit seed that contradicts the checkpoint is refused, not silently mixed in
    query = write_stream(_stream(spark, seed=seed + 1, numEvents=3 * BLOCK_SIZE, rowsPerBatch=5000), "parquet",
                         str(out), checkpoint, trigger="availableNow")
    with pytest.raises(AssertionError, match="differs from the seed"):
        run_query(query)
