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


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The stand-in cluster, one for the module: a Spark Connect server with the Delta and Iceberg connectors."""
    jars = session_options()["jars"]
    if not jars:
        pytest.skip("the stand-in cluster needs Spark's Delta and Iceberg connectors: IOTGEN_SPARK_JARS (make test)")
    root = tmp_path_factory.mktemp("workspace")
    process, info = start_cluster(root, jars)
    try:
        yield root, info["url"]
    finally:
        process.stdin.close()
        try:
            process.wait(60)
        except Exception:  # noqa: BLE001 - it did not stop: end it
            process.kill()


@pytest.fixture
def standin(cluster, tmp_path, emulator, monkeypatch):
    """The workspace around a notebook: the kernel's startup file, a volume, widgets naming it, a secret scope
    holding the local Event Hubs endpoint's connection string."""
    root, url = cluster
    volume = tmp_path / "Volumes" / "main" / "iot" / "vol"
    volume.mkdir(parents=True)
    write_startup(tmp_path / "ipython")
    settings = {"url": url, "volumes_root": str(tmp_path / "Volumes"), "log": str(tmp_path / "dbutils.log"),
                "secrets": {"iot/eventhub": emulator.connection_string}}
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("DATABRICKS_STANDIN", str(tmp_path / "standin.json"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # the install cell's %pip finds everything installed, offline
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))

    def run(notebook: Path, output_dir: str, table: str) -> dict:
        """Run ``notebook`` with widgets naming the volume, ``iot.<table>`` (Delta) and ``main.iot.<table>``
        (Iceberg) and the secret; the executed notebook."""
        import papermill

        widgets = {"OUTPUT_DIR": str(volume / output_dir), "CATALOG_VOLUME_PATH": str(volume),
                   "DELTA_TABLE_NAME": f"iot.{table}", "ICEBERG_TABLE_NAME": f"main.iot.{table}",
                   "EVENTHUB_SECRET_SCOPE": "iot", "EVENTHUB_SECRET_KEY": "eventhub"}
        (tmp_path / "standin.json").write_text(json.dumps({**settings, "widgets": widgets}))
        out = tmp_path / f"{notebook.stem}.executed.ipynb"
        papermill.execute_notebook(str(notebook), str(out), cwd=str(notebook.parent), kernel_name="python3",
                                   progress_bar=False)
        executed = json.loads(out.read_text())
        text = _outputs(executed)
        assert '"output_type": "error"' not in text
        key = emulator.connection_string.split("SharedAccessKey=")[1].split(";")[0]
        assert key not in json.dumps(executed)  # the secret is in no output, no cell
        log = [json.loads(line) for line in (tmp_path / "dbutils.log").read_text().splitlines()]
        assert {"library.restartPython": True} in log and {"secrets.get": ["iot", "eventhub"]} in log
        assert "Spark Connect" in text and "Spark's Delta streaming sink" in text
        return executed

    return run, root, volume


def _outputs(executed: dict) -> str:
    return "\n".join(json.dumps(o) for c in executed["cells"] if c["cell_type"] == "code" for o in c["outputs"])


def _delta(path: Path, sql: str) -> list:
    with duckdb_connection() as con:
        return con.execute(sql.format(table=f"delta_scan('{path}')")).fetchall()


@pytest.mark.own_spark
@pytest.mark.timeout(900)  # a whole notebook with a Spark Connect server of its own: minutes on a loaded machine
def test_notebook_03_runs_its_databricks_branches_on_spark_connect_through_spark_sinks(standin):
    run, root, volume = standin
    text = _outputs(run(ROOT / "notebooks" / "03_spark_stream_to_lakehouse.ipynb", "nb03", "iot_events_stream"))
    assert "Spark's Iceberg streaming sink" in text
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
@pytest.mark.timeout(900)  # a whole notebook with a Spark Connect server of its own: minutes on a loaded machine
def test_the_main_notebook_runs_on_databricks_with_volumes_and_the_delta_sink(standin):
    run, root, volume = standin
    run(ROOT / "iot_data_generation.ipynb", "main", "iot_events")
    table = root / "warehouse" / "iot.db" / "iot_events"
    assert _delta(table, "SELECT count(*), count(DISTINCT event_id) FROM {table}") == [(2000, 2000)]
    assert list((volume / "main").glob("iot_events_*.ndjson"))  # the batch file went to the volume
    assert (volume / "checkpoints" / "delta-iot.iot_events" / "events" / "commits").is_dir()
