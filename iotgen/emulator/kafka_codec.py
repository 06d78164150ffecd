"""The Kafka wire protocol: primitive types, the request/response schemas the emulator serves, record batches v2.

Follows the Kafka protocol guide and the message JSON schemas of Apache Kafka (``clients/src/main/resources/
common/message``): every API is a list of fields with the versions they exist in; versions at or above an API's
first *flexible* version use compact strings/arrays/bytes (unsigned varint length + 1) and end every structure
with tagged fields (read and skipped here, written empty). Only the versions listed in :data:`APIS` are
advertised, and every one of them is encoded here.

Record batches (magic 2): ``base offset i64 | length i32 | leader epoch i32 | magic i8 | CRC-32C u32 | attributes
i16 | last offset delta i32 | first timestamp i64 | max timestamp i64 | producer id i64 | producer epoch i16 |
base sequence i32 | record count i32 | records``; the CRC covers everything from the attributes to the end.
Compression ``none`` and ``gzip`` are read; batches are written uncompressed.
"""

from __future__ import annotations

import builtins
import gzip
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Callable

__all__ = [
    "APIS",
    "CodecError",
    "ErrorCode",
    "KafkaRecord",
    "RecordBatch",
    "Reader",
    "crc32c",
    "decode_record_batches",
    "encode_fetch_batch",
    "encode_response",
    "parse_request",
]


class CodecError(ValueError):
    """A frame that does not follow the protocol: the connection is closed."""


_crc32c_c: Callable[[bytes | memoryview], int] | None
try:  # the C implementation (the ``crc32c`` wheel); a table-driven fallback keeps the emulator dependency-free
    from crc32c import crc32c as _crc32c_c
except ImportError:  # pragma: no cover - exercised by tests through crc32c_python
    _crc32c_c = None


def _make_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _make_table()


def crc32c_python(data: bytes | memoryview) -> int:
    """CRC-32C (Castagnoli) in pure Python: slow (a few MB/s), used only without the ``crc32c`` package."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32c(data: bytes | memoryview) -> int:
    """CRC-32C of ``data`` (the checksum of Kafka record batches)."""
    return _crc32c_c(data) if _crc32c_c is not None else crc32c_python(data)


class ErrorCode:
    NONE = 0
    OFFSET_OUT_OF_RANGE = 1
    CORRUPT_MESSAGE = 2
    UNKNOWN_TOPIC_OR_PARTITION = 3
    MESSAGE_TOO_LARGE = 10
    COORDINATOR_NOT_AVAILABLE = 15
    NOT_COORDINATOR = 16
    ILLEGAL_GENERATION = 22
    INCONSISTENT_GROUP_PROTOCOL = 23
    INVALID_GROUP_ID = 24
    UNKNOWN_MEMBER_ID = 25
    INVALID_SESSION_TIMEOUT = 26
    REBALANCE_IN_PROGRESS = 27
    TOPIC_AUTHORIZATION_FAILED = 29
    UNSUPPORTED_SASL_MECHANISM = 33
    ILLEGAL_SASL_STATE = 34
    UNSUPPORTED_VERSION = 35
    INVALID_REQUEST = 42
    UNSUPPORTED_FOR_MESSAGE_FORMAT = 43
    OUT_OF_ORDER_SEQUENCE_NUMBER = 45
    INVALID_PRODUCER_EPOCH = 47
    SASL_AUTHENTICATION_FAILED = 58
    UNSUPPORTED_COMPRESSION_TYPE = 76
    INVALID_RECORD = 87


# ---- primitive types --------------------------------------------------------------------------------------------
_I8, _I16, _I32, _I64 = struct.Struct(">b"), struct.Struct(">h"), struct.Struct(">i"), struct.Struct(">q")
_U32 = struct.Struct(">I")


class Reader:
    """Reads Kafka primitive types from a buffer; a short or malformed buffer raises :class:`CodecError`."""

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: bytes | memoryview, pos: int = 0, end: int | None = None) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else end

    def _take(self, n: int) -> int:
        start = self.pos
        if n < 0 or start + n > self.end:
            raise CodecError("truncated frame")
        self.pos = start + n
        return start

    def int8(self) -> int:
        return _I8.unpack_from(self.buf, self._take(1))[0]

    def int16(self) -> int:
        return _I16.unpack_from(self.buf, self._take(2))[0]

    def int32(self) -> int:
        return _I32.unpack_from(self.buf, self._take(4))[0]

    def uint32(self) -> int:
        return _U32.unpack_from(self.buf, self._take(4))[0]

    def int64(self) -> int:
        return _I64.unpack_from(self.buf, self._take(8))[0]

    def bool(self) -> bool:
        return self.int8() != 0

    def uvarint(self) -> int:
        value = shift = 0
        while True:
            byte = self.buf[self._take(1)]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise CodecError("varint too long")

    def varint(self) -> int:
        raw = self.uvarint()
        return (raw >> 1) ^ -(raw & 1)

    def raw(self, n: int) -> bytes:
        start = self._take(n)
        return bytes(self.buf[start:start + n])

    def uuid(self) -> bytes:
        return self.raw(16)

    # ``bool`` and ``bytes`` name methods of this class from here on: annotations say ``builtins.``
    def string(self, compact: builtins.bool) -> str | None:
        n = self.uvarint() - 1 if compact else self.int16()
        if n < 0:
            return None
        try:
            return self.raw(n).decode("utf-8")
        except UnicodeDecodeError:
            raise CodecError("string is not UTF-8") from None

    def bytes(self, compact: builtins.bool) -> builtins.bytes | None:
        n = self.uvarint() - 1 if compact else self.int32()
        return None if n < 0 else self.raw(n)

    def array_length(self, compact: builtins.bool) -> int:
        n = self.uvarint() - 1 if compact else self.int32()
        if n > self.end - self.pos:  # every element takes at least a byte: a bogus length is caught here
            raise CodecError("array longer than the frame")
        return n

    def skip_tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self._take(self.uvarint())

    @property
    def remaining(self) -> int:
        return self.end - self.pos


def uvarint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL_VARINTS = [uvarint((n << 1) ^ (n >> 63)) for n in range(-64, 64)]


def varint(value: int) -> bytes:
    """Zig-zag varint (Kafka's signed varint and varlong)."""
    if -64 <= value < 64:
        return _SMALL_VARINTS[value + 64]
    return uvarint((value << 1) ^ (value >> 63))


def _write_string(out: bytearray, value: str | None, compact: bool) -> None:
    if value is None:
        out += b"\x00" if compact else b"\xff\xff"
        return
    raw = value.encode("utf-8")
    out += uvarint(len(raw) + 1) if compact else _I16.pack(len(raw))
    out += raw


def _write_bytes(out: bytearray, value: bytes | None, compact: bool) -> None:
    if value is None:
        out += b"\x00" if compact else b"\xff\xff\xff\xff"
        return
    out += uvarint(len(value) + 1) if compact else _I32.pack(len(value))
    out += value


def _write_length(out: bytearray, n: int | None, compact: bool) -> None:
    if n is None:
        out += b"\x00" if compact else b"\xff\xff\xff\xff"
    else:
        out += uvarint(n + 1) if compact else _I32.pack(n)


# ---- schemas ------------------------------------------------------------------------------------------------------
# A schema is a tuple of fields (name, kind, first version, last version). kind is a primitive name, a tuple
# schema (an array of structures) or "[]int32" / "[]string" (arrays of primitives).
_ALL = 99


def f(name: str, kind: Any, lo: int = 0, hi: int = _ALL) -> tuple[str, Any, int, int]:
    return (name, kind, lo, hi)


_PRIMITIVE_DEFAULTS = {"int8": 0, "int16": 0, "int32": 0, "int64": 0, "bool": False, "string": "",
                       "bytes": b"", "uuid": bytes(16), "records": None}


def _read_value(reader: Reader, kind: Any, version: int, flexible: bool) -> Any:
    if isinstance(kind, tuple):
        n = reader.array_length(flexible)
        return None if n < 0 else [_read_struct(reader, kind, version, flexible) for _ in range(n)]
    if kind == "int32":
        return reader.int32()
    if kind == "string":
        return reader.string(flexible)
    if kind == "int16":
        return reader.int16()
    if kind == "int64":
        return reader.int64()
    if kind == "int8":
        return reader.int8()
    if kind == "bool":
        return reader.bool()
    if kind in ("bytes", "records"):
        return reader.bytes(flexible)
    if kind == "uuid":
        return reader.uuid()
    if kind in ("[]int32", "[]string"):
        n = reader.array_length(flexible)
        if n < 0:
            return None
        item = reader.int32 if kind == "[]int32" else (lambda: reader.string(flexible))
        return [item() for _ in range(n)]
    raise AssertionError(f"unknown field kind {kind!r}")


def _read_struct(reader: Reader, schema: tuple, version: int, flexible: bool) -> dict[str, Any]:
    out = {}
    for name, kind, lo, hi in schema:
        if lo <= version <= hi:
            out[name] = _read_value(reader, kind, version, flexible)
    if flexible:
        reader.skip_tags()
    return out


def _write_value(out: bytearray, kind: Any, value: Any, version: int, flexible: bool) -> None:
    if isinstance(kind, tuple):
        _write_length(out, None if value is None else len(value), flexible)
        for item in value or ():
            _write_struct(out, kind, item, version, flexible)
    elif kind == "int32":
        out += _I32.pack(value)
    elif kind == "int16":
        out += _I16.pack(value)
    elif kind == "int64":
        out += _I64.pack(value)
    elif kind == "string":
        _write_string(out, value, flexible)
    elif kind in ("bytes", "records"):
        _write_bytes(out, value, flexible)
    elif kind == "int8":
        out += _I8.pack(value)
    elif kind == "bool":
        out.append(1 if value else 0)
    elif kind == "uuid":
        out += value
    elif kind in ("[]int32", "[]string"):
        _write_length(out, None if value is None else len(value), flexible)
        for item in value or ():
            if kind == "[]int32":
                out += _I32.pack(item)
            else:
                _write_string(out, item, flexible)
    else:
        raise AssertionError(f"unknown field kind {kind!r}")


def _write_struct(out: bytearray, schema: tuple, data: dict[str, Any], version: int, flexible: bool) -> None:
    for name, kind, lo, hi in schema:
        if lo <= version <= hi:
            value = data.get(name, _PRIMITIVE_DEFAULTS.get(kind) if isinstance(kind, str) and not
                             kind.startswith("[]") else [])
            _write_value(out, kind, value, version, flexible)
    if flexible:
        out += b"\x00"


@dataclass(frozen=True)
class Api:
    key: int
    name: str
    min_version: int
    max_version: int
    flexible_from: int  # first flexible version (99: none of the advertised ones)
    request: tuple
    response: tuple


_THROTTLE = f("throttle_time_ms", "int32")

PRODUCE = Api(0, "Produce", 3, 8, 9, (
    f("transactional_id", "string", 3), f("acks", "int16"), f("timeout_ms", "int32"),
    f("topics", (f("name", "string"), f("partitions", (f("index", "int32"), f("records", "records"))))),
), (
    f("topics", (f("name", "string"), f("partitions", (
        f("index", "int32"), f("error_code", "int16"), f("base_offset", "int64"),
        f("log_append_time_ms", "int64", 2), f("log_start_offset", "int64", 5),
        f("record_errors", (f("batch_index", "int32"), f("message", "string")), 8),
        f("error_message", "string", 8))))),
    f("throttle_time_ms", "int32", 1),
))

FETCH = Api(1, "Fetch", 4, 11, 12, (
    f("replica_id", "int32"), f("max_wait_ms", "int32"), f("min_bytes", "int32"), f("max_bytes", "int32", 3),
    f("isolation_level", "int8", 4), f("session_id", "int32", 7), f("session_epoch", "int32", 7),
    f("topics", (f("name", "string"), f("partitions", (
        f("partition", "int32"), f("current_leader_epoch", "int32", 9), f("fetch_offset", "int64"),
        f("log_start_offset", "int64", 5), f("partition_max_bytes", "int32"))))),
    f("forgotten", (f("name", "string"), f("partitions", "[]int32")), 7),
    f("rack_id", "string", 11),
), (
    f("throttle_time_ms", "int32", 1), f("error_code", "int16", 7), f("session_id", "int32", 7),
    f("topics", (f("name", "string"), f("partitions", (
        f("partition", "int32"), f("error_code", "int16"), f("high_watermark", "int64"),
        f("last_stable_offset", "int64", 4), f("log_start_offset", "int64", 5),
        f("aborted_transactions", (f("producer_id", "int64"), f("first_offset", "int64")), 4),
        f("preferred_read_replica", "int32", 11), f("records", "records"))))),
))

LIST_OFFSETS = Api(2, "ListOffsets", 1, 5, 6, (
    f("replica_id", "int32"), f("isolation_level", "int8", 2),
    f("topics", (f("name", "string"), f("partitions", (
        f("partition", "int32"), f("current_leader_epoch", "int32", 4), f("timestamp", "int64"))))),
), (
    f("throttle_time_ms", "int32", 2),
    f("topics", (f("name", "string"), f("partitions", (
        f("partition", "int32"), f("error_code", "int16"), f("timestamp", "int64", 1), f("offset", "int64", 1),
        f("leader_epoch", "int32", 4))))),
))

METADATA = Api(3, "Metadata", 1, 9, 9, (
    f("topics", (f("name", "string"),)), f("allow_auto_topic_creation", "bool", 4),
    f("include_cluster_authorized_operations", "bool", 8), f("include_topic_authorized_operations", "bool", 8),
), (
    f("throttle_time_ms", "int32", 3),
    f("brokers", (f("node_id", "int32"), f("host", "string"), f("port", "int32"), f("rack", "string", 1))),
    f("cluster_id", "string", 2), f("controller_id", "int32", 1),
    f("topics", (f("error_code", "int16"), f("name", "string"), f("is_internal", "bool", 1), f("partitions", (
        f("error_code", "int16"), f("partition", "int32"), f("leader_id", "int32"), f("leader_epoch", "int32", 7),
        f("replica_nodes", "[]int32"), f("isr_nodes", "[]int32"), f("offline_replicas", "[]int32", 5))),
        f("topic_authorized_operations", "int32", 8))),
    f("cluster_authorized_operations", "int32", 8),
))

OFFSET_COMMIT = Api(8, "OffsetCommit", 2, 8, 8, (
    f("group_id", "string"), f("generation_id", "int32", 1), f("member_id", "string", 1),
    f("group_instance_id", "string", 7), f("retention_time_ms", "int64", 2, 4),
    f("topics", (f("name", "string"), f("partitions", (
        f("partition", "int32"), f("committed_offset", "int64"), f("committed_leader_epoch", "int32", 6),
        f("committed_metadata", "string"))))),
), (
    f("throttle_time_ms", "int32", 3),
    f("topics", (f("name", "string"), f("partitions", (f("partition", "int32"), f("error_code", "int16"))))),
))

OFFSET_FETCH = Api(9, "OffsetFetch", 1, 7, 6, (
    f("group_id", "string"), f("topics", (f("name", "string"), f("partitions", "[]int32"))),
    f("require_stable", "bool", 7),
), (
    f("throttle_time_ms", "int32", 3),
    f("topics", (f("name", "string"), f("partitions", (
        f("partition", "int32"), f("committed_offset", "int64"), f("committed_leader_epoch", "int32", 5),
        f("metadata", "string"), f("error_code", "int16"))))),
    f("error_code", "int16", 2),
))

FIND_COORDINATOR = Api(10, "FindCoordinator", 0, 3, 3, (
    f("key", "string"), f("key_type", "int8", 1),
), (
    f("throttle_time_ms", "int32", 1), f("error_code", "int16"), f("error_message", "string", 1),
    f("node_id", "int32"), f("host", "string"), f("port", "int32"),
))

JOIN_GROUP = Api(11, "JoinGroup", 0, 7, 6, (
    f("group_id", "string"), f("session_timeout_ms", "int32"), f("rebalance_timeout_ms", "int32", 1),
    f("member_id", "string"), f("group_instance_id", "string", 5), f("protocol_type", "string"),
    f("protocols", (f("name", "string"), f("metadata", "bytes"))),
), (
    f("throttle_time_ms", "int32", 2), f("error_code", "int16"), f("generation_id", "int32"),
    f("protocol_type", "string", 7), f("protocol_name", "string"), f("leader", "string"),
    f("member_id", "string"),
    f("members", (f("member_id", "string"), f("group_instance_id", "string", 5), f("metadata", "bytes"))),
))

HEARTBEAT = Api(12, "Heartbeat", 0, 4, 4, (
    f("group_id", "string"), f("generation_id", "int32"), f("member_id", "string"),
    f("group_instance_id", "string", 3),
), (
    f("throttle_time_ms", "int32", 1), f("error_code", "int16"),
))

LEAVE_GROUP = Api(13, "LeaveGroup", 0, 4, 4, (
    f("group_id", "string"), f("member_id", "string", 0, 2),
    f("members", (f("member_id", "string"), f("group_instance_id", "string")), 3),
), (
    f("throttle_time_ms", "int32", 1), f("error_code", "int16"),
    f("members", (f("member_id", "string"), f("group_instance_id", "string"), f("error_code", "int16")), 3),
))

SYNC_GROUP = Api(14, "SyncGroup", 0, 5, 4, (
    f("group_id", "string"), f("generation_id", "int32"), f("member_id", "string"),
    f("group_instance_id", "string", 3), f("protocol_type", "string", 5), f("protocol_name", "string", 5),
    f("assignments", (f("member_id", "string"), f("assignment", "bytes"))),
), (
    f("throttle_time_ms", "int32", 1), f("error_code", "int16"), f("protocol_type", "string", 5),
    f("protocol_name", "string", 5), f("assignment", "bytes"),
))

SASL_HANDSHAKE = Api(17, "SaslHandshake", 1, 1, _ALL, (
    f("mechanism", "string"),
), (
    f("error_code", "int16"), f("mechanisms", "[]string"),
))

API_VERSIONS = Api(18, "ApiVersions", 0, 3, 3, (
    f("client_software_name", "string", 3), f("client_software_version", "string", 3),
), (
    f("error_code", "int16"),
    f("api_keys", (f("api_key", "int16"), f("min_version", "int16"), f("max_version", "int16"))),
    f("throttle_time_ms", "int32", 1),
))

INIT_PRODUCER_ID = Api(22, "InitProducerId", 0, 4, 2, (
    f("transactional_id", "string"), f("transaction_timeout_ms", "int32"), f("producer_id", "int64", 3),
    f("producer_epoch", "int16", 3),
), (
    f("throttle_time_ms", "int32"), f("error_code", "int16"), f("producer_id", "int64"),
    f("producer_epoch", "int16"),
))

SASL_AUTHENTICATE = Api(36, "SaslAuthenticate", 0, 2, 2, (
    f("auth_bytes", "bytes"),
), (
    f("error_code", "int16"), f("error_message", "string"), f("auth_bytes", "bytes"),
    f("session_lifetime_ms", "int64", 1),
))

#: Every API the emulator serves, by key, with the versions it advertises.
APIS: dict[int, Api] = {api.key: api for api in (
    PRODUCE, FETCH, LIST_OFFSETS, METADATA, OFFSET_COMMIT, OFFSET_FETCH, FIND_COORDINATOR, JOIN_GROUP, HEARTBEAT,
    LEAVE_GROUP, SYNC_GROUP, SASL_HANDSHAKE, API_VERSIONS, INIT_PRODUCER_ID, SASL_AUTHENTICATE)}


@dataclass
class Request:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body: dict[str, Any] | None  # None: an API or version not served (only the header was read)

    @property
    def api(self) -> Api | None:
        return APIS.get(self.api_key)


def parse_request(frame: bytes | memoryview) -> Request:
    """Read a request frame (without its 4-byte size). An unknown API or version yields ``body=None``."""
    reader = Reader(frame)
    api_key, api_version, correlation_id = reader.int16(), reader.int16(), reader.int32()
    client_id = reader.string(False)
    api = APIS.get(api_key)
    if api is None or not api.min_version <= api_version <= api.max_version:
        return Request(api_key, api_version, correlation_id, client_id, None)
    flexible = api_version >= api.flexible_from
    if flexible:
        reader.skip_tags()
    body = _read_struct(reader, api.request, api_version, flexible)
    return Request(api_key, api_version, correlation_id, client_id, body)


def encode_response(request: Request, body: dict[str, Any], version: int | None = None) -> bytes:
    """The size-prefixed response frame to ``request`` (ApiVersions keeps the v0 response header)."""
    api = APIS[request.api_key]
    version = request.api_version if version is None else version
    flexible = version >= api.flexible_from
    out = bytearray(b"\x00\x00\x00\x00")
    out += _I32.pack(request.correlation_id)
    if flexible and api.key != API_VERSIONS.key:
        out += b"\x00"
    _write_struct(out, api.response, body, version, flexible)
    _I32.pack_into(out, 0, len(out) - 4)
    return bytes(out)


def encode_request(api: Api, version: int, correlation_id: int, client_id: str | None,
                   body: dict[str, Any]) -> bytes:
    """A size-prefixed request frame (what a client sends; used by tests)."""
    flexible = version >= api.flexible_from
    out = bytearray(b"\x00\x00\x00\x00")
    out += _I16.pack(api.key) + _I16.pack(version) + _I32.pack(correlation_id)
    _write_string(out, client_id, False)
    if flexible:
        out += b"\x00"
    _write_struct(out, api.request, body, version, flexible)
    _I32.pack_into(out, 0, len(out) - 4)
    return bytes(out)


def decode_response(api: Api, version: int, frame: bytes) -> tuple[int, dict[str, Any]]:
    """(correlation id, body) of a response frame without its size (used by tests)."""
    reader = Reader(frame)
    correlation_id = reader.int32()
    flexible = version >= api.flexible_from
    if flexible and api.key != API_VERSIONS.key:
        reader.skip_tags()
    return correlation_id, _read_struct(reader, api.response, version, flexible)


# ---- record batches ----------------------------------------------------------------------------------------------
COMPRESSION_NONE, COMPRESSION_GZIP = 0, 1
_COMPRESSION_NAMES = {2: "snappy", 3: "lz4", 4: "zstd"}
TIMESTAMP_LOG_APPEND = 0x08
TRANSACTIONAL = 0x10
CONTROL = 0x20
_BATCH_HEAD = struct.Struct(">qiibIhiqqqhii")  # base offset .. record count
BATCH_OVERHEAD = _BATCH_HEAD.size  # 61
_CRC_START = 21  # the attributes follow the CRC


@dataclass
class KafkaRecord:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    timestamp: int
    #: The record's key, value and headers as they were encoded (set when read from a batch).
    tail: bytes | None = None


@dataclass
class RecordBatch:
    base_offset: int
    attributes: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records: list[KafkaRecord]
    size: int  # bytes on the wire

    @property
    def last_sequence(self) -> int:
        return (self.base_sequence + len(self.records) - 1) & 0x7FFFFFFF


class BatchError(ValueError):
    """A record batch a producer sent that cannot be stored; ``code`` is the Kafka error code to answer."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _decompress(attributes: int, data: bytes, limit: int) -> bytes:
    codec = attributes & 0x07
    if codec == COMPRESSION_NONE:
        return data
    if codec == COMPRESSION_GZIP:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out = inflater.decompress(data, limit + 1)
        except zlib.error as exc:
            raise BatchError(ErrorCode.CORRUPT_MESSAGE, f"gzip data is corrupt: {exc}") from None
        if len(out) > limit:
            raise BatchError(ErrorCode.MESSAGE_TOO_LARGE,
                             f"a gzip batch inflates beyond {limit} bytes")
        return out
    name = _COMPRESSION_NAMES.get(codec, f"codec {codec}")
    raise BatchError(ErrorCode.UNSUPPORTED_COMPRESSION_TYPE,
                     f"{name} compression is not supported (use none or gzip)")


def _read_records(data: bytes, count: int, base_timestamp: int) -> list[KafkaRecord]:
    reader = Reader(data)
    records = []
    for _ in range(count):
        length = reader.varint()
        end = reader.pos + length
        if length < 0 or end > reader.end:
            raise BatchError(ErrorCode.CORRUPT_MESSAGE, "a record is longer than its batch")
        record = Reader(data, reader.pos, end)
        record.int8()  # attributes (unused)
        timestamp = base_timestamp + record.varint()
        record.varint()  # offset delta
        tail_start = record.pos
        key_length = record.varint()
        key = None if key_length < 0 else record.raw(key_length)
        value_length = record.varint()
        value = None if value_length < 0 else record.raw(value_length)
        headers = []
        for _ in range(record.varint()):
            name_length = record.varint()
            if name_length < 0:
                raise BatchError(ErrorCode.CORRUPT_MESSAGE, "a record header has a null key")
            try:
                name = record.raw(name_length).decode("utf-8")
            except UnicodeDecodeError:
                raise BatchError(ErrorCode.CORRUPT_MESSAGE, "a record header key is not UTF-8") from None
            header_length = record.varint()
            headers.append((name, None if header_length < 0 else record.raw(header_length)))
        if record.pos != end:
            raise BatchError(ErrorCode.CORRUPT_MESSAGE, "a record's length does not match its fields")
        records.append(KafkaRecord(key, value, headers, timestamp, bytes(data[tail_start:end])))
        reader.pos = end
    if reader.remaining:
        raise BatchError(ErrorCode.CORRUPT_MESSAGE, "bytes after the last record of a batch")
    return records


def decode_record_batches(data: bytes, max_batch_bytes: int) -> list[RecordBatch]:
    """The batches of a produce request's record set, CRC-checked and decompressed.

    Raises :class:`BatchError` (with the Kafka error code to answer) for a corrupt, oversized, old-format or
    compressed-with-an-unsupported-codec batch, or a transactional or control batch.
    """
    batches = []
    pos = 0
    total = len(data)
    while pos < total:
        if total - pos < BATCH_OVERHEAD:
            raise BatchError(ErrorCode.CORRUPT_MESSAGE, "truncated record batch")
        (base_offset, length, _epoch, magic, crc, attributes, last_delta, first_ts, _max_ts, producer_id,
         producer_epoch, base_sequence, count) = _BATCH_HEAD.unpack_from(data, pos)
        if magic != 2:
            raise BatchError(ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT,
                             f"record batch magic {magic} (only v2 record batches are accepted)")
        end = pos + 12 + length
        if length < BATCH_OVERHEAD - 12 or end > total:
            raise BatchError(ErrorCode.CORRUPT_MESSAGE, "record batch length does not match the data")
        if end - pos > max_batch_bytes:
            raise BatchError(ErrorCode.MESSAGE_TOO_LARGE,
                             f"a record batch of {end - pos} bytes exceeds the limit of {max_batch_bytes} bytes")
        if crc32c(memoryview(data)[pos + _CRC_START:end]) != crc:
            raise BatchError(ErrorCode.CORRUPT_MESSAGE, "record batch CRC-32C mismatch")
        if attributes & (TRANSACTIONAL | CONTROL):
            raise BatchError(ErrorCode.INVALID_RECORD,
                             "transactional and control batches are not supported (no Kafka transactions)")
        if count < 0 or last_delta != count - 1:
            raise BatchError(ErrorCode.CORRUPT_MESSAGE, "record batch count does not match its last offset delta")
        records_data = _decompress(attributes, bytes(data[pos + BATCH_OVERHEAD:end]), 64 * max_batch_bytes)
        batches.append(RecordBatch(base_offset, attributes, producer_id, producer_epoch, base_sequence,
                                   _read_records(records_data, count, first_ts), end - pos))
        pos = end
    return batches


def encode_record_tail(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes | None]]) -> bytes:
    """The part of a record after its offset delta: key, value and headers."""
    parts = [varint(-1) if key is None else varint(len(key)) + key,
             varint(-1) if value is None else varint(len(value)) + value, varint(len(headers))]
    for name, header_value in headers:
        raw = name.encode("utf-8")
        parts.append(varint(len(raw)) + raw)
        parts.append(varint(-1) if header_value is None else varint(len(header_value)) + header_value)
    return b"".join(parts)


def encode_fetch_batch(base_offset: int, timestamp: int, tails: list[bytes]) -> bytes:
    """An uncompressed batch of records whose key/value/headers are ``tails``, at offsets ``base_offset...``,
    with log-append time ``timestamp`` (every record of a batch was enqueued at the same time)."""
    parts = []
    for delta, tail in enumerate(tails):
        body_len = 2 + len(varint(delta)) + len(tail)  # attributes byte, timestamp delta 0, offset delta, tail
        parts.append(b"".join((varint(body_len), b"\x00\x00", varint(delta), tail)))
    records = b"".join(parts)
    n = len(tails)
    head = _BATCH_HEAD.pack(base_offset, BATCH_OVERHEAD - 12 + len(records), 0, 2, 0, TIMESTAMP_LOG_APPEND, n - 1,
                            timestamp, timestamp, -1, -1, -1, n)
    batch = bytearray(head)
    batch += records
    _U32.pack_into(batch, 17, crc32c(memoryview(batch)[_CRC_START:]))
    return bytes(batch)


def encode_produce_batch(records: list[KafkaRecord], *, compression: int = COMPRESSION_NONE, producer_id: int = -1,
                         producer_epoch: int = -1, base_sequence: int = -1) -> bytes:
    """A producer's record batch (create time); used by tests to send exactly the bytes they mean."""
    first = records[0].timestamp if records else 0
    parts = []
    for delta, record in enumerate(records):
        body = b"".join((b"\x00", varint(record.timestamp - first), varint(delta),
                         encode_record_tail(record.key, record.value, record.headers)))
        parts.append(varint(len(body)) + body)
    data = b"".join(parts)
    if compression == COMPRESSION_GZIP:
        data = gzip.compress(data)
    n = len(records)
    head = _BATCH_HEAD.pack(0, BATCH_OVERHEAD - 12 + len(data), -1, 2, 0, compression, n - 1, first,
                            max((r.timestamp for r in records), default=first), producer_id, producer_epoch,
                            base_sequence, n)
    batch = bytearray(head) + data
    _U32.pack_into(batch, 17, crc32c(memoryview(batch)[_CRC_START:]))
    return bytes(batch)
