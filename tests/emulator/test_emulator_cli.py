"""The command line: argument errors, the ready line, clean shutdown."""

from __future__ import annotations

import socket

import pytest

from iotgen.emulator.__main__ import main
from iotgen.emulator.store import EventStore

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(("argv", "parameter"), [
    (["--partitions", "0"], "--partitions"),
    (["--partitions", "four"], "--partitions"),
    (["--port", "70000"], "--port"),
    (["--hub", "bad name"], "--hub"),
    (["--hub", "dup", "--hub", "DUP"], "--hub"),
    (["--key", ""], "--key"),
    (["--idle-timeout", "-1"], "--idle-timeout"),
    (["--idle-timeout", "nan"], "--idle-timeout"),
    (["--idle-timeout", "inf"], "--idle-timeout"),
    (["--idle-timeout", "1e308"], "--idle-timeout"),
    (["--idle-timeout", "1e7"], "--idle-timeout"),  # beyond the AMQP field (a uint of milliseconds)
    (["--max-connections", "0"], "--max-connections"),
    (["--max-partition-mb", "0"], "--max-partition-mb"),
    (["--no-such-option"], "--no-such-option"),
])
def test_bad_arguments_print_one_line_naming_the_parameter_and_exit_2(argv, parameter, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert parameter in lines[0]


def test_partition_count_conflicting_with_the_data_dir_is_an_argument_error(tmp_path, capsys):
    EventStore({"iot-events": 2}, tmp_path).close()
    with pytest.raises(SystemExit) as exit_info:
        main(["--port", "0", "--partitions", "3", "--data-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--partitions" in error and "created with 2" in error


def test_port_in_use_is_reported_clearly(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert main(["--port", str(busy.getsockname()[1])]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "cannot listen on 127.0.0.1" in error


def test_ready_line_and_clean_sigterm_shutdown(emulator_factory):
    emulator = emulator_factory(hub=["first-hub", "second-hub"], partitions=3)
    assert emulator.connection_string.endswith("EntityPath=first-hub")
    assert emulator.stop() == 0  # SIGTERM is handled: exit status 0
    lines = [line for line in emulator.output().splitlines() if line.startswith("iotgen emulator ready:")]
    assert lines == [f"iotgen emulator ready: port={emulator.port} hubs=first-hub,second-hub connection-string="
                     f"Endpoint=sb://127.0.0.1:{emulator.port};SharedAccessKeyName=RootManageSharedAccessKey;"
                     "SharedAccessKey=<redacted>;UseDevelopmentEmulator=true;EntityPath=first-hub"]
    emulator.restart()  # same port again
    assert emulator.running
