"""Throughput of the emulator with the real SDK (a benchmark, not part of the test suite).

Sends 100,000 events of ~500 bytes with the sync producer in full batches, then
receives them all with the sync consumer, and reports events/s together with the
CPU time the emulator process used.  The emulator must not be the bottleneck: its
CPU cost per event must allow well over 20,000 events/s on one core.

    python bench/bench_emulator.py        (from the repository root; uses the emulator tests' fixtures)
"""

from __future__ import annotations

import os
import time

import pytest
from azure.eventhub import EventData, EventHubProducerClient

pytestmark = [pytest.mark.timeout(600)]

EVENTS = int(os.environ.get("IOTGEN_EMULATOR_BENCHMARK_EVENTS", "100000"))
#: Emulator CPU budget per event: 20,000 events/s must cost at most half a core.
MAX_CPU_PER_EVENT = 0.5 / 20_000


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("durable", [False, True], ids=["in-memory", "data-dir"])
def test_send_and_receive_throughput(emulator_factory, receiver, tmp_path, durable):
    emulator = emulator_factory(partitions=4, data_dir=tmp_path / "data" if durable else None)
    body = ("0123456789abcdef" * 32)[:500]
    with EventHubProducerClient.from_connection_string(emulator.connection_string) as producer:
        producer.get_eventhub_properties()  # connect before timing
        cpu, started = _cpu_seconds(emulator.pid), time.perf_counter()
        batch, sent = producer.create_batch(), 0
        while sent < EVENTS:
            try:
                batch.add(EventData(body))
                sent += 1
            except ValueError:
                producer.send_batch(batch)
                batch = producer.create_batch()
        producer.send_batch(batch)
        send_seconds = time.perf_counter() - started
        send_cpu = _cpu_seconds(emulator.pid) - cpu

    cpu, started = _cpu_seconds(emulator.pid), time.perf_counter()
    received = len(receiver(emulator.connection_string).wait_for(EVENTS, timeout=300))
    receive_seconds = time.perf_counter() - started
    receive_cpu = _cpu_seconds(emulator.pid) - cpu

    print(f"\n[{'data-dir' if durable else 'in-memory'}] {EVENTS} events of {len(body)} bytes: "
          f"send {EVENTS / send_seconds:,.0f} events/s (emulator CPU {1e6 * send_cpu / EVENTS:.1f} us/event), "
          f"receive {received / receive_seconds:,.0f} events/s "
          f"(emulator CPU {1e6 * receive_cpu / max(received, 1):.1f} us/event)")
    assert received == EVENTS
    assert send_cpu / EVENTS < MAX_CPU_PER_EVENT
    assert receive_cpu / EVENTS < MAX_CPU_PER_EVENT


def test_ingest_capacity_with_a_prebuilt_batch(emulator_factory):
    """The SDK spends ~100 us encoding each event: re-sending one full batch shows the emulator's own rate."""
    emulator = emulator_factory(partitions=4)
    body = ("0123456789abcdef" * 32)[:500]
    with EventHubProducerClient.from_connection_string(emulator.connection_string) as producer:
        batch = producer.create_batch()
        with pytest.raises(ValueError):
            while True:
                batch.add(EventData(body))
        producer.send_batch(batch)
        rounds = max(1, EVENTS // len(batch))
        cpu, started = _cpu_seconds(emulator.pid), time.perf_counter()
        for _ in range(rounds):
            producer.send_batch(batch)
        seconds = time.perf_counter() - started
        used = _cpu_seconds(emulator.pid) - cpu
        total = rounds * len(batch)
        assert producer.get_partition_properties("0")["last_enqueued_sequence_number"] >= 0
    print(f"\n[prebuilt batch] {total} events of {len(body)} bytes in batches of {len(batch)}: "
          f"{total / seconds:,.0f} events/s (emulator CPU {1e6 * used / total:.1f} us/event)")
    assert total / seconds > 20_000
    assert used / total < MAX_CPU_PER_EVENT


if __name__ == "__main__":
    import sys

    sys.exit(pytest.main([__file__, "-s", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest", "-p", "tests.emulator.conftest"]))
