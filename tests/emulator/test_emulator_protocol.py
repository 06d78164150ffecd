"""Raw AMQP against the emulator: heartbeats, idle time-out, CBS and link refusals.

These drive the protocol directly with the emulator's own codec, to check
behaviour the SDK hides (it retries, or never lets a connection go idle).
"""

from __future__ import annotations

import socket
import time
import uuid
from typing import Any

import pytest

from iotgen.emulator.codec import (
    AMQP_HEADER,
    SASL_FRAME,
    SASL_HEADER,
    Attach,
    Begin,
    Close,
    Described,
    Detach,
    Disposition,
    Flow,
    Message,
    Open,
    Properties,
    SaslInit,
    SaslMechanisms,
    SaslOutcome,
    Source,
    Symbol,
    Target,
    Transfer,
    amqp_value,
    decode_frame_body,
    decode_message,
    encode_frame,
    encode_message,
    parse_frame_header,
)
from iotgen.emulator.server import DEFAULT_KEY, DEFAULT_KEY_NAME
from iotgen.emulator.store import BATCH_MESSAGE_FORMAT

pytestmark = pytest.mark.timeout(60)


def sas_token(audience: str, key_name: str = DEFAULT_KEY_NAME, key: str = DEFAULT_KEY, ttl: int = 300) -> str:
    """A SAS token built independently of the SDK (same algorithm as Azure's docs)."""
    import base64
    import hashlib
    import hmac
    from urllib.parse import quote_plus, urlencode

    expiry = int(time.time()) + ttl
    signed = f"{quote_plus(audience)}\n{expiry}".encode()
    signature = base64.b64encode(hmac.new(key.encode(), signed, hashlib.sha256).digest())
    return "SharedAccessSignature " + urlencode({"sr": audience, "sig": signature, "se": expiry, "skn": key_name})


class RawClient:
    """A minimal AMQP client: enough to open a connection, a session and links."""

    def __init__(self, port: int, idle_time_out_ms: int | None = None) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self._buffer = b""
        self.sock.sendall(SASL_HEADER)
        assert self._read(8) == SASL_HEADER
        mechanisms = self.frame(SASL_FRAME)
        assert isinstance(mechanisms, SaslMechanisms) and "ANONYMOUS" in mechanisms.sasl_server_mechanisms
        self.sock.sendall(encode_frame(SaslInit(mechanism="ANONYMOUS", initial_response=b""), frame_type=SASL_FRAME))
        outcome = self.frame(SASL_FRAME)
        assert isinstance(outcome, SaslOutcome) and outcome.code == 0
        self.sock.sendall(AMQP_HEADER)
        assert self._read(8) == AMQP_HEADER
        self.send(Open(container_id="raw-client", max_frame_size=65536, idle_time_out=idle_time_out_ms))
        self.open = self.frame()
        assert isinstance(self.open, Open)
        self.next_handle = 0
        self.next_delivery = 0

    def _read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the emulator closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def raw_frame(self) -> tuple[int, Any, bytes]:
        """Read one frame: (frame type, performative or None for a heartbeat, payload)."""
        head = self._read(8)
        header = parse_frame_header(head)
        body = self._read(header.size - 8)[4 * header.data_offset - 8:]
        if not body:
            return header.frame_type, None, b""
        performative, payload = decode_frame_body(body)
        return header.frame_type, performative, bytes(payload)

    def frame(self, frame_type: int = 0) -> Any:
        """The next non-heartbeat performative."""
        while True:
            kind, performative, _ = self.raw_frame()
            assert kind == frame_type
            if performative is not None:
                return performative

    def frame_of(self, *types: type) -> Any:
        """Skip frames until one of ``types`` arrives."""
        while True:
            performative = self.frame()
            if isinstance(performative, types):
                return performative

    def send(self, performative: Any, channel: int = 0, payload: bytes = b"") -> None:
        self.sock.sendall(encode_frame(performative, channel, payload))

    def begin(self) -> Begin:
        self.send(Begin(next_outgoing_id=0, incoming_window=1000, outgoing_window=1000), channel=0)
        return self.frame_of(Begin)

    def attach(self, role: bool, source: str, target: str, **fields: Any) -> tuple[Attach, Any]:
        """Attach a link; return the emulator's attach and its next frame (flow or detach)."""
        handle = self.next_handle
        self.next_handle += 1
        self.send(Attach(name=f"link-{handle}", handle=handle, role=role, source=Source(address=source, **fields),
                         target=Target(address=target), initial_delivery_count=0 if not role else None))
        reply = self.frame_of(Attach)
        if role:  # we receive: grant credit
            self.send(Flow(next_incoming_id=0, incoming_window=1000, next_outgoing_id=0, outgoing_window=1000,
                           handle=handle, delivery_count=0, link_credit=100))
        follow_up = self.frame_of(Flow, Detach) if not role or reply.source is None else None
        return reply, follow_up

    def transfer(self, handle: int, message: Message | bytes, message_format: int = 0) -> None:
        payload = message if isinstance(message, bytes) else encode_message(message)
        self.send(Transfer(handle=handle, delivery_id=self.next_delivery, delivery_tag=b"t%d" % self.next_delivery,
                           message_format=message_format, settled=False), payload=payload)
        self.next_delivery += 1

    def put_token(self, audience: str, token: str) -> dict:
        """Run $cbs put-token (links 0 and 1 must be the $cbs pair); return the response properties."""
        request = Message(properties=Properties(message_id=uuid.uuid4()),
                          application_properties={"operation": "put-token", "name": audience,
                                                  "type": "servicebus.windows.net:sastoken"},
                          body=[amqp_value(token)])
        self.transfer(1, request)
        while True:
            _, performative, payload = self.raw_frame()
            if isinstance(performative, Transfer):
                response = decode_message(payload)
                assert response.properties.correlation_id == request.properties.message_id
                return response.application_properties

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(emulator):
    clients: list[RawClient] = []

    def connect(**kwargs: Any) -> RawClient:
        client = RawClient(emulator.port, **kwargs)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


def test_open_reply_advertises_limits_and_sends_heartbeats(raw):
    client = raw(idle_time_out_ms=400)
    assert client.open.max_frame_size >= 65536
    assert client.open.idle_time_out > 0
    assert client.open.channel_max == 0xFFFF
    started, heartbeats = time.monotonic(), 0
    while time.monotonic() - started < 1.3:
        _, performative, _ = client.raw_frame()
        heartbeats += performative is None
    assert heartbeats >= 2  # at least every 200 ms (half of our 400 ms idle time-out)


def test_idle_connections_are_closed(emulator_factory):
    emulator = emulator_factory(extra_args=["--idle-timeout", "0.5"])
    client = RawClient(emulator.port)
    try:
        close = client.frame_of(Close)
        # Event Hubs' condition and words, on which the SDK reconnects by itself
        assert close.error.condition == "amqp:connection:forced"
        assert "inactive for more than the allowed 500 milliseconds" in close.error.description
        with pytest.raises(EOFError):
            client.frame()
    finally:
        client.close()


def test_cbs_statuses_and_refused_links(raw, emulator):
    client = raw()
    client.begin()
    client.attach(True, "$cbs", "cbs-replies")
    client.attach(False, "cbs-requests", "$cbs")
    host, hub = f"sb://127.0.0.1:{emulator.port}", emulator.hub

    # No token yet: links to the hub are refused with a detach error, not left hanging.
    reply, detach = client.attach(False, "me", f"amqps://127.0.0.1/{hub}")
    assert reply.target is None and detach.closed and detach.error.condition == "amqp:unauthorized-access"

    wrong = client.put_token(f"{host}/{hub}", sas_token(f"{host}/{hub}", key="wrong-key"))
    assert wrong["status-code"] == 401 and "signature" in wrong["status-description"]
    expired = client.put_token(f"{host}/{hub}", sas_token(f"{host}/{hub}", ttl=-10))
    assert expired["status-code"] == 401 and "expired" in expired["status-description"]
    other_scope = client.put_token(f"{host}/{hub}", sas_token(f"{host}/other-hub"))
    assert other_scope["status-code"] == 401
    unknown = client.put_token(f"{host}/nope", sas_token(f"{host}/nope"))
    assert unknown["status-code"] == 404 and "nope" in unknown["status-description"]
    assert client.put_token(f"{host}/{hub}", sas_token(f"{host}/{hub}"))["status-code"] == 200

    reply, detach = client.attach(False, "me", "amqps://127.0.0.1/nope")
    assert detach.error.condition == "amqp:unauthorized-access"  # the token is the hub's: "nope" stays unknown
    reply, detach = client.attach(True, f"amqps://127.0.0.1/{hub}/ConsumerGroups/$Default/Partitions/9", "me")
    assert reply.source is None and detach.error.condition == "com.microsoft:argument-out-of-range"
    selector = {Symbol("apache.org:selector-filter:string"): Described(
        Symbol("apache.org:selector-filter:string"), "amqp.annotation.x-opt-offset > 'banana'")}
    reply, detach = client.attach(True, f"amqps://127.0.0.1/{hub}/ConsumerGroups/$Default/Partitions/0",
                                  "me", filter=selector)
    assert detach.error.condition == "com.microsoft:argument-error"

    # With the token a producer link works; a malformed batch is rejected, not fatal.
    reply, flow = client.attach(False, "me", f"amqps://127.0.0.1/{hub}/Partitions/2")
    assert reply.target.address.endswith(f"/{hub}/Partitions/2") and flow.link_credit > 0
    producer_handle = client.next_handle - 1
    client.transfer(producer_handle, b"\x00\x53\x77\xa1\x03bad", message_format=BATCH_MESSAGE_FORMAT)
    rejected = client.frame_of(Disposition)
    assert rejected.settled and rejected.state.error.condition == "amqp:decode-error"
    client.transfer(producer_handle, Message(body=[amqp_value("fine")]))
    accepted = client.frame_of(Disposition)
    assert accepted.settled and type(accepted.state).__name__ == "Accepted"
