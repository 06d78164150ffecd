"""A stand-in for a Databricks workspace, to run the notebooks' Databricks branches here (test_databricks_standin).

What it stands in for, and how:

* **the cluster**: a local Spark Connect server started once in its own process (``python databricks_standin.py
  CONFIG``), with Spark's own Delta and Iceberg connectors (``IOTGEN_SPARK_JARS``): Delta tables in the session
  catalog (``iot.<table>``) and an Iceberg catalog named ``main`` (Unity Catalog's three-part names), as a
  serverless or standard-access-mode cluster serves notebooks over Spark Connect;
* **the notebook environment**: an IPython startup file (``IPYTHONDIR``) that defines ``spark`` (a Spark Connect
  session on that server) and a fake ``dbutils`` (widgets, secrets, credentials, library), and mounts the volumes
  (``iotgen.settings.databricks.VOLUMES_ROOT``) on a temporary folder; the kernel's environment has
  ``DATABRICKS_RUNTIME_VERSION`` as every Databricks runtime sets it.

Nothing of iotgen's is replaced: the notebooks run their own code, which takes its Databricks branches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

STARTUP = '''\
# A Databricks stand-in (tests/spark/databricks_standin.py): spark, dbutils and the volumes, as a workspace has them.
import json as _json
import os as _os

_standin = _json.loads(open(_os.environ["DATABRICKS_STANDIN"], encoding="utf-8").read())

import iotgen.settings.databricks as _databricks

_databricks.VOLUMES_ROOT = _standin["volumes_root"]

from pyspark.sql import SparkSession as _SparkSession

spark = _SparkSession.builder.remote(_standin["url"]).getOrCreate()


def _log(entry):
    with open(_standin["log"], "a", encoding="utf-8") as _file:
        _file.write(_json.dumps(entry) + "\\n")


class _Widgets:
    def get(self, name):
        if name not in _standin["widgets"]:
            raise ValueError(f"InputWidgetNotDefined: No input widget named {name} is defined")
        return _standin["widgets"][name]


class _Secrets:
    def get(self, scope, key):
        _log({"secrets.get": [scope, key]})
        return _standin["secrets"][f"{scope}/{key}"]


class _Credentials:
    def getServiceCredentialsProvider(self, name):
        _log({"credentials.getServiceCredentialsProvider": name})
        raise ValueError(f"the stand-in has no service credential {name!r}")


class _Library:
    def restartPython(self):
        _log({"library.restartPython": True})


class _DBUtils:
    widgets, secrets, credentials, library = _Widgets(), _Secrets(), _Credentials(), _Library()


dbutils = _DBUtils()
'''


def write_startup(ipython_dir: Path) -> None:
    """The IPython profile whose startup file makes a kernel a Databricks notebook's stand-in."""
    startup = ipython_dir / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-databricks-standin.py").write_text(STARTUP, encoding="utf-8")


def start_cluster(root: Path, jars: str) -> tuple[subprocess.Popen, dict[str, Any]]:
    """Start the stand-in cluster (a local Spark Connect server with the connectors) in its own process; returns
    the process (stop it by closing its stdin) and its ``{"url": ...}``."""
    here = Path(__file__).resolve()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parents[2]), os.environ.get("PYTHONPATH", "")])}
    env.pop("DATABRICKS_RUNTIME_VERSION", None)  # the platform itself creates sessions
    config = root / "cluster.json"
    config.write_text(json.dumps({"jars": jars, "warehouse": str(root / "warehouse"),
                                  "iceberg": str(root / "unity-catalog" / "main")}))
    with open(root / "cluster.log", "ab") as log:
        process = subprocess.Popen([sys.executable, str(here), str(config)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True)
    line = process.stdout.readline()
    if not line:
        process.wait(30)
        raise RuntimeError(f"the stand-in cluster did not start: see {root / 'cluster.log'}")
    return process, json.loads(line)


def _serve(config_path: str) -> None:
    from iotgen.runs.spark.session import get_spark

    config = json.loads(Path(config_path).read_text())
    conf = {"spark.sql.catalog.main": "org.apache.iceberg.spark.SparkCatalog",
            "spark.sql.catalog.main.type": "hadoop", "spark.sql.catalog.main.warehouse": config["iceberg"]}
    spark = get_spark("databricks-standin", cores=2, conf=conf, warehouse=config["warehouse"], connect=True,
                      jars=config["jars"], register_sources=False)
    spark.sql("CREATE SCHEMA IF NOT EXISTS iot")
    spark.sql("CREATE NAMESPACE IF NOT EXISTS main.iot")
    from iotgen.runs.spark.session import local_connect_url

    print(json.dumps({"url": local_connect_url(token=True)}), flush=True)
    sys.stdin.read()  # until the test closes it
    spark.stop()


if __name__ == "__main__":
    _serve(sys.argv[1])
