"""Run the emulator in a subprocess (``python -m iotgen.emulator``) and control it by PID."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from .server import DEFAULT_KEY, DEFAULT_KEY_NAME, KEY_ENV_VAR, READY_PREFIX, connection_string

__all__ = ["EmulatorProcess", "start_emulator_process"]

_READY_PORT = re.compile(re.escape(READY_PREFIX) + r" port=(\d+)(?: kafka-port=(\d+))?")
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class EmulatorProcess:
    """An emulator subprocess.

    The key is passed in the environment (never on the command line) and the
    child's output goes to a temporary file, see :meth:`output`.  Use it as a
    context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, hub: str | Iterable[str] = "iot-events",
                 partitions: int = 4, key_name: str = DEFAULT_KEY_NAME, key: str = DEFAULT_KEY,
                 data_dir: str | Path | None = None, startup_timeout: float = 30.0,
                 extra_args: Iterable[str] = (), kafka_port: int | str | None = None) -> None:
        self.host = host
        self.hubs = [hub] if isinstance(hub, str) else list(hub)
        self.partitions = partitions
        self.key_name = key_name
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.startup_timeout = startup_timeout
        self._key = key
        self._requested_port = port
        #: None or 0: no Kafka endpoint; "any": a free port (kept across restarts); else that port.
        self._requested_kafka_port = kafka_port
        self._kafka_port: int | None = None
        self._extra_args = list(extra_args)
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._output_dir = tempfile.TemporaryDirectory(prefix="iotgen-emulator-")
        self._output_path = Path(self._output_dir.name) / "output.log"
        self._run = 0

    # -- properties ------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the emulator process has not been started")
        return self._port

    @property
    def kafka_port(self) -> int:
        if self._kafka_port is None:
            raise RuntimeError("the emulator process has no Kafka endpoint (start it with kafka_port)")
        return self._kafka_port

    @property
    def kafka_bootstrap(self) -> str:
        """``host:port`` of the Kafka endpoint (Kafka's bootstrap.servers)."""
        return f"{self.host}:{self.kafka_port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the emulator process has not been started")
        return self._process.pid

    @property
    def hub(self) -> str:
        return self.hubs[0]

    @property
    def connection_string(self) -> str:
        """Connection string of the first hub (contains the key: do not print it)."""
        return self.connection_string_for(self.hub)

    def connection_string_for(self, hub: str) -> str:
        return connection_string(self.host, self.port, hub, self.key_name, self._key)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def output(self) -> str:
        """Everything the process (and its restarts) wrote to stdout and stderr."""
        return self._output_path.read_text(errors="replace") if self._output_path.exists() else ""

    # -- lifecycle ---------------------------------------------------------------

    def _command(self, port: int) -> list[str]:
        kafka = self._kafka_port if self._kafka_port is not None else self._requested_kafka_port
        command = [sys.executable, "-m", "iotgen.emulator", "--host", self.host, "--port", str(port),
                   "--kafka-port", str(kafka or 0), "--partitions", str(self.partitions), "--key-name", self.key_name,
                   "--parent-pid", str(os.getpid())]  # it stops when this process dies, however it dies
        for hub in self.hubs:
            command += ["--hub", hub]
        if self.data_dir is not None:
            command += ["--data-dir", str(self.data_dir)]
        return command + self._extra_args

    def start(self) -> EmulatorProcess:
        """Start the subprocess and wait (bounded) until it accepts connections."""
        if self.running:
            raise RuntimeError("the emulator process is already running")
        port = self._port if self._port is not None else self._requested_port
        env = dict(os.environ)
        env[KEY_ENV_VAR] = self._key
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        self._run += 1
        with open(self._output_path, "ab") as log:
            log.write(f"--- emulator run {self._run} ---\n".encode())
            log.flush()
            start_offset = log.tell()
            self._process = subprocess.Popen(self._command(port), stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, env=env)
        try:
            self._port = self._wait_ready(start_offset)
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_ready(self, start_offset: int) -> int:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            with open(self._output_path, "rb") as log:
                log.seek(start_offset)
                text = log.read().decode(errors="replace")
            match = _READY_PORT.search(text)
            if match and self._accepts_connections(int(match.group(1))):
                if match.group(2):
                    self._kafka_port = int(match.group(2))
                return int(match.group(1))
            if self._process.poll() is not None:
                raise RuntimeError(f"the emulator exited with status {self._process.returncode}: {text.strip()}")
            time.sleep(0.05)
        raise TimeoutError(f"the emulator did not become ready within {self.startup_timeout:g} s")

    def _accepts_connections(self, port: int) -> bool:
        try:
            with socket.create_connection((self.host, port), timeout=1.0):
                return True
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the process, SIGKILL it after ``timeout`` seconds; return its exit status."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
        return process.returncode

    def kill(self) -> None:
        """SIGKILL the process (simulates a crash) and reap it."""
        process = self._process
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    def restart(self) -> EmulatorProcess:
        """Stop the process if it runs, then start it again on the same port and data directory."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the process and remove its output file."""
        self.stop()
        self._output_dir.cleanup()

    def __enter__(self) -> EmulatorProcess:
        if not self.running:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def start_emulator_process(host: str = "127.0.0.1", port: int = 0, hub: str | Iterable[str] = "iot-events",
                           partitions: int = 4, key_name: str = DEFAULT_KEY_NAME, key: str = DEFAULT_KEY,
                           data_dir: str | Path | None = None, **options: object) -> EmulatorProcess:
    """Start an emulator subprocess and return it once it accepts connections.

    ``options`` are passed to :class:`EmulatorProcess` (``startup_timeout``,
    ``extra_args``).  Stop it with :meth:`EmulatorProcess.stop` or use it as a
    context manager.
    """
    process = EmulatorProcess(host=host, port=port, hub=hub, partitions=partitions, key_name=key_name,
                              key=key, data_dir=data_dir, **options)  # type: ignore[arg-type]
    return process.start()
