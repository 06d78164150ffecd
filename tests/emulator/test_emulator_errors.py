"""Size limits and failures: what the SDK reports, and how fast."""

from __future__ import annotations

import secrets
import socket
import time

import pytest
from azure.eventhub import EventData, EventHubProducerClient
from azure.eventhub.exceptions import AuthenticationError, ConnectError, EventDataSendError, EventHubError

from iotgen.emulator import DEFAULT_MAX_MESSAGE_SIZE, connection_string

pytestmark = pytest.mark.timeout(120)

#: Failing fast needs the SDK's retries off: with its default 3 retries and
#: exponential back-off the same failures take about 12 seconds.
FAST_FAIL = {"retry_total": 0}


def test_batch_near_the_limit_is_accepted_and_oversized_events_are_refused(emulator):
    with EventHubProducerClient.from_connection_string(emulator.connection_string, retry_total=1) as producer:
        batch = producer.create_batch(partition_id="0")
        assert batch.max_size_in_bytes == DEFAULT_MAX_MESSAGE_SIZE  # taken from the link's max-message-size
        payload = b"x" * 10_000
        with pytest.raises(ValueError, match="size limit"):
            while True:
                batch.add(EventData(payload))
        assert batch.size_in_bytes > DEFAULT_MAX_MESSAGE_SIZE - 12_000
        producer.send_batch(batch)
        properties = producer.get_partition_properties("0")
        assert properties["last_enqueued_sequence_number"] == len(batch) - 1

        oversized = EventData(b"y" * (DEFAULT_MAX_MESSAGE_SIZE + 1000))
        with pytest.raises(ValueError, match="size limit"):
            producer.create_batch().add(oversized)
        with pytest.raises(EventDataSendError, match="maximum message size"):
            producer.send_event(oversized)  # single events are checked by the emulator
        assert producer.get_partition_properties("0")["last_enqueued_sequence_number"] == len(batch) - 1


def test_wrong_key_fails_fast_with_a_clear_error_and_the_key_is_never_printed(emulator_factory):
    key = "key-" + secrets.token_hex(16)
    emulator = emulator_factory(key=key, extra_args=["--log-level", "DEBUG"])
    wrong = connection_string("127.0.0.1", emulator.port, emulator.hub, key="not-the-key")
    with EventHubProducerClient.from_connection_string(wrong, **FAST_FAIL) as producer:
        started = time.monotonic()
        with pytest.raises(AuthenticationError, match="401") as failure:
            producer.send_event(EventData("x"))
        assert time.monotonic() - started < 10
        assert "invalid signature" in str(failure.value)
    with EventHubProducerClient.from_connection_string(emulator.connection_string, **FAST_FAIL) as producer:
        producer.send_event(EventData("with the right key"))

    assert emulator.stop() == 0
    output = emulator.output()
    assert "ready" in output and "SharedAccessKey=<redacted>" in output
    assert "rejected put-token" in output  # the DEBUG/INFO logs did run
    assert key not in output


def test_unknown_event_hub_fails_fast_with_a_clear_error(emulator):
    unknown = connection_string("127.0.0.1", emulator.port, "no-such-hub")
    with EventHubProducerClient.from_connection_string(unknown, **FAST_FAIL) as producer:
        started = time.monotonic()
        with pytest.raises(EventHubError) as failure:
            producer.get_eventhub_properties()
        assert time.monotonic() - started < 10
        assert isinstance(failure.value, (AuthenticationError, ConnectError))
        assert "404" in str(failure.value) and "no-such-hub" in str(failure.value)
        assert "could not be found" in str(failure.value)


def test_nothing_listening_fails_within_a_bounded_time():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = connection_string("127.0.0.1", port, "iot-events")
    with EventHubProducerClient.from_connection_string(closed, **FAST_FAIL) as producer:
        started = time.monotonic()
        with pytest.raises(ConnectError, match="Connection refused"):
            producer.send_event(EventData("x"))
        assert time.monotonic() - started < 10
