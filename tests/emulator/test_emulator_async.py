"""Async SDK clients, mixed with a sync consumer, all at once against one emulator."""

from __future__ import annotations

import asyncio
import functools
import time
from collections import defaultdict

import pytest
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient

pytestmark = pytest.mark.timeout(120)

TOTAL = 300
KEYS = [f"sensor-{k}" for k in range(10)]
ASYNC_GROUPS = ["$Default", "analytics"]


async def _produce_and_consume(connection_string: str, wait_sync_consumers_live) -> dict[str, list[EventData]]:
    received: dict[str, list[EventData]] = {group: [] for group in ASYNC_GROUPS}
    live = {group: asyncio.Event() for group in ASYNC_GROUPS}
    complete = {group: asyncio.Event() for group in ASYNC_GROUPS}

    async def on_event_batch(group: str, _context, events: list[EventData]) -> None:
        live[group].set()
        received[group].extend(events)
        if len(received[group]) >= TOTAL:
            complete[group].set()

    consumers = [EventHubConsumerClient.from_connection_string(connection_string, consumer_group=group)
                 for group in ASYNC_GROUPS]
    tasks = [asyncio.create_task(consumer.receive_batch(
        functools.partial(on_event_batch, group), starting_position="-1", max_wait_time=0.3))
        for consumer, group in zip(consumers, ASYNC_GROUPS, strict=True)]
    try:
        # Every consumer is attached before anything is sent: events are pushed live.
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in live.values())), 30)
        await asyncio.to_thread(wait_sync_consumers_live)
        async with EventHubProducerClient.from_connection_string(connection_string) as producer:
            for key_index, key in enumerate(KEYS):
                batch = await producer.create_batch(partition_key=key)
                for i in range(key_index, TOTAL, len(KEYS)):
                    event = EventData(f"{key}:{i}")
                    event.properties = {"i": i}
                    batch.add(event)
                await producer.send_batch(batch)
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in complete.values())), 30)
    finally:
        for consumer in consumers:
            await consumer.close()
        # After close() the SDK's receive_batch coroutine still sleeps out its
        # load-balancing interval before returning: cancel it instead of waiting.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return received


def _check(events: list[EventData]) -> None:
    assert len(events) == TOTAL
    order: dict[str, list[int]] = defaultdict(list)
    for event in events:
        key, i = event.body_as_str().split(":")
        assert event.partition_key == key.encode()
        assert event.properties[b"i"] == int(i)
        order[key].append(int(i))
    assert sorted(i for values in order.values() for i in values) == list(range(TOTAL))
    for values in order.values():
        assert values == sorted(values)


def test_async_producer_and_concurrent_async_and_sync_consumers(emulator, receiver):
    sync_consumers = [receiver(emulator.connection_string, consumer_group="sync-readers", partition_id=p)
                      for p in ("0", "1", "2", "3")]

    def wait_sync_consumers_live() -> None:
        for consumer in sync_consumers:
            consumer.wait_live()

    received = asyncio.run(_produce_and_consume(emulator.connection_string, wait_sync_consumers_live))
    for group in ASYNC_GROUPS:
        _check(received[group])
    deadline = time.monotonic() + 30
    while sum(len(c.events) for c in sync_consumers) < TOTAL and time.monotonic() < deadline:
        time.sleep(0.05)
    _check([event for consumer in sync_consumers for event in consumer.wait_for(0, settle=0.1)])
