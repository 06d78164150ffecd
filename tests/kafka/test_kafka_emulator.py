"""What only the emulator's Kafka endpoint does: Event Hubs' semantics across protocols (an event sent with AMQP
is fetched with Kafka and the other way round), its credentials, persistence, and how it treats bad input.

Raw-protocol checks use iotgen.emulator.kafka_codec to send exactly the bytes they mean over a socket.
"""

from __future__ import annotations

import socket
import struct
import time

import pytest
from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from kafka_support import TIMEOUT, consume, namespace_connection_string, next_emulator_topic
from iotgen.emulator import EmulatorProcess
from iotgen.emulator.codec import Int, decode_value
from iotgen.emulator.kafka_codec import (
    APIS,
    COMPRESSION_GZIP,
    KafkaRecord,
    crc32c,
    crc32c_python,
    decode_record_batches,
    decode_response,
    encode_produce_batch,
    encode_request,
)


def _settings(emulator: EmulatorProcess, password: str | None = None, **extra) -> dict:
    return {"bootstrap.servers": emulator.kafka_bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN", "sasl.username": "$ConnectionString",
            "sasl.password": password or namespace_connection_string(emulator), **extra}


def _amqp_receive(connection_string: str, count: int) -> list:
    client = EventHubConsumerClient.from_connection_string(connection_string, consumer_group="$Default")
    received: list = []

    def on_event(partition_context, event) -> None:
        if event is not None:
            event.partition_id = partition_context.partition_id
            received.append(event)
        if len(received) >= count:
            client.close()

    import threading
    thread = threading.Thread(target=client.receive, kwargs={"on_event": on_event, "starting_position": "-1",
                                                              "max_wait_time": 0.5}, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    client.close()
    return received


@pytest.fixture
def hub(kafka_emulator):
    return next_emulator_topic()


# ---- across protocols -----------------------------------------------------------------------------------------
def test_amqp_event_reaches_a_kafka_consumer_as_the_interop_guide_says(kafka_emulator, hub) -> None:
    connection_string = kafka_emulator.connection_string_for(hub)
    producer = EventHubProducerClient.from_connection_string(connection_string)
    with producer:
        batch = producer.create_batch(partition_key="sensor-00042")
        event = EventData(b'{"temperature": 21.5}')
        event.properties = {"schema_version": "1", "count": Int(7), "raw": b"\x00\x01"}
        event.content_type = "application/json"
        event.message_id = "event-1"
        batch.add(event)
        producer.send_batch(batch)
    amqp = _amqp_receive(connection_string, 1)[0]

    consumer = Consumer(_settings(kafka_emulator, **{"group.id": "interop", "auto.offset.reset": "earliest"}))
    consumer.subscribe([hub])
    try:
        message = consume(consumer, 1)[0]
    finally:
        consumer.close()
    assert message.value() == b'{"temperature": 21.5}'
    assert message.key() is None  # the partition key is not promoted to the Kafka key
    headers = dict(message.headers())
    assert headers["x-opt-partition-key"] == b"sensor-00042"
    assert headers["schema_version"] == b"\xa1\x011"  # the AMQP encoding as sent: str8-utf8, length 1, "1"
    assert headers["count"][0] in (0x54, 0x71) and decode_value(headers["count"])[0] == 7  # an AMQP int
    assert headers["raw"] == b"\x00\x01"  # binary properties go as their bytes
    assert headers["content-type"] == b"application/json" and headers["message-id"] == b"event-1"
    assert message.partition() == int(amqp.partition_id)
    assert message.offset() == amqp.sequence_number
    assert message.timestamp() == (2, int(amqp.enqueued_time.timestamp() * 1000))  # log-append time


def test_kafka_event_reaches_an_amqp_consumer_as_the_interop_guide_says(kafka_emulator, hub) -> None:
    delivered = []
    producer = Producer(_settings(kafka_emulator))
    producer.produce(hub, value=b"kafka body", key=b"sensor-00007", headers=[("RawHeaders", b"\x00\x00\x00\x00"),
                                                                             ("text", b"hello")],
                     partition=2, on_delivery=lambda err, msg: delivered.append((err, msg)))
    producer.produce(hub, value=None, key=b"tombstone", partition=2,
                     on_delivery=lambda err, msg: delivered.append((err, msg)))
    assert producer.flush(TIMEOUT) == 0
    assert [err for err, _ in delivered] == [None, None]
    events = _amqp_receive(kafka_emulator.connection_string_for(hub), 2)
    event = events[0]
    assert event.body_as_str() == "kafka body"
    assert event.properties == {b"RawHeaders": b"\x00\x00\x00\x00", b"text": b"hello"}  # binary, as sent
    assert event.raw_amqp_message.annotations[b"x-opt-kafka-key"] == b"sensor-00007"
    assert event.partition_key is None  # the Kafka key is not promoted to a partition key
    assert event.sequence_number == delivered[0][1].offset()
    assert int(event.enqueued_time.timestamp() * 1000) == delivered[0][1].timestamp()[1]
    consumer = Consumer(_settings(kafka_emulator, **{"group.id": "back", "auto.offset.reset": "earliest"}))
    consumer.subscribe([hub])
    try:
        back = consume(consumer, 2)
    finally:
        consumer.close()
    assert [(m.key(), m.value(), m.headers()) for m in back] == [
        (b"sensor-00007", b"kafka body", [("RawHeaders", b"\x00\x00\x00\x00"), ("text", b"hello")]),
        (b"tombstone", None, None)]


# ---- credentials ------------------------------------------------------------------------------------------------
def _auth_errors(settings: dict) -> list:
    errors: list = []
    admin = AdminClient({**settings, "error_cb": errors.append})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)
    deadline = time.monotonic() + TIMEOUT
    while not errors and time.monotonic() < deadline:
        admin.poll(0.2)
    return [e for e in errors if e.code() == KafkaError._AUTHENTICATION]


def test_entity_path_of_an_unknown_hub_fails_authentication(kafka_emulator) -> None:
    password = namespace_connection_string(kafka_emulator) + ";EntityPath=no-such-hub"
    errors = _auth_errors(_settings(kafka_emulator, password))
    assert errors and "no-such-hub" in errors[0].str() and "could not be found" in errors[0].str()


def test_wrong_user_fails_authentication(kafka_emulator) -> None:
    errors = _auth_errors(_settings(kafka_emulator, **{"sasl.username": "admin"}))
    assert errors and "$ConnectionString" in errors[0].str()


def test_entity_path_limits_the_connection_to_its_hub(kafka_emulator, hub) -> None:
    settings = _settings(kafka_emulator, kafka_emulator.connection_string_for(hub))
    metadata = AdminClient(settings).list_topics(timeout=TIMEOUT)
    assert set(metadata.topics) == {hub}
    other = "topic-39"
    reports = []
    producer = Producer({**settings, "message.timeout.ms": 5000})
    producer.produce(other, b"x", partition=0, on_delivery=lambda err, msg: reports.append(err))
    producer.flush(TIMEOUT)
    assert reports and reports[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


# ---- persistence ------------------------------------------------------------------------------------------------
def test_events_and_committed_offsets_survive_a_restart(emulator_factory, tmp_path) -> None:
    emulator = emulator_factory(hub="iot-events", partitions=2, data_dir=tmp_path, kafka_port="any")
    producer = Producer(_settings(emulator, **{"enable.idempotence": True}))
    for i in range(20):
        producer.produce("iot-events", value=b"%d" % i, key=b"k%d" % i)
    assert producer.flush(TIMEOUT) == 0
    group = {"group.id": "durable", "auto.offset.reset": "earliest", "enable.auto.commit": False}
    consumer = Consumer(_settings(emulator, **group))
    consumer.subscribe(["iot-events"])
    try:
        first = consume(consumer, 12)
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    emulator.kill()  # no clean shutdown: what was acknowledged must be on disk
    emulator.start()
    consumer = Consumer(_settings(emulator, **group))
    consumer.subscribe(["iot-events"])
    try:
        rest = consume(consumer, 20 - len(first))
        extra = consume(consumer, 1, timeout=2.0)
    finally:
        consumer.close()
    assert sorted(m.value() for m in first + rest) == sorted(b"%d" % i for i in range(20))
    assert extra == []


# ---- bad input: the connection closes, the server keeps serving ------------------------------------------------
class _Raw:
    """A raw Kafka connection: requests encoded with kafka_codec, one response per request."""

    def __init__(self, emulator: EmulatorProcess, authenticate: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", emulator.kafka_port), timeout=TIMEOUT)
        self.correlation = 0
        if authenticate:
            assert self.call(17, 1, {"mechanism": "PLAIN"})["error_code"] == 0
            token = b"\x00$ConnectionString\x00" + namespace_connection_string(emulator).encode()
            assert self.call(36, 1, {"auth_bytes": token})["error_code"] == 0

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def call(self, api_key: int, version: int, body: dict) -> dict:
        self.correlation += 1
        self.send(encode_request(APIS[api_key], version, self.correlation, "raw-test", body))
        size = struct.unpack(">i", self._read(4))[0]
        correlation, response = decode_response(APIS[api_key], version, self._read(size))
        assert correlation == self.correlation
        return response

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed by the server")
            data += chunk
        return data

    def closed_by_server(self) -> bool:
        self.sock.settimeout(TIMEOUT)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def produce(self, topic: str, partition: int, batch: bytes) -> dict:
        response = self.call(0, 8, {"transactional_id": None, "acks": -1, "timeout_ms": 5000, "topics": [
            {"name": topic, "partitions": [{"index": partition, "records": batch}]}]})
        return response["topics"][0]["partitions"][0]

    def close(self) -> None:
        self.sock.close()


def _records(n: int, start: int = 0) -> list[KafkaRecord]:
    return [KafkaRecord(b"key", b"value-%d" % i, [("h", b"v")], 1_700_000_000_000 + i) for i in range(start, start + n)]


def test_malformed_frames_close_the_connection_not_the_server(kafka_emulator, hub) -> None:
    garbage = [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # a size of ~1.2 GB: refused at once
               struct.pack(">i", -5),
               struct.pack(">i", 40) + b"\x00\x12\x00\x03" + b"\xff" * 36,  # ApiVersions with a bogus body
               struct.pack(">i", 12) + b"\x00\x03\x00\x09\x00\x00\x00\x01\x00\x05ab"]  # truncated client id
    for data in garbage:
        raw = _Raw(kafka_emulator, authenticate=False)
        raw.send(data)
        assert raw.closed_by_server()
        raw.close()
    unauthenticated = _Raw(kafka_emulator, authenticate=False)
    unauthenticated.send(encode_request(APIS[3], 9, 1, "x", {"topics": None}))  # Metadata before SASL
    assert unauthenticated.closed_by_server()
    raw = _Raw(kafka_emulator)  # still serving
    assert raw.call(18, 3, {"client_software_name": "t", "client_software_version": "1"})["error_code"] == 0
    raw.close()


def test_corrupt_and_unsupported_batches_are_refused_with_kafka_errors(kafka_emulator, hub) -> None:
    raw = _Raw(kafka_emulator)
    try:
        good = encode_produce_batch(_records(3))
        corrupt = good[:-1] + bytes([good[-1] ^ 0xFF])
        assert raw.produce(hub, 0, corrupt)["error_code"] == 2  # CORRUPT_MESSAGE (CRC-32C)
        snappy = bytearray(good)
        snappy[22] |= 2  # attributes: snappy
        snappy[17:21] = struct.pack(">I", crc32c(bytes(snappy[21:])))
        assert raw.produce(hub, 0, bytes(snappy))["error_code"] == 76  # UNSUPPORTED_COMPRESSION_TYPE
        assert raw.produce(hub, 9, good)["error_code"] == 3  # no partition 9
        result = raw.produce(hub, 0, encode_produce_batch(_records(3), compression=COMPRESSION_GZIP))
        assert (result["error_code"], result["base_offset"]) == (0, 0)
        huge = encode_produce_batch([KafkaRecord(None, b"x" * (1024 * 1024 + 10), [], 0)])
        assert raw.produce(hub, 0, huge)["error_code"] == 10  # MESSAGE_TOO_LARGE (Event Hubs: 1 MB)
    finally:
        raw.close()


def test_idempotent_resend_is_stored_once(kafka_emulator, hub) -> None:
    raw = _Raw(kafka_emulator)
    try:
        init = raw.call(22, 4, {"transactional_id": None, "transaction_timeout_ms": 60000, "producer_id": -1,
                                "producer_epoch": -1})
        pid, epoch = init["producer_id"], init["producer_epoch"]
        first = encode_produce_batch(_records(5), producer_id=pid, producer_epoch=epoch, base_sequence=0)
        assert raw.produce(hub, 1, first)["base_offset"] == 0
        assert raw.produce(hub, 1, first)["base_offset"] == 0  # the same batch again: where it went, not stored
        gap = encode_produce_batch(_records(2), producer_id=pid, producer_epoch=epoch, base_sequence=9)
        assert raw.produce(hub, 1, gap)["error_code"] == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER
        second = encode_produce_batch(_records(2, 5), producer_id=pid, producer_epoch=epoch, base_sequence=5)
        assert raw.produce(hub, 1, second)["base_offset"] == 5
        fetched = raw.call(1, 11, {"replica_id": -1, "max_wait_ms": 0, "min_bytes": 1, "max_bytes": 1 << 20,
                                   "isolation_level": 0, "session_id": 0, "session_epoch": -1, "topics": [
                                       {"name": hub, "partitions": [{"partition": 1, "current_leader_epoch": -1,
                                                                     "fetch_offset": 0, "log_start_offset": -1,
                                                                     "partition_max_bytes": 1 << 20}]}],
                                   "forgotten": [], "rack_id": ""})
        partition = fetched["topics"][0]["partitions"][0]
        assert partition["high_watermark"] == 7
        batches = decode_record_batches(partition["records"], 1 << 20)
        assert [r.value for b in batches for r in b.records] == [b"value-%d" % i for i in range(7)]
    finally:
        raw.close()


def test_idle_connections_are_closed(emulator_factory) -> None:
    emulator = emulator_factory(hub="iot-events", kafka_port="any", extra_args=["--idle-timeout", "1"])
    raw = _Raw(emulator)
    raw.send(struct.pack(">i", 100) + b"\x00\x12")  # half a frame, then silence
    started = time.monotonic()
    assert raw.closed_by_server()
    assert time.monotonic() - started < 10


# ---- the codec ----------------------------------------------------------------------------------------------------
def test_crc32c_matches_the_standard_check_value_in_both_implementations() -> None:
    assert crc32c(b"123456789") == crc32c_python(b"123456789") == 0xE3069283
    data = bytes(range(256)) * 41
    assert crc32c(data) == crc32c_python(data)


def test_record_batches_round_trip_with_gzip() -> None:
    records = _records(50) + [KafkaRecord(None, None, [("null", None)], 1_700_000_000_100)]
    for compression in (0, COMPRESSION_GZIP):
        batch = encode_produce_batch(records, compression=compression)
        (decoded,) = decode_record_batches(batch + b"", 1 << 20)
        assert [(r.key, r.value, r.headers, r.timestamp) for r in decoded.records] == \
               [(r.key, r.value, r.headers, r.timestamp) for r in records]


def test_unauthenticated_silence_and_too_many_connections_are_closed(emulator_factory):
    emulator = emulator_factory(hub="iot-events", kafka_port="any", extra_args=["--max-connections", "2"])
    silent = _Raw(emulator, authenticate=False)  # connects, never authenticates: closed at the 10 s deadline
    kept = _Raw(emulator)  # authenticated: stays
    started = time.monotonic()
    extra = _Raw(emulator, authenticate=False)  # the third connection: closed at once
    assert extra.closed_by_server() and time.monotonic() - started < 5
    assert silent.closed_by_server() and 5 < time.monotonic() - started < 20
    assert kept.call(18, 3, {"client_software_name": "t", "client_software_version": "1"})["error_code"] == 0
    for raw in (silent, kept, extra):
        raw.close()
