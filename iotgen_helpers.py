"""The one module the notebooks import: a thin, documented facade over the ``iotgen`` package.

Everything here calls into ``iotgen``; notebooks call these functions and show the results, so what a
notebook does is what the tests exercise. Works the same locally (plain Jupyter, papermill) and in a
Databricks Git folder, where widgets override the parameters cell and secrets come from a secret scope.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Mapping

import pandas as pd

from iotgen import (  # noqa: F401  (the package's public functions, re-exported for the notebooks)
    generate_dynamic_json,
    generate_events,
    generate_fixed_row,
    generate_table,
)
from iotgen.base.errors import InputError
from iotgen.generation.generator import GeneratorSpec, event_dicts  # noqa: F401
from iotgen.runs.batch import BatchResult, write_files
from iotgen.runs.batch_stats import BatchStats
from iotgen.settings.catalogs import (  # noqa: F401  (re-exported for the Data catalogs cell)
    DEVICE_TYPES,
    ENVS,
    IOT_KEY_POOL,
    MODELS,
    NESTED_KEYS,
    REGIONS,
    SOURCES,
    STATUS_VALUES,
    ZONES,
    Catalogs,
)
from iotgen.settings.config import PARAMETERS, Config, Secret, parameter_docs  # noqa: F401
from iotgen.settings.databricks import on_databricks  # noqa: F401  (True in a Databricks runtime)
from iotgen.settings.schema import COLUMN_NAMES, markdown_table  # noqa: F401


# ---- environment --------------------------------------------------------------------------------------------
def dbutils_or_none() -> Any:
    """Databricks' ``dbutils`` when running there, else None."""
    from iotgen.settings.databricks import dbutils

    return dbutils()




def _widget_values(dbutils: Any, names: list[str]) -> dict[str, str]:
    values = {}
    for name in names:
        try:
            values[name] = dbutils.widgets.get(name)
        except Exception:  # no such widget: the parameters cell's value stands
            continue
    return {k: v for k, v in values.items() if v != ""}


def _databricks_secret(dbutils: Any, scope: str, key: str) -> dict[str, str]:
    if dbutils is None or not scope or not key:
        return {}
    return {"EVENTHUB_CONNECTION_STRING": dbutils.secrets.get(scope=scope, key=key)}


def _injected_by_papermill(name: str) -> bool:
    """True when papermill's injected-parameters cell (``# Parameters`` at its top) set ``name`` in this kernel:
    papermill writes those values into the executed notebook."""
    try:
        import IPython

        shell = IPython.get_ipython()
    except ImportError:
        return False
    sources = [] if shell is None else shell.user_ns.get("In", [])
    return any(str(src).lstrip().startswith("# Parameters") and f"{name} =" in str(src) for src in sources)


def load_config(params: Mapping[str, Any], config_file: str | None = None) -> Config:
    """The run's Config from the notebook's parameters (pass ``globals()``: names of Config parameters are
    picked out), Databricks widgets of the same names, ``IOTGEN_*`` env vars, an optional YAML file, and the
    connection string from the Databricks secret ``EVENTHUB_SECRET_SCOPE``/``EVENTHUB_SECRET_KEY``, an
    ``EVENTHUB_CONNECTION_STRING`` typed into the Config cell (it works, with a one-line warning: a secret scope
    is safer), or the ``EVENTHUB_CONNECTION_STRING`` environment variable. A connection string passed with
    papermill ``-p`` is refused (papermill writes parameters into the executed notebook)."""
    typed = params.get("EVENTHUB_CONNECTION_STRING") or None
    chosen = {name: params[name] for name in PARAMETERS if name in params and name != "EVENTHUB_CONNECTION_STRING"}
    dbutils = dbutils_or_none()
    if dbutils is not None:
        chosen.update(_widget_values(dbutils, [n for n in PARAMETERS if n != "EVENTHUB_CONNECTION_STRING"]))
    if typed is not None:
        if _injected_by_papermill("EVENTHUB_CONNECTION_STRING"):
            raise InputError("EVENTHUB_CONNECTION_STRING must not be a papermill parameter (-p): papermill writes "
                             "parameters into the executed notebook; set the EVENTHUB_CONNECTION_STRING environment "
                             "variable or use a Databricks secret scope (EVENTHUB_SECRET_SCOPE/EVENTHUB_SECRET_KEY)")
        if not isinstance(typed, str):
            raise InputError("EVENTHUB_CONNECTION_STRING must be a string")
    config = Config.load(config_file=config_file, params=chosen)
    secret = _databricks_secret(dbutils, config.eventhub_secret_scope, config.eventhub_secret_key)
    if not secret and typed is not None:
        import sys

        print("warning: EVENTHUB_CONNECTION_STRING is typed in the Config cell; a secret scope "
              "(EVENTHUB_SECRET_SCOPE/EVENTHUB_SECRET_KEY) or the environment variable is safer", file=sys.stderr)
        secret = {"EVENTHUB_CONNECTION_STRING": typed}
    return Config.load(config_file=config_file, params=chosen, secrets=secret) if secret else config


def config_table(config: Config, changed_only: bool = True) -> pd.DataFrame:
    """The Config as a table (parameter, value, default, description), by default only the parameters that
    differ from their defaults. Secrets show as ``Secret('***')``, never their value."""
    rows = [{"parameter": name, "value": repr(getattr(config, name.lower())), "default": repr(default),
             "description": doc}
            for name, default, doc in parameter_docs()
            if not (changed_only and getattr(config, name.lower()) == default)]
    return pd.DataFrame(rows, columns=["parameter", "value", "default", "description"]).set_index("parameter")


def catalogs(**overrides: Any) -> Catalogs:
    """Catalogs from the notebook's Data catalogs cell: pass DEVICE_TYPES=..., IOT_KEY_POOL=..., etc."""
    return Catalogs.build(**{k.lower(): v for k, v in overrides.items()})


# ---- batch ----------------------------------------------------------------------------------------------------
PROGRESS_FROM_EVENTS = 1_000_000  # longer runs show a progress bar (tqdm.auto: a widget in Jupyter and Databricks)


@dataclass
class BatchRun:
    """A batch generated once: ``df`` (every event up to ``PREVIEW_EVENTS``, else an even sample), the
    statistics of every event (``stats``, see :mod:`iotgen.runs.batch_stats`) and the files written
    (``saved``: a ``BatchResult``, or None when ``SAVE_JSON`` is false)."""

    df: pd.DataFrame
    stats: BatchStats
    saved: BatchResult | None

    def describe(self) -> str:
        """One line: how many events, what ``df`` holds, and where they were written."""
        held = (f"df holds an even sample of {len(self.df):,} (every {self.stats.every:,}th event; "
                f"PREVIEW_EVENTS={self.stats.preview_events:,})" if self.stats.sampled
                else f"df holds all {len(self.df):,} x {self.df.shape[1]} columns")
        saved = "" if self.saved is None else "; saved " + ", ".join(os.path.relpath(p) for p in self.saved.paths)
        return f"{self.stats.count:,} events generated once; {held}{saved}"


def generate_batch(config: Config, catalogs: Catalogs | None = None) -> BatchRun:
    """Generate ``NUM_EVENTS`` events once, chunk by chunk: written under ``OUTPUT_DIR`` as ``OUTPUT_FORMAT``
    when ``SAVE_JSON`` (with ``WORKERS`` processes), while the preview DataFrame and the statistics are gathered
    from the same chunks. Memory stays flat whatever ``NUM_EVENTS`` (bounded by ``CHUNK_SIZE`` and
    ``PREVIEW_EVENTS``); runs of a million events or more show a progress bar."""
    from iotgen.runs.batch import gather_stats

    bar = None
    if config.num_events >= PROGRESS_FROM_EVENTS:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.num_events, unit="ev", unit_scale=True, desc="generating", leave=False)
    try:
        progress = bar.update if bar is not None else None
        if config.save_json:
            stats = BatchStats(config.num_events, config.preview_events)
            saved = write_files(config, catalogs, stats=stats, on_progress=progress)
        else:
            stats, saved = gather_stats(config, catalogs, on_progress=progress), None
    finally:
        if bar is not None:
            bar.close()
    return BatchRun(stats.preview().to_pandas(), stats, saved)


def generate_dataframe(config: Config, catalogs: Catalogs | None = None) -> pd.DataFrame:
    """``NUM_EVENTS`` events as a pandas DataFrame (``json_column`` as JSON text): all in memory, for modest
    sizes; :func:`generate_batch` bounds memory at any size."""
    return generate_table(generator_spec(config, catalogs=catalogs), config.num_events,
                          chunk_size=config.chunk_size).to_pandas()


def save_events(config: Config, catalogs: Catalogs | None = None) -> BatchResult:
    """Write ``NUM_EVENTS`` events under ``OUTPUT_DIR`` as ``OUTPUT_FORMAT`` (same events as
    :func:`generate_dataframe` for the same Config and seed)."""
    return write_files(config, catalogs)


def _stats(data: BatchRun | pd.DataFrame) -> BatchStats:
    """The statistics of a batch run, or of a DataFrame of events (reduced the same way, as one chunk)."""
    if isinstance(data, BatchRun):
        return data.stats
    import pyarrow as pa

    from iotgen.runs.batch_stats import chunk_stats
    from iotgen.settings.schema import ARROW_SCHEMA

    stats = BatchStats(len(data), len(data))
    stats.add(chunk_stats(pa.RecordBatch.from_pandas(data, schema=ARROW_SCHEMA, preserve_index=False), 0, 1))
    return stats


def preview(df: pd.DataFrame | BatchRun, rows: int = 5) -> pd.DataFrame:
    """The first rows, with ``json_column`` shortened for display."""
    df = df.df if isinstance(df, BatchRun) else df
    shown = df.head(rows).copy()
    shown["json_column"] = shown["json_column"].str.slice(0, 80) + "..."
    return shown


def summary(data: BatchRun | pd.DataFrame) -> pd.DataFrame:
    """One row per check that matters for the data, over every event of the run (``json_column`` keys: over
    ``df``, which is every event up to ``PREVIEW_EVENTS``, else an even sample)."""
    stats = _stats(data)
    keys = stats.key_counts()
    keys = keys[keys >= 0]
    on = " (sample)" if stats.sampled else ""
    checks = {
        "events": stats.count,
        "timestamp min": str(pd.Timestamp(stats.timestamp_min_us, unit="us", tz="UTC")),
        "timestamp max": str(pd.Timestamp(stats.timestamp_max_us, unit="us", tz="UTC")),
        f"distinct event_id in df{on}": stats.preview().column("event_id").unique().__len__(),
        f"json_column keys min{on}": int(keys.min()) if len(keys) else None,
        f"json_column keys max{on}": int(keys.max()) if len(keys) else None,
        "updated_at >= created_at": stats.updated_after_created,
        "last_calibration < timestamp": stats.calibrated_before,
    }
    return pd.DataFrame({"value": checks})


def plot_overview(data: BatchRun | pd.DataFrame):
    """Key-count histogram (over ``df``), device-type mix and mean temperature over time (over every event), in
    one figure (shown once when it is a cell's last expression; not registered with pyplot, so nothing else
    displays it)."""
    from matplotlib.figure import Figure

    stats = _stats(data)
    fig = Figure(figsize=(15, 3.8))
    axes = fig.subplots(1, 3)
    keys = stats.key_counts()
    keys = keys[keys >= 0]
    if len(keys):
        axes[0].hist(keys, bins=range(int(keys.min()), int(keys.max()) + 2), color="#4C72B0", edgecolor="white")
    axes[0].set(title="json_column: keys per event" + (" (sample)" if stats.sampled else ""), xlabel="keys",
                ylabel="events")
    pd.Series(stats.device_types).sort_values().plot.barh(ax=axes[1], color="#55A868")
    axes[1].set(title="device_type mix", xlabel="events")
    times, means = stats.mean_temperature()
    axes[2].plot(pd.to_datetime(times, unit="us", utc=True), means, color="#C44E52")
    axes[2].set(title="mean temperature over time", ylabel="degC")
    axes[2].tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    return fig


# ---- lakehouse: Delta Lake and Iceberg without a cluster, Event Hubs -> table ingest (docs/lakehouse.md) -----
def table_target(config: Config, fmt: str = "delta"):
    """The Delta (``DELTA_TABLE_NAME`` under ``OUTPUT_DIR``) or Iceberg (``ICEBERG_TABLE_NAME`` in
    ``ICEBERG_CATALOG_URI`` / ``OUTPUT_DIR/iceberg``) table a Config names, as a ``TableTarget``."""
    from iotgen.outputs.table_target import config_target

    return config_target(config, fmt)


def write_lakehouse_table(config: Config, fmt: str = "delta", catalogs: Catalogs | None = None):
    """Append ``NUM_EVENTS`` generated events to the Delta or Iceberg table in one commit (``TableResult``)."""
    from iotgen.runs.tables import write_table

    return write_table(config, catalogs, target=table_target(config, fmt))


def table_history(target, limit: int = 10) -> pd.DataFrame:
    """The table's commits, newest first: version (Delta) or snapshot (Iceberg), operation, rows added and the
    app transactions recorded with each commit (the ingest's last sequence number per partition)."""
    rows = target.history(limit)
    frame = pd.DataFrame(rows)
    if "timestamp" in frame:
        frame = frame.drop(columns=["timestamp"])  # wall-clock times: see target.history() for them
    return frame


def query_table(target, sql: str) -> pd.DataFrame:
    """DuckDB ``sql`` over the table (visible as ``events``, ``json_column`` as JSON), as a DataFrame."""
    return target.query(sql).to_pandas()


def ingest_to_table(config: Config, target, connection=None, until_idle: float | None = None):
    """Run the exactly-once ingest from Event Hubs into ``target``: by default it ingests what the event hub
    holds when it starts and stops (available now); with ``until_idle`` it runs until that many seconds pass
    without events. ``connection`` (from :func:`connect_eventhub`, e.g. the local endpoint) supplies the event
    hub; without it the Config's (``EVENTHUB_CONNECTION_STRING``, secret or Azure AD) is used. Returns the
    ``IngestSummary`` (``.lines()`` for a printable summary)."""
    from iotgen.runs.ingest import IngestOptions, run_ingest

    if connection is not None:
        config = config.replace(eventhub_connection_string=connection.config.eventhub_connection_string,
                                eventhub_name=connection.config.eventhub_name,
                                kafka_bootstrap_servers=connection.config.kafka_bootstrap_servers)
    options = IngestOptions(config.ingest_consumer_group, config.ingest_max_batch_events,
                            config.ingest_max_batch_seconds, until_idle, available_now=until_idle is None)
    return run_ingest(config, target, options)


def demo_output_dir(path: str = "", parent: str | None = None) -> str:
    """``path`` (created if needed; on Databricks the ``OUTPUT_DIR`` widget wins when ``parent`` is not given);
    when empty, a fresh folder (under ``parent`` if given, else the system's temporary folder), so a re-run starts
    clean. On Databricks the folder must be in a volume or a cloud URI (``ValueError`` naming OUTPUT_DIR
    otherwise): never the driver's disk."""
    import tempfile

    from iotgen.settings.databricks import check_location

    utils = dbutils_or_none()
    if utils is not None and parent is None:
        path = _widget_values(utils, ["OUTPUT_DIR"]).get("OUTPUT_DIR", path)
    check_location("OUTPUT_DIR", path or parent or "", "outputs")
    if path:
        os.makedirs(path, exist_ok=True)
        return path
    if parent:
        os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix="lakehouse-", dir=parent)


def partition_offsets(target, summary) -> pd.DataFrame:
    """Per Event Hubs partition: the last sequence number the table's commits record (the ingest resumes after
    it) and the rows of that partition in the table."""
    counts = target.query("SELECT _partition, count(*) AS n FROM events GROUP BY 1").to_pylist()
    rows = {r["_partition"]: r["n"] for r in counts}
    return pd.DataFrame(
        [{"partition": p, "last_sequence_number": v, "rows_in_table": rows.get(p, 0), "lag": summary.lag.get(p)}
         for p, v in sorted(summary.offsets.items())]).set_index("partition")


# ---- streaming to Azure Event Hubs, or to a local endpoint when none is configured (docs/eventhubs.md) --------
_EVENTHUB = None  # the connection connect_eventhub() opened last


def connect_eventhub(config: Config, local_fallback: bool | None = None):
    """Open the producer for the configured event hub: the connection string (``EVENTHUB_CONNECTION_STRING`` or
    the Databricks secret), a Unity Catalog service credential (``EVENTHUB_SERVICE_CREDENTIAL``) or Azure AD
    (``EVENTHUB_NAMESPACE`` + ``EVENTHUB_NAME``). With none, start a local endpoint (iotgen's emulator on
    127.0.0.1, in memory) and stream there; on Databricks only with ``EVENTHUB_LOCAL_ENDPOINT=yes``. Prints where
    events go (never the key); returns the ``EventHubConnection`` (``.producer``, ``.config``, ``.local``)."""
    global _EVENTHUB
    from iotgen.runs.stream import connect

    if _EVENTHUB is not None:
        _EVENTHUB.close()
        _EVENTHUB = None
    _EVENTHUB = connect(config, local_fallback=local_fallback)
    producer = _EVENTHUB.producer
    note = "  (no Azure Event Hub configured: a local endpoint on this machine)" if _EVENTHUB.local else ""
    print(f"Event Hub: {producer.target.description}{note}\n"
          f"partitions: {', '.join(producer.partition_ids)}; largest batch: {producer.max_batch_bytes:,} bytes")
    return _EVENTHUB


def stream_events(config: Config, connection=None, catalogs: Catalogs | None = None, progress: bool = True):
    """Stream events as the Config says (``STREAM_EVENTS`` / ``STREAM_DURATION_SEC``, ``RATE_EVENTS_PER_SEC`` or
    ``BATCH_SIZE`` / ``SLEEP_INTERVAL_SEC``, ...) through ``connection`` (default: the last
    :func:`connect_eventhub`), with a live progress line; the notebook's Stop button ends it cleanly. Returns
    the ``StreamSummary`` (``print`` it, or :func:`stream_report`)."""
    import sys

    from iotgen.runs.stream import ProgressLine
    from iotgen.runs.stream import stream_events as run_stream

    connection = connection or _EVENTHUB or connect_eventhub(config)
    line = ProgressLine(sys.stderr) if progress else None
    try:
        return run_stream(config, connection.producer, catalogs=catalogs, on_progress=line)
    finally:
        if line is not None:
            line.close()


def stream_report(summary) -> pd.DataFrame:
    """A stream's summary as a table: counts, rate, batches and events per partition."""
    rows = {
        "stopped by": summary.stopped_by,
        "sent": summary.sent, "acknowledged": summary.acknowledged,
        "retried": summary.retried, "failed": summary.failed,
        "rate": f"{summary.events_per_sec:,.0f} ev/s",
        "throughput": f"{summary.mb_per_sec:.2f} MB/s",
        "batches": summary.batches,
        "events": f"#{summary.first_event:,} to #{summary.resume_from - 1:,} (seed {summary.seed})",
        **{f"partition {p}": n for p, n in summary.partitions.items()},
    }
    return pd.DataFrame({"value": rows})


def read_eventhub(connection=None, max_events: int = 5, partition_id: str | None = "0") -> pd.DataFrame:
    """The first ``max_events`` events of a partition (all partitions with None), read back with the SDK's
    consumer: where each landed and its key fields."""
    from iotgen.outputs.eventhubs import read_events

    connection = connection or _EVENTHUB
    events = read_events(connection.target, max_events=max_events, partition_id=partition_id)
    return pd.DataFrame([{
        "partition": e["partition"], "sequence_number": e["sequence_number"], "partition_key": e["partition_key"],
        "event_id": e["event"]["event_id"], "device_type": e["properties"].get("device_type"),
        "timestamp": e["event"]["timestamp"], "temperature": e["event"]["temperature"],
    } for e in events])


def stop_local_endpoint() -> None:
    """Close the Event Hubs connection and stop the local endpoint if :func:`connect_eventhub` started one."""
    global _EVENTHUB
    if _EVENTHUB is not None:
        _EVENTHUB.close()
        _EVENTHUB = None


def describe_stream(config: Config) -> str:
    """How a stream with this Config is paced and when it stops, in one line."""
    from iotgen.runs.stream import StreamPlan

    return StreamPlan.from_config(config).describe()


# ---- generation speed: allocator switch and a throughput check (docs/performance.md) --------------------------
def speed_up_generation() -> bool:
    """Keep freed memory in this process for reuse (glibc's malloc) instead of returning it to the OS.

    Big runs are about a third faster on virtual machines, where page faults are slow; resident memory stays at
    its high-water mark (bounded by CHUNK_SIZE). Call once before generating; returns whether it took effect
    (False on macOS and Windows, where it does nothing).
    """
    from iotgen.base.allocator import retain_freed_memory

    return retain_freed_memory()


def measure_generation(config: Config, events: int = 500_000) -> pd.DataFrame:
    """Events/s of this process generating ``events`` events of ``config`` into Arrow, then as NDJSON text
    (in memory, nothing written): wall clock and per core (process CPU time)."""
    import time

    from iotgen.formats.encoding import ndjson_bytes

    spec = generator_spec(config)
    rows = []
    for label, encode in (("Arrow record batches", None), ("NDJSON text", ndjson_bytes)):
        wall, cpu = time.perf_counter(), time.process_time()
        for batch in generate_events(spec, events):
            if encode is not None:
                encode(batch)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rows.append({"output": label, "events": events, "seconds": round(wall, 2),
                     "events/s": round(events / wall), "events/s per core": round(events / cpu)})
    return pd.DataFrame(rows)


# ---- fleet profile and data-quality scenarios (docs/scenarios.md) ----------------------------------------------
def example_spec_path() -> str:
    """Path of the documented example spec (``iotgen/spec/example_spec.yaml``, package data: what
    ``iotgen spec --example`` prints)."""
    from iotgen.spec.spec_file import EXAMPLE_PATH

    return str(EXAMPLE_PATH)


def spec_mapping(path: str) -> dict:
    """A spec file as a mapping (to change in a notebook, then pass as ``spec=`` or :func:`save_spec`)."""
    from iotgen.settings.config import read_yaml_file
    from iotgen.spec.spec_file import load_spec, locate

    load_spec(path)  # validated first: errors name the field
    return read_yaml_file(locate(path), "SPEC_FILE") or {}


def save_spec(spec: Mapping[str, Any], folder: str, name: str = "spec.yaml") -> str:
    """Validate ``spec`` and write it as a YAML spec file in ``folder``; its path (for ``SPEC_FILE``)."""
    import yaml

    from iotgen.spec.spec_file import load_spec

    load_spec(spec)
    path = os.path.join(folder, name)
    with open(path, "w", encoding="utf-8") as file:
        yaml.safe_dump(dict(spec), file, sort_keys=False)
    return path


def generator_spec(config: Config, spec: Any = None, catalogs: Catalogs | None = None) -> GeneratorSpec:
    """The GeneratorSpec of a run with its fleet and scenarios: from ``SPEC_FILE``, or ``spec`` (a path or a
    mapping shaped like the YAML file). See
    :func:`iotgen.spec.spec_file.generator_spec`, the one Config -> spec path."""
    from iotgen.spec.spec_file import generator_spec as build

    return build(config, catalogs, spec=spec)


def describe_spec(gspec: GeneratorSpec) -> pd.DataFrame:
    """What a spec will generate: profile, devices, events per hour of event time, scenarios turned on."""
    from iotgen.spec.spec_file import describe

    info = describe(gspec)
    rows = {"profile": info["profile"], "RANDOM_SEED": gspec.seed}
    if gspec.fleet is not None:
        rows.update({"devices": info["device_count"], "events per hour": round(info["events_per_hour"])})
    rows["scenarios"] = ", ".join(info.get("scenarios", {})) or "none"
    return pd.DataFrame({"value": rows})


def device_table(gspec: GeneratorSpec) -> pd.DataFrame:
    """The fleet's devices and their stable attributes (sensor_id, device_type, model, region, ...)."""
    from iotgen.generation.fleet import Fleet

    if not isinstance(gspec.fleet, Fleet):
        raise InputError("device_table needs the fleet profile (PROFILE=fleet)")
    return gspec.fleet.device_table(gspec).to_pandas()


def generate_with_labels(config: Config, spec: Any = None,
                         catalogs: Catalogs | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``NUM_EVENTS`` events (``json_column`` as JSON text, or a broken text where the scenarios broke it) and
    their ground-truth labels (one row per injected fault: ``event_index``, ``event_id``, ``kind``, ...)."""
    from iotgen.generation.generator import labelled_range
    from iotgen.generation.truth import LABEL_SCHEMA

    gspec = generator_spec(config, spec, catalogs)
    run = labelled_range(gspec, 0, config.num_events)  # the events and their labels from one generation
    labels = run.truth.labels if run.truth is not None else LABEL_SCHEMA.empty_table()
    return run.events.to_pandas(), labels.to_pandas()


def scenario_rates(gspec: GeneratorSpec, events: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Per scenario (and column), the configured rate against what the labels show: shares of events, and
    for stuck/drift the mean share of each device's events, for clock skew the share of devices."""
    import pyarrow as pa

    from iotgen.generation.scenarios import LABEL_SCHEMA, Scenarios, rate_table

    if not isinstance(gspec.scenarios, Scenarios):
        raise InputError("scenario_rates needs a spec with scenarios (the spec file's scenarios section)")
    table = pa.Table.from_pandas(labels, schema=LABEL_SCHEMA, preserve_index=False)
    sensors = pa.array(events["sensor_id"].dropna(), pa.string())
    return pd.DataFrame(rate_table(gspec.scenarios, table, len(events), sensors)).set_index(["scenario", "column"])


def drift_timeline(gspec: GeneratorSpec, labels: pd.DataFrame | None = None, events: int | None = None) -> pd.DataFrame:
    """The schema-drift changes (when, what) and, given ``events``, how many of the first ``events`` each touched."""
    from iotgen.generation.scenarios import truth_range
    from iotgen.spec.spec_file import drift_timeline as timeline

    frame = pd.DataFrame(timeline(gspec))
    if events and len(frame):
        frame["events"] = truth_range(gspec, 0, events).drift_counts
    return frame


def report_accounting(gspec: GeneratorSpec, events: pd.DataFrame, labels: pd.DataFrame) -> pd.Series:
    """Offline devices and dropped reports: every report the fleet measured (up to a time all of them have
    arrived or been labelled by) is one event (on time, or ``catch_up``), one ``overflow`` or one ``dropped``
    label; ``unaccounted`` is 0 when nothing was lost silently. See
    :func:`iotgen.generation.scenarios.report_accounting`."""
    import pyarrow as pa

    from iotgen.generation.scenarios import LABEL_SCHEMA
    from iotgen.generation.scenarios import report_accounting as account

    table = pa.Table.from_pandas(labels, schema=LABEL_SCHEMA, preserve_index=False)
    received = pa.table({"timestamp": pa.array(events["timestamp"]), "event_id": pa.array(events["event_id"])})
    return pd.Series(account(gspec, received, table), name="reports")


def plot_arrivals(events: pd.DataFrame, labels: pd.DataFrame, gap: pd.Series | None = None):
    """Offline devices: left, each event's time against its place in the run (the order of arrival), the uploads
    after a gap marked; right, one gap (an ``offline`` label; by default the one that lost the fewest reports to
    a full buffer, some) and the hours around it: when the device's reports were measured against when they
    arrived, the lost (``overflow``) and ``dropped`` reports marked at their measurement time."""
    plt = _pyplot()
    up = labels[labels["kind"] == "catch_up"]
    arrival = events["timestamp"].copy()
    arrival.iloc[up["event_index"].to_numpy()] += pd.to_timedelta(up["value"].to_numpy(), unit="s")
    gaps = labels[labels["kind"] == "offline"]
    if gap is None and not len(gaps):
        raise InputError("plot_arrivals needs labels with offline gaps (the spec's scenarios.offline, fleet profile)")
    if gap is None:
        lost = labels[labels["kind"] == "overflow"].groupby(["sensor_id", "event_index"]).size()
        key = lost.idxmin() if len(lost) else (gaps["sensor_id"].iloc[0], gaps["event_index"].iloc[0])
        gap = gaps[(gaps["sensor_id"] == key[0]) & (gaps["event_index"] == key[1])].iloc[0]
    sensor = gap["sensor_id"]
    start, end = pd.to_datetime(gap["note"].split("/"), utc=True, format="ISO8601")
    low, high = start - (end - start), end + (end - start)
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.6))
    is_up = events.index.isin(up["event_index"])
    axes[0].scatter(events.index[~is_up], events["timestamp"][~is_up], s=1, color="#BBBBBB", label="as measured")
    axes[0].scatter(events.index[is_up], events["timestamp"][is_up], s=3, color="#C44E52", label="uploaded after a gap")
    axes[0].set(title="Event time against the order of arrival", xlabel="event_index (arrival order)",
                ylabel="timestamp (event time)")
    axes[0].legend(fontsize=8, markerscale=4)
    ax = axes[1]
    mine = (events["sensor_id"] == sensor) & (events["timestamp"] > low) & (events["timestamp"] < high)
    ax.axvspan(start, end, color="#DDDDDD", label="offline")
    ax.scatter(events["timestamp"][mine & ~is_up], arrival[mine & ~is_up], s=10, color="#55A868", label="on time")
    ax.scatter(events["timestamp"][mine & is_up], arrival[mine & is_up], s=10, color="#C44E52",
               label="uploaded on reconnecting")
    for kind, marker, color in (("overflow", "x", "black"), ("dropped", "+", "#8172B2")):
        at = pd.to_datetime(labels.loc[(labels["kind"] == kind) & (labels["sensor_id"] == sensor), "note"], utc=True,
                            format="ISO8601")
        at = at[(at > low) & (at < high)]
        ax.scatter(at, at, marker=marker, s=40, color=color, label=f"{kind} (never arrives)")
    ax.set(title=f"{sensor}: measured against arrived", xlabel="timestamp (measured)", ylabel="arrival")
    ax.legend(fontsize=8, loc="upper left")
    ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    return _shown(fig)


def rate_curve(config: Config, spec: Any = None, start: str | None = None):
    """The target rate ``iotgen stream`` follows with ``config`` (``RATE_PROFILE``, ``RATE_EVENTS_PER_SEC``) and
    the spec (a path or a mapping: its ``rate_profile`` section and fleet) when started at ``start`` (ISO 8601;
    default: ``ANCHOR_TIME``): a :class:`~iotgen.generation.rate_profile.RateCurve` of the seconds elapsed
    (``rate_at``, ``issued``). Pure: nothing is sent. See :func:`iotgen.runs.stream.rate_curve`."""
    from iotgen.runs.stream import StreamPlan
    from iotgen.runs.stream import rate_curve as curve_of
    from iotgen.spec.spec_file import load_spec

    plan = StreamPlan.from_config(config, load_spec(spec if spec is not None else config.spec_file))
    at = (config.replace(anchor_time=start) if start is not None else config).resolved_anchor_time()
    curve = curve_of(plan, generator_spec(config, spec), at.timestamp())
    if curve is None:
        raise InputError("rate_curve needs a rate profile: RATE_PROFILE (flat, daily, bursts, daily+bursts) or the "
                         "spec file's rate_profile section")
    return curve


def rate_curve_table(curve, hours: float = 24, step_s: float = 3600) -> pd.DataFrame:
    """Per step of ``step_s`` seconds (from the run's start, for ``hours``): its start in profile time (UTC),
    the mean target rate, the events due (what the stream's summary shows as each minute's target) and the
    rate as a share of the curve's peak."""
    edges = [i * step_s for i in range(int(round(hours * 3600 / step_s)) + 1)]
    due = [curve.issued(high) - curve.issued(low) for low, high in zip(edges[:-1], edges[1:])]
    start = pd.to_datetime([curve.profile_time(e) for e in edges[:-1]], unit="s", utc=True)
    frame = pd.DataFrame({"start (UTC)": start.strftime("%H:%M"), "target events/s": [d / step_s for d in due],
                          "events": due}).set_index("start (UTC)")
    frame["of peak"] = frame["target events/s"] / curve.peak
    frame = frame.round({"target events/s": 2, "of peak": 3})
    frame["events"] = frame["events"].round().astype("int64")
    return frame


def plot_rate_curve(curve, hours: float = 24):
    """The target rate over ``hours`` per minute (bursts show as spikes) with its hourly mean, and below it
    each time zone's daily factor (the share of its devices' reports the stream sends), weighted by its share
    of the events."""
    import numpy as np

    plt = _pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(14, 6.4), sharex=True)
    minutes = np.arange(int(hours * 60) + 1) * 60.0
    issued = np.array([curve.issued(m) for m in minutes])
    at = pd.to_datetime(curve.profile_time(minutes[:-1]), unit="s", utc=True)
    axes[0].plot(at, np.diff(issued) / 60, lw=0.8, label="per minute")
    hourly = rate_curve_table(curve, hours)
    axes[0].step(pd.to_datetime(curve.profile_time(np.arange(len(hourly)) * 3600.0), unit="s", utc=True),
                 hourly["target events/s"], where="post", color="black", lw=1.5, label="hourly mean")
    axes[0].set(title=f"Target rate: {curve.profile.describe()}", ylabel="events/s", ylim=(0, None))
    axes[0].legend(fontsize=8, loc="upper left")
    local = curve.profile_time(minutes[:-1]) / 3600.0
    for offset, weight in curve.zones:
        axes[1].plot(at, curve.profile.shape((local + offset) % 24), lw=1,
                     label=f"UTC{offset:+g}: {weight:.0%} of the events")
    axes[1].set(title="Each time zone's daily factor (its devices at peak: 1)", ylabel="factor", ylim=(0, 1.05),
                xlabel="profile time (UTC)")
    axes[1].legend(fontsize=8, ncol=4, loc="lower left")
    fig.tight_layout()
    return _shown(fig)


def _pyplot():
    """pyplot, headless (Agg) outside a notebook kernel; in a kernel its inline backend renders the figures."""
    import sys

    import matplotlib

    if "ipykernel" not in sys.modules and not os.environ.get("DISPLAY"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _shown(fig):
    """The figure, closed so the inline backend does not draw it a second time (the cell shows it once)."""
    _pyplot().close(fig)
    return fig


def plot_device_series(events: pd.DataFrame, labels: pd.DataFrame, sensors: list[str] | None = None,
                       columns: tuple[str, ...] = ("temperature", "humidity", "pressure")):
    """Readings of a few devices over time with the injected anomalies marked: spikes, stuck sensors, slow
    drift, and impossible values (drawn at the edge of the plot). By default the devices with the most stuck,
    drift and spike labels."""
    plt = _pyplot()
    marked = labels[labels["kind"].isin(["spike", "stuck", "drift", "out_of_range"])]
    if sensors is None:
        sensors = []
        for kind in ("stuck", "drift", "spike"):
            ranked = marked.loc[(marked["kind"] == kind) & ~marked["sensor_id"].isin(sensors), "sensor_id"]
            if len(ranked):
                counts = ranked.value_counts()
                sensors.append(counts[counts == counts.max()].sort_index().index[0])
    fig, axes = plt.subplots(len(columns), 1, figsize=(14, 3.2 * len(columns)), sharex=True, squeeze=False)
    styles = {"spike": ("^", "#C44E52"), "stuck": ("s", "#8172B2"), "drift": ("D", "#CCB974"),
              "out_of_range": ("x", "black")}
    mine = events[events["sensor_id"].isin(sensors)]
    for ax, column in zip(axes[:, 0], columns):
        low, high = mine.loc[~mine.index.isin(marked["event_index"]), column].quantile([0.0, 1.0])
        pad = 0.15 * (high - low) + 0.5
        for sensor in sensors:
            series = mine[mine["sensor_id"] == sensor].sort_values("timestamp")
            ax.plot(series["timestamp"], series[column].clip(low - pad, high + pad), lw=0.8, label=sensor)
        for kind, (marker, color) in styles.items():
            hit = marked[(marked["kind"] == kind) & marked["sensor_id"].isin(sensors) & (marked["column"] == column)]
            rows = events.iloc[hit["event_index"].to_numpy()]
            ax.scatter(rows["timestamp"], rows[column].clip(low - pad, high + pad), marker=marker, color=color,
                       s=24, zorder=3, label=kind)
        ax.set_ylabel(column)
        ax.set_ylim(low - pad, high + pad)
    handles, names = axes[0, 0].get_legend_handles_labels()
    axes[0, 0].legend(handles, names, ncol=4, fontsize=8, loc="upper left")
    axes[0, 0].set_title("Device time series with injected anomalies (impossible values drawn at the edge)")
    fig.tight_layout()
    return _shown(fig)


def plot_lateness(events: pd.DataFrame, labels: pd.DataFrame):
    """Histogram of the injected lateness, and of ``created_at - timestamp`` for late and on-time events."""
    plt = _pyplot()
    late = labels[labels["kind"] == "late"]
    fig, axes = plt.subplots(1, 2, figsize=(14, 3.8))
    axes[0].hist(late["value"] / 60, bins=40, color="#64B5CD", edgecolor="white")
    axes[0].set(title=f"Injected lateness ({len(late):,} late events)", xlabel="minutes", ylabel="events")
    delay = (events["created_at"] - events["timestamp"]).dt.total_seconds() / 60
    is_late = events.index.isin(late["event_index"])
    bins = list(range(0, int(max(1, delay[is_late].max())) + 2))
    axes[1].hist([delay[~is_late].clip(lower=0), delay[is_late]], bins=bins, log=True, label=["on time", "late"],
                 color=["#55A868", "#64B5CD"])
    axes[1].set(title="created_at - timestamp, as a consumer sees it", xlabel="minutes", ylabel="events (log)")
    axes[1].legend()
    fig.tight_layout()
    return _shown(fig)


def plot_drift_timeline(events: pd.DataFrame, gspec: GeneratorSpec):
    """Per hour of event time, for each schema-drift change, the share of events showing it: the new key
    present, the changed key of its new type (among events with that key), the removed key still present."""
    if gspec.scenarios is None:
        raise InputError("plot_drift_timeline needs a spec with scenarios (the spec file's scenarios section)")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(14, 3.8))
    parsed = events["json_column"].map(_json_or_none)
    hour = events["timestamp"].dt.floor("h")
    for change in gspec.scenarios.schema_drift:
        key = change.key
        if change.operation == "change_type":
            kind = {"string": str, "float": float, "object": dict}[change.to]
            has = parsed.map(lambda o, key=key: isinstance(o, dict) and key in o)
            shows = parsed[has].map(lambda o, key=key, kind=kind: isinstance(o[key], kind))
            share, label = shows.groupby(hour[has]).mean(), f"{key} is {change.to} (events with {key})"
        else:
            has = parsed.map(lambda o, key=key: isinstance(o, dict) and key in o)
            share, label = has.groupby(hour).mean(), f"events with {key}"
        line, = ax.plot(share.index, share.values, drawstyle="steps-post", label=f"{label}: {change.describe()}")
        ax.axvline(pd.Timestamp(gspec.window_start_ms + change.at_ms, unit="ms", tz="UTC"), color=line.get_color(),
                   ls="--", lw=1)
    ax.set(title="Schema drift per hour of event time (dashed: when each change starts)", ylabel="share",
           ylim=(-0.05, 1.05))
    ax.legend(fontsize=8, loc="center left")
    fig.tight_layout()
    return _shown(fig)


def _json_or_none(text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


# ---- Spark: generation at cluster scale, Event Hubs -> Spark, json_column as VARIANT, Delta/Iceberg streams --
# (docs/spark.md). On Databricks these use the existing `spark`, widgets and secrets; locally a quiet local[2].
def spark_session(config: Config | None = None, app_name: str = "iotgen"):
    """The active Spark session (Databricks' ``spark``; never a new one there), else a quiet local one bound to
    127.0.0.1: classic, or Spark Connect with ``SPARK_CONNECT``, with the connector jars of ``SPARK_JARS``. The
    ``iotgen`` and ``iotgen_eventhubs`` data sources are registered where the runtime has Python data sources."""
    from iotgen.runs.spark.runtime import BATCH_SOURCES
    from iotgen.runs.spark.session import get_spark

    config = config or Config()
    return get_spark(app_name, connect=config.spark_connect, jars=config.spark_jars or None,
                     register_sources=BATCH_SOURCES)


def spark_runtime(spark) -> str:
    """One line: the Spark version, classic or Spark Connect, and whether Python sources get admission control."""
    from iotgen.runs.spark.runtime import ADMISSION_CONTROL, is_connect

    mode = "Spark Connect" if is_connect(spark) else "classic"
    control = "with" if ADMISSION_CONTROL else "without"
    return f"Spark {spark.version} | {mode} | Python sources {control} admission control"


def spark_generate(spark, config: Config):
    """``NUM_EVENTS`` events as a Spark DataFrame from the ``iotgen`` source in ``SPARK_NUM_PARTITIONS``
    partitions: the same events :func:`generate_dataframe` gives for the same seed, computed on the cluster
    (with the fleet and data-quality scenarios of ``SPEC_FILE`` / ``PROFILE`` / ``DEVICE_COUNT`` when set)."""
    from iotgen.runs.spark.pipeline import generate

    return generate(spark, config)


def spark_read_eventhub(spark, config: Config, connection=None, streaming: bool = True):
    """The event hub as a DataFrame of raw messages (a stream unless ``streaming=False``): Spark's Kafka source on
    the hub's Kafka endpoint where the session has it (Databricks; locally with spark-sql-kafka among SPARK_JARS,
    the local endpoint included), the ``iotgen_eventhubs`` source elsewhere (``SPARK_SOURCE``). ``connection`` (from
    :func:`connect_eventhub`, e.g. the local endpoint) supplies the hub; else the Config's."""
    from iotgen.runs.spark.pipeline import read_event_stream

    basic_tier = False
    if connection is not None:
        config = config.replace(eventhub_connection_string=connection.config.eventhub_connection_string,
                                eventhub_name=connection.config.eventhub_name,
                                kafka_bootstrap_servers=connection.config.kafka_bootstrap_servers)
        basic_tier = not connection.local and connection.producer.max_message_size <= BASIC_TIER_MESSAGE_BYTES
    return read_event_stream(spark, config, streaming=streaming, basic_tier=basic_tier)


def spark_source_line(raw) -> str:
    """One line naming the reader of a raw event-hub frame (Spark's Kafka source or ``iotgen_eventhubs``),
    whether it streams, and its columns."""
    kafka = {"topic", "value", "offset"} <= set(raw.columns)
    reader = "Spark's Kafka source" if kafka else "the iotgen_eventhubs source"
    return f"read with {reader} | streaming: {raw.isStreaming} | columns: {', '.join(raw.columns)}"


#: The Basic tier's largest message (Standard and above: 1 MB); the Basic tier has no Kafka endpoint.
BASIC_TIER_MESSAGE_BYTES = 256 * 1024


def spark_parse(raw):
    """Message bodies -> the 23 typed columns + ``json_column`` as VARIANT, with ``_reason``/``_body`` for the
    rows that are not events (see :func:`iotgen.runs.spark.parse.parse_events`)."""
    from iotgen.runs.spark.parse import parse_events

    return parse_events(raw)


def spark_good_and_bad(parsed):
    """(good events, bad records) of a parsed frame: the two outputs a stream writes."""
    from iotgen.runs.spark.parse import bad_records, good_events

    return good_events(parsed), bad_records(parsed)


def spark_typed_projection(events):
    """Typed values read out of the VARIANT: ``variant_get(json_column, '$.location.lat', 'double')``, ..."""
    from iotgen.runs.spark.parse import typed_projection

    return typed_projection(events)


def spark_write_stream(parsed, config: Config, target: str | None = None):
    """Start the stream into ``target`` (``SPARK_TARGET``: delta | iceberg | parquet) with trigger
    ``SPARK_TRIGGER`` and its own checkpoint under ``CHECKPOINT_DIR`` (``CATALOG_VOLUME_PATH/checkpoints`` on
    Databricks); good events to the table, bad records to ``<table>_bad_records``. Prints which writer writes the
    table (Spark's own sink, or iotgen's embedded writer in ``foreachBatch`` where the session has no connector,
    and why). Returns the query."""
    import logging

    from iotgen.runs.spark.pipeline import resolve_target, write_events

    print(resolve_target(parsed.sparkSession, config, target).describe())
    logger = logging.getLogger("iotgen.runs.spark.write")
    level = logger.level
    logger.setLevel(logging.ERROR)  # the line above says it; the library's warning would say it twice
    try:
        return write_events(parsed, config, target)
    finally:
        logger.setLevel(level)


def spark_await(query, timeout: float = 600.0) -> pd.DataFrame:
    """Wait for an ``availableNow`` query to finish; its micro-batches as a table (batch id, messages read).
    What each output table holds: :func:`spark_table_counts`."""
    from iotgen.runs.spark.pipeline import await_query

    return pd.DataFrame(await_query(query, timeout), columns=["batch", "input_rows"])


def spark_table_counts(spark, config: Config, target: str | None = None) -> pd.DataFrame:
    """Rows, distinct event ids and bad records in the table the stream wrote."""
    from iotgen.runs.spark.pipeline import table_counts

    return pd.DataFrame({"value": table_counts(spark, config, target)})


def spark_stop_local(spark) -> None:
    """Stop a local session this notebook started (never the Databricks one; a local Spark Connect session stops
    its server too)."""
    if not on_databricks():
        spark.stop()


def spark_send_bad_messages(connection=None) -> int:
    """Send a few messages that are not events (invalid JSON, an array, a partial event) through ``connection``
    (default: the last :func:`connect_eventhub`), to watch them land in the bad records. Returns how many."""
    from azure.eventhub import EventData

    from iotgen.runs.spark.parse import EXAMPLE_BAD_BODIES

    connection = connection or _EVENTHUB
    with connection.target.producer_client() as producer:
        batch = producer.create_batch()
        for body in EXAMPLE_BAD_BODIES:
            batch.add(EventData(body))
        producer.send_batch(batch)
    return len(EXAMPLE_BAD_BODIES)
