"""Bounded fuzzing of the parsers that read input from outside (hypothesis; a fixed number of examples each, so
the suite's time stays bounded). On a failure hypothesis prints the falsifying example and the
``@reproduce_failure`` line that replays it; the seed is printed with ``--hypothesis-seed`` (see
docs/reliability.md).

- the ingest's body decoder: any bytes end either as an event row or as a rejected row with a reason;
- the YAML readers (config and spec files): any text is read or refused with one ``ValueError``;
- the local endpoint's AMQP decoder: any bytes decode or raise ``CodecError``, nothing else.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# 150 examples per test in CI (a few seconds each); FUZZ_EXAMPLES=5000 for a longer local session
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30)


def _template_event() -> dict:
    from iotgen import generate_table
    from iotgen.settings.config import Config

    row = generate_table(Config(num_events=1, random_seed=3, anchor_time="2026-01-01T00:00:00Z")).to_pylist()[0]
    event = {k: (v.isoformat().replace("+00:00", "Z") if hasattr(v, "isoformat") else v) for k, v in row.items()}
    event["json_column"] = json.loads(event["json_column"])
    return event


TEMPLATE = _template_event()


@st.composite
def bodies(draw) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "event", "deep", "number"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(_json_values)).encode()
    event = dict(TEMPLATE)
    if kind == "event":
        field = draw(st.sampled_from(sorted(event)))
        event[field] = draw(_json_values)
        return json.dumps(event).encode()
    if kind == "deep":
        depth = draw(st.integers(min_value=1, max_value=3000))
        opener = draw(st.sampled_from(["[", '{"a":']))
        closer = "]" if opener == "[" else "}"
        return json.dumps(event).replace('"json_column": {', '"json_column": {"d": ' + opener * depth + "1"
                                         + closer * depth + ",", 1).encode()
    literal = draw(st.sampled_from(["9223372036854775808", "-9223372036854775809", "1e400", "-1e999",
                                    "18446744073709551615", "1" * 60, "0.5e-400"]))
    return json.dumps(event).replace('"json_column": {', '"json_column": {"n": ' + literal + ",", 1).encode()


@FUZZ
@given(st.lists(bodies(), min_size=1, max_size=12), st.sampled_from(["text", "variant"]))
def test_every_body_ends_as_an_event_or_a_rejected_row(batch, mode):
    from iotgen.formats.decoding import decode_bodies

    decoded = decode_bodies(batch, json_column=mode, use_threads=False)
    rejected = [i for i, _ in decoded.rejected]
    assert sorted([*decoded.indices.tolist(), *rejected]) == list(range(len(batch)))
    assert all(isinstance(reason, str) and reason for _, reason in decoded.rejected)
    assert decoded.events.num_rows == len(decoded.indices)


_yaml_text = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(["a:", " b: 1", "- x", "[", "]", "{", "}", "&a", "*a", "!!python/object:os.system",
                              "NUM_EVENTS: 5", "scenarios:", "  late: {rate: 2}", "fleet:", "\t", "'", '"', "%YAML 1.1"]),
             max_size=30).map("\n".join),
    st.integers(min_value=1, max_value=500).map(lambda n: "x: " + "[" * n + "]" * n),
)


@FUZZ
@given(_yaml_text)
def test_yaml_readers_read_or_refuse_with_one_value_error(tmp_path_factory, text):
    from iotgen.settings.config import Config
    from iotgen.spec.spec_file import load_spec

    path = tmp_path_factory.mktemp("yaml") / "file.yaml"
    path.write_text(text, encoding="utf-8")
    for read in (lambda: Config.load(config_file=path, env={}), lambda: load_spec(path)):
        try:
            read()
        except ValueError as exc:
            assert "\n" not in str(exc).strip(), str(exc)


@FUZZ
@given(st.binary(max_size=300))
def test_amqp_decoder_decodes_or_raises_codec_error(data):
    from iotgen.emulator.codec import CodecError, decode_frame_body, decode_value

    for decode in (decode_value, decode_frame_body):
        try:
            decode(data)
        except CodecError:
            pass


@pytest.mark.parametrize("depth", [100, 5000])
def test_amqp_decoder_refuses_deep_nesting_with_codec_error(depth):
    """25 deeply nested frames once wrote 74,391 log lines (a traceback each): nesting is a CodecError."""
    from iotgen.emulator.codec import CodecError, decode_value, value_end

    nested_lists = b"\xc0\x03\x01" * depth + b"\x40"  # list8 holding a list8 holding ... holding null
    described = b"\x00" * depth + b"\x40\x40"            # a descriptor described by a descriptor ...
    for data in (nested_lists, described):
        for decode in (decode_value, value_end):
            try:
                decode(data, 0)
            except CodecError:
                pass
