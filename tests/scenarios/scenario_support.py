"""Helpers of the fleet and scenario tests: specs built from a mapping (as in a spec file)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pyarrow as pa

from iotgen.settings.config import Config
from iotgen.generation.generator import GeneratorSpec, generate_range
from iotgen.spec.spec_file import generator_spec

ANCHOR = "2026-01-08T00:00:00Z"
DEVICE_TYPES = ("temperature_sensor", "humidity_sensor", "pressure_sensor", "smart_meter", "air_quality_monitor",
                "vibration_sensor", "gps_tracker", "smart_thermostat", "water_flow_meter")
# Every device type reports every 60 s: the share of events is then the share of devices (for rate checks).
EVEN_INTERVALS = {"interval_s": {"default": 60, **{t: 60 for t in DEVICE_TYPES}}}


def build(spec: dict[str, Any] | None = None, **params: Any) -> GeneratorSpec:
    """A GeneratorSpec from a spec mapping and Config parameters (lower-case names), seed 7 by default."""
    params.setdefault("random_seed", 7)
    params.setdefault("anchor_time", ANCHOR)
    return generator_spec(Config(**params), spec=spec or {})


def clean(spec: GeneratorSpec) -> GeneratorSpec:
    """The same spec without scenarios: the events before any fault is injected."""
    return dataclasses.replace(spec, scenarios=None)


def rows(spec: GeneratorSpec, start: int, stop: int) -> pa.Table:
    return pa.Table.from_batches([generate_range(spec, start, stop)])


def ms(timestamps):
    """A pandas timestamp Series as epoch milliseconds (int64)."""
    return timestamps.dt.as_unit("ms").astype("int64")
