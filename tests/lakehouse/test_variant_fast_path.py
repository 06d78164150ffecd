"""The ingest's VARIANT fast path (iotgen.formats.pool_json): bodies whose ``json_column`` is iotgen's own JSON are
encoded from the typed parse, the rest by DuckDB, and every body decodes to the same value either way.

Each batch is decoded twice, with the fast path (a key pool) and without it (``key_pool=()``: DuckDB for every
row), and compared row by row: the same events, rejections and reasons, and ``json_column`` values that PySpark's
independent decoder (``VariantVal``) reads back as the same JSON with the same types (int64 vs double, -0.0).
The bytes are not the same: fast rows share the key pool's metadata (DuckDB writes each row's own keys, so the
field ids differ too); the tests use that to tell which rows took the fast path."""

from __future__ import annotations

import json
import math
import os
import random

import numpy as np
import pyarrow as pa
import pytest
from lakehouse_support import bodies_of, events

from iotgen.formats.decoding import decode_bodies
from iotgen.formats.pool_json import compile_pool
from iotgen.generation.generator import generate_range
from iotgen.runs.ingest import json_column_pool
from iotgen.settings.catalogs import Catalogs
from iotgen.settings.config import Config
from iotgen.spec.spec_file import PROJECT_ROOT, generator_spec, load_spec

DEFAULT_POOL = Catalogs.build().key_pool
EXAMPLE_SPEC = PROJECT_ROOT / "iotgen" / "spec" / "example_spec.yaml"


def _typed(value):
    """A value with its types spelled out, so that 1 != 1.0 and 0.0 != -0.0."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, float):
        return ("double", repr(value))
    return (type(value).__name__, value)


def _value(variant: dict | None):
    from pyspark.sql.types import VariantVal

    if variant is None:
        return "SQL NULL"
    return _typed(VariantVal(variant["value"], variant["metadata"]).toPython())


def assert_same_as_general_path(bodies, key_pool=DEFAULT_POOL) -> np.ndarray:
    """Decode with and without the fast path; the same results. Returns which event rows took the fast path."""
    fast = decode_bodies(bodies, json_column="variant", key_pool=key_pool, use_threads=False)
    general = decode_bodies(bodies, json_column="variant", key_pool=(), use_threads=False)
    assert fast.indices.tolist() == general.indices.tolist()
    assert fast.rejected == general.rejected
    assert fast.events.schema == general.events.schema
    assert fast.events.drop_columns(["json_column"]).equals(general.events.drop_columns(["json_column"]))
    got = fast.events.column("json_column").to_pylist()
    want = general.events.column("json_column").to_pylist()
    for row, (a, b) in enumerate(zip(got, want)):
        assert _value(a) == _value(b), (row, bodies[fast.indices[row]])
    metadata = compile_pool(key_pool).metadata if key_pool else None
    return np.array([v is not None and v["metadata"] == metadata for v in got], dtype=bool)


def test_generated_bodies_all_take_the_fast_path_and_decode_to_the_generated_objects():
    table = events(3000, seed=61)
    bodies = [b.encode() for b in bodies_of(table)]
    fast_rows = assert_same_as_general_path(bodies)
    assert fast_rows.all()  # a detector that sends everything to DuckDB fails here
    decoded = decode_bodies(bodies, json_column="variant")
    values = decoded.events.column("json_column").to_pylist()
    originals = table.column("json_column").to_pylist()
    for i in (0, 1, 1234, 2999):
        assert _value(values[i]) == _typed(json.loads(originals[i]))
    # the generator's own VARIANT of the same events: the same bytes, value and metadata
    generated = generate_range(generator_spec(Config(random_seed=61, num_events=3000,
                                                     anchor_time="2026-03-01T00:00:00Z")), 0, 3000,
                               json_column="variant")
    assert decoded.events.column("json_column").combine_chunks().equals(generated.column("json_column"))


def _scenario_bodies(profile: str, seed: int, n: int, spec=None) -> tuple[list[bytes], Config]:
    config = Config(random_seed=seed, num_events=n, anchor_time="2026-03-01T00:00:00Z", num_sensors=200,
                    profile=profile, spec_file=str(EXAMPLE_SPEC) if spec is None else "")
    batch = generate_range(generator_spec(config, spec=spec), 0, n)
    return [b.encode() for b in bodies_of(pa.Table.from_batches([batch]))], config


@pytest.mark.parametrize("profile", ["independent", "fleet"])
def test_every_scenario_of_the_example_spec_decodes_the_same(profile):
    """nulls, malformed_json, schema_drift (add, change_type, remove), late, out of order, duplicates, replays,
    clock skew, spikes...: with the default pool, and with the ingest's pool (the spec's, with the key its
    drift adds)."""
    bodies, config = _scenario_bodies(profile, seed=62, n=6000)
    pool = json_column_pool(config)
    assert pool is not None and dict(pool)["firmware_channel"].kind == "choice"  # the drift's added key
    default_fast = assert_same_as_general_path(bodies)
    ingest_fast = assert_same_as_general_path(bodies, pool)
    texts = [b.decode() for b in bodies]
    decoded = decode_bodies(bodies, json_column="variant", key_pool=pool)
    good = [texts[i] for i in decoded.indices]
    changed = np.array(['"co2_ppm":"' in t for t in good])  # change_type: never fast
    added = np.array(['"firmware_channel":' in t for t in good])
    assert not ingest_fast[changed].any() and not default_fast[added].any()
    assert ingest_fast[added & ~changed].all() and ingest_fast[~added & ~changed].all()
    if profile == "independent":  # events across the whole week: every drift change is in the batch
        assert changed.sum() > 100 and (added & ~changed).sum() > 100
    assert any("json_column" in reason or "must be an object" in reason for _, reason in decoded.rejected)


def test_registry_and_offline_events_decode_the_same():
    spec = {"registry": {}, "scenarios": {"offline": {"rate": 0.2, "duration": "2h", "buffer": 100,
                                                      "overflow": "drop_oldest", "upload_interval": "100ms"}}}
    config = Config(random_seed=63, num_events=3000, anchor_time="2026-03-01T00:00:00Z", num_sensors=50,
                    profile="fleet", device_registry=True)
    batch = generate_range(generator_spec(config, spec=spec), 0, 3000)
    bodies = [b.encode() for b in bodies_of(pa.Table.from_batches([batch]))]
    assert assert_same_as_general_path(bodies).all()


def _with_json_column(body: str, text: str | None) -> str:
    start = body.index('"json_column":')
    if text is None:  # no json_column at all
        return body[:start].rstrip(",") + "}"
    return body[:start] + '"json_column":' + text + "}"


HAND_MADE = {  # json_column text -> does it take the fast path
    '{"co2_ppm":412,"noise_db":71.5}': True,
    '{}': True,
    '{"power_source":"' + "x" * 65 + '"}': True,            # a long string (> 63 bytes; 64: see below)
    '{"power_source":"' + "y" * 63 + '"}': True,            # the longest short string
    '{"power_source":"' + "é" * 40 + '"}': True,            # 80 bytes of non-ASCII
    '{"power_source":"café ☕"}': True,
    '{"power_source":""}': True,
    '{"noise_db":-0.0,"rpm":-0,"voc_ppb":0}': True,
    '{"tags":[],"error_codes":["E101"],"readings":[1.25,0.50]}': True,
    '{"energy_kwh":12345.678901234567890123}': True,         # more digits than a double holds
    '{"location":{"lat":1.000001,"site":"plant-1"},"config":{}}': True,
    '{"diagnostics":{"healthy":true,"restarts":3},"door_open":false}': True,
    '{"co2_ppm":412,"extra":1}': False,                      # a key not in the pool
    '{"co2_ppm":null}': False,                               # an explicit null
    '{"noise_db":71}': False,                                # an integer literal in a double key
    '{"co2_ppm":1.0}': False,                                # a decimal in an integer key
    '{"noise_db":1e2,"rpm":5}': False,                       # an exponent
    '{"co2_ppm":1,"co2_ppm":2}': False,                      # a key twice
    '{"location":{"lat":1.5,"lat":2.5}}': False,             # a nested key twice
    '{"power_source":"caf\\u00e9"}': False,                  # an escape
    '{"power_source":"\\ud83d\\ude00 \\"q\\""}': False,
    '{"\\u0063o2_ppm":5}': False,                            # an escaped key
    '{"readings":[1,2.5]}': False,                           # an integer item in a double array
    '{"readings":[[1.5],[2.5]]}': False,                     # nested arrays
    '{"tags":["a",null]}': False,
    '{"location":{"lat":1.5,"unknown":{"deep":[1,{"x":"y"}]}}}': False,
    '{"location":null}': False,
    '{"location":[1]}': False,
    '{ "co2_ppm": 412 }': False,                             # whitespace
    '{"co2_ppm":"412"}': False,                              # a type change (schema drift)
    '{"co2_ppm":9223372036854775807,"rpm":-9223372036854775808}': True,  # int64's ends
    '"a string"': False,
    '"{\\"co2_ppm\\":1}"': False,                            # double-encoded (malformed_json)
    '[1,2]': False,
    '3.5': False,
    'null': False,
    '{"co2_ppm":18446744073709551616}': False,               # rejected: beyond int64
    '{"co2_ppm":1e999}': False,                              # rejected: beyond a double
    None: False,                                             # json_column missing
}


def test_hand_made_bodies_mixed_in_random_order():
    base = bodies_of(events(40, seed=64))
    cases = list(HAND_MADE.items())
    rng = random.Random(64)
    bodies, expected = [], []
    for copy in range(3):
        for i, (text, fast) in enumerate(cases):
            bodies.append(_with_json_column(base[(i + copy) % len(base)], text))
            expected.append(fast)
        bodies += base[:10]
        expected += [True] * 10
    order = list(range(len(bodies)))
    rng.shuffle(order)
    bodies = [bodies[i].encode() for i in order]
    expected = [expected[i] for i in order]
    fast_rows = assert_same_as_general_path(bodies)
    decoded = decode_bodies(bodies, json_column="variant")
    rejected = dict(decoded.rejected)
    wrong = [bodies[i][bodies[i].index(b'"json_column"'):] for row, i in enumerate(decoded.indices)
             if fast_rows[row] != expected[i]]
    assert sorted(set(wrong)) == []
    # not events on either path: out of bounds, or json_column not an object (a string, an array, a number,
    # null) or missing
    assert {reason.split(",")[0].split(":")[0] for reason in rejected.values()} == {
        "integer 18446744073709551616 is outside the int64 range", "number 1e999 overflows a double",
        "field json_column must be an object", "field json_column is null", "missing field json_column"}
    assert len(rejected) == 3 * 8


def test_values_of_the_fast_path():
    body = _with_json_column(bodies_of(events(1, seed=65))[0], '{"power_source":"' + "é" * 40 + '",'
                             '"noise_db":-0.0,"rpm":-7,"energy_kwh":0.1,"tags":[],'
                             '"location":{"lat":-1.000001,"site":"plant-1"}}')
    decoded = decode_bodies([body.encode()], json_column="variant")
    value = decoded.events.column("json_column")[0].as_py()
    assert value["metadata"] == compile_pool(DEFAULT_POOL).metadata
    got = _value(value)
    assert got == {"energy_kwh": ("double", "0.1"), "location": {"lat": ("double", "-1.000001"),
                                                                 "site": ("str", "plant-1")},
                   "noise_db": ("double", "-0.0"), "power_source": ("str", "é" * 40), "rpm": ("int", -7),
                   "tags": []}
    assert math.copysign(1, float(got["noise_db"][1])) == -1


def test_ingest_pool_follows_the_spec_file(tmp_path):
    assert json_column_pool(Config()) == load_spec(None).build_catalogs().key_pool
    broken = tmp_path / "spec.yaml"
    broken.write_text("scenarios: {schema_drift: 3}\n", encoding="utf-8")
    assert json_column_pool(Config(spec_file=str(broken))) is None  # the default pool; a warning


def test_a_string_of_64_bytes_is_right_on_both_paths_though_duckdb_writes_it_empty():
    """DuckDB 1.5's JSON -> VARIANT writes a string of exactly 64 bytes as a short string whose length overflows
    its 6 bits (header 0x01: an empty string, the 64 bytes left over); 63 and 65 bytes are right. The fast path
    writes it as a ``string`` primitive, and the general path finds the rows that hold one and encodes them
    again (iotgen.formats.variant._fix_64_byte_strings). When DuckDB is fixed, the last assert says so."""
    from iotgen.formats.duckdb_local import connection

    for text in ("x" * 64, "é" * 32, "x" * 63 + "\\n"):  # plain, two bytes a character, with an escape
        body = _with_json_column(bodies_of(events(1, seed=66))[0], '{"power_source":"' + text + '"}')
        expected = json.loads('"' + text + '"')
        assert len(expected.encode("utf-8")) == 64
        fast = decode_bodies([body.encode()], json_column="variant")
        general = decode_bodies([body.encode()], json_column="variant", key_pool=())
        for decoded in (fast, general):
            assert _value(decoded.events.column("json_column")[0].as_py()) == {"power_source": ("str", expected)}
    raw = connection().execute("SELECT variant_to_parquet_variant(?::JSON::VARIANT)",
                               ['"' + "x" * 64 + '"']).fetchone()[0]
    assert raw["value"][:1] == b"\x01"  # DuckDB's empty short string: still there


# ---- random objects near the pool's shapes: the two paths agree on every one ---------------------------------
def _objects():
    from hypothesis import strategies as st

    text = st.text(max_size=80)
    scalar = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
                       st.floats(allow_nan=False, allow_infinity=False), text)
    value = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)),
                         max_leaves=8)
    plain = st.text(st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters='"\\'),
                    max_size=80)  # no escapes needed

    def typed(spec):  # a value of the spec's JSON type (any value of it, not only the spec's range)
        if spec.kind == "int" or (spec.kind == "float" and spec.params[2] == 0):
            return st.integers(min_value=-(2**63), max_value=2**63 - 1)
        if spec.kind == "float":  # mostly as the generator writes them: no exponent
            return st.floats(min_value=-1e12, max_value=1e12).filter(lambda x: "e" not in repr(x))
        if spec.kind == "bool":
            return st.booleans()
        if spec.kind == "choice":
            return plain
        if spec.kind == "string_array":
            return st.lists(plain, max_size=5)
        if spec.kind == "float_array":
            return st.lists(typed(type(spec)("float", (0, 1, spec.params[4]))), max_size=5)
        return st.fixed_dictionaries({}, optional={name: typed(child) for name, child in spec.children})

    pool_shaped = st.fixed_dictionaries({}, optional={name: typed(spec) for name, spec in DEFAULT_POOL})
    return st.one_of(pool_shaped, st.dictionaries(st.sampled_from(KEYS), value, max_size=8))


KEYS = [name for name, _ in DEFAULT_POOL] + ["lat", "site", "healthy", "extra", "é"]


def test_random_objects_decode_the_same_on_both_paths():
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    base = bodies_of(events(8, seed=67))

    @settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")), deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.tuples(_objects(), st.booleans()), min_size=1, max_size=8))
    def check(objects):
        bodies = [_with_json_column(base[i % len(base)], json.dumps(o, separators=(",", ":"), ensure_ascii=a)).encode()
                  for i, (o, a) in enumerate(objects)]
        assert_same_as_general_path(bodies + [b.encode() for b in base])

    check()
