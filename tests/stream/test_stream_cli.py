"""The ``iotgen stream`` and ``iotgen emulator`` commands, run as a user runs them (subprocesses)."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iotgen.faces.cli import build_parser, main
from iotgen.faces.cli.emulator import emulator_argv

ROOT = Path(__file__).resolve().parents[2]


def iotgen(*args: str, env: dict | None = None, timeout: float = 90) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "EVENTHUB_CONNECTION_STRING"
                   and not k.startswith("IOTGEN_")}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "iotgen.faces.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=environment, timeout=timeout)


def test_stream_sends_and_prints_the_summary_without_the_key(emulator, read_back, monkeypatch, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    for name in [n for n in os.environ if n.startswith("IOTGEN_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("EVENTHUB_CONNECTION_STRING", emulator.connection_string)
    key = emulator.connection_string.split("SharedAccessKey=")[1].split(";")[0]
    assert main(["-v", "stream", "--events", "1500", "--sleep", "0", "--batch-size", "500", "--seed", "4"]) == 0
    out, err = capsys.readouterr()
    assert "1,500 sent, 1,500 acknowledged, 0 retried, 0 failed" in out
    assert "event count reached" in out and "seed 4" in out
    assert "streaming to sb://127.0.0.1" in err
    assert key not in out + err + caplog.text
    assert len(read_back(emulator.connection_string, 1500)) == 1500


def test_wrong_key_is_one_line_on_stderr_and_status_2(emulator):
    key = emulator.connection_string.split("SharedAccessKey=")[1].split(";")[0]
    wrong = iotgen("-v", "stream", "--events", "10",
                   env={"EVENTHUB_CONNECTION_STRING": emulator.connection_string.replace(key, "x" + key[1:])})
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert re.search(r"^iotgen stream: error: EVENTHUB_CONNECTION_STRING: authentication .* failed", wrong.stderr,
                     re.MULTILINE)
    assert key[1:] not in wrong.stderr + wrong.stdout


def test_stream_errors_have_the_documented_status(emulator, monkeypatch, capsys):
    for name in [n for n in os.environ if n.startswith("IOTGEN_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("EVENTHUB_CONNECTION_STRING", raising=False)
    assert main(["stream", "--events", "10"]) == 2
    assert "no Event Hubs connection configured" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["stream", "--events", "5", "--duration", "5"])
    assert info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err

    monkeypatch.setenv("EVENTHUB_CONNECTION_STRING", emulator.connection_string)
    assert main(["stream", "--rate", "-3"]) == 2
    assert "RATE_EVENTS_PER_SEC must be a number > 0 and <= 10^8" in capsys.readouterr().err
    emulator.stop()
    assert main(["stream", "--events", "10", "--send-timeout", "5"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("iotgen stream: error: cannot reach the Event Hubs endpoint") and len(err.splitlines()) == 1


def test_emulator_command_runs_the_local_endpoint_until_sigterm(tmp_path):
    environment = {**os.environ, "IOTGEN_EMULATOR_KEY": "test-key-123456789"}
    process = subprocess.Popen([sys.executable, "-m", "iotgen.faces.cli", "emulator", "--port", "0", "--hub", "cli-hub",
                                "--partitions", "2", "--data-dir", str(tmp_path / "data"), "--kafka-port", "any"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                               env=environment)
    try:
        line = ""
        deadline = time.monotonic() + 30
        while "ready" not in line and time.monotonic() < deadline and process.poll() is None:
            line = process.stdout.readline()
        assert "iotgen emulator ready: port=" in line and "hubs=cli-hub" in line, line
        assert "test-key-123456789" not in line
        port = int(re.search(r"port=(\d+)", line).group(1))
        from azure.eventhub import EventHubProducerClient

        conn = (f"Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName=RootManageSharedAccessKey;"
                "SharedAccessKey=test-key-123456789;UseDevelopmentEmulator=true;EntityPath=cli-hub")
        with EventHubProducerClient.from_connection_string(conn) as client:
            assert client.get_partition_ids() == ["0", "1"]
        from confluent_kafka.admin import AdminClient  # the same hub through the Kafka endpoint

        kafka_port = int(re.search(r"kafka-port=(\d+)", line).group(1))
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{kafka_port}", "security.protocol": "SASL_PLAINTEXT",
                             "sasl.mechanism": "PLAIN", "sasl.username": "$ConnectionString", "sasl.password": conn})
        assert sorted(admin.list_topics(timeout=30).topics["cli-hub"].partitions) == [0, 1]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    assert (tmp_path / "data").is_dir()


def test_emulator_command_passes_only_the_options_given(capsys):
    parser = build_parser()
    args = parser.parse_args(["emulator", "--port", "0", "--hub", "a", "--hub", "b", "--idle-timeout", "5"])
    assert emulator_argv(args) == ["--port", "0", "--hub", "a", "--hub", "b", "--idle-timeout", "5.0"]
    for kafka in ("0", "any", "9093"):  # off, a free port, a port: passed on as given
        assert emulator_argv(parser.parse_args(["emulator", "--kafka-port", kafka])) == ["--kafka-port", kafka]
    assert emulator_argv(parser.parse_args(["emulator"])) == []
    with pytest.raises(SystemExit) as info:
        main(["emulator", "--partitions", "0"])
    assert info.value.code == 2 and "argument --partitions: must be between 1 and 1024" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["emulator", "--help"])
    assert "--data-dir" in capsys.readouterr().out


def test_ctrl_c_ends_the_stream_with_its_summary_and_status_130(emulator, read_back):
    from azure.eventhub import EventHubProducerClient

    environment = {k: v for k, v in os.environ.items() if not k.startswith("IOTGEN_")}
    environment["EVENTHUB_CONNECTION_STRING"] = emulator.connection_string
    process = subprocess.Popen([sys.executable, "-m", "iotgen.faces.cli", "stream", "--rate", "2000", "--seed", "8"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=environment)
    try:
        with EventHubProducerClient.from_connection_string(emulator.connection_string) as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and process.poll() is None:  # until events arrive
                if any(client.get_partition_properties(p)["last_enqueued_sequence_number"] >= 0 for p in "0123"):
                    break
                time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "interrupted" in out and "Traceback" not in err
    assert emulator.connection_string.split("SharedAccessKey=")[1].split(";")[0] not in out + err
    acknowledged = int(re.search(r"([\d,]+) acknowledged", out).group(1).replace(",", ""))
    assert re.search(rf"{acknowledged:,} sent, {acknowledged:,} acknowledged, 0 retried, 0 failed", out)
    assert f"STREAM_START_EVENT={acknowledged}" in out
    assert len(read_back(emulator.connection_string, acknowledged, drain=True)) == acknowledged
