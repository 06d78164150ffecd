"""Event bodies back into typed rows (the ingest's parser): JSON text or VARIANT ``json_column``, every body
either an event or rejected with a reason."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from lakehouse_support import bodies_of, events

from iotgen.schema import ARROW_SCHEMA
from iotgen.sinks.decoding import decode_bodies
from iotgen.sinks.variant import VARIANT_TYPE, try_field_to_variant, try_json_to_variant


def _variant_json(value) -> object:
    from pyspark.sql.types import VariantVal

    return json.loads(VariantVal(value["value"], value["metadata"]).toJson())


def test_text_mode_gives_back_the_generated_events():
    table = events(3000, seed=51)
    decoded = decode_bodies([b.encode() for b in bodies_of(table)])
    assert decoded.rejected == [] and decoded.indices.tolist() == list(range(3000))
    assert decoded.events.schema == ARROW_SCHEMA
    assert decoded.events.drop_columns(["json_column"]).equals(table.drop_columns(["json_column"]))
    got = [json.loads(t) for t in decoded.events.column("json_column").to_pylist()]
    assert got == [json.loads(t) for t in table.column("json_column").to_pylist()]


def test_variant_mode_encodes_json_column_exactly_as_the_text_encoder_does():
    table = events(2000, seed=52)
    bodies = [b.encode() for b in bodies_of(table)]
    as_variant = decode_bodies(bodies, json_column="variant")
    as_text = decode_bodies(bodies)
    assert as_variant.events.schema.field("json_column").type == VARIANT_TYPE
    assert as_variant.events.drop_columns(["json_column"]).equals(as_text.events.drop_columns(["json_column"]))
    encoded, failed = try_json_to_variant(as_text.events.column("json_column"))
    assert failed == [] and as_variant.events.column("json_column").combine_chunks().equals(encoded)
    # and an independent decoder (PySpark's) reads the original objects back
    first = as_variant.events.column("json_column")[0].as_py()
    assert _variant_json(first) == json.loads(table.column("json_column")[0].as_py())


def test_variant_mode_rejects_a_json_column_that_cannot_be_a_variant_and_keeps_the_rest():
    table = events(3, seed=53)
    good = [b.encode() for b in bodies_of(table)]
    big = json.loads(good[0])
    big["json_column"] = {"big": 18446744073709551615}
    bodies = [good[0], json.dumps(big).encode(), good[1], b"{oops", good[2]]
    for mode in ("variant", "text"):
        decoded = decode_bodies(bodies, json_column=mode)
        assert decoded.indices.tolist() == ([0, 2, 4] if mode == "variant" else [0, 1, 2, 4])
        reasons = dict(decoded.rejected)
        assert reasons[3].startswith("body is not valid JSON")
        if mode == "variant":
            assert reasons[1].startswith("json_column cannot be stored as VARIANT: ")
        assert decoded.events.column("event_id").to_pylist() == [
            json.loads(bodies[i])["event_id"] for i in decoded.indices]


def test_field_encoder_matches_the_text_encoder():
    objects = pa.array(['{"j": {"a": 1, "b": [1.5, "x"]}, "k": 2}', '{"k": 1}', '{"j": 3}', "{oops",
                        '{"j": 18446744073709551615}', None])
    encoded, failed = try_field_to_variant(objects, "j")
    reference, bad = try_json_to_variant(pa.array(['{"a": 1, "b": [1.5, "x"]}', "null", "3", "{oops",
                                                   "18446744073709551615", None]))
    assert failed == bad == [3, 4]  # not JSON; an integer beyond int64
    assert encoded.equals(reference)  # a missing field is a variant null, like JSON null


def test_unknown_json_column_mode_is_an_error():
    with pytest.raises(ValueError, match="json_column must be 'text' or 'variant', got 'blob'"):
        decode_bodies([b"{}"], json_column="blob")
