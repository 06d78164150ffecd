"""Event bodies back into typed rows (the ingest's parser): JSON text or VARIANT ``json_column``, every body
either an event or rejected with a reason."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from lakehouse_support import bodies_of, events

from iotgen.settings.schema import ARROW_SCHEMA
from iotgen.formats.decoding import decode_bodies
from iotgen.formats.variant import VARIANT_TYPE, try_field_to_variant, try_json_to_variant


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
    """The general path (``key_pool=()``) gives the text encoder's bytes; the fast path for iotgen's own JSON
    (the default) the same values with the key pool's shared metadata (tests/lakehouse/test_variant_fast_path.py)."""
    table = events(2000, seed=52)
    bodies = [b.encode() for b in bodies_of(table)]
    as_variant = decode_bodies(bodies, json_column="variant", key_pool=())
    as_text = decode_bodies(bodies)
    assert as_variant.events.schema.field("json_column").type == VARIANT_TYPE
    assert as_variant.events.drop_columns(["json_column"]).equals(as_text.events.drop_columns(["json_column"]))
    encoded, failed = try_json_to_variant(as_text.events.column("json_column"))
    assert failed == [] and as_variant.events.column("json_column").combine_chunks().equals(encoded)
    # and an independent decoder (PySpark's) reads the original objects back, on either path
    fast = decode_bodies(bodies, json_column="variant")
    for decoded in (as_variant, fast):
        first = decoded.events.column("json_column")[0].as_py()
        assert _variant_json(first) == json.loads(table.column("json_column")[0].as_py())


def test_bodies_out_of_bounds_are_rejected_in_both_modes_and_the_rest_kept():
    """The rule of iotgen.formats.json_bounds: nesting over 64 levels, an integer beyond int64, a number beyond a
    double. Such a body once made the ingest fail with RecursionError on every restart (issue 13)."""
    table = events(3, seed=53)
    good = [b.encode() for b in bodies_of(table)]

    def with_json_column(text: str) -> bytes:
        return good[0].decode().replace('"json_column":{', '"json_column":{' + text + ",", 1).encode()

    bodies = {
        with_json_column('"big": 18446744073709551615'): "integer 18446744073709551615 is outside the int64 range",
        with_json_column('"big": -9223372036854775809'): "integer -9223372036854775809 is outside the int64 range",
        with_json_column('"big": 123456789012345678901234567890'): "integer 1234567890123456789012345678",
        with_json_column('"huge": 1e400'): "number 1e400 overflows a double",
        with_json_column('"deep": ' + "[" * 1000 + "]" * 1000): "JSON nests deeper than 64 levels",
        b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}": "JSON nests deeper than 64 levels",
        b"{oops": "body is not valid JSON",
    }
    kept = [with_json_column('"edge": 9223372036854775807'), with_json_column('"text": "123456789012345678901234 1e999"'),
            with_json_column('"nested": ' + "[" * 60 + "]" * 60), good[1], good[2]]
    mixed = [kept[0], *list(bodies)[:4], kept[1], kept[2], *list(bodies)[4:], kept[3], kept[4]]
    for mode in ("variant", "text"):
        decoded = decode_bodies(mixed, json_column=mode)
        assert [mixed[i] for i in decoded.indices] == kept, mode
        reasons = {mixed[i]: reason for i, reason in decoded.rejected}
        for body, reason in bodies.items():
            assert reasons[body].startswith(reason), (mode, reasons[body])
    assert decode_bodies(kept, json_column="variant").events.num_rows == 5


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
