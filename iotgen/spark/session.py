"""A quiet local Spark session for laptops, tests and CI; on Databricks, the session that already exists.

:func:`get_spark` never creates a session on Databricks (or wherever one is already active): it returns the
existing ``spark``. Elsewhere it starts ``local[N]`` bound to 127.0.0.1, with the Spark UI off, no console
progress bars and log4j at level ``error``, and registers the ``iotgen`` and ``eventhubs`` data sources.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

LOG4J2_PROPERTIES = """\
# iotgen: local Spark logs errors only
rootLogger.level = error
rootLogger.appenderRef.stdout.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n%ex
logger.spark.name = org.apache.spark
logger.spark.level = error
logger.repl.name = org.apache.spark.repl.Main
logger.repl.level = error
logger.jetty.name = org.sparkproject.jetty
logger.jetty.level = error
"""


def on_databricks() -> bool:
    """True inside a Databricks runtime (notebook, job or Git folder)."""
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def _log4j_file() -> Path:
    path = Path(tempfile.gettempdir()) / f"iotgen-log4j2-{os.getuid() if hasattr(os, 'getuid') else 0}.properties"
    if not path.exists() or path.read_text() != LOG4J2_PROPERTIES:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(LOG4J2_PROPERTIES)
        os.replace(tmp, path)
    return path


def local_conf(cores: int = 2, shuffle_partitions: int | None = None, warehouse: str | None = None) -> dict[str, str]:
    """The Spark settings :func:`get_spark` uses for a local session."""
    java_opts = f"-Dlog4j2.configurationFile=file:{_log4j_file()} -Dlog4j.configurationFile=file:{_log4j_file()}"
    conf = {
        "spark.master": f"local[{cores}]",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": str(shuffle_partitions or max(2, cores)),
        "spark.default.parallelism": str(max(2, cores)),
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.extraJavaOptions": java_opts,
        "spark.executor.extraJavaOptions": java_opts,
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.python.worker.reuse": "true",
        "spark.sql.streaming.metricsEnabled": "false",
    }
    if warehouse:
        conf["spark.sql.warehouse.dir"] = str(Path(warehouse).absolute())
    return conf


def _notebook_spark() -> Any:
    """The ``spark`` a Databricks notebook defines (a Spark Connect session on serverless and shared clusters,
    which the classic ``getActiveSession`` may not see), or None."""
    if not on_databricks():
        return None
    try:
        import IPython

        shell = IPython.get_ipython()
    except ImportError:
        return None
    return None if shell is None else shell.user_ns.get("spark")


def log_path() -> Path:
    """Where a local session started here writes the JVM's (and its Python workers') stdout and stderr."""
    return Path(tempfile.gettempdir()) / f"iotgen-spark-{os.getpid()}.log"


def get_spark(app_name: str = "iotgen", *, cores: int = 2, conf: Mapping[str, str] | None = None,
              warehouse: str | None = None, register_sources: bool = True) -> Any:
    """The active Spark session, or a new quiet local one (never a new one on Databricks).

    Locally this sets ``PYSPARK_PYTHON`` to this interpreter and ``SPARK_LOCAL_IP`` to 127.0.0.1 (unless
    already set), so workers run the same Python and nothing listens beyond the loopback interface. The JVM's
    console output goes to :func:`log_path` (errors still reach Python as exceptions), so notebook outputs hold
    only what the notebook prints.
    """
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession() or _notebook_spark()
    if spark is None and on_databricks():
        raise RuntimeError("no active Spark session on Databricks: run this in a notebook or job attached to a "
                           "cluster (iotgen never creates a session there)")
    if spark is None:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        settings = {**local_conf(cores, warehouse=warehouse), **dict(conf or {})}
        if SparkContext._gateway is None:  # no JVM yet: start it with its console output in the log file
            from pyspark.java_gateway import launch_gateway

            spark_conf = SparkConf().setAppName(app_name).setAll(list(settings.items()))
            with open(log_path(), "ab") as log:
                gateway = launch_gateway(spark_conf, popen_kwargs={"stdout": log, "stderr": log})
            SparkContext(conf=spark_conf, gateway=gateway)
        builder = SparkSession.builder.appName(app_name)
        for key, value in settings.items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")
    if register_sources:
        from . import register

        register(spark)
    return spark
