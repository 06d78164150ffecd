"""AMQP 1.0 type system, frames, performatives and message sections.

A small self-contained codec (OASIS AMQP 1.0, part 1 "Types", part 2 "Transport"
and part 3 "Messaging") used by the Event Hubs emulator.  It deliberately does not
reuse any client library's private codec, so the emulator does not depend on one
SDK version.

Python values map to AMQP types as follows (decoding returns the same classes):

==================  =========================================================
AMQP type           Python value
==================  =========================================================
null                ``None``
boolean             ``bool``
ubyte/ushort/uint   :class:`UByte` / :class:`UShort` / :class:`UInt`
ulong               :class:`ULong`
byte/short/int      :class:`Byte` / :class:`Short` / :class:`Int`
long                :class:`Long` (a plain ``int`` encodes as long)
float / double      :class:`Float` / ``float``
decimal32/64/128    :class:`Decimal32` / :class:`Decimal64` / :class:`Decimal128`
                    (the raw IEEE 754 bytes, kept opaque)
char                :class:`Char`
timestamp           :class:`Timestamp` (milliseconds since the Unix epoch;
                    ``datetime`` values are accepted when encoding)
uuid                ``uuid.UUID``
binary              ``bytes`` (``bytearray``/``memoryview`` accepted)
string              ``str``
symbol              :class:`Symbol`
list                ``list`` (``tuple`` accepted)
map                 ``dict``
array               :class:`Array`
described           :class:`Described`, or one of the composite ``NamedTuple``
                    classes below (performatives, outcomes, sections, ...)
==================  =========================================================
"""

from __future__ import annotations

import datetime as _dt
import struct
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

__all__ = [
    "AMQP_FRAME",
    "AMQP_HEADER",
    "BATCH_MESSAGE_FORMAT",
    "EMPTY_FRAME",
    "SASL_FRAME",
    "SASL_HEADER",
    "Accepted",
    "Array",
    "Attach",
    "Begin",
    "Byte",
    "Char",
    "Close",
    "CodecError",
    "Decimal32",
    "Decimal64",
    "Decimal128",
    "Described",
    "Detach",
    "Disposition",
    "End",
    "Error",
    "Float",
    "Flow",
    "FrameHeader",
    "Header",
    "Int",
    "Long",
    "Message",
    "MessageLayout",
    "Modified",
    "Open",
    "Properties",
    "Received",
    "Rejected",
    "Released",
    "SaslChallenge",
    "SaslInit",
    "SaslMechanisms",
    "SaslOutcome",
    "SaslResponse",
    "Section",
    "Short",
    "Source",
    "Symbol",
    "Target",
    "Timestamp",
    "Transfer",
    "UByte",
    "UInt",
    "ULong",
    "UShort",
    "amqp_value",
    "data_section",
    "decode_frame_body",
    "decode_message",
    "decode_value",
    "encode_frame",
    "encode_message",
    "encode_transfer_frames",
    "encode_value",
    "iter_sections",
    "parse_frame_header",
    "section_at",
    "value_end",
]


class CodecError(ValueError):
    """Raised for malformed or unsupported AMQP encodings."""


# ---------------------------------------------------------------------------
# Typed wrappers for AMQP types that have no unambiguous Python equivalent.
# ---------------------------------------------------------------------------


class _TypedInt(int):
    """Base for fixed-width integer types; the subclass names the AMQP type."""

    __slots__ = ()
    _min = 0
    _max = 0

    def __new__(cls, value: int = 0) -> _TypedInt:
        if not cls._min <= value <= cls._max:
            raise CodecError(f"{cls.__name__} out of range: {value}")
        return super().__new__(cls, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({int(self)})"


class UByte(_TypedInt):
    """AMQP ``ubyte``."""

    __slots__ = ()
    _min, _max = 0, 0xFF


class UShort(_TypedInt):
    """AMQP ``ushort``."""

    __slots__ = ()
    _min, _max = 0, 0xFFFF


class UInt(_TypedInt):
    """AMQP ``uint``."""

    __slots__ = ()
    _min, _max = 0, 0xFFFFFFFF


class ULong(_TypedInt):
    """AMQP ``ulong``."""

    __slots__ = ()
    _min, _max = 0, 0xFFFFFFFFFFFFFFFF


class Byte(_TypedInt):
    """AMQP ``byte`` (signed 8-bit)."""

    __slots__ = ()
    _min, _max = -0x80, 0x7F


class Short(_TypedInt):
    """AMQP ``short``."""

    __slots__ = ()
    _min, _max = -0x8000, 0x7FFF


class Int(_TypedInt):
    """AMQP ``int``."""

    __slots__ = ()
    _min, _max = -0x80000000, 0x7FFFFFFF


class Long(_TypedInt):
    """AMQP ``long``."""

    __slots__ = ()
    _min, _max = -0x8000000000000000, 0x7FFFFFFFFFFFFFFF


class Timestamp(_TypedInt):
    """AMQP ``timestamp``: milliseconds since the Unix epoch (UTC)."""

    __slots__ = ()
    _min, _max = -0x8000000000000000, 0x7FFFFFFFFFFFFFFF

    @classmethod
    def from_datetime(cls, value: _dt.datetime) -> Timestamp:
        """Convert an aware (or naive UTC) datetime to a timestamp."""
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return cls(round(value.timestamp() * 1000))

    def to_datetime(self) -> _dt.datetime:
        """Return the timestamp as an aware UTC datetime."""
        return _dt.datetime.fromtimestamp(int(self) / 1000, tz=_dt.timezone.utc)


class Float(float):
    """AMQP ``float`` (IEEE 754 32-bit); a plain ``float`` encodes as ``double``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Float({float(self)!r})"


class Symbol(str):
    """AMQP ``symbol``: an ASCII string from a constrained domain."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Symbol({str(self)!r})"


class Char(str):
    """AMQP ``char``: a single unicode character (UTF-32BE on the wire)."""

    __slots__ = ()

    def __new__(cls, value: str) -> Char:
        if len(value) != 1:
            raise CodecError("Char must be exactly one character")
        return super().__new__(cls, value)

    def __repr__(self) -> str:
        return f"Char({str(self)!r})"


class _OpaqueDecimal(bytes):
    """Base for the IEEE 754 decimal types, carried as their raw bytes."""

    _width = 0

    def __new__(cls, raw: bytes) -> _OpaqueDecimal:
        if len(raw) != cls._width:
            raise CodecError(f"{cls.__name__} needs exactly {cls._width} bytes")
        return super().__new__(cls, raw)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({bytes(self)!r})"


class Decimal32(_OpaqueDecimal):
    """AMQP ``decimal32`` (raw IEEE 754 decimal32 bytes)."""

    _width = 4


class Decimal64(_OpaqueDecimal):
    """AMQP ``decimal64`` (raw IEEE 754 decimal64 bytes)."""

    _width = 8


class Decimal128(_OpaqueDecimal):
    """AMQP ``decimal128`` (raw IEEE 754 decimal128 bytes)."""

    _width = 16


class Array(list):
    """AMQP ``array``: a homogeneous sequence whose element type is explicit.

    ``element_type`` is one of the classes of the table in the module docstring
    (for example ``Symbol``, ``UInt``, ``str``, ``bytes``, ``list`` or ``dict``).
    """

    def __init__(self, items: Sequence[Any] = (), element_type: type = Symbol) -> None:
        super().__init__(items)
        self.element_type = element_type

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Array) and other.element_type is not self.element_type:
            return False
        return list.__eq__(self, other)

    __hash__ = None

    def __repr__(self) -> str:
        return f"Array({list.__repr__(self)}, element_type={self.element_type.__name__})"


@dataclass(frozen=True)
class Described:
    """A described value whose descriptor is not one of the known composites."""

    descriptor: Any
    value: Any


# ---------------------------------------------------------------------------
# Composite types (performatives, SASL frames, terminus, outcomes, sections).
# ---------------------------------------------------------------------------


class _CompositeSpec(NamedTuple):
    code: int
    name: str
    field_kinds: tuple[str, ...]


_COMPOSITE_SPECS: dict[type, _CompositeSpec] = {}
_COMPOSITES_BY_CODE: dict[int, type] = {}
_COMPOSITES_BY_NAME: dict[str, type] = {}


def _composite(code: int, name: str, *field_kinds: str) -> Callable[[type], type]:
    """Register a NamedTuple as an AMQP composite type.

    ``field_kinds`` gives the AMQP type of each field, used to coerce plain Python
    values on encoding (``"*"`` means "encode as given").
    """

    def register(cls: type) -> type:
        if len(field_kinds) != len(cls._fields):  # type: ignore[attr-defined]
            raise TypeError(f"{cls.__name__}: field kinds do not match fields")
        spec = _CompositeSpec(code, name, field_kinds)
        _COMPOSITE_SPECS[cls] = spec
        _COMPOSITES_BY_CODE[code] = cls
        _COMPOSITES_BY_NAME[name] = cls
        return cls

    return register


@_composite(0x10, "amqp:open:list", "string", "string", "uint", "ushort", "uint",
            "symbols", "symbols", "symbols", "symbols", "fields")
class Open(NamedTuple):
    container_id: str
    hostname: str | None = None
    max_frame_size: int | None = None
    channel_max: int | None = None
    idle_time_out: int | None = None
    outgoing_locales: Any = None
    incoming_locales: Any = None
    offered_capabilities: Any = None
    desired_capabilities: Any = None
    properties: dict[Any, Any] | None = None


@_composite(0x11, "amqp:begin:list", "ushort", "uint", "uint", "uint", "uint",
            "symbols", "symbols", "fields")
class Begin(NamedTuple):
    remote_channel: int | None = None
    next_outgoing_id: int = 0
    incoming_window: int = 0
    outgoing_window: int = 0
    handle_max: int | None = None
    offered_capabilities: Any = None
    desired_capabilities: Any = None
    properties: dict[Any, Any] | None = None


@_composite(0x12, "amqp:attach:list", "string", "uint", "bool", "ubyte", "ubyte",
            "*", "*", "map", "bool", "uint", "ulong", "symbols", "symbols", "fields")
class Attach(NamedTuple):
    name: str
    handle: int
    role: bool
    snd_settle_mode: int | None = None
    rcv_settle_mode: int | None = None
    source: Any = None
    target: Any = None
    unsettled: dict[Any, Any] | None = None
    incomplete_unsettled: bool | None = None
    initial_delivery_count: int | None = None
    max_message_size: int | None = None
    offered_capabilities: Any = None
    desired_capabilities: Any = None
    properties: dict[Any, Any] | None = None


@_composite(0x13, "amqp:flow:list", "uint", "uint", "uint", "uint", "uint", "uint",
            "uint", "uint", "bool", "bool", "fields")
class Flow(NamedTuple):
    next_incoming_id: int | None = None
    incoming_window: int = 0
    next_outgoing_id: int = 0
    outgoing_window: int = 0
    handle: int | None = None
    delivery_count: int | None = None
    link_credit: int | None = None
    available: int | None = None
    drain: bool | None = None
    echo: bool | None = None
    properties: dict[Any, Any] | None = None


@_composite(0x14, "amqp:transfer:list", "uint", "uint", "binary", "uint", "bool",
            "bool", "ubyte", "*", "bool", "bool", "bool")
class Transfer(NamedTuple):
    handle: int
    delivery_id: int | None = None
    delivery_tag: bytes | None = None
    message_format: int | None = None
    settled: bool | None = None
    more: bool | None = None
    rcv_settle_mode: int | None = None
    state: Any = None
    resume: bool | None = None
    aborted: bool | None = None
    batchable: bool | None = None


@_composite(0x15, "amqp:disposition:list", "bool", "uint", "uint", "bool", "*", "bool")
class Disposition(NamedTuple):
    role: bool
    first: int
    last: int | None = None
    settled: bool | None = None
    state: Any = None
    batchable: bool | None = None


@_composite(0x16, "amqp:detach:list", "uint", "bool", "*")
class Detach(NamedTuple):
    handle: int
    closed: bool | None = None
    error: Error | None = None


@_composite(0x17, "amqp:end:list", "*")
class End(NamedTuple):
    error: Error | None = None


@_composite(0x18, "amqp:close:list", "*")
class Close(NamedTuple):
    error: Error | None = None


@_composite(0x1D, "amqp:error:list", "symbol", "string", "fields")
class Error(NamedTuple):
    condition: str
    description: str | None = None
    info: dict[Any, Any] | None = None


@_composite(0x23, "amqp:received:list", "uint", "ulong")
class Received(NamedTuple):
    section_number: int = 0
    section_offset: int = 0


@_composite(0x24, "amqp:accepted:list")
class Accepted(NamedTuple):
    pass


@_composite(0x25, "amqp:rejected:list", "*")
class Rejected(NamedTuple):
    error: Error | None = None


@_composite(0x26, "amqp:released:list")
class Released(NamedTuple):
    pass


@_composite(0x27, "amqp:modified:list", "bool", "bool", "fields")
class Modified(NamedTuple):
    delivery_failed: bool | None = None
    undeliverable_here: bool | None = None
    message_annotations: dict[Any, Any] | None = None


@_composite(0x28, "amqp:source:list", "string", "uint", "symbol", "uint", "bool",
            "fields", "symbol", "map", "*", "symbols", "symbols")
class Source(NamedTuple):
    address: str | None = None
    durable: int | None = None
    expiry_policy: str | None = None
    timeout: int | None = None
    dynamic: bool | None = None
    dynamic_node_properties: dict[Any, Any] | None = None
    distribution_mode: str | None = None
    filter: dict[Any, Any] | None = None
    default_outcome: Any = None
    outcomes: Any = None
    capabilities: Any = None


@_composite(0x29, "amqp:target:list", "string", "uint", "symbol", "uint", "bool",
            "fields", "symbols")
class Target(NamedTuple):
    address: str | None = None
    durable: int | None = None
    expiry_policy: str | None = None
    timeout: int | None = None
    dynamic: bool | None = None
    dynamic_node_properties: dict[Any, Any] | None = None
    capabilities: Any = None


@_composite(0x40, "amqp:sasl-mechanisms:list", "symbols")
class SaslMechanisms(NamedTuple):
    sasl_server_mechanisms: Any


@_composite(0x41, "amqp:sasl-init:list", "symbol", "binary", "string")
class SaslInit(NamedTuple):
    mechanism: str
    initial_response: bytes | None = None
    hostname: str | None = None


@_composite(0x42, "amqp:sasl-challenge:list", "binary")
class SaslChallenge(NamedTuple):
    challenge: bytes


@_composite(0x43, "amqp:sasl-response:list", "binary")
class SaslResponse(NamedTuple):
    response: bytes


@_composite(0x44, "amqp:sasl-outcome:list", "ubyte", "binary")
class SaslOutcome(NamedTuple):
    code: int
    additional_data: bytes | None = None


@_composite(0x70, "amqp:header:list", "bool", "ubyte", "uint", "bool", "uint")
class Header(NamedTuple):
    durable: bool | None = None
    priority: int | None = None
    ttl: int | None = None
    first_acquirer: bool | None = None
    delivery_count: int | None = None


@_composite(0x73, "amqp:properties:list", "*", "binary", "string", "string", "string",
            "*", "symbol", "symbol", "timestamp", "timestamp", "string", "uint", "string")
class Properties(NamedTuple):
    message_id: Any = None
    user_id: bytes | None = None
    to: str | None = None
    subject: str | None = None
    reply_to: str | None = None
    correlation_id: Any = None
    content_type: str | None = None
    content_encoding: str | None = None
    absolute_expiry_time: Any = None
    creation_time: Any = None
    group_id: str | None = None
    group_sequence: int | None = None
    reply_to_group_id: str | None = None


# ---------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------

_B = struct.Struct(">B")
_b = struct.Struct(">b")
_H = struct.Struct(">H")
_h = struct.Struct(">h")
_I = struct.Struct(">I")
_i = struct.Struct(">i")
_Q = struct.Struct(">Q")
_q = struct.Struct(">q")
_f = struct.Struct(">f")
_d = struct.Struct(">d")
_COMPOUND32 = struct.Struct(">BII")

_INT64_MAX = 0x7FFFFFFFFFFFFFFF


def _encode_uint(value: int, out: bytearray) -> None:
    if value == 0:
        out.append(0x43)
    elif value < 0x100:
        out += b"\x52" + _B.pack(value)
    else:
        out += b"\x70" + _I.pack(value)


def _encode_ulong(value: int, out: bytearray) -> None:
    if value == 0:
        out.append(0x44)
    elif value < 0x100:
        out += b"\x53" + _B.pack(value)
    else:
        out += b"\x80" + _Q.pack(value)


def _encode_int(value: int, out: bytearray) -> None:
    if -128 <= value <= 127:
        out += b"\x54" + _b.pack(value)
    else:
        out += b"\x71" + _i.pack(value)


def _encode_long(value: int, out: bytearray) -> None:
    if -128 <= value <= 127:
        out += b"\x55" + _b.pack(value)
    else:
        out += b"\x81" + _q.pack(value)


def _encode_plain_int(value: int, out: bytearray) -> None:
    if value > _INT64_MAX:
        _encode_ulong(ULong(value), out)
    else:
        _encode_long(Long(value), out)


def _encode_variable(small: int, large: int, raw: bytes, out: bytearray) -> None:
    size = len(raw)
    if size < 0x100:
        out += _B.pack(small) + _B.pack(size)
    else:
        out += _B.pack(large) + _I.pack(size)
    out += raw


def _encode_binary(value: bytes | bytearray | memoryview, out: bytearray) -> None:
    _encode_variable(0xA0, 0xB0, bytes(value), out)


def _encode_string(value: str, out: bytearray) -> None:
    _encode_variable(0xA1, 0xB1, value.encode("utf-8"), out)


def _encode_symbol(value: str, out: bytearray) -> None:
    _encode_variable(0xA3, 0xB3, value.encode("ascii"), out)


def _encode_compound(small: int, large: int, count: int, body: bytes | bytearray,
                     out: bytearray, allow_empty_form: bool = False) -> None:
    """Write a list/map header (8- or 32-bit form) followed by its encoded elements."""
    if allow_empty_form and count == 0:
        out.append(0x45)
    elif len(body) + 1 < 0x100 and count < 0x100:
        out += bytes((small, len(body) + 1, count))
        out += body
    else:
        out += _COMPOUND32.pack(large, len(body) + 4, count)
        out += body


def _encode_list(value: Sequence[Any], out: bytearray) -> None:
    body = bytearray()
    for item in value:
        encode_value(item, body)
    _encode_compound(0xC0, 0xD0, len(value), body, out, allow_empty_form=True)


def _encode_map(value: dict[Any, Any], out: bytearray) -> None:
    body = bytearray()
    for key, item in value.items():
        encode_value(key, body)
        encode_value(item, body)
    _encode_compound(0xC1, 0xD1, 2 * len(value), body, out)


def _encode_timestamp(value: Any, out: bytearray) -> None:
    if isinstance(value, _dt.datetime):
        value = Timestamp.from_datetime(value)
    out += b"\x83" + _q.pack(value)


# Array element encoders: (constructor, function(value) -> bytes) per element type.
def _fixed(fmt: struct.Struct) -> Callable[[Any], bytes]:
    return fmt.pack


def _compound_element(encode: Callable[[Any, bytearray], None]) -> Callable[[Any], bytes]:
    """Encode a list/map element in its 32-bit form (arrays need one constructor)."""

    def pack(value: Any) -> bytes:
        tmp = bytearray()
        encode(value, tmp)
        if tmp[0] == 0x45:  # empty list
            return _I.pack(4) + _I.pack(0)
        if tmp[0] in (0xC0, 0xC1):
            return _I.pack(tmp[1] + 3) + _I.pack(tmp[2]) + bytes(tmp[3:])
        return bytes(tmp[1:])

    return pack


def _utf8(value: str) -> bytes:
    return value.encode("utf-8")


def _ascii(value: str) -> bytes:
    return value.encode("ascii")


def _uuid_bytes(value: uuid.UUID) -> bytes:
    return value.bytes


def _char_bytes(value: str) -> bytes:
    return _I.pack(ord(value))


def _bool_byte(value: bool) -> bytes:
    return b"\x01" if value else b"\x00"


def _timestamp_bytes(value: Any) -> bytes:
    if isinstance(value, _dt.datetime):
        value = Timestamp.from_datetime(value)
    return _q.pack(value)


_ARRAY_FIXED: dict[type, tuple[int, Callable[[Any], bytes]]] = {
    bool: (0x56, _bool_byte),
    UByte: (0x50, _fixed(_B)),
    UShort: (0x60, _fixed(_H)),
    UInt: (0x70, _fixed(_I)),
    ULong: (0x80, _fixed(_Q)),
    Byte: (0x51, _fixed(_b)),
    Short: (0x61, _fixed(_h)),
    Int: (0x71, _fixed(_i)),
    Long: (0x81, _fixed(_q)),
    int: (0x81, _fixed(_q)),
    Float: (0x72, _fixed(_f)),
    float: (0x82, _fixed(_d)),
    Decimal32: (0x74, bytes),
    Decimal64: (0x84, bytes),
    Decimal128: (0x94, bytes),
    Char: (0x73, _char_bytes),
    Timestamp: (0x83, _timestamp_bytes),
    uuid.UUID: (0x98, _uuid_bytes),
    list: (0xD0, _compound_element(_encode_list)),
    dict: (0xD1, _compound_element(_encode_map)),
}

# Variable-width element types: (small constructor, large constructor, raw encoder).
_ARRAY_VARIABLE: dict[type, tuple[int, int, Callable[[Any], bytes]]] = {
    bytes: (0xA0, 0xB0, bytes),
    str: (0xA1, 0xB1, _utf8),
    Symbol: (0xA3, 0xB3, _ascii),
}


def _encode_array(value: Array, out: bytearray) -> None:
    element_type = value.element_type
    if element_type in _ARRAY_VARIABLE:
        small, large, raw = _ARRAY_VARIABLE[element_type]
        encoded = [raw(item) for item in value]
        if all(len(item) < 0x100 for item in encoded):
            constructor, body = small, b"".join(_B.pack(len(e)) + e for e in encoded)
        else:
            constructor, body = large, b"".join(_I.pack(len(e)) + e for e in encoded)
    elif element_type in _ARRAY_FIXED:
        constructor, pack = _ARRAY_FIXED[element_type]
        body = b"".join(pack(item) for item in value)
    else:
        raise CodecError(f"unsupported array element type: {element_type!r}")
    count = len(value)
    if len(body) + 2 < 0x100 and count < 0x100:
        out += bytes((0xE0, len(body) + 2, count, constructor))
    else:
        out += _COMPOUND32.pack(0xF0, len(body) + 5, count) + _B.pack(constructor)
    out += body


def _encode_described(value: Described, out: bytearray) -> None:
    out.append(0x00)
    encode_value(value.descriptor, out)
    encode_value(value.value, out)


def _coerce_symbols(value: Any) -> Any:
    if isinstance(value, str):
        return value if type(value) is Symbol else Symbol(value)
    if isinstance(value, (list, tuple)):
        return Array([Symbol(item) for item in value], Symbol)
    return value


def _coerce_fields(value: Any) -> Any:
    if isinstance(value, dict):
        return {(k if type(k) is Symbol else Symbol(k)) if isinstance(k, str) else k: v
                for k, v in value.items()}
    return value


_COERCE: dict[str, Callable[[Any], Any]] = {
    "uint": UInt,
    "ushort": UShort,
    "ulong": ULong,
    "ubyte": UByte,
    "symbol": Symbol,
    "symbols": _coerce_symbols,
    "fields": _coerce_fields,
    "binary": bytes,
    "string": str,
    "timestamp": lambda v: v if isinstance(v, (Timestamp, _dt.datetime)) else Timestamp(v),
}
_EXACT_FOR_KIND: dict[str, type] = {
    "uint": UInt, "ushort": UShort, "ulong": ULong, "ubyte": UByte, "symbol": Symbol,
    "binary": bytes, "string": str,
}


def _coerce_field(kind: str, value: Any) -> Any:
    if value is None or kind in ("*", "bool", "map"):
        return value
    exact = _EXACT_FOR_KIND.get(kind)
    if exact is not None and type(value) is exact:
        return value
    return _COERCE[kind](value)


def _encode_composite(value: tuple[Any, ...], spec: _CompositeSpec, out: bytearray) -> None:
    body = bytearray()
    for kind, item in zip(spec.field_kinds, value, strict=True):
        encode_value(_coerce_field(kind, item), body)
    out += b"\x00\x53" + _B.pack(spec.code)
    _encode_compound(0xC0, 0xD0, len(value), body, out)


_ENCODERS: dict[type, Callable[[Any, bytearray], None]] = {
    type(None): lambda v, out: out.append(0x40),
    bool: lambda v, out: out.append(0x41 if v else 0x42),
    UByte: lambda v, out: out.extend(b"\x50" + _B.pack(v)),
    UShort: lambda v, out: out.extend(b"\x60" + _H.pack(v)),
    UInt: _encode_uint,
    ULong: _encode_ulong,
    Byte: lambda v, out: out.extend(b"\x51" + _b.pack(v)),
    Short: lambda v, out: out.extend(b"\x61" + _h.pack(v)),
    Int: _encode_int,
    Long: _encode_long,
    int: _encode_plain_int,
    Float: lambda v, out: out.extend(b"\x72" + _f.pack(v)),
    float: lambda v, out: out.extend(b"\x82" + _d.pack(v)),
    Decimal32: lambda v, out: out.extend(b"\x74" + bytes(v)),
    Decimal64: lambda v, out: out.extend(b"\x84" + bytes(v)),
    Decimal128: lambda v, out: out.extend(b"\x94" + bytes(v)),
    Char: lambda v, out: out.extend(b"\x73" + _I.pack(ord(v))),
    Timestamp: _encode_timestamp,
    _dt.datetime: _encode_timestamp,
    uuid.UUID: lambda v, out: out.extend(b"\x98" + v.bytes),
    bytes: _encode_binary,
    bytearray: _encode_binary,
    memoryview: _encode_binary,
    str: _encode_string,
    Symbol: _encode_symbol,
    list: _encode_list,
    tuple: _encode_list,
    dict: _encode_map,
    Array: _encode_array,
    Described: _encode_described,
}


def encode_value(value: Any, out: bytearray | None = None) -> bytearray:
    """Append the AMQP encoding of ``value`` to ``out`` (a new buffer if omitted)."""
    if out is None:
        out = bytearray()
    encoder = _ENCODERS.get(type(value))
    if encoder is not None:
        encoder(value, out)
        return out
    spec = _COMPOSITE_SPECS.get(type(value))
    if spec is not None:
        _encode_composite(value, spec, out)
        return out
    for base, encoder in _ENCODERS.items():  # subclasses, e.g. IntEnum or str enums
        if base is not type(None) and isinstance(value, base):
            encoder(value, out)
            return out
    raise CodecError(f"cannot encode {type(value).__name__} as AMQP")


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------

Buffer = bytes | bytearray | memoryview
_Decoder = Callable[[Buffer, int], tuple[Any, int]]


def _need(buf: Buffer, end: int) -> None:
    if end > len(buf):
        raise CodecError("truncated AMQP value")


def _fixed_decoder(width: int, convert: Callable[[Buffer, int], Any]) -> _Decoder:
    def decode(buf: Buffer, pos: int) -> tuple[Any, int]:
        end = pos + width
        _need(buf, end)
        return convert(buf, pos), end

    return decode


def _const(value: Any) -> _Decoder:
    def decode(buf: Buffer, pos: int) -> tuple[Any, int]:
        return value, pos

    return decode


def _typed(cls: type, fmt: struct.Struct) -> Callable[[Buffer, int], Any]:
    unpack = fmt.unpack_from

    def convert(buf: Buffer, pos: int) -> Any:
        return cls(unpack(buf, pos)[0])

    return convert


def _variable_decoder(size_fmt: struct.Struct, convert: Callable[[bytes], Any]) -> _Decoder:
    width = size_fmt.size
    unpack = size_fmt.unpack_from

    def decode(buf: Buffer, pos: int) -> tuple[Any, int]:
        _need(buf, pos + width)
        start = pos + width
        end = start + unpack(buf, pos)[0]
        _need(buf, end)
        return convert(bytes(buf[start:end])), end

    return decode


def _compound_header(buf: Buffer, pos: int, wide: bool) -> tuple[int, int, int]:
    """Return (count, first element position, end position) of a list/map."""
    if wide:
        _need(buf, pos + 8)
        size, count = struct.unpack_from(">II", buf, pos)
        start, end = pos + 8, pos + 4 + size
    else:
        _need(buf, pos + 2)
        size, count = buf[pos], buf[pos + 1]
        start, end = pos + 2, pos + 1 + size
    _need(buf, end)
    return count, start, end


def _list_decoder(wide: bool) -> _Decoder:
    def decode(buf: Buffer, pos: int) -> tuple[Any, int]:
        count, cursor, end = _compound_header(buf, pos, wide)
        items = []
        for _ in range(count):
            item, cursor = _decode_value(buf, cursor)
            items.append(item)
        if cursor != end:
            raise CodecError("list size does not match its elements")
        return items, end

    return decode


def _map_decoder(wide: bool) -> _Decoder:
    def decode(buf: Buffer, pos: int) -> tuple[Any, int]:
        count, cursor, end = _compound_header(buf, pos, wide)
        if count % 2:
            raise CodecError("map with an odd number of elements")
        result: dict[Any, Any] = {}
        for _ in range(count // 2):
            key, cursor = _decode_value(buf, cursor)
            result[key], cursor = _decode_value(buf, cursor)
        if cursor != end:
            raise CodecError("map size does not match its elements")
        return result, end

    return decode


_ELEMENT_TYPE_BY_CONSTRUCTOR = {
    0x56: bool, 0x41: bool, 0x42: bool, 0x50: UByte, 0x60: UShort, 0x70: UInt, 0x52: UInt,
    0x43: UInt, 0x80: ULong, 0x53: ULong, 0x44: ULong, 0x51: Byte, 0x61: Short,
    0x71: Int, 0x54: Int, 0x81: Long, 0x55: Long, 0x72: Float, 0x82: float, 0x74: Decimal32,
    0x84: Decimal64, 0x94: Decimal128, 0x73: Char, 0x83: Timestamp, 0x98: uuid.UUID,
    0xA0: bytes, 0xB0: bytes, 0xA1: str, 0xB1: str, 0xA3: Symbol, 0xB3: Symbol,
    0xC0: list, 0xD0: list, 0x45: list, 0xC1: dict, 0xD1: dict, 0x40: type(None),
}


def _array_decoder(wide: bool) -> _Decoder:
    def decode(buf: Buffer, pos: int) -> tuple[Any, int]:
        count, cursor, end = _compound_header(buf, pos, wide)
        _need(buf, cursor + 1)
        constructor = buf[cursor]
        cursor += 1
        descriptor = None
        if constructor == 0x00:
            descriptor, cursor = _decode_value(buf, cursor)
            _need(buf, cursor + 1)
            constructor = buf[cursor]
            cursor += 1
        element_decoder = _DECODERS[constructor]
        if element_decoder is None:
            raise CodecError(f"unknown array element constructor 0x{constructor:02x}")
        items = []
        for _ in range(count):
            item, cursor = element_decoder(buf, cursor)
            items.append(item if descriptor is None else _described(descriptor, item))
        if cursor != end:
            raise CodecError("array size does not match its elements")
        element_type = Described if descriptor is not None else _ELEMENT_TYPE_BY_CONSTRUCTOR[constructor]
        return Array(items, element_type), end

    return decode


def _described(descriptor: Any, value: Any) -> Any:
    """Build a known composite from its descriptor and list value, else a Described."""
    if isinstance(descriptor, int):
        cls = _COMPOSITES_BY_CODE.get(descriptor)
    elif isinstance(descriptor, str):
        cls = _COMPOSITES_BY_NAME.get(descriptor)
    else:
        cls = None
    if cls is not None and isinstance(value, list):
        fields = value[:len(cls._fields)]  # type: ignore[attr-defined]
        try:
            return cls(*fields)
        except TypeError as exc:
            raise CodecError(f"malformed {cls.__name__}: {exc}") from None
    return Described(descriptor, value)


def _decode_described(buf: Buffer, pos: int) -> tuple[Any, int]:
    descriptor, pos = _decode_value(buf, pos)
    value, pos = _decode_value(buf, pos)
    return _described(descriptor, value), pos


def _decode_char(buf: Buffer, pos: int) -> Char:
    code = _I.unpack_from(buf, pos)[0]
    if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        raise CodecError(f"char 0x{code:x} is not a Unicode scalar value")
    return Char(chr(code))


def _decode_uuid(buf: Buffer, pos: int) -> uuid.UUID:
    return uuid.UUID(bytes=bytes(buf[pos:pos + 16]))


def _decode_symbol(raw: bytes) -> Symbol:
    return Symbol(raw.decode("ascii", errors="replace"))


def _decode_utf8(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


_DECODERS: list[_Decoder | None] = [None] * 256
_DECODERS[0x00] = _decode_described
_DECODERS[0x40] = _const(None)
_DECODERS[0x41] = _const(True)
_DECODERS[0x42] = _const(False)
_DECODERS[0x56] = _fixed_decoder(1, lambda b, p: b[p] != 0)
_DECODERS[0x50] = _fixed_decoder(1, lambda b, p: UByte(b[p]))
_DECODERS[0x60] = _fixed_decoder(2, _typed(UShort, _H))
_DECODERS[0x70] = _fixed_decoder(4, _typed(UInt, _I))
_DECODERS[0x52] = _fixed_decoder(1, lambda b, p: UInt(b[p]))
_DECODERS[0x43] = _const(UInt(0))
_DECODERS[0x80] = _fixed_decoder(8, _typed(ULong, _Q))
_DECODERS[0x53] = _fixed_decoder(1, lambda b, p: ULong(b[p]))
_DECODERS[0x44] = _const(ULong(0))
_DECODERS[0x51] = _fixed_decoder(1, _typed(Byte, _b))
_DECODERS[0x61] = _fixed_decoder(2, _typed(Short, _h))
_DECODERS[0x71] = _fixed_decoder(4, _typed(Int, _i))
_DECODERS[0x54] = _fixed_decoder(1, _typed(Int, _b))
_DECODERS[0x81] = _fixed_decoder(8, _typed(Long, _q))
_DECODERS[0x55] = _fixed_decoder(1, _typed(Long, _b))
_DECODERS[0x72] = _fixed_decoder(4, _typed(Float, _f))
_DECODERS[0x82] = _fixed_decoder(8, lambda b, p: _d.unpack_from(b, p)[0])
_DECODERS[0x74] = _fixed_decoder(4, lambda b, p: Decimal32(bytes(b[p:p + 4])))
_DECODERS[0x84] = _fixed_decoder(8, lambda b, p: Decimal64(bytes(b[p:p + 8])))
_DECODERS[0x94] = _fixed_decoder(16, lambda b, p: Decimal128(bytes(b[p:p + 16])))
_DECODERS[0x73] = _fixed_decoder(4, _decode_char)
_DECODERS[0x83] = _fixed_decoder(8, _typed(Timestamp, _q))
_DECODERS[0x98] = _fixed_decoder(16, _decode_uuid)
_DECODERS[0xA0] = _variable_decoder(_B, bytes)
_DECODERS[0xB0] = _variable_decoder(_I, bytes)
_DECODERS[0xA1] = _variable_decoder(_B, _decode_utf8)
_DECODERS[0xB1] = _variable_decoder(_I, _decode_utf8)
_DECODERS[0xA3] = _variable_decoder(_B, _decode_symbol)
_DECODERS[0xB3] = _variable_decoder(_I, _decode_symbol)
_DECODERS[0x45] = lambda buf, pos: ([], pos)
_DECODERS[0xC0] = _list_decoder(wide=False)
_DECODERS[0xD0] = _list_decoder(wide=True)
_DECODERS[0xC1] = _map_decoder(wide=False)
_DECODERS[0xD1] = _map_decoder(wide=True)
_DECODERS[0xE0] = _array_decoder(wide=False)
_DECODERS[0xF0] = _array_decoder(wide=True)


def decode_value(buf: Buffer, pos: int = 0) -> tuple[Any, int]:
    """Decode one AMQP value at ``pos``; return it and the position after it. Malformed input, nesting as deep as
    Python's stack included, raises :class:`CodecError` (a peer cannot make the decoder fail otherwise)."""
    try:
        return _decode_value(buf, pos)
    except RecursionError:
        raise CodecError("AMQP value nests too deeply") from None


def _decode_value(buf: Buffer, pos: int = 0) -> tuple[Any, int]:
    _need(buf, pos + 1)
    decoder = _DECODERS[buf[pos]]
    if decoder is None:
        raise CodecError(f"unknown AMQP constructor 0x{buf[pos]:02x} at offset {pos}")
    return decoder(buf, pos + 1)


# Width of the value after each fixed-width constructor, for skipping values quickly.
_FIXED_WIDTH = {
    0x40: 0, 0x41: 0, 0x42: 0, 0x43: 0, 0x44: 0, 0x45: 0,
    0x50: 1, 0x51: 1, 0x52: 1, 0x53: 1, 0x54: 1, 0x55: 1, 0x56: 1,
    0x60: 2, 0x61: 2,
    0x70: 4, 0x71: 4, 0x72: 4, 0x73: 4, 0x74: 4,
    0x80: 8, 0x81: 8, 0x82: 8, 0x83: 8, 0x84: 8,
    0x94: 16, 0x98: 16,
}


def value_end(buf: Buffer, pos: int) -> int:
    """Return the position just after the value at ``pos`` without decoding it (``CodecError`` if malformed)."""
    try:
        return _value_end(buf, pos)
    except RecursionError:
        raise CodecError("AMQP value nests too deeply") from None


def _value_end(buf: Buffer, pos: int) -> int:
    _need(buf, pos + 1)
    constructor = buf[pos]
    pos += 1
    if constructor == 0x00:
        return _value_end(buf, _value_end(buf, pos))
    width = _FIXED_WIDTH.get(constructor)
    if width is not None:
        end = pos + width
    elif constructor & 0xF0 in (0xA0, 0xC0, 0xE0):  # one-byte size
        _need(buf, pos + 1)
        end = pos + 1 + buf[pos]
    elif constructor & 0xF0 in (0xB0, 0xD0, 0xF0):  # four-byte size
        _need(buf, pos + 4)
        end = pos + 4 + _I.unpack_from(buf, pos)[0]
    else:
        raise CodecError(f"unknown AMQP constructor 0x{constructor:02x}")
    _need(buf, end)
    return end


# ---------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------

AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"
AMQP_FRAME = 0x00
SASL_FRAME = 0x01
#: A heartbeat: an AMQP frame with no body.
EMPTY_FRAME = b"\x00\x00\x00\x08\x02\x00\x00\x00"
MIN_MAX_FRAME_SIZE = 512

_FRAME_HEADER = struct.Struct(">IBBH")


class FrameHeader(NamedTuple):
    size: int
    data_offset: int
    frame_type: int
    channel: int


def parse_frame_header(buf: Buffer, pos: int = 0) -> FrameHeader:
    """Parse the 8-byte frame header at ``pos`` (the caller checks there are 8 bytes)."""
    header = FrameHeader(*_FRAME_HEADER.unpack_from(buf, pos))
    if header.size < 8 or header.data_offset < 2:
        raise CodecError(f"malformed frame header: {header}")
    return header


def encode_frame(performative: Any, channel: int = 0, payload: Buffer = b"",
                 frame_type: int = AMQP_FRAME) -> bytes:
    """Encode a complete frame: header, performative (every field) and payload."""
    body = encode_value(performative)
    return _FRAME_HEADER.pack(8 + len(body) + len(payload), 2, frame_type, channel) + bytes(body) + bytes(payload)


def decode_frame_body(body: Buffer) -> tuple[Any, memoryview]:
    """Decode a frame body into its performative and the remaining payload bytes."""
    view = memoryview(body)
    performative, end = decode_value(view, 0)
    return performative, view[end:]


# Transfer frames are the hot path: pack them with a precompiled struct.  Layout:
# frame header | 0x00 0x53 0x14 | list8 size count | handle uint | delivery-id uint |
# delivery-tag vbin8(4) | message-format uint | settled | more | 5 x null
_TRANSFER_HEAD = struct.Struct(">IBBH3sBBBBIBIBBIBIBB5s")
_TRANSFER_PERFORMATIVE_SIZE = _TRANSFER_HEAD.size - 8
_NULLS5 = b"\x40" * 5


def encode_transfer_frames(channel: int, handle: int, delivery_id: int, payload: Buffer,
                           max_frame_size: int, message_format: int = 0,
                           settled: bool = True) -> list[bytes]:
    """Encode one delivery as one or more transfer frames (``more`` set on all but the last).

    Every frame carries all eleven transfer fields; the delivery tag is the
    4-byte big-endian delivery id.
    """
    room = max_frame_size - _TRANSFER_HEAD.size
    if room <= 0:
        raise CodecError("max frame size too small for a transfer")
    settled_byte = 0x41 if settled else 0x42
    if len(payload) <= room:
        return [_TRANSFER_HEAD.pack(
            _TRANSFER_HEAD.size + len(payload), 2, AMQP_FRAME, channel,
            b"\x00\x53\x14", 0xC0, _TRANSFER_PERFORMATIVE_SIZE - 5, 11,
            0x70, handle, 0x70, delivery_id, 0xA0, 4, delivery_id, 0x70, message_format,
            settled_byte, 0x42, _NULLS5) + payload]
    frames = []
    view = memoryview(payload)
    total = len(view)
    start = 0
    while True:
        chunk = view[start:start + room]
        start += len(chunk)
        more = start < total
        frames.append(_TRANSFER_HEAD.pack(
            _TRANSFER_HEAD.size + len(chunk), 2, AMQP_FRAME, channel,
            b"\x00\x53\x14", 0xC0, _TRANSFER_PERFORMATIVE_SIZE - 5, 11,
            0x70, handle, 0x70, delivery_id, 0xA0, 4, delivery_id, 0x70, message_format,
            settled_byte, 0x41 if more else 0x42, _NULLS5) + chunk)
        if not more:
            return frames


# ---------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------

#: message-format of an Event Hubs batch: the body holds one data section per event.
BATCH_MESSAGE_FORMAT = 0x80013700


class Section:
    """Descriptor codes of the message sections."""

    HEADER = 0x70
    DELIVERY_ANNOTATIONS = 0x71
    MESSAGE_ANNOTATIONS = 0x72
    PROPERTIES = 0x73
    APPLICATION_PROPERTIES = 0x74
    DATA = 0x75
    AMQP_SEQUENCE = 0x76
    AMQP_VALUE = 0x77
    FOOTER = 0x78

    BY_NAME: ClassVar[dict[str, int]] = {
        "amqp:header:list": HEADER,
        "amqp:delivery-annotations:map": DELIVERY_ANNOTATIONS,
        "amqp:message-annotations:map": MESSAGE_ANNOTATIONS,
        "amqp:properties:list": PROPERTIES,
        "amqp:application-properties:map": APPLICATION_PROPERTIES,
        "amqp:data:binary": DATA,
        "amqp:amqp-sequence:list": AMQP_SEQUENCE,
        "amqp:amqp-value:*": AMQP_VALUE,
        "amqp:footer:map": FOOTER,
    }


def section_at(buf: Buffer, pos: int) -> tuple[int, int]:
    """Return ``(section code, value start)`` of the message section starting at ``pos``."""
    if buf[pos] != 0x00:
        raise CodecError(f"message section at offset {pos} is not a described type")
    if pos + 3 < len(buf) and buf[pos + 1] == 0x53:
        code, value_start = buf[pos + 2], pos + 3
    else:
        descriptor, value_start = decode_value(buf, pos + 1)
        if isinstance(descriptor, str):
            descriptor = Section.BY_NAME.get(descriptor, -1)
        code = int(descriptor)
    if not Section.HEADER <= code <= Section.FOOTER:
        raise CodecError(f"unknown message section descriptor {code!r}")
    return code, value_start


def iter_sections(buf: Buffer) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(section code, section start, value start, section end)`` per section.

    Only the section boundaries are read, the section values are not decoded.
    """
    pos, total = 0, len(buf)
    while pos < total:
        code, value_start = section_at(buf, pos)
        end = value_end(buf, value_start)
        yield code, pos, value_start, end
        pos = end


@dataclass
class MessageLayout:
    """Where the leading sections of an encoded message sit.

    ``header`` is the raw header section (possibly empty); ``annotations`` the raw
    encoded entries of the message-annotations map and ``annotation_count`` their
    number of elements (keys + values); ``rest`` the raw sections after the
    annotations (properties ... footer).  Delivery annotations are hop-by-hop and
    are dropped.
    """

    header: bytes
    annotations: bytes
    annotation_count: int
    rest: bytes

    @classmethod
    def parse(cls, message: Buffer) -> MessageLayout:
        header = b""
        annotations = b""
        count = 0
        pos, total = 0, len(message)
        while pos < total:
            code, value_start = section_at(message, pos)
            if code > Section.MESSAGE_ANNOTATIONS:
                break
            end = value_end(message, value_start)
            if code == Section.HEADER:
                header = bytes(message[pos:end])
            elif code == Section.MESSAGE_ANNOTATIONS:
                constructor = message[value_start]
                if constructor == 0xC1:
                    count = message[value_start + 2]
                    annotations = bytes(message[value_start + 3:end])
                elif constructor == 0xD1:
                    count = _I.unpack_from(message, value_start + 5)[0]
                    annotations = bytes(message[value_start + 9:end])
                elif constructor != 0x40:
                    raise CodecError("message-annotations section is not a map")
            pos = end
        return cls(header, annotations, count, bytes(message[pos:]))

    def encode(self, extra_annotations: bytes = b"", extra_count: int = 0,
               delivery_annotations: bytes = b"") -> bytes:
        """Re-assemble the message with ``extra_annotations`` (raw entries) prepended."""
        body = extra_annotations + self.annotations
        count = extra_count + self.annotation_count
        annotation_section = (b"\x00\x53\x72" + _COMPOUND32.pack(0xD1, len(body) + 4, count) + body) if count else b""
        return b"".join((self.header, delivery_annotations, annotation_section, self.rest))


@dataclass
class Message:
    """A decoded AMQP message.

    ``body`` holds the body sections as :class:`Described` values whose descriptor
    is ``Section.DATA``, ``Section.AMQP_SEQUENCE`` or ``Section.AMQP_VALUE``.
    """

    header: Header | None = None
    delivery_annotations: dict[Any, Any] | None = None
    message_annotations: dict[Any, Any] | None = None
    properties: Properties | None = None
    application_properties: dict[Any, Any] | None = None
    body: list[Described] = field(default_factory=list)
    footer: dict[Any, Any] | None = None

    @property
    def value(self) -> Any:
        """The value of the first amqp-value body section (``None`` if absent)."""
        for section in self.body:
            if section.descriptor == Section.AMQP_VALUE:
                return section.value
        return None

    @property
    def data(self) -> list[bytes]:
        """The payloads of the data body sections."""
        return [s.value for s in self.body if s.descriptor == Section.DATA]


def amqp_value(value: Any) -> Described:
    """An amqp-value body section."""
    return Described(ULong(Section.AMQP_VALUE), value)


def data_section(payload: bytes) -> Described:
    """A data body section."""
    return Described(ULong(Section.DATA), payload)


def encode_message(message: Message) -> bytes:
    """Encode a message's sections in their canonical order."""
    out = bytearray()
    if message.header is not None:
        encode_value(message.header, out)
    for code, section_map in ((Section.DELIVERY_ANNOTATIONS, message.delivery_annotations),
                              (Section.MESSAGE_ANNOTATIONS, message.message_annotations)):
        if section_map is not None:
            encode_value(Described(ULong(code), _coerce_fields(section_map)), out)
    if message.properties is not None:
        encode_value(message.properties, out)
    if message.application_properties is not None:
        encode_value(Described(ULong(Section.APPLICATION_PROPERTIES), message.application_properties), out)
    for section in message.body:
        encode_value(section, out)
    if message.footer is not None:
        encode_value(Described(ULong(Section.FOOTER), _coerce_fields(message.footer)), out)
    return bytes(out)


def decode_message(buf: Buffer) -> Message:
    """Decode every section of an encoded message."""
    message = Message()
    for code, _start, value_start, end in iter_sections(buf):
        value, value_end_pos = decode_value(buf, value_start)
        if value_end_pos != end:
            raise CodecError("message section size mismatch")
        if code == Section.HEADER:
            message.header = value if isinstance(value, Header) else Header(*value)
        elif code == Section.DELIVERY_ANNOTATIONS:
            message.delivery_annotations = value
        elif code == Section.MESSAGE_ANNOTATIONS:
            message.message_annotations = value
        elif code == Section.PROPERTIES:
            message.properties = value if isinstance(value, Properties) else Properties(*value)
        elif code == Section.APPLICATION_PROPERTIES:
            message.application_properties = value
        elif code == Section.FOOTER:
            message.footer = value
        else:
            message.body.append(Described(ULong(code), value))
    return message
