"""The ``iotgen`` Spark source gives exactly the embedded generator's events, batch and streaming."""

from __future__ import annotations

import json

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
    """No seed given: the query draws one and pins it in its checkpoint, so the restart continues the same
    sequence of events."""
    total, per_batch = 12_000, 4_000
    out, checkpoint = tmp_path / "events", str(tmp_path / "checkpoint")
    # first run: a paced query stopped after its first micro-batch
    query = write_stream(_stream(spark, numEvents=total, rowsPerBatch=per_batch), "parquet", str(out), checkpoint,
                         trigger="0.5 seconds")
    try:
        wait_until(lambda: len(committed_offsets(checkpoint)) >= 1, what="a committed micro-batch")
    finally:
        query.stop()
    first = _event_ids(out)
    assert per_batch <= len(first) < total
    # restarted from the same checkpoint: continues where it stopped and ends at numEvents
    run_query(write_stream(_stream(spark, numEvents=total, rowsPerBatch=per_batch), "parquet", str(out),
                           checkpoint, trigger="availableNow"))
    offsets = committed_offsets(checkpoint)
    seed = offsets[0]["seed"]
    assert {o["seed"] for o in offsets} == {seed}
    assert [o["event"] for o in offsets] == list(range(per_batch, total + 1, per_batch))
    ids = _event_ids(out)
    assert len(ids) == total and sorted(ids) == sorted(events(total, seed=seed).column("event_id").to_pylist())
    assert all(entry["rows"] == per_batch for entry in parquet_committed(out, _app(checkpoint)).values())


def _app(checkpoint) -> str:
    from pathlib import Path

    return "iotgen-" + json.loads(Path(checkpoint, "metadata").read_text().splitlines()[0])["id"]


def test_a_seed_that_contradicts_the_checkpoint_is_refused():
    from iotgen.spark.source_iotgen import IotgenStreamReader

    pinned = IotgenStreamReader(IotgenOptions.parse({"numEvents": "10"}, streaming=True)).initialOffset()
    unseeded = IotgenStreamReader(IotgenOptions.parse({"numEvents": "10"}, streaming=True))
    assert unseeded._spec_for(pinned).seed == pinned["seed"]  # the checkpoint's seed wins over a fresh draw
    seeded = IotgenStreamReader(IotgenOptions.parse({"numEvents": "10", "seed": str(pinned["seed"] + 1)},
                                                    streaming=True))
    with pytest.raises(ValueError, match="differs from the seed .* in this query's checkpoint"):
        seeded._spec_for(pinned)


def test_rate_limits_and_available_now_offsets():
    from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadMaxRows

    from iotgen.spark.source_iotgen import IotgenStreamReader

    bounded = IotgenStreamReader(IotgenOptions.parse({"numEvents": "1000", "rowsPerBatch": "300", "seed": "1"},
                                                     streaming=True))
    start = bounded.initialOffset()
    assert bounded.getDefaultReadLimit() == ReadMaxRows(300)
    assert bounded.latestOffset(start, ReadMaxRows(300))["event"] == 300
    assert bounded.latestOffset({**start, "event": 900}, ReadMaxRows(300))["event"] == 1000
    assert bounded.latestOffset({**start, "event": 1000}, ReadAllAvailable())["event"] == 1000
    endless = IotgenStreamReader(IotgenOptions.parse({"rowsPerSecond": "100", "seed": "1"}, streaming=True))
    endless.prepareForTriggerAvailableNow()
    begin = endless.initialOffset()
    assert endless.latestOffset(begin, ReadAllAvailable())["event"] == 100  # one second's worth, then it ends
    assert endless.latestOffset({**begin, "event": 100}, ReadAllAvailable())["event"] == 100
    parts = bounded.partitions(start, {**start, "event": 1000})
    assert [(p.start, p.stop) for p in parts] == split_range(0, 1000, bounded.options.num_partitions)
