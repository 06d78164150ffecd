"""SAS-only fixtures for the azure-eventhub live test suite, run against a local ``iotgen emulator``.

A pytest plugin (``-p sdk_live_fixtures``, with ``--noconftest``) that stands in for the SDK's own
``tests/conftest.py``: that one creates a fresh event hub per test through the Azure management plane and
authenticates with Azure AD. Here an emulator subprocess (loopback, a free port, a random key, SAS only) is
started for the session (one per pytest-xdist worker) with a fresh hub of 2 partitions (the suite's
``PARTITION_COUNT``) for every test, and every fixture the live tests use is derived from it:

* ``live_eventhub``: hostname ``127.0.0.1:PORT``, key name and key, hub, ``$Default``, connection string;
* ``client_args``: ``{"use_tls": False}``, the one client setting that differs from Azure (plain AMQP: the
  emulator has no TLS); every client the suite builds with ``**client_args`` reaches the emulator unchanged;
* ``get_credential``/``auth_credentials*``: where the suite takes an Azure AD credential only to reach its hub,
  a SAS credential for the emulator's key (``AzureNamedKeyCredential``) is handed instead;
* the senders/receivers fixtures, built as the SDK's conftest builds them (its own pure-Python AMQP clients).

Tests that cannot apply to a local endpoint are skipped with the reason (see ``NOT_APPLICABLE`` and the fixtures
that skip); the terminal summary groups the outcome by reason. Run it with ``tests/sdk_live/run_sdk_live.py``
(``make sdk-live-tests``), which downloads the SDK's tests from its sdist on PyPI.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
from collections import Counter, defaultdict
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.eventhub import EventHubProducerClient, TransportType
from azure.eventhub._pyamqp import ReceiveClient
from azure.eventhub._pyamqp.authentication import SASTokenAuth

from iotgen.emulator import EmulatorProcess, connection_string

#: The suite's partition count (tests assert partition ids ["0", "1"]).
PARTITION_COUNT = 2
KEY_NAME = "RootManageSharedAccessKey"
#: A host name that resolves nowhere (RFC 2606), for the suite's "invalid hostname" tests.
INVALID_HOSTNAME = "invalid123.invalid"

# -- why tests are not applicable ------------------------------------------------------------------------------

WEBSOCKETS = "WebSockets (TransportType.AmqpOverWebsocket) are not emulated: plain AMQP on one port"
TLS = "TLS is not emulated: the test connects over TLS on purpose (ssl_context, certificates)"
NO_CLIENT_ARGS = ("the test builds a client without the fixtures' client_args, so with TLS: the emulator speaks "
                  "plain AMQP (no TLS)")
FAULT_INJECTOR = "needs the SDK team's AMQP fault-injector proxy (USE_FAULTINJECTOR; not published)"
BLOB_STORAGE = "needs Azure Blob Storage (the blob checkpoint store), another service"
MANAGEMENT_PLANE = "needs the Azure management plane (ARM: resource group, namespace, updating a hub)"

#: Tests that cannot apply, by file (under livetest/) and name (without parameters), with the reason. Each was
#: read: the reason is what the test does, not how it fared. Sync and async twins share some names.
NOT_APPLICABLE: dict[str, str] = {
    # ssl_context with a CA file that does not exist, then certifi's CAs: TLS handshakes are the subject.
    "synctests/test_auth.py::test_client_with_ssl_context": TLS,
    "asynctests/test_auth_async.py::test_client_with_ssl_context_async": TLS,
    # Its raw ReceiveClient (after a send, a 250 s wait and a send) is built without client_args.
    "synctests/test_reconnect.py::test_send_with_long_interval_sync": NO_CLIENT_ARGS,
    "asynctests/test_reconnect_async.py::test_send_with_long_interval_async": NO_CLIENT_ARGS,
    # Its second producer ("with retry, should work") is built without client_args (the sync test has them).
    "asynctests/test_reconnect_async.py::test_send_connection_idle_timeout_and_reconnect_async": NO_CLIENT_ARGS,
    # The expired-token producer is built without client_args (the sync test has them).
    "asynctests/test_negative_async.py::test_client_invalid_credential_async": NO_CLIENT_ARGS,
    # Its connection_verify="cacert.pem" clients are built without client_args: Azure fails them at the TLS
    # handshake (FileNotFoundError), here the TCP connect to the TLS port fails first (ConnectError).
    "synctests/test_negative.py::test_client_invalid_credential": NO_CLIENT_ARGS,
    # Passes client_args=client_args (one keyword) instead of **client_args (the async twin unpacks them: it runs).
    "synctests/test_properties.py::test_get_partition_properties": NO_CLIENT_ARGS,
    # Its consumer is built without client_args (the async twin has them: it runs).
    "synctests/test_send.py::test_send_amqp_annotated_message": NO_CLIENT_ARGS,
    # Clients with transport_type=TransportType.AmqpOverWebsocket.
    "synctests/test_send.py::test_send_over_websocket_sync": WEBSOCKETS,
    "asynctests/test_send_async.py::test_send_over_websocket_async": WEBSOCKETS,
    "synctests/test_receive.py::test_receive_over_websocket_sync": WEBSOCKETS,
    "asynctests/test_receive_async.py::test_receive_over_websocket_async": WEBSOCKETS,
    "synctests/test_send.py::test_send_with_create_event_batch_with_app_prop_sync": WEBSOCKETS,
    "asynctests/test_send_async.py::test_send_with_create_event_batch_async": WEBSOCKETS,
}


# -- the endpoint ------------------------------------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--sleep", action="store", default="True",
                     help="sleep on reconnect test: True or False (as in the SDK's conftest)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "liveTest: mark test to be a live test only")
    config.addinivalue_line("markers", "no_amqpproxy: mark test to opt out of amqp proxy recording")


#: Event hubs of the session's emulator (one per collected test) and the next one to hand out.
_hubs: list[str] = []
_next_hub = itertools.count()
#: The session's key (random): the fixtures hand it to the tests, as the SDK's conftest hands its namespace key.
_KEY = secrets.token_urlsafe(32)
#: Outcome and skip reason of every test, by node id, for the summary.
_outcomes: dict[str, tuple[str, str]] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        test = item.nodeid.split("[")[0].removeprefix("livetest/")
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("socket_transport") == TransportType.AmqpOverWebsocket:
            item.add_marker(pytest.mark.skip(reason=WEBSOCKETS))
        elif test in NOT_APPLICABLE:
            item.add_marker(pytest.mark.skip(reason=NOT_APPLICABLE[test]))
    # One fresh hub per test, as the SDK's conftest creates one per test.
    _hubs[:] = [f"eh{i:04d}" for i in range(len(items))]


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorProcess]:
    process = EmulatorProcess(port=0, hub=_hubs, partitions=PARTITION_COUNT, key_name=KEY_NAME,
                              key=_KEY)
    with process:
        yield process
        log = os.environ.get("SDK_LIVE_EMULATOR_LOG")
        if log:  # one emulator per pytest-xdist worker
            worker = os.environ.get("PYTEST_XDIST_WORKER")
            Path(log.replace(".log", f"-{worker}.log") if worker else log).write_text(process.output())


@pytest.fixture
def live_eventhub(emulator: EmulatorProcess) -> dict[str, str]:
    hub = _hubs[next(_next_hub)]
    key = _KEY
    hostname = f"{emulator.host}:{emulator.port}"
    return {
        "resource_group": "",
        "hostname": hostname,
        "key_name": KEY_NAME,
        "access_key": key,
        "namespace": hostname,
        "event_hub": hub,
        "consumer_group": "$Default",
        "partition": "0",
        "connection_str": connection_string(emulator.host, emulator.port, hub, KEY_NAME, key),
    }


@pytest.fixture
def client_args() -> dict[str, Any]:
    return {"use_tls": False}


def _connection_string(live_eventhub: dict[str, str], *, host: str | None = None, key_name: str | None = None,
                       key: str | None = None) -> str:
    return (f"Endpoint=sb://{host or live_eventhub['hostname']}/;"
            f"SharedAccessKeyName={key_name or live_eventhub['key_name']};"
            f"SharedAccessKey={key or live_eventhub['access_key']};UseDevelopmentEmulator=true;"
            f"EntityPath={live_eventhub['event_hub']}")


@pytest.fixture
def connection_str(live_eventhub: dict[str, str]) -> str:
    return _connection_string(live_eventhub)


@pytest.fixture
def invalid_hostname(live_eventhub: dict[str, str]) -> str:
    return _connection_string(live_eventhub, host=INVALID_HOSTNAME)


@pytest.fixture
def invalid_key(live_eventhub: dict[str, str]) -> str:
    return _connection_string(live_eventhub, key="invalid")


@pytest.fixture
def invalid_policy(live_eventhub: dict[str, str]) -> str:
    return _connection_string(live_eventhub, key_name="invalid")


# -- credentials: SAS for the emulator's key where the suite uses Azure AD to reach its hub ----------------------

def _sas_credential_factory(live_eventhub: dict[str, str]):  # noqa: ANN202 - a factory like devtools' get_credential
    def get_credential(is_async: bool = False, **_: Any) -> AzureNamedKeyCredential:
        return AzureNamedKeyCredential(live_eventhub["key_name"], live_eventhub["access_key"])

    return get_credential


@pytest.fixture
def get_credential(live_eventhub: dict[str, str]):  # noqa: ANN201
    return _sas_credential_factory(live_eventhub)


@pytest.fixture
def get_credential_async(live_eventhub: dict[str, str]):  # noqa: ANN201
    return partial(_sas_credential_factory(live_eventhub), is_async=True)


@pytest.fixture
def auth_credentials(live_eventhub: dict[str, str]) -> tuple[str, str, Any]:
    return live_eventhub["hostname"], live_eventhub["event_hub"], _sas_credential_factory(live_eventhub)


@pytest.fixture
def auth_credentials_async(live_eventhub: dict[str, str]) -> tuple[str, str, Any]:
    return (live_eventhub["hostname"], live_eventhub["event_hub"],
            partial(_sas_credential_factory(live_eventhub), is_async=True))


def _receivers(live_eventhub: dict[str, str], client_args: dict[str, Any], timeout: int) -> list[ReceiveClient]:
    """One pure-Python AMQP receiver per partition, as the SDK's conftest builds them."""
    receivers = []
    for partition in range(PARTITION_COUNT):
        uri = "sb://{}/{}".format(live_eventhub["hostname"], live_eventhub["event_hub"])
        source = "amqps://{}/{}/ConsumerGroups/{}/Partitions/{}".format(
            live_eventhub["hostname"], live_eventhub["event_hub"], live_eventhub["consumer_group"], partition)
        auth = SASTokenAuth(uri, uri, live_eventhub["key_name"], live_eventhub["access_key"])
        receiver = ReceiveClient(live_eventhub["hostname"], source, auth=auth, network_trace=False,
                                 timeout=timeout, link_credit=500, **client_args)
        receiver.open()
        receivers.append(receiver)
    return receivers


@pytest.fixture
def connstr_receivers(live_eventhub: dict[str, str], client_args: dict[str, Any]) -> Iterator[tuple[str, list]]:
    receivers = _receivers(live_eventhub, client_args, timeout=0)
    yield live_eventhub["connection_str"], receivers
    for receiver in receivers:
        receiver.close()


@pytest.fixture
def auth_credential_receivers(live_eventhub: dict[str, str], client_args: dict[str, Any]) -> Iterator[tuple]:
    receivers = _receivers(live_eventhub, client_args, timeout=30)
    yield live_eventhub["hostname"], live_eventhub["event_hub"], _sas_credential_factory(live_eventhub), receivers
    for receiver in receivers:
        receiver.close()


@pytest.fixture
def auth_credential_receivers_async(live_eventhub: dict[str, str], client_args: dict[str, Any]) -> Iterator[tuple]:
    receivers = _receivers(live_eventhub, client_args, timeout=30)
    yield (live_eventhub["hostname"], live_eventhub["event_hub"],
           partial(_sas_credential_factory(live_eventhub), is_async=True), receivers)
    for receiver in receivers:
        receiver.close()


def _senders(live_eventhub: dict[str, str], client_args: dict[str, Any]) -> tuple[EventHubProducerClient, list]:
    """One producer per partition of a sync client, as the SDK's conftest builds them."""
    client = EventHubProducerClient(fully_qualified_namespace=live_eventhub["hostname"],
                                    eventhub_name=live_eventhub["event_hub"],
                                    credential=_sas_credential_factory(live_eventhub)(),
                                    uamqp_transport=False, **client_args)
    return client, [client._create_producer(partition_id=p) for p in client.get_partition_ids()]


@pytest.fixture
def auth_credential_senders(live_eventhub: dict[str, str], client_args: dict[str, Any]) -> Iterator[tuple]:
    client, senders = _senders(live_eventhub, client_args)
    yield live_eventhub["hostname"], live_eventhub["event_hub"], _sas_credential_factory(live_eventhub), senders
    for sender in senders:
        sender.close()
    client.close()


@pytest.fixture
def auth_credential_senders_async(live_eventhub: dict[str, str], client_args: dict[str, Any]) -> Iterator[tuple]:
    client, senders = _senders(live_eventhub, client_args)
    yield (live_eventhub["hostname"], live_eventhub["event_hub"],
           partial(_sas_credential_factory(live_eventhub), is_async=True), senders)
    for sender in senders:
        sender.close()
    client.close()


# -- the SDK conftest's other fixtures ---------------------------------------------------------------------------

@pytest.fixture
def sleep(request: pytest.FixtureRequest) -> bool:
    return request.config.getoption("--sleep").lower() in ("true", "yes", "1", "y")


@pytest.fixture(scope="session", params=[False], ids=["pyamqp"])
def uamqp_transport(request: pytest.FixtureRequest) -> bool:
    """The SDK's pure-Python AMQP stack (its default; uamqp is not installed)."""
    return request.param


@pytest.fixture(scope="session", params=[TransportType.Amqp, TransportType.AmqpOverWebsocket], ids=["amqp", "ws"])
def socket_transport(request: pytest.FixtureRequest) -> TransportType:
    return request.param


@pytest.fixture(scope="session")
def timeout_factor(uamqp_transport: bool) -> int:
    return 1000 if uamqp_transport else 1


@pytest.fixture(scope="session")
def fake_span():  # noqa: ANN201
    from tracing_common import FakeSpan  # the SDK's own test helper, from the downloaded tests

    return FakeSpan


@pytest.fixture
def enable_tracing(fake_span):  # noqa: ANN001, ANN201
    from azure.core.settings import settings

    settings.tracing_implementation.set_value(fake_span)
    yield fake_span
    settings.tracing_implementation.set_value(None)


def _not_applicable(name: str, reason: str) -> Any:
    """A fixture of the SDK's conftest for another service or tool: the tests that need it are skipped."""

    def fixture() -> None:
        pytest.skip(reason)

    return pytest.fixture(name=name)(fixture)


faultinjector = _not_applicable("faultinjector", FAULT_INJECTOR)
storage_url = _not_applicable("storage_url", BLOB_STORAGE)
checkpoint_store = _not_applicable("checkpoint_store", BLOB_STORAGE)
checkpoint_store_aio = _not_applicable("checkpoint_store_aio", BLOB_STORAGE)
resource_group = _not_applicable("resource_group", MANAGEMENT_PLANE)
eventhub_namespace = _not_applicable("eventhub_namespace", MANAGEMENT_PLANE)
resource_mgmt_client = _not_applicable("resource_mgmt_client", MANAGEMENT_PLANE)


# -- the summary -------------------------------------------------------------------------------------------------

def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """A test's outcome: its call's, or the first setup/teardown that did not pass (an error counts as failed)."""
    if report.when == "call" or report.outcome != "passed":
        previous = _outcomes.get(report.nodeid)
        if previous is None or previous[0] == "passed":
            reason = ""
            if report.skipped and isinstance(report.longrepr, tuple):
                reason = report.longrepr[2].removeprefix("Skipped: ")
            _outcomes[report.nodeid] = (report.outcome, reason)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    outcomes = _outcomes
    if not outcomes:
        return
    counts = Counter(outcome for outcome, _ in outcomes.values())
    skipped_by_reason: dict[str, list[str]] = defaultdict(list)
    for nodeid, (outcome, reason) in sorted(outcomes.items()):
        if outcome == "skipped":
            skipped_by_reason[reason].append(nodeid.removeprefix("livetest/"))
    write = terminalreporter.write_line
    terminalreporter.section("azure-eventhub live tests against iotgen emulator")
    applicable = counts["passed"] + counts["failed"]
    write(f"collected {len(outcomes)}; applicable {applicable}: passed {counts['passed']}, "
          f"failed {counts['failed']}; skipped {counts['skipped']}")
    for reason, names in sorted(skipped_by_reason.items(), key=lambda kv: -len(kv[1])):
        write(f"  skipped {len(names)}: {reason}")
        for name in names:
            write(f"      {name}")
    for nodeid, (outcome, _) in sorted(outcomes.items()):
        if outcome == "failed":
            write(f"  FAILED {nodeid}")
    summary = os.environ.get("SDK_LIVE_SUMMARY")
    if summary:
        Path(summary).write_text(json.dumps({
            "collected": len(outcomes), "applicable": applicable, "passed": counts["passed"],
            "failed": counts["failed"], "skipped": counts["skipped"],
            "skipped_by_reason": {reason: len(names) for reason, names in skipped_by_reason.items()},
            "failures": sorted(n for n, (o, _) in outcomes.items() if o == "failed"),
        }, indent=2) + "\n")
