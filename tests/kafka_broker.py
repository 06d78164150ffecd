"""A real Apache Kafka broker for the tests: KRaft combined mode (broker + controller) on 127.0.0.1, Java 17.

Its jars come from Maven Central (deps/maven/kafka-broker, ``make jars``). :class:`KafkaBroker` formats a fresh log
directory, starts ``kafka.Kafka`` on free ports with two client listeners (PLAINTEXT, and SASL_PLAINTEXT with
PLAIN for the user ``$ConnectionString``, as Event Hubs), waits until it answers, and stops it by PID.
Used by tests/kafka and bench/bench_kafka.py.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from jars import jar_dir

#: The SASL PLAIN user every Event Hubs Kafka client sends.
SASL_USER = "$ConnectionString"
_LOG4J = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = file
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _jaas_quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


class KafkaBroker:
    """One Kafka broker process. ``password`` is what the SASL listener accepts for :data:`SASL_USER`."""

    def __init__(self, password: str, *, partitions: int = 4, startup_timeout: float = 90.0,
                 log_level: str = "WARN", heap: str = "512m") -> None:
        self.password = password
        self.partitions = partitions
        self.startup_timeout = startup_timeout
        self.log_level = log_level
        self.heap = heap
        self.dir = Path(tempfile.mkdtemp(prefix="iotgen-kafka-broker-"))
        self.plain_port = self.sasl_port = self.controller_port = 0
        self.process: subprocess.Popen | None = None

    # -- addresses --------------------------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        """PLAINTEXT listener (no authentication)."""
        return f"127.0.0.1:{self.plain_port}"

    @property
    def sasl_bootstrap(self) -> str:
        """SASL_PLAINTEXT listener, PLAIN, user ``$ConnectionString``."""
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def log(self) -> str:
        path = self.dir / "broker.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- lifecycle --------------------------------------------------------------------------------------------
    def _write_config(self) -> Path:
        self.plain_port, self.sasl_port, self.controller_port = free_port(), free_port(), free_port()
        jaas = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'user_{SASL_USER}="{_jaas_quote(self.password)}";')
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.plain_port},SASL_PLAINTEXT://127.0.0.1:{self.sasl_port},"
                         f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.plain_port},"
                                    f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
            "log.dirs": str(self.dir / "data"),
            "num.partitions": str(self.partitions),
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.flush.interval.messages": "9223372036854775807",
        }
        config = self.dir / "server.properties"
        config.write_text("".join(f"{k}={v.replace(chr(92), chr(92) * 2)}\n" for k, v in lines.items()))
        (self.dir / "log4j2.properties").write_text(_LOG4J.format(log=self.dir / "broker.log", level=self.log_level))
        return config

    def _java(self, main: str, *args: str) -> list[str]:
        java = shutil.which("java") or "java"
        return [java, f"-Xmx{self.heap}", "-Xms128m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
                "-cp", str(jar_dir("kafka-broker") / "*"), main, *args]

    def start(self) -> "KafkaBroker":
        config = self._write_config()
        cluster_id = "-"
        while cluster_id.startswith("-"):  # as Kafka's Uuid.randomUuid(): the tool's parser takes "-..." as an option
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        formatted = subprocess.run(self._java("kafka.tools.StorageTool", "format", "--config", str(config),
                                              "--cluster-id", cluster_id, "--ignore-formatted"),
                                   capture_output=True, text=True, timeout=120)
        if formatted.returncode != 0:
            raise RuntimeError(f"kafka-storage format failed: {formatted.stderr or formatted.stdout}")
        out = open(self.dir / "stdout.log", "wb")
        self.process = subprocess.Popen(self._java("kafka.Kafka", str(config)), stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=subprocess.STDOUT)
        out.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + self.startup_timeout
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the Kafka broker exited ({self.process.returncode}):\n{self._tail()}")
            try:
                if admin.list_topics(timeout=1.0).brokers:
                    return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.25)
        raise TimeoutError(f"the Kafka broker did not answer within {self.startup_timeout:g} s:\n{self._tail()}")

    def _tail(self) -> str:
        stdout = (self.dir / "stdout.log").read_text(errors="replace") if (self.dir / "stdout.log").exists() else ""
        return (stdout + self.log)[-4000:]

    def create_topic(self, name: str, partitions: int | None = None, **config: str) -> str:
        """Create a topic and wait until its partitions have a leader."""
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics([NewTopic(name, partitions or self.partitions, 1, config=config)])
        futures[name].result(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            topic = admin.list_topics(name, timeout=5).topics.get(name)
            if topic is not None and topic.error is None and topic.partitions and all(
                    p.leader >= 0 for p in topic.partitions.values()):
                return name
            time.sleep(0.1)
        raise TimeoutError(f"topic {name} has no leader after 30 s")

    def stop(self, timeout: float = 30.0) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "KafkaBroker":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
