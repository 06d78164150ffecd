"""Delta and Iceberg tables written without a cluster, read back by independent readers, value by value."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from iotgen.settings.config import Config
from iotgen.runs.tables import write_table
from iotgen.outputs.table_target import TableTarget, config_target, parse_target
from iotgen.settings.schema import COLUMN_NAMES
from iotgen.outputs.delta import compact_delta, delta_app_versions, delta_history, vacuum_delta, write_delta
from iotgen.outputs.iceberg import iceberg_app_versions, iceberg_history, open_catalog, write_iceberg
from iotgen.formats.variant import json_to_variant, try_json_to_variant

from lakehouse_support import ROOT, events

FIXED = [c for c in COLUMN_NAMES if c != "json_column"]


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by("event_id")


def _assert_same_events(read: pa.Table, expected: pa.Table) -> None:
    """Every fixed value equal (types included), json_column equal as JSON."""
    read, expected = _sorted(read), _sorted(expected)
    assert read.num_rows == expected.num_rows
    for name in FIXED:
        got, want = read.column(name), expected.column(name)
        if pa.types.is_timestamp(want.type):
            got = got.cast(pa.timestamp("us", tz="UTC"))
        assert got.type == want.type, name
        assert got.equals(want), name
    got_json = [json.loads(v) for v in read.column("json_column").to_pylist()]
    assert got_json == [json.loads(v) for v in expected.column("json_column").to_pylist()]


def test_delta_variant_reads_back_in_duckdb_and_spark_decoder(tmp_path, duck):
    data = events(3000)
    commit = write_delta(tmp_path / "t", data)
    assert (commit.version, commit.rows, commit.skipped) == (1, 3000, False)
    path = tmp_path / "t"
    assert duck.sql(f"SELECT DISTINCT typeof(json_column) FROM delta_scan('{path}')").fetchall() == [("VARIANT",)]
    read = duck.sql(f"SELECT * EXCLUDE (json_column, event_date), json_column::JSON::VARCHAR AS json_column "
                    f"FROM delta_scan('{path}')").arrow().read_all()
    _assert_same_events(read, data)
    # event_date is the UTC date of timestamp, and the partition column
    mismatched = duck.sql(f"SELECT count(*) FROM delta_scan('{path}') WHERE event_date <> CAST(timezone('UTC', "
                          f"timestamp) AS DATE)").fetchone()[0]
    assert mismatched == 0
    assert sorted(p.name for p in path.iterdir() if p.name.startswith("event_date="))
    # the encoding itself, decoded by Spark's independent pure-Python Parquet-variant decoder
    from deltalake import DeltaTable
    from pyspark.sql.types import VariantVal

    table = DeltaTable(str(path))
    assert "variantType" in (table.protocol().reader_features or [])
    assert "deletionVectors" not in (table.protocol().reader_features or [])
    raw = _sorted(table.to_pyarrow_table(columns=["event_id", "json_column"]))
    decoded = [VariantVal(v["value"], v["metadata"]).toPython() for v in raw.column("json_column").to_pylist()]
    assert decoded == [json.loads(v) for v in _sorted(data).column("json_column").to_pylist()]


def test_delta_string_mode_keeps_json_text_exactly(tmp_path):
    import polars as pl

    data = events(2000, seed=8)
    write_delta(tmp_path / "s", data, json_column_mode="string")
    read = pl.read_delta(str(tmp_path / "s")).to_arrow()
    read = read.select(list(COLUMN_NAMES))
    assert read.schema.field("json_column").type in (pa.string(), pa.large_string(), pa.string_view())
    read = read.set_column(read.schema.get_field_index("json_column"), "json_column",
                           read.column("json_column").cast(pa.string()))
    for name in COLUMN_NAMES:
        if pa.types.is_string(data.schema.field(name).type):
            read = read.set_column(read.schema.get_field_index(name), name, read.column(name).cast(pa.string()))
    _assert_same_events(read, data)
    assert _sorted(read).column("json_column").equals(_sorted(data).column("json_column"))


def test_iceberg_v2_day_partitions_read_back_in_duckdb(tmp_path, duck):
    catalog = open_catalog(warehouse=tmp_path / "wh")
    data = events(3000, seed=9)
    commit = write_iceberg(catalog, "iot.events", data)
    assert commit.rows == 3000 and not commit.skipped
    table = catalog.load_table("iot.events")
    assert table.metadata.format_version == 2
    assert str(table.spec().fields[0].transform) == "day" and table.spec().fields[0].source_id == 2
    assert table.properties["commit.retry.num-retries"] == "0"
    assert (tmp_path / "wh" / "catalog.db").is_file()
    read = duck.sql(f"SELECT * FROM iceberg_scan('{table.metadata_location}')").arrow().read_all()
    _assert_same_events(read, data)
    assert _sorted(read).column("json_column").equals(_sorted(data).column("json_column"))
    days = {p.name for p in (tmp_path / "wh" / "iot" / "events" / "data").iterdir()}
    expected_days = {f"timestamp_day={d}" for d in pc.unique(pc.cast(data.column("timestamp"), pa.date32())).to_pylist()}
    assert days == expected_days


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_idempotency_key_skips_a_replayed_batch_and_history_shows_it(tmp_path, fmt):
    target = parse_target(f"{fmt}:{tmp_path / 't' if fmt == 'delta' else 'ns.t'}", output_dir=str(tmp_path))
    data = events(500)
    first = target.write(data, idempotency_key=("spark-query-1", 0))
    replay = target.write(data, idempotency_key=("spark-query-1", 0))
    second = target.write(events(300, seed=1), idempotency_key=("spark-query-1", 1))
    assert (first.rows, replay.skipped, replay.rows, second.rows) == (500, True, 0, 300)
    assert target.read(["event_id"]).num_rows == 800
    assert target.app_versions(["spark-query-1", "other"]) == {"spark-query-1": 1, "other": None}
    history = target.history()
    assert [h["app_transactions"] for h in history[:2]] == [{"spark-query-1": 1}, {"spark-query-1": 0}]
    assert [h["rows_added"] for h in history[:2]] == [300, 500]


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_racing_writers_with_the_same_key_append_once(tmp_path, fmt):
    target = parse_target(f"{fmt}:{tmp_path / 't' if fmt == 'delta' else 'ns.t'}", output_dir=str(tmp_path))
    target.write(events(10, seed=2))  # the table exists before the race
    data = events(400)
    results, errors = [], []

    def writer() -> None:
        try:
            own = TableTarget(target.format, target.location, target.json_column_mode, target.catalog_uri,
                              target.warehouse)
            results.append(own.write(data, idempotency_key=("race", 5)))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sum(not r.skipped for r in results) == 1 and len(results) == 4
    assert target.read(["event_id"]).num_rows == 410


def test_compact_and_vacuum_keep_rows_and_offsets(tmp_path, duck):
    path = tmp_path / "c"
    parts = [events(300, seed=s) for s in range(6)]
    for i, part in enumerate(parts):
        write_delta(path, part, app_transactions={"p0": i})
    files_before = duck.sql(f"SELECT count(DISTINCT filename) FROM delta_scan('{path}', filename=true)").fetchone()[0]
    metrics = compact_delta(path)
    assert metrics["numFilesRemoved"] > metrics["numFilesAdded"] > 0
    files_after = duck.sql(f"SELECT count(DISTINCT filename) FROM delta_scan('{path}', filename=true)").fetchone()[0]
    assert files_after < files_before
    assert delta_app_versions(path, ["p0"]) == {"p0": 5}
    assert delta_history(path, 1)[0]["operation"] == "OPTIMIZE"
    listed = vacuum_delta(path, retention_hours=0, dry_run=True)
    assert len(listed) == metrics["numFilesRemoved"] and all(Path(path, f).exists() for f in listed)
    deleted = vacuum_delta(path, retention_hours=0, dry_run=False)
    assert sorted(deleted) == sorted(listed) and not any(Path(path, f).exists() for f in listed)
    expected = pa.concat_tables(parts)
    read = duck.sql(f"SELECT event_id FROM delta_scan('{path}')").arrow().read_all()
    assert sorted(read.column("event_id").to_pylist()) == sorted(expected.column("event_id").to_pylist())
    with pytest.raises(ValueError, match="retention_hours must be an integer >= 0"):
        vacuum_delta(path, retention_hours=-1)


def test_variant_encoder_rejects_what_it_cannot_encode():
    text = pa.array(['{"a":1}', "{oops", '{"big":18446744073709551615}', None])
    encoded, failed = try_json_to_variant(text)
    assert failed == [1, 2] and encoded.null_count == 3
    with pytest.raises(ValueError, match="json_column row 1 cannot be stored as VARIANT \\(2 such rows\\)"):
        json_to_variant(text)


def test_write_table_and_generate_cli_delta_and_iceberg(tmp_path, duck):
    config = Config(num_events=1200, random_seed=3, output_dir=str(tmp_path), output_format="delta",
                    chunk_size=500, anchor_time="2026-03-01T00:00:00Z")
    result = write_table(config)
    assert result.count == 1200 and result.commit.version == 1
    same = events(1200, seed=3)
    path = config_target(config).location
    assert path == str(tmp_path / "iot_events")
    read = duck.sql(f"SELECT * EXCLUDE (json_column, event_date), json_column::JSON::VARCHAR AS json_column "
                    f"FROM delta_scan('{path}')").arrow().read_all()
    _assert_same_events(read, same)
    out = subprocess.run([sys.executable, "-m", "iotgen.faces.cli", "generate", "--format", "iceberg", "-n", "700",
                          "--seed", "4", "-o", str(tmp_path), "--no-progress"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "iot.iot_events"
    assert "appended 700 events (seed 4) to Iceberg table iot.iot_events" in out.stderr
    catalog = open_catalog(warehouse=tmp_path / "iceberg")
    assert catalog.load_table("iot.iot_events").scan().to_arrow().num_rows == 700
    assert iceberg_history(catalog, "iot.iot_events")[0]["rows_added"] == 700
    assert iceberg_app_versions(catalog, "iot.iot_events", ["x"]) == {"x": None}


@pytest.mark.parametrize("args, message", [
    (["--format", "delta", "--json-column-mode", "json"], "JSON_COLUMN_MODE must be one of variant, string"),
    (["--format", "delta", "--output", "{blocker}"], "is a non-empty folder that is not a Delta table"),
    (["--format", "iceberg", "--config", "{bad_name}"], "ICEBERG_TABLE_NAME must be NAMESPACE.TABLE"),
])
def test_generate_table_bad_input_one_line_nothing_written(tmp_path, args, message):
    blocker = tmp_path / "blocker"
    (blocker / "iot_events").mkdir(parents=True)
    (blocker / "iot_events" / "keep.txt").write_text("not a table")
    bad_name = tmp_path / "bad.yaml"
    bad_name.write_text("ICEBERG_TABLE_NAME: no_namespace\n")
    args = [a.format(blocker=blocker, bad_name=bad_name) for a in args]
    if "--output" not in args:
        args += ["--output", str(tmp_path / "out")]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    out = subprocess.run([sys.executable, "-m", "iotgen.faces.cli", "generate", "-n", "10", *args], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_table_data_and_mode_mismatches_are_clear_errors(tmp_path):
    write_delta(tmp_path / "v", events(5))
    with pytest.raises(ValueError, match="stores json_column as VARIANT: use 'variant'"):
        write_delta(tmp_path / "v", events(5), json_column_mode="string")
    with pytest.raises(ValueError, match="missing env"):
        write_delta(tmp_path / "v", events(5).drop_columns(["env"]))
    with pytest.raises(ValueError, match="table column temperature must be double"):
        bad = events(5)
        write_delta(tmp_path / "v", bad.set_column(bad.schema.get_field_index("temperature"), "temperature",
                                                   pa.array(["hot"] * 5)))
    with pytest.raises(ValueError, match="idempotency_key must be a tuple"):
        write_delta(tmp_path / "v", events(5), idempotency_key="k")
    with pytest.raises(ValueError, match="needs an integer version >= 0"):
        write_delta(tmp_path / "v", events(5), idempotency_key=("k", -1))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        write_delta(tmp_path / "file", events(5))
    assert delta_history(tmp_path / "v")[0]["version"] == 1  # nothing was appended by the failures


@pytest.mark.parametrize("layout", ["ingested", "quarantine"])
def test_app_versions_are_read_from_tables_of_every_layout(tmp_path, layout):
    """A restarted ingest reads its offsets back from its ingested and quarantine tables (not only events)."""
    from iotgen.outputs.lakehouse import LAYOUTS

    empty = pa.Table.from_pylist([], schema=LAYOUTS[layout])
    catalog = open_catalog(warehouse=tmp_path / "wh")
    write_iceberg(catalog, "iot.t", empty, idempotency_key=("app", 7))
    assert iceberg_app_versions(catalog, "iot.t", ["app", "other"]) == {"app": 7, "other": None}
    write_delta(str(tmp_path / "d"), empty, idempotency_key=("app", 7))
    assert delta_app_versions(str(tmp_path / "d"), ["app", "other"]) == {"app": 7, "other": None}


@pytest.mark.parametrize("mode", ["variant", "string"])
def test_delta_files_have_no_statistics_for_json_column(tmp_path, mode):
    """Parquet min/max of JSON texts or VARIANT bytes serve no reader and cost a quarter of a write's CPU:
    json_column's leaves are written without them, every other column with them."""
    import pyarrow.parquet as pq

    write_delta(tmp_path / "t", events(2_000), json_column_mode=mode)
    files = sorted((tmp_path / "t").rglob("*.parquet"))
    assert files
    for file in files:
        row_group = pq.ParquetFile(file).metadata.row_group(0)
        stats = {row_group.column(i).path_in_schema: row_group.column(i).is_stats_set
                 for i in range(row_group.num_columns)}
        json_leaves = {path for path in stats if path.split(".")[0] == "json_column"}
        assert json_leaves == ({"json_column.metadata", "json_column.value"} if mode == "variant" else {"json_column"})
        assert not any(stats[path] for path in json_leaves)
        assert all(stats[path] for path in stats if path not in json_leaves)


def test_delta_is_given_the_shared_variant_metadata_once():
    """The generator's VARIANT rows share one metadata: delta-rs gets it as a one-value dictionary (no 640-byte
    copy per row to split and hash); DuckDB-encoded rows (one metadata each) are dictionary-encoded alike, nulls
    kept; both read back as the same binary values."""
    from iotgen import generate_events
    from iotgen.outputs.delta import WRITE_VARIANT_TYPE, prepare_batch

    config = Config(num_events=3_000, random_seed=4, anchor_time="2026-01-01T00:00:00Z")
    (direct,) = list(generate_events(config, 3_000, json_column="variant"))
    prepared = prepare_batch(direct, "events", "variant").column("json_column")
    assert prepared.type == WRITE_VARIANT_TYPE
    assert len(prepared.field(0).dictionary) == 1
    assert prepared.field(0).cast(pa.binary()).equals(direct.column("json_column").field(0))
    assert prepared.field(1).equals(direct.column("json_column").field(1))
    text = events(50).to_batches()[0]
    texts = text.column("json_column").to_pylist()
    texts[3] = None
    text = text.set_column(text.schema.get_field_index("json_column"), "json_column", pa.array(texts, pa.string()))
    from_text = prepare_batch(text, "events", "variant").column("json_column")
    assert from_text.type == WRITE_VARIANT_TYPE and from_text.null_count == 1 and not from_text[3].is_valid
    assert from_text.field(0).cast(pa.binary()).equals(json_to_variant(text.column("json_column")).field(0))


def test_delta_files_written_by_iotgen_roll_by_size_and_carry_statistics(tmp_path, duck):
    """A local Delta write's Parquet files are written by iotgen (pyarrow, one open file per partition, memory
    bounded by PENDING_ROWS) and committed by delta-rs in one commit with the app transaction: many batches over
    every event date, files cut at target_file_size; DuckDB and delta-rs read the same rows, VARIANT decodes, and
    every file's statistics (rows, null counts, min/max) hold for its rows."""
    from deltalake import DeltaTable
    from pyspark.sql.types import VariantVal

    from iotgen import generate_events
    from iotgen.outputs.delta import PARTITION_COLUMN

    config = Config(num_events=20_000, random_seed=5, anchor_time="2026-01-01T00:00:00Z")
    path = tmp_path / "t"
    batches = list(generate_events(config, 20_000, chunk_size=1_500, json_column="variant"))
    commit = write_delta(path, iter(batches), idempotency_key=("app-1", 7), target_file_size=400_000,
                          pending_rows=4_000)
    assert (commit.version, commit.rows, commit.skipped) == (1, 20_000, False)
    table = DeltaTable(str(path))
    assert table.transaction_version("app-1") == 7
    actions = pa.table(table.get_add_actions(flatten=True)).to_pydict()
    assert delta_history(path)[0]["rows_added"] == 20_000
    assert delta_history(path)[0]["files_added"] == len(actions["path"]) > 1
    days = set(actions[f"partition.{PARTITION_COLUMN}"])
    assert len(days) >= 7 and len(actions["path"]) > len(days)  # files were cut by size
    assert sorted(str(p.relative_to(path)) for p in path.rglob("*.parquet")) == sorted(actions["path"])
    assert sum(actions["num_records"]) == 20_000
    data = pa.Table.from_batches(batches)
    expected = data.set_column(data.schema.get_field_index("json_column"), "json_column",
                               pa.array([json.dumps(VariantVal(v["value"], v["metadata"]).toPython())
                                         for v in data.column("json_column").to_pylist()]))
    read = duck.sql(f"SELECT * EXCLUDE (json_column, event_date), json_column::JSON::VARCHAR AS json_column "
                    f"FROM delta_scan('{path}')").arrow().read_all()
    _assert_same_events(read, expected)
    raw = _sorted(table.to_pyarrow_table(columns=["event_id", "json_column"]))
    assert raw.column("json_column").to_pylist() == _sorted(data).column("json_column").to_pylist()
    for i, file in enumerate(actions["path"]):
        rows = duck.sql(f"SELECT min(timestamp) lo, max(timestamp) hi, count(*) n, min(temperature) t_lo, "
                        f"max(temperature) t_hi, count(*) - count(temperature) t_null, min(event_id) id_lo "
                        f"FROM read_parquet('{path / file}')").fetchone()
        lo, hi, n, t_lo, t_hi, t_null, id_lo = rows
        assert n == actions["num_records"][i]
        assert actions["min.timestamp"][i] <= lo and hi <= actions["max.timestamp"][i]
        assert (actions["min.temperature"][i], actions["max.temperature"][i]) == (t_lo, t_hi)
        assert actions["null_count.temperature"][i] == t_null and actions["min.event_id"][i] == id_lo
        assert f"{PARTITION_COLUMN}={actions[f'partition.{PARTITION_COLUMN}'][i]}" == Path(file).parts[0]


def _bounds_by_partition(table) -> dict:
    """Per partition: rows, null counts, and the lowest lower / highest upper bound of every column, over the data
    files of the current snapshot (as Iceberg readers prune with them)."""
    from pyiceberg.conversions import from_bytes

    types = {f.field_id: f.field_type for f in table.schema().fields}
    out: dict = {}
    for task in table.scan().plan_files():
        f = task.file
        part = out.setdefault(tuple(f.partition), {"rows": 0, "nulls": {}, "low": {}, "high": {}})
        part["rows"] += f.record_count
        for i, n in (f.null_value_counts or {}).items():
            part["nulls"][i] = part["nulls"].get(i, 0) + n
        for i, b in (f.lower_bounds or {}).items():
            v = from_bytes(types[i], b)
            part["low"][i] = min(part["low"].get(i, v), v)
        for i, b in (f.upper_bounds or {}).items():
            v = from_bytes(types[i], b)
            part["high"][i] = max(part["high"].get(i, v), v)
    return out


def test_iceberg_files_written_by_iotgen_roll_by_size_and_carry_the_statistics_pyiceberg_gives(tmp_path, duck):
    """An Iceberg write's Parquet files are written by iotgen (one open file per day partition, memory bounded by
    PENDING_ROWS) and appended in one snapshot with the app transaction: files cut at target_file_size; DuckDB
    reads the same rows; every partition's rows, null counts and bounds are those pyiceberg's own writer records
    for the same data (json_column excepted: no metrics); a filter on timestamp prunes files."""
    import datetime as dt

    from pyiceberg.expressions import GreaterThanOrEqual

    from iotgen import generate_table
    from iotgen.spec.spec_file import generator_spec

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("scenarios:\n  nulls:\n    temperature: 0.05\n    timestamp: 0.01\n")
    config = Config(num_events=20_000, random_seed=5, anchor_time="2026-01-01T00:00:00Z", spec_file=str(spec_file),
                    output_dir=str(tmp_path))
    batches = generate_table(generator_spec(config), 20_000).to_batches(max_chunksize=1_500)
    data = pa.Table.from_batches(batches)
    catalog = open_catalog(warehouse=tmp_path / "wh")
    commit = write_iceberg(catalog, "iot.ours", iter(batches), idempotency_key=("app-1", 7),
                           target_file_size=300_000, pending_rows=4_000)
    assert (commit.rows, commit.skipped) == (20_000, False)
    ours = catalog.load_table("iot.ours")
    assert iceberg_app_versions(catalog, "iot.ours", ["app-1"]) == {"app-1": 7}
    history = iceberg_history(catalog, "iot.ours")
    assert len(history) == 1 and history[0]["rows_added"] == 20_000
    files = [task.file for task in ours.scan().plan_files()]
    days = {tuple(f.partition) for f in files}
    assert history[0]["files_added"] == len(files) and len(days) >= 7 and len(files) > len(days)  # cut by size
    on_disk = sorted(str(p) for p in (tmp_path / "wh" / "iot" / "ours").rglob("*.parquet"))
    assert on_disk == sorted(f.file_path.removeprefix("file://") for f in files)
    read = duck.sql(f"SELECT * FROM iceberg_scan('{ours.metadata_location}')").arrow().read_all()
    _assert_same_events(read, data)

    theirs = write_iceberg(catalog, "iot.theirs", data.slice(0, 0))  # the same table layout, then pyiceberg appends
    assert theirs.rows == 0
    reference = catalog.load_table("iot.theirs")
    reference.append(pa.Table.from_batches([pa.RecordBatch.from_arrays(b.columns, schema=reference.schema().as_arrow())
                                            for b in batches]))
    json_id = ours.schema().find_field("json_column").field_id
    expected = _bounds_by_partition(reference)
    for part in expected.values():
        for kind in ("nulls", "low", "high"):
            part[kind].pop(json_id, None)
    got = _bounds_by_partition(ours)
    assert got == expected
    assert sum(p["nulls"].get(ours.schema().find_field("temperature").field_id, 0) for p in got.values()) > 0

    assert (None,) in days  # events without a timestamp: Iceberg's null partition
    last_day = pc.max(pc.cast(data.column("timestamp"), pa.date32())).as_py()
    since = dt.datetime.combine(last_day, dt.time(), dt.timezone.utc)
    scan = ours.scan(row_filter=GreaterThanOrEqual("timestamp", since.isoformat()))
    assert 0 < len(list(scan.plan_files())) < len(files)
    assert scan.to_arrow().num_rows == pc.sum(pc.greater_equal(data.column("timestamp"), pa.scalar(since))).as_py()


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_a_write_failing_mid_stream_leaves_no_files_and_no_commit(tmp_path, fmt):
    """A later batch that fails its checks: the files written so far are removed and nothing is committed."""
    if fmt == "delta":
        def write(data, **kwargs):
            return write_delta(tmp_path / "t", data, **kwargs)

        def versions():
            return len(delta_history(tmp_path / "t")), delta_app_versions(tmp_path / "t", ["app"])
    else:
        catalog = open_catalog(warehouse=tmp_path / "t")

        def write(data, **kwargs):
            return write_iceberg(catalog, "iot.t", data, **kwargs)

        def versions():
            return len(iceberg_history(catalog, "iot.t")), iceberg_app_versions(catalog, "iot.t", ["app"])
    write(events(10))
    before = sorted((tmp_path / "t").rglob("*.parquet"))
    committed = versions()
    assert committed[1] == {"app": None}
    good = events(3000, seed=3)
    bad = events(5).drop_columns(["env"])

    def stream():
        yield from good.to_batches(max_chunksize=1000)
        yield bad.to_batches()[0]

    with pytest.raises(ValueError, match="missing env"):
        write(stream(), idempotency_key=("app", 1), target_file_size=50_000, pending_rows=500)
    assert sorted((tmp_path / "t").rglob("*.parquet")) == before
    assert versions() == committed


def test_an_iceberg_table_partitioned_another_way_is_written_by_pyiceberg(tmp_path):
    """A table with the events layout but another engine's partition spec (here by region): iotgen's own file
    writer knows only day(timestamp), so pyiceberg's append writes it, and every file holds its partition's rows."""
    from pyiceberg.expressions import EqualTo
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import IdentityTransform

    from iotgen.outputs.iceberg import IcebergFiles, iceberg_schema

    catalog = open_catalog(warehouse=tmp_path / "wh")
    catalog.create_namespace("iot")
    schema = iceberg_schema("events")
    region = schema.find_field("region").field_id
    table = catalog.create_table("iot.by_region", schema, partition_spec=PartitionSpec(
        PartitionField(source_id=region, field_id=1000, transform=IdentityTransform(), name="region")))
    assert not IcebergFiles.can_write(table)
    data = events(2000, seed=4)
    assert write_iceberg(catalog, "iot.by_region", data, idempotency_key=("app", 1)).rows == 2000
    table = catalog.load_table("iot.by_region")
    for value in pc.unique(data.column("region")).to_pylist():
        files = list(table.scan(row_filter=EqualTo("region", value)).plan_files())
        assert {tuple(task.file.partition) for task in files} == {(value,)}
        read = table.scan(row_filter=EqualTo("region", value)).to_arrow()
        assert read.num_rows == pc.sum(pc.equal(data.column("region"), value)).as_py()
    assert iceberg_app_versions(catalog, "iot.by_region", ["app"]) == {"app": 1}
    write_iceberg(catalog, "iot.days", data.slice(0, 10))  # created by iotgen: partitioned by day(timestamp)
    assert IcebergFiles.can_write(catalog.load_table("iot.days"))
