"""Streaming settings, event time, the event cursor and the summary: no endpoint needed."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from iotgen.generation.generator import generate_range
from iotgen.outputs.eventhubs import EventHubConfigError, error_kind, redact, target_from_config
from iotgen.runs.stream import LIVE_TIME_COLUMNS, StreamPlan, StreamSummary, rebase_times
from iotgen.settings.config import Config, Secret
from iotgen.spec.spec_file import generator_spec

KEY = "c2VjcmV0LWtleS0xMjM0NTY3ODkw"
CONNECTION = (f"Endpoint=sb://myns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey={KEY};"
              "EntityPath=hub1")


def test_the_seed_parameters_keep_their_meaning_as_a_drift_free_rate():
    plan = StreamPlan.from_config(Config(batch_size=500, sleep_interval_sec=2))
    assert (plan.rate, plan.batch_size) == (250, 500)
    assert StreamPlan.from_config(Config(sleep_interval_sec=0)).rate is None
    assert StreamPlan.from_config(Config(rate_events_per_sec=5000, sleep_interval_sec=9)).rate == 5000


@pytest.mark.parametrize("params, name", [
    ({"RATE_EVENTS_PER_SEC": "0"}, "RATE_EVENTS_PER_SEC"),
    ({"RATE_EVENTS_PER_SEC": "fast"}, "RATE_EVENTS_PER_SEC"),
    ({"STREAM_DURATION_SEC": -1}, "STREAM_DURATION_SEC"),
    ({"STREAM_EVENTS": "-5"}, "STREAM_EVENTS"),
    ({"MAX_MB_PER_SEC": 0}, "MAX_MB_PER_SEC"),
    ({"PARTITION_KEY": "region"}, "PARTITION_KEY"),
    ({"MAX_BATCH_BYTES": 1000}, "MAX_BATCH_BYTES"),
    ({"STREAM_TIME_MODE": "now"}, "STREAM_TIME_MODE"),
    ({"SEND_RETRIES": -1}, "SEND_RETRIES"),
    ({"SEND_TIMEOUT_SEC": 0}, "SEND_TIMEOUT_SEC"),
    ({"RAMP_UP_SEC": 10, "SLEEP_INTERVAL_SEC": 0}, "RAMP_UP_SEC"),
    ({"RAMP_UP_SEC": 10}, "RAMP_UP_SEC=10 needs RATE_EVENTS_PER_SEC"),  # the BATCH_SIZE/SLEEP pace is no target
])
def test_bad_settings_raise_one_error_naming_the_parameter(params, name):
    with pytest.raises(ValueError, match=name):
        StreamPlan.from_config(Config.load(params=params, env={}))


def test_targets_from_a_connection_string_or_azure_ad_without_showing_the_key():
    target = target_from_config(Config(eventhub_connection_string=Secret(CONNECTION)))
    assert (target.namespace, target.eventhub, target.auth, target.local) == (
        "myns.servicebus.windows.net", "hub1", "connection string", False)
    assert KEY not in target.description and KEY not in repr(target)
    aad = target_from_config(Config(eventhub_namespace="myns", eventhub_name="hub2"))
    assert (aad.namespace, aad.eventhub, aad.auth) == ("myns.servicebus.windows.net", "hub2", "Azure AD")
    assert target_from_config(Config()) is None


@pytest.mark.parametrize("connection, params, message", [
    (CONNECTION.replace(";EntityPath=hub1", ""), {}, "EVENTHUB_NAME must be set"),
    (CONNECTION, {"eventhub_name": "other"}, "differs from the connection string's EntityPath"),
    ("Endpoint=https://x/;SharedAccessKeyName=a;SharedAccessKey=b", {}, "Endpoint=sb://"),
    ("Endpoint=sb://x/;SharedAccessKeyName=a;EntityPath=h", {}, "SharedAccessKey"),
    ("not a connection string", {}, "is not a connection string"),
])
def test_bad_connection_settings_are_config_errors_without_the_key(connection, params, message):
    with pytest.raises(EventHubConfigError, match=message) as info:
        target_from_config(Config(eventhub_connection_string=Secret(connection), **params))
    assert KEY not in str(info.value)
    with pytest.raises(EventHubConfigError, match="EVENTHUB_NAME"):
        target_from_config(Config(eventhub_namespace="myns"))


def test_redact_hides_keys_and_signatures():
    token = "SharedAccessSignature sr=sb%3a%2f%2fx&sig=abcDEF%2b123%3d&se=1700000000&skn=send"
    text = redact(f"failed for {CONNECTION} with {token}")
    assert KEY not in text and "abcDEF" not in text
    assert "SharedAccessKey=***" in text and "sig=***" in text and "EntityPath=hub1" in text


def test_errors_are_classified_for_retry():
    from azure.eventhub.exceptions import (
        AuthenticationError,
        ConnectError,
        ConnectionLostError,
        EventDataError,
        EventDataSendError,
        OperationTimeoutError,
    )

    assert error_kind(EventDataSendError("com.microsoft:server-busy: the request was throttled")) == "busy"
    assert error_kind(ConnectionLostError("link detached")) == "retry"
    assert error_kind(OperationTimeoutError("send timed out")) == "retry"
    assert error_kind(ConnectError("Failed to initiate the connection: [Errno 111] Connection refused")) == "retry"
    assert error_kind(EventDataSendError("amqp:internal-error: the events could not be persisted")) == "retry"
    assert error_kind(AuthenticationError("CBS Token authentication failed. Status code: 401")) == "fatal"
    assert error_kind(ConnectError("amqp:not-found: The messaging entity 'x' could not be found")) == "fatal"
    assert error_kind(EventDataError("message too large")) == "fatal"
    assert error_kind(RuntimeError("a bug")) == "fatal"


def test_errors_as_the_sdk_builds_them_from_amqp_conditions():
    from azure.eventhub._pyamqp.error import AMQPLinkError, MessageException
    from azure.eventhub.exceptions import ConnectError, EventDataSendError

    def sdk_error(kind, inner):
        error = kind("", inner)
        error.args = ("described elsewhere",)  # the condition is kept in .error, not in the text
        assert str(error) == "described elsewhere"
        return error

    throttled = MessageException(condition=b"com.microsoft:server-busy", description="Please wait 4 seconds.")
    assert error_kind(sdk_error(EventDataSendError, throttled)) == "busy"
    missing = AMQPLinkError(condition=b"amqp:not-found", description="The messaging entity could not be found.")
    assert error_kind(sdk_error(ConnectError, missing)) == "fatal"
    detached = AMQPLinkError(condition=b"amqp:link:detach-forced", description="idle link")
    assert error_kind(sdk_error(ConnectError, detached)) == "retry"


def test_a_quota_error_ends_the_run_with_one_clear_line_and_an_idle_close_is_retried():
    from azure.eventhub._pyamqp.error import MessageException
    from azure.eventhub.exceptions import ConnectionLostError, EventDataSendError

    from iotgen.outputs.eventhubs import _describe

    quota = EventDataSendError("", MessageException(condition=b"amqp:resource-limit-exceeded",
                                                    description="The quota of the namespace was exceeded."))
    assert error_kind(quota) == "fatal"
    line = _describe(quota)
    assert line.startswith("Event Hubs quota exceeded (amqp:resource-limit-exceeded)") and "\n" not in line
    assert "retrying cannot help" in line
    idle = ConnectionLostError("", MessageException(condition=b"amqp:resource-limit-exceeded",
                                                    description="no frame received for 5 s (idle time-out)"))
    assert error_kind(idle) == "retry"


@pytest.fixture(scope="module")
def events() -> pa.RecordBatch:
    return generate_range(generator_spec(Config(random_seed=3)), 100, 600)


def test_live_time_spreads_events_over_the_step_and_keeps_every_delay(events):
    after, until = 1_800_000_000_000_000, 1_800_000_000_500_000  # half a second, epoch microseconds
    live = rebase_times(events, after, until)
    ts = pc.cast(live.column("timestamp"), pa.int64()).to_numpy()
    assert after < ts[0] and ts[-1] == until and np.all(np.diff(ts) >= 0) and np.all(ts % 1000 == 0)
    old = {name: pc.cast(events.column(name), pa.int64()).to_numpy() for name in LIVE_TIME_COLUMNS}
    new = {name: pc.cast(live.column(name), pa.int64()).to_numpy() for name in LIVE_TIME_COLUMNS}
    for name in ("created_at", "updated_at", "last_calibration"):
        assert np.array_equal(new[name] - new["timestamp"], old[name] - old["timestamp"])
    others = [n for n in events.schema.names if n not in LIVE_TIME_COLUMNS]
    assert live.select(others).equals(events.select(others))
    assert live.schema == events.schema


def test_live_time_keeps_nulls_from_data_quality_scenarios(events):
    nullable = pa.schema([f.with_nullable(True) for f in events.schema])
    timestamp = pc.if_else(pa.array([i % 3 == 0 for i in range(events.num_rows)]),
                           pa.scalar(None, events.schema.field("timestamp").type), events.column("timestamp"))
    created = pc.if_else(pa.array([i % 5 == 0 for i in range(events.num_rows)]),
                         pa.scalar(None, events.schema.field("created_at").type), events.column("created_at"))
    holed = pa.RecordBatch.from_arrays([timestamp if n == "timestamp" else created if n == "created_at" else c
                                        for n, c in zip(events.schema.names, events.columns)], schema=nullable)
    live = rebase_times(holed, 1_800_000_000_000_000, 1_800_000_001_000_000)
    assert live.column("timestamp").is_null().equals(timestamp.is_null())
    assert live.column("created_at").is_null().equals(created.is_null())
    both = pc.and_(timestamp.is_valid(), created.is_valid())
    delay_before = pc.subtract(pc.filter(created, both).cast(pa.int64()), pc.filter(timestamp, both).cast(pa.int64()))
    delay_after = pc.subtract(pc.filter(live.column("created_at"), both).cast(pa.int64()),
                              pc.filter(live.column("timestamp"), both).cast(pa.int64()))
    assert delay_after.equals(delay_before)


def test_the_summary_says_what_happened_and_how_to_resume():
    summary = StreamSummary(endpoint="sb://h/hub (Azure, connection string)", seed=42, target_rate=1000.0,
                            sent=3000, acknowledged=2500, retried=500, failed=500, batches=6, bytes=3_000_000,
                            elapsed_sec=3.0, resume_from=2500, stopped_by="failure",
                            partitions={"0": 1500, "1": 1000}, errors=["500 events not delivered"])
    text = str(summary)
    assert not summary.ok and summary.events_per_sec == pytest.approx(2500 / 3)
    for fragment in ("a batch could not be delivered", "3,000 sent, 2,500 acknowledged, 500 retried, 500 failed",
                     "target 1,000 ev/s", "0: 1,500, 1: 1,000", "de-duplicate on event_id",
                     "STREAM_START_EVENT=2500", "500 events not delivered"):
        assert fragment in text
    assert summary.as_dict()["ok"] is False
