"""The ingest's Kafka source: librdkafka (confluent-kafka) reading every partition of a topic from the positions
the table holds.

No consumer group offsets are committed: the table is the only checkpoint (offsets per partition in each table
commit, see :mod:`iotgen.runs.ingest`). Partitions are assigned explicitly (no group membership), from the
offset after the last one the table holds, or from the beginning. librdkafka fetches in its own threads; one
thread here turns its messages into ``on_events(partition, bodies, offsets, timestamps in us)`` calls per
partition, and waits while the ingest's buffer is full (librdkafka's prefetch queue is bounded too). On Event
Hubs the offset is the sequence number and the timestamp the enqueued time, so the table gets the same
``_sequence_number`` and ``_enqueued_time`` as through AMQP.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..outputs.eventhubs import redact
from ..outputs.kafka import (
    LIBRDKAFKA_LOG,
    KafkaConfigError,
    KafkaTarget,
    KafkaUnavailable,
    check_topic,
    kafka_module,
)

_LOGGER = logging.getLogger(__name__)

OnEvents = Callable[[str, list, list, list], None]
OnError = Callable[[str | None, bool, str], None]
#: Messages taken from librdkafka per call.
CONSUME_BATCH = 2000
#: librdkafka's prefetch queue per partition, KiB.
PREFETCH_KBYTES = 32 * 1024


class KafkaSource:
    """Reads a topic for the ingest. ``open`` checks credentials and topic; ``receive`` starts the thread."""

    def __init__(self, target: KafkaTarget, consumer_group: str, timeout: float) -> None:
        kafka = kafka_module()
        self.target = target
        self.timeout = timeout
        self._errors: list = []
        settings = target.client_settings(**{
            "group.id": consumer_group, "enable.auto.commit": False, "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest", "enable.partition.eof": False,
            "queued.max.messages.kbytes": PREFETCH_KBYTES, "fetch.max.bytes": 16 * 1024 * 1024,
            "max.partition.fetch.bytes": 4 * 1024 * 1024, "fetch.wait.max.ms": 100,
            "error_cb": self._errors.append,
        })
        try:
            self.consumer = kafka.Consumer(settings, logger=LIBRDKAFKA_LOG)
        except kafka.KafkaException as exc:
            raise KafkaConfigError(f"Kafka consumer settings for {target.description}: {redact(exc)}") from None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def description(self) -> str:
        return self.target.description

    def partitions(self) -> list[str]:
        return [str(p) for p in check_topic(self.consumer, self.target, self.timeout, self._errors)]

    def _watermarks(self, partition: str) -> tuple[int, int]:
        kafka = kafka_module()
        try:
            return self.consumer.get_watermark_offsets(kafka.TopicPartition(self.target.topic, int(partition)),
                                                       timeout=self.timeout, cached=False)
        except kafka.KafkaException as exc:
            raise KafkaUnavailable(f"cannot read the offsets of partition {partition} of {self.description}: "
                                   f"{redact(exc)}") from None

    def ends(self, partitions: list[str]) -> dict[str, int | None]:
        """The offset of the last event each partition holds now (None: empty)."""
        marks = self._each(self._watermarks, partitions)
        return {partition: high - 1 if high > low else None for partition, (low, high) in zip(partitions, marks)}

    @staticmethod
    def _each(ask: Callable[[str], Any], partitions: list[str]) -> list[Any]:
        """``ask`` for every partition at once: one broker round trip each, in parallel (librdkafka's offset
        queries are thread-safe), so a 32-partition hub waits about one round trip, not 32."""
        with ThreadPoolExecutor(max_workers=max(1, min(len(partitions), 16)),
                                thread_name_prefix="iotgen-offsets") as pool:
            return list(pool.map(ask, partitions))

    def lag(self, partitions: list[str], offsets: dict[str, int | None]) -> dict[str, int | None]:
        """Events after ``offsets`` per partition (the receiving stops first: librdkafka answers offset queries
        while nobody consumes)."""
        self.stop()

        def lag_of(partition: str) -> int | None:
            try:
                _, high = self._watermarks(partition)
            except KafkaUnavailable:
                return None
            committed = offsets.get(partition)
            return max(0, high - 1 - (-1 if committed is None else committed))

        return dict(zip(partitions, self._each(lag_of, partitions)))

    def receive(self, positions: dict[str, int | None], on_events: OnEvents, on_error: OnError) -> None:
        """Read every partition after its position (None: from the beginning) in a thread, until :meth:`close`."""
        kafka = kafka_module()
        self.consumer.assign([kafka.TopicPartition(self.target.topic, int(p),
                                                   kafka.OFFSET_BEGINNING if last is None else last + 1)
                              for p, last in positions.items()])
        self._thread = threading.Thread(target=self._pump, args=(on_events, on_error), name="iotgen-ingest-kafka",
                                        daemon=True)
        self._thread.start()

    def _pump(self, on_events: OnEvents, on_error: OnError) -> None:
        kafka = kafka_module()
        fatal = (kafka.KafkaError._AUTHENTICATION, kafka.KafkaError.TOPIC_AUTHORIZATION_FAILED,
                 kafka.KafkaError.UNKNOWN_TOPIC_OR_PART, kafka.KafkaError._UNKNOWN_TOPIC,
                 kafka.KafkaError.SASL_AUTHENTICATION_FAILED)
        consume = self.consumer.consume
        try:
            while not self._stop.is_set():
                messages = consume(CONSUME_BATCH, 0.2)
                if not messages:
                    continue
                parts: dict[int, tuple[list, list, list]] = {}
                for message in messages:
                    error = message.error()
                    if error is not None:
                        code = error.code()
                        on_error(str(message.partition()) if message.partition() is not None else None,
                                 code in fatal or error.fatal(), redact(error.str()))
                        continue
                    part = parts.get(message.partition())
                    if part is None:
                        part = parts[message.partition()] = ([], [], [])
                    part[0].append(message.value() or b"")
                    part[1].append(message.offset())
                    part[2].append(message.timestamp()[1] * 1000)
                for partition, (bodies, offsets, times) in parts.items():
                    on_events(str(partition), bodies, offsets, times)
        except Exception as exc:  # noqa: BLE001 - reported to the ingest, which stops
            on_error(None, True, redact(f"{type(exc).__name__}: {exc}"))

    def stop(self) -> None:
        """Stop the receiving thread (what it has not handed over is read again on the next start)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def close(self) -> None:
        self.stop()
        try:
            self.consumer.close()
        except Exception as exc:  # noqa: BLE001 - closing a broken consumer: nothing more to do
            _LOGGER.debug("closing the Kafka consumer: %s", exc)
