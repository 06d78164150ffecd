"""The in-process API: retention by memory budget, and that disconnects leave no
connection, reader or task behind."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from azure.eventhub import EventData, EventHubProducerClient

from iotgen.emulator import EventHubsEmulator
from iotgen.emulator.codec import SASL_HEADER

pytestmark = pytest.mark.timeout(60)

#: A tiny per-partition memory budget, so that retention drops events.
RETAINED_BYTES = 8 * 1024


class LoopThread:
    """An event loop running in a thread, with the emulator started on it."""

    def __init__(self, emulator: EventHubsEmulator) -> None:
        self.emulator = emulator
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def run(self, coroutine, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self) -> None:
        self._thread.start()
        self.run(self.emulator.start())

    def stop(self) -> None:
        self.run(self.emulator.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def served() -> Iterator[LoopThread]:
    served = LoopThread(EventHubsEmulator(hubs=["iot-events"], partitions=2, port=0,
                                          max_partition_bytes=RETAINED_BYTES))
    served.start()
    yield served
    served.stop()


async def _leftovers(emulator: EventHubsEmulator) -> tuple[int, int, int]:
    """Open connections, partition readers and pending tasks other than this one."""
    readers = sum(p.listener_count for hub in emulator.store.hubs for p in hub.partitions)
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    return len(emulator.connections), readers, len(tasks)


def test_retention_and_disconnects_leave_no_connections_readers_or_tasks(served, receiver):
    emulator = served.emulator
    assert emulator.connection_string().endswith(";UseDevelopmentEmulator=true;EntityPath=iot-events")
    with EventHubProducerClient.from_connection_string(emulator.connection_string(), retry_total=0) as producer:
        producer.send_batch([EventData(f"e{i:02d}".ljust(1000, ".")) for i in range(20)], partition_id="0")
        begin = producer.get_partition_properties("0")["beginning_sequence_number"]
        assert 0 < begin < 20  # 20 KB sent, about 8 KB kept
        received = receiver.partitions(emulator.connection_string(), ["0", "1"], 20 - begin, settle=0.2,
                                       consumer_group="other")
        assert [e.sequence_number for e in received["0"]] == list(range(begin, 20))  # from "-1": the oldest kept
        assert received["0"][0].body_as_str().startswith(f"e{begin:02d}")
        assert served.run(_leftovers(emulator))[1] == 2  # one reader per consumer link
        receiver.stop_all()

    # A client that vanishes in the middle of a frame.
    with socket.create_connection(("127.0.0.1", emulator.port)) as abrupt:
        abrupt.sendall(SASL_HEADER)
        abrupt.recv(8)
        abrupt.sendall(b"\x00\x00\x01\x00\x02\x01")

    deadline = time.monotonic() + 10
    while served.run(_leftovers(emulator)) != (0, 0, 0) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert served.run(_leftovers(emulator)) == (0, 0, 0)
