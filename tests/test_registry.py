"""The device registry and its change feed (issue 15): events agree with the registry as of their time (read
back with DuckDB only), the change feed applied with Delta MERGE gives the snapshot at any time, the same seed
gives the same data at any chunk size or partition count, and bad input is one line before any output."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from iotgen.base.errors import InputError
from iotgen.faces.cli import main
from iotgen.generation.devices import (
    EVENT_ATTRIBUTES,
    REGISTRY_SCHEMA,
    CdcFaults,
    Registry,
    change_feed,
    change_range,
    registry_history,
    registry_snapshot,
)
from iotgen.generation.generator import generate_range
from iotgen.runs.batch import write_files
from iotgen.settings.config import Config
from iotgen.spec.spec_file import generator_spec

ANCHOR = "2026-01-08T00:00:00Z"
NOW = dt.datetime(2026, 6, 1, 12, tzinfo=dt.timezone.utc)
#: High rates, so that a short run holds every kind of change (and events around them).
BUSY = {"commissioned_fraction": 0.2, "rollback": {"fraction": 0.3, "within": "3h"},
        "relocations": {"per_device_day": 0.5, "cross_region_fraction": 0.5},
        "replacements_per_device_day": 0.05, "decommissions_per_device_day": 0.05}
FAULTS = {"duplicates": {"rate": 0.05}, "out_of_order": {"rate": 0.05, "window": 5},
          "late": {"rate": 0.03, "max": "6h"}}


def busy_spec(devices: int = 80, faults: bool = False, **config):
    registry = dict(BUSY, faults=FAULTS) if faults else BUSY
    settings = {"random_seed": 11, "anchor_time": ANCHOR, "time_spread_hours": 48.0, **config}
    return generator_spec(Config(**settings), spec={"profile": "fleet", "fleet": {"device_count": devices},
                                                    "registry": registry})


def write_run(tmp_path: Path, fmt: str, layout: str = "flat", faults: bool = False, **config) -> Path:
    registry = dict(BUSY, faults=FAULTS) if faults else BUSY
    spec = {"profile": "fleet", "fleet": {"device_count": 80}, "registry": registry}
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    settings = {"num_events": 60_000, "random_seed": 11, "anchor_time": ANCHOR, "time_spread_hours": 48.0,
                "output_dir": str(tmp_path / "out"), "output_format": fmt, "spec_file": str(path),
                "cdc_layout": layout, **config}
    (run,) = write_files(Config(**settings), now=NOW).paths
    return run


def reader(fmt: str) -> str:
    return {"parquet": "read_parquet", "ndjson": "read_json_auto", "json": "read_json_auto",
            "csv": "read_csv_auto"}[fmt]


# ---- events and registry agree (DuckDB only) -------------------------------------------------------------------
@pytest.mark.parametrize("fmt, faults", [("parquet", True), ("ndjson", False), ("csv", True)])
def test_every_event_has_its_device_and_the_registry_attributes_as_of_its_time(tmp_path, fmt, faults):
    """Read back with DuckDB alone: the change feed (deduplicated and ordered by _commit_version, as a consumer
    must, since it may be delivered with faults) becomes SCD2 intervals; each event falls in exactly one
    interval of its sensor_id, with every shared attribute equal; the snapshot is the feed's final state."""
    run = write_run(tmp_path, fmt, faults=faults)
    ext = {"parquet": "parquet", "ndjson": "ndjson", "json": "json", "csv": "csv"}[fmt]
    read = reader(fmt)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE VIEW events AS SELECT * FROM {read}('{run}/part-*.{ext}')")
    con.execute(f"CREATE VIEW changes AS SELECT DISTINCT * FROM {read}('{run}/device_changes.{ext}')")
    con.execute(f"CREATE VIEW devices AS SELECT * FROM {read}('{run}/devices.{ext}')")
    con.execute("""
        CREATE VIEW versions AS
        SELECT * EXCLUDE (next_time), next_time AS valid_to FROM (
            SELECT *, _commit_timestamp AS valid_from,
                   LEAD(_commit_timestamp) OVER (PARTITION BY sensor_id ORDER BY _commit_version) AS next_time
            FROM changes WHERE _change_type <> 'update_preimage')
        WHERE _change_type <> 'delete'""")
    events = con.execute("SELECT count(*), count(DISTINCT sensor_id) FROM events").fetchone()
    assert events[0] == 60_000
    orphans = con.execute("SELECT count(*) FROM events WHERE sensor_id NOT IN (SELECT sensor_id FROM changes)")
    assert orphans.fetchone()[0] == 0
    matched = con.execute("""
        SELECT count(*), count(DISTINCT e.event_id) FROM events e JOIN versions v
        ON e.sensor_id = v.sensor_id AND v.valid_from <= e.timestamp
           AND (v.valid_to IS NULL OR e.timestamp < v.valid_to)""").fetchone()
    assert matched == (60_000, con.execute("SELECT count(DISTINCT event_id) FROM events").fetchone()[0])
    differ = " OR ".join(f"e.{c}::VARCHAR IS DISTINCT FROM v.{c}::VARCHAR" for c in EVENT_ATTRIBUTES)
    wrong = con.execute(f"""
        SELECT count(*) FROM events e JOIN versions v
        ON e.sensor_id = v.sensor_id AND v.valid_from <= e.timestamp
           AND (v.valid_to IS NULL OR e.timestamp < v.valid_to) WHERE {differ}""").fetchone()[0]
    assert wrong == 0
    # The run holds every kind of change, and the events cross some of them.
    reasons = {r for (r,) in con.execute("SELECT DISTINCT change_reason FROM changes").fetchall()}
    assert reasons == {"commission", "firmware_rollout", "firmware_rollback", "relocation", "replacement",
                       "decommission"}
    moved = con.execute("SELECT count(DISTINCT zone) FROM events WHERE sensor_id = (SELECT sensor_id FROM changes "
                        "WHERE change_reason = 'relocation' ORDER BY _commit_version LIMIT 1)").fetchone()[0]
    assert moved >= 1
    # The snapshot: the last version of every device that was not deleted.
    columns = ", ".join(REGISTRY_SCHEMA.names)
    final = f"SELECT {columns} FROM versions WHERE valid_to IS NULL"
    snapshot = f"SELECT {columns} FROM devices"
    for a, b in ((final, snapshot), (snapshot, final)):
        assert con.execute(f"SELECT count(*) FROM (({a}) EXCEPT ALL ({b}))").fetchone()[0] == 0
    manifest = json.loads((run / "_manifest.json").read_text())
    rows = con.execute("SELECT count(*) FROM devices").fetchone()[0]
    assert manifest["registry"]["files"]["devices"]["rows"] == rows > 0
    if faults:
        labels = con.execute(f"SELECT kind, count(*) FROM {read}('{run}/_device_change_labels.{ext}') GROUP BY kind")
        assert {k for k, _ in labels.fetchall()} == {"duplicate", "out_of_order", "late"}


def test_registry_off_writes_no_registry_and_the_fleet_events_stay_as_they_were(tmp_path):
    on = busy_spec()
    off = dataclasses.replace(on, fleet=dataclasses.replace(on.fleet, registry=None))
    plain = generator_spec(Config(random_seed=11, anchor_time=ANCHOR, time_spread_hours=48.0, profile="fleet",
                                  device_count=80))
    assert generate_range(off, 0, 5000).equals(generate_range(plain, 0, 5000))
    assert not generate_range(on, 0, 5000).equals(generate_range(off, 0, 5000))  # the registry moves devices
    run = write_files(Config(num_events=100, random_seed=1, anchor_time=ANCHOR, profile="fleet", device_count=10,
                             output_dir=str(tmp_path)), now=NOW).paths[0]
    assert run.is_file()  # a plain single file: no registry files, no folder


# ---- MERGE the change feed into a Delta table -------------------------------------------------------------------
def merge_changes(path: Path, changes: pa.Table) -> None:
    """Apply CDC rows (flat layout, any delivery order, duplicates allowed) to the Delta table at ``path`` the way
    a consumer does: the latest change per sensor_id by _commit_version, then one MERGE that never lets an older
    change overwrite a newer one (the table keeps each row's _commit_version)."""
    from deltalake import DeltaTable, write_deltalake

    con = duckdb.connect()
    con.register("batch", changes)
    latest = con.execute("""
        SELECT * FROM (SELECT DISTINCT * FROM batch WHERE _change_type <> 'update_preimage')
        QUALIFY row_number() OVER (PARTITION BY sensor_id ORDER BY _commit_version DESC) = 1""").to_arrow_table()
    columns = [*REGISTRY_SCHEMA.names, "_commit_version"]
    if not DeltaTable.is_deltatable(str(path)):
        write_deltalake(str(path), pa.schema([*REGISTRY_SCHEMA, pa.field("_commit_version", pa.int64())]).empty_table())
    (DeltaTable(str(path)).merge(latest, "t.sensor_id = s.sensor_id", source_alias="s", target_alias="t")
     .when_matched_delete("s._change_type = 'delete' AND s._commit_version > t._commit_version")
     .when_matched_update({c: f"s.{c}" for c in columns}, "s._commit_version > t._commit_version")
     .when_not_matched_insert({c: f"s.{c}" for c in columns}, "s._change_type <> 'delete'")
     .execute())


def sorted_rows(table: pa.Table) -> list[dict]:
    table = table.select(REGISTRY_SCHEMA.names)
    return table.take(pc.sort_indices(table, [("sensor_id", "ascending")])).to_pylist()


@pytest.mark.parametrize("faults", [False, True])
def test_merging_the_change_feed_gives_the_registry_snapshot_at_any_time(tmp_path, faults):
    """The changes committed in each interval of time, applied with Delta MERGE interval after interval, give the
    registry snapshot as of each interval's end: also when the feed is delivered with duplicates, disorder and late
    changes (``faults``), since the MERGE goes by _commit_version; all of them give the final registry."""
    from deltalake import DeltaTable

    spec = busy_spec(faults=faults)
    feed = change_feed(spec).changes
    commit = feed.column("_commit_timestamp")
    path = tmp_path / "devices"
    previous = None
    for hours in (0, 6, 20, 33, 48):
        cut = pa.scalar((spec.window_start_ms + hours * 3_600_000) * 1000, pa.timestamp("us", "UTC"))
        interval = pc.less_equal(commit, cut)
        if previous is not None:
            interval = pc.and_(interval, pc.greater(commit, previous))
        merge_changes(path, feed.filter(interval))
        previous = cut
        got = DeltaTable(str(path)).to_pyarrow_table()
        assert sorted_rows(got) == sorted_rows(registry_snapshot(spec, cut.value // 1000)), f"as of +{hours}h"
    merge_changes(path, feed)  # everything again, in delivery order: changes nothing
    assert sorted_rows(DeltaTable(str(path)).to_pyarrow_table()) == sorted_rows(registry_snapshot(spec))
    assert DeltaTable(str(path)).to_pyarrow_table().num_rows > 0


# ---- determinism ------------------------------------------------------------------------------------------------
def test_the_same_seed_gives_the_same_files_at_any_chunk_size_part_count_and_workers(tmp_path):
    one = write_run(tmp_path / "a", "ndjson", faults=True, chunk_size=60_000)
    other = write_run(tmp_path / "b", "ndjson", faults=True, chunk_size=7_777, events_per_file=25_000, workers=2)
    for name in ("devices.ndjson", "device_changes.ndjson", "_device_history.ndjson", "_device_change_labels.ndjson"):
        assert (one / name).read_bytes() == (other / name).read_bytes(), name
    events = [b"".join(p.read_bytes() for p in sorted(run.glob("part-*"))) for run in (one, other)]
    assert events[0] == events[1]


@pytest.mark.parametrize("layout", ["flat", "debezium"])
def test_any_partitioning_of_the_change_feed_gives_the_same_rows(layout):
    spec = busy_spec(faults=True)
    whole = change_feed(spec, layout).changes
    for partitions in (1, 3, 7):
        bounds = np.linspace(0, whole.num_rows, partitions + 1).astype(int)
        pieces = [change_range(busy_spec(faults=True), a, b, layout) for a, b in zip(bounds[:-1], bounds[1:])]
        assert pa.concat_tables(pieces).equals(whole)


def test_the_debezium_layout_carries_the_same_changes_as_the_flat_one():
    spec = busy_spec()
    flat = change_feed(spec, "flat").changes.to_pylist()
    debezium = change_feed(spec, "debezium").changes.to_pylist()
    by_version: dict[int, dict] = {}
    for row in flat:
        image = {c: row[c] for c in REGISTRY_SCHEMA.names}
        entry = by_version.setdefault(row["_commit_version"], {"before": None, "after": None})
        kind = row["_change_type"]
        entry["before" if kind in ("update_preimage", "delete") else "after"] = image
        entry["op"] = {"insert": "c", "delete": "d"}.get(kind, "u")
        entry["ts_ms"] = int(row["_commit_timestamp"].timestamp() * 1000)
    assert len(debezium) == len(by_version)
    for row in debezium:
        expected = by_version[row["source"]["seq"]]
        assert (row["before"], row["after"], row["op"], row["ts_ms"]) == \
            (expected["before"], expected["after"], expected["op"], expected["ts_ms"])


def test_history_versions_of_a_device_tile_its_life_and_follow_the_sequence():
    history = registry_history(busy_spec()).to_pandas()
    for _, rows in history.groupby("sensor_id"):
        rows = rows.sort_values("_commit_version")
        assert (rows["valid_from"].iloc[1:].values == rows["valid_to"].iloc[:-1].values).all()
        assert rows["valid_to"].iloc[:-1].notna().all()


def test_faults_are_labelled_where_they_are():
    spec = busy_spec(faults=True)
    feed = change_feed(spec)
    rows, labels = feed.changes.to_pylist(), feed.labels.to_pylist()
    kinds = {label["kind"] for label in labels}
    assert kinds == {"duplicate", "out_of_order", "late"}
    for label in labels:
        assert rows[label["row_index"]]["_commit_version"] == label["_commit_version"]
        if label["kind"] == "duplicate":
            assert rows[label["source_index"]] == rows[label["row_index"]]
    versions = [r["_commit_version"] for r in rows]
    assert versions != sorted(versions)
    clean = change_feed(busy_spec()).changes
    assert feed.changes.num_rows > clean.num_rows  # the copies


# ---- bad input --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("registry, message", [
    ({"rollback": {"fraction": 1.5}}, "registry.rollback.fraction must be a number >= 0.0 and <= 1.0, got 1.5"),
    ({"relocations": {"per_device_day": -1}}, "registry.relocations.per_device_day must be a number >= 0.0"),
    ({"faults": {"late": {"max": "soon"}}}, "registry.faults.late.max must be a duration"),
    ({"faults": {"duplicates": {"max_distance": 0}}}, "faults.duplicates.max_distance must be an integer >= 1"),
    ({"replacement_per_device_day": 0.1}, "registry.replacement_per_device_day is not a known field (did you mean"),
    ([1, 2], "registry must be a mapping"),
])
def test_a_bad_registry_spec_is_one_line_naming_the_field(registry, message):
    with pytest.raises(InputError) as caught:
        generator_spec(Config(random_seed=1), spec={"profile": "fleet", "registry": registry})
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_bad_registry_parameters_exit_2_before_any_output(tmp_path, capsys):
    out = tmp_path / "out"
    cases = [(["--profile", "fleet", "--registry", "perhaps"], "DEVICE_REGISTRY must be true or false"),
             (["--profile", "fleet", "--registry", "true", "--cdc-layout", "maxwell"],
              "CDC_LAYOUT must be one of flat, debezium"),
             (["--registry", "true"], "DEVICE_REGISTRY needs the fleet profile")]
    for args, message in cases:
        assert main(["generate", "-n", "10", "-o", str(out), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]
        assert not out.exists() or not any(out.iterdir())
    with pytest.raises(InputError, match="DEVICE_REGISTRY is off"):
        registry_snapshot(generator_spec(Config(random_seed=1, profile="fleet", device_count=5)))


def test_registry_parameters_have_their_defaults_in_one_place():
    from iotgen.spec.spec_file import default

    assert default(Registry, "rollback.within") == Registry().rollback_within_ms
    assert default(CdcFaults, "late.max") == CdcFaults().late_max_ms
    assert busy_spec().fleet.registry.faults == CdcFaults()


def test_the_example_specs_registry_section_is_valid_once_uncommented():
    from iotgen.spec.spec_file import EXAMPLE_PATH, load_spec

    lines = EXAMPLE_PATH.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# registry:"))
    block = "\n".join(line[2:] for line in lines[start:] if line.startswith("# "))
    spec = load_spec({"profile": "fleet", **_yaml(block)})
    registry = spec.build_registry()
    assert registry.faults.late == 0.005 and registry.rollback_within_ms == 2 * 3_600_000


def _yaml(text: str) -> dict:
    import yaml

    return yaml.safe_load(text)


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_the_registry_tables_sit_next_to_the_events_table_and_hold_the_latest_run(tmp_path, fmt):
    from iotgen.outputs.registry import registry_datasets
    from iotgen.runs.tables import write_table

    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"profile": "fleet", "fleet": {"device_count": 40}, "registry": BUSY}))
    config = Config(num_events=3000, random_seed=5, anchor_time=ANCHOR, output_dir=str(tmp_path / "out"),
                    output_format=fmt, spec_file=str(path), cdc_layout="debezium")
    for _ in range(2):  # a second run replaces the registry tables (and appends its events)
        result = write_table(config)
    assert sorted(result.registry) == ["_device_history", "device_changes", "devices"]
    expected = registry_datasets(generator_spec(config), "debezium")
    for name, target in result.registry.items():
        assert target.location.endswith("iot_events_" + name.lstrip("_"))
        got = target.read()
        assert got.num_rows == expected[name].num_rows > 0
        assert sorted(map(str, got.to_pylist())) == sorted(map(str, expected[name].to_pylist()))
    assert result.target.read().num_rows == 6000


@pytest.mark.parametrize("fmt", ["ndjson", "json", "csv", "parquet"])
def test_debezium_files_read_back_as_the_changes_they_carry(tmp_path, fmt):
    """before/after/source are nested objects in JSON, JSON text in CSV, structs in Parquet: DuckDB reads each."""
    run = write_run(tmp_path, fmt, layout="debezium", num_events=2000)
    expected = change_feed(busy_spec(), "debezium").changes
    con = duckdb.connect()
    got = con.execute(f"SELECT * FROM {reader(fmt)}('{run}/device_changes.{fmt}')").to_arrow_table()
    assert got.num_rows == expected.num_rows
    assert got.column("op").to_pylist() == expected.column("op").to_pylist()
    after = got.column("after").to_pylist()
    if fmt == "csv":
        after = [None if a is None else json.loads(a) for a in after]
    ids = [None if a is None else a["sensor_id"] for a in after]
    assert ids == [None if a is None else a["sensor_id"] for a in expected.column("after").to_pylist()]
