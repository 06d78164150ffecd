"""The generator: schema, ranges, consistency, json_column structure, determinism, per-row functions."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from iotgen import generate_events, generate_fixed_row, generate_table
from iotgen.generation import generator
from iotgen.generation.generator import (
    BLOCK_SIZE,
    BlockCursor,
    GeneratorSpec,
    block_slices,
    event_dicts,
    generate_dynamic_json,
    generate_range,
)
from iotgen.settings.catalogs import IOT_KEY_POOL, NESTED_KEYS, Catalogs
from iotgen.settings.config import Config
from iotgen.settings.schema import ARROW_SCHEMA, COLUMN_NAMES
from iotgen.spec.spec_file import generator_spec

EXPECTED_COLUMNS = (
    "event_id timestamp device_type firmware_version battery_level sensor_id temperature humidity pressure status "
    "region zone model version signal_strength uptime_hours fault_count last_calibration maintenance_due "
    "created_at updated_at source env json_column"
).split()
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ANCHOR = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)


def spec(**config) -> GeneratorSpec:
    config.setdefault("random_seed", 7)
    config.setdefault("anchor_time", ANCHOR)
    return generator_spec(Config(**config))


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return generate_table(spec(), 30_000)


@pytest.fixture(scope="module")
def rows(table):
    return table.to_pylist()


def test_schema_names_order_and_types(table):
    assert list(COLUMN_NAMES) == EXPECTED_COLUMNS
    assert table.schema.equals(ARROW_SCHEMA, check_metadata=False)
    assert table.num_rows == 30_000


def test_event_ids_are_unique_uuid4(table):
    ids = table.column("event_id").to_pylist()
    assert len(set(ids)) == len(ids)
    assert all(UUID4.match(i) for i in ids)


def test_timestamps_inside_window_and_consistent(table):
    start = ANCHOR - dt.timedelta(days=7)
    end = start + dt.timedelta(hours=168)
    ts = table.column("timestamp")
    assert pc.min(ts).as_py() >= start and pc.max(ts).as_py() < end
    assert pc.all(pc.greater_equal(table.column("created_at"), ts)).as_py()
    assert pc.all(pc.greater_equal(table.column("updated_at"), table.column("created_at"))).as_py()
    assert pc.all(pc.less(table.column("last_calibration"), ts)).as_py()
    # a real spread over the window, not a clump
    hours = (pc.cast(ts, pa.int64()).to_numpy() // 3_600_000_000)
    assert len(np.unique(hours)) > 160


def test_maintenance_due_agrees_with_calibration(rows):
    for row in rows[:5000]:
        overdue = row["timestamp"] - row["last_calibration"] > dt.timedelta(days=180)
        assert row["maintenance_due"] == overdue


@pytest.mark.parametrize("column, low, high, decimals", [
    ("battery_level", 0, 100, 1), ("humidity", 0, 100, 1), ("temperature", -40, 85, 2),
    ("pressure", 870, 1085, 2), ("uptime_hours", 0, 8760, 2),
])
def test_float_columns_in_range_with_their_decimals(table, column, low, high, decimals):
    values = table.column(column).to_numpy()
    assert values.min() >= low and values.max() <= high
    assert np.allclose(np.round(values, decimals), values)
    assert values.std() > 0


def test_integer_and_categorical_columns(table):
    signal = table.column("signal_strength").to_numpy()
    assert signal.min() >= -120 and signal.max() <= -30
    assert set(table.column("version").to_pylist()) <= {1, 2, 3, 4, 5}
    assert table.column("fault_count").to_numpy().min() >= 0
    cats = Catalogs.build()
    for column, cat in (("device_type", cats.device_types), ("status", cats.status_values),
                        ("region", cats.regions), ("zone", cats.zones), ("model", cats.models),
                        ("source", cats.sources), ("env", cats.envs)):
        assert set(table.column(column).to_pylist()) == set(cat.values), column
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in table.column("firmware_version").to_pylist()[:2000])
    assert all(re.fullmatch(r"sensor-\d{5}", v) for v in table.column("sensor_id").to_pylist()[:2000])


def test_weighted_catalog_follows_its_weights(table):
    counts = Counter(table.column("env").to_pylist())
    share = counts["prod"] / table.num_rows
    assert 0.78 < share < 0.82  # ENVS weights prod at 0.8


def _check_value(value, spec_tuple, nested_subkeys=None):
    kind = spec_tuple[0]
    if kind == "float":
        low, high, decimals = spec_tuple[1:]
        assert isinstance(value, (int, float)) and not isinstance(value, bool)
        assert low <= value <= high and round(value, decimals) == pytest.approx(value)
    elif kind == "int":
        assert isinstance(value, int) and not isinstance(value, bool) and spec_tuple[1] <= value <= spec_tuple[2]
    elif kind == "bool":
        assert isinstance(value, bool)
    elif kind == "choice":
        assert value in spec_tuple[1]
    elif kind == "float_array":
        assert isinstance(value, list) and spec_tuple[1] <= len(value) <= spec_tuple[2]
        assert all(spec_tuple[3] <= v <= spec_tuple[4] for v in value)
    elif kind == "string_array":
        assert isinstance(value, list) and spec_tuple[1] <= len(value) <= spec_tuple[2]
        assert len(set(value)) == len(value) and set(value) <= set(spec_tuple[3])
    elif kind == "object":
        assert isinstance(value, dict) and set(value) == set(nested_subkeys)
        for sub, sub_spec in nested_subkeys.items():
            _check_value(value[sub], sub_spec)


def test_json_column_keys_types_and_nesting(table):
    counts = Counter()
    keys_seen = Counter()
    for text in table.column("json_column").to_pylist():
        obj = json.loads(text)
        assert isinstance(obj, dict)
        counts[len(obj)] += 1
        for key, value in obj.items():
            keys_seen[key] += 1
            _check_value(value, IOT_KEY_POOL[key], NESTED_KEYS.get(key))
    assert set(counts) == set(range(5, 26))
    expected = table.num_rows / 21
    assert all(abs(c - expected) < 0.15 * expected for c in counts.values()), counts
    # every key equally likely: mean keys 15 of 38
    assert set(keys_seen) == set(IOT_KEY_POOL)
    per_key = table.num_rows * 15 / len(IOT_KEY_POOL)
    assert all(abs(c - per_key) < 0.1 * per_key for c in keys_seen.values()), keys_seen


def test_json_column_bool_probability(table):
    values = [json.loads(t).get("door_open") for t in table.column("json_column").to_pylist()]
    present = [v for v in values if v is not None]
    assert 0.07 < sum(present) / len(present) < 0.13  # ("bool", 0.1)


@pytest.mark.parametrize("min_keys, max_keys", [(1, 1), (3, 3), (38, 38), (10, 20)])
def test_key_count_bounds(min_keys, max_keys):
    batch = generate_range(spec(min_keys=min_keys, max_keys=max_keys), 0, 3000)
    lengths = {len(json.loads(t)) for t in batch.column("json_column").to_pylist()}
    assert min(lengths) >= min_keys and max(lengths) <= max_keys
    assert len(lengths) == max_keys - min_keys + 1


def test_custom_key_pool_list_of_names_and_single_key():
    cats = Catalogs.build(iot_key_pool=["alpha", "beta", "gamma"], nested_keys={})
    s = GeneratorSpec(seed=1, catalogs=cats, window_start_ms=0, window_span_ms=1000, min_keys=1, max_keys=3)
    texts = generate_range(s, 0, 500).column("json_column").to_pylist()
    assert {k for t in texts for k in json.loads(t)} == {"alpha", "beta", "gamma"}
    one = Catalogs.build(iot_key_pool={"only": ("int", 1, 1)}, nested_keys={})
    s1 = GeneratorSpec(seed=1, catalogs=one, window_start_ms=0, window_span_ms=1000, min_keys=1, max_keys=1)
    assert set(generate_range(s1, 0, 10).column("json_column").to_pylist()) == {'{"only":1}'}


def test_catalog_overrides_reach_the_fast_path():
    cats = Catalogs.build(device_types={"pump": 3, "valve": 1}, regions=["mars-1"])
    batch = generate_range(generator_spec(Config(random_seed=1), cats), 0, 4000)
    assert set(batch.column("region").to_pylist()) == {"mars-1"}
    pumps = batch.column("device_type").to_pylist().count("pump") / 4000
    assert 0.72 < pumps < 0.78


def test_same_seed_same_events_whatever_the_chunking():
    s = spec()
    whole = generate_table(s, 3 * BLOCK_SIZE + 123)
    for chunk in (1000, BLOCK_SIZE, 5003, 100_000):
        chunked = pa.Table.from_batches(list(generate_events(s, 3 * BLOCK_SIZE + 123, chunk_size=chunk)))
        assert chunked.equals(whole), chunk
    middle = generate_range(s, BLOCK_SIZE - 10, 2 * BLOCK_SIZE + 10)
    assert pa.Table.from_batches([middle]).equals(whole.slice(BLOCK_SIZE - 10, BLOCK_SIZE + 20).combine_chunks())
    # the order blocks are produced in does not matter
    later_first = [generate_range(s, 2 * BLOCK_SIZE, 3 * BLOCK_SIZE), generate_range(s, 0, 2 * BLOCK_SIZE)]
    assert pa.Table.from_batches(later_first[1:] + later_first[:1]).equals(
        whole.slice(0, 3 * BLOCK_SIZE).combine_chunks())


def test_block_slices_cover_a_range_block_by_block():
    assert list(block_slices(10, 10)) == []
    assert list(block_slices(BLOCK_SIZE - 5, 2 * BLOCK_SIZE + 3)) == [
        (0, BLOCK_SIZE - 5, 5), (1, 0, BLOCK_SIZE), (2, 0, 3)]


def test_the_cursor_cuts_steps_of_any_size_and_generates_each_block_once(monkeypatch):
    s = spec(random_seed=9)
    expected = generate_range(s, 8000, 8000 + 3 * BLOCK_SIZE)
    made = []
    real = generator.labelled_block
    monkeypatch.setattr(generator, "labelled_block", lambda sp, b, j="text": made.append(b) or real(sp, b, j))
    cursor = BlockCursor(s, 8000)
    steps = [cursor.take(n).events for n in (150, 300, 1, 9000, 2 * BLOCK_SIZE, BLOCK_SIZE - 9451)]
    assert cursor.position == 8000 + 3 * BLOCK_SIZE
    assert made == [0, 1, 2, 3]  # in order, once each
    assert pa.Table.from_batches(steps).combine_chunks().equals(pa.Table.from_batches([expected]))
    assert cursor.take(0).events.num_rows == 0 and cursor.take(0).truth is None  # no scenarios: no truth


def test_the_core_takes_a_spec_and_the_public_functions_take_a_config_through_the_one_path(monkeypatch):
    """Generation takes a GeneratorSpec only; iotgen.generate_events/generate_table/generate_fixed_row take a Config
    too and build its spec with iotgen.spec.spec_file.generator_spec, the one Config -> spec function."""
    import iotgen
    import iotgen.spec.spec_file

    config = Config(random_seed=3, anchor_time=ANCHOR, num_events=10, chunk_size=4)
    with pytest.raises(TypeError, match="takes a GeneratorSpec.*iotgen.generate_events"):
        generator.generate_events(config)
    calls = []
    real = iotgen.spec.spec_file.generator_spec
    monkeypatch.setattr(iotgen.spec.spec_file, "generator_spec", lambda *a, **k: calls.append(a) or real(*a, **k))
    chunks = list(iotgen.generate_events(config))
    assert [len(c) for c in chunks] == [4, 4, 2]  # NUM_EVENTS and CHUNK_SIZE of the Config
    assert pa.Table.from_batches(chunks).equals(generator.generate_table(real(config), 10))
    assert iotgen.generate_table(config).equals(pa.Table.from_batches(chunks))
    assert iotgen.generate_fixed_row(5, config=config) == iotgen.generate_fixed_row(5, config=config)
    assert len(calls) == 4
    assert not hasattr(GeneratorSpec, "from_config")


def test_different_or_missing_seed_gives_different_events():
    a = generate_range(spec(random_seed=1), 0, 100).column("event_id").to_pylist()
    b = generate_range(spec(random_seed=2), 0, 100).column("event_id").to_pylist()
    assert not set(a) & set(b)
    fresh1 = generator_spec(Config())
    fresh2 = generator_spec(Config())
    assert fresh1.seed != fresh2.seed
    assert generate_range(fresh1, 0, 5).column("event_id") != generate_range(fresh2, 0, 5).column("event_id")


def test_generate_events_from_config_and_pandas():
    frames = list(generate_events(Config(num_events=2500, chunk_size=1000, random_seed=3), as_pandas=True))
    assert [len(f) for f in frames] == [1000, 1000, 500]
    assert list(frames[0].columns) == EXPECTED_COLUMNS


def test_event_dicts_are_json_ready(table):
    event = event_dicts(table.slice(0, 1).to_batches()[0])[0]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", event["timestamp"])
    assert isinstance(event["json_column"], dict)
    json.dumps(event)


def test_per_row_functions_keep_the_seed_api():
    row = generate_fixed_row(rng=5)
    assert list(row) == EXPECTED_COLUMNS[:-1]
    assert generate_fixed_row(rng=5) == row
    custom = generate_fixed_row(rng=np.random.default_rng(1), device_types=["drone"], envs={"lab": 1})
    assert custom["device_type"] == "drone" and custom["env"] == "lab"
    payload = generate_dynamic_json(min_keys=3, max_keys=4, key_pool=["a", "b", "c", "d", "e"], nested_keys={}, rng=2)
    assert 3 <= len(payload) <= 4 and set(payload) <= set("abcde")
    default = generate_dynamic_json(rng=9)
    assert 5 <= len(default) <= 25


@pytest.mark.parametrize("kwargs, message", [
    ({"device_types": []}, "DEVICE_TYPES must not be empty"),
    ({"regions": {"a": -1}}, "REGIONS weights"),
    ({"colours": ["red"]}, "unknown catalog override"),
])
def test_bad_catalog_overrides(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_fixed_row(rng=1, **kwargs)


@pytest.mark.parametrize("pool, nested, message", [
    ([], {}, "IOT_KEY_POOL must be a non-empty"),
    ({"x": ("float", 5, 1, 2)}, {}, "invalid parameters for a 'float' spec"),
    ({"x": ("object",)}, {}, "NESTED_KEYS must give its sub-keys"),
    ({"x": ("colour",)}, {}, "first item is one of"),
])
def test_bad_key_pools(pool, nested, message):
    with pytest.raises(ValueError, match=message):
        Catalogs.build(iot_key_pool=pool, nested_keys=nested)


def test_more_keys_than_the_pool_holds():
    with pytest.raises(ValueError, match=r"MAX_KEYS must be <= the number of keys in IOT_KEY_POOL \(38\)"):
        generator_spec(Config(max_keys=40))
    with pytest.raises(ValueError, match="MAX_KEYS"):
        generate_dynamic_json(min_keys=2, max_keys=9, key_pool=["a", "b"], nested_keys={})
