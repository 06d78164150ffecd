"""What the Spark runtime under iotgen supports, found out from the runtime itself (never from a version guess).

The Spark of each supported Databricks runtime differs in what a Python data source can do:

========================  =====  ==========================================================================
runtime                   Spark  Python data sources
========================  =====  ==========================================================================
DBR 15.4 LTS, 16.4 LTS    3.5    Databricks' backport of ``pyspark.sql.datasource`` (open-source 3.5: none)
DBR 17.3 LTS              4.0    batch and streaming readers; ``latestOffset()`` without arguments
DBR 18                    4.1    as 4.0
Spark 4.2+ (DBR 19 beta)  4.2+   admission control: ``latestOffset(start, limit)``, ``getDefaultReadLimit``,
                                 ``SupportsTriggerAvailableNow``
========================  =====  ==========================================================================

This module gives the sources one set of base classes whatever the runtime: pyspark's where they exist, else
stand-ins, so that everything else in :mod:`iotgen.runs.spark` (the Kafka route, parsing, writers, option checks)
imports on every runtime, and using a missing feature fails with one line naming the runtime it needs
(:func:`require_data_sources`). The stream readers implement ``latestOffset(start=None, limit=None)``: Spark 4.2+
calls it with both (admission control), older Spark with none (the reader then tracks where the stream is and
applies its own rate limit; see :class:`OffsetTracker`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NEEDS_DATA_SOURCES = ("Spark 4.0 or later (pyspark 4.0+, Databricks Runtime 17.3 LTS+) or Databricks Runtime 15.4 "
                      "LTS+ (its Python data source backport)")


def pyspark_version() -> str | None:
    """The installed pyspark's version, or None without pyspark."""
    try:
        import pyspark
    except ImportError:
        return None
    return getattr(pyspark, "__version__", None)


try:  # Spark 4.0+, or Databricks' backport on DBR 15.4 LTS+
    from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition

    BATCH_SOURCES = True
except ImportError:  # open-source Spark 3.5, or no pyspark: stand-ins, so the modules still import
    BATCH_SOURCES = False

    class DataSource:  # type: ignore[no-redef]
        def __init__(self, options: dict) -> None:
            self.options = options

    class DataSourceReader:  # type: ignore[no-redef]
        pass

    class InputPartition:  # type: ignore[no-redef]
        def __init__(self, value: Any) -> None:
            self.value = value

try:
    from pyspark.sql.datasource import DataSourceStreamReader

    STREAM_SOURCES = True
except ImportError:
    STREAM_SOURCES = False

    class DataSourceStreamReader:  # type: ignore[no-redef]
        pass

try:  # Spark 4.2+: admission control and Trigger.AvailableNow for Python stream readers
    from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadLimit, ReadMaxRows, SupportsTriggerAvailableNow

    ADMISSION_CONTROL = True
    AVAILABLE_NOW_BASES: tuple[type, ...] = (SupportsTriggerAvailableNow,)
except ImportError:
    ADMISSION_CONTROL = False
    AVAILABLE_NOW_BASES = ()

    class ReadLimit:  # type: ignore[no-redef]
        """Stand-in of Spark 4.2's ``ReadLimit`` (the reader applies its own limit on older Spark)."""

    @dataclass
    class ReadAllAvailable(ReadLimit):  # type: ignore[no-redef]
        pass

    @dataclass
    class ReadMaxRows(ReadLimit):  # type: ignore[no-redef]
        max_rows: int


try:  # Spark 4.0+, or Databricks Runtime 15.3+ (its backport)
    from pyspark.sql.types import VariantType  # noqa: F401

    VARIANT = True
except ImportError:
    VARIANT = False


def require_variant(what: str) -> None:
    """Raise one ``RuntimeError`` naming the runtime ``what`` needs when this pyspark has no VARIANT type."""
    if not VARIANT:
        have = pyspark_version()
        found = f"this runtime's pyspark {have} has no VARIANT type" if have else "pyspark is not installed"
        raise RuntimeError(f"{what} needs Spark 4.0 or later (pyspark 4.0+) or Databricks Runtime 15.3+: {found}")


def to_arrow(frame: Any) -> Any:
    """A DataFrame collected as one Arrow table (``toArrow`` from Spark 4.0; Spark 3.5 collects Arrow batches
    under another name)."""
    if hasattr(frame, "toArrow"):
        return frame.toArrow()
    import pyarrow as pa

    return pa.Table.from_batches(frame._collect_as_arrow(), schema=None)


def require_data_sources(what: str, streaming: bool = False) -> None:
    """Raise one ``RuntimeError`` naming the runtime ``what`` (plural: "the ... sources") need when this pyspark
    has no Python data sources (``streaming``: no Python stream readers)."""
    if BATCH_SOURCES and (STREAM_SOURCES or not streaming):
        return
    have = pyspark_version()
    kind = "Python streaming data sources" if BATCH_SOURCES else "Python data sources (pyspark.sql.datasource)"
    found = f"this runtime's pyspark {have} has no {kind}" if have else "pyspark is not installed"
    raise RuntimeError(f"{what} need {NEEDS_DATA_SOURCES}: {found}")


class OffsetTracker:
    """Where a stream reader's stream is, for Spark before 4.2, whose ``latestOffset()`` gets no start offset.

    Spark tells the reader every range it plans (``partitions(start, end)``, including ``(latest, latest)`` when
    a query restarts from its checkpoint) and commits (``commit(end)``); before the first of those the start is
    the reader's initial offset. Spark before 4.2 runs ``Trigger.AvailableNow`` as one micro-batch up to the
    offset the first ``latestOffset()`` returns, so a rate limit there also ends the run early: the pipeline
    leaves the limit out for ``availableNow`` on such runtimes (:func:`available_now_limits`).
    """

    def __init__(self) -> None:
        self.position: dict | None = None

    def seen(self, end: dict) -> None:
        self.position = end

    def start(self, initial: Any) -> dict:
        """The start of the next micro-batch (``initial()`` when nothing was planned yet)."""
        if self.position is None:
            self.position = initial()
        return self.position


def available_now_limits() -> bool:
    """True when a rate limit of a Python stream reader still lets ``Trigger.AvailableNow`` read everything
    (Spark 4.2+ splits the run into micro-batches of the limit; older Spark runs one capped micro-batch)."""
    return ADMISSION_CONTROL


def is_connect(spark: Any) -> bool:
    """True for a Spark Connect session (serverless, standard access mode, ``builder.remote(...)``)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def spark_minor(spark: Any) -> tuple[int, int]:
    """(major, minor) of the session's Spark."""
    major, minor = (str(spark.version).split(".") + ["0"])[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


__all__ = [
    "ADMISSION_CONTROL", "AVAILABLE_NOW_BASES", "BATCH_SOURCES", "DataSource", "DataSourceReader",
    "DataSourceStreamReader", "InputPartition", "NEEDS_DATA_SOURCES", "OffsetTracker", "ReadAllAvailable",
    "ReadLimit", "ReadMaxRows", "STREAM_SOURCES", "VARIANT", "available_now_limits", "is_connect",
    "pyspark_version", "require_data_sources", "require_variant", "spark_minor", "to_arrow",
]
