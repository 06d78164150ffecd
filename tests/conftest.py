"""Fixtures shared by the test areas."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture
def emulator_factory() -> Iterator[Callable[..., Any]]:
    """Start local Event Hubs endpoints (``iotgen.emulator.EmulatorProcess`` keyword arguments; a free port
    unless ``port`` is given) as subprocesses on 127.0.0.1; every one is stopped at teardown."""
    from iotgen.emulator import EmulatorProcess

    started: list[EmulatorProcess] = []

    def start(**kwargs: Any) -> EmulatorProcess:
        kwargs.setdefault("port", 0)
        process = EmulatorProcess(**kwargs)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.close()


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Any]:
    """A real Apache Kafka broker (KRaft, Java 17, jars from deps/maven/kafka-broker) for the session: PLAINTEXT
    on ``kafka_broker.bootstrap``, SASL_PLAINTEXT (PLAIN, user ``$ConnectionString``, password
    ``kafka_broker.password``) on ``kafka_broker.sasl_bootstrap``; stopped by PID at the end."""
    import secrets

    from kafka_broker import KafkaBroker

    # a local endpoint's connection string: Spark's Kafka route builds the very same options for both
    password = ("Endpoint=sb://127.0.0.1/;SharedAccessKeyName=RootManageSharedAccessKey;"
                f"SharedAccessKey={secrets.token_urlsafe(24)};UseDevelopmentEmulator=true")
    broker = KafkaBroker(password)
    try:
        broker.start()
        yield broker
    finally:
        broker.close()
