"""Data catalogs: the values and dynamic keys events are drawn from.

Edit the module-level constants (as in the seed notebook's *Data catalogs* cell), or pass overrides to
:meth:`Catalogs.build` / the generator functions. A categorical catalog is either a list (uniform draw) or a
mapping ``value -> weight`` (weighted draw). ``IOT_KEY_POOL`` maps each dynamic key of ``json_column`` to a
value spec (see :class:`ValueSpec`); a plain list of names is accepted too, and names without a known spec get
a stable, type-varied default. ``NESTED_KEYS`` maps the pool keys that hold an object (``location``,
``diagnostics``, ``config``) to their own sub-key specs.

Value specs, written as tuples:

- ``("float", low, high, decimals)``: uniform float rounded to ``decimals``;
- ``("int", low, high)``: uniform integer, both ends included;
- ``("bool", p_true)``: boolean, true with probability ``p_true``;
- ``("choice", [values...])``: one of the strings;
- ``("float_array", min_len, max_len, low, high, decimals)``: array of floats;
- ``("string_array", min_len, max_len, [values...])``: array of distinct strings;
- ``("object",)``: a nested object whose sub-keys are ``NESTED_KEYS[name]``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..base.errors import InputError

DEVICE_TYPES: dict[str, float] = {
    "temperature_sensor": 0.22,
    "humidity_sensor": 0.14,
    "pressure_sensor": 0.10,
    "smart_meter": 0.14,
    "air_quality_monitor": 0.10,
    "vibration_sensor": 0.08,
    "gps_tracker": 0.08,
    "smart_thermostat": 0.08,
    "water_flow_meter": 0.06,
}
STATUS_VALUES: dict[str, float] = {
    "online": 0.72,
    "idle": 0.12,
    "degraded": 0.06,
    "maintenance": 0.04,
    "error": 0.04,
    "offline": 0.02,
}
REGIONS: list[str] = [
    "eastus", "eastus2", "westus2", "centralus", "northeurope",
    "westeurope", "uksouth", "southeastasia", "japaneast", "australiaeast",
]
ZONES: list[str] = ["zone-a", "zone-b", "zone-c", "zone-d"]
MODELS: list[str] = [
    "TX-100", "TX-200", "HX-310", "PX-420", "MX-500", "AQ-610", "VB-720", "GX-830", "WF-940",
]
SOURCES: dict[str, float] = {"edge_gateway": 0.5, "mqtt_bridge": 0.3, "http_api": 0.15, "batch_upload": 0.05}
ENVS: dict[str, float] = {"prod": 0.8, "staging": 0.15, "dev": 0.05}

IOT_KEY_POOL: dict[str, tuple] = {
    "co2_ppm": ("int", 380, 5000),
    "pm25_ugm3": ("float", 0, 250, 1),
    "pm10_ugm3": ("float", 0, 400, 1),
    "voc_ppb": ("int", 0, 2000),
    "noise_db": ("float", 25, 120, 1),
    "light_lux": ("float", 0, 100000, 1),
    "uv_index": ("float", 0, 11, 1),
    "wind_speed_ms": ("float", 0, 40, 2),
    "wind_direction_deg": ("int", 0, 359),
    "rainfall_mm": ("float", 0, 50, 2),
    "soil_moisture_pct": ("float", 0, 100, 1),
    "water_flow_lpm": ("float", 0, 500, 2),
    "power_w": ("float", 0, 5000, 2),
    "voltage_v": ("float", 200, 250, 2),
    "current_a": ("float", 0, 32, 3),
    "energy_kwh": ("float", 0, 100000, 3),
    "frequency_hz": ("float", 49.5, 60.5, 2),
    "vibration_mm_s": ("float", 0, 50, 3),
    "rpm": ("int", 0, 12000),
    "speed_kmh": ("float", 0, 180, 1),
    "heading_deg": ("int", 0, 359),
    "door_open": ("bool", 0.1),
    "motion_detected": ("bool", 0.2),
    "leak_detected": ("bool", 0.01),
    "tamper_alert": ("bool", 0.005),
    "is_charging": ("bool", 0.3),
    "power_source": ("choice", ["battery", "mains", "solar", "poe"]),
    "connectivity": ("choice", ["wifi", "lte", "5g", "lorawan", "zigbee", "ethernet"]),
    "alarm_state": ("choice", ["none", "warning", "critical"]),
    "operating_mode": ("choice", ["auto", "manual", "eco", "boost"]),
    "tags": ("string_array", 0, 4, ["indoor", "outdoor", "critical", "pilot", "legacy", "rooftop", "basement"]),
    "readings": ("float_array", 1, 5, 0, 100, 2),
    "error_codes": ("string_array", 0, 3, ["E101", "E204", "E310", "E402", "E503", "W001", "W017"]),
    "packet_loss_pct": ("float", 0, 20, 2),
    "latency_ms": ("int", 1, 2000),
    "location": ("object",),
    "diagnostics": ("object",),
    "config": ("object",),
}
NESTED_KEYS: dict[str, dict[str, tuple]] = {
    "location": {
        "lat": ("float", -60, 70, 6),
        "lon": ("float", -180, 180, 6),
        "altitude_m": ("float", -50, 3000, 1),
        "site": ("choice", ["plant-1", "plant-2", "warehouse-3", "office-4", "field-5"]),
    },
    "diagnostics": {
        "cpu_pct": ("float", 0, 100, 1),
        "memory_pct": ("float", 0, 100, 1),
        "disk_pct": ("float", 0, 100, 1),
        "temperature_c": ("float", 20, 95, 1),
        "restarts": ("int", 0, 20),
        "healthy": ("bool", 0.95),
    },
    "config": {
        "sampling_interval_s": ("int", 1, 3600),
        "report_interval_s": ("int", 10, 86400),
        "mode": ("choice", ["normal", "power_save", "high_frequency"]),
        "threshold": ("float", 0, 100, 2),
        "ota_enabled": ("bool", 0.8),
    },
}

_VALUE_KINDS = {
    "float": 3, "int": 2, "bool": 1, "choice": 1, "float_array": 5, "string_array": 3, "object": 0,
}


@dataclass(frozen=True)
class ValueSpec:
    """How one dynamic key's values are drawn: ``kind`` plus its parameters (see the module docstring)."""

    kind: str
    params: tuple = ()
    children: tuple[tuple[str, "ValueSpec"], ...] = ()

    @classmethod
    def parse(cls, name: str, raw: Any, where: str, nested: Mapping[str, Any] | None = None) -> "ValueSpec":
        if isinstance(raw, ValueSpec):
            return raw
        if isinstance(raw, str):
            raw = (raw,)
        if not isinstance(raw, (tuple, list)) or not raw or raw[0] not in _VALUE_KINDS:
            raise InputError(
                f"{where}[{name!r}] must be a value spec tuple whose first item is one of "
                f"{sorted(_VALUE_KINDS)}, got {raw!r}"
            )
        kind, params = raw[0], tuple(raw[1:])
        if len(params) != _VALUE_KINDS[kind]:
            raise InputError(f"{where}[{name!r}]: a {kind!r} spec takes {_VALUE_KINDS[kind]} parameters, got {raw!r}")
        params = tuple(tuple(p) if isinstance(p, list) else p for p in params)
        _check_params(kind, params, f"{where}[{name!r}]")
        if kind != "object":
            return cls(kind, params)
        subs = (nested or {}).get(name)
        if not subs:
            raise InputError(f"{where}[{name!r}] is an object, so NESTED_KEYS must give its sub-keys")
        if isinstance(subs, (list, tuple)):
            subs = {s: None for s in subs}
        children = tuple(
            (sub, default_value_spec(sub) if spec is None else cls.parse(sub, spec, f"NESTED_KEYS[{name!r}]"))
            for sub, spec in subs.items()
        )
        return cls(kind, (), children)


def _check_params(kind: str, p: tuple, where: str) -> None:
    def nums(*xs):
        return all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)

    ok = True
    if kind == "float":
        ok = nums(*p) and p[0] <= p[1] and isinstance(p[2], int) and 0 <= p[2] <= 9
    elif kind == "int":
        ok = all(isinstance(x, int) and not isinstance(x, bool) for x in p) and p[0] <= p[1]
    elif kind == "bool":
        ok = nums(p[0]) and 0 <= p[0] <= 1
    elif kind == "choice":
        ok = isinstance(p[0], tuple) and len(p[0]) > 0 and all(isinstance(v, str) for v in p[0])
    elif kind == "float_array":
        ok = nums(*p) and 0 <= p[0] <= p[1] and p[2] <= p[3] and isinstance(p[4], int) and 0 <= p[4] <= 9
    elif kind == "string_array":
        ok = (isinstance(p[0], int) and isinstance(p[1], int) and 0 <= p[0] <= p[1]
              and isinstance(p[2], tuple) and all(isinstance(v, str) for v in p[2]) and p[1] <= len(p[2]))
    if not ok:
        raise InputError(f"{where}: invalid parameters for a {kind!r} spec: {p!r}")


def default_value_spec(name: str) -> ValueSpec:
    """A stable spec for a key name the built-in pool does not know: the type varies with the name."""
    if name in IOT_KEY_POOL and IOT_KEY_POOL[name][0] != "object":
        return ValueSpec.parse(name, IOT_KEY_POOL[name], "IOT_KEY_POOL")
    kind = zlib.crc32(name.encode()) % 4
    return [
        ValueSpec("float", (0, 100, 2)),
        ValueSpec("int", (0, 1000)),
        ValueSpec("bool", (0.5,)),
        ValueSpec("choice", (("low", "medium", "high"),)),
    ][kind]


@dataclass(frozen=True)
class Categorical:
    """A categorical catalog: values and their probabilities (summing to 1)."""

    values: tuple[str, ...]
    probabilities: tuple[float, ...]

    @classmethod
    def parse(cls, raw: Any, name: str) -> "Categorical":
        if isinstance(raw, Categorical):
            return raw
        if isinstance(raw, str) or not isinstance(raw, (Mapping, Sequence)):
            raise InputError(f"{name} must be a list of strings or a mapping of string to weight, got {raw!r}")
        items = list(raw.items()) if isinstance(raw, Mapping) else [(v, 1.0) for v in raw]
        if not items:
            raise InputError(f"{name} must not be empty")
        values = tuple(v for v, _ in items)
        if not all(isinstance(v, str) and v for v in values):
            raise InputError(f"{name} values must be non-empty strings, got {list(values)!r}")
        if len(set(values)) != len(values):
            raise InputError(f"{name} values must be distinct, got {list(values)!r}")
        weights = [w for _, w in items]
        if not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights) \
                or sum(weights) <= 0:
            raise InputError(f"{name} weights must be non-negative numbers with a positive sum, got {weights!r}")
        total = float(sum(weights))
        return cls(values, tuple(w / total for w in weights))


CATEGORICAL_CATALOGS = ("device_types", "status_values", "regions", "zones", "models", "sources", "envs")


@dataclass(frozen=True)
class Catalogs:
    """Every catalog the generator draws from, validated and immutable (safe to send to worker processes)."""

    device_types: Categorical
    status_values: Categorical
    regions: Categorical
    zones: Categorical
    models: Categorical
    sources: Categorical
    envs: Categorical
    key_pool: tuple[tuple[str, ValueSpec], ...] = field(default=())

    @classmethod
    def build(
        cls,
        *,
        device_types: Any = None,
        status_values: Any = None,
        regions: Any = None,
        zones: Any = None,
        models: Any = None,
        sources: Any = None,
        envs: Any = None,
        iot_key_pool: Any = None,
        nested_keys: Any = None,
    ) -> "Catalogs":
        """The module's catalogs, with any given override in place of the default (``None`` keeps it)."""
        given = dict(device_types=device_types, status_values=status_values, regions=regions, zones=zones,
                     models=models, sources=sources, envs=envs)
        defaults = dict(device_types=DEVICE_TYPES, status_values=STATUS_VALUES, regions=REGIONS, zones=ZONES,
                        models=MODELS, sources=SOURCES, envs=ENVS)
        cats = {k: Categorical.parse(defaults[k] if v is None else v, k.upper()) for k, v in given.items()}
        return cls(**cats, key_pool=parse_key_pool(
            IOT_KEY_POOL if iot_key_pool is None else iot_key_pool,
            NESTED_KEYS if nested_keys is None else nested_keys,
        ))

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.key_pool)


def parse_key_pool(pool: Any, nested: Any) -> tuple[tuple[str, ValueSpec], ...]:
    """Validate ``IOT_KEY_POOL`` (list of names or mapping name -> spec) against ``NESTED_KEYS``."""
    if nested is None or not isinstance(nested, Mapping):
        raise InputError(f"NESTED_KEYS must be a mapping of key name to its sub-keys, got {nested!r}")
    if isinstance(pool, str) or not isinstance(pool, (Mapping, Sequence)) or not pool:
        raise InputError(f"IOT_KEY_POOL must be a non-empty list of key names or mapping of name to spec, got {pool!r}")
    items = list(pool.items()) if isinstance(pool, Mapping) else [(name, None) for name in pool]
    names = [n for n, _ in items]
    if not all(isinstance(n, str) and n for n in names):
        raise InputError(f"IOT_KEY_POOL keys must be non-empty strings, got {names!r}")
    if len(set(names)) != len(names):
        raise InputError("IOT_KEY_POOL keys must be distinct")
    out = []
    for name, spec in items:
        if spec is None:
            spec = ("object",) if name in nested else None
        out.append((name, ValueSpec.parse(name, spec, "IOT_KEY_POOL", nested) if spec is not None
                    else default_value_spec(name)))
    return tuple(out)
