"""Fixtures for the Kafka tests: the same client tests run against a real Apache Kafka broker and against the
emulator's Kafka endpoint (``endpoint`` is parametrised), so every behaviour the emulator claims is the broker's
too. Both are real processes on 127.0.0.1, started once per session and stopped by PID at the end; every
client call in the tests is bounded by a count and a deadline (helpers in kafka_support.py).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kafka_support import EMULATOR_TOPICS, PARTITIONS, namespace_connection_string, next_emulator_topic

from iotgen.emulator import EmulatorProcess


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
    return KafkaEndpoint("emulator", emulator.kafka_bootstrap, namespace_connection_string(emulator),
                         next_emulator_topic, emulator)
