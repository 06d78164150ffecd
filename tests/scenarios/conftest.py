"""Fixtures of the fleet and scenario tests."""

from __future__ import annotations

import pytest

from iotgen.generation.generator import GeneratorSpec

from scenario_support import build


@pytest.fixture(scope="session")
def busy_fleet() -> GeneratorSpec:
    """A small fleet whose states change fast: reboots, battery cycles, faults, calibrations and two firmware
    rollouts within the 33 hours its first 30,000 events span."""
    return build({"profile": "fleet", "fleet": {
        "device_count": 40,
        "reboots": {"every_days": 0.5},
        "battery": {"drain_pct_per_day": 25},
        "faults": {"per_day": 6},
        "calibration": {"every_days": [0.5, 2], "maintenance_hours": 2},
        "firmware": {"rollouts": [{"version": "3.2.0", "start": "12h", "duration": "24h", "fraction": 0.8},
                                  {"version": "3.2.1", "start": "20h", "duration": "6h", "fraction": 0.5}]},
    }})
