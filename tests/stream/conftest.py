"""Fixtures for the streaming tests: real ``iotgen.emulator`` subprocesses on 127.0.0.1, the real SDK.

Every emulator a test starts is stopped at teardown. Events are read back with the SDK's
``EventHubConsumerClient`` directly (not with iotgen's own reader), always bounded by a count and a deadline.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from azure.eventhub import EventHubConsumerClient

from iotgen.settings.config import Config, Secret
from iotgen.emulator import EmulatorProcess

READ_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def hubs() -> Iterator[EmulatorProcess]:
    """One emulator per test module with several hubs (``hubs.connection_string_for(name)``), for tests that
    each use their own hub: ``a`` to ``h``, 4 partitions each."""
    process = EmulatorProcess(port=0, hub=list("abcdefgh"), partitions=4, key=secrets.token_urlsafe(24))
    process.start()
    yield process
    process.close()


@pytest.fixture
def emulator(emulator_factory) -> EmulatorProcess:
    """A fresh in-memory emulator: hub ``iot-events``, 4 partitions, a random key."""
    return emulator_factory(hub="iot-events", partitions=4)


def make_config(connection_string: str, **params: Any) -> Config:
    """A Config for streaming to ``connection_string`` (``params`` by lower-case attribute name)."""
    params.setdefault("random_seed", 11)
    params.setdefault("sleep_interval_sec", 0)
    return Config(eventhub_connection_string=Secret(connection_string), **params)


@dataclass
class Received:
    partition: str
    sequence_number: int
    partition_key: str | None
    content_type: str | None
    message_id: Any
    properties: dict
    body: dict


def read_events_back(connection_string: str, count: int, *, partition_id: str | None = None,
              starting_position: Any = "-1", inclusive: bool = False,
              timeout: float = READ_TIMEOUT, drain: bool = False) -> list[Received]:
    """Read events with the SDK until ``count`` arrived or ``timeout`` passed (with ``drain``, then on until
    nothing new arrives for 0.6 s: extra events show up too); sorted by partition and sequence number."""
    client = EventHubConsumerClient.from_connection_string(connection_string, consumer_group="$Default")
    events: list[Received] = []
    lock = threading.Lock()
    enough = threading.Event()

    def on_batch(context: Any, batch: list) -> None:
        with lock:
            for event in batch:
                key = event.partition_key
                events.append(Received(
                    context.partition_id, event.sequence_number,
                    key.decode() if isinstance(key, bytes) else key, event.content_type, event.message_id,
                    {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                     for k, v in (event.properties or {}).items()},
                    json.loads(event.body_as_str())))
            if len(events) >= count:
                enough.set()

    kwargs: dict[str, Any] = dict(on_event_batch=on_batch, starting_position=starting_position,
                                  starting_position_inclusive=inclusive, max_wait_time=0.3, max_batch_size=1000,
                                  prefetch=2000)
    if partition_id is not None:
        kwargs["partition_id"] = partition_id
    thread = threading.Thread(target=client.receive_batch, kwargs=kwargs, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    enough.wait(timeout)
    seen = -1
    while drain and time.monotonic() < deadline:  # then drain: stop once nothing new arrives for 0.6 s
        time.sleep(0.6)
        with lock:
            if len(events) == seen:
                break
            seen = len(events)
    client.close()
    thread.join(15)
    assert not thread.is_alive(), "the consumer did not stop"
    return sorted(events, key=lambda e: (e.partition, e.sequence_number))


@pytest.fixture
def stream_config() -> Callable[..., Config]:
    """``stream_config(connection_string, **params)``: a Config streaming there (seed 11, no pause)."""
    return make_config


@pytest.fixture
def read_back() -> Callable[..., list[Received]]:
    """``read_back(connection_string, count, ...)``: events read with the SDK, see :func:`read_events_back`."""
    return read_events_back
