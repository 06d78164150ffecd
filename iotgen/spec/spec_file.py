"""The generation spec file: catalogs, the fleet and the data-quality scenarios in one YAML file.

``iotgen spec --example`` prints a documented example (``iotgen/spec/example_spec.yaml``, package data: the one copy
of that text, installed with the package).
Every section and field is optional; a field left out keeps its default. Every value is validated when the
file is read (or, for what depends on the catalogs, when the GeneratorSpec is built), and a bad one raises
one :class:`~iotgen.base.errors.InputError` naming the file and the field (``scenarios.late.rate must be ...``).

:func:`generator_spec` is the one way a :class:`~iotgen.settings.config.Config` becomes the
:class:`~iotgen.generation.generator.GeneratorSpec` it generates from (every face calls it, and so do the
package's public functions, ``iotgen.generate_events`` and friends): the seed and time window of the Config,
the spec file's catalogs, and the fleet (``PROFILE=fleet``) and scenarios it describes::

    spec = generator_spec(Config.load(params={"SPEC_FILE": "my_spec.yaml", "NUM_EVENTS": 100_000}))
    batches = generate_events(spec, 100_000)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import importlib.resources
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn

import numpy as np

from ..base.errors import InputError
from ..base.times import HOUR_MS, iso_time, parse_datetime, parse_duration_ms
from ..generation.devices import CdcFaults, Registry, registry_of
from ..generation.fleet import (
    DEFAULT_CLIMATES,
    DEFAULT_INTERVALS_S,
    DEFAULT_MODELS,
    DEFAULT_SERIES,
    STATUS_ROLES,
    Climate,
    Fleet,
    Rollout,
    Series,
)
from ..generation.generator import GeneratorSpec
from ..generation.offline import MAX_DROP_RATE, OVERFLOW_POLICIES, Dropped, Offline
from ..generation.rate_profile import PRESETS, Bursts, RateProfile, normal_timezone
from ..generation.scenarios import (
    ANOMALY_COLUMNS,
    DEFAULT_DRIFT,
    DEFAULT_SPIKES,
    DRIFT_OPERATIONS,
    DRIFT_TYPES,
    LATENESS_DISTRIBUTIONS,
    LATENESS_SCALE_MS,
    MALFORMED_KINDS,
    OUT_OF_RANGE_VALUES,
    ClockSkew,
    Drift,
    DriftChange,
    Duplicates,
    Episodes,
    Lateness,
    MalformedJson,
    OutOfOrder,
    OutOfRange,
    Replays,
    Scenarios,
    Spikes,
    Stuck,
)
from ..settings.catalogs import Catalogs, ValueSpec
from ..settings.config import Config, read_yaml_file
from ..settings.schema import COLUMN_NAMES

EXAMPLE_NAME = "example_spec.yaml"
#: The example spec as a file (package data next to this module; a file to pass as SPEC_FILE).
EXAMPLE_PATH = Path(__file__).resolve().parent / EXAMPLE_NAME
PROFILES = ("independent", "fleet")
SECTIONS = ("profile", "catalogs", "fleet", "scenarios", "registry", "rate_profile")
CATALOG_KEYS = ("device_types", "status_values", "regions", "zones", "models", "sources", "envs", "iot_key_pool",
                "nested_keys")


#: The spec file's names that differ from the field they set, per dataclass (dotted: inside a sub-section).
#: Every default comes from the dataclasses themselves (:func:`default`): the reader repeats none.
YAML_NAMES: dict[type, dict[str, str]] = {
    Fleet: {"interval_s.default": "default_interval_s", "battery.drain_pct_per_day": "battery_drain_pct_per_day",
            "battery.recharge_below_pct": "recharge_below_pct", "reboots.every_days": "reboot_every_days",
            "faults.per_day": "faults_per_day", "faults.error_hours": "error_hours",
            "calibration.every_days": "calibration_every_days", "calibration.maintenance_hours": "maintenance_hours",
            "firmware.initial": "firmware_initial", "firmware.rollouts": "rollouts"},
    Rollout: {"start": "start_ms", "duration": "duration_ms"},
    Lateness: {"mean": "scale_ms", "median": "scale_ms", "min": "min_ms", "max": "max_ms"},
    Stuck: {"duration": "duration_ms"},
    Drift: {"duration": "duration_ms"},
    ClockSkew: {"max_offset": "max_offset_ms", "max_drift_per_day": "max_drift_ms_per_day"},
    Registry: {"rollback.fraction": "rollback_fraction", "rollback.within": "rollback_within_ms",
               "relocations.per_device_day": "relocations_per_device_day",
               "relocations.cross_region_fraction": "cross_region_fraction"},
    CdcFaults: {"duplicates.rate": "duplicates", "duplicates.max_distance": "duplicate_distance",
                "out_of_order.rate": "out_of_order", "out_of_order.window": "out_of_order_window",
                "late.rate": "late", "late.max": "late_max_ms"},
    Offline: {"duration": "duration_ms", "upload_interval": "upload_interval_ms"},
}
# and two that set two fields: ``replays.length`` ([min_length, max_length]) and ``drift.columns`` (columns and
# max_offset).


def default(cls: type, name: str) -> Any:
    """The default of the field the spec file's ``name`` sets in dataclass ``cls``."""
    field_ = {f.name: f for f in dataclasses.fields(cls)}[YAML_NAMES.get(cls, {}).get(name, name)]
    if field_.default is not dataclasses.MISSING:
        return field_.default
    if field_.default_factory is not dataclasses.MISSING:
        return field_.default_factory()
    raise KeyError(f"{cls.__name__}.{field_.name} has no default")


def example_text() -> str:
    """The documented example spec (``iotgen spec --example``), read as package data."""
    try:
        return importlib.resources.files(__package__).joinpath(EXAMPLE_NAME).read_text(encoding="utf-8")
    except OSError:
        raise InputError(f"the example spec {EXAMPLE_NAME} is missing from the installed iotgen package "
                         "(package data: see [tool.setuptools.package-data] in pyproject.toml)") from None


# ---- reading fields with errors that name them ----------------------------------------------------------------
class _Fields:
    """Reads one mapping of the spec; every error names the file and the field's dotted path."""

    def __init__(self, data: Any, path: str, where: str) -> None:
        self.where, self.path = where, path
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            self.fail(path, f"must be a mapping of field names to values, got {data!r}")
        self.data = dict(data)
        self.used: set[str] = set()

    def fail(self, path: str, message: str) -> NoReturn:
        raise InputError(f"{self.where}: {path} {message}")

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        return self.data.get(key, default)

    def section(self, key: str) -> "_Fields":
        return _Fields(self.raw(key), self.name(key), self.where)

    def number(self, key: str, default: float, low: float | None = None, high: float | None = None,
               strict_low: bool = False) -> float:
        return self.check_number(self.name(key), self.raw(key, default), low, high, strict_low)

    def check_number(self, path: str, value: Any, low=None, high=None, strict_low=False) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value \
            and abs(value) != float("inf")
        ok = ok and (low is None or (value > low if strict_low else value >= low)) and (high is None or value <= high)
        if not ok:
            bounds = []
            if low is not None:
                bounds.append(f"{'>' if strict_low else '>='} {low}")
            if high is not None:
                bounds.append(f"<= {high}")
            self.fail(path, f"must be a number{' ' + ' and '.join(bounds) if bounds else ''}, got {value!r}")
        return float(value)

    def integer(self, key: str, default: int, low: int = 0) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            self.fail(self.name(key), f"must be an integer >= {low}, got {value!r}")
        return value

    def rate(self, key: str = "rate", default: float = 0.0) -> float:
        return self.number(key, default, 0.0, 1.0)

    def duration_ms(self, key: str, default_ms: int, minimum_ms: int = 0) -> int:
        return self.check_duration(self.name(key), self.raw(key, None), default_ms, minimum_ms)

    def check_duration(self, path: str, value: Any, default_ms: int, minimum_ms: int = 0) -> int:
        if value is None:
            return default_ms
        ms = parse_duration_ms(value)
        if ms is None or ms < minimum_ms:
            self.fail(path, f"must be a duration such as 90s, 15m, 2h, 1d or 1h30m (a number is seconds)"
                            f"{' of at least ' + str(minimum_ms) + ' ms' if minimum_ms else ''}, got {value!r}")
        return ms

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.raw(key, default)
        if value not in allowed:
            self.fail(self.name(key), f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def pair(self, key: str, default: tuple[float, float], low: float, high: float) -> tuple[float, float]:
        return self.check_pair(self.name(key), self.raw(key, default), low, high)

    def check_pair(self, path: str, value: Any, low: float, high: float) -> tuple[float, float]:
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            self.fail(path, f"must be a pair [low, high], got {value!r}")
        a, b = (self.check_number(path, v, low, high) for v in value)
        if a > b:
            self.fail(path, f"must be [low, high] with low <= high, got {value!r}")
        return a, b

    def done(self) -> None:
        unknown = [k for k in self.data if k not in self.used]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(str(key), sorted(self.used), n=1)
            hint = f" (did you mean {close[0]}?)" if close else f"; known: {', '.join(sorted(self.used))}"
            self.fail(self.name(str(key)), f"is not a known field{hint}")


def _time_point(fields: _Fields, key: str, window_start_ms: int) -> int:
    """A point in event time as ms after the window start: a duration (``36h``) or an ISO 8601 date-time."""
    value = fields.raw(key)
    path = fields.name(key)
    if isinstance(value, (dt.datetime, dt.date)) or (isinstance(value, str) and re.match(r"^\d{4}-\d{2}-\d{2}", value)):
        moment = parse_datetime(value)
        if moment is None:
            fields.fail(path,
                        f"must be a duration after the window start (36h) or an ISO 8601 date-time, got {value!r}")
        return int(moment.timestamp() * 1000) - window_start_ms
    if value is None:
        fields.fail(path, "is required: a duration after the window start (36h) or an ISO 8601 date-time")
    return fields.check_duration(path, value, 0)


# ---- the spec -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    """A validated spec file. What depends on the catalogs or the time window is checked by :meth:`build`."""

    profile: str | None = None
    catalogs: Mapping[str, Any] = field(default_factory=dict)
    fleet: Mapping[str, Any] = field(default_factory=dict)
    scenarios: Mapping[str, Any] = field(default_factory=dict)
    where: str = "spec"
    registry: Mapping[str, Any] | None = None  # None: no registry section
    rate_profile: Any = None  # the rate_profile section as written (a preset name or a mapping)

    def build_registry(self) -> Registry:
        return _build_registry(self.registry or {}, self.where)

    def build_rate_profile(self, preset: str | None = None) -> RateProfile | None:
        """The streaming rate profile: ``preset`` (``RATE_PROFILE``; None: the section's ``preset``, ``flat``
        when the section is there without one, else off) with the section's fields over the preset's."""
        return _build_rate_profile(self.rate_profile, self.where, preset)

    def build_catalogs(self) -> Catalogs:
        try:
            return Catalogs.build(**self.catalogs)
        except InputError as exc:
            raise InputError(f"{self.where}: catalogs: {exc}") from None

    def build_fleet(self, catalogs: Catalogs, device_count: int, window_start_ms: int) -> Fleet:
        return _build_fleet(self.fleet, catalogs, device_count, self.where, window_start_ms)

    def build_scenarios(self, catalogs: Catalogs, window_start_ms: int) -> Scenarios:
        return _build_scenarios(self.scenarios, catalogs, self.where, window_start_ms)


#: The folder holding the ``iotgen`` package: the project (a Databricks Git folder's root) in a checkout.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def locate(path: str | os.PathLike) -> Path:
    """A spec file's path: absolute as given; relative, the first that exists of the working directory's, the
    project's (the folder holding ``iotgen``) and the package's, so that a notebook finds ``SPEC_FILE`` whatever
    its working directory (serverless does not guarantee one). A file found nowhere is returned as given."""
    given = Path(os.fspath(path)).expanduser()
    if given.is_absolute():
        return given
    for base in (Path.cwd(), PROJECT_ROOT, Path(__file__).resolve().parent):
        if (base / given).is_file():
            return (base / given).resolve()
    return given


def load_spec(source: str | os.PathLike | Mapping[str, Any] | None) -> Spec:
    """Read and validate a spec: a YAML file path (see :func:`locate`), an already-parsed mapping, or None (an
    empty spec)."""
    if source is None:
        return Spec()
    if isinstance(source, Mapping):
        data, where = dict(source), "spec"
    else:
        where = f"SPEC_FILE {os.fspath(source)!r}"
        data = read_yaml_file(locate(source), "SPEC_FILE")
    top = _Fields(data, "", where)
    profile = top.raw("profile")
    if profile is not None and profile not in PROFILES:
        top.fail("profile", f"must be one of {', '.join(PROFILES)}, got {profile!r}")
    catalogs = top.section("catalogs")
    for key in CATALOG_KEYS:
        catalogs.raw(key)
    catalogs.done()
    registry = top.raw("registry")
    spec = Spec(profile, {k: v for k, v in catalogs.data.items()}, top.section("fleet").data,
                top.section("scenarios").data, where,
                None if registry is None or registry is False else _Fields(registry, "registry", where).data,
                rate_profile=top.raw("rate_profile"))
    top.done()
    built = spec.build_catalogs()  # check everything now, against the file's own catalogs
    spec.build_fleet(built, 1, 0)
    spec.build_scenarios(built, 0)
    spec.build_registry()
    spec.build_rate_profile()
    return spec


def rate_profile(config: Config, spec: Spec | None = None) -> RateProfile | None:
    """The rate profile of a stream: ``RATE_PROFILE`` over the spec's (``spec``, else ``SPEC_FILE``'s)
    ``rate_profile`` section; None when it is off."""
    return (spec or load_spec(config.spec_file)).build_rate_profile(config.rate_profile)


def generator_spec(config: Config | None = None, catalogs: Catalogs | None = None, now: dt.datetime | None = None,
                   spec: Spec | Mapping[str, Any] | str | os.PathLike | None = None) -> GeneratorSpec:
    """The GeneratorSpec of a run, the one Config -> spec path: the Config's seed (a fresh one drawn when
    ``RANDOM_SEED`` is unset), event-time window (anchored at ``now``, default the clock, when ``ANCHOR_TIME``
    is unset), ``MIN_KEYS``/``MAX_KEYS``/``NUM_SENSORS``; the spec's catalogs, its fleet (when the profile is
    fleet: PROFILE, else the spec's ``profile``) and its scenarios. The spec is ``spec`` (a :class:`Spec`, a
    mapping as in the YAML file, or a path) or else the file ``SPEC_FILE`` (none: the defaults); ``catalogs``
    given here win over the spec's."""
    config = config or Config()
    if not isinstance(spec, Spec):
        spec = load_spec(spec if spec is not None else config.spec_file)
    catalogs = catalogs or spec.build_catalogs()
    start = config.resolved_anchor_time(now) - dt.timedelta(days=config.base_time_days_ago)
    window_start_ms = int(start.timestamp() * 1000)
    profile = config.profile or spec.profile or "independent"
    fleet = None
    if profile == "fleet":
        count = config.device_count or spec.fleet.get("device_count") or config.num_sensors
        fleet = spec.build_fleet(catalogs, count, window_start_ms)
    scenarios = spec.build_scenarios(catalogs, window_start_ms)
    registry = config.device_registry if config.device_registry is not None else spec.registry is not None
    if registry:
        if fleet is None:
            why = "" if config.device_registry else \
                " and a registry section in the spec (DEVICE_REGISTRY=false ignores it)"
            raise InputError("DEVICE_REGISTRY needs the fleet profile (PROFILE=fleet or the spec's profile: fleet), "
                             f"got the {profile} profile{why}")
        fleet = dataclasses.replace(fleet, registry=spec.build_registry())
    for name in ("offline", "dropped"):
        if fleet is None and getattr(scenarios, name):
            raise InputError(f"{spec.where}: scenarios.{name} needs the fleet profile (PROFILE=fleet or profile: "
                             "fleet): the independent profile has no devices' reporting schedule")
    return GeneratorSpec(
        seed=_fresh_seed() if config.random_seed is None else config.random_seed,
        catalogs=catalogs,
        window_start_ms=window_start_ms,
        window_span_ms=max(1, int(round(config.time_spread_hours * HOUR_MS))),
        min_keys=config.min_keys,
        max_keys=config.max_keys,
        num_sensors=config.num_sensors,
        fleet=fleet,
        scenarios=scenarios if scenarios.enabled() else None,
    )


def _fresh_seed() -> int:
    """A seed from the OS's entropy, in [0, 2**63)."""
    return int(np.random.SeedSequence().generate_state(2, np.uint32).view(np.uint64)[0] >> np.uint64(1))


# ---- fleet ------------------------------------------------------------------------------------------------------
def _build_fleet(data: Mapping[str, Any], catalogs: Catalogs, device_count: int, where: str,
                 window_start_ms: int) -> Fleet:
    f = _Fields(data, "fleet", where)
    f.integer("device_count", device_count, 1)
    types, regions, models = catalogs.device_types.values, catalogs.regions.values, catalogs.models.values

    def known(path: str, name: str, allowed: tuple[str, ...], catalog: str) -> None:
        if name not in allowed:
            f.fail(path, f"is not in {catalog} ({', '.join(allowed)})")

    intervals = f.section("interval_s")
    # A "default" replaces the built-in per-type intervals; types listed here override either.
    by_type = {} if intervals.has("default") else dict(DEFAULT_INTERVALS_S)
    default_interval = intervals.number("default", default(Fleet, "interval_s.default"), 1.0)
    for key in intervals.data:
        if key != "default":
            known(intervals.name(key), key, types, "DEVICE_TYPES")
            by_type[key] = intervals.number(key, 0, 1.0)
    intervals.done()
    climates = dict(DEFAULT_CLIMATES)
    climate = f.section("climate")
    default_climate = _climate(climate.section("default"), Climate()) if climate.has("default") else Climate()
    for key in climate.data:
        if key != "default":
            known(climate.name(key), key, regions, "REGIONS")
            climates[key] = _climate(climate.section(key), climates.get(key, default_climate))
    climate.done()
    series: dict[str, Any] = {name: _series(f.section(name), DEFAULT_SERIES[name]) for name in DEFAULT_SERIES}
    battery = f.section("battery")
    drain = battery.number("drain_pct_per_day", default(Fleet, "battery.drain_pct_per_day"), 0.0, 100.0,
                           strict_low=True)
    recharge = battery.pair("recharge_below_pct", default(Fleet, "battery.recharge_below_pct"), 0.0, 95.0)
    battery.done()
    reboots = f.section("reboots")
    reboot_days = reboots.number("every_days", default(Fleet, "reboots.every_days"), 0.0, strict_low=True)
    reboots.done()
    faults = f.section("faults")
    per_day = faults.number("per_day", default(Fleet, "faults.per_day"), 0.0)
    error_hours = faults.number("error_hours", default(Fleet, "faults.error_hours"), 0.0)
    faults.done()
    calibration = f.section("calibration")
    every = calibration.pair("every_days", default(Fleet, "calibration.every_days"), 0.01, 3650.0)
    maintenance = calibration.number("maintenance_hours", default(Fleet, "calibration.maintenance_hours"), 0.0)
    calibration.done()
    firmware = f.section("firmware")
    initial = _weights(firmware, "initial", dict(default(Fleet, "firmware.initial")))
    rollouts = []
    raw_rollouts = firmware.raw("rollouts", None)
    if raw_rollouts is None:
        rollouts = list(default(Fleet, "firmware.rollouts"))
    elif not isinstance(raw_rollouts, list):
        firmware.fail(firmware.name("rollouts"), f"must be a list of rollouts, got {raw_rollouts!r}")
    else:
        for i, item in enumerate(raw_rollouts):
            r = _Fields(item, f"{firmware.name('rollouts')}[{i}]", where)
            version = r.raw("version")
            if not isinstance(version, str) or not version:
                r.fail(r.name("version"), f"must be a version string such as \"3.2.0\", got {version!r}")
            start = _time_point(r, "start", window_start_ms)
            rollouts.append(Rollout(version, start, r.duration_ms("duration", default(Rollout, "duration")),
                                    r.rate("fraction", default(Rollout, "fraction"))))
            r.done()
    firmware.done()
    model_map = dict(DEFAULT_MODELS)
    model_section = f.section("models")
    for key, value in model_section.data.items():
        model_section.raw(key)
        known(model_section.name(key), key, types, "DEVICE_TYPES")
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not names or not all(isinstance(v, str) for v in names):
            model_section.fail(model_section.name(key), f"must be a model name or a list of them, got {value!r}")
        for name in names:
            known(model_section.name(key), name, models, "MODELS")
        model_map[key] = tuple(names)
    model_section.done()
    status_section = f.section("status")
    status = {role: role for role in STATUS_ROLES}
    for role in STATUS_ROLES:
        value = status_section.raw(role, role)
        if not isinstance(value, str):
            status_section.fail(status_section.name(role), f"must be a STATUS_VALUES value, got {value!r}")
        status[role] = value
    status_section.done()
    fleet = Fleet(
        device_count=device_count,
        interval_s=tuple(by_type.items()),
        default_interval_s=default_interval,
        interval_spread=f.number("interval_spread", default(Fleet, "interval_spread"), 0.0, 2.0),
        jitter=f.number("jitter", default(Fleet, "jitter"), 0.0, 0.9),
        climate=tuple(climates.items()),
        default_climate=default_climate,
        battery_drain_pct_per_day=drain,
        recharge_below_pct=recharge,
        reboot_every_days=reboot_days,
        faults_per_day=per_day,
        error_hours=error_hours,
        calibration_every_days=every,
        maintenance_hours=maintenance,
        idle_fraction=f.rate("idle_fraction", default(Fleet, "idle_fraction")),
        firmware_initial=tuple(initial.items()),
        rollouts=tuple(rollouts),
        models=tuple(model_map.items()),
        status=tuple(status.items()),
        **series,
    )
    f.done()
    try:
        fleet.check(catalogs)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    return fleet


def _climate(f: _Fields, base: Climate) -> Climate:
    values = {name: f.number(name, getattr(base, name), None if name != "humidity_pct" else 0.0)
              for name in Climate.__dataclass_fields__}
    f.done()
    return Climate(**values)


def _series(f: _Fields, base: Series) -> Series:
    values = {}
    for name in Series.__dataclass_fields__:
        positive = name.endswith("_hours")
        values[name] = f.number(name, getattr(base, name), 0.0, strict_low=positive)
    f.done()
    return Series(**values)


def _weights(f: _Fields, key: str, default: Mapping[str, float]) -> dict[str, float]:
    value = f.raw(key, default)
    if isinstance(value, str):
        value = {value: 1.0}
    if isinstance(value, list):
        value = {v: 1.0 for v in value}
    if not isinstance(value, Mapping) or not value:
        f.fail(f.name(key), f"must be a version, a list of versions or a mapping version: weight, got {value!r}")
    out = {}
    for name, weight in value.items():
        if not isinstance(name, str) or not name:
            f.fail(f.name(key), f"versions must be strings (quote them: \"3.1.4\"), got {name!r}")
        out[name] = f.check_number(f"{f.name(key)}.{name}", weight, 0.0)
    if sum(out.values()) <= 0:
        f.fail(f.name(key), "weights must have a positive sum")
    return out


# ---- the streaming rate profile -------------------------------------------------------------------------------
def _build_rate_profile(data: Any, where: str, preset: str | None) -> RateProfile | None:
    if isinstance(data, str):
        data = {"preset": data}
    f = _Fields(data if data not in (None, False) else {}, "rate_profile", where)
    given = f.choice("preset", "flat" if f.data else "off", PRESETS)
    chosen = preset or given
    base = RateProfile.named(chosen) or RateProfile()  # off: its fields are checked like flat's, then dropped
    timezone = f.raw("timezone", base.timezone)
    try:
        timezone = normal_timezone(timezone)
    except InputError as exc:
        f.fail(f.name("timezone"), str(exc).split(" ", 1)[1])
    bursts = base.bursts
    if f.has("bursts") and f.data["bursts"] in (None, False):
        f.raw("bursts")
        bursts = None
    elif f.has("bursts"):
        b = f.section("bursts")
        default = bursts or Bursts()
        per_hour = b.number("per_hour", default.per_hour, 0.0, 3600.0, strict_low=True)
        duration = b.duration_ms("duration", int(default.duration_s * 1000), 1000) / 1000
        if duration > 3600 / per_hour:
            b.fail(b.name("duration"), f"must be at most the time between bursts (1 h / per_hour = "
                                       f"{3600 / per_hour:g} s), got {duration:g} s")
        bursts = Bursts(per_hour, b.number("size", default.size, 1.0, 1000.0), duration)
        b.done()
    profile = RateProfile(
        preset=chosen,
        peak_to_trough=f.number("peak_to_trough", base.peak_to_trough, 1.0, 1000.0),
        peak_hour=f.number("peak_hour", base.peak_hour, 0.0, 24.0) % 24,
        timezone=timezone,
        bursts=bursts,
        speed=f.number("speed", base.speed, 0.0, 1e6, strict_low=True),
    )
    f.done()
    return None if chosen == "off" else profile


# ---- scenarios ----------------------------------------------------------------------------------------------
def _build_scenarios(data: Mapping[str, Any], catalogs: Catalogs, where: str, window_start_ms: int) -> Scenarios:
    s = _Fields(data, "scenarios", where)
    built: dict[str, Any] = {}

    def section(key: str, build: Callable[[_Fields], Any]) -> None:
        if s.has(key) and s.raw(key) not in (None, False):
            f = s.section(key)
            value = build(f)
            f.done()
            built[key] = value
        else:
            s.raw(key)

    section("offline", _offline)
    section("dropped", lambda f: Dropped(f.number("rate", 0.0, 0.0, MAX_DROP_RATE)))
    section("late", _late)
    section("stuck", lambda f: _episodes(f, Stuck))
    section("drift", lambda f: _episodes(f, Drift))
    section("spikes", _spikes)
    section("out_of_range", _out_of_range)
    section("clock_skew", lambda f: ClockSkew(
        f.rate("device_fraction"), f.duration_ms("max_offset", default(ClockSkew, "max_offset")),
        f.duration_ms("max_drift_per_day", default(ClockSkew, "max_drift_per_day"))))
    section("malformed_json", _malformed)
    section("duplicates", lambda f: Duplicates(
        f.rate(), f.integer("max_distance", default(Duplicates, "max_distance"), 1)))
    section("replays", _replays)
    section("out_of_order", lambda f: OutOfOrder(
        f.rate(), f.integer("max_distance", default(OutOfOrder, "max_distance"), 1)))
    nulls = s.section("nulls")
    pairs = []
    for column in nulls.data:
        if column not in COLUMN_NAMES:
            nulls.fail(nulls.name(str(column)), f"is not a column ({', '.join(COLUMN_NAMES)})")
        pairs.append((column, nulls.rate(column)))
    nulls.done()
    changes = s.raw("schema_drift", None) or []
    if not isinstance(changes, list):
        s.fail(s.name("schema_drift"), f"must be a list of changes, got {changes!r}")
    drift = tuple(_drift_change(_Fields(item, f"scenarios.schema_drift[{i}]", where), catalogs, window_start_ms)
                  for i, item in enumerate(changes))
    s.done()
    if built.get("duplicates") and built.get("replays") and built["duplicates"].rate + built["replays"].rate > 0.5:
        s.fail("scenarios.duplicates.rate + scenarios.replays.rate", "must be <= 0.5")
    off = {key: value for key, value in built.items()
           if getattr(value, "rate", getattr(value, "device_fraction", 1)) > 0}
    return Scenarios(nulls=tuple(pairs), schema_drift=tuple(sorted(drift, key=lambda c: c.at_ms)), **off)


def _offline(f: _Fields) -> Offline:
    rate = f.rate()
    duration = f.duration_ms("duration", default(Offline, "duration"), 1000)
    buffer = f.integer("buffer", default(Offline, "buffer"), 0)
    overflow = f.choice("overflow", default(Offline, "overflow"), OVERFLOW_POLICIES)
    step = f.duration_ms("upload_interval", default(Offline, "upload_interval"), 1)
    most = Offline.max_rate(duration, buffer * step)
    if rate > most:
        f.fail(f.name("rate"), f"must be <= duration / (duration + buffer * upload_interval) = {most:.6g} (each gap "
                               f"and its upload fit in one period of duration / rate), got {rate}")
    return Offline(rate, duration, buffer, overflow, step)


def _late(f: _Fields) -> Lateness:
    distribution = f.choice("distribution", default(Lateness, "distribution"), LATENESS_DISTRIBUTIONS)
    minimum = f.duration_ms("min", default(Lateness, "min"))
    maximum = f.duration_ms("max", default(Lateness, "max"), 1)
    if minimum > maximum:
        f.fail(f.name("min"), f"must be <= max ({maximum} ms), got {minimum} ms")
    scale_name = {"exponential": "mean", "lognormal": "median"}.get(distribution)
    scale = None if scale_name is None else f.duration_ms(scale_name, LATENESS_SCALE_MS[distribution], 1)
    sigma = default(Lateness, "sigma")
    if distribution == "lognormal":
        sigma = f.number("sigma", sigma, 0.0, 5.0, strict_low=True)
    return Lateness(f.rate(), distribution, scale, sigma, minimum, maximum)


def _columns(f: _Fields, key: str, allowed: tuple[str, ...], default: Any) -> Any:
    value = f.raw(key, default)
    names = list(value) if isinstance(value, (list, Mapping)) else [value]
    if not names or not all(name in allowed for name in names):
        f.fail(f.name(key), f"must list columns among {', '.join(allowed)}, got {value!r}")
    if len(set(names)) != len(names):
        f.fail(f.name(key), f"must not repeat a column, got {value!r}")
    return value


def _episodes(f: _Fields, kind: type[Episodes]) -> Episodes:
    rate = f.rate()
    duration = f.duration_ms("duration", default(kind, "duration"), 1000)
    columns = _columns(f, "columns", ANOMALY_COLUMNS, list(default(kind, "columns")))
    offsets: tuple[tuple[str, float], ...] = ()
    if kind is Drift:
        mapping = columns if isinstance(columns, Mapping) else {c: DEFAULT_DRIFT[c] for c in columns}
        offsets = tuple((c, f.check_number(f"{f.name('columns')}.{c}", v, 0.0, strict_low=True))
                        for c, v in mapping.items())
    elif isinstance(columns, Mapping):
        f.fail(f.name("columns"), f"must be a list of columns, got {columns!r}")
    return kind(rate, duration, tuple(columns), offsets)


def _spikes(f: _Fields) -> Spikes:
    columns = _columns(f, "columns", ANOMALY_COLUMNS, ["temperature"])
    mapping = columns if isinstance(columns, Mapping) else {c: DEFAULT_SPIKES[c] for c in columns}
    pairs = []
    for column, magnitude in mapping.items():
        pairs.append((column, f.check_pair(f.name(f"columns.{column}"), magnitude, 0.0, 10_000.0)))
    return Spikes(f.rate(), tuple(pairs))


def _out_of_range(f: _Fields) -> OutOfRange:
    columns = _columns(f, "columns", tuple(OUT_OF_RANGE_VALUES), list(OutOfRange.columns))
    if isinstance(columns, Mapping):
        f.fail(f.name("columns"), f"must be a list of columns, got {columns!r}")
    return OutOfRange(f.rate(), tuple(columns))


def _malformed(f: _Fields) -> MalformedJson:
    kinds = f.raw("kinds", dict(MalformedJson.kinds))
    if isinstance(kinds, list):
        kinds = {k: 1.0 for k in kinds}
    if not isinstance(kinds, Mapping) or not kinds:
        f.fail(f.name("kinds"), f"must map kinds ({', '.join(MALFORMED_KINDS)}) to weights, got {kinds!r}")
    pairs = []
    for kind, weight in kinds.items():
        if kind not in MALFORMED_KINDS:
            f.fail(f.name(f"kinds.{kind}"), f"is not a kind ({', '.join(MALFORMED_KINDS)})")
        pairs.append((kind, f.check_number(f.name(f"kinds.{kind}"), weight, 0.0)))
    if sum(w for _, w in pairs) <= 0:
        f.fail(f.name("kinds"), "weights must have a positive sum")
    return MalformedJson(f.rate(), tuple(pairs))


def _replays(f: _Fields) -> Replays:
    low, high = f.pair("length", (default(Replays, "min_length"), default(Replays, "max_length")), 1, 100_000)
    if low != int(low) or high != int(high):
        f.fail(f.name("length"), f"must be whole numbers of events, got {[low, high]!r}")
    distance = f.integer("max_distance", default(Replays, "max_distance"), 1)
    if distance < high:
        f.fail(f.name("max_distance"), f"must be >= the longest replay ({int(high)}), got {distance}")
    return Replays(f.rate(), int(low), int(high), distance)


def _drift_change(f: _Fields, catalogs: Catalogs, window_start_ms: int) -> DriftChange:
    at = _time_point(f, "at", window_start_ms)
    operations = [op for op in DRIFT_OPERATIONS if f.has(op)]
    if len(operations) != 1:
        f.fail(f.path, f"must have exactly one of {', '.join(DRIFT_OPERATIONS)} (the key it acts on), "
                       f"got {sorted(k for k in f.data if k != 'at')!r}")
    operation = operations[0]
    key = f.raw(operation)
    if not isinstance(key, str) or not key:
        f.fail(f.name(operation), f"must be a key name, got {key!r}")
    pool = dict(catalogs.key_pool)
    value = to = None
    if operation == "add_key":
        if key in pool:
            f.fail(f.name(operation), f"{key!r} is already in IOT_KEY_POOL: add a new key")
        raw = f.raw("value", ["choice", ["a", "b"]])
        try:
            value = ValueSpec.parse(key, raw, f.name("value"))
        except InputError as exc:
            f.fail(f.name("value"), f"must be a value spec such as [choice, [stable, beta]] or [int, 0, 10]: {exc}")
        if value.kind == "object":
            f.fail(f.name("value"), "cannot be an object spec: use a scalar or array spec")
    else:
        kind = pool[key].kind if key in pool else None
        if kind is None:
            f.fail(f.name(operation), f"{key!r} is not in IOT_KEY_POOL")
        if operation == "change_type":
            to = f.choice("to", "string", DRIFT_TYPES)
            scalar = ("int",) if to == "float" else ("int", "float", "bool")
            if kind not in scalar:
                f.fail(f.name("to"), f"{to} needs a key whose values are {' or '.join(scalar)}; {key!r} is {kind}")
    f.done()
    return DriftChange(at, operation, key, value, to)


# ---- registry ---------------------------------------------------------------------------------------------------
def _build_registry(data: Mapping[str, Any], where: str) -> Registry:
    f = _Fields(data, "registry", where)
    rollback, relocations = f.section("rollback"), f.section("relocations")
    registry = Registry(
        commissioned_fraction=f.rate("commissioned_fraction", default(Registry, "commissioned_fraction")),
        install_days=f.number("install_days", default(Registry, "install_days"), 0.0, 36_500.0),
        rollback_fraction=rollback.rate("fraction", default(Registry, "rollback.fraction")),
        rollback_within_ms=rollback.duration_ms("within", default(Registry, "rollback.within"), 1),
        relocations_per_device_day=relocations.number("per_device_day", default(Registry, "relocations.per_device_day"),
                                                      0.0, 100.0),
        cross_region_fraction=relocations.rate("cross_region_fraction",
                                               default(Registry, "relocations.cross_region_fraction")),
        replacements_per_device_day=f.number("replacements_per_device_day",
                                             default(Registry, "replacements_per_device_day"), 0.0, 100.0),
        decommissions_per_device_day=f.number("decommissions_per_device_day",
                                              default(Registry, "decommissions_per_device_day"), 0.0, 100.0),
        faults=_cdc_faults(f.section("faults")),
    )
    rollback.done()
    relocations.done()
    f.done()
    return registry


def _cdc_faults(f: _Fields) -> CdcFaults:
    duplicates, disorder, late = f.section("duplicates"), f.section("out_of_order"), f.section("late")
    faults = CdcFaults(
        duplicates=duplicates.rate("rate", default(CdcFaults, "duplicates.rate")),
        duplicate_distance=duplicates.integer("max_distance", default(CdcFaults, "duplicates.max_distance"), 1),
        out_of_order=disorder.rate("rate", default(CdcFaults, "out_of_order.rate")),
        out_of_order_window=disorder.integer("window", default(CdcFaults, "out_of_order.window"), 1),
        late=late.rate("rate", default(CdcFaults, "late.rate")),
        late_max_ms=late.duration_ms("max", default(CdcFaults, "late.max"), 1),
    )
    for section in (duplicates, disorder, late):
        section.done()
    f.done()
    return faults


# ---- describing a run -------------------------------------------------------------------------------------------
def describe(spec: GeneratorSpec) -> dict[str, Any]:
    """What a manifest records of the fleet and the scenarios (JSON-ready)."""
    out: dict[str, Any] = {"profile": "fleet" if spec.fleet is not None else "independent"}
    if spec.fleet is not None:
        out["device_count"] = spec.fleet.device_count
        out["events_per_hour"] = round(spec.fleet.events_per_hour(spec), 3)
        registry = registry_of(spec)
        if registry is not None:
            out["registry"] = _jsonable(registry)
    if spec.scenarios is not None:
        out["scenarios"] = _jsonable(spec.scenarios)
        out["schema_drift"] = drift_timeline(spec)
    return out


def drift_timeline(spec: GeneratorSpec) -> list[dict[str, Any]]:
    """The schema-drift changes in time order: when (ISO 8601), what."""
    changes = spec.scenarios.schema_drift if spec.scenarios is not None else ()
    return [{"at": iso_time(spec.window_start_ms + c.at_ms), "operation": c.operation, "key": c.key,
             "to": c.to, "change": c.describe()} for c in changes]


def _jsonable(value: Any) -> Any:
    if isinstance(value, ValueSpec):
        return [value.kind, *(_jsonable(list(p) if isinstance(p, tuple) else p) for p in value.params)]
    if dataclasses.is_dataclass(value):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)
                if getattr(value, f.name) not in (None, ())}
    if isinstance(value, tuple) and value and all(isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str)
                                                  for v in value):
        return {k: _jsonable(v) for k, v in value}
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value
