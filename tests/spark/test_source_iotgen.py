"""The ``iotgen`` Spark source gives exactly the embedded generator's events, batch and streaming."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from spark_support import ANCHOR, committed_offsets, events, run_to_the_end, wait_until

from iotgen.generation.generator import BLOCK_SIZE, generate_range
from iotgen.runs.spark.pipeline import _iotgen_options
from iotgen.runs.spark.source_iotgen import IotgenOptions, split_range
from iotgen.runs.spark.write import parquet_committed, write_stream
from iotgen.settings.config import Config
from iotgen.spec.spec_file import generator_spec

N = 2 * BLOCK_SIZE + 1234  # three blocks, the last one partial


def _load(spark, **options):
    reader = spark.read.format("iotgen").option("anchorTime", ANCHOR)
    for key, value in options.items():
        reader = reader.option(key, str(value))
    return reader.load()


@pytest.mark.parametrize("partitions", [1, 2, 4])
def test_same_rows_as_the_embedded_generator_whatever_the_partition_count(spark, partitions):
    from pyspark.sql.functions import spark_partition_id

    df = _load(spark, numEvents=N, seed=7, numPartitions=partitions)
    assert df.select(spark_partition_id()).distinct().count() == min(partitions, 3)
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
    with pytest.raises(ValueError, match="rowsPerSecond must be a number > 0"):
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
    # restarted from the same checkpoint: continues where it stopped and ends at numEvents (availableNow; Spark
    # before 4.2 runs one micro-batch of rowsPerBatch per availableNow run: run_to_the_end runs again)
    run_to_the_end(lambda: [write_stream(_stream(spark, numEvents=total, rowsPerBatch=per_batch), "parquet", str(out),
                                         checkpoint, trigger="availableNow")], [checkpoint])
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
    from iotgen.runs.spark.source_iotgen import IotgenStreamReader

    pinned = IotgenStreamReader(IotgenOptions.parse({"numEvents": "10"}, streaming=True)).initialOffset()
    unseeded = IotgenStreamReader(IotgenOptions.parse({"numEvents": "10"}, streaming=True))
    assert unseeded._spec_for(pinned).seed == pinned["seed"]  # the checkpoint's seed wins over a fresh draw
    seeded = IotgenStreamReader(IotgenOptions.parse({"numEvents": "10", "seed": str(pinned["seed"] + 1)},
                                                    streaming=True))
    with pytest.raises(ValueError, match="differs from the seed .* in this query's checkpoint"):
        seeded._spec_for(pinned)


def test_rate_limits_and_available_now_offsets():
    """Spark 4.2+'s contract (admission control): the start and the read limit come with each request."""
    from iotgen.runs.spark.runtime import ReadAllAvailable, ReadMaxRows
    from iotgen.runs.spark.source_iotgen import IotgenStreamReader

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


def test_before_spark_4_2_the_reader_tracks_its_start_and_applies_its_own_limit():
    """Spark 4.0/4.1 call latestOffset() with no start and no limit: the reader knows where the stream is from
    what Spark planned (partitions), committed, or announced on a restart (partitions(latest, latest))."""
    from iotgen.runs.spark.source_iotgen import IotgenStreamReader

    options = IotgenOptions.parse({"numEvents": "1000", "rowsPerBatch": "300", "seed": "1"}, streaming=True)
    reader = IotgenStreamReader(options)
    assert reader.latestOffset()["event"] == 300  # a new query: Spark asks before it asks the initial offset
    start = reader.initialOffset()
    reader.partitions(start, {**start, "event": 300})
    assert reader.latestOffset()["event"] == 600
    reader.commit({**start, "event": 600})
    assert reader.latestOffset()["event"] == 900
    restarted = IotgenStreamReader(options)
    restarted.partitions({**start, "event": 900}, {**start, "event": 900})
    assert restarted.latestOffset()["event"] == 1000
    endless = IotgenStreamReader(IotgenOptions.parse({"rowsPerSecond": "100", "seed": "1"}, streaming=True))
    assert endless.latestOffset()["event"] >= 100  # the first request gets one second's worth at once


# ---- a spec file: the fleet profile and data-quality scenarios ------------------------------------------------
SCENARIO_SPEC = """\
profile: fleet
catalogs: {regions: [eastus, westeurope]}
fleet: {device_count: 60, interval_s: {default: 60}}
scenarios:
  nulls: {temperature: 0.05, sensor_id: 0.01, json_column: 0.02, timestamp: 0.01}
  duplicates: {rate: 0.02, max_distance: 500}
  late: {rate: 0.03}
  offline: {rate: 0.05, duration: 30m, buffer: 20}
  dropped: {rate: 0.01}
  out_of_order: {rate: 0.02, max_distance: 50}
  malformed_json: {rate: 0.01}
  schema_drift: [{at: 2026-01-01T02:00:00Z, add_key: firmware_channel, value: [choice, [stable, beta]]}]
"""
NULLED = ("timestamp", "sensor_id", "temperature", "json_column")  # in schema order


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(SCENARIO_SPEC)
    return str(path)


def _embedded(spec_file: str, seed: int, start: int, stop: int):
    spec = generator_spec(Config(spec_file=spec_file, random_seed=seed, anchor_time=ANCHOR))
    assert spec.fleet is not None and spec.scenarios is not None
    return pa.Table.from_batches([generate_range(spec, start, stop)])


@pytest.mark.parametrize("partitions", [1, 2])
def test_a_spec_file_gives_the_embedded_fleet_and_scenarios(spark, spec_file, partitions):
    df = _load(spark, numEvents=N, seed=7, numPartitions=partitions, specFile=spec_file)
    assert all(field.nullable for field in df.schema.fields)  # the scenarios' nulls fit the declared schema
    got = df.toArrow()
    expected = _embedded(spec_file, 7, 0, N)
    assert got.num_rows == N
    assert [f.name for f in expected.schema if f.nullable] == list(NULLED)
    got = got.cast(expected.schema)
    differing = [name for name in expected.schema.names if not got.column(name).equals(expected.column(name))]
    assert differing == []  # same values, nulls, copies and order, every column
    assert all(got.column(name).null_count > 0 for name in NULLED)
    ids = Counter(got.column("event_id").drop_null().to_pylist())
    assert sum(count - 1 for count in ids.values()) > 0.01 * N  # the duplicates are there
    assert len(got.column("sensor_id").drop_null().unique()) == 60  # the fleet's devices


def _rows(table) -> Counter:
    return Counter(zip(*(table.column(name).to_pylist() for name in table.column_names)))


def test_a_stream_with_a_spec_file_continues_every_device_series_across_a_restart(spark, spec_file, tmp_path):
    """No seed: the first run draws one and pins it in the checkpoint; the restart (a new reader, a new draw)
    rebuilds the fleet for the pinned seed and goes on with the same series: together the two runs hold the
    embedded generator's events 0 .. total exactly once (copies the scenarios made included). Spark's own
    Parquet file sink keeps every row as generated (nulls and malformed JSON included)."""
    first_end, total, per_batch = 10_000, 25_000, 6_000
    out, checkpoint = str(tmp_path / "events"), str(tmp_path / "checkpoint")
    for end in (first_end, total):
        run_to_the_end(lambda: [_stream(spark, specFile=spec_file, numEvents=end, rowsPerBatch=per_batch)
                                .writeStream.format("parquet").option("path", out)
                                .option("checkpointLocation", checkpoint).trigger(availableNow=True).start()],
                       [checkpoint])
        if end == first_end:
            first = spark.read.parquet(out).count()
    offsets = committed_offsets(checkpoint)
    seed = offsets[0]["seed"]
    assert {o["seed"] for o in offsets} == {seed}
    assert [o["event"] for o in offsets] == [6_000, 10_000, 16_000, 22_000, 25_000]
    got = spark.read.parquet(out).toArrow()
    assert first == first_end and got.num_rows == total
    expected = _embedded(spec_file, seed, 0, total)
    assert _rows(got.select(expected.schema.names).cast(expected.schema)) == _rows(expected)
    # every device's series runs across the restart: each device reports in both runs
    assert set(expected.column("sensor_id").slice(0, first_end).drop_null().to_pylist()) \
        == set(expected.column("sensor_id").slice(first_end).drop_null().to_pylist())


def test_a_bad_spec_file_is_one_error_naming_the_option(spark, tmp_path):
    missing = str(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match=r"iotgen source option specFile \(.*missing.yaml'\): SPEC_FILE .* "
                                         r"cannot be read"):
        IotgenOptions.parse({"specFile": missing}).spec()
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenarios: {late: {rate: 1.5}}\n")
    with pytest.raises(ValueError, match=r"option specFile .*scenarios.late.rate must be a number >= 0.0 and <= 1.0"):
        IotgenOptions.parse({"specFile": str(bad), "numEvents": "5"}, streaming=True).spec()
    with pytest.raises(ValueError, match="iotgen source option profile: PROFILE must be one of independent, fleet"):
        IotgenOptions.parse({"profile": "fleets"})
    with pytest.raises(Exception, match=r"option specFile .*scenarios.late.rate must be"):  # at load time
        _load(spark, numEvents=10, specFile=str(bad)).collect()


def test_the_config_passes_its_spec_file_profile_and_device_count(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(SCENARIO_SPEC)
    options = _iotgen_options(Config(spec_file=str(path), device_count=9, profile="fleet", random_seed=1))
    assert options["specFile"] == str(path.resolve())
    assert options["deviceCount"] == "9" and options["profile"] == "fleet"
    parsed = IotgenOptions.parse(options)
    assert parsed.spec().fleet.device_count == 9
    assert "specFile" not in _iotgen_options(Config(random_seed=1))
    registry = _iotgen_options(Config(profile="fleet", device_registry=True, cdc_layout="debezium", random_seed=1))
    assert registry["deviceRegistry"] == "true" and registry["cdcLayout"] == "debezium"
    parsed = IotgenOptions.parse({**registry, "dataset": "device_changes"})
    assert parsed.config.device_registry is True and parsed.config.cdc_layout == "debezium"
