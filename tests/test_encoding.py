"""Events as JSON text: exact round trip, chunk independence, escapes, nulls, odd values, the fallbacks."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pytest

from iotgen import generate_table
from iotgen.formats import encoding
from iotgen.formats.encoding import json_bytes, json_lines, ndjson_bytes, value_text
from iotgen.generation.generator import event_dicts
from iotgen.settings.config import Config
from iotgen.spec.spec_file import generator_spec

UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def table() -> pa.Table:
    spec = generator_spec(Config(random_seed=3, anchor_time="2026-06-01T00:00:00Z"))
    return generate_table(spec, 12_000)


def test_lines_read_back_equal_to_the_events(table):
    lines = json_lines(table).to_pylist()
    events = event_dicts(table.combine_chunks().to_batches()[0])
    assert len(lines) == len(events)
    for line, event in zip(lines, events):
        assert json.loads(line) == event
    first = lines[0]
    assert first.startswith('{"event_id":"') and '"json_column":{' in first and first.endswith("}}")
    assert " " not in first and "\n" not in first


def test_numbers_as_repr_timestamps_as_iso(table):
    obj = json.loads(json_lines(table.slice(0, 1))[0].as_py())
    line = json_lines(table.slice(0, 1))[0].as_py()
    for column in ("battery_level", "temperature", "pressure", "uptime_hours"):
        assert f'"{column}":{obj[column]!r}' in line
    assert '"version":%d,' % obj["version"] in line
    for column in ("timestamp", "created_at", "last_calibration"):
        text = obj[column]
        assert len(text) == 24 and text.endswith("Z") and dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_ndjson_and_chunking_give_the_same_bytes(table, monkeypatch):
    whole = ndjson_bytes(table)
    assert whole.decode().split("\n")[:-1] == json_lines(table).to_pylist() and whole.endswith(b"}\n")
    pieces = b"".join(ndjson_bytes(table.slice(start, 1000)) for start in range(0, table.num_rows, 1000))
    assert pieces == whole
    monkeypatch.setattr(encoding, "ROWS_PER_TAKE", 777)  # several takes per call
    assert ndjson_bytes(table) == whole and json_lines(table).to_pylist() == whole.decode().split("\n")[:-1]


def test_json_bytes_put_text_around_every_line(table):
    part = table.slice(10, 5)
    array = json_bytes(part, before=",\n")
    assert array == b"".join(b",\n" + line.encode() for line in json_lines(part).to_pylist())
    assert json.loads("[" + array.decode()[1:] + "]") == event_dicts(part.combine_chunks().to_batches()[0])
    assert json_bytes(table.slice(0, 0), after="\n") == b""


def test_escapes_nulls_and_odd_values():
    batch = pa.RecordBatch.from_pydict({
        "text": ['plain', 'quote " and \\ back', "tab\tnew\nline\x01", "ünïcödé ✓", None, ""],
        "flag": [True, False, None, True, False, True],
        "small": pa.array([1, -2, None, 2**40, 0, -(2**40)], pa.int64()),
        "ratio": [0.1 + 0.2, 1e20, float("nan"), float("inf"), -0.0, 5e-324],
        "grid": [1.5, -2.25, 3.0, 0.0, 1e6, -1e-3],
        "when": pa.array([dt.datetime(1969, 7, 20, 20, 17, 40, 123456, tzinfo=UTC), None,
                          dt.datetime(2099, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
                          dt.datetime(1970, 1, 1, tzinfo=UTC), dt.datetime(2000, 2, 29, 12, tzinfo=UTC),
                          dt.datetime(2026, 1, 1, 0, 0, 0, 1000, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
        "json_column": ['{"a":1}', "not json", None, "{}", '"quoted"', '{"b":[1,2]}'],
    })
    rows = [json.loads(line) for line in json_lines(batch).to_pylist()]
    assert [r["text"] for r in rows] == ['plain', 'quote " and \\ back', "tab\tnew\nline\x01", "ünïcödé ✓", None, ""]
    assert [r["flag"] for r in rows] == [True, False, None, True, False, True]
    assert [r["small"] for r in rows] == [1, -2, None, 2**40, 0, -(2**40)]
    assert rows[0]["ratio"] == 0.1 + 0.2 and rows[1]["ratio"] == 1e20 and rows[2]["ratio"] is None
    assert rows[3]["ratio"] is None and rows[5]["ratio"] == 5e-324
    assert [r["grid"] for r in rows] == [1.5, -2.25, 3.0, 0.0, 1e6, -1e-3]
    assert [r["when"] for r in rows] == ["1969-07-20T20:17:40.123Z", None, "2099-12-31T23:59:59.999Z",
                                         "1970-01-01T00:00:00.000Z", "2000-02-29T12:00:00.000Z",
                                         "2026-01-01T00:00:00.001Z"]
    assert [r["json_column"] for r in rows] == [{"a": 1}, "not json", None, {}, '"quoted"', {"b": [1, 2]}]


def test_other_column_types_and_units():
    batch = pa.RecordBatch.from_pydict({
        "i8": pa.array([-128, 127], pa.int8()), "u64": pa.array([0, 2**63 + 5], pa.uint64()),
        "f32": pa.array([0.5, 1.25], pa.float32()), "cat": pa.array(["x", "y"]).dictionary_encode(),
        "s": pa.array([dt.datetime(2020, 1, 1, 0, 0, 1)], pa.timestamp("s")).take([0, 0]),
        "ns": pa.array([1_600_000_000_123_456_789, 0], pa.timestamp("ns", tz="UTC")),
        "big": pa.array(["a" * 5000, "b"], pa.large_string()),
    })
    rows = [json.loads(line) for line in json_lines(batch).to_pylist()]
    assert [r["i8"] for r in rows] == [-128, 127] and [r["u64"] for r in rows] == [0, 2**63 + 5]
    assert [r["f32"] for r in rows] == [0.5, 1.25] and [r["cat"] for r in rows] == ["x", "y"]
    assert rows[0]["s"] == "2020-01-01T00:00:01.000Z" and rows[0]["ns"] == "2020-09-13T12:26:40.123Z"
    assert rows[0]["big"] == "a" * 5000
    with pytest.raises(TypeError, match="no JSON encoding for column 'l'"):
        json_lines(pa.RecordBatch.from_pydict({"l": pa.array([[1]])}))


def test_empty_and_single_row(table):
    empty = table.slice(0, 0)
    assert json_lines(empty).to_pylist() == [] and ndjson_bytes(empty) == b""
    one = ndjson_bytes(table.slice(5, 1))
    assert one.count(b"\n") == 1 and json.loads(one) == event_dicts(table.slice(5, 1).to_batches()[0])[0]


def test_value_text(table):
    text = value_text(table.column("temperature").combine_chunks()).to_pylist()
    assert [float(t) for t in text] == table.column("temperature").to_pylist()
    nulls = value_text(pa.array(["a", None, 'q"']), "s").to_pylist()
    assert nulls == ['"a"', None, '"q\\""']


def test_tables_are_reused_across_chunks(table):
    encoding._layout.cache_clear()
    for start in range(0, 12_000, 1000):
        ndjson_bytes(table.slice(start, 1000))
    assert encoding._layout.cache_info().misses <= 4  # a few layouts (the tails of uptime), not one per chunk


def test_fallback_for_floats_off_the_grid():
    values = np.random.default_rng(1).random(500) * 100
    rows = [json.loads(t) for t in json_lines(pa.RecordBatch.from_pydict({"x": values})).to_pylist()]
    assert [r["x"] for r in rows] == values.tolist()


def test_notebook_helpers_for_speed():
    import iotgen_helpers as h

    assert isinstance(h.speed_up_generation(), bool)
    rates = h.measure_generation(Config(random_seed=1), events=2000)
    assert list(rates["output"]) == ["Arrow record batches", "NDJSON text"]
    assert (rates["events"] == 2000).all() and (rates["events/s"] > 0).all() and (rates["events/s per core"] > 0).all()
