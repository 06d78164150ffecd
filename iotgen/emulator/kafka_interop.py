"""What an event looks like to the other protocol: Kafka records <-> the AMQP messages the store keeps.

Azure Event Hubs' rules (the "exchange events between consumers and producers that use different protocols"
guide, and the service team's word on partition keys), which the emulator follows:

* the body is the value, bytes for bytes (a data section; a Kafka ``null`` value is kept as an ``amqp-value``
  ``null`` body, so a Kafka consumer sees ``null`` again);
* Kafka headers become application properties whose values are AMQP *binary* (an AMQP consumer sees the raw
  bytes); application properties reach a Kafka consumer as headers holding the AMQP encoding of the value,
  type constructor included (Azure's ``AmqpDeserializer`` reads them). A *binary* property (what a Kafka header
  became) goes back as its raw bytes, so a Kafka producer's headers reach a Kafka consumer unchanged;
* the AMQP properties ``message-id``, ``user-id``, ``to``, ``reply-to``, ``content-type`` and
  ``content-encoding`` reach a Kafka consumer as headers of those names holding UTF-8 strings;
* the AMQP partition key reaches a Kafka consumer as the ``x-opt-partition-key`` header (UTF-8); the Kafka key
  is kept in the ``x-opt-kafka-key`` message annotation (binary) and is never turned into a partition key, nor
  the reverse;
* the record timestamp is the enqueued time, the offset is the sequence number (the store assigns both).
"""

from __future__ import annotations

import struct
from typing import Any

from .codec import (
                    CodecError,
                    Described,
                    Section,
                    Symbol,
                    ULong,
                    decode_message,
                    decode_value,
                    encode_value,
                    iter_sections,
                    value_end,
                    )
from .kafka_codec import KafkaRecord, encode_record_tail

__all__ = ["KAFKA_KEY", "PARTITION_KEY_HEADER", "PROPERTY_HEADERS", "amqp_to_kafka", "kafka_to_amqp"]

KAFKA_KEY = "x-opt-kafka-key"
PARTITION_KEY_HEADER = "x-opt-partition-key"
#: AMQP properties fields shown to Kafka consumers as UTF-8 string headers: (Properties attribute, header name).
PROPERTY_HEADERS = (("message_id", "message-id"), ("user_id", "user-id"), ("to", "to"), ("reply_to", "reply-to"),
                    ("content_type", "content-type"), ("content_encoding", "content-encoding"))
_NULL_BODY = bytes(encode_value(Described(ULong(Section.AMQP_VALUE), None)))


_U32 = struct.Struct(">I")
_KAFKA_KEY_SYMBOL = bytes(encode_value(Symbol(KAFKA_KEY)))


def _binary(value: bytes) -> bytes:
    n = len(value)
    return (b"\xa0" + bytes((n,)) if n < 256 else b"\xb0" + _U32.pack(n)) + value


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    n = len(raw)
    return (b"\xa1" + bytes((n,)) if n < 256 else b"\xb1" + _U32.pack(n)) + raw


def _map_section(code: bytes, body: bytes, count: int) -> bytes:
    return b"\x00\x53" + code + b"\xd1" + _U32.pack(len(body) + 4) + _U32.pack(count) + body


def kafka_to_amqp(record: KafkaRecord) -> bytes:
    """The AMQP message a Kafka record is stored as (the store adds the service annotations). Encoded directly:
    the same bytes :func:`~.codec.encode_value` writes for these sections, without building the values."""
    parts = []
    if record.key is not None:
        parts.append(_map_section(b"\x72", _KAFKA_KEY_SYMBOL + _binary(record.key), 2))
    if record.headers:
        properties = dict(record.headers)  # a map: the last of repeated header names wins
        body = b"".join(_string(name) + (b"\x40" if value is None else _binary(value))
                        for name, value in properties.items())
        parts.append(_map_section(b"\x74", body, 2 * len(properties)))
    parts.append(_NULL_BODY if record.value is None else b"\x00\x53\x75" + _binary(record.value))
    return b"".join(parts)


def _text(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


def _property_headers(message: bytes) -> list[tuple[str, bytes | None]]:
    """The application properties as headers: each value's AMQP encoding as it was sent (type constructor
    included), binary values as their bytes, null as a null header."""
    for code, _start, value_start, end in iter_sections(message):
        if code != Section.APPLICATION_PROPERTIES:
            continue
        constructor = message[value_start]
        if constructor == 0xC1:
            pos, count = value_start + 3, message[value_start + 2]
        elif constructor == 0xD1:
            pos, count = value_start + 9, int.from_bytes(message[value_start + 5:value_start + 9], "big")
        else:
            raise CodecError("application-properties is not a map")
        headers: list[tuple[str, bytes | None]] = []
        for _ in range(count // 2):
            name, pos = decode_value(message, pos)
            stop = value_end(message, pos)
            raw = bytes(message[pos:stop])
            if raw[0] == 0x40:
                headers.append((str(name), None))
            elif raw[0] == 0xA0:
                headers.append((str(name), raw[2:]))
            elif raw[0] == 0xB0:
                headers.append((str(name), raw[5:]))
            else:
                headers.append((str(name), raw))
            pos = stop
        if pos != end:
            raise CodecError("application-properties size mismatch")
        return headers
    return []


def amqp_to_kafka(message: bytes) -> bytes:
    """The key, value and headers (encoded as the tail of a Kafka record) of a stored AMQP message."""
    decoded = decode_message(message)
    annotations = decoded.message_annotations or {}
    key = annotations.get(KAFKA_KEY)
    if key is not None and not isinstance(key, bytes):
        key = _text(key)
    headers = _property_headers(message) if decoded.application_properties else []
    if decoded.properties is not None:
        for attribute, header in PROPERTY_HEADERS:
            field = getattr(decoded.properties, attribute)
            if field is not None:
                headers.append((header, _text(field)))
    partition_key = annotations.get(PARTITION_KEY_HEADER)
    if partition_key is not None:
        headers.append((PARTITION_KEY_HEADER, _text(partition_key)))
    value: bytes | None
    data = decoded.data
    if data:
        value = b"".join(data)
    else:
        body = decoded.value
        value = None if body is None else body if isinstance(body, bytes) else bytes(encode_value(body))
    return encode_record_tail(key, value, headers)
