"""One Config for every face (notebook parameters, papermill ``-p``, YAML file, CLI flags, env vars, widgets).

Each parameter has one canonical UPPER_CASE name (the seed notebook's) and a lower-case attribute on
:class:`Config`. Sources are merged in this order, later wins:

1. the defaults below;
2. a YAML file (``CONFIG_FILE`` / ``--config``), keys in either case;
3. environment variables ``IOTGEN_<NAME>`` (e.g. ``IOTGEN_NUM_EVENTS=5000``);
4. notebook parameters (the ``parameters`` cell, papermill ``-p``) and Databricks widgets;
5. CLI flags.

Secrets never come from 2 or 4: ``EVENTHUB_CONNECTION_STRING`` is read from the environment variable of that
name, or from a Databricks secret (``EVENTHUB_SECRET_SCOPE``/``EVENTHUB_SECRET_KEY``) by the notebook helper, or
not at all (Azure AD). It is held as a :class:`Secret`, which never shows its value in ``repr``/``str``/logs.
Every value is validated when a Config is built; a bad one raises one :class:`~iotgen.base.errors.InputError` (a
``ValueError``) naming the parameter and what is allowed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from ..base.errors import InputError
from ..base.times import HOUR_MS, parse_datetime, parse_duration_ms
from ..base.values import parse_bool, parse_choice, parse_int, parse_number, show_bound

ENV_PREFIX = "IOTGEN_"
# IOTGEN_* variables that belong to other faces, not to Config: the YAML file's path, the local endpoint's key,
# the benchmarks' sizes. Any other IOTGEN_<NAME> must be a parameter (a typo is an error, not ignored).
OTHER_ENV = ("IOTGEN_CONFIG", "IOTGEN_EMULATOR_KEY", "IOTGEN_EMULATOR_BENCHMARK_EVENTS")
SECRET_PARAMS = ("EVENTHUB_CONNECTION_STRING", "KAFKA_SASL_PASSWORD")
FILE_FORMATS = ("ndjson", "json", "parquet", "csv")
TABLE_FORMATS = ("delta", "iceberg")
CDC_LAYOUTS = ("flat", "debezium")  # the device change feed's layouts (iotgen.generation.devices)
RATE_PROFILES = ("off", "flat", "daily", "bursts", "daily+bursts")


class Secret:
    """A secret string that never reveals itself in ``repr``, ``str`` or f-strings: call :meth:`reveal`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self):
        return (Secret, (self._value,))


_Parser = TypeVar("_Parser", bound=Callable[..., Any])


def _allowing(allowed: str) -> Callable[[_Parser], _Parser]:
    """Attach the human description of what a parser accepts (shown in the configuration table and ``--help``)."""

    def attach(parse: _Parser) -> _Parser:
        parse.allowed = allowed  # type: ignore[attr-defined]
        return parse

    return attach


def _integer(minimum: int = 0, maximum: int = 10**12) -> Callable[[str, Any], int]:
    return _allowing(f"{show_bound(minimum)} - {show_bound(maximum)}")(lambda n, v: parse_int(n, v, minimum, maximum))


def _number(minimum: float = 0.0, maximum: float = 1e12, strict: bool = False) -> Callable[[str, Any], float]:
    low = f"> {show_bound(minimum)}" if strict else f"{show_bound(minimum)}"
    allowed = f"{low} - {show_bound(maximum)}" if not strict else f"{low}, <= {show_bound(maximum)}"
    return _allowing(allowed)(lambda n, v: parse_number(n, v, minimum, strict, maximum))


_bool = _allowing("true | false")(parse_bool)


@_allowing("text")
def _text(name: str, value: Any, allow_empty: bool = True) -> str:
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise InputError(f"{name} must be a {'' if allow_empty else 'non-empty '}string, got {value!r}")
    return value


def _nonempty(name: str, value: Any) -> str:
    return _text(name, value, False)


_nonempty.allowed = "non-empty text"  # type: ignore[attr-defined]


def _optional(parse: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    def parse_optional(name: str, value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
            return None
        return parse(name, value)

    return _allowing(f"{parse.allowed}, or None")(parse_optional)  # type: ignore[attr-defined]


def _choice(*allowed: str) -> Callable[[str, Any], str]:
    return _allowing(" | ".join(allowed))(lambda name, value: parse_choice(name, value, allowed))


def parse_trigger(text: Any, name: str = "SPARK_TRIGGER") -> dict[str, Any]:
    """A Spark trigger, ``availableNow`` | ``once`` | an interval (``10 seconds``, ``500ms``, ``2 min``, also as
    ``processingTime=<interval>``), as ``DataStreamWriter.trigger()`` keyword arguments; one InputError naming
    ``name`` otherwise."""
    value = str(text).strip()
    if value.replace("_", "").replace("-", "").lower() in ("availablenow", ""):
        return {"availableNow": True}
    if value.lower() == "once":
        return {"once": True}
    ms = parse_duration_ms(re.sub(r"^processingtime\s*[:=]", "", value, flags=re.IGNORECASE))
    if ms is None or ms <= 0:
        raise InputError(f"{name} must be availableNow, once or an interval such as '10 seconds', got {text!r}")
    for word, size in (("hours", HOUR_MS), ("minutes", 60_000), ("seconds", 1000)):
        if ms % size == 0:
            return {"processingTime": f"{ms // size} {word}"}
    return {"processingTime": f"{ms} milliseconds"}


@_allowing("availableNow | once | an interval such as '10 seconds'")
def _trigger(name: str, value: Any) -> str:
    parse_trigger(value, name)
    return str(value).strip()


# Event times the generator can write (with last_calibration up to a year before and updated_at an hour after).
EARLIEST_TIME = dt.datetime(1971, 1, 1, tzinfo=dt.timezone.utc)
LATEST_TIME = dt.datetime(9998, 1, 1, tzinfo=dt.timezone.utc)


@_allowing(f"ISO 8601 from {EARLIEST_TIME:%Y-%m-%d} to {LATEST_TIME:%Y-%m-%d} (UTC)")
def _anchor_time(name: str, value: Any) -> dt.datetime:
    moment = parse_datetime(value)
    if moment is None:
        raise InputError(f"{name} must be an ISO 8601 date-time such as 2026-01-31T00:00:00Z, got {value!r}")
    value = moment
    try:
        value = value.astimezone(dt.timezone.utc)
        inside = EARLIEST_TIME <= value <= LATEST_TIME
    except OverflowError:
        inside = False
    if not inside:
        raise InputError(f"{name} must be from {EARLIEST_TIME:%Y-%m-%d} to {LATEST_TIME:%Y-%m-%d} (UTC), got "
                         f"{value.isoformat()}")
    return value


@_allowing("a file-name prefix (no path separators, not starting with '.')")
def _filename_prefix(name: str, value: Any) -> str:
    value = _text(name, value, False)
    if any(c in value for c in "/\\\0") or value.startswith("."):
        raise InputError(f"{name} must be a plain file-name prefix (no path separators, not starting with '.'), "
                         f"got {value!r}")
    return value


def _param(default: Any, parse: Callable[[str, Any], Any], doc: str, secret: bool = False) -> Any:
    return field(default=default, metadata={"parse": parse, "doc": doc, "secret": secret})


@dataclass(frozen=True)
class Config:
    """Every parameter of a run. Build with :meth:`load` (merging sources) or directly (validated)."""

    # Batch generation
    num_events: int = _param(1000, _integer(0, 10**12), "Events to generate in a batch run.")
    min_keys: int = _param(5, _integer(1, 1000), "Fewest top-level keys in json_column.")
    max_keys: int = _param(25, _integer(1, 1000), "Most top-level keys in json_column (<= key pool size).")
    random_seed: int | None = _param(
        None, _optional(_integer(0, 2**64 - 1)), "Seed for identical output; None draws a fresh seed.")
    base_time_days_ago: float = _param(
        7.0, _number(0, 36_500), "The event-time window starts this many days before ANCHOR_TIME.")
    time_spread_hours: float = _param(
        168.0, _number(0, 876_000, strict=True), "Length of the event-time window in hours.")
    anchor_time: dt.datetime | None = _param(
        None, _optional(_anchor_time),
        "Reference 'now' of the time window (ISO 8601, UTC); None means the start of the current UTC day.")
    num_sensors: int = _param(1000, _integer(1, 10**9), "Distinct sensor_id values (sensor-00001...).")
    # Files
    output_dir: str = _param("output", _nonempty, "Folder (or Volume path) for output files.")
    save_json: bool = _param(True, _bool, "Write the batch to a file under OUTPUT_DIR.")
    output_filename_prefix: str = _param(
        "iot_events", _filename_prefix, "File names are PREFIX_YYYYMMDD_HHMMSS.<ext>.")
    output_format: str = _param("ndjson", _choice(*FILE_FORMATS, *TABLE_FORMATS),
        "ndjson | json (one array) | parquet | csv | delta | iceberg (tables, see docs/lakehouse.md).")
    events_per_file: int = _param(
        1_000_000, _integer(1, 10**12), "Larger runs are split into parts with a manifest.")
    chunk_size: int = _param(65_536, _integer(1, 4_194_304), "Events generated per chunk (bounds memory).")
    workers: int = _param(1, _integer(1, 256), "Worker processes for generation.")
    preview_events: int = _param(
        100_000, _integer(0, 10_000_000),
        "A notebook's batch preview holds every event up to this many, else an even sample of this many.")
    # Event Hubs
    eventhub_namespace: str = _param("", _text, "Event Hubs namespace (for Azure AD auth), e.g. myns.")
    eventhub_name: str = _param("", _text, "Event hub (entity) name.")
    eventhub_connection_string: Secret | None = _param(
        None,
        _optional(_allowing("connection string")(lambda n, v: v if isinstance(v, Secret) else Secret(_nonempty(n, v)))),
        "Secret: only from the EVENTHUB_CONNECTION_STRING env var or a Databricks secret.", secret=True)
    eventhub_secret_scope: str = _param("", _text, "Databricks secret scope holding the connection string.")
    eventhub_secret_key: str = _param("", _text, "Databricks secret key holding the connection string.")
    eventhub_service_credential: str = _param(
        "", _text, "Databricks (16.1+): Unity Catalog service credential for Event Hubs (Kafka route and producer).")
    eventhub_transport: str = _param(
        "amqp", _choice("amqp", "websockets"), "amqp (port 5671) | websockets (AMQP over WebSockets, port 443).")
    eventhub_local_endpoint: str = _param(
        "auto", _choice("auto", "yes", "no"),
        "No event hub configured: auto starts the local endpoint, except on Databricks; yes: there too; no: never.")
    batch_size: int = _param(500, _integer(1, 1_000_000), "Events per send in streaming.")
    sleep_interval_sec: float = _param(1.0, _number(0, 86_400), "Pause between streaming batches, in seconds.")
    # Lakehouse / Spark
    catalog_volume_path: str = _param("", _text, "Databricks Volume for checkpoints, e.g. /Volumes/cat/schema/vol.")
    delta_table_name: str = _param("iot_events", _text, "Delta table name (or path).")
    iceberg_table_name: str = _param("iot.iot_events", _text, "Iceberg table as namespace.table.")
    checkpoint_dir: str = _param("", _text, "Streaming checkpoint folder; empty means CATALOG_VOLUME_PATH/checkpoints.")

    # Lakehouse: Delta / Iceberg tables and the Event Hubs -> table ingest (issue 4)
    json_column_mode: str = _param(
        "variant", _choice("variant", "string"), "Delta json_column type: variant (VARIANT) or string (JSON text).")
    iceberg_catalog_uri: str = _param(
        "", _text, "Iceberg SQL catalog (sqlite:///path/catalog.db or a folder); empty: OUTPUT_DIR/iceberg.")
    ingest_consumer_group: str = _param(
        "$Default", _nonempty, "Event Hubs consumer group the ingest reads with.")
    ingest_max_batch_events: int = _param(
        10_000, _integer(1, 10_000_000), "The ingest commits at most this many events per table commit.")
    ingest_max_batch_seconds: float = _param(
        5.0, _number(0, 86_400, strict=True), "The ingest commits buffered events at least this often.")
    ingest_until_idle: float | None = _param(
        None, _optional(_number(0, 1e8, strict=True)),
        "Stop the ingest after this many seconds without events; None runs until Ctrl-C.")
    ingest_available_now: bool = _param(
        False, _bool, "Ingest what the event hub holds at start, then stop (like Spark's availableNow trigger).")

    # Streaming (Event Hubs)
    stream_events: int | None = _param(
        None, _optional(_integer(0, 10**12)),
        "Events to stream; None streams until STREAM_DURATION_SEC, Ctrl-C or Stop.")
    stream_duration_sec: float | None = _param(
        None, _optional(_number(0, 1e9, strict=True)), "Stop streaming after this many seconds.")
    rate_events_per_sec: float | None = _param(
        None, _optional(_number(0, 1e8, strict=True)),
        "Target events/s (token bucket); None sends BATCH_SIZE events every SLEEP_INTERVAL_SEC (0: no limit).")
    max_mb_per_sec: float | None = _param(
        None, _optional(_number(0, 100_000, strict=True)), "Cap on sent MB/s (1 MB = 10^6 bytes).")
    ramp_up_sec: float = _param(0.0, _number(0, 86_400), "Climb linearly to the target rate over this many seconds.")
    rate_profile: str | None = _param(
        None, _optional(_choice(*RATE_PROFILES)),
        "Streaming load over the day: a daily curve in the devices' local time and/or bursts (parameters: the spec "
        "file's rate_profile section); None: the spec file's, else off.")
    partition_key: str = _param(
        "sensor_id", _choice("sensor_id", "none"), "sensor_id keeps each device's events in order; none spreads.")
    max_batch_bytes: int | None = _param(
        None, _optional(_integer(16_384, 104_857_600)),
        "Largest EventDataBatch in bytes; None uses the link's maximum (1 MB Standard/Premium, 256 KB Basic).")
    stream_time_mode: str = _param(
        "live", _choice("live", "window"), "live: event times re-based to send time; window: as generated.")
    send_timeout_sec: float = _param(
        30.0, _number(0, 3600, strict=True), "Time-out of one send (and of connecting), seconds.")
    send_retries: int = _param(
        8, _integer(0, 100), "Retries of a batch (exponential back-off) before it counts as failed.")
    stream_start_event: int = _param(
        0, _integer(0, 10**12), "Index of the first event to stream (resume a stopped stream).")
    stream_changes_hub: str = _param(
        "", _text, "Event hub (Kafka topic with STREAM_PROTOCOL=kafka) that also gets the fleet's device change "
        "feed, each change before the events from its commit time on (STREAM_TIME_MODE=window); empty: none.")
    stream_protocol: str = _param(
        "amqp", _choice("amqp", "kafka"),
        "amqp: the azure-eventhub SDK; kafka: Event Hubs' Kafka endpoint or any Kafka (librdkafka, see KAFKA_*).")
    # Kafka (issue 12): Event Hubs' Kafka endpoint from the connection string, or any Kafka cluster
    kafka_bootstrap_servers: str = _param(
        "", _text, "Kafka bootstrap servers; empty: from EVENTHUB_CONNECTION_STRING (<namespace>:9093, or the "
        "local emulator's host:9092).")
    kafka_topic: str = _param("", _text, "Kafka topic; empty: the event hub (EntityPath or EVENTHUB_NAME).")
    kafka_security_protocol: str = _param(
        "auto", _choice("auto", "plaintext", "ssl", "sasl_plaintext", "sasl_ssl"),
        "auto: SASL_SSL for Event Hubs (SASL_PLAINTEXT for the local emulator), SASL_SSL with "
        "KAFKA_SASL_USERNAME, else PLAINTEXT.")
    kafka_sasl_mechanism: str = _param(
        "plain", _choice("plain", "scram-sha-256", "scram-sha-512"), "SASL mechanism (Event Hubs: PLAIN).")
    kafka_sasl_username: str = _param(
        "", _text, "SASL user; empty: $ConnectionString with an Event Hubs connection string.")
    kafka_sasl_password: Secret | None = _param(
        None, _optional(_allowing("password")(lambda n, v: v if isinstance(v, Secret) else Secret(_nonempty(n, v)))),
        "Secret: only from the KAFKA_SASL_PASSWORD env var; empty: the Event Hubs connection string.", secret=True)
    kafka_ssl_ca_location: str = _param("", _text, "CA certificates file (PEM) for TLS; empty: the system's.")
    kafka_compression: str = _param(
        "none", _choice("none", "gzip", "snappy", "lz4", "zstd"),
        "Kafka producer compression (Event Hubs Standard takes none; gzip needs Premium/Dedicated).")
    kafka_headers: str = _param(
        "schema", _choice("schema", "all", "none"),
        "Kafka record headers. schema: content-type and schema_version (what the JSON value does not say); all: "
        "also message-id (event_id) and device_type, as the AMQP producer's properties; none.")
    # Fleet and scenarios (issue 6)
    profile: str | None = _param(
        None, _optional(_choice("independent", "fleet")),
        "independent: each event drawn on its own; fleet: DEVICE_COUNT devices reporting time series. "
        "None: the spec file's profile, else independent.")
    device_count: int | None = _param(
        None, _optional(_integer(1, 10**7)),
        "Devices of the fleet profile; None: the spec file's fleet.device_count, else NUM_SENSORS.")
    spec_file: str | None = _param(
        None, _optional(_nonempty),
        "YAML generation spec (catalogs, fleet, data-quality scenarios); see docs/scenarios.md.")
    # Device registry and change feed (issue 15)
    device_registry: bool | None = _param(
        None, _optional(_bool),
        "Fleet profile: write the device registry and its change feed (CDC) next to the events, which follow it; "
        "None: on when the spec file has a registry section. See docs/registry.md.")
    cdc_layout: str = _param(
        "flat", _choice(*CDC_LAYOUTS),
        "The change feed's layout: flat (Delta CDF: _change_type, _commit_version, ...) | debezium (before/after).")

    # Spark: the iotgen/iotgen_eventhubs sources, parsing to VARIANT, streaming writes (issue 5, issue 11)
    spark_target: str = _param(
        "delta", _choice("delta", "iceberg", "parquet"), "Where the Spark stream writes: delta | iceberg | parquet.")
    spark_engine: str = _param(
        "auto", _choice("auto", "spark", "embedded"),
        "auto: Spark's own Delta/Iceberg sink where the session has it (Databricks, SPARK_JARS), else embedded.")
    spark_table: str = _param(
        "", _text, "Table name or path the stream writes; empty: DELTA_TABLE_NAME / ICEBERG_TABLE_NAME / "
        "OUTPUT_DIR/parquet/iot_events.")
    spark_bad_records: str = _param("", _text, "Table or path for rejected messages; empty: <table>_bad_records.")
    spark_trigger: str = _param(
        "availableNow", _trigger, "When micro-batches run: all available now, once, or every interval.")
    spark_source: str = _param(
        "auto", _choice("auto", "iotgen_eventhubs", "kafka"),
        "auto: the Kafka endpoint on Databricks (Standard tier and up), the iotgen_eventhubs source elsewhere.")
    spark_starting_position: str = _param(
        "earliest", _nonempty, "Where a new stream starts: earliest | latest.")
    spark_max_events_per_trigger: int | None = _param(
        None, _optional(_integer(1, 10**12)), "Most events per micro-batch; None: all available.")
    spark_num_partitions: int = _param(
        0, _integer(0, 100_000), "Partitions of the iotgen Spark source; 0: the cluster's default parallelism.")
    spark_connect: bool = _param(
        False, _bool, "Local Spark only: a Spark Connect session on a local server (as on serverless), not classic.")
    spark_jars: str = _param(
        "", _text, "Local Spark only: a folder of jars or comma-separated jars (delta-spark, iceberg-spark-runtime).")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, f.metadata["parse"](f.name.upper(), getattr(self, f.name)))
        if self.min_keys > self.max_keys:
            raise InputError(f"MIN_KEYS must be <= MAX_KEYS, got MIN_KEYS={self.min_keys} > MAX_KEYS={self.max_keys}")
        start = self.resolved_anchor_time() - dt.timedelta(days=self.base_time_days_ago)
        if start < EARLIEST_TIME:
            raise InputError(f"BASE_TIME_DAYS_AGO={self.base_time_days_ago:g} puts the event-time window's start "
                             f"before {EARLIEST_TIME:%Y-%m-%d} (ANCHOR_TIME {self.resolved_anchor_time():%Y-%m-%d})")
        if (LATEST_TIME - start).total_seconds() < self.time_spread_hours * 3600:
            raise InputError(f"TIME_SPREAD_HOURS={self.time_spread_hours:g} puts the event-time window's end after "
                             f"{LATEST_TIME:%Y-%m-%d}")

    # ---- building -------------------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        *,
        config_file: str | os.PathLike | None = None,
        env: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        cli: Mapping[str, Any] | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> "Config":
        """Merge defaults < YAML file < ``IOTGEN_*`` env vars < notebook params/widgets < CLI flags.

        ``env`` defaults to ``os.environ``; ``secrets`` (e.g. from a Databricks secret scope) may supply
        ``EVENTHUB_CONNECTION_STRING``. ``None`` values in ``params``/``cli`` mean "not given".
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if config_file is not None:
            values.update(_check_names(read_config_file(config_file), f"config file {os.fspath(config_file)}"))
        values.update(_check_names(
            {k[len(ENV_PREFIX):]: v for k, v in env.items() if k.startswith(ENV_PREFIX) and k not in OTHER_ENV},
            "environment (IOTGEN_*)"))
        values.update(_check_names({k: v for k, v in (params or {}).items() if v is not None}, "notebook parameters"))
        values.update(_check_names({k: v for k, v in (cli or {}).items() if v is not None}, "command line"))
        for name in SECRET_PARAMS:
            secret = (secrets or {}).get(name) or env.get(name)
            if secret:
                values[name] = Secret(secret)
        return cls(**{k.lower(): v for k, v in values.items()})

    def replace(self, **changes: Any) -> "Config":
        """A copy with some attributes changed (lower-case names), validated again."""
        return dataclasses.replace(self, **changes)

    # ---- showing --------------------------------------------------------------------------------------------
    def as_params(self, include_secrets: bool = False) -> dict[str, Any]:
        """The parameters by canonical name; secrets are omitted unless asked for (then still wrapped)."""
        return {
            f.name.upper(): getattr(self, f.name)
            for f in dataclasses.fields(self)
            if include_secrets or not f.metadata["secret"]
        }

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))
        return f"Config({shown})"

    def resolved_anchor_time(self, now: dt.datetime | None = None) -> dt.datetime:
        """ANCHOR_TIME, or the start of the current UTC day (so same-day seeded runs are identical)."""
        if self.anchor_time is not None:
            return self.anchor_time
        now = now or dt.datetime.now(dt.timezone.utc)
        return now.astimezone(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)

    def resolved_checkpoint_dir(self) -> str:
        if self.checkpoint_dir:
            return self.checkpoint_dir
        if self.catalog_volume_path:
            return self.catalog_volume_path.rstrip("/") + "/checkpoints"
        return str(Path(self.output_dir) / "checkpoints")


PARAMETERS: dict[str, dataclasses.Field] = {f.name.upper(): f for f in dataclasses.fields(Config)}


def parameter_docs() -> list[tuple[str, Any, str]]:
    """(NAME, default, description) for every parameter: the configuration reference."""
    return [(name, f.default, f.metadata["doc"]) for name, f in PARAMETERS.items()]


def allowed(name: str) -> str:
    """What parameter ``name`` accepts, e.g. ``1 - 10^9`` or ``ndjson | json | parquet``."""
    return PARAMETERS[name].metadata["parse"].allowed



def _check_names(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        name = str(key).upper()
        if name in SECRET_PARAMS:
            raise InputError(
                f"{name} must not be set in the {source}: secrets come from the {name} environment variable "
                "or a Databricks secret (EVENTHUB_SECRET_SCOPE / EVENTHUB_SECRET_KEY)")
        if name not in PARAMETERS:
            close = difflib.get_close_matches(name, PARAMETERS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise InputError(f"unknown parameter {key!r} in the {source}{hint}")
        out[name] = value
    return out


# A config or spec file is a few kilobytes; these bounds keep a hostile or mistaken file from taking minutes and
# gigabytes to read (PyYAML builds the whole document in memory, and aliases can multiply it).
MAX_YAML_BYTES = 1_000_000
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 100_000


def read_yaml_file(path: str | os.PathLike, parameter: str = "CONFIG_FILE") -> Any:
    """The parsed YAML of a file; a missing, oversized, too deeply nested or bad YAML file is one ``ValueError``
    naming ``parameter`` (at most 1 MB, 32 levels of nesting and 100,000 values, aliases counted where used)."""
    import yaml

    where = f"{parameter} {os.fspath(path)!r}"
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{where} cannot be read: {exc.strerror}") from None
    if len(raw) > MAX_YAML_BYTES:
        raise InputError(f"{where} is larger than {MAX_YAML_BYTES:,} bytes; a config or spec file is a few KB")
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{where} is not UTF-8 text") from None
    except RecursionError:
        raise InputError(f"{where} nests deeper than {MAX_YAML_DEPTH} levels") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InputError(f"{where} is not valid YAML{at}") from None
    _check_yaml_shape(data, where)
    return data


def _check_yaml_shape(data: Any, where: str) -> None:
    """Walk the document without recursion: depth <= MAX_YAML_DEPTH, values (aliases counted each time they are
    used) <= MAX_YAML_NODES."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_YAML_NODES:
            raise InputError(f"{where} holds more than {MAX_YAML_NODES:,} values (aliases count where used)")
        if isinstance(value, (dict, list)):
            if depth > MAX_YAML_DEPTH:
                raise InputError(f"{where} nests deeper than {MAX_YAML_DEPTH} levels")
            children = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config file: a mapping of parameter names to values."""
    data = read_yaml_file(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"CONFIG_FILE {os.fspath(path)!r} must hold a mapping of parameter names to values")
    return data


def markdown_table() -> str:
    """The configuration reference as a Markdown table (kept in the README; a test checks it)."""
    rows = ["| parameter | default | allowed | description |", "|---|---|---|---|"]
    for name, default, doc in parameter_docs():
        cells = (f"`{name}`", f"`{default!r}`", allowed(name), doc)
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows)
