"""json_column written straight to VARIANT by the generator (iotgen.base.variant_encoding, build_json_column's
``encoding="variant"``): the same JSON values as the text, decoded by independent readers (PySpark's decoder,
DuckDB), for every kind of value, and the same random draws (the rest of a block is unchanged)."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from pyspark.sql.types import VariantVal

from iotgen import generate_events
from iotgen.base import variant_encoding
from iotgen.generation.dynamic_json import build_json_column
from iotgen.generation.generator import block_rng, generate_range
from iotgen.settings.catalogs import Catalogs, parse_key_pool
from iotgen.settings.config import Config
from iotgen.spec.spec_file import generator_spec

LONG = "a value longer than sixty-three bytes, which needs the long string form: ü, 水, 🚀 ...."
EVERY_KIND = parse_key_pool({
    "f": ("float", -1e6, 1e6, 3), "tiny": ("float", 0, 0.5, 2), "whole_float": ("float", 0, 3, 1),
    "i": ("int", -2**40, 2**40), "small": ("int", 0, 3), "b": ("bool", 0.3),
    "c": ("choice", ["x", "ünïcode", 'quote"and\\back', LONG]),
    "few": ("string_array", 0, 2, ["p", "q", "r"]),             # one piece per combination
    "many": ("string_array", 1, 6, [f"s{i}" for i in range(12)]),  # items one by one
    "nums": ("float_array", 0, 4, -5, 5, 2), "ints": ("float_array", 2, 2, 0, 1000, 0),
    "box": ("object",), "zz_last": ("int", 1, 1), "a_first": ("bool", 1.0),
}, {"box": {"inner": ("int", 0, 9), "deeper": ("float_array", 0, 3, 0, 1, 1), "name": ("choice", [LONG, "n"]),
            "flag": ("bool", 0.5)}})


def decoded(struct: pa.StructArray) -> list:
    return [json.loads(VariantVal(row["value"], row["metadata"]).toJson()) for row in struct.to_pylist()]


@pytest.mark.parametrize("pool, min_keys, max_keys", [
    (Catalogs.build().key_pool, 5, 25), (Catalogs.build().key_pool, 1, 38), (EVERY_KIND, 1, 14),
    (EVERY_KIND, 14, 14), (parse_key_pool({"only": ("int", 7, 7)}, {}), 1, 1)],
    ids=["default", "default-all-counts", "every-kind", "every-kind-all-keys", "one-key"])
def test_variant_decodes_to_the_json_of_the_text_from_the_same_draws(pool, min_keys, max_keys):
    text_rng, variant_rng = block_rng(3, 0), block_rng(3, 0)
    text = build_json_column(pool, min_keys, max_keys, text_rng, 4000)
    variant = build_json_column(pool, min_keys, max_keys, variant_rng, 4000, encoding="variant")
    assert variant.type == variant_encoding.VARIANT_TYPE and variant.null_count == 0
    assert decoded(variant) == [json.loads(t) for t in text.to_pylist()]
    # the same random draws: what is drawn next is the same
    assert text_rng.bit_generator.state == variant_rng.bit_generator.state


def test_types_are_the_ones_a_json_reader_gives():
    """Integers as int64, numbers with decimals as doubles (``2.0`` stays a double), strings, booleans."""
    from iotgen.formats.variant import try_json_to_variant

    variant = build_json_column(EVERY_KIND, 14, 14, block_rng(5, 1), 200, encoding="variant")

    text = build_json_column(EVERY_KIND, 14, 14, block_rng(5, 1), 200)
    through_duckdb, failed = try_json_to_variant(text)
    assert failed == []
    for ours, theirs in zip(variant.to_pylist(), through_duckdb.to_pylist()):
        a, b = VariantVal(ours["value"], ours["metadata"]), VariantVal(theirs["value"], theirs["metadata"])
        assert a.toPython() == b.toPython()
        assert json.loads(a.toJson()) == json.loads(b.toJson())


def test_one_shared_sorted_key_dictionary():
    variant = build_json_column(EVERY_KIND, 3, 6, block_rng(1, 0), 50, encoding="variant")
    metadata = set(variant.field("metadata").to_pylist())
    assert len(metadata) == 1
    (raw,) = metadata
    assert raw[0] & 0x0F == 1 and raw[0] & 0x10  # version 1, sorted_strings


def test_the_generator_and_the_delta_writer_take_variant_directly(tmp_path):
    """generate_events(json_column="variant") gives the same events with json_column as VARIANT; a Delta
    VARIANT table written that way reads back (DuckDB) equal to one written from the JSON text."""
    from iotgen.runs.tables import write_table
    from iotgen.outputs.table_target import duckdb_with_lakehouse_extensions

    config = Config(num_events=40_000, random_seed=9, anchor_time="2026-01-01T00:00:00Z", chunk_size=7_000,
                    output_dir=str(tmp_path), output_format="delta")
    spec = generator_spec(config)
    text = pa.Table.from_batches(list(generate_events(spec, 40_000, chunk_size=7_000)))
    variant = pa.Table.from_batches(list(generate_events(spec, 40_000, chunk_size=7_000, json_column="variant")))
    assert text.drop_columns(["json_column"]).equals(variant.drop_columns(["json_column"]))
    assert decoded(variant.column("json_column").combine_chunks()[:500]) == \
        [json.loads(t) for t in text.column("json_column").to_pylist()[:500]]
    direct = write_table(config)
    assert direct.count == 40_000
    con = duckdb_with_lakehouse_extensions()
    got = con.sql(f"SELECT event_id, json_column::JSON::VARCHAR FROM delta_scan('{direct.target.location}')"
                  ).fetchall()
    expected = dict(zip(text.column("event_id").to_pylist(), text.column("json_column").to_pylist()))
    assert len(got) == 40_000
    assert all(json.loads(j) == json.loads(expected[event_id]) for event_id, j in got)


def test_scenarios_are_not_written_directly():
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "iotgen" / "spec" / "example_spec.yaml"
    spec = generator_spec(Config(random_seed=1, spec_file=str(example)))
    with pytest.raises(ValueError, match="json_column='variant' is for specs without data-quality scenarios"):
        generate_range(spec, 0, 10, json_column="variant")


def test_containers_of_every_size_class():
    """Offsets of 1, 2 and 3 bytes; more than 255 elements (a large container)."""
    for size in (10, 300, 70_000):
        item = variant_encoding.table([variant_encoding.string_value("x" * 50)] * 2)
        count = max(1, size // 52)
        big = variant_encoding.containers(2, [item] * count)
        values = decoded(variant_encoding.with_metadata(big, variant_encoding.metadata([])))
        assert values == [["x" * 50] * count] * 2
    assert big.nbytes > 70_000  # the last size class needs 3-byte offsets


def test_chunks_over_two_blocks_share_the_metadata_without_copying_it():
    """A chunk joined from two blocks' VARIANT columns has the same rows as a plain concatenation, and its
    metadata child is the one cached repeated array (42 MB per 65,536 rows of the default pool is not copied)."""
    first = build_json_column(EVERY_KIND, 3, 6, block_rng(1, 0), 300, encoding="variant")
    second = build_json_column(EVERY_KIND, 3, 6, block_rng(1, 1), 300, encoding="variant")
    pieces = [first.slice(120), second.slice(0, 250)]
    joined = variant_encoding.concat(pieces)
    assert joined.to_pylist() == pa.concat_arrays(pieces).to_pylist()
    assert variant_encoding.shared_metadata(joined) == variant_encoding.shared_metadata(first) is not None
    copied = pa.concat_arrays(pieces)  # not made by with_metadata: the general path
    assert variant_encoding.shared_metadata(copied) is None
    assert variant_encoding.concat([copied, first]).to_pylist() == copied.to_pylist() + first.to_pylist()


def _decoded(struct_value) -> object:
    return json.loads(VariantVal(struct_value["value"], struct_value["metadata"]).toJson())


def test_one_value_encoder_decodes_as_duckdbs_encoding_of_the_same_json():
    from iotgen.formats.variant import try_json_to_variant

    values = [None, True, False, 0, -1, 2**63 - 1, -(2**63), 1.5, -0.25, 1e300, "", "é", "x" * 63, "x" * 65,
              "y" * 300, [], {}, [1, [2, [3, {"a": None}]]], {"b": 1, "a": {"z": [True, "s"], "é": 2.5}},
              {f"k{i}": i for i in range(300)}, list(range(300))]
    texts = [json.dumps(v) for v in values]
    duckdb, failed = try_json_to_variant(pa.array(texts))
    assert failed == []
    for value, text, theirs in zip(values, texts, duckdb.to_pylist()):
        meta, encoded = variant_encoding.encode_json(value)
        ours = _decoded({"metadata": meta, "value": encoded})
        assert ours == _decoded(theirs) == json.loads(text), text[:60]
        assert type(ours) is type(json.loads(text))  # int stays int, float float
    with pytest.raises(ValueError, match="outside the int64 range"):
        variant_encoding.encode_json({"a": 2**64})


@pytest.mark.parametrize("text", ["x" * 64, "é" * 32, "x" * 63 + "\n", "\u00e9" * 31 + "xx"])
def test_a_string_of_64_bytes_survives_every_duckdb_route(text):
    """DuckDB 1.5 writes a string of exactly 64 bytes as an empty one; each route through it repairs those rows."""
    from iotgen.formats.variant import json_or_text_to_variant, try_field_to_variant, try_json_to_variant

    assert len(text.encode("utf-8")) == 64
    nested = {"a": [1, {"s": text}], "b": "x" * 64}
    rows = [json.dumps(text), json.dumps(nested), json.dumps(nested, ensure_ascii=False), None, json.dumps({"c": 1})]
    values, failed = try_json_to_variant(pa.array(rows))
    assert failed == [] and [None if v is None else _decoded(v) for v in values.to_pylist()] == \
        [text, nested, nested, None, {"c": 1}]
    bodies = [None if r is None else '{"id": 1, "json_column": ' + r + "}" for r in rows]
    values, failed = try_field_to_variant(pa.array(bodies), "json_column")
    assert failed == [] and [None if v is None else _decoded(v) for v in values.to_pylist()] == \
        [text, nested, nested, None, {"c": 1}]
    kept = json_or_text_to_variant(pa.array([text, "{not json"]))
    assert [_decoded(v) for v in kept.to_pylist()] == [text, "{not json"]
