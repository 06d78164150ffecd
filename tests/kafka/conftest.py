"""Fixtures for the Kafka tests: the same client tests run against a real Apache Kafka broker and against the
emulator's Kafka endpoint (``endpoint`` is parametrised), so every behaviour the emulator claims is the broker's
too. Both are real processes on 127.0.0.1, started once per session and stopped by PID at the end; every
client call in the tests is bounded by a count and a deadline.
"""

from __future__ import annotations

import itertools
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from iotgen.emulator import EmulatorProcess

#: Upper bound of any wait in these tests.
TIMEOUT = 30.0
PARTITIONS = 4
#: Topics (event hubs) of the shared emulator: one per test that asks for a topic.
EMULATOR_TOPICS = [f"topic-{i:02d}" for i in range(40)]
_next_topic = itertools.count()


@pytest.fixture(scope="session")
def kafka_emulator() -> Iterator[EmulatorProcess]:
    """The emulator with its Kafka endpoint on a free port, a random key, 40 event hubs of 4 partitions."""
    with EmulatorProcess(port=0, hub=EMULATOR_TOPICS, partitions=PARTITIONS, key=secrets.token_urlsafe(24),
                         kafka_port="any") as process:
        yield process


@dataclass
class KafkaEndpoint:
    """Where the clients connect: the broker's SASL listener or the emulator's Kafka endpoint."""

    kind: str  # "broker" or "emulator"
    bootstrap: str
    password: str
    new_topic: Callable[[], str]
    emulator: EmulatorProcess | None = None

    def confluent(self, **extra: Any) -> dict[str, Any]:
        """librdkafka settings (confluent-kafka) with SASL PLAIN as Event Hubs wants it."""
        return {"bootstrap.servers": self.bootstrap, "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "PLAIN", "sasl.username": "$ConnectionString", "sasl.password": self.password,
                **extra}

    def kafka_python(self, **extra: Any) -> dict[str, Any]:
        """kafka-python settings with SASL PLAIN."""
        return {"bootstrap_servers": self.bootstrap, "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN", "sasl_plain_username": "$ConnectionString",
                "sasl_plain_password": self.password, **extra}


@pytest.fixture(params=["broker", "emulator"])
def endpoint(request: pytest.FixtureRequest) -> KafkaEndpoint:
    if request.param == "broker":
        broker = request.getfixturevalue("kafka_broker")
        return KafkaEndpoint("broker", broker.sasl_bootstrap, broker.password,
                             lambda: broker.create_topic(f"topic-{uuid.uuid4().hex[:12]}", PARTITIONS))
    emulator: EmulatorProcess = request.getfixturevalue("kafka_emulator")

    def next_topic() -> str:
        index = next(_next_topic)
        if index >= len(EMULATOR_TOPICS):
            pytest.fail("the shared emulator has no unused topic left: add names to EMULATOR_TOPICS")
        return EMULATOR_TOPICS[index]

    return KafkaEndpoint("emulator", emulator.kafka_bootstrap, namespace_connection_string(emulator), next_topic,
                         emulator)


def namespace_connection_string(emulator: EmulatorProcess) -> str:
    """The emulator's connection string without EntityPath: good for every event hub (one with EntityPath
    limits the Kafka connection to that hub, as its SAS token does on the AMQP side)."""
    return emulator.connection_string.split(";EntityPath=")[0]


def consume(consumer: Any, count: int, timeout: float = TIMEOUT) -> list[Any]:
    """Poll a confluent-kafka consumer until ``count`` messages arrived (or the deadline: fewer are returned);
    a message carrying an error fails the test."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        for message in consumer.consume(min(500, count - len(got)), timeout=0.5):
            if message.error():
                pytest.fail(f"consumer error: {message.error()}")
            got.append(message)
    return got
