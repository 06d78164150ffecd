"""The SAS-only fixtures of the SDK live-test runner work, without downloading the SDK's suite.

``make sdk-live-tests`` runs the azure-eventhub live tests (about 10 minutes, outside ``make test``); this runs a
few tests written like the SDK's (same fixture names, same client calls) through the same plugin in a pytest
subprocess, so a broken fixture, a wrong skip or a summary that hides a failure shows up in ``make test``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

LIKE_THE_SDK = '''
import pytest
from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient
from azure.eventhub.exceptions import AuthenticationError, ConnectError


def test_send_and_receive(auth_credential_senders, connstr_receivers, uamqp_transport, client_args):
    fully_qualified_namespace, eventhub_name, credential, senders = auth_credential_senders
    connection_str, receivers = connstr_receivers
    senders[0].send(EventData(b"to partition 0"))
    senders[1].send(EventData(b"to partition 1"))
    received = [[EventData._from_message(m).body_as_str() for m in r.receive_message_batch(timeout=10)]
                for r in receivers]
    assert received == [["to partition 0"], ["to partition 1"]]
    assert fully_qualified_namespace.startswith("127.0.0.1:") and "EntityPath=" + eventhub_name in connection_str


def test_a_fresh_hub_per_test(live_eventhub, auth_credentials, client_args):
    fully_qualified_namespace, eventhub_name, credential = auth_credentials
    with EventHubConsumerClient(fully_qualified_namespace=fully_qualified_namespace, eventhub_name=eventhub_name,
                                consumer_group="$default", credential=credential(), **client_args) as client:
        assert client.get_partition_ids() == ["0", "1"]
        assert client.get_partition_properties("0")["is_empty"]
    assert eventhub_name == live_eventhub["event_hub"]


def test_invalid_key_and_hostname(invalid_key, invalid_hostname, client_args):
    with EventHubProducerClient.from_connection_string(invalid_key, retry_total=0, **client_args) as client:
        with pytest.raises(AuthenticationError):
            client.get_partition_ids()
    with EventHubProducerClient.from_connection_string(invalid_hostname, retry_total=0, **client_args) as client:
        with pytest.raises(ConnectError):
            client.get_partition_ids()


def test_with_blob_storage(checkpoint_store):
    raise AssertionError("the fixture skips")


def test_that_fails(live_eventhub):
    assert live_eventhub["partition"] == "1"
'''


#: A test listed as not applicable (synctests/...) and its twin of the same name that is not (asynctests/...).
LISTED = '''
def test_get_partition_properties():
    raise AssertionError("listed as not applicable: never runs")
'''
TWIN = '''
def test_get_partition_properties(live_eventhub):
    assert live_eventhub["partition"] == "0"
'''


def test_the_fixtures_run_tests_written_like_the_sdks_and_the_summary_counts_them(tmp_path: Path) -> None:
    (tmp_path / "test_like_the_sdk.py").write_text(LIKE_THE_SDK)
    for path, text in (("synctests/test_properties.py", LISTED), ("asynctests/test_properties_async.py", TWIN)):
        (tmp_path / path).parent.mkdir()
        (tmp_path / path).write_text(text)
    summary = tmp_path / "summary.json"
    env = dict(os.environ, SDK_LIVE_SUMMARY=str(summary), SDK_LIVE_EMULATOR_LOG=str(tmp_path / "emulator.log"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "test_like_the_sdk.py", "synctests", "asynctests", "-p", "sdk_live_fixtures", "--noconftest",
         "-p", "no:cacheprovider", "-o", "addopts=", "--rootdir", str(tmp_path), "-c", os.devnull],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output  # one test fails on purpose
    assert json.loads(summary.read_text()) == {
        "collected": 7, "applicable": 5, "passed": 4, "failed": 1, "skipped": 2,
        "skipped_by_reason": {
            "the test builds a client without the fixtures' client_args, so with TLS: the emulator speaks plain "
            "AMQP (no TLS)": 1,
            "needs Azure Blob Storage (the blob checkpoint store), another service": 1},
        "failures": ["test_like_the_sdk.py::test_that_fails"]}, output
    assert "applicable 5: passed 4, failed 1; skipped 2" in output
    assert "ready: port=" in (tmp_path / "emulator.log").read_text()  # the emulator ran, and was stopped
