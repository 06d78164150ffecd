"""The notebooks' Databricks branches, executed: the main notebook and notebook 03 in a Databricks stand-in.

The stand-in (``databricks_standin.py``): ``DATABRICKS_RUNTIME_VERSION`` set, a fake ``dbutils`` (widgets, secrets,
credentials, library), the volumes mounted on a temporary folder, and ``spark`` a Spark Connect session on a
"cluster" with Spark's own Delta and Iceberg connectors. The notebooks run unchanged (papermill): their install
cell calls ``%pip`` and ``dbutils.library.restartPython()``, the parameters come from widgets, the connection
string from a secret scope, outputs and checkpoints go to the volume, the tables are catalog tables written by
Spark's sinks; then the tables are read back by DuckDB, not Spark.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from databricks_standin import start_cluster, write_startup
from spark_support import connectors, duckdb_connection, session_options

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def standin(tmp_path, emulator, monkeypatch):
    """The workspace: a running cluster, the kernel's startup file, volumes, a secret scope holding the local
    Event Hubs endpoint's connection string."""
    jars = session_options()["jars"]
    if not jars:
        pytest.skip("the stand-in cluster needs Spark's Delta and Iceberg connectors: IOTGEN_SPARK_JARS (make test)")
    cluster, info = start_cluster(tmp_path, jars)
    try:
        volume = tmp_path / "Volumes" / "main" / "iot" / "vol"
        volume.mkdir(parents=True)
        write_startup(tmp_path / "ipython")
        settings = {"url": info["url"], "volumes_root": str(tmp_path / "Volumes"), "log": str(tmp_path / "dbutils.log"),
                    "secrets": {"iot/eventhub": emulator.connection_string}, "widgets": {}}
        monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
        monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
        monkeypatch.setenv("DATABRICKS_STANDIN", str(tmp_path / "standin.json"))
        monkeypatch.setenv("PIP_NO_INDEX", "1")  # the install cell's %pip finds everything installed, offline
        monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
        yield tmp_path, volume, settings
    finally:
        cluster.stdin.close()
        try:
            cluster.wait(60)
        except Exception:  # noqa: BLE001 - it did not stop: end it
            cluster.kill()


def _run(notebook: Path, out: Path, root: Path, settings: dict, widgets: dict) -> dict:
    import papermill

    (root / "standin.json").write_text(json.dumps({**settings, "widgets": widgets}))
    papermill.execute_notebook(str(notebook), str(out), cwd=str(notebook.parent), kernel_name="python3",
                               progress_bar=False)
    return json.loads(out.read_text())


def _outputs(executed: dict) -> str:
    return "\n".join(json.dumps(o) for c in executed["cells"] if c["cell_type"] == "code" for o in c["outputs"])


def _delta(path: Path, sql: str) -> list:
    with duckdb_connection() as con:
        return con.execute(sql.format(table=f"delta_scan('{path}')")).fetchall()


@pytest.mark.own_spark
def test_notebook_03_runs_its_databricks_branches_on_spark_connect_through_spark_sinks(standin, emulator):
    root, volume, settings = standin
    widgets = {"OUTPUT_DIR": str(volume / "nb03"), "CATALOG_VOLUME_PATH": str(volume),
               "DELTA_TABLE_NAME": "iot.iot_events_stream", "ICEBERG_TABLE_NAME": "main.iot.iot_events_stream",
               "EVENTHUB_SECRET_SCOPE": "iot", "EVENTHUB_SECRET_KEY": "eventhub"}
    executed = _run(ROOT / "notebooks" / "03_spark_stream_to_lakehouse.ipynb", root / "03.ipynb", root, settings,
                    widgets)
    text = _outputs(executed)
    assert '"output_type": "error"' not in text
    key = emulator.connection_string.split("SharedAccessKey=")[1].split(";")[0]
    assert key not in text and key not in json.dumps(executed)  # the secret is in no output, no cell
    assert "Spark Connect" in text and "Spark's Delta streaming sink" in text and "Spark's Iceberg streaming sink" in text
    log = [json.loads(line) for line in (root / "dbutils.log").read_text().splitlines()]
    assert {"library.restartPython": True} in log and {"secrets.get": ["iot", "eventhub"]} in log
    # the tables Spark's sinks wrote, read back by DuckDB; the checkpoints in the volume
    table = root / "warehouse" / "iot.db" / "iot_events_stream"
    assert _delta(table, "SELECT count(*), count(DISTINCT event_id) FROM {table}") == [(2000, 2000)]
    assert _delta(table.with_name("iot_events_stream_bad_records"), "SELECT count(*) FROM {table}") == [(3,)]
    types = dict((r[0], r[1]) for r in _delta(table, "DESCRIBE SELECT * FROM {table}"))
    assert "VARIANT" in types["json_column"].upper()
    assert (volume / "checkpoints" / "delta-iot.iot_events_stream" / "events" / "commits").is_dir()
    metadata = sorted((root / "unity-catalog" / "main" / "iot" / "iot_events_stream" / "metadata")
                      .glob("v*.metadata.json"))[-1]
    assert json.loads(metadata.read_text())["format-version"] == 3
    assert (volume / "nb03").is_dir() and not any((volume / "nb03").iterdir())  # no table under OUTPUT_DIR


@pytest.mark.own_spark
def test_the_main_notebook_runs_on_databricks_with_volumes_and_the_delta_sink(standin, emulator):
    root, volume, settings = standin
    widgets = {"OUTPUT_DIR": str(volume / "main"), "CATALOG_VOLUME_PATH": str(volume),
               "DELTA_TABLE_NAME": "iot.iot_events", "ICEBERG_TABLE_NAME": "main.iot.iot_events",
               "EVENTHUB_SECRET_SCOPE": "iot", "EVENTHUB_SECRET_KEY": "eventhub"}
    executed = _run(ROOT / "iot_data_generation.ipynb", root / "main.ipynb", root, settings, widgets)
    text = _outputs(executed)
    assert '"output_type": "error"' not in text
    assert emulator.connection_string.split("SharedAccessKey=")[1].split(";")[0] not in json.dumps(executed)
    assert "Spark Connect" in text and "Spark's Delta streaming sink" in text
    table = root / "warehouse" / "iot.db" / "iot_events"
    assert _delta(table, "SELECT count(*), count(DISTINCT event_id) FROM {table}") == [(2000, 2000)]
    assert list((volume / "main").glob("iot_events_*.ndjson"))  # the batch file went to the volume
    assert (volume / "checkpoints" / "delta-iot.iot_events" / "events" / "commits").is_dir()
