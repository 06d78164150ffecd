"""Helpers of the Kafka tests (imported by name: each test folder's conftest is also called conftest)."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from iotgen.emulator import EmulatorProcess

#: Upper bound of any wait in these tests.
TIMEOUT = 30.0
PARTITIONS = 4
#: Topics (event hubs) of the shared emulator: one per test that asks for a topic.
EMULATOR_TOPICS = [f"topic-{i:02d}" for i in range(40)]
_next_topic = itertools.count()


def next_emulator_topic() -> str:
    """An unused event hub of the shared emulator."""
    index = next(_next_topic)
    if index >= len(EMULATOR_TOPICS):
        pytest.fail("the shared emulator has no unused topic left: add names to EMULATOR_TOPICS")
    return EMULATOR_TOPICS[index]


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
