"""The AMQP 1.0 codec: every type round-trips, performatives keep every field, SDK frames decode."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from iotgen.emulator import codec
from iotgen.emulator.codec import (
    Accepted,
    Array,
    Attach,
    Byte,
    Char,
    CodecError,
    Decimal32,
    Decimal64,
    Decimal128,
    Described,
    End,
    Float,
    Header,
    Int,
    Long,
    Message,
    MessageLayout,
    Open,
    Properties,
    Rejected,
    Short,
    Source,
    Symbol,
    Target,
    Timestamp,
    Transfer,
    UByte,
    UInt,
    ULong,
    UShort,
    amqp_value,
    data_section,
    decode_frame_body,
    decode_message,
    decode_value,
    encode_frame,
    encode_message,
    encode_transfer_frames,
    encode_value,
    parse_frame_header,
)
from iotgen.emulator.store import BATCH_MESSAGE_FORMAT, parse_transfer

VALUES = [
    None, True, False,
    UByte(0), UByte(255), UShort(65535), UInt(0), UInt(200), UInt(2**32 - 1),
    ULong(0), ULong(255), ULong(2**64 - 1),
    Byte(-128), Short(-32768), Int(-1), Int(2**31 - 1), Long(-5), Long(-2**63),
    Float(1.5), 2.5, -0.0,
    Decimal32(b"\x22\x50\x00\x01"), Decimal64(b"\x22\x38" + bytes(6)), Decimal128(bytes(range(16))),
    Char("€"), Timestamp(0), Timestamp(1_700_000_000_123), Timestamp(-1),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    b"", b"\x00\xff", b"z" * 300,
    "", "héllo", "ü" * 200,
    Symbol(""), Symbol("amqp:accepted:list"), Symbol("s" * 300),
    [], [Long(1), "two", [Symbol("three"), None]], [UInt(i) for i in range(300)],
    {}, {Symbol("k"): Long(1), "s": {Int(2): [b"x"]}}, {Long(i): Long(i) for i in range(200)},
    Array([], Int), Array([Symbol("a"), Symbol("bc")], Symbol), Array(["x" * 300], str),
    Array([UInt(1), UInt(2**32 - 1)], UInt), Array([True, False], bool), Array([1.5, 2.5], float),
    Array([Timestamp(1), Timestamp(2)], Timestamp), Array([uuid.UUID(int=7)], uuid.UUID),
    Array([b"ab", b""], bytes), Array([[Long(1)], []], list), Array([{Symbol("a"): Long(1)}], dict),
    Described(Symbol("com.example:thing"), "value"), Described(ULong(0x1234), [Long(1)]),
    Described(Symbol("apache.org:selector-filter:string"), "amqp.annotation.x-opt-offset > '-1'"),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: f"{type(v).__name__}:{str(v)[:20]}")
def test_every_type_round_trips_with_its_type(value):
    encoded = bytes(encode_value(value))
    decoded, end = decode_value(encoded)
    assert end == len(encoded)
    assert decoded == value or (value != value and decoded != decoded)
    assert type(decoded) is type(value)
    if isinstance(value, Array):
        assert decoded.element_type is value.element_type


def test_python_values_map_to_amqp_types():
    assert decode_value(encode_value(5))[0] == Long(5) and type(decode_value(encode_value(5))[0]) is Long
    assert type(decode_value(encode_value(2**64 - 1))[0]) is ULong
    moment = dt.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=dt.timezone.utc)
    decoded = decode_value(encode_value(moment))[0]
    assert decoded == Timestamp.from_datetime(moment) and decoded.to_datetime() == moment
    assert decode_value(encode_value((Long(1), "a")))[0] == [Long(1), "a"]
    assert decode_value(encode_value(bytearray(b"ab")))[0] == b"ab"
    with pytest.raises(CodecError):
        encode_value(object())
    with pytest.raises(CodecError):
        UByte(256)


@pytest.mark.parametrize("width,constructor", [(0, 0x43), (1, 0x52), (4, 0x70)])
def test_compact_integer_encodings(width, constructor):
    value = UInt({0: 0, 1: 200, 4: 70000}[width])
    encoded = bytes(encode_value(value))
    assert encoded[0] == constructor and len(encoded) == 1 + width


def test_performatives_carry_every_field_including_trailing_nulls():
    open_frame = bytes(encode_value(Open(container_id="c")))
    assert open_frame[:4] == b"\x00\x53\x10\xc0" and open_frame[5] == 10  # 10 fields, 9 of them null
    assert open_frame.endswith(b"\x40" * 9)
    end = bytes(encode_value(End()))
    assert end == b"\x00\x53\x17\xc0\x02\x01\x40"  # never the list0 form
    assert bytes(encode_value(Accepted())) == b"\x00\x53\x24\xc0\x01\x00"
    attach = Attach(name="n", handle=1, role=True, source=Source(address="a"), target=Target())
    decoded, _ = decode_value(encode_value(attach))
    assert decoded == attach and decoded.handle == UInt(1) and len(decoded) == 14
    rejected = Rejected(codec.Error("amqp:decode-error", "bad"))
    assert decode_value(encode_value(rejected))[0].error.condition == Symbol("amqp:decode-error")


def test_composites_decode_when_described_by_symbolic_name_and_tolerate_extra_or_missing_fields():
    raw = bytes(encode_value(Described(Symbol("amqp:end:list"), [])))
    assert decode_value(raw)[0] == End()
    longer = bytes(encode_value(Described(ULong(0x17), [None, "future-field"])))
    assert decode_value(longer)[0] == End()
    with pytest.raises(CodecError):
        decode_value(bytes(encode_value(Described(ULong(0x10), []))))  # open without container-id


@pytest.mark.parametrize("broken", [b"", b"\xa1\x05abc", b"\xc0\x05\x02\x41", b"\xff", b"\xd0\x00\x00\x00\x09"])
def test_truncated_or_unknown_encodings_raise_codec_error(broken):
    with pytest.raises(CodecError):
        decode_value(broken)


def test_frames_round_trip_and_large_deliveries_are_split():
    frame = encode_frame(End(), channel=7)
    header = parse_frame_header(frame)
    assert (header.size, header.data_offset, header.frame_type, header.channel) == (len(frame), 2, 0, 7)
    assert decode_frame_body(frame[8:])[0] == End()

    payload = bytes(range(256)) * 40
    frames = encode_transfer_frames(channel=1, handle=3, delivery_id=9, payload=payload, max_frame_size=1024)
    assert len(frames) > 10 and all(len(f) <= 1024 for f in frames)
    reassembled = b""
    for i, raw in enumerate(frames):
        transfer, chunk = decode_frame_body(raw[8:])
        assert isinstance(transfer, Transfer) and len(transfer) == 11
        assert (transfer.handle, transfer.delivery_id, transfer.delivery_tag) == (3, 9, b"\x00\x00\x00\x09")
        assert transfer.more == (i < len(frames) - 1) and transfer.settled is True
        reassembled += bytes(chunk)
    assert reassembled == payload


def test_messages_round_trip_and_layout_splices_annotations():
    message = Message(
        header=Header(durable=True),
        message_annotations={"x-opt-partition-key": "k"},
        properties=Properties(message_id="m1", content_type=Symbol("application/json"),
                              creation_time=Timestamp(5)),
        application_properties={"a": Long(1)},
        body=[data_section(b"one"), data_section(b"two")],
        footer={"f": "x"},
    )
    encoded = encode_message(message)
    assert decode_message(encoded) == Message(
        header=message.header, message_annotations={Symbol("x-opt-partition-key"): "k"},
        properties=message.properties, application_properties=message.application_properties,
        body=message.body, footer={Symbol("f"): "x"})
    layout = MessageLayout.parse(encoded)
    assert layout.annotation_count == 2
    extra = bytes(encode_value(Symbol("x-opt-offset"))) + bytes(encode_value("7"))
    spliced = decode_message(layout.encode(extra, 2))
    assert spliced.message_annotations == {Symbol("x-opt-offset"): "7", Symbol("x-opt-partition-key"): "k"}
    assert spliced.data == [b"one", b"two"] and spliced.properties == message.properties
    assert decode_message(encode_message(Message(body=[amqp_value(None)]))).value is None


# Frames captured from azure-eventhub 5.15.1 (pure-Python AMQP) talking to the emulator:
# a consumer's attach with a selector filter, and a one-event batch with a partition key.
SDK_CONSUMER_ATTACH = bytes.fromhex(
    "0000019f02000001005312d00000018f0000000ea12464333664313761652d623366342d346264302d623432352d3331"
    "653934653464613064615203560150005000005328c0cb0ba147616d7170733a2f2f3132372e302e302e313a35333034"
    "332f696f742d6576656e74732f436f6e73756d657247726f7570732f2444656661756c742f506172746974696f6e732f"
    "30404040404040c17602a3216170616368652e6f72673a73656c6563746f722d66696c7465723a737472696e6700a321"
    "6170616368652e6f72673a73656c6563746f722d66696c7465723a737472696e67a12c616d71702e616e6e6f74617469"
    "6f6e2e782d6f70742d73657175656e63652d6e756d626572203e3d20273527404040005329c03b07a132726563656976"
    "65722d6c696e6b2d64333664313761652d623366342d346264302d623432352d33316539346534646130646140404040"
    "404040404080000000000010000040e02201b30000001c636f6d2e6d6963726f736f66743a67656f7265706c69636174"
    "696f6ec11a02a315636f6d2e6d6963726f736f66743a74696d656f75745500"
)
SDK_BATCH_TRANSFER = bytes.fromhex(
    "000000b402000001005314c0190b52035201a004000000017080013700560056004040404040005370c0070556014040"
    "4040005372c11a02a313782d6f70742d706172746974696f6e2d6b6579a1026b31005375a05e005370c0070556014040"
    "4040005372c11a02a313782d6f70742d706172746974696f6e2d6b6579a1026b31005373c0190d404040404040a30a74"
    "6578742f706c61696e404040404040005374c10602a1016e5401005375a00568656c6c6f"
)


def test_decodes_a_consumer_attach_captured_from_the_sdk():
    header = parse_frame_header(SDK_CONSUMER_ATTACH)
    assert (header.size, header.frame_type, header.channel) == (len(SDK_CONSUMER_ATTACH), 0, 1)
    attach, payload = decode_frame_body(SDK_CONSUMER_ATTACH[8:])
    assert isinstance(attach, Attach) and not payload
    assert attach.role is True and attach.handle == 3 and attach.max_message_size == 1048576
    assert attach.source.address.endswith("/iot-events/ConsumerGroups/$Default/Partitions/0")
    selector = attach.source.filter[Symbol("apache.org:selector-filter:string")]
    assert selector == Described(Symbol("apache.org:selector-filter:string"),
                                 "amqp.annotation.x-opt-sequence-number >= '5'")
    assert attach.target.address.startswith("receiver-link-")
    assert attach.desired_capabilities == Array([Symbol("com.microsoft:georeplication")], Symbol)
    assert attach.properties == {Symbol("com.microsoft:timeout"): Long(0)}
    reencoded = encode_frame(attach, channel=1)  # our encoding may be more compact, never different
    assert len(reencoded) <= len(SDK_CONSUMER_ATTACH)
    assert decode_frame_body(reencoded[8:])[0] == attach


def test_decodes_a_batch_transfer_captured_from_the_sdk():
    transfer, payload = decode_frame_body(SDK_BATCH_TRANSFER[8:])
    assert isinstance(transfer, Transfer)
    assert transfer.message_format == BATCH_MESSAGE_FORMAT and transfer.settled is False and transfer.more is False
    events, partition_key = parse_transfer(bytes(payload), transfer.message_format)
    assert partition_key == "k1" and len(events) == 1
    event = decode_message(events[0])
    assert event.data == [b"hello"]
    assert event.message_annotations == {Symbol("x-opt-partition-key"): "k1"}
    assert event.properties.content_type == "text/plain"
    assert event.application_properties == {"n": Int(1)}
