"""Parsing message bodies: typed columns, every generated json_column as VARIANT, malformed rows to bad records."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from iotgen.settings.schema import COLUMN_NAMES
from iotgen.formats.encoding import json_lines
from iotgen.runs.spark.parse import bad_records, good_events, has_provenance, parse_events, typed_projection

from spark_support import events


def _messages(spark, bodies: list[bytes | None]):
    """Messages as the iotgen_eventhubs source gives them (two partitions, sequence numbers 0, 1, ...)."""
    table = pa.table({"body": pa.array(bodies, pa.binary()),
                      "partition": pa.array([str(i % 2) for i in range(len(bodies))]),
                      "sequenceNumber": pa.array([i // 2 for i in range(len(bodies))], pa.int64())})
    return spark.createDataFrame(table).selectExpr("*", "TIMESTAMP'2026-01-01 00:00:00' AS enqueuedTime")


def test_every_generated_event_parses_to_the_same_typed_values_and_json(spark):
    table = events(1500, seed=21)
    bodies = [line.encode() for line in json_lines(table).to_pylist()]
    parsed = parse_events(_messages(spark, bodies))
    assert has_provenance(parsed)
    good = good_events(parsed).orderBy("_partition", "_sequence_number")
    assert dict(good.dtypes)["json_column"] == "variant" and bad_records(parsed).count() == 0
    got = good.selectExpr(*[f"to_json(json_column) AS json_column" if c == "json_column" else c
                            for c in COLUMN_NAMES], "_partition", "_sequence_number").toArrow()
    order = sorted(range(len(bodies)), key=lambda i: (str(i % 2), i // 2))
    expected = table.take(order)
    for name in COLUMN_NAMES[:-1]:
        assert got.column(name).cast(expected.schema.field(name).type).equals(expected.column(name)), name
    # every json_column, nested objects and arrays included, is the same JSON value once a VARIANT
    assert [json.loads(t) for t in got.column("json_column").to_pylist()] == \
           [json.loads(t) for t in expected.column("json_column").to_pylist()]


def test_malformed_messages_land_in_bad_records_with_their_raw_body_and_a_reason(spark):
    base = json.loads(json_lines(events(1, seed=2)).to_pylist()[0])

    def variant(**changes) -> bytes:
        event = dict(base)
        for key, value in changes.items():
            if value is _DROP:
                event.pop(key)
            else:
                event[key] = value
        return json.dumps(event).encode()

    cases = {
        b"": "body is empty",
        b"not json {": "body is not valid JSON",
        b'{"a": "\xff"}': "body is not valid UTF-8",
        b"[1, 2]": "body must be a JSON object, got array",
        variant(zone=_DROP): "missing field zone",
        variant(version=None): "field version is null",
        variant(temperature="hot"): "field temperature must be a number, got string",
        variant(fault_count=2.5): "field fault_count must be an integer in [-2147483648, 2147483647], got number",
        variant(timestamp="yesterday"): "field timestamp must be an ISO 8601 date-time string, got string",
        variant(maintenance_due="yes"): "field maintenance_due must be a boolean, got string",
        variant(json_column="not an object"): "field json_column must be an object, got string",
        variant(json_column=[1, 2]): "field json_column must be an object, got array",
    }
    good_body = variant()
    parsed = parse_events(_messages(spark, [good_body, None, *cases]))
    bad = {bytes(r.body) if r.body is not None else None: r.reason for r in bad_records(parsed).collect()}
    assert bad == {None: "body is empty", **cases}
    good = good_events(parsed).collect()
    assert [g.event_id for g in good] == [base["event_id"]]
    assert bad_records(parsed).columns == ["_partition", "_sequence_number", "_enqueued_time", "reason", "body"]


_DROP = object()


def test_typed_projections_read_values_out_of_the_variant(spark):
    table = events(400, seed=4)
    parsed = parse_events(_messages(spark, [line.encode() for line in json_lines(table).to_pylist()]))
    rows = {r.event_id: r for r in typed_projection(good_events(parsed)).collect()}
    for event_id, text in zip(table.column("event_id").to_pylist(), table.column("json_column").to_pylist()):
        payload, row = json.loads(text), rows[event_id]
        assert row.lat == payload.get("location", {}).get("lat")
        assert row.co2_ppm == payload.get("co2_ppm")
        assert row.cpu_pct == payload.get("diagnostics", {}).get("cpu_pct")
        assert row.tags == payload.get("tags")
        assert row.json_keys == len(payload)


def test_frames_with_the_event_columns_only_get_their_json_column_as_variant(spark):
    frame = spark.read.format("iotgen").option("numEvents", 200).option("seed", 1).load()
    broken = frame.selectExpr(*[c for c in COLUMN_NAMES if c != "json_column"],
                              "CASE WHEN version = 1 THEN '[1]' ELSE json_column END AS json_column")
    parsed = parse_events(broken)
    assert not has_provenance(parsed) and good_events(parsed).columns == list(COLUMN_NAMES)
    versions = [r.version for r in frame.select("version").collect()]
    bad = bad_records(parsed).collect()
    assert {r.reason for r in bad} == {"field json_column must be an object, got array"}
    assert len(bad) == versions.count(1) and good_events(parsed).count() == 200 - versions.count(1)
    assert all(json.loads(r.body)["json_column"] == [1] for r in bad)


def test_an_unknown_frame_is_a_clear_error(spark):
    with pytest.raises(ValueError, match="body_column naming the JSON column"):
        parse_events(spark.range(3))
    with pytest.raises(ValueError, match="body_column 'nope' is not a column"):
        parse_events(spark.range(3), body_column="nope")
    text = spark.createDataFrame([('{"x": 1}',)], "line STRING")
    assert bad_records(parse_events(text, body_column="line")).first().reason == "missing field event_id"
