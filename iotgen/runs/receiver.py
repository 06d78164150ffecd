"""The ingest's Event Hubs receiver: the azure-eventhub SDK in a child process, feeding the parent over a pipe.

The SDK's AMQP stack is pure Python, so its receive loop needs the GIL nearly all the time. In the ingest's own
process it waited for the parsing and the table commits (pyarrow, DuckDB and delta-rs hand the GIL back and forth):
on 2 cores the ingest reached 69-92 % (median 80 %) of a bare SDK consumer's rate. In a process of its own the
loop keeps a core while the parent parses and commits on the other: 83-100 % (bench/bench_lakehouse.py).

The child receives every partition from the positions the parent read from the table, and sends
``("events", partition, bodies, sequence numbers, enqueued times in us)`` per received batch, or
``("error", partition, fatal, message)`` (secrets redacted). Back-pressure is the pipe's: when the parent stops
reading (its buffer is full) the child's send blocks, so the SDK stops asking for more. The child ignores Ctrl-C
(the parent stops it, after committing what it holds) and exits within a second when the parent dies, even by
SIGKILL; it never writes anything, so stopping it at any moment loses nothing: events not committed are read
again on the next start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Callable

from .parent_watch import exit_with_parent

if TYPE_CHECKING:
    from ..outputs.eventhubs import EventHubTarget

# Event Hubs message annotations (AMQP): every received event has both.
_SEQUENCE_NUMBER = b"x-opt-sequence-number"
_ENQUEUED_TIME = b"x-opt-enqueued-time"
_STOP_TIMEOUT = 10.0
_PIPE_BYTES = 4 << 20
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass(frozen=True)
class ReceiveRequest:
    """What the child receives: every partition of ``source`` from ``positions`` (exclusive; ``"-1"``: from
    the start)."""

    source: "EventHubTarget"
    consumer_group: str
    positions: dict[str, int | str]
    prefetch: int
    max_batch_size: int = 1000


OnEvents = Callable[[str, list, list, list], None]
OnError = Callable[[str | None, bool, str], None]


class Receiver:
    """The child process and the parent's thread that hands what it sends to ``on_events`` / ``on_error``.

    ``start()`` starts the child at once (it imports the SDK while the parent reads the table);
    ``receive(request)`` tells it where to start; ``stop()`` ends it. The child is a plain
    ``python -m iotgen.runs.receiver`` (not a multiprocessing child, which would re-import the caller's main
    module first) talking over two pipes; the request, with the connection string, goes through a pipe, never
    the command line or the environment."""

    def __init__(self, on_events: OnEvents, on_error: OnError) -> None:
        self._on_events = on_events
        self._on_error = on_error
        self._process: subprocess.Popen | None = None
        self._requests: Connection | None = None
        self._conn: Connection | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._stderr = tempfile.TemporaryFile()

    def start(self) -> "Receiver":
        if os.name != "posix":  # pass_fds: POSIX only
            raise RuntimeError("iotgen ingest runs its Event Hubs receiver as a child process over inherited pipes, "
                               "which needs Linux or macOS (on Windows: WSL)")
        request_read, request_write = os.pipe()
        data_read, data_write = os.pipe()
        _widen(data_write)
        env = dict(os.environ)  # the child imports this very iotgen (a notebook may have it on sys.path only)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", __spec__.name, str(request_read), str(data_write), str(os.getpid())],
                pass_fds=(request_read, data_write), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=self._stderr, env=env, start_new_session=True)  # Ctrl-C is the parent's to handle
        finally:
            os.close(request_read)
            os.close(data_write)  # the child holds it; EOF reaches us when it exits
        self._requests = Connection(request_write, readable=False)
        self._conn = Connection(data_read, writable=False)
        return self

    def receive(self, request: ReceiveRequest) -> None:
        if self._requests is None or self._conn is None:
            raise RuntimeError("Receiver.receive() before start()")
        self._requests.send(request)
        self._thread = threading.Thread(target=self._pump, args=(self._conn,), name="iotgen-ingest-receive",
                                        daemon=True)
        self._thread.start()

    def _pump(self, conn: Connection) -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                if not self._stopping:
                    self._on_error(None, True, self._ended())
                return
            if message[0] == "events":
                self._on_events(*message[1:])
            else:
                self._on_error(*message[1:])

    def _ended(self) -> str:
        assert self._process is not None
        try:
            status = self._process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            status = None
        self._stderr.seek(0)
        last = [line for line in self._stderr.read().decode("utf-8", "replace").splitlines() if line.strip()][-1:]
        from ..outputs.eventhubs import redact

        return f"the receiver process ended (exit status {status}){': ' + redact(last[0]) if last else ''}"

    def stop(self) -> None:
        """End the child (nothing in it needs saving) and the pump thread."""
        self._stopping = True
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(_STOP_TIMEOUT)
        for conn in (self._conn, self._requests):
            if conn is not None:
                conn.close()
        if self._thread is not None:
            self._thread.join(_STOP_TIMEOUT)
        self._stderr.close()


# ---- the child ----------------------------------------------------------------------------------------------
def _widen(fd: int) -> None:
    """Make the pipe hold a whole received batch (about 1 MB for 1,000 events), so the child hands it over
    in one write instead of waiting for the parent to drain 64 KB at a time (Linux; elsewhere as it is)."""
    try:
        import fcntl

        limit = int(open("/proc/sys/fs/pipe-max-size").read())
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, min(limit, _PIPE_BYTES))
    except (ImportError, AttributeError, OSError, ValueError):
        pass


def _child_main(requests: Connection, conn: Connection, parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    exit_with_parent(parent_pid)
    import logging

    logging.getLogger("azure").setLevel(logging.CRITICAL)  # errors reach the parent as messages instead
    import azure.eventhub  # noqa: F401 - the SDK loads while the parent reads the table

    from ..outputs.eventhubs import error_kind, one_line

    try:
        request: ReceiveRequest = requests.recv()
    except (EOFError, OSError):
        return

    def send(message: tuple) -> None:
        try:
            conn.send(message)
        except (BrokenPipeError, EOFError, OSError):
            os._exit(0)  # the parent is gone

    def on_event_batch(context, events) -> None:
        if not events:
            return
        bodies, seqs, times = [], [], []
        for event in events:
            message = event.raw_amqp_message  # the AMQP fields directly: no datetime per event
            annotations = message.annotations
            body = message.body
            bodies.append(body if isinstance(body, bytes) else b"".join(body))
            seqs.append(annotations[_SEQUENCE_NUMBER])
            times.append(annotations[_ENQUEUED_TIME] * 1000)  # ms -> us
        send(("events", context.partition_id, bodies, seqs, times))

    def on_error(context, error) -> None:
        send(("error", getattr(context, "partition_id", None), error_kind(error) == "fatal", one_line(error)))

    client = request.source.consumer_client(request.consumer_group, retry_total=3, retry_backoff_factor=0.5)
    try:
        client.receive_batch(on_event_batch=on_event_batch, on_error=on_error,
                             starting_position=request.positions, starting_position_inclusive=False,
                             max_batch_size=request.max_batch_size, prefetch=request.prefetch)
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        send(("error", None, True, one_line(exc)))
    finally:
        client.close()


if __name__ == "__main__":  # python -m iotgen.runs.receiver REQUEST_FD DATA_FD PARENT_PID
    _child_main(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False),
                int(sys.argv[3]))
