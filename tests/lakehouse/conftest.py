"""Fixtures of the lakehouse tests: an independent reader (DuckDB with the PyPI extension wheels, offline) and
a local Event Hubs endpoint (iotgen.emulator: a real AMQP 1.0 server in a subprocess, stopped at the end)."""

from __future__ import annotations

import pytest
from lakehouse_support import HUBS, duckdb_with_extensions


@pytest.fixture
def duck():
    con = duckdb_with_extensions()
    yield con
    con.close()


@pytest.fixture(scope="session")
def emulator():
    from iotgen.emulator import start_emulator_process

    with start_emulator_process(hub=list(HUBS), partitions=4) as process:
        yield process
