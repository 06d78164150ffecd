"""Fixtures for the Spark tests: one quiet local Spark session for the whole run, and the local Event Hubs endpoint.

Spark starts once (``local[2]``, bound to 127.0.0.1, UI off, log4j at error, no progress bars) and is stopped at
the end of the session. The same tests run in each mode and with each set of connectors, chosen as every iotgen
run chooses them (``spark_support.session_options``): ``IOTGEN_SPARK_CONNECT=true`` gives a Spark Connect session
on a local Spark Connect server (the mode of serverless and standard access mode), ``IOTGEN_SPARK_JARS`` a folder
of connector jars (``make jars``: ``.jars/spark-4.0``) so that Delta and Iceberg go through Spark's own sinks.
Every test that needs Event Hubs gets its own emulator subprocess on a free port, stopped at teardown even when
the test fails. Helpers are in ``spark_support.py``.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from iotgen.emulator import EmulatorProcess


@pytest.fixture(scope="session")
def spark(tmp_path_factory) -> Iterator[Any]:
    from iotgen.runs.spark.runtime import BATCH_SOURCES
    from iotgen.runs.spark.session import get_spark

    from spark_support import session_options

    session = get_spark("iotgen-tests", cores=2, warehouse=str(tmp_path_factory.mktemp("warehouse")),
                        conf={"spark.sql.shuffle.partitions": "2"}, register_sources=BATCH_SOURCES,
                        **session_options())
    yield session
    session.stop()


@pytest.fixture
def emulator(tmp_path) -> Iterator[EmulatorProcess]:
    """A fresh local Event Hubs endpoint: hub ``iot-events``, 2 partitions, persisted under tmp_path."""
    process = EmulatorProcess(hub="iot-events", partitions=2, data_dir=tmp_path / "emulator-data")
    process.start()
    try:
        yield process
    finally:
        process.close()
