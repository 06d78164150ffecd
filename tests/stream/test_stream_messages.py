"""Vectorised message encoding is byte-for-byte the SDK's own ``EventDataBatch.add`` encoding, sizes included."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from azure.eventhub import EventData, EventDataBatch

from iotgen.formats.encoding import json_lines
from iotgen.formats.eventhub_messages import MessageLayout, batch_overhead, encode_messages
from iotgen.generation.generator import event_dicts, generate_block
from iotgen.settings.config import Config
from iotgen.settings.schema import SCHEMA_VERSION
from iotgen.spec.spec_file import generator_spec


def sdk_encoding(body: str, event_id: str, device_type: str, key: str | None,
                 property: str = "device_type") -> tuple[bytes, int]:
    """The SDK's public API: the encoded message and what it adds to a batch's size."""
    batch = EventDataBatch(max_size_in_bytes=4 << 20, partition_key=key)
    event = EventData(body)
    event.content_type = "application/json"
    event.message_id = event_id
    event.properties = {"schema_version": SCHEMA_VERSION, property: device_type}
    before = batch.size_in_bytes
    batch.add(event)
    return bytes(batch._message.data[0]), batch.size_in_bytes - before


@pytest.fixture(scope="module")
def block() -> pa.RecordBatch:
    return generate_block(generator_spec(Config(random_seed=5)), 3)


@pytest.mark.parametrize("key", ["sensor_id", None])
def test_generated_events_encode_exactly_as_the_sdk_does(block, key):
    messages = encode_messages(block, key)
    lines = json_lines(block).to_pylist()
    columns = block.select(["event_id", "device_type", "sensor_id"]).to_pydict()
    sizes = np.array([len(m) for m in messages.to_pylist()])
    overhead = batch_overhead(sizes)
    for i in range(0, block.num_rows, 211):
        expected, added = sdk_encoding(lines[i], columns["event_id"][i], columns["device_type"][i],
                                       columns["sensor_id"][i] if key else None)
        assert messages[i].as_py() == expected
        assert sizes[i] + overhead[i] == added


def test_long_values_take_the_32_bit_forms_like_the_sdk(block):
    """A body under 256 bytes (8-bit form), values over 255 bytes (32-bit string, list and map forms)."""
    rows = [
        {"event_id": "e" * 300, "device_type": "d" * 400, "sensor_id": "s" * 270},
        {"event_id": "short", "device_type": "dt", "sensor_id": "sensor-1"},
    ]
    batch = pa.RecordBatch.from_pylist(rows)
    bodies = pa.array(['{"x":"' + "b" * 70000 + '"}', '{"a":1}'])
    for key in ("sensor_id", None):
        messages = encode_messages(batch, key, bodies=bodies)
        for i, row in enumerate(rows):
            expected, added = sdk_encoding(bodies[i].as_py(), row["event_id"], row["device_type"],
                                           row["sensor_id"] if key else None)
            assert messages[i].as_py() == expected
            assert len(expected) + batch_overhead(np.array([len(expected)]))[0] == added


def test_nulls_and_empty_keys_encode_as_the_sdk_encodes_none_and_no_key():
    """Data-quality scenarios null any column: no partition key annotation, AMQP nulls for the properties."""
    rows = [
        {"event_id": None, "device_type": None, "sensor_id": None},
        {"event_id": "e1", "device_type": "thermostat", "sensor_id": ""},
        {"event_id": "e2", "device_type": None, "sensor_id": "sensor-00002"},
    ]
    batch = pa.RecordBatch.from_pylist(rows, schema=pa.schema([(k, pa.string()) for k in rows[0]]))
    bodies = pa.array(['{"a":1}', '{"b":2}', '{"c":3}'])
    messages = encode_messages(batch, "sensor_id", bodies=bodies)
    for i, row in enumerate(rows):
        expected, added = sdk_encoding(bodies[i].as_py(), row["event_id"], row["device_type"], row["sensor_id"])
        assert messages[i].as_py() == expected
        assert len(expected) + batch_overhead(np.array([len(expected)]))[0] == added


def test_another_layout_names_its_own_message_id_and_property_and_encodes_as_the_sdk_does():
    """The device change feed's messages: the change's number (as text) is the message id, its operation the
    routing property; the body is the whole row."""
    batch = pa.RecordBatch.from_pylist([
        {"change_id": 7, "operation": "update", "sensor_id": "sensor-00003", "firmware_version": "2.1.0"},
        {"change_id": 123456789012, "operation": "delete", "sensor_id": "sensor-00004", "firmware_version": None},
    ])
    layout = MessageLayout(message_id="change_id", property="operation")
    messages = encode_messages(batch, "sensor_id", layout=layout)
    for i, (row, line) in enumerate(zip(batch.to_pylist(), json_lines(batch).to_pylist())):
        expected, added = sdk_encoding(line, str(row["change_id"]), row["operation"], row["sensor_id"], "operation")
        assert messages[i].as_py() == expected
        assert len(expected) + batch_overhead(np.array([len(expected)]))[0] == added


def test_the_body_is_the_event_as_json(block):
    messages = encode_messages(block.slice(0, 3), None)
    for message, event in zip(messages.to_pylist(), event_dicts(block.slice(0, 3))):
        body = message[message.index(b"\x00\x53\x75") + 8:]  # data section: descriptor, vbin32 size
        assert json.loads(body) == event


def test_no_events_no_messages():
    empty = generate_block(generator_spec(Config(random_seed=1)), 0).slice(0, 0)
    assert len(encode_messages(empty)) == 0
