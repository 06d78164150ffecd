"""Kafka clients against the real broker and the emulator's Kafka endpoint: the same tests, the same assertions.

confluent-kafka (librdkafka) and kafka-python (pure Python) produce and consume, with idempotent producers,
gzip, keys and headers, consumer groups (join, sync, heartbeat, leave, rebalance), committed offsets, offset
queries by position and time, and SASL PLAIN failures.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from kafka_support import PARTITIONS, TIMEOUT, consume


def _produce(endpoint, topic: str, n: int, **settings) -> list:
    """Send ``n`` keyed events with headers; return the delivery reports (every one must succeed)."""
    reports: list = []
    producer = Producer(endpoint.confluent(**settings))
    for i in range(n):
        producer.produce(topic, value=f"event-{i}".encode(), key=f"sensor-{i % 10:05d}".encode(),
                         headers=[("schema_version", b"1"), ("index", str(i).encode())],
                         on_delivery=lambda err, msg: reports.append((err, msg)))
        producer.poll(0)
    assert producer.flush(TIMEOUT) == 0
    assert [err for err, _ in reports if err is not None] == []
    return [msg for _, msg in reports]


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_confluent_round_trip_keys_headers_offsets(endpoint, compression: str) -> None:
    topic = endpoint.new_topic()
    before = int(time.time() * 1000) - 1000
    delivered = _produce(endpoint, topic, 300, **{"enable.idempotence": True, "compression.type": compression,
                                                  "linger.ms": 20, "partitioner": "murmur2_random"})
    after = int(time.time() * 1000) + 1000
    by_key = {}
    for message in delivered:  # one key, one partition (murmur2 as the Java client does)
        by_key.setdefault(message.key(), set()).add(message.partition())
    assert all(len(parts) == 1 for parts in by_key.values())
    consumer = Consumer(endpoint.confluent(**{"group.id": f"g-{topic}", "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic])
    try:
        got = consume(consumer, 300)
    finally:
        consumer.close()
    assert sorted(m.value() for m in got) == sorted(f"event-{i}".encode() for i in range(300))
    for message in got:
        index = int(message.value().split(b"-")[1])
        assert message.key() == f"sensor-{index % 10:05d}".encode()
        assert message.headers() == [("schema_version", b"1"), ("index", str(index).encode())]
        kind, timestamp = message.timestamp()
        assert kind != 0 and before <= timestamp <= after
    for partition in range(PARTITIONS):  # offsets per partition: 0, 1, 2... in order, as delivered
        offsets = [m.offset() for m in got if m.partition() == partition]
        assert offsets == list(range(len(offsets)))
        assert sorted(m.offset() for m in delivered if m.partition() == partition) == offsets


def test_kafka_python_producer_to_confluent_consumer_and_back(endpoint) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    topic = endpoint.new_topic()
    producer = KafkaProducer(**endpoint.kafka_python(compression_type="gzip", acks="all"))
    futures = [producer.send(topic, value=f"py-{i}".encode(), key=b"k", headers=[("h", bytes([i % 256]))])
               for i in range(50)]
    metadata = [f.get(timeout=TIMEOUT) for f in futures]
    producer.close(timeout=TIMEOUT)
    assert len({m.partition for m in metadata}) == 1
    assert [m.offset for m in metadata] == list(range(50))

    consumer = Consumer(endpoint.confluent(**{"group.id": f"g-{topic}", "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic])
    try:
        got = consume(consumer, 50)
    finally:
        consumer.close()
    assert [m.value() for m in got] == [f"py-{i}".encode() for i in range(50)]
    assert [m.headers() for m in got] == [[("h", bytes([i % 256]))] for i in range(50)]

    _produce(endpoint, topic, 20)
    reader = KafkaConsumer(topic, **endpoint.kafka_python(group_id=f"py-{topic}", auto_offset_reset="earliest",
                                                           enable_auto_commit=False, consumer_timeout_ms=10_000))
    try:
        seen = []
        deadline = time.monotonic() + TIMEOUT
        while len(seen) < 70 and time.monotonic() < deadline:
            for records in reader.poll(timeout_ms=500).values():
                seen.extend(records)
        reader.commit()
        committed = {p: reader.committed(p) for p in reader.assignment()}
    finally:
        reader.close()
    assert sorted(r.value for r in seen) == sorted([f"py-{i}".encode() for i in range(50)]
                                                   + [f"event-{i}".encode() for i in range(20)])
    assert sum(committed.values()) == 70  # committed offset = next offset to read, per partition


def test_committed_offsets_resume_a_group(endpoint) -> None:
    topic = endpoint.new_topic()
    _produce(endpoint, topic, 100)
    settings = {"group.id": f"g-{topic}", "auto.offset.reset": "earliest", "enable.auto.commit": False}
    first = Consumer(endpoint.confluent(**settings))
    first.subscribe([topic])
    try:
        got = consume(first, 100)
        first.commit(asynchronous=False)
        committed = first.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=TIMEOUT)
    finally:
        first.close()
    assert len(got) == 100
    assert sum(tp.offset for tp in committed) == 100
    _produce(endpoint, topic, 30)
    second = Consumer(endpoint.confluent(**settings))
    second.subscribe([topic])
    try:
        again = consume(second, 30)
        extra = consume(second, 1, timeout=2.0)
    finally:
        second.close()
    assert sorted(m.value() for m in again) == sorted(f"event-{i}".encode() for i in range(30))
    assert extra == []  # nothing committed before is read again


def test_offsets_by_position_and_time(endpoint) -> None:
    topic = endpoint.new_topic()
    producer = Producer(endpoint.confluent())
    for i in range(10):
        producer.produce(topic, value=b"early", partition=0)
    assert producer.flush(TIMEOUT) == 0
    time.sleep(1.2)
    middle = int(time.time() * 1000)
    time.sleep(0.2)
    for i in range(5):
        producer.produce(topic, value=b"late", partition=0)
    assert producer.flush(TIMEOUT) == 0
    consumer = Consumer(endpoint.confluent(**{"group.id": f"g-{topic}"}))
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT) == (0, 15)
        assert consumer.get_watermark_offsets(TopicPartition(topic, 1), timeout=TIMEOUT) == (0, 0)
        found = consumer.offsets_for_times([TopicPartition(topic, 0, middle)], timeout=TIMEOUT)
        assert found[0].offset == 10
        future = consumer.offsets_for_times([TopicPartition(topic, 0, int(time.time() * 1000) + 60_000)],
                                            timeout=TIMEOUT)
        assert future[0].offset == -1  # no event that late: the end (librdkafka's OFFSET_END)
    finally:
        consumer.close()


def test_two_consumers_share_the_partitions_then_one_takes_all(endpoint) -> None:
    topic = endpoint.new_topic()
    _produce(endpoint, topic, 40)
    settings = {"group.id": f"g-{topic}", "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 500, "partition.assignment.strategy": "range"}
    first, second = Consumer(endpoint.confluent(**settings)), Consumer(endpoint.confluent(**settings))
    first.subscribe([topic])
    second.subscribe([topic])
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            first.poll(0.2)
            second.poll(0.2)
            a = {tp.partition for tp in first.assignment()}
            b = {tp.partition for tp in second.assignment()}
            if a and b and a | b == set(range(PARTITIONS)):
                break
        assert a and b and not a & b and a | b == set(range(PARTITIONS))
        second.close()
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and {tp.partition for tp in first.assignment()} != set(range(PARTITIONS)):
            first.poll(0.2)
        assert {tp.partition for tp in first.assignment()} == set(range(PARTITIONS))
    finally:
        first.close()


def test_wrong_password_is_an_authentication_error(endpoint) -> None:
    errors: list = []
    wrong = endpoint.password.replace("SharedAccessKey=", "SharedAccessKey=x")
    admin = AdminClient(endpoint.confluent(**{"sasl.password": wrong, "error_cb": errors.append}))
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)
    deadline = time.monotonic() + TIMEOUT
    while not errors and time.monotonic() < deadline:
        admin.poll(0.2)  # error_cb runs here
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors)
    assert any("Authentication failed" in e.str() for e in errors)


def test_unknown_topic_is_reported(endpoint) -> None:
    admin = AdminClient(endpoint.confluent())
    metadata = admin.list_topics("no-such-topic", timeout=TIMEOUT)
    assert metadata.topics["no-such-topic"].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
