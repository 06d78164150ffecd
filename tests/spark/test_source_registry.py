"""The ``iotgen`` Spark source's registry datasets (``dataset`` = ``devices`` | ``device_changes``): exactly the
embedded registry snapshot and delivered change feed, at any partition count, batch and streaming."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from iotgen.generation.devices import change_feed, registry_snapshot
from iotgen.runs.spark.source_iotgen import IotgenOptions, IotgenStreamReader, _nullable, split_range
from iotgen.settings.config import Config
from iotgen.spec.spec_file import generator_spec

from spark_support import ANCHOR, committed_offsets, run_to_the_end

#: A busy registry (every kind of change in two days) with delivery faults, so order and copies count.
SPEC = {"profile": "fleet", "fleet": {"device_count": 60},
        "registry": {"commissioned_fraction": 0.2, "rollback": {"fraction": 0.3, "within": "3h"},
                     "relocations": {"per_device_day": 0.5, "cross_region_fraction": 0.5},
                     "replacements_per_device_day": 0.05, "decommissions_per_device_day": 0.05,
                     "faults": {"duplicates": {"rate": 0.05}, "out_of_order": {"rate": 0.05, "window": 5},
                                "late": {"rate": 0.03, "max": "6h"}}}}
OPTIONS = {"seed": 5, "anchorTime": ANCHOR, "timeSpreadHours": 48}


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("registry") / "spec.json"
    path.write_text(json.dumps(SPEC))
    return str(path)


def _embedded(spec_file: str, dataset: str, layout: str = "flat") -> pa.Table:
    spec = generator_spec(Config(spec_file=spec_file, random_seed=5, anchor_time=ANCHOR, time_spread_hours=48))
    return registry_snapshot(spec) if dataset == "devices" else change_feed(spec, layout).changes


def _same(got: pa.Table, expected: pa.Table) -> list[str]:
    """The columns that differ (values, nulls and order), both in the schema the source declares to Spark."""
    schema = pa.schema([_nullable(f) for f in expected.schema])
    got, expected = got.select(expected.column_names).cast(schema), expected.cast(schema)
    return [name for name in expected.column_names if not got.column(name).equals(expected.column(name))]


@pytest.mark.parametrize("dataset, layout, partitions", [("devices", "flat", 1), ("devices", "flat", 3),
                                                         ("device_changes", "flat", 1),
                                                         ("device_changes", "flat", 4),
                                                         ("device_changes", "debezium", 3)])
def test_registry_datasets_equal_the_embedded_registry_at_any_partition_count(spark, spec_file, dataset, layout,
                                                                             partitions):
    from pyspark.sql.functions import spark_partition_id

    df = (spark.read.format("iotgen").options(**{k: str(v) for k, v in OPTIONS.items()})
          .option("specFile", spec_file).option("dataset", dataset).option("cdcLayout", layout)
          .option("numPartitions", partitions).load())
    expected = _embedded(spec_file, dataset, layout)
    assert df.columns == expected.column_names
    assert df.select(spark_partition_id()).distinct().count() == partitions
    got = df.toArrow()
    assert got.num_rows == expected.num_rows > 50
    assert _same(got, expected) == []  # every column, in delivery order (copies and late changes included)


def test_a_change_feed_stream_restarted_from_its_checkpoint_delivers_the_feed_once_in_order(spark, spec_file,
                                                                                            tmp_path):
    """Offsets are positions in the delivered feed (``{"change": n, ...}``): two availableNow runs of a few rows
    per micro-batch, stopped and restarted, write the whole feed exactly once."""
    out, checkpoint = str(tmp_path / "changes"), str(tmp_path / "checkpoint")
    expected = _embedded(spec_file, "device_changes")

    def start():
        return [spark.readStream.format("iotgen").options(**{k: str(v) for k, v in OPTIONS.items()})
                .option("specFile", spec_file).option("dataset", "device_changes").option("rowsPerBatch", 150)
                .option("numPartitions", 2).load()
                .writeStream.format("parquet").option("path", out).option("checkpointLocation", checkpoint)
                .trigger(availableNow=True).start()]

    run_to_the_end(start, [checkpoint])
    offsets = committed_offsets(checkpoint)
    assert [o["change"] for o in offsets] == [min(n, expected.num_rows)
                                              for n in range(150, expected.num_rows + 150, 150)]
    got = spark.read.parquet(out).toArrow()
    got = got.take(pa.compute.sort_indices(got, [("_commit_version", "ascending"), ("_change_type", "ascending")]))
    want = expected.take(pa.compute.sort_indices(expected, [("_commit_version", "ascending"),
                                                            ("_change_type", "ascending")]))
    assert got.num_rows == expected.num_rows and _same(got, want) == []


def test_bad_registry_options_are_one_clear_error(spark, spec_file):
    with pytest.raises(ValueError, match="dataset must be one of events, devices, device_changes, got 'device'"):
        IotgenOptions.parse({"dataset": "device"})
    with pytest.raises(ValueError, match="numEvents applies to dataset events only"):
        IotgenOptions.parse({"dataset": "devices", "numEvents": "10"})
    with pytest.raises(ValueError, match="dataset devices needs the device registry: options profile=fleet and "
                                         "deviceRegistry=true"):
        IotgenStreamReader(IotgenOptions.parse({"dataset": "devices", "profile": "fleet", "seed": "1"},
                                               streaming=True))
    with pytest.raises(ValueError, match="CDC_LAYOUT must be one of flat, debezium"):
        IotgenOptions.parse({"dataset": "device_changes", "cdcLayout": "scd2"})
    reader = IotgenStreamReader(IotgenOptions.parse({"dataset": "devices", "specFile": spec_file, "seed": "5"},
                                                    streaming=True))
    events_checkpoint = {"event": 10, "seed": 5, "windowStartMs": 0, "windowSpanMs": 1}
    with pytest.raises(ValueError, match="dataset devices differs from the dataset events in this query's checkpoint"):
        reader.partitions(events_checkpoint, events_checkpoint)
    with pytest.raises(Exception, match="dataset devices needs the device registry"):  # at load time
        spark.read.format("iotgen").option("dataset", "devices").load().collect()


def test_before_spark_4_2_a_registry_stream_tracks_its_position_and_ends_at_the_last_row(spec_file):
    """Spark 4.0/4.1 call latestOffset() with no start and no limit: the reader paces itself in rows of the feed
    and stops at its end."""
    options = IotgenOptions.parse({"dataset": "device_changes", "specFile": spec_file, "rowsPerBatch": "100",
                                   **{k: str(v) for k, v in OPTIONS.items()}}, streaming=True)
    reader = IotgenStreamReader(options)
    total = _embedded(spec_file, "device_changes").num_rows
    assert reader.end == total
    start = reader.initialOffset()
    assert start["change"] == 0 and "event" not in start
    assert reader.latestOffset()["change"] == 100
    end = {**start, "change": total - 30}
    reader.commit(end)
    assert reader.latestOffset()["change"] == total  # the last row: the stream ends there
    parts = reader.partitions(end, {**start, "change": total})
    assert [(p.start, p.stop) for p in parts] == split_range(total - 30, total, options.num_partitions, 1)
    assert {p.dataset for p in parts} == {"device_changes"}
