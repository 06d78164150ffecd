"""A quiet local Spark session for laptops, tests and CI (classic, or Spark Connect); on Databricks, the one there.

:func:`get_spark` never creates a session on Databricks (or wherever one is already active): it returns the
existing ``spark`` (the notebook's, a Spark Connect session on serverless and standard access mode). Elsewhere it
starts ``local[N]`` bound to 127.0.0.1, with the Spark UI off, no console progress bars and log4j at level
``error``, and registers the ``iotgen`` and ``iotgen_eventhubs`` data sources. ``connect=True`` starts the same
local Spark with a Spark Connect server in it and returns a Spark Connect session (the mode serverless compute
and standard access mode use: no ``sparkContext``, no RDDs). ``jars`` (a folder or a list of jar files: e.g. the
delta-spark, iceberg-spark-runtime and spark-sql-kafka-0-10 builds for this Spark) go on the classpath, and the
Delta and Iceberg session extensions found among them are configured (:func:`connector_conf`).
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

from ...base.errors import InputError
from ...settings.databricks import on_databricks

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


DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
ICEBERG_EXTENSION = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"


def jar_files(jars: str | os.PathLike | Iterable[str | os.PathLike] | None) -> list[Path]:
    """The jar files ``jars`` names: a folder (its ``*.jar``), a comma-separated list, or paths; checked to exist
    (``ValueError`` naming SPARK_JARS otherwise)."""
    if not jars:
        return []
    items = [p for p in str(jars).split(",") if p.strip()] if isinstance(jars, (str, os.PathLike)) else list(jars)
    found: list[Path] = []
    for item in items:
        path = Path(str(item).strip()).expanduser()
        if path.is_dir():
            found.extend(sorted(path.glob("*.jar")))
        elif path.is_file() and path.suffix == ".jar":
            found.append(path)
        else:
            raise InputError(f"SPARK_JARS: {str(item).strip()!r} is neither a folder of jars nor a .jar file")
    if not found:
        raise InputError(f"SPARK_JARS: no .jar file in {jars!s}")
    return [p.resolve() for p in found]


def connector_conf(jars: list[Path]) -> dict[str, str]:
    """``spark.jars`` and the session extensions/catalog of the connectors among ``jars``: delta-spark (Delta's
    extension and catalog as ``spark_catalog``) and iceberg-spark-runtime (Iceberg's extension; catalogs are
    added per warehouse at run time, see :func:`iotgen.runs.spark.write.iceberg_catalog`)."""
    if not jars:
        return {}
    names = [p.name for p in jars]
    extensions = []
    conf = {"spark.jars": ",".join(str(p) for p in jars)}
    if any(n.startswith("delta-spark_") for n in names):
        extensions.append(DELTA_EXTENSION)
        conf["spark.sql.catalog.spark_catalog"] = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        conf["spark.databricks.delta.snapshotPartitions"] = "2"  # a local session's tables are small (default 50)
    if any(n.startswith("iceberg-spark-runtime-") for n in names):
        extensions.append(ICEBERG_EXTENSION)
    if extensions:
        conf["spark.sql.extensions"] = ",".join(extensions)
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
              warehouse: str | None = None, register_sources: bool = True, connect: bool = False,
              jars: str | os.PathLike | Iterable[str | os.PathLike] | None = None) -> Any:
    """The active Spark session, or a new quiet local one (never a new one on Databricks).

    Locally this sets ``PYSPARK_PYTHON`` to this interpreter and ``SPARK_LOCAL_IP`` to 127.0.0.1 (unless
    already set), so workers run the same Python and nothing listens beyond the loopback interface. The JVM's
    console output goes to :func:`log_path` (errors still reach Python as exceptions), so notebook outputs hold
    only what the notebook prints. ``connect``: a Spark Connect session on a local Spark Connect server (started
    in this process's JVM, on 127.0.0.1). ``jars``: see :func:`jar_files` and :func:`connector_conf`.
    """
    from pyspark.sql import SparkSession

    spark = (_notebook_spark() or SparkSession.getActiveSession()) if on_databricks() else _existing(connect)
    if spark is None and on_databricks():
        raise RuntimeError("no active Spark session on Databricks: run this in a notebook or job attached to a "
                           "cluster (iotgen never creates a session there)")
    if spark is None:
        spark = _start_local(app_name, cores, {**connector_conf(jar_files(jars)), **dict(conf or {})}, warehouse,
                             connect)
    if register_sources:
        from . import register

        register(spark)
    return spark


def _existing(connect: bool) -> Any:
    """The session a local run already has: the Spark Connect one (``connect``) or the classic one."""
    if connect:
        from pyspark.sql.connect.session import SparkSession as ConnectSession

        return ConnectSession.getActiveSession()
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession()


def _start_local(app_name: str, cores: int, conf: Mapping[str, str], warehouse: str | None, connect: bool) -> Any:
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    for marker in ("SPARK_LOCAL_REMOTE", "SPARK_CONNECT_MODE_ENABLED"):  # a parent's local Spark Connect mode
        os.environ.pop(marker, None)
    settings = {**local_conf(cores, warehouse=warehouse), **dict(conf)}
    if connect:
        if SparkContext._active_spark_context is not None:
            raise RuntimeError("SPARK_CONNECT: this process already runs a classic Spark session; a local Spark "
                               "Connect server starts with the JVM: use a new process (restart the kernel)")
        settings.update(CONNECT_SERVER_CONF)
        os.environ["SPARK_CONNECT_AUTHENTICATE_TOKEN"] = secrets.token_urlsafe(32)  # the server's JVM reads it
    spark_conf = SparkConf().setAppName(app_name).setAll(list(settings.items()))
    if SparkContext._gateway is None:  # no JVM yet: start it with its console output in the log file
        from pyspark.java_gateway import launch_gateway

        with open(log_path(), "ab") as log:
            gateway = launch_gateway(spark_conf, popen_kwargs={"stdout": log, "stderr": log})
        SparkContext(conf=spark_conf, gateway=gateway)
    builder = SparkSession.builder.appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    if not connect:
        return spark
    return _connect_to_local_server()


#: The local Spark Connect server (pyspark's own local mode, but on a free port of 127.0.0.1 rather than 15002,
#: so several runs on one machine never collide).
CONNECT_SERVER_CONF = {
    "spark.plugins": "org.apache.spark.sql.connect.SparkConnectPlugin",
    "spark.sql.artifact.isolation.enabled": "true",
    "spark.sql.artifact.isolation.alwaysApplyClassloader": "true",
    "spark.connect.grpc.binding.address": "127.0.0.1",
    "spark.connect.grpc.binding.port": "0",
}


def local_connect_url(token: bool = False) -> str:
    """``sc://localhost:<port>`` of the Spark Connect server this process's JVM runs (``token``: with its
    authentication token, for a client in another process; keep it out of logs)."""
    from pyspark.sql import SparkSession

    server = SparkSession._instantiatedSession
    if server is None:
        raise RuntimeError("no local Spark Connect server in this process: get_spark(connect=True) starts one")
    service = getattr(server._jvm, "org.apache.spark.sql.connect.service.SparkConnectService$")
    url = f"sc://localhost:{int(getattr(service, 'MODULE$').localPort())}"
    return f"{url}/;token={os.environ['SPARK_CONNECT_AUTHENTICATE_TOKEN']}" if token else url


def _connect_to_local_server() -> Any:
    """A Spark Connect session on the server this process's JVM runs (its port, its token);
    stopping it stops the server too (pyspark's local mode does the same)."""
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    os.environ["SPARK_LOCAL_REMOTE"] = "1"  # as pyspark's local mode: stop() stops the server
    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"  # pyspark.sql.functions build Spark Connect columns
    return ConnectSession.builder.remote(local_connect_url()).getOrCreate()
