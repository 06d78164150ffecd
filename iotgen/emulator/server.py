"""Asyncio AMQP 1.0 server that emulates the Azure Event Hubs data plane.

It speaks enough of AMQP 1.0 and of the Event Hubs conventions for the unmodified
``azure-eventhub`` SDK (pure-Python AMQP stack, sync and async clients):

* SASL ANONYMOUS, then open/begin/attach (pipelined), flow, transfer (multi-frame),
  disposition, detach, end, close and heartbeats (idle time-out both ways);
* ``$cbs`` put-token with SAS tokens validated against the configured key
  (401 for a bad or expired token, 404 for an unknown event hub); links are
  detached when their token expires, and nothing says which hubs exist to a
  client without a valid token;
* limits against bad peers: a handshake deadline, an idle time-out from the first
  byte (closed with ``amqp:connection:forced`` as Event Hubs does), a cap on open
  connections, and one rate-limited log line per misbehaving connection;
* ``$management`` READ of ``com.microsoft:eventhub`` and ``com.microsoft:partition``;
* producers on ``<hub>`` or ``<hub>/Partitions/<id>``: single messages and batches
  (message-format ``0x80013700``), routed by partition key hash or round-robin,
  settled with Accepted once stored (and fsync'd with a data directory);
* consumers on ``<hub>/ConsumerGroups/<cg>/Partitions/<id>`` with the selector
  filters the SDK sends (offset, sequence number, enqueued time, ``@latest``),
  honouring link credit and pushing new events to live receivers immediately.

See ``docs/emulator.md`` for what is not emulated.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote_plus, unquote, unquote_plus, urlsplit

from .codec import (
                    AMQP_FRAME,
                    AMQP_HEADER,
                    EMPTY_FRAME,
                    MIN_MAX_FRAME_SIZE,
                    SASL_FRAME,
                    SASL_HEADER,
                    Accepted,
                    Array,
                    Attach,
                    Begin,
                    Close,
                    CodecError,
                    Described,
                    Detach,
                    Disposition,
                    End,
                    Error,
                    Flow,
                    Int,
                    Long,
                    Message,
                    Open,
                    Properties,
                    Rejected,
                    SaslInit,
                    SaslMechanisms,
                    SaslOutcome,
                    Source,
                    Symbol,
                    Timestamp,
                    Transfer,
                    UInt,
                    ULong,
                    UShort,
                    amqp_value,
                    decode_frame_body,
                    decode_message,
                    encode_frame,
                    encode_message,
                    encode_transfer_frames,
                    encode_value,
                    parse_frame_header,
                    )
from .kafka_server import KafkaEndpoint
from .store import EventHub, EventStore, PartitionLog, StoredEvent, parse_transfer, partition_properties

__all__ = [
    "DEFAULT_KEY",
    "DEFAULT_KAFKA_PORT",
    "DEFAULT_KEY_NAME",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_PARTITION_BYTES",
    "KEY_ENV_VAR",
    "READY_PREFIX",
    "EventHubsEmulator",
    "SasAuthority",
    "StartPosition",
    "TokenCheck",
    "connection_string",
    "resolve_start",
]

_LOGGER = logging.getLogger(__name__)

DEFAULT_KEY_NAME = "RootManageSharedAccessKey"
#: A fixed, public key for local development only: never use it to protect anything.
DEFAULT_KEY = "iotgen-local-development-key-not-a-secret"
DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024
DEFAULT_MAX_FRAME_SIZE = 256 * 1024
DEFAULT_MAX_PARTITION_BYTES = 256 * 1024 * 1024
DEFAULT_IDLE_TIMEOUT = 240.0
#: Port of the Kafka endpoint (Microsoft's emulator uses it too; Azure's is 9093 with TLS).
DEFAULT_KAFKA_PORT = 9092
#: The AMQP idle-time-out field is a uint of milliseconds: the longest time-out it can carry, in seconds.
MAX_IDLE_TIMEOUT = (2**32 - 1) // 1000
#: Seconds a new connection has to complete its handshake (protocol headers, SASL, open).
HANDSHAKE_TIMEOUT = 10.0
DEFAULT_MAX_CONNECTIONS = 1000
#: Environment variable the command line reads the key from.
KEY_ENV_VAR = "IOTGEN_EMULATOR_KEY"
#: Start of the line the command line prints once it accepts connections.
READY_PREFIX = "iotgen emulator ready:"

SAS_TOKEN_TYPE = "servicebus.windows.net:sastoken"
CBS_NODE = "$cbs"
MANAGEMENT_NODE = "$management"
RUNTIME_METRIC_CAPABILITY = Symbol("com.microsoft:enable-receiver-runtime-metric")
_SELECTOR_FILTER_NAME = "apache.org:selector-filter:string"
_SELECTOR_FILTER_CODE = 0x0000468C00000004

# Link roles and settle modes (AMQP 1.0 part 2).
_ROLE_SENDER = False
_ROLE_RECEIVER = True
_SND_SETTLED = 1
_RCV_FIRST = 0

_SESSION_WINDOW = 5000
_LINK_CREDIT = 1000
_PUMP_BUDGET = 256
_HIGH_WATER = 4 * 1024 * 1024
_CHANNEL_MAX = 0xFFFF
_HANDLE_MAX = 0xFFFFFFFF

# AMQP and Event Hubs error conditions.
_NOT_FOUND = "amqp:not-found"
_UNAUTHORIZED = "amqp:unauthorized-access"
_DECODE_ERROR = "amqp:decode-error"
_FRAMING_ERROR = "amqp:connection:framing-error"
_ILLEGAL_STATE = "amqp:illegal-state"
_NOT_IMPLEMENTED = "amqp:not-implemented"
_RESOURCE_LIMIT = "amqp:resource-limit-exceeded"
_MESSAGE_SIZE_EXCEEDED = "amqp:link:message-size-exceeded"
_INTERNAL_ERROR = "amqp:internal-error"
_ARGUMENT_ERROR = "com.microsoft:argument-error"
_OUT_OF_RANGE = "com.microsoft:argument-out-of-range"
_LINK_STOLEN = "amqp:link:stolen"
_FORCED = "amqp:connection:forced"
_EPOCH_PROPERTY = "com.microsoft:epoch"


def connection_string(host: str, port: int, hub: str, key_name: str = DEFAULT_KEY_NAME,
                      key: str = DEFAULT_KEY, *, redact_key: bool = False) -> str:
    """An Event Hubs connection string for the emulator.

    ``UseDevelopmentEmulator=true`` makes the SDK use plain AMQP to ``host:port``.
    With ``redact_key`` the key is replaced by ``<redacted>`` (safe to print or log).
    """
    shown_key = "<redacted>" if redact_key else key
    return (f"Endpoint=sb://{host}:{port};SharedAccessKeyName={key_name};SharedAccessKey={shown_key};"
            f"UseDevelopmentEmulator=true;EntityPath={hub}")


def _entity_path(address: str) -> str:
    """The lower-cased entity path of an address or audience, without slashes at the ends."""
    path = urlsplit(address).path if "://" in address else address
    return unquote(path).strip("/").lower()


def _covers(scope: str, path: str) -> bool:
    """Whether a token for ``scope`` grants access to the entity ``path``."""
    return not scope or path == scope or path.startswith(scope + "/")


@dataclass(frozen=True)
class TokenCheck:
    """Outcome of validating a SAS token for an audience."""

    status: int
    description: str
    scope: str = ""
    expires_at: float = 0.0


class SasAuthority:
    """Validates Shared Access Signature tokens against one key name and key."""

    def __init__(self, key_name: str, key: str) -> None:
        self._key_name = key_name
        self._key = key.encode("utf-8")

    def check(self, token: str, audience: str, now: float | None = None) -> TokenCheck:
        """Check that ``token`` is a valid, unexpired SAS token covering ``audience``."""
        now = time.time() if now is None else now
        prefix = "SharedAccessSignature "
        if not token.startswith(prefix):
            return TokenCheck(401, "Unauthorized: only SharedAccessSignature tokens are supported.")
        fields: dict[str, str] = {}
        for part in token[len(prefix):].split("&"):
            name, _, value = part.partition("=")
            fields[name.strip()] = value.strip()
        missing = [f for f in ("sr", "sig", "se", "skn") if f not in fields]
        if missing:
            return TokenCheck(401, f"Unauthorized: malformed SAS token (missing {', '.join(missing)}).")
        if unquote_plus(fields["skn"]) != self._key_name:
            return TokenCheck(401, "Unauthorized: unknown SharedAccessKeyName.")
        try:
            expiry = int(fields["se"])
        except ValueError:
            return TokenCheck(401, "Unauthorized: malformed SAS token expiry.")
        if expiry <= now:
            return TokenCheck(401, "Unauthorized: the SAS token has expired.")
        raw_resource = fields["sr"]
        resource = unquote_plus(raw_resource)
        signature = unquote_plus(fields["sig"])
        candidates = {raw_resource, quote_plus(resource)}
        if not any(hmac.compare_digest(signature, self._sign(c, expiry)) for c in candidates):
            return TokenCheck(401, "InvalidSignature: the SAS token has an invalid signature "
                                   "(check SharedAccessKeyName and SharedAccessKey).")
        scope = _entity_path(resource)
        if not _covers(scope, _entity_path(audience)):
            return TokenCheck(401, "Unauthorized: the SAS token is not valid for this audience.")
        return TokenCheck(200, "OK", scope, float(expiry))

    def _sign(self, encoded_resource: str, expiry: int) -> str:
        digest = hmac.new(self._key, f"{encoded_resource}\n{expiry}".encode(), hashlib.sha256).digest()
        return base64.b64encode(digest).decode("ascii")


class _LinkRefused(Exception):
    """An attach that cannot be honoured; carries the detach error."""

    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.error = Error(condition, description)


class _ConnectionError(Exception):
    """A protocol violation that closes the connection with an error."""

    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.error = Error(condition, description)


# ---------------------------------------------------------------------------
# Event position filters
# ---------------------------------------------------------------------------

_SELECTOR = re.compile(
    r"^\s*amqp\.annotation\.x-opt-(offset|sequence-number|enqueued-time)\s*(>=|>)\s*'([^']*)'\s*$",
    re.IGNORECASE)


@dataclass
class StartPosition:
    """Where a consumer starts: a sequence number, plus an enqueued-time bound for events not yet stored."""

    sequence_number: int
    after_time: int | None = None
    time_inclusive: bool = False


def _selector_expression(source: Source | None) -> str | None:
    filters = source.filter if source is not None else None
    if not filters:
        return None
    for value in filters.values():
        if isinstance(value, Described) and (
                value.descriptor == _SELECTOR_FILTER_NAME or value.descriptor == _SELECTOR_FILTER_CODE):
            expression = value.value
            return expression.decode("utf-8") if isinstance(expression, bytes) else str(expression)
    return None


def resolve_start(partition: PartitionLog, expression: str | None) -> StartPosition:
    """Translate an Event Hubs selector filter into a start position in ``partition``."""
    if expression is None:
        return StartPosition(0)
    match = _SELECTOR.match(expression)
    if match is None:
        raise _LinkRefused(_ARGUMENT_ERROR, f"unsupported event position filter: {expression!r}")
    field, operator, value = match.group(1).lower(), match.group(2), match.group(3)
    inclusive = operator == ">="
    if field == "offset" and value == "@latest":
        return StartPosition(partition.visible_end)
    try:
        number = int(value)
    except ValueError:
        raise _LinkRefused(_ARGUMENT_ERROR, f"invalid {field} in event position filter: {value!r}") from None
    if field == "enqueued-time":
        return StartPosition(partition.sequence_after_time(number, inclusive), number, inclusive)
    # Offsets are sequence numbers, so both fields resolve the same way.
    return StartPosition(max(0, number if inclusive else number + 1))


# ---------------------------------------------------------------------------
# Links
# ---------------------------------------------------------------------------


@dataclass
class _Delivery:
    delivery_id: int
    message_format: int
    settled: bool
    payload: bytes


class _Link:
    """State shared by both link directions."""

    def __init__(self, session: _Session, attach: Attach, handle: int) -> None:
        self.session = session
        self.name = attach.name
        self.handle = handle
        self.remote_handle = int(attach.handle)
        self.source = attach.source
        self.target = attach.target
        self.entity_path: str | None = None  # an event hub's link: its CBS token must stay valid

    def reply_attach(self, **overrides: Any) -> Attach:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the link holds (listeners, buffers)."""


class _IncomingLink(_Link):
    """A link on which the client sends (we are the receiver)."""

    def __init__(self, session: _Session, attach: Attach, handle: int,
                 on_delivery: Callable[[_IncomingLink, _Delivery], None],
                 max_message_size: int, partition: PartitionLog | None = None,
                 hub: EventHub | None = None) -> None:
        super().__init__(session, attach, handle)
        self.on_delivery = on_delivery
        self.max_message_size = max_message_size
        self.hub = hub
        self.partition = partition
        self.delivery_count = int(attach.initial_delivery_count or 0)
        self.credit = 0
        self._partial: bytearray | None = None
        self._partial_head: Transfer | None = None
        self._oversized = False

    def reply_attach(self, **overrides: Any) -> Attach:
        fields = dict(name=self.name, handle=self.handle, role=_ROLE_RECEIVER, snd_settle_mode=None,
                      rcv_settle_mode=_RCV_FIRST, source=self.source, target=self.target,
                      max_message_size=ULong(self.max_message_size))
        fields.update(overrides)
        return Attach(**fields)

    def grant_credit(self) -> None:
        self.credit = _LINK_CREDIT
        self.session.send_flow(self, delivery_count=self.delivery_count, link_credit=self.credit)

    def on_transfer(self, transfer: Transfer, payload: memoryview) -> None:
        if self._partial_head is None:
            self._partial_head = transfer
            self._partial = bytearray()
            self._oversized = False
        if not self._oversized:
            assert self._partial is not None
            self._partial += payload
            if len(self._partial) > self.max_message_size:
                self._oversized = True
                self._partial = bytearray()
        if transfer.more and not transfer.aborted:
            return
        head, data = self._partial_head, self._partial
        self._partial_head, self._partial = None, None
        self.delivery_count = (self.delivery_count + 1) & 0xFFFFFFFF
        self.credit -= 1
        if self.credit < _LINK_CREDIT // 2:
            self.grant_credit()
        if transfer.aborted or head.delivery_id is None:
            return
        settled = bool(head.settled)
        if self._oversized:
            if not settled:
                self.session.settle(int(head.delivery_id), Rejected(Error(
                    _MESSAGE_SIZE_EXCEEDED,
                    f"The message exceeds the maximum message size of {self.max_message_size} bytes.")))
            return
        delivery = _Delivery(int(head.delivery_id), int(head.message_format or 0), settled, bytes(data or b""))
        self.on_delivery(self, delivery)


class _OutgoingLink(_Link):
    """A link on which we send to the client, governed by its link credit."""

    def __init__(self, session: _Session, attach: Attach, handle: int) -> None:
        super().__init__(session, attach, handle)
        self.delivery_count = 0
        self.credit = 0
        self.drain = False

    def reply_attach(self, **overrides: Any) -> Attach:
        fields = dict(name=self.name, handle=self.handle, role=_ROLE_SENDER, snd_settle_mode=_SND_SETTLED,
                      rcv_settle_mode=_RCV_FIRST, source=self.source, target=self.target,
                      initial_delivery_count=UInt(0))
        fields.update(overrides)
        return Attach(**fields)

    def on_flow(self, flow: Flow) -> None:
        if flow.link_credit is not None:
            remote_count = self.delivery_count if flow.delivery_count is None else int(flow.delivery_count)
            self.credit = max(0, (remote_count + int(flow.link_credit) - self.delivery_count) & 0xFFFFFFFF)
            if self.credit > 0x7FFFFFFF:  # serial-number arithmetic: a "negative" credit
                self.credit = 0
        self.drain = bool(flow.drain)
        if flow.echo:
            self.session.send_flow(self, delivery_count=self.delivery_count, link_credit=self.credit)

    def next_message(self) -> bytes | None:
        """The next message to deliver, or ``None`` when there is nothing to send."""
        raise NotImplementedError

    def pump(self, budget: int) -> bool:
        """Send what credit and windows allow; return True if more could be sent now."""
        session = self.session
        connection = session.connection
        allowed = min(self.credit, budget, max(0, session.remote_incoming_window))
        frames: list[bytes] = []
        sent = 0
        while sent < allowed:
            message = self.next_message()
            if message is None:
                break
            delivery_frames = encode_transfer_frames(
                session.channel, self.handle, session.next_delivery_id, message, connection.remote_max_frame_size)
            session.next_delivery_id = (session.next_delivery_id + 1) & 0xFFFFFFFF
            session.next_outgoing_id = (session.next_outgoing_id + len(delivery_frames)) & 0xFFFFFFFF
            session.remote_incoming_window -= len(delivery_frames)
            frames.extend(delivery_frames)
            sent += 1
        if sent:
            self.credit -= sent
            self.delivery_count = (self.delivery_count + sent) & 0xFFFFFFFF
            connection.write(b"".join(frames))
        if self.drain and self.credit and sent < allowed:
            self.delivery_count = (self.delivery_count + self.credit) & 0xFFFFFFFF
            self.credit = 0
            self.drain = False
            session.send_flow(self, delivery_count=self.delivery_count, link_credit=0, drain=True)
        return sent == budget


class _ReplyLink(_OutgoingLink):
    """The response link of a request/response node (``$cbs``, ``$management``)."""

    def __init__(self, session: _Session, attach: Attach, handle: int) -> None:
        super().__init__(session, attach, handle)
        self.queue: deque[bytes] = deque()

    def next_message(self) -> bytes | None:
        return self.queue.popleft() if self.queue else None

    def close(self) -> None:
        self.queue.clear()


class _EventReceiverLink(_OutgoingLink):
    """A consumer reading one partition of one consumer group.

    ``epoch`` is the SDK's ``owner_level`` (``None`` for a non-exclusive consumer).
    """

    def __init__(self, session: _Session, attach: Attach, handle: int, partition: PartitionLog,
                 start: StartPosition, consumer_group: str, epoch: int | None) -> None:
        super().__init__(session, attach, handle)
        self.partition = partition
        self.consumer_group = consumer_group
        self.epoch = epoch
        self.next_sequence = start.sequence_number
        self._after_time = start.after_time
        self._time_inclusive = start.time_inclusive
        self.runtime_metric = RUNTIME_METRIC_CAPABILITY in (attach.desired_capabilities or ())
        self._wake = lambda: session.connection.schedule_pump(self)
        partition.add_listener(self._wake)

    def reply_attach(self, **overrides: Any) -> Attach:
        if self.runtime_metric:
            overrides.setdefault("offered_capabilities", [RUNTIME_METRIC_CAPABILITY])
        return super().reply_attach(**overrides)

    def next_message(self) -> bytes | None:
        partition = self.partition
        # Events dropped by retention are skipped, as Event Hubs does for expired ones.
        self.next_sequence = max(self.next_sequence, partition.first_sequence)
        while self.next_sequence < partition.visible_end:
            event = partition.event(self.next_sequence)
            self.next_sequence += 1
            if self._after_time is not None:
                if event.enqueued_time < self._after_time or (
                        event.enqueued_time == self._after_time and not self._time_inclusive):
                    continue
                self._after_time = None
            if self.runtime_metric:
                return self._with_runtime_metrics(event)
            return event.message
        return None

    def _with_runtime_metrics(self, event: StoredEvent) -> bytes:
        last = self.partition.last_event
        assert last is not None
        annotations = Described(ULong(0x71), {
            Symbol("last_enqueued_sequence_number"): Long(last.sequence_number),
            Symbol("last_enqueued_offset"): last.offset,
            Symbol("last_enqueued_time_utc"): Timestamp(last.enqueued_time),
            Symbol("runtime_info_retrieval_time_utc"): Timestamp(int(time.time() * 1000)),
        })
        head = event.header_size
        return event.message[:head] + bytes(encode_value(annotations)) + event.message[head:]

    def close(self) -> None:
        self.partition.remove_listener(self._wake)
        self.session.connection.server.exclusive_readers.release(self)


class _ExclusiveReaders:
    """Event Hubs epoch semantics per (partition, consumer group).

    A consumer with an epoch (owner level) takes the partition over from consumers
    with a lower or equal epoch and from non-epoch consumers, which are detached
    with ``amqp:link:stolen``; while it reads, consumers with a lower epoch or
    without one are refused.
    """

    def __init__(self) -> None:
        self._readers: dict[tuple[int, str], list[_EventReceiverLink]] = {}

    @staticmethod
    def _key(partition: PartitionLog, consumer_group: str) -> tuple[int, str]:
        return id(partition), consumer_group.lower()

    def admit(self, partition: PartitionLog, consumer_group: str, epoch: int | None) -> list[_EventReceiverLink]:
        """Check a new consumer may attach; return the consumers it displaces."""
        readers = self._readers.get(self._key(partition, consumer_group), [])
        epochs = [r.epoch for r in readers if r.epoch is not None]
        top = max(epochs) if epochs else None
        where = f"partition '{partition.partition_id}' of consumer group '{consumer_group}'"
        if top is not None and (epoch is None or epoch < top):
            wanted = "without an epoch" if epoch is None else f"with epoch {epoch}"
            raise _LinkRefused(_LINK_STOLEN, f"A receiver with epoch {top} is reading {where}: a receiver "
                                             f"{wanted} cannot be created.")
        if epoch is None:
            return []
        return [r for r in readers if r.epoch is None or r.epoch <= epoch]

    def add(self, link: _EventReceiverLink) -> None:
        self._readers.setdefault(self._key(link.partition, link.consumer_group), []).append(link)

    def release(self, link: _EventReceiverLink) -> None:
        key = self._key(link.partition, link.consumer_group)
        readers = self._readers.get(key, [])
        if link in readers:
            readers.remove(link)
        if not readers:
            self._readers.pop(key, None)


# ---------------------------------------------------------------------------
# Sessions
# ---------------------------------------------------------------------------


class _Session:
    """One AMQP session: its windows and links."""

    def __init__(self, connection: _AmqpConnection, channel: int, begin: Begin) -> None:
        self.connection = connection
        self.channel = channel
        self.remote_channel = channel
        self.next_outgoing_id = 0
        self.next_delivery_id = 0
        self.remote_incoming_window = int(begin.incoming_window)
        self.next_incoming_id = int(begin.next_outgoing_id)
        self.incoming_window = _SESSION_WINDOW
        self.links: dict[int, _Link] = {}  # by the client's handle

    def _allocate_handle(self) -> int:
        used = {link.handle for link in self.links.values()}
        return next(h for h in range(len(used) + 1) if h not in used)

    def reply_begin(self) -> Begin:
        return Begin(remote_channel=UShort(self.remote_channel), next_outgoing_id=self.next_outgoing_id,
                     incoming_window=self.incoming_window, outgoing_window=_SESSION_WINDOW,
                     handle_max=_HANDLE_MAX)

    def send(self, performative: Any) -> None:
        self.connection.write(encode_frame(performative, self.channel))

    def send_flow(self, link: _Link | None = None, **link_fields: Any) -> None:
        self.send(Flow(next_incoming_id=self.next_incoming_id, incoming_window=self.incoming_window,
                       next_outgoing_id=self.next_outgoing_id, outgoing_window=_SESSION_WINDOW,
                       handle=None if link is None else link.handle, **link_fields))

    def settle(self, delivery_id: int, state: Any) -> None:
        self.send(Disposition(role=_ROLE_RECEIVER, first=delivery_id, settled=True, state=state))

    def outgoing_links(self) -> Iterable[_OutgoingLink]:
        return [link for link in self.links.values() if isinstance(link, _OutgoingLink)]

    def reply_link(self, node: str) -> _ReplyLink | None:
        for link in self.links.values():
            if isinstance(link, _ReplyLink) and _terminus_address(link.source) == node:
                return link
        return None

    # -- incoming performatives ---------------------------------------------

    def on_attach(self, attach: Attach) -> None:
        if int(attach.handle) in self.links:
            raise _ConnectionError(_ILLEGAL_STATE, f"link handle {attach.handle} is already in use")
        handle = self._allocate_handle()
        try:
            link = self.connection.server.create_link(self, attach, handle)
        except _LinkRefused as refusal:
            _LOGGER.info("refused link %r: %s", attach.name, refusal.error.description)
            role = _ROLE_RECEIVER if attach.role == _ROLE_SENDER else _ROLE_SENDER
            self.send(Attach(name=attach.name, handle=handle, role=role,
                             snd_settle_mode=attach.snd_settle_mode, rcv_settle_mode=attach.rcv_settle_mode,
                             source=attach.source if role == _ROLE_RECEIVER else None,
                             target=attach.target if role == _ROLE_SENDER else None,
                             initial_delivery_count=UInt(0) if role == _ROLE_SENDER else None))
            self.send(Detach(handle=handle, closed=True, error=refusal.error))
            return
        self.links[link.remote_handle] = link
        self.send(link.reply_attach())
        if isinstance(link, _IncomingLink):
            link.grant_credit()

    def on_flow(self, flow: Flow) -> None:
        next_incoming = 0 if flow.next_incoming_id is None else int(flow.next_incoming_id)
        self.remote_incoming_window = next_incoming + int(flow.incoming_window) - self.next_outgoing_id
        if flow.handle is not None:
            link = self.links.get(int(flow.handle))
            if isinstance(link, _OutgoingLink):
                link.on_flow(flow)
        elif flow.echo:
            self.send_flow()
        for link in self.outgoing_links():
            self.connection.schedule_pump(link)

    def on_transfer(self, transfer: Transfer, payload: memoryview) -> None:
        self.next_incoming_id = (self.next_incoming_id + 1) & 0xFFFFFFFF
        self.incoming_window -= 1
        if self.incoming_window < _SESSION_WINDOW // 2:
            self.incoming_window = _SESSION_WINDOW
            self.send_flow()
        link = self.links.get(int(transfer.handle))
        if not isinstance(link, _IncomingLink):
            raise _ConnectionError("amqp:session:unattached-handle",
                                   f"transfer on handle {transfer.handle}, which is not an attached sending link")
        link.on_transfer(transfer, payload)

    def detach(self, link: _Link, error: Error) -> None:
        """Detach ``link`` from our side (the client's answering detach is then ignored)."""
        if self.links.pop(link.remote_handle, None) is link:
            link.close()
            self.send(Detach(handle=link.handle, closed=True, error=error))

    def on_detach(self, detach: Detach) -> None:
        link = self.links.pop(int(detach.handle), None)
        if link is None:
            return  # already detached by us (a refused or closed link)
        link.close()
        self.send(Detach(handle=link.handle, closed=detach.closed))

    def close(self) -> None:
        for link in self.links.values():
            link.close()
        self.links.clear()


def _terminus_address(terminus: Any) -> str:
    address = getattr(terminus, "address", None)
    if isinstance(address, bytes):
        return address.decode("utf-8", errors="replace")
    return "" if address is None else str(address)


# ---------------------------------------------------------------------------
# Connections
# ---------------------------------------------------------------------------


class _Phase:
    PROTOCOL_HEADER = "protocol-header"
    SASL = "sasl"
    AMQP_HEADER = "amqp-header"
    OPEN = "open"
    CLOSED = "closed"


class _AmqpConnection(asyncio.Protocol):
    """One client connection: framing, SASL, sessions, heartbeats and CBS state."""

    def __init__(self, server: EventHubsEmulator) -> None:
        self.server = server
        self.remote_max_frame_size = MIN_MAX_FRAME_SIZE
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._phase = _Phase.PROTOCOL_HEADER
        self._opened = False
        self._sessions: dict[int, _Session] = {}
        self._tokens: dict[str, float] = {}  # authorised entity path -> token expiry
        self._pending_pumps: dict[_OutgoingLink, None] = {}
        self._pump_scheduled = False
        self._paused = False
        self._remote_idle_timeout = 0.0
        self._last_received = 0.0
        self._last_sent = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._started = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._peer = "?"

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.set_write_buffer_limits(high=_HIGH_WATER)
        self._peer = str(transport.get_extra_info("peername"))
        self._last_received = self._last_sent = self._started = self._now()
        if len(self.server.connections) >= self.server.max_connections:
            self.server.bad_connection("refused connection from %s: %d connections are open (the limit)",
                                       self._peer, len(self.server.connections))
            self._shutdown()
            return
        self.server.connections.add(self)
        _LOGGER.debug("connection from %s", self._peer)
        self._schedule_timer()  # the handshake deadline and the idle time-out hold from the first byte

    def connection_lost(self, exc: Exception | None) -> None:
        _LOGGER.debug("connection from %s closed (%s)", self._peer, exc or "clean")
        self._phase = _Phase.CLOSED
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()
        self._pending_pumps.clear()
        for task in self._tasks:
            task.cancel()
        self.server.connections.discard(self)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        for session in self._sessions.values():
            for link in session.outgoing_links():
                self.schedule_pump(link)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._last_received = self._now()
        try:
            self._process_buffer()
        except _ConnectionError as failure:
            self.close(failure.error)
        except CodecError as exc:
            self.close(Error(_DECODE_ERROR, str(exc)))
        except Exception as exc:  # a bug must not take the server down: drop this connection only
            self.server.bad_connection("internal error on connection from %s: %s: %s", self._peer,
                                       type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            _LOGGER.debug("internal error on connection from %s", self._peer, exc_info=True)
            self.close(Error(_INTERNAL_ERROR, "internal emulator error"), log_level=logging.DEBUG)

    # -- framing --------------------------------------------------------------

    def _process_buffer(self) -> None:
        buffer = self._buffer
        pos = 0
        try:
            while self._phase != _Phase.CLOSED:
                if self._phase in (_Phase.PROTOCOL_HEADER, _Phase.AMQP_HEADER):
                    if len(buffer) - pos < 8:
                        break
                    self._on_protocol_header(bytes(buffer[pos:pos + 8]))
                    pos += 8
                    continue
                if len(buffer) - pos < 8:
                    break
                header = parse_frame_header(buffer, pos)
                if header.size > self.server.max_frame_size:
                    raise _ConnectionError(_FRAMING_ERROR, f"frame of {header.size} bytes exceeds max-frame-size")
                if len(buffer) - pos < header.size:
                    break
                body = bytes(buffer[pos + 4 * header.data_offset:pos + header.size])
                pos += header.size
                self._on_frame(header.frame_type, header.channel, body)
        finally:
            del buffer[:pos]

    def _on_protocol_header(self, header: bytes) -> None:
        if self._phase == _Phase.PROTOCOL_HEADER and header == SASL_HEADER:
            self.write(SASL_HEADER + encode_frame(
                SaslMechanisms([Symbol("ANONYMOUS")]), frame_type=SASL_FRAME))
            self._phase = _Phase.SASL
        elif header == AMQP_HEADER:
            self.write(AMQP_HEADER)
            self._phase = _Phase.OPEN
        else:
            self.write(SASL_HEADER if self._phase == _Phase.PROTOCOL_HEADER else AMQP_HEADER)
            self._shutdown()

    def _on_frame(self, frame_type: int, channel: int, body: bytes) -> None:
        if self._phase == _Phase.SASL:
            if frame_type != SASL_FRAME:
                raise _ConnectionError(_FRAMING_ERROR, "expected a SASL frame")
            self._on_sasl(decode_frame_body(body)[0])
            return
        if frame_type != AMQP_FRAME:
            raise _ConnectionError(_FRAMING_ERROR, f"unexpected frame type {frame_type}")
        if not body:
            return  # heartbeat
        performative, payload = decode_frame_body(body)
        if not self._opened and not isinstance(performative, Open):
            raise _ConnectionError(_ILLEGAL_STATE, "the first frame must be open")
        handler = self._HANDLERS.get(type(performative))
        if handler is None:
            raise _ConnectionError(_NOT_IMPLEMENTED, f"unsupported frame {type(performative).__name__}")
        handler(self, channel, performative, payload)

    def _on_sasl(self, frame: Any) -> None:
        if not isinstance(frame, SaslInit):
            raise _ConnectionError(_FRAMING_ERROR, "expected sasl-init")
        if str(frame.mechanism) != "ANONYMOUS":
            self.write(encode_frame(SaslOutcome(code=1), frame_type=SASL_FRAME))
            self._shutdown()
            return
        self.write(encode_frame(SaslOutcome(code=0), frame_type=SASL_FRAME))
        self._phase = _Phase.AMQP_HEADER

    # -- connection and session performatives ---------------------------------

    def _on_open(self, channel: int, frame: Open, _payload: memoryview) -> None:
        if self._opened or channel != 0:
            raise _ConnectionError(_ILLEGAL_STATE, "unexpected open frame")
        self._opened = True
        if frame.max_frame_size is not None:
            self.remote_max_frame_size = max(MIN_MAX_FRAME_SIZE, min(int(frame.max_frame_size), 0xFFFFFFFF))
        else:
            self.remote_max_frame_size = 0xFFFFFFFF
        self._remote_idle_timeout = (frame.idle_time_out or 0) / 1000.0
        if self._timer is not None:
            self._timer.cancel()
        self.write(encode_frame(Open(
            container_id=f"iotgen-eventhubs-emulator-{id(self.server):x}",
            hostname=None,
            max_frame_size=self.server.max_frame_size,
            channel_max=_CHANNEL_MAX,
            idle_time_out=int(self.server.idle_timeout * 1000) if self.server.idle_timeout else None,
            properties={"product": "iotgen-eventhubs-emulator"},
        )))
        self._schedule_timer()

    def _on_begin(self, channel: int, frame: Begin, _payload: memoryview) -> None:
        if channel in self._sessions:
            raise _ConnectionError(_ILLEGAL_STATE, f"channel {channel} already has a session")
        session = _Session(self, channel, frame)
        self._sessions[channel] = session
        session.send(session.reply_begin())

    def _session(self, channel: int) -> _Session:
        session = self._sessions.get(channel)
        if session is None:
            raise _ConnectionError(_ILLEGAL_STATE, f"no session on channel {channel}")
        return session

    def _on_attach(self, channel: int, frame: Attach, _payload: memoryview) -> None:
        self._session(channel).on_attach(frame)

    def _on_flow(self, channel: int, frame: Flow, _payload: memoryview) -> None:
        session = self._sessions.get(channel)
        if session is not None:  # a flow racing the end of its session needs no answer
            session.on_flow(frame)

    def _on_transfer(self, channel: int, frame: Transfer, payload: memoryview) -> None:
        self._session(channel).on_transfer(frame, payload)

    def _on_disposition(self, channel: int, frame: Disposition, _payload: memoryview) -> None:
        """We only send settled deliveries: the client's dispositions need no action."""

    def _on_detach(self, channel: int, frame: Detach, _payload: memoryview) -> None:
        session = self._sessions.get(channel)
        if session is not None:  # the SDK sends its detaches after ending the session
            session.on_detach(frame)

    def _on_end(self, channel: int, frame: End, _payload: memoryview) -> None:
        session = self._sessions.pop(channel, None)
        if session is not None:
            session.close()
            session.send(End())

    def _on_close(self, channel: int, frame: Close, _payload: memoryview) -> None:
        if frame.error is not None:
            _LOGGER.info("client %s closed the connection with %s", self._peer, frame.error.condition)
        self.write(encode_frame(Close()))
        self._shutdown()

    _HANDLERS: ClassVar[dict[type, Callable[..., None]]] = {
        Open: _on_open,
        Begin: _on_begin,
        Attach: _on_attach,
        Flow: _on_flow,
        Transfer: _on_transfer,
        Disposition: _on_disposition,
        Detach: _on_detach,
        End: _on_end,
        Close: _on_close,
    }

    # -- output -----------------------------------------------------------------

    @staticmethod
    def _now() -> float:
        return time.monotonic()

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)
            self._last_sent = self._now()

    def close(self, error: Error | None = None, log_level: int = logging.WARNING) -> None:
        """Send close (with ``error``, logged at ``log_level``) and drop the connection."""
        if self._phase == _Phase.CLOSED:
            return
        if error is not None:
            if log_level >= logging.WARNING:  # a misbehaving peer: one line, rate-limited
                self.server.bad_connection("closing connection from %s: %s: %s", self._peer, error.condition,
                                           error.description)
            else:
                _LOGGER.log(log_level, "closing connection from %s: %s: %s", self._peer, error.condition,
                            error.description)
        if self._opened:
            self.write(encode_frame(Close(error)))
        self._shutdown()

    def _shutdown(self) -> None:
        self._phase = _Phase.CLOSED
        if self._transport is not None:
            self._transport.close()

    def schedule_pump(self, link: _OutgoingLink) -> None:
        self._pending_pumps[link] = None
        if not self._pump_scheduled and self._transport is not None:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._run_pumps)

    def _run_pumps(self) -> None:
        self._pump_scheduled = False
        pending, self._pending_pumps = self._pending_pumps, {}
        for link in pending:
            if self._paused or self._phase == _Phase.CLOSED:
                self._pending_pumps[link] = None
                continue
            if link.session.links.get(link.remote_handle) is link and link.pump(_PUMP_BUDGET):
                self.schedule_pump(link)

    # -- heartbeats and idle time-out -------------------------------------------

    def _schedule_timer(self) -> None:
        intervals = [1.0]
        if self._remote_idle_timeout:
            intervals.append(self._remote_idle_timeout / 4)
        self._timer = asyncio.get_running_loop().call_later(max(0.05, min(intervals)), self._on_timer)

    def _on_timer(self) -> None:
        if self._phase == _Phase.CLOSED:
            return
        now = self._now()
        if not self._opened and now - self._started > HANDSHAKE_TIMEOUT:
            self.server.bad_connection("closing connection from %s: no AMQP open within %g s of connecting",
                                       self._peer, HANDSHAKE_TIMEOUT)
            self._shutdown()
            return
        idle_timeout = self.server.idle_timeout
        if idle_timeout and now - self._last_received > idle_timeout:
            # Event Hubs' own condition and words: the SDK reconnects by itself on amqp:connection:forced
            self.close(Error(_FORCED, f"The connection was inactive for more than the allowed "
                                      f"{int(idle_timeout * 1000)} milliseconds and is closed by container "
                                      "'LinkTracker'."), log_level=logging.INFO)
            return
        if self._remote_idle_timeout and now - self._last_sent >= self._remote_idle_timeout / 2:
            self.write(EMPTY_FRAME)
        for session in list(self._sessions.values()):  # links whose token expired are detached
            for link in list(session.links.values()):
                self.check_token(link)
        self._schedule_timer()

    # -- CBS state ------------------------------------------------------------------

    def authorise(self, check: TokenCheck) -> None:
        self._tokens[check.scope] = check.expires_at

    def is_authorised(self, path: str) -> bool:
        now = time.time()
        return any(expiry > now and _covers(scope, path) for scope, expiry in self._tokens.items())

    def check_token(self, link: _Link) -> bool:
        """Whether ``link`` may still be used: an event hub link whose token expired (and was not renewed with
        a put-token) is detached with ``amqp:unauthorized-access``, as Event Hubs does."""
        if link.entity_path is None or self.is_authorised(link.entity_path):
            return True
        link.session.detach(link, Error(_UNAUTHORIZED, f"ExpiredToken: the token for '{link.entity_path}' has "
                                                       "expired; put a new token on $cbs to go on"))
        return False

    def run_task(self, coroutine: Any) -> None:
        """Run a coroutine tied to this connection (cancelled when it closes)."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


# ---------------------------------------------------------------------------
# The emulator
# ---------------------------------------------------------------------------


def _address_segments(address: str) -> list[str]:
    path = urlsplit(address).path if "://" in address else address
    return [unquote(s) for s in path.strip("/").split("/") if s]


def _epoch(attach: Attach) -> int | None:
    """The consumer's epoch (owner level) from its link properties."""
    value = (attach.properties or {}).get(_EPOCH_PROPERTY)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _LinkRefused(_ARGUMENT_ERROR, f"the {_EPOCH_PROPERTY} link property must be an integer")
    return int(value)


def _app_property(message: Message, name: str) -> Any:
    value = (message.application_properties or {}).get(name)
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


class _RateLimitedLog:
    """Warnings about peers, at most ``per_interval`` lines per ``interval`` seconds: a flood of malformed
    connections cannot flood the log (what is held back is counted in the next line written)."""

    def __init__(self, logger: logging.Logger, per_interval: int, interval: float) -> None:
        self._logger = logger
        self._per_interval = per_interval
        self._interval = interval
        self._window_start = -interval
        self._written = 0
        self._suppressed = 0

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._window_start >= self._interval:
            if self._suppressed:
                self._logger.warning("%d more such lines suppressed in the last %g s", self._suppressed,
                                     self._interval)
            self._window_start, self._written, self._suppressed = now, 0, 0
        if self._written < self._per_interval:
            self._written += 1
            self._logger.warning(message, *args)
        else:
            self._suppressed += 1


class EventHubsEmulator:
    """An in-process Event Hubs emulator listening on ``host:port``.

    Use ``async with EventHubsEmulator(...) as emulator`` or :meth:`start` /
    :meth:`close`; ``port=0`` picks a free port (see :attr:`port`).  Each partition
    keeps at most about ``max_partition_bytes`` of events in memory (the oldest are
    dropped beyond it; ``None``: no limit).
    """

    def __init__(self, *, hubs: Iterable[str] = ("iot-events",), partitions: int = 4,
                 host: str = "127.0.0.1", port: int = 5672, key_name: str = DEFAULT_KEY_NAME,
                 key: str = DEFAULT_KEY, data_dir: str | Path | None = None,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
                 max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                 max_partition_bytes: int | None = DEFAULT_MAX_PARTITION_BYTES,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 kafka_port: int | None = None) -> None:
        hub_names = list(hubs)
        if not hub_names:
            raise ValueError("at least one event hub is needed")
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        if not key_name or not key:
            raise ValueError("key name and key must not be empty")
        if max_frame_size < MIN_MAX_FRAME_SIZE:
            raise ValueError(f"max_frame_size must be at least {MIN_MAX_FRAME_SIZE}")
        if max_message_size < 1:
            raise ValueError("max_message_size must be positive")
        if max_partition_bytes is not None and max_partition_bytes < 1:
            raise ValueError("max_partition_bytes must be positive (or None for no limit)")
        if not (isinstance(idle_timeout, (int, float)) and 0 <= idle_timeout <= MAX_IDLE_TIMEOUT):
            raise ValueError(f"idle_timeout must be a number of seconds from 0 (off) to {MAX_IDLE_TIMEOUT}, "
                             f"got {idle_timeout!r}")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.host = host
        self.requested_port = port
        self.key_name = key_name
        self.max_message_size = max_message_size
        self.max_frame_size = max_frame_size
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self._bad_log = _RateLimitedLog(_LOGGER, per_interval=10, interval=10.0)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.store = EventStore([(name, partitions) for name in hub_names], self.data_dir, max_partition_bytes)
        self._authority = SasAuthority(key_name, key)
        self._key = key
        self._server: asyncio.base_events.Server | None = None
        self.connections: set[_AmqpConnection] = set()
        self.exclusive_readers = _ExclusiveReaders()
        self.kafka: KafkaEndpoint | None = None
        if kafka_port is not None:
            self.kafka = KafkaEndpoint(self.store, self._authority, key_name=key_name, key=key, host=host,
                                       port=kafka_port, idle_timeout=idle_timeout, max_message_size=max_message_size,
                                       data_dir=self.data_dir, max_connections=max_connections,
                                       handshake_timeout=HANDSHAKE_TIMEOUT)

    def bad_connection(self, message: str, *args: Any) -> None:
        """Log one line about a misbehaving connection (at most 10 such lines per 10 s, then a count)."""
        self._bad_log.warning(message, *args)

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Start listening."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _AmqpConnection(self), self.host, self.requested_port)
        _LOGGER.info("event hubs emulator listening on %s:%d", self.host, self.port)
        if self.kafka is not None:
            try:
                await self.kafka.start()
            except BaseException:
                self._server.close()
                raise
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            _LOGGER.warning("listening on %s, not only on loopback: anyone who can reach it and knows the key "
                            "can use it (the default key is public)", self.host)

    @property
    def kafka_port(self) -> int | None:
        """The port of the Kafka endpoint (None: not served)."""
        return None if self.kafka is None else self.kafka.port

    @property
    def port(self) -> int:
        """The port actually listened on."""
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self) -> None:
        """Stop listening, close every connection and the store."""
        if self._server is not None:
            self._server.close()
        if self.kafka is not None:
            await self.kafka.close()
        for connection in list(self.connections):
            connection.close(Error("amqp:connection:forced", "the emulator is shutting down"), log_level=logging.INFO)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        for hub in self.store.hubs:
            for partition in hub.partitions:
                if partition.persistent:
                    await partition.flush()
        self.store.close()

    async def __aenter__(self) -> EventHubsEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def connection_string(self, hub: str | None = None, *, redact_key: bool = False) -> str:
        """Connection string for ``hub`` (the first hub by default)."""
        name = hub or self.store.hubs[0].name
        return connection_string(self.host, self.port, name, self.key_name, self._key, redact_key=redact_key)

    # -- links ----------------------------------------------------------------------

    def create_link(self, session: _Session, attach: Attach, handle: int) -> _Link:
        """Create the link an attach asks for, or raise :class:`_LinkRefused`."""
        if attach.role == _ROLE_SENDER:  # the client sends: we receive on the target
            address = _terminus_address(attach.target)
            if address == CBS_NODE:
                return _IncomingLink(session, attach, handle, self._on_cbs_request, self.max_message_size)
            if address == MANAGEMENT_NODE:
                return _IncomingLink(session, attach, handle, self._on_management_request, self.max_message_size)
            hub, partition = self._producer_target(session, address)
            link = _IncomingLink(session, attach, handle, self._on_events, self.max_message_size, partition, hub)
            link.entity_path = _entity_path(address)
            return link
        address = _terminus_address(attach.source)
        if address in (CBS_NODE, MANAGEMENT_NODE):
            return _ReplyLink(session, attach, handle)
        hub, consumer_group, partition = self._consumer_source(session, address)
        start = resolve_start(partition, _selector_expression(attach.source))
        epoch = _epoch(attach)
        for displaced in self.exclusive_readers.admit(partition, consumer_group, epoch):
            displaced.session.detach(displaced, Error(_LINK_STOLEN, (
                f"New receiver with higher epoch of '{epoch}' is created hence current receiver with epoch "
                f"'{displaced.epoch}' is getting disconnected.")))
        receiver = _EventReceiverLink(session, attach, handle, partition, start, consumer_group, epoch)
        receiver.entity_path = _entity_path(address)
        self.exclusive_readers.add(receiver)
        _LOGGER.debug("consumer attached to %s/%s/%s at sequence number %d (epoch %s)", hub.name,
                      consumer_group, partition.partition_id, start.sequence_number, epoch)
        return receiver

    def _hub_for(self, session: _Session, address: str, segments: list[str]) -> EventHub:
        if not segments:
            raise _LinkRefused(_NOT_FOUND, f"no entity in address {address!r}")
        # Authorisation first: without a token, an existing and an unknown hub answer alike (no enumeration).
        if not session.connection.is_authorised(_entity_path(address)):
            raise _LinkRefused(_UNAUTHORIZED, f"Unauthorized access to '{'/'.join(segments)}': put a valid "
                                              "SAS token on $cbs for this entity first.")
        hub = self.store.get(segments[0])
        if hub is None:
            raise _LinkRefused(_NOT_FOUND, f"The messaging entity '{segments[0]}' could not be found.")
        return hub

    def _partition(self, hub: EventHub, partition_id: str) -> PartitionLog:
        partition = hub.partition(partition_id)
        if partition is None:
            raise _LinkRefused(_OUT_OF_RANGE, f"partition '{partition_id}' does not exist in event hub "
                                              f"'{hub.name}' (partitions: {', '.join(hub.partition_ids)})")
        return partition

    def _producer_target(self, session: _Session, address: str) -> tuple[EventHub, PartitionLog | None]:
        segments = _address_segments(address)
        hub = self._hub_for(session, address, segments)
        if len(segments) == 1:
            return hub, None
        if len(segments) == 3 and segments[1].lower() == "partitions":
            return hub, self._partition(hub, segments[2])
        raise _LinkRefused(_NOT_FOUND, f"unsupported send address {address!r}")

    def _consumer_source(self, session: _Session, address: str) -> tuple[EventHub, str, PartitionLog]:
        segments = _address_segments(address)
        hub = self._hub_for(session, address, segments)
        if (len(segments) != 5 or segments[1].lower() != "consumergroups"
                or segments[3].lower() != "partitions"):
            raise _LinkRefused(_NOT_FOUND, f"unsupported receive address {address!r}: expected "
                                           "<hub>/ConsumerGroups/<group>/Partitions/<id>")
        return hub, segments[2], self._partition(hub, segments[4])

    # -- deliveries -------------------------------------------------------------------

    def _on_events(self, link: _IncomingLink, delivery: _Delivery) -> None:
        session = link.session
        if not session.connection.check_token(link):
            return  # detached: the token expired (a send on it is not accepted)
        try:
            events, partition_key = parse_transfer(delivery.payload, delivery.message_format)
        except CodecError as exc:
            if not delivery.settled:
                session.settle(delivery.delivery_id, Rejected(Error(_DECODE_ERROR, f"malformed message: {exc}")))
            return
        assert link.hub is not None
        partition = link.partition or link.hub.route(partition_key)
        if events:
            partition.append(events, partition_key)
        if delivery.settled:
            return
        if partition.persistent:
            session.connection.run_task(self._settle_when_durable(session, partition, delivery.delivery_id))
        else:
            session.settle(delivery.delivery_id, Accepted())

    async def _settle_when_durable(self, session: _Session, partition: PartitionLog, delivery_id: int) -> None:
        try:
            await partition.flush()
        except OSError as exc:
            _LOGGER.error("could not persist events of partition %s/%s: %s",
                          partition.hub_name, partition.partition_id, exc)
            session.settle(delivery_id, Rejected(Error(_INTERNAL_ERROR, "the events could not be persisted")))
            return
        session.settle(delivery_id, Accepted())

    def _reply(self, link: _IncomingLink, delivery: _Delivery, node: str, request: Message,
               status: int, description: str, body: Any = None) -> None:
        """Settle a request and queue its response on the node's reply link."""
        session = link.session
        reply_link = session.reply_link(node)
        if reply_link is None:
            if not delivery.settled:
                session.settle(delivery.delivery_id, Rejected(Error(
                    _ILLEGAL_STATE, f"attach a receiving link with source {node!r} before sending requests")))
            return
        request_id = request.properties.message_id if request.properties else None
        response = Message(
            properties=Properties(correlation_id=request_id),
            application_properties={"status-code": Int(status), "status-description": description,
                                    "statusCode": Int(status), "statusDescription": description},
            body=[amqp_value(body)],
        )
        reply_link.queue.append(encode_message(response))
        # The response goes out before the disposition: the SDK reads one frame per
        # polling step, and only the response unblocks it.
        reply_link.pump(_PUMP_BUDGET)
        if not delivery.settled:
            session.settle(delivery.delivery_id, Accepted())
        if reply_link.queue:
            session.connection.schedule_pump(reply_link)

    def _on_cbs_request(self, link: _IncomingLink, delivery: _Delivery) -> None:
        try:
            request = decode_message(delivery.payload)
        except CodecError as exc:
            link.session.settle(delivery.delivery_id, Rejected(Error(_DECODE_ERROR, str(exc))))
            return
        operation = _app_property(request, "operation")
        token_type = _app_property(request, "type")
        audience = _app_property(request, "name")
        token = request.value
        if isinstance(token, bytes):
            token = token.decode("utf-8", errors="replace")
        if operation != "put-token":
            check = TokenCheck(400, f"unsupported $cbs operation {operation!r}")
        elif token_type != SAS_TOKEN_TYPE:
            check = TokenCheck(401, f"unsupported token type {token_type!r}: the emulator only accepts "
                                    "SAS tokens (connection strings or AzureNamedKeyCredential)")
        elif not isinstance(audience, str) or not isinstance(token, str):
            check = TokenCheck(400, "put-token needs a 'name' (audience) and a token body")
        else:
            check = self._check_audience(token, audience)
        if check.status == 200:
            link.session.connection.authorise(check)
        else:
            _LOGGER.info("rejected put-token for %r: %d %s", audience, check.status, check.description)
        self._reply(link, delivery, CBS_NODE, request, check.status, check.description)

    def _check_audience(self, token: str, audience: str) -> TokenCheck:
        check = self._authority.check(token, audience)
        if check.status != 200:
            return check
        path = _entity_path(audience)
        hub_name = path.split("/", 1)[0]
        if hub_name and self.store.get(hub_name) is None:  # the token is valid: saying so reveals nothing
            return TokenCheck(404, f"The messaging entity '{audience}' could not be found.")
        return check

    def _on_management_request(self, link: _IncomingLink, delivery: _Delivery) -> None:
        try:
            request = decode_message(delivery.payload)
        except CodecError as exc:
            link.session.settle(delivery.delivery_id, Rejected(Error(_DECODE_ERROR, str(exc))))
            return
        status, description, body = self._management(link.session.connection, request)
        self._reply(link, delivery, MANAGEMENT_NODE, request, status, description, body)

    def _management(self, connection: _AmqpConnection, request: Message) -> tuple[int, str, Any]:
        operation = _app_property(request, "operation")
        entity_type = _app_property(request, "type")
        name = _app_property(request, "name")
        if operation != "READ":
            return 400, f"unsupported management operation {operation!r}", None
        if not isinstance(name, str) or not name:
            return 400, "management requests need a 'name' application property", None
        token = _app_property(request, "security_token")
        authorised = connection.is_authorised(_entity_path(name))
        if not authorised and isinstance(token, str):
            check = self._authority.check(token, name)
            if check.status != 200:
                return check.status, check.description, None
            authorised = True
        if not authorised:  # before looking the hub up: an unknown and an existing hub answer alike
            return 401, "Unauthorized: put a valid SAS token on $cbs or pass security_token.", None
        hub = self.store.get(name)
        if hub is None:
            return 404, f"The messaging entity '{name}' could not be found.", None
        if entity_type == "com.microsoft:eventhub":
            return 200, "OK", {
                "name": hub.name,
                "type": "com.microsoft:eventhub",
                "created_at": Timestamp(hub.created_at),
                "partition_count": Int(len(hub.partitions)),
                "partition_ids": Array(hub.partition_ids, str),
            }
        if entity_type == "com.microsoft:partition":
            partition_id = _app_property(request, "partition")
            partition = hub.partition(str(partition_id))
            if partition is None:
                return 404, f"partition {partition_id!r} does not exist in event hub '{hub.name}'", None
            return 200, "OK", partition_properties(hub, partition)
        return 400, f"unsupported management entity type {entity_type!r}", None
