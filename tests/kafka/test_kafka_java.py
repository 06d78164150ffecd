"""The Java Kafka client (kafka-clients 4.1.1, the client Spark's Kafka source is built on) against the real broker
and the emulator's Kafka endpoint: the same program, the same expectations (JavaClientCheck.java)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from jars import jar_dir

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def java_check(tmp_path_factory) -> list[str]:
    """The compiled check's java command line prefix (javac from the JDK 17 the tests need anyway)."""
    javac = shutil.which("javac")
    if javac is None:
        pytest.fail("javac (JDK 17) is needed for the Java client check")
    classes = tmp_path_factory.mktemp("java-check")
    classpath = str(jar_dir("kafka-broker") / "*")
    subprocess.run([javac, "-d", str(classes), "-cp", classpath, str(HERE / "JavaClientCheck.java")], check=True,
                   capture_output=True, timeout=120)
    return [shutil.which("java") or "java", "-Xmx256m", "-cp", f"{classpath}:{classes}",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "JavaClientCheck"]


def test_java_client_produces_consumes_and_commits(endpoint, java_check) -> None:
    topic = endpoint.new_topic()
    out = subprocess.run([*java_check, endpoint.bootstrap, topic, endpoint.password, "500"], capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    facts = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    assert facts == {"produced": "500", "consumed": "500", "headers_ok": "true", "offsets_contiguous": "true",
                     "committed": "500", "end_offsets": "500"}, out.stdout + out.stderr[-3000:]
