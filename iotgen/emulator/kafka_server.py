"""The emulator's Kafka endpoint: the Kafka protocol over the same event store as the AMQP side.

Event Hubs' Kafka endpoint, locally (what Azure's Kafka guides describe, and Microsoft's own emulator since
2.0.1 does on port 9092):

* topic = event hub (case-insensitive), the hub's partitions, offset = sequence number, record timestamp =
  enqueued time (log-append time), what an event looks like across protocols as in :mod:`.kafka_interop`;
* SASL PLAIN only (``SASL_PLAINTEXT``), user ``$ConnectionString``, the connection string as the password,
  checked against the emulator's key (or a SAS token in ``SharedAccessSignature``); an ``EntityPath`` limits
  the connection to that event hub. A request other than ApiVersions/SASL before authenticating closes the
  connection, as Kafka's SASL listeners do;
* Produce (acks 0/1/all; idempotent producers: sequence numbers checked, re-sent batches answered with their
  first offset), Fetch (long polling, sessionless), ListOffsets, Metadata (one broker: this endpoint), the
  classic consumer group protocol (FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup with session
  and rebalance time-outs) and committed offsets (OffsetCommit/OffsetFetch, kept under ``--data-dir``);
* every connection handles one request at a time in order (like a broker); a frame that breaks the protocol or
  exceeds :data:`MAX_REQUEST_BYTES` closes that connection only; a connection silent for ``idle_timeout``
  seconds (also mid-frame: half-open), or not authenticated within ``handshake_timeout`` seconds, is closed;
  beyond ``max_connections`` open Kafka connections a new one is closed at once (as the AMQP side does).

Not served (clients do without them): transactions, fetch sessions, topic creation and the admin APIs; see
``docs/emulator.md``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from .kafka_codec import (
    API_VERSIONS,
    APIS,
    BatchError,
    CodecError,
    ErrorCode,
    Request,
    decode_record_batches,
    encode_fetch_batch,
    encode_record_tail,
    encode_response,
    parse_request,
)
from .kafka_interop import amqp_to_kafka, kafka_to_amqp
from .store import EventHub, EventStore, PartitionLog

if TYPE_CHECKING:
    from .server import SasAuthority

__all__ = ["KafkaEndpoint", "MAX_REQUEST_BYTES", "check_connection_string"]

_LOGGER = logging.getLogger(__name__)

#: Largest request frame accepted (a larger size closes the connection, like Kafka's socket.request.max.bytes).
MAX_REQUEST_BYTES = 32 * 1024 * 1024
#: Most bytes one Fetch response carries, whatever the client asks for.
MAX_FETCH_BYTES = 16 * 1024 * 1024
#: Most records in one batch of a Fetch response.
MAX_BATCH_RECORDS = 4096
#: Producers whose sequence numbers are tracked (the least recently used beyond it are forgotten).
MAX_PRODUCER_STATES = 10_000
#: Batches remembered per producer and partition to answer re-sends (as Kafka: 5 in flight).
_RECENT_BATCHES = 5
#: Bounds on a consumer's session time-out (Kafka's group.min/max.session.timeout.ms).
MIN_SESSION_TIMEOUT_MS = 6_000
MAX_SESSION_TIMEOUT_MS = 1_800_000
NODE_ID = 0
CLUSTER_ID = "iotgen-event-hubs-emulator"
CONNECTION_STRING_USER = "$ConnectionString"
_SASL_APIS = frozenset((API_VERSIONS.key, 17, 36))


class _Close(Exception):
    """Close the connection (after sending ``response`` if there is one)."""

    def __init__(self, reason: str, response: bytes | None = None, level: int = logging.INFO) -> None:
        super().__init__(reason)
        self.response = response
        self.level = level


# ---- authentication -------------------------------------------------------------------------------------------
def _connection_fields(text: str) -> dict[str, str]:
    fields = {}
    for part in text.strip().split(";"):
        if part.strip():
            key, _, value = part.partition("=")
            fields[key.strip().lower()] = value.strip()
    return fields


def check_connection_string(password: str, key_name: str, key: str, authority: "SasAuthority",
                            store: EventStore) -> tuple[str | None, str]:
    """Check a SASL PLAIN password (an Event Hubs connection string): (the event hub it is limited to or ""
    for the namespace, None if refused; why)."""
    fields = _connection_fields(password)
    endpoint = fields.get("endpoint", "")
    if not endpoint:
        return None, "the password must be an Event Hubs connection string (Endpoint=sb://...;SharedAccessKey...)"
    entity = fields.get("entitypath", "")
    if "sharedaccesssignature" in fields:
        audience = endpoint.rstrip("/") + ("/" + entity if entity else "")
        check = authority.check(fields["sharedaccesssignature"], audience)
        if check.status != 200:
            return None, check.description
    elif fields.get("sharedaccesskeyname") != key_name or not hmac.compare_digest(
            fields.get("sharedaccesskey", "").encode(), key.encode()):
        return None, "InvalidSignature: wrong SharedAccessKeyName or SharedAccessKey"
    if entity and store.get(entity) is None:
        return None, (f"The messaging entity '{entity}' could not be found "
                      f"(event hubs: {', '.join(h.name for h in store.hubs)})")
    return entity.lower(), "OK"


# ---- idempotent producers --------------------------------------------------------------------------------------
@dataclass
class _ProducerState:
    epoch: int
    last_sequence: int
    recent: deque = field(default_factory=lambda: deque(maxlen=_RECENT_BATCHES))  # (first, last, base offset)


class _Producers:
    """Producer ids for InitProducerId, and the sequence numbers of each producer's batches per partition."""

    def __init__(self) -> None:
        # Unique across restarts of the emulator: the start time in ms, shifted, plus a counter.
        self._next_id = (int(time.time() * 1000) & ((1 << 41) - 1)) << 12
        self._states: OrderedDict[tuple[int, int, str], _ProducerState] = OrderedDict()

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def check(self, partition: PartitionLog, producer_id: int, epoch: int, first: int, last: int) -> int | None:
        """The base offset of an identical batch already stored (a re-send), else None; raises
        :class:`BatchError` for a fenced epoch or a gap in the sequence numbers."""
        state = self._states.get((producer_id, id(partition), partition.partition_id))
        if state is None:
            return None
        if epoch < state.epoch:
            raise BatchError(ErrorCode.INVALID_PRODUCER_EPOCH, f"producer epoch {epoch} is older than {state.epoch}")
        if epoch > state.epoch:
            if first != 0:
                raise BatchError(ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                                 f"a new producer epoch must start at sequence 0, got {first}")
            return None
        for seen_first, seen_last, base_offset in state.recent:
            if seen_first == first and seen_last == last:
                return base_offset
        expected = (state.last_sequence + 1) & 0x7FFFFFFF
        if first != expected:
            raise BatchError(ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                             f"expected sequence number {expected}, got {first}")
        return None

    def record(self, partition: PartitionLog, producer_id: int, epoch: int, first: int, last: int,
               base_offset: int) -> None:
        key = (producer_id, id(partition), partition.partition_id)
        state = self._states.get(key)
        if state is None or epoch != state.epoch:
            state = self._states[key] = _ProducerState(epoch, last)
        state.last_sequence = last
        state.recent.append((first, last, base_offset))
        self._states.move_to_end(key)
        while len(self._states) > MAX_PRODUCER_STATES:
            self._states.popitem(last=False)


# ---- consumer groups -------------------------------------------------------------------------------------------
@dataclass
class _Member:
    member_id: str
    client_id: str
    session_timeout: float
    rebalance_timeout: float
    protocols: list[tuple[str, bytes]]
    last_seen: float = field(default_factory=time.monotonic)
    join: asyncio.Future | None = None
    sync: asyncio.Future | None = None
    assignment: bytes = b""

    def metadata(self, protocol: str) -> bytes:
        return next((m for name, m in self.protocols if name == protocol), b"")


class _Group:
    """One classic consumer group: Empty -> PreparingRebalance -> CompletingRebalance -> Stable."""

    def __init__(self, group_id: str) -> None:
        self.group_id = group_id
        self.state = "Empty"
        self.generation = 0
        self.protocol_type: str | None = None
        self.protocol: str | None = None
        self.leader: str | None = None
        self.members: dict[str, _Member] = {}
        self.rebalance_deadline = 0.0

    def common_protocols(self, extra: list[tuple[str, bytes]] | None = None) -> set[str]:
        sets = [{name for name, _ in m.protocols} for m in self.members.values()]
        if extra is not None:
            sets.append({name for name, _ in extra})
        return set.intersection(*sets) if sets else set()

    def begin_rebalance(self) -> None:
        if self.state == "PreparingRebalance":
            return
        for member in self.members.values():
            if member.sync is not None and not member.sync.done():
                member.sync.set_result((ErrorCode.REBALANCE_IN_PROGRESS, b""))
            member.sync = None
        self.state = "PreparingRebalance"
        timeout = max((m.rebalance_timeout for m in self.members.values()), default=0.0)
        self.rebalance_deadline = time.monotonic() + timeout

    def try_complete_join(self, force: bool = False) -> None:
        """Finish the rebalance once every member has rejoined (or, ``force``, drop those that did not)."""
        if self.state != "PreparingRebalance":
            return
        waiting = [m for m in self.members.values() if m.join is None]
        if waiting and not force:
            return
        for member in waiting:
            del self.members[member.member_id]
        if not self.members:
            self.state, self.protocol, self.leader = "Empty", None, None
            self.generation += 1
            return
        common = self.common_protocols()
        votes: dict[str, int] = {}
        for member in self.members.values():
            choice = next(name for name, _ in member.protocols if name in common)
            votes[choice] = votes.get(choice, 0) + 1
        self.protocol = max(votes, key=lambda name: votes[name])
        if self.leader not in self.members:
            self.leader = next(iter(self.members))
        self.generation += 1
        self.state = "CompletingRebalance"
        now = time.monotonic()
        everyone = [{"member_id": m.member_id, "group_instance_id": None, "metadata": m.metadata(self.protocol)}
                    for m in self.members.values()]
        for member in self.members.values():
            member.last_seen = now
            response = {"error_code": ErrorCode.NONE, "generation_id": self.generation,
                        "protocol_type": self.protocol_type, "protocol_name": self.protocol, "leader": self.leader,
                        "member_id": member.member_id, "members": everyone if member.member_id == self.leader else []}
            assert member.join is not None
            if not member.join.done():
                member.join.set_result(response)
            member.join = None

    def remove(self, member_id: str) -> None:
        member = self.members.pop(member_id, None)
        if member is None:
            return
        for future, result in ((member.join, {"error_code": ErrorCode.UNKNOWN_MEMBER_ID}),
                               (member.sync, (ErrorCode.UNKNOWN_MEMBER_ID, b""))):
            if future is not None and not future.done():
                future.set_result(result)
        if not self.members:
            self.state, self.protocol, self.leader, self.protocol_type = "Empty", None, None, None
            self.generation += 1
        elif self.state == "PreparingRebalance":
            self.try_complete_join()
        else:
            self.begin_rebalance()


class _Offsets:
    """Committed offsets per (group, hub, partition), persisted as JSON under the data directory."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.values: dict[str, dict[str, list[Any]]] = {}
        if path is not None and path.exists():
            try:
                self.values = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                _LOGGER.warning("ignoring unreadable committed offsets %s: %s", path, exc)

    def get(self, group: str, hub: str, partition: int) -> tuple[int, str | None, int] | None:
        entry = self.values.get(group, {}).get(f"{hub.lower()}/{partition}")
        return None if entry is None else (int(entry[0]), entry[1], int(entry[2]))

    def put(self, group: str, hub: str, partition: int, offset: int, metadata: str | None, epoch: int) -> None:
        self.values.setdefault(group, {})[f"{hub.lower()}/{partition}"] = [offset, metadata, epoch]

    def save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as handle:
            json.dump(self.values, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)


# ---- the endpoint ---------------------------------------------------------------------------------------------
@dataclass
class _Connection:
    peer: str
    authenticated: bool = False
    handshake_done: bool = False
    scope: str = ""  # the event hub the credentials are limited to ("" : the namespace)
    deadline: float = 0.0  # when an unauthenticated connection is closed (time.monotonic)


class KafkaEndpoint:
    """Serves the Kafka protocol for ``store`` on ``host:port`` (``port=0``: a free port, see :attr:`port`)."""

    def __init__(self, store: EventStore, authority: "SasAuthority", *, key_name: str, key: str,
                 host: str = "127.0.0.1", port: int = 9092, idle_timeout: float = 240.0,
                 max_message_size: int = 1024 * 1024, data_dir: Path | None = None,
                 max_connections: int = 1000, handshake_timeout: float = 10.0) -> None:
        self.store = store
        self.authority = authority
        self.key_name = key_name
        self._key = key
        self.host = host
        self.requested_port = port
        self.idle_timeout = idle_timeout or None  # 0: no idle time-out
        self.max_connections = max_connections
        self.handshake_timeout = handshake_timeout
        self.max_message_size = max_message_size
        self.producers = _Producers()
        self.groups: dict[str, _Group] = {}
        self.offsets = _Offsets(data_dir / "kafka-consumer-offsets.json" if data_dir is not None else None)
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._sweeper: asyncio.Task | None = None
        # A handler gets the request (header fields) and its parsed body (never None: _dispatch answers the rest).
        self._handlers: dict[int, Callable[[_Connection, Request, dict[str, Any]],
                                           Awaitable[dict[str, Any] | None]]] = {
            0: self._produce, 1: self._fetch, 2: self._list_offsets, 3: self._metadata, 8: self._offset_commit,
            9: self._offset_fetch, 10: self._find_coordinator, 11: self._join_group, 12: self._heartbeat,
            13: self._leave_group, 14: self._sync_group, 17: self._sasl_handshake, 18: self._api_versions,
            22: self._init_producer_id, 36: self._sasl_authenticate,
        }

    # -- lifecycle ---------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.requested_port)
        self._sweeper = asyncio.ensure_future(self._sweep_groups())
        _LOGGER.info("kafka endpoint listening on %s:%d", self.host, self.port)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the Kafka endpoint is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def advertised_host(self) -> str:
        return "127.0.0.1" if self.host in ("", "0.0.0.0") else "::1" if self.host == "::" else self.host

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # -- connections -------------------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        connection = _Connection(f"{peer[0]}:{peer[1]}" if peer else "?")
        try:
            if len(self._tasks) > self.max_connections:
                raise _Close(f"{len(self._tasks) - 1} Kafka connections are open (the limit)", level=logging.WARNING)
            await self._requests(connection, reader, writer)
        except _Close as exc:
            _LOGGER.log(exc.level, "kafka connection %s closed: %s", connection.peer, exc)
            if exc.response is not None:
                writer.write(exc.response)
                try:
                    await asyncio.wait_for(writer.drain(), 5.0)
                except (OSError, asyncio.TimeoutError):
                    pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:  # a bug must not take the server down: log it, drop this connection
            _LOGGER.exception("kafka connection %s failed", connection.peer)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _read(self, connection: _Connection, reader: asyncio.StreamReader, n: int) -> bytes:
        """``n`` bytes; a silent peer is closed after the idle time-out, or, before it has authenticated, at the
        handshake deadline (both hold from the first byte of a frame to its last: a half-open frame times out)."""
        timeout = self.idle_timeout
        if not connection.authenticated:
            left = max(0.0, connection.deadline - time.monotonic())
            timeout = left if timeout is None else min(timeout, left)
        try:
            return await asyncio.wait_for(reader.readexactly(n), timeout)
        except asyncio.TimeoutError:
            if not connection.authenticated:
                raise _Close(f"no SASL authentication within {self.handshake_timeout:g} s",
                             level=logging.WARNING) from None
            raise _Close(f"idle for {self.idle_timeout:g} s") from None
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise _Close("the client closed the connection in the middle of a frame") from None
            raise

    async def _requests(self, connection: _Connection, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        connection.deadline = time.monotonic() + self.handshake_timeout
        while True:
            size = int.from_bytes(await self._read(connection, reader, 4), "big", signed=True)
            if not 8 <= size <= MAX_REQUEST_BYTES:
                raise _Close(f"invalid request size {size} (at most {MAX_REQUEST_BYTES} bytes)", level=logging.WARNING)
            frame = await self._read(connection, reader, size)
            try:
                request = parse_request(frame)
            except CodecError as exc:
                raise _Close(f"malformed request: {exc}", level=logging.WARNING) from None
            response = await self._dispatch(connection, request)
            if response is not None:
                writer.write(response)
                try:
                    await asyncio.wait_for(writer.drain(), self.idle_timeout or self.handshake_timeout * 6)
                except asyncio.TimeoutError:
                    raise _Close("the client reads nothing of its responses") from None

    async def _dispatch(self, connection: _Connection, request: Request) -> bytes | None:
        api = request.api
        if api is None or request.body is None:
            if request.api_key == API_VERSIONS.key:  # a newer ApiVersions: answer in v0 what we serve
                return encode_response(request, {"error_code": ErrorCode.UNSUPPORTED_VERSION,
                                                 "api_keys": self._api_keys()}, version=0)
            name = api.name if api else f"API key {request.api_key}"
            raise _Close(f"{name} v{request.api_version} is not served (client {request.client_id!r})",
                         level=logging.WARNING)
        if not connection.authenticated and request.api_key not in _SASL_APIS:
            raise _Close(f"{api.name} before SASL authentication: the Kafka endpoint needs SASL PLAIN "
                         "(security.protocol=SASL_PLAINTEXT, user $ConnectionString, the connection string as "
                         "password)", level=logging.WARNING)
        response = await self._handlers[request.api_key](connection, request, request.body)
        if response is None:
            return None
        return encode_response(request, response)

    # -- ApiVersions and SASL --------------------------------------------------------------------------------
    @staticmethod
    def _api_keys() -> list[dict[str, int]]:
        return [{"api_key": a.key, "min_version": a.min_version, "max_version": a.max_version}
                for a in APIS.values()]

    async def _api_versions(self, connection: _Connection, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        return {"error_code": ErrorCode.NONE, "api_keys": self._api_keys()}

    async def _sasl_handshake(self, connection: _Connection, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        mechanism = body["mechanism"]
        if connection.authenticated or connection.handshake_done:
            raise _Close("a second SASL handshake on one connection", encode_response(
                request, {"error_code": ErrorCode.ILLEGAL_SASL_STATE, "mechanisms": ["PLAIN"]}))
        if mechanism != "PLAIN":
            return {"error_code": ErrorCode.UNSUPPORTED_SASL_MECHANISM, "mechanisms": ["PLAIN"]}
        connection.handshake_done = True
        return {"error_code": ErrorCode.NONE, "mechanisms": ["PLAIN"]}

    async def _sasl_authenticate(self, connection: _Connection, request: Request,
                                 body: dict[str, Any]) -> dict[str, Any]:
        if not connection.handshake_done or connection.authenticated:
            raise _Close("SaslAuthenticate without a SaslHandshake", encode_response(request, {
                "error_code": ErrorCode.ILLEGAL_SASL_STATE, "error_message": "send SaslHandshake (PLAIN) first",
                "auth_bytes": b""}))
        parts = (body["auth_bytes"] or b"").split(b"\x00")
        user, password = (parts[1], parts[2]) if len(parts) == 3 else (b"", b"")
        scope: str | None
        if user.decode("utf-8", "replace") != CONNECTION_STRING_USER:
            scope, why = None, (f"the SASL PLAIN user must be {CONNECTION_STRING_USER} with the event hub's "
                                "connection string as password")
        else:
            scope, why = check_connection_string(password.decode("utf-8", "replace"), self.key_name, self._key,
                                                 self.authority, self.store)
        if scope is None:
            message = f"Authentication failed: {why}"
            raise _Close(f"SASL authentication failed: {why}", encode_response(request, {
                "error_code": ErrorCode.SASL_AUTHENTICATION_FAILED, "error_message": message, "auth_bytes": b""}))
        connection.authenticated = True
        connection.scope = scope
        return {"error_code": ErrorCode.NONE, "error_message": None, "auth_bytes": b"", "session_lifetime_ms": 0}

    # -- topics ------------------------------------------------------------------------------------------------
    def _hub(self, connection: _Connection, name: str) -> tuple[EventHub | None, int]:
        hub = self.store.get(name) if name else None
        if hub is None:
            return None, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        if connection.scope and hub.name.lower() != connection.scope:
            return None, ErrorCode.TOPIC_AUTHORIZATION_FAILED
        return hub, ErrorCode.NONE

    async def _metadata(self, connection: _Connection, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        requested = body["topics"]
        if requested is None:  # all topics (the ones these credentials may see)
            names = [h.name for h in self.store.hubs if not connection.scope or h.name.lower() == connection.scope]
        else:
            names = [t["name"] for t in requested]
        topics = []
        for name in names:
            hub, error = self._hub(connection, name)
            partitions = [] if hub is None else [
                {"error_code": 0, "partition": int(p.partition_id), "leader_id": NODE_ID, "leader_epoch": 0,
                 "replica_nodes": [NODE_ID], "isr_nodes": [NODE_ID], "offline_replicas": []}
                for p in hub.partitions]
            topics.append({"error_code": error, "name": name, "is_internal": False, "partitions": partitions,
                           "topic_authorized_operations": -2147483648})
        return {"brokers": [{"node_id": NODE_ID, "host": self.advertised_host, "port": self.port, "rack": None}],
                "cluster_id": CLUSTER_ID, "controller_id": NODE_ID, "topics": topics,
                "cluster_authorized_operations": -2147483648}

    @staticmethod
    def _partition(hub: EventHub, index: int) -> PartitionLog | None:
        return hub.partition(str(index))

    # -- produce -------------------------------------------------------------------------------------------------
    async def _produce(self, connection: _Connection, request: Request, body: dict[str, Any]) -> dict[str, Any] | None:
        if body["transactional_id"] is not None:
            error = {"error_code": ErrorCode.INVALID_REQUEST, "base_offset": -1, "log_append_time_ms": -1,
                     "error_message": "Kafka transactions are not supported"}
            topics = [{"name": t["name"], "partitions": [{"index": p["index"], **error} for p in t["partitions"]]}
                      for t in body["topics"]]
            return None if body["acks"] == 0 else {"topics": topics}
        results = []
        written: list[PartitionLog] = []
        for topic in body["topics"]:
            hub, topic_error = self._hub(connection, topic["name"])
            partitions = []
            for entry in topic["partitions"]:
                result = {"index": entry["index"], "error_code": topic_error, "base_offset": -1,
                          "log_append_time_ms": -1, "log_start_offset": -1, "error_message": None}
                partition = None if hub is None else self._partition(hub, entry["index"])
                if hub is not None and partition is None:
                    result["error_code"] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                if partition is not None:
                    try:
                        base, when = self._append(partition, entry["records"] or b"")
                    except BatchError as exc:
                        result.update(error_code=exc.code, error_message=str(exc))
                        _LOGGER.info("produce to %s/%s refused: %s", topic["name"], entry["index"], exc)
                    else:
                        result.update(base_offset=base, log_append_time_ms=when,
                                      log_start_offset=partition.first_sequence)
                        written.append(partition)
                partitions.append(result)
            results.append({"name": topic["name"], "partitions": partitions})
        if body["acks"] == 0:
            return None
        for partition in written:
            if partition.persistent:
                try:
                    await partition.flush()
                except OSError as exc:
                    _LOGGER.error("could not persist events of partition %s/%s: %s", partition.hub_name,
                                  partition.partition_id, exc)
                    raise _Close("the events could not be persisted", level=logging.ERROR) from None
        return {"topics": results}

    def _append(self, partition: PartitionLog, records: bytes) -> tuple[int, int]:
        """Store the batches of one partition's record set: (first offset, log-append time)."""
        batches = decode_record_batches(records, self.max_message_size)
        base: int | None = None
        when = -1
        for batch in batches:
            idempotent = batch.producer_id >= 0
            if idempotent:
                previous = self.producers.check(partition, batch.producer_id, batch.producer_epoch,
                                                batch.base_sequence, batch.last_sequence)
                if previous is not None:  # a re-send of a stored batch: answer with where it went
                    base = previous if base is None else base
                    continue
            if not batch.records:
                continue
            first = partition.next_sequence
            partition.append([kafka_to_amqp(r) for r in batch.records], None)
            for i, record in enumerate(batch.records):
                try:
                    event = partition.event(first + i)
                except IndexError:  # dropped at once by the memory budget
                    continue
                tail = record.tail if record.tail is not None else \
                    encode_record_tail(record.key, record.value, record.headers)
                partition.cache_kafka_tail(event, tail)
                when = event.enqueued_time
            if idempotent:
                self.producers.record(partition, batch.producer_id, batch.producer_epoch, batch.base_sequence,
                                      batch.last_sequence, first)
            base = first if base is None else base
        return (partition.next_sequence if base is None else base), when

    async def _init_producer_id(self, connection: _Connection, request: Request,
                                body: dict[str, Any]) -> dict[str, Any]:
        if body["transactional_id"] is not None:
            return {"error_code": ErrorCode.INVALID_REQUEST, "producer_id": -1, "producer_epoch": -1}
        producer_id, epoch = body.get("producer_id", -1), body.get("producer_epoch", -1)
        if producer_id >= 0 and epoch >= 0:  # KIP-360: the same producer bumps its epoch
            return {"error_code": ErrorCode.NONE, "producer_id": producer_id, "producer_epoch": (epoch + 1) & 0x7FFF}
        return {"error_code": ErrorCode.NONE, "producer_id": self.producers.new_id(), "producer_epoch": 0}

    # -- fetch and offsets ---------------------------------------------------------------------------------------
    def _tail(self, partition: PartitionLog, sequence: int) -> tuple[int, bytes]:
        event = partition.event(sequence)
        tail = event.kafka_tail
        if tail is None:
            try:
                tail = amqp_to_kafka(event.message)
            except Exception as exc:  # noqa: BLE001 - an odd AMQP message still reaches Kafka consumers
                _LOGGER.warning("event %d of %s/%s cannot be shown to Kafka as it is (%s): sending its raw AMQP "
                                "message as the value", sequence, partition.hub_name, partition.partition_id, exc)
                tail = encode_record_tail(None, event.message, [])
            partition.cache_kafka_tail(event, tail)
        return event.enqueued_time, tail

    def _read_partition(self, partition: PartitionLog, offset: int, budget: int, first: bool) -> bytes:
        end = partition.visible_end
        batches: list[bytes] = []
        used = 0
        sequence = offset
        while sequence < end:
            start = sequence
            when, tail = self._tail(partition, sequence)
            tails = [tail]
            size = 70 + len(tail)
            if used + size > budget and not (first and not batches):
                break
            sequence += 1
            while sequence < end and len(tails) < MAX_BATCH_RECORDS:
                next_when, next_tail = self._tail(partition, sequence)
                if next_when != when or used + size + len(next_tail) + 8 > budget:
                    break
                tails.append(next_tail)
                size += len(next_tail) + 8
                sequence += 1
            batches.append(encode_fetch_batch(start, when, tails))
            used += size
            if used >= budget:
                break
        return b"".join(batches)

    async def _fetch(self, connection: _Connection, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        deadline = time.monotonic() + max(0, body["max_wait_ms"]) / 1000
        min_bytes = max(1, body["min_bytes"])
        while True:
            topics, total, wake = self._fetch_once(connection, body)
            remaining = deadline - time.monotonic()
            if total >= min_bytes or remaining <= 0 or not wake:
                return {"throttle_time_ms": 0, "error_code": 0, "session_id": 0, "topics": topics}
            event = asyncio.Event()
            for partition in wake:
                partition.add_listener(event.set)
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except asyncio.TimeoutError:
                pass
            finally:
                for partition in wake:
                    partition.remove_listener(event.set)

    def _fetch_once(self, connection: _Connection, body: dict[str, Any]) -> tuple[list, int, list[PartitionLog]]:
        budget = min(MAX_FETCH_BYTES, body.get("max_bytes", MAX_FETCH_BYTES) or MAX_FETCH_BYTES)
        total = 0
        topics = []
        wake: list[PartitionLog] = []
        errors = False
        for topic in body["topics"]:
            hub, topic_error = self._hub(connection, topic["name"])
            partitions = []
            for entry in topic["partitions"]:
                result = {"partition": entry["partition"], "error_code": topic_error, "high_watermark": -1,
                          "last_stable_offset": -1, "log_start_offset": -1, "aborted_transactions": None,
                          "preferred_read_replica": -1, "records": None}
                partition = None if hub is None else self._partition(hub, entry["partition"])
                if hub is not None and partition is None:
                    result["error_code"] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                if partition is not None:
                    offset = entry["fetch_offset"]
                    high = partition.visible_end
                    result.update(high_watermark=high, last_stable_offset=high,
                                  log_start_offset=partition.first_sequence)
                    if not partition.first_sequence <= offset <= high:
                        result["error_code"] = ErrorCode.OFFSET_OUT_OF_RANGE
                    else:
                        limit = min(budget - total, max(1, entry["partition_max_bytes"]))
                        records = self._read_partition(partition, offset, limit, first=total == 0) \
                            if limit > 0 else b""
                        result["records"] = records
                        total += len(records)
                        wake.append(partition)
                if result["error_code"]:
                    errors = True
                partitions.append(result)
            topics.append({"name": topic["name"], "partitions": partitions})
        return topics, total, [] if errors else wake

    async def _list_offsets(self, connection: _Connection, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        topics = []
        for topic in body["topics"]:
            hub, topic_error = self._hub(connection, topic["name"])
            partitions = []
            for entry in topic["partitions"]:
                result = {"partition": entry["partition"], "error_code": topic_error, "timestamp": -1,
                          "offset": -1, "leader_epoch": -1}
                partition = None if hub is None else self._partition(hub, entry["partition"])
                if hub is not None and partition is None:
                    result["error_code"] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                if partition is not None:
                    result["leader_epoch"] = 0
                    timestamp = entry["timestamp"]
                    if timestamp == -1:
                        result["offset"] = partition.visible_end
                    elif timestamp == -2:
                        result["offset"] = partition.first_sequence
                    elif timestamp >= 0:
                        sequence = partition.sequence_after_time(timestamp, inclusive=True)
                        if sequence < partition.visible_end:
                            result.update(offset=sequence, timestamp=partition.event(sequence).enqueued_time)
                    else:
                        result["error_code"] = ErrorCode.INVALID_REQUEST
                partitions.append(result)
            topics.append({"name": topic["name"], "partitions": partitions})
        return {"throttle_time_ms": 0, "topics": topics}

    # -- consumer groups ---------------------------------------------------------------------------------------
    async def _find_coordinator(self, connection: _Connection, request: Request,
                                body: dict[str, Any]) -> dict[str, Any]:
        if body.get("key_type", 0) != 0:
            return {"error_code": ErrorCode.COORDINATOR_NOT_AVAILABLE,
                    "error_message": "transactions are not supported", "node_id": -1, "host": "", "port": -1}
        return {"error_code": ErrorCode.NONE, "error_message": None, "node_id": NODE_ID,
                "host": self.advertised_host, "port": self.port}

    async def _join_group(self, connection: _Connection, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        group_id = body["group_id"]
        failed = {"generation_id": -1, "protocol_type": None, "protocol_name": None, "leader": "",
                  "member_id": body["member_id"], "members": []}
        if not group_id:
            return {"error_code": ErrorCode.INVALID_GROUP_ID, **failed}
        session = body["session_timeout_ms"]
        if not MIN_SESSION_TIMEOUT_MS <= session <= MAX_SESSION_TIMEOUT_MS:
            return {"error_code": ErrorCode.INVALID_SESSION_TIMEOUT, **failed}
        group = self.groups.setdefault(group_id, _Group(group_id))
        protocols = [(p["name"], p["metadata"] or b"") for p in body["protocols"]]
        if not protocols or (group.members and (
                group.protocol_type != body["protocol_type"] or not group.common_protocols(protocols))):
            return {"error_code": ErrorCode.INCONSISTENT_GROUP_PROTOCOL, **failed}
        member_id = body["member_id"]
        if member_id and member_id not in group.members:
            return {"error_code": ErrorCode.UNKNOWN_MEMBER_ID, **failed}
        rebalance = body.get("rebalance_timeout_ms", session)
        if not member_id:
            member_id = f"{request.client_id or 'consumer'}-{uuid.uuid4()}"
            group.members[member_id] = _Member(member_id, request.client_id or "", session / 1000,
                                               rebalance / 1000, protocols)
        member = group.members[member_id]
        member.protocols, member.session_timeout, member.rebalance_timeout = protocols, session / 1000, \
            rebalance / 1000
        member.last_seen = time.monotonic()
        group.protocol_type = body["protocol_type"]
        future = asyncio.get_running_loop().create_future()
        if member.join is not None and not member.join.done():
            member.join.set_result({"error_code": ErrorCode.UNKNOWN_MEMBER_ID, **failed})
        member.join = future
        group.begin_rebalance()
        group.try_complete_join()
        response = await future
        return {**failed, **response}

    async def _sync_group(self, connection: _Connection, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        group = self.groups.get(body["group_id"])
        out: dict[str, Any] = {"protocol_type": None, "protocol_name": None, "assignment": b""}
        member = None if group is None else group.members.get(body["member_id"])
        if group is None or member is None:
            return {"error_code": ErrorCode.UNKNOWN_MEMBER_ID, **out}
        if body["generation_id"] != group.generation:
            return {"error_code": ErrorCode.ILLEGAL_GENERATION, **out}
        if group.state == "PreparingRebalance":
            return {"error_code": ErrorCode.REBALANCE_IN_PROGRESS, **out}
        out.update(protocol_type=group.protocol_type, protocol_name=group.protocol)
        member.last_seen = time.monotonic()
        if group.state == "Stable":
            return {"error_code": ErrorCode.NONE, **out, "assignment": member.assignment}
        if member.member_id == group.leader:
            assignments = {a["member_id"]: a["assignment"] or b"" for a in body["assignments"]}
            for other in group.members.values():
                other.assignment = assignments.get(other.member_id, b"")
                if other.sync is not None and not other.sync.done():
                    other.sync.set_result((ErrorCode.NONE, other.assignment))
                other.sync = None
            group.state = "Stable"
            return {"error_code": ErrorCode.NONE, **out, "assignment": member.assignment}
        future = asyncio.get_running_loop().create_future()
        member.sync = future
        error, assignment = await future
        return {"error_code": error, **out, "assignment": assignment}

    async def _heartbeat(self, connection: _Connection, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        group = self.groups.get(body["group_id"])
        member = None if group is None else group.members.get(body["member_id"])
        if group is None or member is None:
            return {"error_code": ErrorCode.UNKNOWN_MEMBER_ID}
        member.last_seen = time.monotonic()
        if group.state == "PreparingRebalance":
            return {"error_code": ErrorCode.REBALANCE_IN_PROGRESS}
        if body["generation_id"] != group.generation:
            return {"error_code": ErrorCode.ILLEGAL_GENERATION}
        return {"error_code": ErrorCode.NONE}

    async def _leave_group(self, connection: _Connection, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        group = self.groups.get(body["group_id"])
        leaving = [m["member_id"] for m in body["members"]] if "members" in body else [body["member_id"]]
        results = []
        for member_id in leaving:
            known = group is not None and member_id in group.members
            if known:
                assert group is not None
                group.remove(member_id)
            results.append({"member_id": member_id, "group_instance_id": None,
                            "error_code": ErrorCode.NONE if known else ErrorCode.UNKNOWN_MEMBER_ID})
        error = ErrorCode.NONE if "members" in body or all(r["error_code"] == 0 for r in results) \
            else ErrorCode.UNKNOWN_MEMBER_ID
        return {"error_code": error, "members": results}

    async def _sweep_groups(self) -> None:
        """Expire members whose session ran out and finish rebalances whose time-out passed (every 0.5 s)."""
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for group in list(self.groups.values()):
                for member in list(group.members.values()):
                    waiting = member.join is not None and group.state == "PreparingRebalance"
                    if not waiting and now - member.last_seen > member.session_timeout:
                        _LOGGER.info("group %s: member %s left (session time-out)", group.group_id, member.member_id)
                        group.remove(member.member_id)
                if group.state == "PreparingRebalance" and now >= group.rebalance_deadline:
                    group.try_complete_join(force=True)

    def _commit_error(self, group: _Group | None, body: dict[str, Any]) -> int:
        generation, member_id = body.get("generation_id", -1), body.get("member_id", "")
        if generation < 0 and not member_id:  # a consumer without a group membership (assign())
            return ErrorCode.NONE if group is None or not group.members else ErrorCode.UNKNOWN_MEMBER_ID
        if group is None or member_id not in group.members:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if group.state in ("PreparingRebalance", "CompletingRebalance"):
            return ErrorCode.REBALANCE_IN_PROGRESS
        if generation != group.generation:
            return ErrorCode.ILLEGAL_GENERATION
        return ErrorCode.NONE

    async def _offset_commit(self, connection: _Connection, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        group_id = body["group_id"]
        error = ErrorCode.INVALID_GROUP_ID if not group_id else self._commit_error(self.groups.get(group_id), body)
        member = None if not group_id else self.groups.get(group_id)
        if member is not None and body.get("member_id") in member.members:
            member.members[body["member_id"]].last_seen = time.monotonic()
        topics = []
        changed = False
        for topic in body["topics"]:
            hub, topic_error = self._hub(connection, topic["name"])
            partitions = []
            for entry in topic["partitions"]:
                code = error or topic_error
                if not code and (hub is None or self._partition(hub, entry["partition"]) is None):
                    code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                if not code:
                    assert hub is not None
                    self.offsets.put(group_id, hub.name, entry["partition"], entry["committed_offset"],
                                     entry["committed_metadata"], entry.get("committed_leader_epoch", -1))
                    changed = True
                partitions.append({"partition": entry["partition"], "error_code": code})
            topics.append({"name": topic["name"], "partitions": partitions})
        if changed and self.offsets.path is not None:
            await asyncio.to_thread(self.offsets.save)
        return {"throttle_time_ms": 0, "topics": topics}

    async def _offset_fetch(self, connection: _Connection, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        group_id = body["group_id"]
        requested = body["topics"]
        if requested is None:  # every partition the group committed
            by_topic: dict[str, list[int]] = {}
            for key in self.offsets.values.get(group_id, {}):
                hub_name, _, index = key.rpartition("/")
                hub = self.store.get(hub_name)
                if hub is not None and (not connection.scope or hub.name.lower() == connection.scope):
                    by_topic.setdefault(hub.name, []).append(int(index))
            requested = [{"name": name, "partitions": sorted(parts)} for name, parts in by_topic.items()]
        topics = []
        for topic in requested:
            hub, topic_error = self._hub(connection, topic["name"])
            partitions = []
            for index in topic["partitions"]:
                committed = None if hub is None else self.offsets.get(group_id, hub.name, index)
                offset, metadata, epoch = committed if committed is not None else (-1, "", -1)
                code = topic_error if topic_error != ErrorCode.UNKNOWN_TOPIC_OR_PARTITION else ErrorCode.NONE
                partitions.append({"partition": index, "committed_offset": offset, "committed_leader_epoch": epoch,
                                   "metadata": metadata, "error_code": code})
            topics.append({"name": topic["name"], "partitions": partitions})
        return {"throttle_time_ms": 0, "topics": topics, "error_code": ErrorCode.NONE}
