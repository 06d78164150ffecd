"""Fixtures shared by the test areas."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture
def emulator_factory() -> Iterator[Callable[..., Any]]:
    """Start local Event Hubs endpoints (``iotgen.emulator.EmulatorProcess`` keyword arguments; a free port
    unless ``port`` is given) as subprocesses on 127.0.0.1; every one is stopped at teardown."""
    from iotgen.emulator import EmulatorProcess

    started: list[EmulatorProcess] = []

    def start(**kwargs: Any) -> EmulatorProcess:
        kwargs.setdefault("port", 0)
        process = EmulatorProcess(**kwargs)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.close()
