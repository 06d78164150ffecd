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
Every value is validated when a Config is built; a bad one raises one ``ValueError`` naming the parameter and
what is allowed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

ENV_PREFIX = "IOTGEN_"
SECRET_PARAMS = ("EVENTHUB_CONNECTION_STRING",)
FILE_FORMATS = ("ndjson", "json", "parquet", "csv")
TABLE_FORMATS = ("delta", "iceberg")


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


def _int(name: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _float(name: str, value: Any, minimum: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
            or value < minimum or (strict and value == minimum) or value == float("inf"):
        relation = ">" if strict else ">="
        raise ValueError(f"{name} must be a finite number {relation} {minimum}, got {value!r}")
    return float(value)


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
        return value.strip().lower() in ("true", "1", "yes", "on")
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def _text(name: str, value: Any, allow_empty: bool = True) -> str:
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise ValueError(f"{name} must be a {'' if allow_empty else 'non-empty '}string, got {value!r}")
    return value


def _optional(parse: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    def parse_optional(name: str, value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
            return None
        return parse(name, value)

    return parse_optional


def _choice(*allowed: str) -> Callable[[str, Any], str]:
    def parse_choice(name: str, value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        return value.lower()

    return parse_choice


def _anchor_time(name: str, value: Any) -> dt.datetime:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{name} must be an ISO 8601 date-time such as 2026-01-31T00:00:00Z, got {value!r}")
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, dt.datetime):
        raise ValueError(f"{name} must be an ISO 8601 date-time such as 2026-01-31T00:00:00Z, got {value!r}")
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def _param(default: Any, parse: Callable[[str, Any], Any], doc: str, secret: bool = False) -> Any:
    return field(default=default, metadata={"parse": parse, "doc": doc, "secret": secret})


@dataclass(frozen=True)
class Config:
    """Every parameter of a run. Build with :meth:`load` (merging sources) or directly (validated)."""

    # Batch generation
    num_events: int = _param(1000, _int, "Events to generate in a batch run.")
    min_keys: int = _param(5, lambda n, v: _int(n, v, 1), "Fewest top-level keys in json_column.")
    max_keys: int = _param(25, lambda n, v: _int(n, v, 1), "Most top-level keys in json_column (<= key pool size).")
    random_seed: int | None = _param(None, _optional(_int), "Seed for identical output; None draws a fresh seed.")
    base_time_days_ago: float = _param(7.0, _float, "The event-time window starts this many days before ANCHOR_TIME.")
    time_spread_hours: float = _param(
        168.0, lambda n, v: _float(n, v, 0.0, strict=True), "Length of the event-time window in hours.")
    anchor_time: dt.datetime | None = _param(
        None, _optional(_anchor_time),
        "Reference 'now' of the time window (ISO 8601, UTC); None means the start of the current UTC day.")
    num_sensors: int = _param(1000, lambda n, v: _int(n, v, 1), "Distinct sensor_id values (sensor-00001...).")
    # Files
    output_dir: str = _param("output", lambda n, v: _text(n, v, False), "Folder (or Volume path) for output files.")
    save_json: bool = _param(True, _bool, "Write the batch to a file under OUTPUT_DIR.")
    output_filename_prefix: str = _param(
        "iot_events", lambda n, v: _filename_prefix(n, v), "File names are PREFIX_YYYYMMDD_HHMMSS.<ext>.")
    output_format: str = _param("ndjson", _choice(*FILE_FORMATS, *TABLE_FORMATS),
        "ndjson | json (one array) | parquet | csv | delta | iceberg (tables, see docs/lakehouse.md).")
    events_per_file: int = _param(
        1_000_000, lambda n, v: _int(n, v, 1), "Larger runs are split into parts with a manifest.")
    chunk_size: int = _param(65_536, lambda n, v: _int(n, v, 1), "Events generated per chunk (bounds memory).")
    workers: int = _param(1, lambda n, v: _int(n, v, 1), "Worker processes for generation.")
    # Event Hubs
    eventhub_namespace: str = _param("", _text, "Event Hubs namespace (for Azure AD auth), e.g. myns.")
    eventhub_name: str = _param("", _text, "Event hub (entity) name.")
    eventhub_connection_string: Secret | None = _param(
        None, _optional(lambda n, v: v if isinstance(v, Secret) else Secret(_text(n, v, False))),
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
    batch_size: int = _param(500, lambda n, v: _int(n, v, 1), "Events per send in streaming.")
    sleep_interval_sec: float = _param(1.0, _float, "Pause between streaming batches, in seconds.")
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
        "$Default", lambda n, v: _text(n, v, False), "Event Hubs consumer group the ingest reads with.")
    ingest_max_batch_events: int = _param(
        10_000, lambda n, v: _int(n, v, 1), "The ingest commits at most this many events per table commit.")
    ingest_max_batch_seconds: float = _param(
        5.0, lambda n, v: _float(n, v, 0.0, strict=True), "The ingest commits buffered events at least this often.")
    ingest_until_idle: float | None = _param(
        None, _optional(lambda n, v: _float(n, v, 0.0, strict=True)),
        "Stop the ingest after this many seconds without events; None runs until Ctrl-C.")
    ingest_available_now: bool = _param(
        False, _bool, "Ingest what the event hub holds at start, then stop (like Spark's availableNow trigger).")

    # Streaming (Event Hubs)
    stream_events: int | None = _param(
        None, _optional(_int), "Events to stream; None streams until STREAM_DURATION_SEC, Ctrl-C or Stop.")
    stream_duration_sec: float | None = _param(
        None, _optional(lambda n, v: _float(n, v, 0.0, strict=True)), "Stop streaming after this many seconds.")
    rate_events_per_sec: float | None = _param(
        None, _optional(lambda n, v: _float(n, v, 0.0, strict=True)),
        "Target events/s (token bucket); None sends BATCH_SIZE events every SLEEP_INTERVAL_SEC (0: no limit).")
    max_mb_per_sec: float | None = _param(
        None, _optional(lambda n, v: _float(n, v, 0.0, strict=True)), "Cap on sent MB/s (1 MB = 10^6 bytes).")
    ramp_up_sec: float = _param(0.0, _float, "Climb linearly to the target rate over this many seconds.")
    partition_key: str = _param(
        "sensor_id", _choice("sensor_id", "none"), "sensor_id keeps each device's events in order; none spreads.")
    max_batch_bytes: int | None = _param(
        None, _optional(lambda n, v: _int(n, v, 16_384)),
        "Largest EventDataBatch in bytes; None uses the link's maximum (1 MB Standard/Premium, 256 KB Basic).")
    stream_time_mode: str = _param(
        "live", _choice("live", "window"), "live: event times re-based to send time; window: as generated.")
    send_timeout_sec: float = _param(
        30.0, lambda n, v: _float(n, v, 0.0, strict=True), "Time-out of one send (and of connecting), seconds.")
    send_retries: int = _param(8, _int, "Retries of a batch (exponential back-off) before it counts as failed.")
    stream_start_event: int = _param(0, _int, "Index of the first event to stream (resume a stopped stream).")
    # Fleet and scenarios (issue 6)
    profile: str | None = _param(
        None, _optional(_choice("independent", "fleet")),
        "independent: each event drawn on its own; fleet: DEVICE_COUNT devices reporting time series. "
        "None: the spec file's profile, else independent.")
    device_count: int | None = _param(
        None, _optional(lambda n, v: _int(n, v, 1)),
        "Devices of the fleet profile; None: the spec file's fleet.device_count, else NUM_SENSORS.")
    spec_file: str | None = _param(
        None, _optional(lambda n, v: _text(n, v, False)),
        "YAML generation spec (catalogs, fleet, data-quality scenarios); see docs/scenarios.md.")

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
        "availableNow", lambda n, v: _text(n, v, False), "availableNow | once | an interval such as '10 seconds'.")
    spark_source: str = _param(
        "auto", _choice("auto", "iotgen_eventhubs", "kafka"),
        "auto: the Kafka endpoint on Databricks (Standard tier and up), the iotgen_eventhubs source elsewhere.")
    spark_starting_position: str = _param(
        "earliest", lambda n, v: _text(n, v, False), "Where a new stream starts: earliest | latest.")
    spark_max_events_per_trigger: int | None = _param(
        None, _optional(lambda n, v: _int(n, v, 1)), "Most events per micro-batch; None: all available.")
    spark_num_partitions: int = _param(
        0, _int, "Partitions of the iotgen Spark source; 0: the cluster's default parallelism.")
    spark_connect: bool = _param(
        False, _bool, "Local Spark only: a Spark Connect session on a local server (as on serverless), not classic.")
    spark_jars: str = _param(
        "", _text, "Local Spark only: a folder of jars or comma-separated jars (delta-spark, iceberg-spark-runtime).")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, f.metadata["parse"](f.name.upper(), getattr(self, f.name)))
        if self.min_keys > self.max_keys:
            raise ValueError(f"MIN_KEYS must be <= MAX_KEYS, got MIN_KEYS={self.min_keys} > MAX_KEYS={self.max_keys}")

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
            {k[len(ENV_PREFIX):]: v for k, v in env.items() if k.startswith(ENV_PREFIX) and k != ENV_PREFIX + "CONFIG"},
            "environment (IOTGEN_*)"))
        values.update(_check_names({k: v for k, v in (params or {}).items() if v is not None}, "notebook parameters"))
        values.update(_check_names({k: v for k, v in (cli or {}).items() if v is not None}, "command line"))
        connection = (secrets or {}).get("EVENTHUB_CONNECTION_STRING") or env.get("EVENTHUB_CONNECTION_STRING")
        if connection:
            values["EVENTHUB_CONNECTION_STRING"] = Secret(connection)
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


def _filename_prefix(name: str, value: Any) -> str:
    value = _text(name, value, False)
    if any(c in value for c in "/\\\0") or value.startswith("."):
        raise ValueError(f"{name} must be a plain file-name prefix (no path separators, not starting with '.'), "
                         f"got {value!r}")
    return value


def _check_names(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        name = str(key).upper()
        if name in SECRET_PARAMS:
            raise ValueError(
                f"{name} must not be set in the {source}: secrets come from the EVENTHUB_CONNECTION_STRING "
                "environment variable or a Databricks secret (EVENTHUB_SECRET_SCOPE / EVENTHUB_SECRET_KEY)")
        if name not in PARAMETERS:
            close = difflib.get_close_matches(name, PARAMETERS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"unknown parameter {key!r} in the {source}{hint}")
        out[name] = value
    return out


def read_yaml_file(path: str | os.PathLike, parameter: str = "CONFIG_FILE") -> Any:
    """The parsed YAML of a file; a missing file or bad YAML is one ``ValueError`` naming ``parameter``."""
    import yaml

    where = f"{parameter} {os.fspath(path)!r}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{where} cannot be read: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"{where} is not valid YAML{at}") from None


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config file: a mapping of parameter names to values."""
    data = read_yaml_file(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"CONFIG_FILE {os.fspath(path)!r} must hold a mapping of parameter names to values")
    return data


def markdown_table() -> str:
    """The configuration reference as a Markdown table (kept in the README; a test checks it)."""
    rows = ["| parameter | default | description |", "|---|---|---|"]
    for name, default, doc in parameter_docs():
        rows.append(f"| `{name}` | `{default!r}` | {doc} |")
    return "\n".join(rows)
