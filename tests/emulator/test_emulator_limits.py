"""The local endpoint against hostile or careless peers (issue 13): a second process on the same data directory,
connections that never open, too many connections, tokens that expire under open links, probing for hub names,
log floods, an orphaned endpoint."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest
from test_emulator_protocol import RawClient, sas_token

from iotgen.emulator import EmulatorProcess
from iotgen.emulator.codec import Detach, Disposition, Message, amqp_value

pytestmark = pytest.mark.timeout(90)


def test_a_second_endpoint_on_the_same_data_dir_is_refused(tmp_path, emulator_factory):
    first = emulator_factory(data_dir=tmp_path / "data")
    second = EmulatorProcess(port=0, data_dir=tmp_path / "data", startup_timeout=20)
    with pytest.raises(RuntimeError, match=r"exited with status 1: .*--data-dir: .* is in use by another "
                                           rf"emulator \(pid {first.pid}\)"):
        second.start()
    second.close()
    assert first.running
    first.restart()  # the lock goes with the process that held it: the same data dir opens again


def _silent_sockets(port: int, count: int, send: bytes = b"") -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if send:
            sock.sendall(send)
        sockets.append(sock)
    return sockets


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        while True:
            if not sock.recv(4096):
                return True
    except (TimeoutError, socket.timeout):
        return False
    except ConnectionResetError:
        return True


def test_connections_that_never_open_are_closed_and_their_number_is_bounded(emulator_factory):
    emulator = emulator_factory(extra_args=["--idle-timeout", "4", "--max-connections", "20"])
    busy = RawClient(emulator.port, idle_time_out_ms=1000)  # a full handshake: the server is past its start-up
    silent = _silent_sockets(emulator.port, 8)
    header_only = _silent_sockets(emulator.port, 8, b"AMQP\x03\x01\x00\x00")
    over = _silent_sockets(emulator.port, 10)  # 17 open: 3 more fit, the other 7 are refused at once
    try:
        refused = sum(_closed_by_server(sock, 0.2) for sock in over)  # (well before the idle time-out)
        assert refused == 7
        assert all(_closed_by_server(sock, 8) for sock in silent + header_only)  # idle from the first byte
        client = RawClient(emulator.port)  # the server took no harm and has room again
        client.close()
    finally:
        busy.close()
        for sock in silent + header_only + over:
            sock.close()


def test_links_stop_working_when_their_token_expires(emulator_factory):
    emulator = emulator_factory(hub="h")
    client = RawClient(emulator.port)
    try:
        client.begin()
        client.attach(True, "$cbs", "cbs-replies")
        client.attach(False, "cbs-requests", "$cbs")
        audience = f"sb://127.0.0.1:{emulator.port}/h"
        assert client.put_token(audience, sas_token(audience, ttl=3))["status-code"] == 200
        reply, flow = client.attach(False, "me", "amqps://127.0.0.1/h/Partitions/0")
        producer = client.next_handle - 1
        client.transfer(producer, Message(body=[amqp_value("before expiry")]))
        assert type(client.frame_of(Disposition).state).__name__ == "Accepted"
        detach = client.frame_of(Detach)  # within about a second of the expiry, unasked
        assert detach.error.condition == "amqp:unauthorized-access" and "ExpiredToken" in detach.error.description
        # a renewed token lets a new link send again
        assert client.put_token(audience, sas_token(audience, ttl=300))["status-code"] == 200
        client.attach(False, "me-again", "amqps://127.0.0.1/h/Partitions/0")
        client.transfer(client.next_handle - 1, Message(body=[amqp_value("after renewal")]))
        assert type(client.frame_of(Disposition).state).__name__ == "Accepted"
    finally:
        client.close()


def _management_status(client: RawClient, hub: str) -> tuple[int, str]:
    from iotgen.emulator.codec import Properties
    import uuid

    request = Message(properties=Properties(message_id=uuid.uuid4(), reply_to="mgmt-replies"),
                      application_properties={"operation": "READ", "name": hub, "type": "com.microsoft:eventhub"},
                      body=[amqp_value(None)])
    client.transfer(3, request)  # the $management request link
    from iotgen.emulator.codec import Transfer, decode_message
    while True:
        _, performative, payload = client.raw_frame()
        if isinstance(performative, Transfer):
            props = decode_message(payload).application_properties
            return props["status-code"], props["status-description"]


def test_without_a_key_hub_names_cannot_be_probed(emulator_factory):
    emulator = emulator_factory(hub=["secret-hub", "other"])
    client = RawClient(emulator.port)
    try:
        client.begin()
        client.attach(True, "$cbs", "cbs-replies")  # links 0 and 1 (RawClient.put_token sends on 1)
        client.attach(False, "cbs-requests", "$cbs")
        client.attach(True, "$management", "mgmt-replies")
        client.attach(False, "mgmt-requests", "$management")
        existing, unknown = _management_status(client, "secret-hub"), _management_status(client, "no-such-hub")
        assert existing[0] == unknown[0] == 401 and existing[1] == unknown[1]
        _, refused_known = client.attach(False, "p1", "amqps://127.0.0.1/secret-hub")
        _, refused_unknown = client.attach(False, "p2", "amqps://127.0.0.1/no-such-hub")
        assert refused_known.error.condition == refused_unknown.error.condition == "amqp:unauthorized-access"
        # with a valid namespace token an unknown hub is "not found", and no other hub is named
        namespace = f"sb://127.0.0.1:{emulator.port}/"
        found = client.put_token(f"{namespace}no-such-hub", sas_token(namespace))
        assert found["status-code"] == 404, found
        assert "secret-hub" not in found["status-description"]
        assert "other" not in found["status-description"]
    finally:
        client.close()


def test_a_flood_of_bad_connections_writes_a_bounded_number_of_log_lines(emulator_factory):
    emulator = emulator_factory()
    deep = b"\x00\x53\x10" + b"\xc0\x03\x01" * 20_000 + b"\x40"  # an open frame nesting 20,000 lists
    frame = (8 + len(deep)).to_bytes(4, "big") + b"\x02\x00\x00\x00" + deep
    for _ in range(40):
        with socket.create_connection(("127.0.0.1", emulator.port), timeout=5) as sock:
            sock.sendall(b"AMQP\x00\x01\x00\x00" + frame)
            _closed_by_server(sock, 5)
    client = RawClient(emulator.port)  # still serving
    client.close()
    lines = [line for line in emulator.output().splitlines() if "WARNING" in line or "ERROR" in line]
    assert 1 <= len(lines) <= 12, lines
    assert not any("Traceback" in line for line in emulator.output().splitlines())


def test_the_endpoint_stops_when_the_process_that_started_it_dies(tmp_path):
    script = ("import time; from iotgen.emulator import start_emulator_process; "
              "p = start_emulator_process(port=0); print(p.pid, flush=True); time.sleep(600)")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        endpoint = psutil.Process(int(parent.stdout.readline()))
        assert endpoint.is_running()
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        endpoint.wait(15)  # a clean stop (SIGTERM to itself), not left behind holding its port
    finally:
        if parent.poll() is None:
            parent.kill()
