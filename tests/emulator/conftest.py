"""Fixtures for the Event Hubs emulator tests.

The emulator always runs as a subprocess (``python -m iotgen.emulator``) on a free
port and is always stopped at teardown, even when tests fail.  ``emulator`` gives
each test a fresh event hub of one emulator shared by the session (starting a
process per test costs more than most tests); ``emulator_factory`` starts
dedicated processes for tests that kill, restart or configure them.  The helpers
receive with the real SDK and always stop on a count or a deadline.
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from azure.eventhub import EventData, EventHubConsumerClient

from iotgen.emulator import EmulatorProcess

#: Upper bound for any single receive in these tests.
RECEIVE_TIMEOUT = 30.0


#: Event hubs of the shared emulator: one per test using the ``emulator`` fixture.
SHARED_HUBS = [f"hub-{i:02d}" for i in range(40)]
_next_shared_hub = itertools.count()


@dataclass(frozen=True)
class HubEndpoint:
    """One event hub (4 partitions, in memory) of a running emulator."""

    port: int
    hub: str
    connection_string: str


@pytest.fixture(scope="session")
def shared_emulator() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(port=0, hub=SHARED_HUBS, partitions=4) as process:
        yield process


@pytest.fixture
def emulator(request: pytest.FixtureRequest) -> HubEndpoint:
    """A fresh, empty event hub with 4 partitions (a dedicated emulator once the shared hubs run out)."""
    index = next(_next_shared_hub)
    if index < len(SHARED_HUBS):
        process: EmulatorProcess = request.getfixturevalue("shared_emulator")
        hub = SHARED_HUBS[index]
    else:
        process = request.getfixturevalue("emulator_factory")(hub="iot-events", partitions=4)
        hub = process.hub
    return HubEndpoint(process.port, hub, process.connection_string_for(hub))


class Receiver:
    """Receives with ``EventHubConsumerClient.receive_batch`` in a thread until a count or a deadline."""

    def __init__(self, connection_string: str, *, consumer_group: str = "$Default",
                 starting_position: Any = "-1", inclusive: bool = False, partition_id: str | None = None,
                 max_wait_time: float = 0.3, **receive_options: Any) -> None:
        self.client = EventHubConsumerClient.from_connection_string(
            connection_string, consumer_group=consumer_group, retry_total=1)
        self.events: list[EventData] = []
        self._partition_of: dict[int, str] = {}
        self._lock = threading.Lock()
        self._target = 0
        self._enough = threading.Event()
        self.live = threading.Event()
        #: The partition's last enqueued event, when receiving with track_last_enqueued_event_properties.
        self.last_enqueued: dict[str, Any] | None = None
        #: Errors the SDK reported to on_error.
        self.errors: list[Exception] = []
        kwargs: dict[str, Any] = dict(on_event_batch=self._on_batch, on_error=self._on_error,
                                      starting_position=starting_position,
                                      starting_position_inclusive=inclusive, max_wait_time=max_wait_time,
                                      max_batch_size=300, **receive_options)
        if partition_id is not None:
            kwargs["partition_id"] = partition_id
        self._thread = threading.Thread(target=self.client.receive_batch, kwargs=kwargs, daemon=True)

    def _on_batch(self, context: Any, batch: list[EventData]) -> None:
        self.live.set()  # an empty batch after max_wait_time means the link is attached
        with self._lock:
            if batch:
                self.last_enqueued = context.last_enqueued_event_properties
            for event in batch:
                self._partition_of[id(event)] = context.partition_id
            self.events.extend(batch)
            if self._target and len(self.events) >= self._target:
                self._enough.set()

    def _on_error(self, context: Any, error: Exception) -> None:
        self.errors.append(error)

    def wait_for_error(self, timeout: float = RECEIVE_TIMEOUT) -> Exception:
        """The first error the SDK reported, waiting for one if needed."""
        deadline = time.monotonic() + timeout
        while not self.errors and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.errors, "the consumer reported no error"
        return self.errors[0]

    def partition(self, event: EventData) -> str:
        """The partition id ``event`` was received from."""
        return self._partition_of[id(event)]

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def wait_live(self, timeout: float = RECEIVE_TIMEOUT) -> None:
        assert self.live.wait(timeout), "the consumer did not start receiving in time"

    def wait_for(self, count: int, timeout: float = RECEIVE_TIMEOUT, settle: float = 0.0) -> list[EventData]:
        """Wait until ``count`` events arrived, then ``settle`` more seconds for extras.

        The consumer keeps running (the fixture stops all of them concurrently at
        teardown); the events received so far are returned.
        """
        with self._lock:
            self._target = count
            if len(self.events) >= count:
                self._enough.set()
            else:
                self._enough.clear()
        self._enough.wait(timeout)
        if settle:
            time.sleep(settle)
        with self._lock:
            return list(self.events)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self.client.close()
        self._thread.join(timeout=15)
        assert not self._thread.is_alive(), "the consumer thread did not stop"


def _stop_all(receivers: list[Receiver]) -> None:
    """Closing an SDK client takes a while: close them all at once."""
    running = [r for r in receivers if r.running]
    if running:
        with ThreadPoolExecutor(len(running)) as pool:
            list(pool.map(Receiver.stop, running))


def receive_partitions(create: Callable[..., Receiver], connection_string: str, partition_ids: list[str],
                       count: int, settle: float = 0.3, stop: bool = False,
                       **options: Any) -> dict[str, list[EventData]]:
    """Receive from each partition with its own consumer, concurrently, until ``count`` events in all.

    The consumers are stopped before returning with ``stop``, else at teardown.
    """
    consumers = {p: create(connection_string, partition_id=p, **options) for p in partition_ids}
    deadline = time.monotonic() + RECEIVE_TIMEOUT
    while sum(len(c.events) for c in consumers.values()) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(settle)  # room for unexpected extra events
    received = {p: c.wait_for(0) for p, c in consumers.items()}
    if stop:
        _stop_all(list(consumers.values()))
    return received


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    """Create and start :class:`Receiver` objects; all are stopped at teardown.

    ``receiver.partitions(...)`` is :func:`receive_partitions` and ``receiver.stop_all()``
    stops every receiver created so far, concurrently.
    """
    created: list[Receiver] = []

    def create(connection_string: str, **kwargs: Any) -> Receiver:
        receiver = Receiver(connection_string, **kwargs)
        created.append(receiver)
        return receiver.start()

    create.partitions = functools.partial(receive_partitions, create)  # type: ignore[attr-defined]
    create.stop_all = functools.partial(_stop_all, created)  # type: ignore[attr-defined]
    yield create
    _stop_all(created)
