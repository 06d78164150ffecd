"""json_column: structure, value specs, key-count and key uniformity, user pools, determinism, edge sizes."""

from __future__ import annotations

import json
import math
import re
from collections import Counter

import numpy as np
import pytest

from iotgen.settings.catalogs import IOT_KEY_POOL, NESTED_KEYS, Catalogs, parse_key_pool
from iotgen.generation.dynamic_json import COMBINATION_LIMIT, build_json_column, choose_keys, piece_table
from iotgen.generation.generator import BLOCK_SIZE, GeneratorSpec, block_rng, generate_dynamic_json, generate_range

POOL = Catalogs.build().key_pool
SPECS = dict(POOL)


def column(pool=POOL, min_keys=5, max_keys=25, n=20_000, seed=1) -> list[str]:
    return build_json_column(pool, min_keys, max_keys, np.random.default_rng(seed), n).to_pylist()


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return column()


@pytest.fixture(scope="module")
def objects(texts) -> list[dict]:
    return [json.loads(t) for t in texts]


def number_texts(text: str, key: str) -> list[str]:
    """The raw number texts of ``"key":`` values (also inside arrays)."""
    match = re.search(r'"%s":(\[[^\]]*\]|[^,}]+)' % re.escape(key), text)
    return [] if match is None else re.findall(r"-?\d+(?:\.\d+)?", match.group(1))


def check(value, spec, path):
    kind, p = spec.kind, spec.params
    if kind in ("float", "int"):
        low, high = (p[0], p[1])
        assert type(value) is (float if kind == "float" and p[2] > 0 else int), path
        assert low <= value <= high, (path, value)
    elif kind == "bool":
        assert isinstance(value, bool), path
    elif kind == "choice":
        assert value in p[0], path
    elif kind == "float_array":
        assert p[0] <= len(value) <= p[1], path
        assert all(p[2] <= v <= p[3] and round(v, p[4]) == v for v in value), path
    elif kind == "string_array":
        assert p[0] <= len(value) <= p[1] and len(set(value)) == len(value) and set(value) <= set(p[2]), path
    else:
        assert isinstance(value, dict) and list(value) == [name for name, _ in spec.children], path
        for name, child in spec.children:
            check(value[name], child, f"{path}.{name}")


def test_every_row_is_a_json_object_of_pool_keys_in_pool_order(texts, objects):
    order = [name for name, _ in POOL]
    for text, obj in zip(texts, objects):
        assert text.startswith("{") and text.endswith("}") and " " not in text
        keys = list(obj)
        assert keys == sorted(keys, key=order.index)
        for key, value in obj.items():
            check(value, SPECS[key], key)


def test_numbers_keep_their_spec_decimals(texts):
    for key in ("pm25_ugm3", "energy_kwh", "current_a", "wind_speed_ms", "co2_ppm", "readings"):
        spec = SPECS[key]
        decimals = spec.params[2] if spec.kind == "float" else spec.params[4] if spec.kind == "float_array" else 0
        seen = [t for text in texts[:3000] for t in number_texts(text, key)]
        assert seen and all((t.split(".")[1] if "." in t else "") == "" if not decimals else
                            len(t.split(".")[1]) == decimals for t in seen), key
    lat = [t for text in texts[:3000] for t in re.findall(r'"lat":(-?[\d.]+)', text)]
    assert lat and all(len(t.split(".")[1]) == 6 for t in lat)


def test_key_count_uniform_and_every_key_equally_likely(objects):
    n = len(objects)
    counts = Counter(len(o) for o in objects)
    assert set(counts) == set(range(5, 26))
    expected = n / 21
    assert max(abs(c - expected) for c in counts.values()) < 5 * math.sqrt(expected)
    per_key = Counter(k for o in objects for k in o)
    expected = n * 15 / len(POOL)
    assert set(per_key) == set(SPECS)
    assert max(abs(c - expected) for c in per_key.values()) < 5 * math.sqrt(expected)


def test_values_spread_over_their_ranges(objects):
    co2 = [o["co2_ppm"] for o in objects if "co2_ppm" in o]
    assert min(co2) < 500 and max(co2) > 4800 and abs(np.mean(co2) - 2690) < 60
    lat = [o["location"]["lat"] for o in objects if "location" in o]
    assert min(lat) < -50 and max(lat) > 60 and any(-1 < v < 0 for v in lat)
    rates = {k: np.mean([o[k] for o in objects if k in o]) for k in ("door_open", "motion_detected")}
    assert abs(rates["door_open"] - 0.1) < 0.02 and abs(rates["motion_detected"] - 0.2) < 0.025
    modes = Counter(o["operating_mode"] for o in objects if "operating_mode" in o)
    assert set(modes) == {"auto", "manual", "eco", "boost"} and min(modes.values()) > 0.2 * sum(modes.values())
    lengths = Counter(len(o["tags"]) for o in objects if "tags" in o)
    assert set(lengths) == {0, 1, 2, 3, 4} and min(lengths.values()) > 0.15 * sum(lengths.values())
    readings = Counter(len(o["readings"]) for o in objects if "readings" in o)
    assert set(readings) == {1, 2, 3, 4, 5}


def test_string_arrays_beyond_the_combination_table():
    values = [f"v{i}" for i in range(12)]
    assert sum(math.perm(12, k) for k in range(0, 7)) > COMBINATION_LIMIT
    pool = parse_key_pool({"many": ("string_array", 0, 6, values), "nums": ("float_array", 0, 3, -1, 1, 3),
                           "x": ("int", -5, 5)}, {})
    objects = [json.loads(t) for t in column(pool, 3, 3, n=4000)]
    lengths = Counter(len(o["many"]) for o in objects)
    assert set(lengths) == set(range(7))
    assert all(len(set(o["many"])) == len(o["many"]) and set(o["many"]) <= set(values) for o in objects)
    firsts = Counter(o["many"][0] for o in objects if o["many"])
    assert set(firsts) == set(values)
    assert Counter(len(o["nums"]) for o in objects).keys() == {0, 1, 2, 3}
    assert all(-1 <= v <= 1 for o in objects for v in o["nums"]) and {o["x"] for o in objects} == set(range(-5, 6))


def test_nested_objects_with_arrays_and_split_numbers():
    nested = {"box": {"big": ("float", -1e6, 1e6, 3), "list": ("string_array", 1, 2, ["a", "b", "c"]),
                      "flag": ("bool", 0.5)}}
    pool = parse_key_pool({"box": ("object",), "n": ("int", 0, 10**9)}, nested)
    objects = [json.loads(t) for t in column(pool, 1, 2, n=3000)]
    boxes = [o["box"] for o in objects if "box" in o]
    assert boxes and all(list(b) == ["big", "list", "flag"] for b in boxes)
    assert all(-1e6 <= b["big"] <= 1e6 and 1 <= len(b["list"]) <= 2 for b in boxes)
    big = [o["n"] for o in objects if "n" in o]
    assert max(big) > 9 * 10**8 and min(big) < 10**8


def test_user_pools_list_of_names_single_key_and_full_pool():
    cats = Catalogs.build(iot_key_pool=["alpha", "beta", "gamma", "co2_ppm"], nested_keys={})
    objects = [json.loads(t) for t in column(cats.key_pool, 1, 4, n=2000)]
    assert {k for o in objects for k in o} == {"alpha", "beta", "gamma", "co2_ppm"}
    one = parse_key_pool({"only": ("int", 1, 1)}, {})
    assert set(column(one, 1, 1, n=50)) == {'{"only":1}'}
    everything = [json.loads(t) for t in column(POOL, len(POOL), len(POOL), n=300)]
    assert all(list(o) == [name for name, _ in POOL] for o in everything)


def test_single_row_and_empty():
    assert len(column(n=1)) == 1 and json.loads(column(n=1)[0])
    assert column(n=0) == []
    one = generate_dynamic_json(rng=3)
    assert 5 <= len(one) <= 25 and set(one) <= set(IOT_KEY_POOL)


def test_choose_keys_exact_counts_any_pool():
    rng = np.random.default_rng(5)
    for pool, low, high in ((38, 5, 25), (1, 1, 1), (300, 1, 300), (7, 7, 7)):
        chosen = choose_keys(rng, 4000, pool, low, high)
        counts = chosen.sum(axis=0)
        assert chosen.shape == (pool, 4000) and counts.min() >= low and counts.max() <= high
        if high > low:
            assert len(np.unique(counts)) > min(high - low, 20)


def test_deterministic_per_seed_and_block():
    assert column(n=3000, seed=11) == column(n=3000, seed=11)
    assert column(n=3000, seed=11) != column(n=3000, seed=12)
    spec = GeneratorSpec(seed=4, catalogs=Catalogs.build(), window_start_ms=0, window_span_ms=10**9)
    a = generate_range(spec, BLOCK_SIZE - 5, BLOCK_SIZE + 5).column("json_column")
    b = generate_range(spec, BLOCK_SIZE - 5, BLOCK_SIZE + 5).column("json_column")
    assert a.equals(b)
    block = build_json_column(POOL, 5, 25, block_rng(4, 0), 3)
    assert block.equals(build_json_column(POOL, 5, 25, block_rng(4, 0), 3))


def test_compiled_tables_are_cached_and_small():
    compiled = piece_table(POOL)
    assert piece_table(POOL) is compiled
    assert len(compiled.pieces) < 40_000 and compiled.pieces.nbytes < 1_000_000
    assert all(k in NESTED_KEYS or k in IOT_KEY_POOL for k, _ in POOL)


def test_number_specs_stay_inside_their_bounds_or_fail_clearly():
    pool = parse_key_pool({"a": ("float", 0.123, 0.2, 2), "b": ("float", 49.5, 49.6, 2)}, {})
    objects = [json.loads(t) for t in column(pool, 2, 2, n=3000)]
    assert min(o["a"] for o in objects) == 0.13 and max(o["a"] for o in objects) == 0.2
    assert min(o["b"] for o in objects) == 49.5 and max(o["b"] for o in objects) == 49.6
    for bad, where in (({"x": ("float", 0.121, 0.129, 2)}, "of x:"), ({"y": ("float", -1e10, 1e10, 9)}, "of y:")):
        with pytest.raises(ValueError, match=where):
            column(parse_key_pool(bad, {}), 1, 1, n=3)
