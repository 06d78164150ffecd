"""Azure Event Hubs sink: a well-behaved producer on the official ``azure-eventhub`` SDK.

:class:`EventHubProducer` takes record batches of generated events and delivers them:

* **Auth**: a connection string (``EVENTHUB_CONNECTION_STRING`` env var or a Databricks secret) or Azure AD
  (``EVENTHUB_NAMESPACE`` + ``EVENTHUB_NAME`` with ``DefaultAzureCredential``: managed identity, service
  principal env vars, Azure CLI login...). See :func:`target_from_config`.
* **Body and properties**: each event is one message, JSON body, ``content_type`` ``application/json``,
  ``message_id`` = ``event_id``, application properties ``schema_version`` and ``device_type`` (encoded for a
  whole batch at once by :mod:`iotgen.formats.eventhub_messages`).
* **Partitioning**: with ``PARTITION_KEY=sensor_id`` each event carries its ``sensor_id`` as partition key and
  goes to the partition the service's own hash picks for that key (the SDK's partition resolver, as its buffered
  mode does), so one device's events stay in order in one partition; events are batched per partition.
  With ``none`` the service spreads batches over partitions.
* **Batches** are packed by bytes up to the link's maximum message size (or ``MAX_BATCH_BYTES``).
* **Delivery**: every batch is sent until the service acknowledges it. Throttling (``server-busy``, at least
  4 s apart as the service asks), lost connections and time-outs are retried with exponential back-off and
  jitter, up to ``SEND_RETRIES`` times; the SDK's own retries are switched off so that every re-send is counted.
  A batch that still fails is counted as failed and reported, never dropped silently. Delivery is at least
  once: a re-send after an ambiguous failure may duplicate events (counted as ``retried``); consumers
  de-duplicate on ``event_id``.
* **Secrets** never appear in messages or logs: :func:`redact` hides keys and signatures.

The SDK's ``EventDataBatch.add`` encodes each event in Python (~100 us per event); iotgen fills batches with
messages it encoded for the whole batch at once, after checking at start-up that its encoding is byte-for-byte
the SDK's own for this SDK version (otherwise it falls back to the public ``add``/``send_batch`` path, slower,
and warns). Sends go through the per-partition producer so that each attempt is exactly one send.
"""

from __future__ import annotations

import logging
import random
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..base.errors import InputError
from ..base.version import __version__
from ..formats.encoding import json_lines
from ..formats.eventhub_messages import (
    CONTENT_TYPE, EVENT_MESSAGES, MessageLayout, batch_overhead, encode_messages,
)
from ..settings.config import Config, Secret
from ..settings.schema import SCHEMA_VERSION
from . import private_api
from .private_api import partition_for_key

_LOGGER = logging.getLogger(__name__)

PARTITION_KEY_COLUMNS = {"sensor_id": "sensor_id", "none": None}
SERVICE_BUS_SUFFIX = ".servicebus.windows.net"
SERVER_BUSY_DELAY = 4.0  # seconds between retries when the service is throttling (the SDK's own figure)
_SECRET_PATTERNS = (
    (re.compile(r"(SharedAccessKey\s*=\s*)[^;'\"\s]*", re.IGNORECASE), r"\1***"),
    (re.compile(r"(\bsig=)[^&;'\"\s]*", re.IGNORECASE), r"\1***"),
    (re.compile(r"(SharedAccessSignature\s*=\s*)[^;'\"\s]*", re.IGNORECASE), r"\1***"),
)


def redact(text: object) -> str:
    """``text`` with shared access keys and SAS signatures replaced by ``***``."""
    text = str(text)
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def one_line(exc: BaseException) -> str:
    """The SDK's multi-line, repetitive error text as one line, secrets redacted."""
    lines = (line.strip() for line in redact(exc).splitlines())
    return "; ".join(dict.fromkeys(line for line in lines if line)) or type(exc).__name__


class EventHubConfigError(InputError):
    """The Event Hubs settings are wrong: missing, rejected credentials, unknown event hub, bad limits."""


class EventHubUnavailable(ConnectionError):
    """The Event Hubs endpoint cannot be reached (nothing listening, network down, time-out)."""


# ---- where to send ------------------------------------------------------------------------------------------
def parse_connection_string(text: str, what: str = "EVENTHUB_CONNECTION_STRING") -> dict[str, str]:
    """The fields of an Event Hubs connection string, keys lower-cased (values kept as given, never shown in an
    error: ``what`` names the parameter or option in the message)."""
    fields = {}
    for part in str(text).strip().split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise EventHubConfigError(f"{what} is not a connection string: Key=Value pairs separated by ';' "
                                      "expected (Endpoint=sb://...;SharedAccessKeyName=...;SharedAccessKey=...)")
        fields[key.strip().lower()] = value.strip()
    return fields


def without_entity_path(text: str) -> str:
    """A connection string without its ``EntityPath`` (the namespace-level form, for another event hub)."""
    parts = [part for part in str(text).strip().split(";") if part.strip()]
    return ";".join(p for p in parts if p.partition("=")[0].strip().lower() != "entitypath")


@dataclass(frozen=True)
class EventHubTarget:
    """An event hub and how to authenticate to it. Shows no secret: see :attr:`description`.

    ``auth``: ``connection string``, ``Azure AD`` (``DefaultAzureCredential``) or ``service credential`` (a
    Unity Catalog service credential named ``service_credential``, through ``dbutils.credentials`` on
    Databricks Runtime 16.2+). ``transport``: ``amqp`` (port 5671) or ``websockets`` (AMQP over WebSockets, port
    443, for networks that allow only HTTPS)."""

    namespace: str  # host, or host:port for a local emulator
    eventhub: str
    auth: str
    connection_string: Secret | None = field(default=None, repr=False)
    local: bool = False
    service_credential: str | None = None
    transport: str = "amqp"

    @property
    def description(self) -> str:
        where = "local emulator" if self.local else "Azure"
        auth = f"service credential {self.service_credential}" if self.service_credential else self.auth
        over = ", AMQP over WebSockets" if self.transport == "websockets" else ""
        return f"sb://{self.namespace}/{self.eventhub} ({where}, {auth}{over})"

    def _client_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"user_agent": f"iotgen/{__version__}"}
        if self.transport == "websockets":
            from azure.eventhub import TransportType

            args["transport_type"] = TransportType.AmqpOverWebsocket
        return args

    def credential(self) -> Any:
        """The Azure SDK credential of a target without a connection string."""
        if self.service_credential:
            from ..settings.databricks import service_credential

            return service_credential(self.service_credential)
        return _azure_ad_credential()

    def producer_client(self, **kwargs: Any):
        """An ``EventHubProducerClient`` for this target (``kwargs`` go to the SDK)."""
        from azure.eventhub import EventHubProducerClient

        kwargs = {**self._client_args(), **kwargs}
        if self.connection_string is not None:
            return EventHubProducerClient.from_connection_string(
                self.connection_string.reveal(), eventhub_name=self.eventhub, **kwargs)
        return EventHubProducerClient(self.namespace, self.eventhub, self.credential(), **kwargs)

    def consumer_client(self, consumer_group: str = "$Default", **kwargs: Any):
        """An ``EventHubConsumerClient`` for this target."""
        from azure.eventhub import EventHubConsumerClient

        kwargs = {**self._client_args(), **kwargs}
        if self.connection_string is not None:
            return EventHubConsumerClient.from_connection_string(
                self.connection_string.reveal(), consumer_group=consumer_group, eventhub_name=self.eventhub,
                **kwargs)
        return EventHubConsumerClient(self.namespace, self.eventhub, consumer_group, self.credential(), **kwargs)


def _azure_ad_credential():
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise EventHubConfigError("Azure AD authentication (EVENTHUB_NAMESPACE without a connection string) "
                                  "needs the azure-identity package: pip install azure-identity") from None
    return DefaultAzureCredential()


def target_from_config(config: Config) -> EventHubTarget | None:
    """The event hub a Config points at, or None when nothing is configured.

    A connection string wins; else ``EVENTHUB_NAMESPACE`` (``myns`` or ``myns.servicebus.windows.net``) with
    ``EVENTHUB_NAME`` selects Azure AD, or the Unity Catalog service credential ``EVENTHUB_SERVICE_CREDENTIAL``.
    A connection string without ``EntityPath`` needs ``EVENTHUB_NAME``.
    """
    secret = config.eventhub_connection_string
    if secret is not None:
        fields = parse_connection_string(secret.reveal())
        endpoint = fields.get("endpoint", "")
        match = re.match(r"^(?:sb|amqps?)://([^/;]+)/?$", endpoint, re.IGNORECASE)
        if not match:
            raise EventHubConfigError("EVENTHUB_CONNECTION_STRING must have Endpoint=sb://<namespace host>/, "
                                      f"got Endpoint={endpoint!r}")
        if not (fields.get("sharedaccesskey") or fields.get("sharedaccesssignature")):
            raise EventHubConfigError("EVENTHUB_CONNECTION_STRING must have SharedAccessKeyName and "
                                      "SharedAccessKey (or SharedAccessSignature)")
        entity = fields.get("entitypath", "")
        if entity and config.eventhub_name and entity != config.eventhub_name:
            raise EventHubConfigError(f"EVENTHUB_NAME {config.eventhub_name!r} differs from the connection "
                                      f"string's EntityPath {entity!r}: leave EVENTHUB_NAME empty or make them equal")
        hub = entity or config.eventhub_name
        if not hub:
            raise EventHubConfigError("EVENTHUB_NAME must be set: the connection string has no EntityPath")
        local = fields.get("usedevelopmentemulator", "").lower() == "true"
        return EventHubTarget(match.group(1), hub, "connection string", secret, local,
                              transport=config.eventhub_transport)
    credential = config.eventhub_service_credential or None
    if credential and not config.eventhub_namespace:
        raise EventHubConfigError("EVENTHUB_SERVICE_CREDENTIAL needs EVENTHUB_NAMESPACE and EVENTHUB_NAME (the "
                                  "service credential authenticates; the namespace says where)")
    if config.eventhub_namespace:
        if not config.eventhub_name:
            raise EventHubConfigError("EVENTHUB_NAME must be set with EVENTHUB_NAMESPACE (Azure AD authentication)")
        namespace = config.eventhub_namespace.strip()
        namespace = re.sub(r"^(?:sb|amqps?|https?)://", "", namespace).rstrip("/")
        if "." not in namespace:
            namespace += SERVICE_BUS_SUFFIX
        return EventHubTarget(namespace, config.eventhub_name, "service credential" if credential else "Azure AD",
                              service_credential=credential, transport=config.eventhub_transport)
    return None


# ---- errors: what to retry ----------------------------------------------------------------------------------
_FATAL_CONDITIONS = ("not-found", "unauthorized", "auth-failed", "argument-out-of-range", "argument-error",
                     "entity-disabled", "precondition-failed", "message-size-exceeded", "status code: 401",
                     "status code: 404", "status code: 403")


def error_kind(exc: BaseException) -> str:
    """``"busy"`` (throttled: retry after a longer pause), ``"retry"`` (transient) or ``"fatal"``."""
    from azure.eventhub.exceptions import AuthenticationError, ClientClosedError, EventDataError, EventHubError

    text = _condition_text(exc)
    if _is_quota(text):
        return "fatal"
    if "server-busy" in text or "serverbusy" in text:
        return "busy"
    if isinstance(exc, (AuthenticationError, ClientClosedError, EventDataError)):
        return "fatal"
    if any(condition in text for condition in _FATAL_CONDITIONS):
        return "fatal"
    if isinstance(exc, (EventHubError, OSError, TimeoutError)):
        return "retry"
    return "fatal"


def _condition_text(exc: BaseException) -> str:
    """The error's text and AMQP condition (the SDK's exceptions keep it in ``.error``, e.g. server-busy)."""
    condition = getattr(exc, "error", None)
    condition = condition if isinstance(condition, str) else getattr(condition, "condition", "")
    if isinstance(condition, bytes):
        condition = condition.decode("utf-8", "replace")
    description = getattr(getattr(exc, "error", None), "description", "") or ""
    if isinstance(description, bytes):
        description = description.decode("utf-8", "replace")
    return f"{exc} {condition} {description}".lower()


def _is_quota(text: str) -> bool:
    """A quota or limit of the namespace (``amqp:resource-limit-exceeded``), not an idle connection closed with
    the same condition (which the SDK reconnects)."""
    return "resource-limit-exceeded" in text and "idle" not in text


def _describe(exc: BaseException) -> str:
    text = _condition_text(exc)
    if _is_quota(text):
        detail = next((line.strip() for line in redact(str(exc)).splitlines() if line.strip()), "")
        return redact(f"Event Hubs quota exceeded (amqp:resource-limit-exceeded): {detail or type(exc).__name__}; "
                      "retrying cannot help: raise the namespace's throughput units or limits, or send less")
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return redact(f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__)


def _connect_error(exc: BaseException, target: EventHubTarget) -> Exception:
    """A clear, secret-free error for a failure to reach or use ``target`` when opening."""
    text = redact(str(exc))
    lowered = text.lower()
    detail = next((line.strip() for line in text.splitlines() if "description:" in line.lower()), "")
    detail = detail.split(":", 1)[1].strip() if detail else _describe(exc)
    if "404" in lowered or "not-found" in lowered or "could not be found" in lowered:
        return EventHubConfigError(f"EVENTHUB_NAME: event hub {target.eventhub!r} not found at "
                                   f"{target.namespace} ({detail})")
    if "401" in lowered or "403" in lowered or "unauthorized" in lowered or "authentication" in lowered \
            or type(exc).__name__ == "ClientAuthenticationError":
        what = "EVENTHUB_CONNECTION_STRING" if target.connection_string is not None else \
            "Azure AD (EVENTHUB_NAMESPACE, DefaultAzureCredential)"
        return EventHubConfigError(f"{what}: authentication to {target.description} failed ({detail})")
    return EventHubUnavailable(f"cannot reach the Event Hubs endpoint {target.description}: {detail}")


def _bounded(call: Callable[[], Any], timeout: float, on_timeout: Callable[[], None]) -> Any:
    """``call()`` in a helper thread; if it has not returned after ``timeout`` s, ``on_timeout()`` and raise."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = call()
        except BaseException as exc:  # handed to the caller
            result["error"] = exc

    thread = threading.Thread(target=run, name="iotgen-eventhubs-connect", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        on_timeout()
        raise TimeoutError(f"no answer within {timeout:g} s")
    if "error" in result:
        raise result["error"]
    return result.get("value")


# ---- what is sent ---------------------------------------------------------------------------------------------
@dataclass
class PreparedBatch:
    """The messages of one ``EventDataBatch``: events ``indices`` (positions in the chunk) for one partition."""

    partition_id: str | None
    indices: np.ndarray
    messages: list[bytes]
    size: int  # the SDK's accounting of the batch size, bytes

    @property
    def count(self) -> int:
        return len(self.messages)


@dataclass
class PreparedChunk:
    """Events ready to send: encoded, routed and packed into batches (no I/O done yet)."""

    first_index: int
    events: pa.RecordBatch
    batches: list[PreparedBatch]
    bodies: pa.Array | None = None  # the messages' bodies when not the events' JSON
    numbers: np.ndarray | None = None  # each event's number, when they are not consecutive from first_index

    @property
    def count(self) -> int:
        return self.events.num_rows

    def number(self, row: int) -> int:
        """The event number of row ``row``."""
        return self.first_index + row if self.numbers is None else int(self.numbers[row])

    @property
    def size(self) -> int:
        return sum(b.size for b in self.batches)


@dataclass
class ChunkOutcome:
    """How one chunk was settled: every event is acknowledged or failed."""

    acknowledged: int = 0
    failed: int = 0
    retried: int = 0
    first_failed: int | None = None  # lowest event index not acknowledged
    error: str | None = None


@dataclass
class SendStats:
    """Running totals of a producer. ``sent == acknowledged + failed`` once every send has settled."""

    sent: int = 0
    acknowledged: int = 0
    retried: int = 0
    failed: int = 0
    batches: int = 0
    bytes: int = 0
    partitions: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def copy(self) -> "SendStats":
        return SendStats(self.sent, self.acknowledged, self.retried, self.failed, self.batches, self.bytes,
                         dict(self.partitions), list(self.errors))

    def since(self, earlier: "SendStats") -> dict[str, Any]:
        """What happened after ``earlier`` (a copy taken before), as keyword arguments of SendStats fields."""
        return {
            "sent": self.sent - earlier.sent, "acknowledged": self.acknowledged - earlier.acknowledged,
            "retried": self.retried - earlier.retried, "failed": self.failed - earlier.failed,
            "batches": self.batches - earlier.batches, "bytes": self.bytes - earlier.bytes,
            "partitions": {p: n - earlier.partitions.get(p, 0) for p, n in self.partitions.items()},
            "errors": self.errors[len(earlier.errors):],
        }


# ---- the SDK, at the level of one attempt ----------------------------------------------------------------------
class _SdkLink:
    """Fills and sends ``EventDataBatch`` objects: pre-encoded messages, one attempt per :meth:`send` (the SDK's
    private API, through :mod:`iotgen.outputs.private_api`)."""

    def __init__(self, client: Any, send_timeout: float, partition_key: str | None) -> None:
        self.client = client
        self.send_timeout = send_timeout
        self.partition_key = partition_key
        self.layout = EVENT_MESSAGES

    def new_batch(self, partition_id: str | None, max_bytes: int):
        return self.client.create_batch(partition_id=partition_id, max_size_in_bytes=max_bytes)

    def fill(self, batch: Any, prepared: PreparedBatch, chunk: PreparedChunk) -> None:
        private_api.fill_encoded(batch, prepared.messages, prepared.size)

    def open(self, partition_id: str | None) -> None:
        private_api.open_link(self.client, partition_id, self.send_timeout)

    def send(self, batch: Any) -> None:
        private_api.send_on_link(self.client, batch, self.send_timeout)


class _PublicLink(_SdkLink):
    """The same through the SDK's public API only (slower; the SDK may re-send once on its own)."""

    def fill(self, batch: Any, prepared: PreparedBatch, chunk: PreparedChunk) -> None:
        taken = pa.array(prepared.indices)
        events = chunk.events.take(taken)
        bodies = json_lines(events) if chunk.bodies is None else chunk.bodies.take(taken)
        keys = events.column(self.partition_key).to_pylist() if self.partition_key else None
        for i, event in enumerate(_event_data(events, bodies, self.layout)):
            if keys is not None:
                _set_partition_key(event, keys[i])
            batch.add(event)

    def open(self, partition_id: str | None) -> None:
        """Links open on the first send (public API only)."""

    def send(self, batch: Any) -> None:
        self.client.send_batch(batch, timeout=self.send_timeout)


def _event_data(events: pa.RecordBatch, bodies: pa.Array, layout: MessageLayout = EVENT_MESSAGES) -> list:
    """``EventData`` objects through the public API, with the body and properties iotgen sends."""
    from azure.eventhub import EventData

    ids = events.column(layout.message_id).cast(pa.string()).to_pylist()
    values = events.column(layout.property).cast(pa.string()).to_pylist()
    out = []
    for i, body in enumerate(bodies.to_pylist()):
        event = EventData(body)
        event.content_type = CONTENT_TYPE
        event.message_id = ids[i]
        event.properties = {"schema_version": SCHEMA_VERSION, layout.property: values[i]}
        out.append(event)
    return out


def _set_partition_key(event: Any, key: str) -> None:
    from azure.eventhub.amqp import AmqpMessageHeader

    message = event.raw_amqp_message
    message.annotations = {**(message.annotations or {}), b"x-opt-partition-key": key}
    message.header = message.header or AmqpMessageHeader()
    message.header.durable = True


def _fast_path_matches(client: Any, partition_key: str | None) -> bool:
    """Whether pre-encoded messages fill an ``EventDataBatch`` exactly like the SDK's own ``add`` does."""
    try:
        probe = pa.RecordBatch.from_pylist([{
            "event_id": "00000000-0000-4000-8000-000000000000", "device_type": "probe-" + "x" * 300,
            "sensor_id": "sensor-00001",
        }])
        body = pa.array(['{"probe":"' + "y" * 300 + '"}'])
        expected = client.create_batch(partition_key="sensor-00001" if partition_key else None)
        base = expected.size_in_bytes
        expected.add(_event_data(probe, body)[0])
        ours = encode_messages(probe, "sensor_id" if partition_key else None, bodies=body)[0].as_py()
        size = len(ours) + int(batch_overhead(np.array([len(ours)]))[0])
        filled = client.create_batch()
        private_api.fill_encoded(filled, [ours], filled.size_in_bytes + size)
        return (private_api.first_encoded(expected) == ours and expected.size_in_bytes - base == size
                and len(filled) == 1 and private_api.has_links(client))
    except Exception as exc:  # an SDK whose internals differ: use the public path
        _LOGGER.debug("fast path check failed: %s", _describe(exc))
        return False


# ---- the producer ----------------------------------------------------------------------------------------------
class EventHubProducer:
    """Sends prepared chunks of events to one event hub, with retries and exact counts.

    Build it with :meth:`open` (connects and checks the settings, bounded in time). :meth:`prepare` does the
    CPU work (encode, route, pack) and may run in one thread while :meth:`send` runs in another, but only one
    :meth:`send` at a time.
    """

    def __init__(
        self,
        client: Any,
        target: EventHubTarget,
        *,
        partition_ids: list[str],
        max_message_size: int,
        partition_key: str | None = "sensor_id",
        max_batch_bytes: int | None = None,
        send_timeout: float = 30.0,
        retries: int = 8,
        fast: bool = True,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        if max_batch_bytes is not None and max_batch_bytes > max_message_size:
            raise EventHubConfigError(f"MAX_BATCH_BYTES must be <= the link's maximum message size "
                                      f"({max_message_size} bytes for this event hub), got {max_batch_bytes}")
        self.client = client
        self.target = target
        self.partition_ids = list(partition_ids)
        self.max_message_size = max_message_size
        self.max_batch_bytes = max_batch_bytes or max_message_size
        self.partition_key = partition_key
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.fast = fast
        self._link = (_SdkLink if fast else _PublicLink)(client, send_timeout, partition_key)
        self._stats = SendStats(partitions={p: 0 for p in self.partition_ids})
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._partition_of: dict[str, int] = {}
        self._lanes: dict[str | None, ThreadPoolExecutor] = {}
        self._failed_partitions: set[str] = set()
        first = None if partition_key is None else self.partition_ids[0]
        self._base_size = client.create_batch(partition_id=first).size_in_bytes  # an empty batch's size

    # ---- opening ---------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, config: Config, target: EventHubTarget | None = None, *, fast: bool = True) -> "EventHubProducer":
        """Connect to the configured event hub and check it (credentials, hub, limits) before anything is sent.

        Raises :class:`EventHubConfigError` (a ``ValueError``) for wrong settings and
        :class:`EventHubUnavailable` when the endpoint cannot be reached within ``SEND_TIMEOUT_SEC``.
        """
        target = target or target_from_config(config)
        if target is None:
            raise EventHubConfigError(
                "no Event Hubs connection configured: set the EVENTHUB_CONNECTION_STRING environment variable "
                "(or EVENTHUB_SECRET_SCOPE/EVENTHUB_SECRET_KEY on Databricks), or EVENTHUB_NAMESPACE and "
                "EVENTHUB_NAME for Azure AD; for a local endpoint run `iotgen emulator` and use its connection string")
        partition_key = PARTITION_KEY_COLUMNS[config.partition_key]
        timeout = config.send_timeout_sec
        client = target.producer_client(retry_total=0)

        def connect() -> EventHubProducer:
            properties = client.get_eventhub_properties()
            max_size = client.create_batch().max_size_in_bytes
            use_fast = fast and _fast_path_matches(client, partition_key)
            if fast and not use_fast:
                _LOGGER.warning("this azure-eventhub version encodes messages differently from iotgen: using the "
                                "SDK's public batch API (slower; a send the SDK repeats itself is not counted)")
            producer = cls(client, target, partition_ids=list(properties["partition_ids"]), max_message_size=max_size,
                           partition_key=partition_key, max_batch_bytes=config.max_batch_bytes, send_timeout=timeout,
                           retries=config.send_retries, fast=use_fast)
            producer.open_links()
            return producer

        try:
            return _bounded(connect, timeout, client.close)
        except EventHubConfigError:
            _close_quietly(client)
            raise
        except Exception as exc:
            _close_quietly(client)
            raise _connect_error(exc, target) from None

    def open_links(self) -> None:
        """Open the send link of every partition now (concurrently), so the first sends do not wait for it."""
        targets = [None] if self.partition_key is None else self.partition_ids
        for future in [self._lane(pid).submit(self._link.open, pid) for pid in targets]:
            future.result()

    @property
    def layout(self) -> MessageLayout:
        """The columns of a row's message id and routing property (an event's ``event_id``, ``device_type``)."""
        return self._link.layout

    @layout.setter
    def layout(self, layout: MessageLayout) -> None:
        self._link.layout = layout

    # ---- preparing -------------------------------------------------------------------------------------------
    def prepare(self, events: pa.RecordBatch, first_index: int, bodies: pa.Array | None = None,
                numbers: np.ndarray | None = None) -> PreparedChunk:
        """Encode, route and pack ``events`` (numbered from ``first_index``, or ``numbers`` when they are not
        consecutive) into batches. No I/O. ``bodies``: the messages' bodies, when not the rows' JSON (the rows then
        give only the key, id and property)."""
        n = events.num_rows
        if n == 0:
            return PreparedChunk(first_index, events, [], bodies, numbers)
        messages = encode_messages(events, self.partition_key, bodies=bodies, layout=self._link.layout)
        sizes = pc.binary_length(messages).to_numpy(zero_copy_only=False).astype(np.int64)
        cost = sizes + batch_overhead(sizes)
        items = messages.to_pylist()
        batches: list[PreparedBatch] = []
        for partition_id, indices in self._groups(events):
            batches.extend(self._pack(partition_id, indices, cost, items, self._base_size))
        return PreparedChunk(first_index, events, batches, bodies, numbers)

    def _groups(self, events: pa.RecordBatch) -> Iterator[tuple[str | None, np.ndarray]]:
        if self.partition_key is None:
            yield None, np.arange(events.num_rows)
            return
        partitions = self._route(events.column(self.partition_key))
        order = np.argsort(partitions, kind="stable")
        bounds = np.searchsorted(partitions[order], np.arange(len(self.partition_ids) + 1))
        for p in range(len(self.partition_ids)):
            if bounds[p + 1] > bounds[p]:
                yield self.partition_ids[p], order[bounds[p]:bounds[p + 1]]

    def _route(self, keys: pa.Array) -> np.ndarray:
        """Partition index of each key: the service's hash of the key, as the SDK computes it."""
        encoded = pc.dictionary_encode(pc.fill_null(keys, ""))  # no key: partition 0 (the hash of "")
        lookup = np.array([self._partition_index(k) for k in encoded.dictionary.to_pylist()], dtype=np.int64)
        return lookup[encoded.indices.to_numpy(zero_copy_only=False)]

    def _partition_index(self, key: str) -> int:
        index = self._partition_of.get(key)
        if index is None:
            index = self._partition_of[key] = partition_for_key(key, len(self.partition_ids))
        return index

    def _pack(self, partition_id: str | None, indices: np.ndarray, cost: np.ndarray, items: list[bytes],
              base: int) -> Iterator[PreparedBatch]:
        limit = self.max_batch_bytes - base
        cumulative = np.cumsum(cost[indices])
        start, used = 0, 0
        while start < len(indices):
            end = max(start + 1, int(np.searchsorted(cumulative, used + limit, side="right")))
            chosen = indices[start:end]
            size = base + int(cumulative[end - 1] - used)
            yield PreparedBatch(partition_id, chosen, [items[i] for i in chosen], size)
            used = int(cumulative[end - 1])
            start = end

    # ---- sending ---------------------------------------------------------------------------------------------
    @property
    def stats(self) -> SendStats:
        with self._lock:
            return self._stats.copy()

    def stop_retrying(self) -> None:
        """Give up waiting between retries (Ctrl-C, Stop): a batch being retried is then counted as failed."""
        self._stop.set()

    def reset(self) -> None:
        """Start afresh (a new stream on this producer): retry again, send again to partitions that failed."""
        self._stop.clear()
        with self._lock:
            self._failed_partitions.clear()

    def submit(self, chunk: PreparedChunk) -> list[Future]:
        """Queue every batch of ``chunk`` on its partition's lane and return at once; :meth:`settle` waits.

        Each partition has one lane (a thread with its own connection), so a partition's batches, of this chunk
        and of the chunks submitted after it, are sent in order while partitions go in parallel. A batch that
        keeps failing is counted as failed with every later batch of its partition (this chunk's and later
        ones, until :meth:`reset`): one device's events are never reordered.
        """
        with self._lock:
            self._stats.sent += chunk.count
        lanes: dict[str | None, list[PreparedBatch]] = {}
        for prepared in chunk.batches:
            lanes.setdefault(prepared.partition_id, []).append(prepared)
        return [self._lane(pid).submit(self._send_lane, chunk, batches) for pid, batches in lanes.items()]

    @staticmethod
    def settle(futures: list[Future]) -> ChunkOutcome:
        """Wait for a submitted chunk; how it settled (every event acknowledged or failed)."""
        total = ChunkOutcome()
        for future in futures:
            outcome = future.result()
            total.acknowledged += outcome.acknowledged
            total.failed += outcome.failed
            total.retried += outcome.retried
            if outcome.first_failed is not None:
                total.first_failed = outcome.first_failed if total.first_failed is None else \
                    min(outcome.first_failed, total.first_failed)
                total.error = outcome.error if total.error is None else f"{total.error}; {outcome.error}"
        return total

    def send(self, chunk: PreparedChunk) -> ChunkOutcome:
        """Send every batch of ``chunk`` until acknowledged or failed (:meth:`submit` then :meth:`settle`)."""
        return self.settle(self.submit(chunk))

    def _lane(self, partition_id: str | None) -> ThreadPoolExecutor:
        with self._lock:
            lane = self._lanes.get(partition_id)
            if lane is None:
                lane = self._lanes[partition_id] = ThreadPoolExecutor(1, thread_name_prefix="iotgen-eventhubs-send")
            return lane

    def _send_lane(self, chunk: PreparedChunk, batches: list[PreparedBatch]) -> ChunkOutcome:
        outcome = ChunkOutcome()
        partition = batches[0].partition_id or "any"
        for number, prepared in enumerate(batches):
            with self._lock:
                error = "an earlier batch to this partition failed" if partition in self._failed_partitions \
                    else None
            error = error or self._send_batch(prepared, chunk, outcome)
            if error is None:
                continue
            failed = batches[number:]
            count = sum(b.count for b in failed)
            first = chunk.number(min(int(b.indices.min()) for b in failed))
            message = f"{count} events to partition {partition} not delivered (first event #{first}): {error}"
            _LOGGER.error("%s", message)
            outcome.failed += count
            outcome.first_failed = first
            outcome.error = message
            with self._lock:
                self._failed_partitions.add(partition)
                self._stats.failed += count
                self._stats.errors.append(message)
            break
        return outcome

    def _send_batch(self, prepared: PreparedBatch, chunk: PreparedChunk, outcome: ChunkOutcome) -> str | None:
        """Send one batch, retrying; None once acknowledged, else why it failed."""
        if prepared.size > self.max_batch_bytes:
            return f"an event of {prepared.size} bytes exceeds the batch limit of {self.max_batch_bytes} bytes"
        try:
            batch = self._link.new_batch(prepared.partition_id, self.max_batch_bytes)
            self._link.fill(batch, prepared, chunk)
        except Exception as exc:
            return _describe(exc)
        attempt = 0
        while True:
            try:
                self._link.send(batch)
            except Exception as exc:
                kind = error_kind(exc)
                reason = _describe(exc)
                if kind == "fatal":
                    return reason
                if attempt >= self.retries:
                    return f"{reason} (after {attempt} retries)"
                delay = self.retry_delay(attempt, kind)
                _LOGGER.warning("send to partition %s failed (%s); retry %d of %d in %.1f s",
                                prepared.partition_id or "any", reason, attempt + 1, self.retries, delay)
                if self._stop.wait(delay):
                    return f"{reason} (stopped while retrying)"
                attempt += 1
                outcome.retried += prepared.count
                with self._lock:
                    self._stats.retried += prepared.count
                continue
            outcome.acknowledged += prepared.count
            with self._lock:
                stats = self._stats
                stats.acknowledged += prepared.count
                stats.batches += 1
                stats.bytes += prepared.size
                key = prepared.partition_id or "any"
                stats.partitions[key] = stats.partitions.get(key, 0) + prepared.count
            return None

    def retry_delay(self, attempt: int, kind: str = "retry") -> float:
        """Exponential back-off with +-20% jitter; throttling waits at least :data:`SERVER_BUSY_DELAY`."""
        delay = min(self.max_backoff, self.backoff * 2 ** attempt) * random.uniform(0.8, 1.2)
        return max(delay, SERVER_BUSY_DELAY) if kind == "busy" else delay

    def close(self) -> None:
        """Close the client (after the sends in progress) and the partition lanes."""
        with self._lock:
            lanes, self._lanes = list(self._lanes.values()), {}
        for lane in lanes:
            lane.shutdown(wait=True)
        _close_quietly(self.client)

    def __enter__(self) -> "EventHubProducer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _close_quietly(client: Any) -> None:
    try:
        client.close()
    except Exception as exc:  # closing a broken connection: nothing more to do
        _LOGGER.debug("closing the Event Hubs client: %s", _describe(exc))


# ---- reading back -------------------------------------------------------------------------------------------
def read_events(
    target: EventHubTarget,
    *,
    max_events: int = 10,
    starting_position: Any = "-1",
    partition_id: str | None = None,
    timeout: float = 10.0,
    consumer_group: str = "$Default",
) -> list[dict[str, Any]]:
    """Up to ``max_events`` events from the hub (from the start by default), as dicts with the partition,
    sequence number, partition key, properties and the decoded JSON body; waits at most ``timeout`` s."""
    import json

    client = target.consumer_client(consumer_group)
    received: list[dict[str, Any]] = []
    done = threading.Event()

    def on_batch(context: Any, events: list) -> None:
        for event in events:
            properties = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                          for k, v in (event.properties or {}).items()}
            received.append({
                "partition": context.partition_id, "sequence_number": event.sequence_number,
                "partition_key": event.partition_key.decode() if isinstance(event.partition_key, bytes)
                else event.partition_key,
                "content_type": event.content_type, "message_id": event.message_id,
                "properties": properties, "event": json.loads(event.body_as_str()),
            })
        if len(received) >= max_events:
            done.set()

    kwargs: dict[str, Any] = {"on_event_batch": on_batch, "starting_position": starting_position,
                              "max_wait_time": 0.5, "max_batch_size": max(1, min(max_events, 300))}
    if partition_id is not None:
        kwargs["partition_id"] = partition_id
    thread = threading.Thread(target=client.receive_batch, kwargs=kwargs, name="iotgen-eventhubs-read", daemon=True)
    thread.start()
    done.wait(timeout)
    _close_quietly(client)
    thread.join(timeout)
    received.sort(key=lambda e: (e["partition"], e["sequence_number"]))
    return received[:max_events]
