"""Running on Databricks: detected from the runtime's environment, and the rules that apply there (volumes, the
local endpoint, credentials, the connection string of a Config cell). A stand-in environment: the variables the
runtime sets; ``dbutils`` (which exists only there) replaced by a small fake where a test needs one."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from iotgen.settings import databricks
from iotgen.settings.config import Config, Secret
from iotgen.outputs.eventhubs import EventHubConfigError, EventHubTarget, target_from_config

KEY = "TOPSECRET0123456789abcdef"
AZURE = f"Endpoint=sb://myns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey={KEY};EntityPath=hub"


@pytest.fixture
def on_databricks(monkeypatch):
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    monkeypatch.delenv("IS_SERVERLESS", raising=False)


def test_the_runtime_is_detected_from_its_environment(monkeypatch):
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    assert not databricks.on_databricks() and not databricks.on_serverless()
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "18.0")
    assert databricks.on_databricks() and not databricks.on_serverless()
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "client.4.5")
    assert databricks.on_serverless()
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    monkeypatch.setenv("IS_SERVERLESS", "TRUE")
    assert databricks.on_serverless()


def test_outputs_must_be_volumes_or_cloud_uris_on_databricks_only(on_databricks, monkeypatch):
    for good in ("/Volumes/main/iot/vol", "/Volumes/main/iot/vol/out/x", "dbfs:/Volumes/main/iot/vol/cp",
                 "abfss://c@acct.dfs.core.windows.net/iot", "s3://bucket/iot", "gs://bucket/iot"):
        databricks.check_location("OUTPUT_DIR", good)
    for bad in ("output", "/tmp/x", "/dbfs/tmp/x", "dbfs:/tmp/x", "/Volumes/main", "/Workspace/Repos/me/iotgen/output"):
        with pytest.raises(ValueError, match=r"^OUTPUT_DIR must be a Unity Catalog volume .* on Databricks, got"):
            databricks.check_location("OUTPUT_DIR", bad)
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION")
    databricks.check_location("OUTPUT_DIR", "output")  # anywhere else: any folder


def test_batch_files_on_databricks_need_a_volume_before_anything_is_written(on_databricks, tmp_path, monkeypatch):
    from iotgen.runs.batch import write_files

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="OUTPUT_DIR must be a Unity Catalog volume"):
        write_files(Config(num_events=10, output_dir="output"))
    assert not (tmp_path / "output").exists()
    monkeypatch.setattr(databricks, "VOLUMES_ROOT", str(tmp_path / "Volumes"))  # the volumes' mount, here
    result = write_files(Config(num_events=10, output_dir=str(tmp_path / "Volumes" / "main" / "iot" / "vol")))
    assert result.paths and all(Path(p).exists() for p in result.paths)


def test_on_databricks_no_local_endpoint_unless_asked(on_databricks):
    from iotgen.runs.stream import connect

    with pytest.raises(EventHubConfigError, match="on Databricks iotgen starts no local endpoint unless "
                                                  "EVENTHUB_LOCAL_ENDPOINT=yes"):
        connect(Config())
    with connect(Config(eventhub_local_endpoint="yes")) as connection:  # asked for: the real local endpoint
        assert connection.local and connection.producer.partition_ids


def test_websockets_and_service_credentials_reach_the_sdk_clients(on_databricks, monkeypatch):
    from azure.eventhub import TransportType

    target = target_from_config(Config(eventhub_connection_string=Secret(AZURE), eventhub_transport="websockets"))
    assert target._client_args()["transport_type"] == TransportType.AmqpOverWebsocket
    assert "AMQP over WebSockets" in target.description
    assert "transport_type" not in target_from_config(Config(eventhub_connection_string=Secret(AZURE)))._client_args()
    config = Config(eventhub_service_credential="eh-cred", eventhub_namespace="myns", eventhub_name="hub")
    target = target_from_config(config)
    assert (target.namespace, target.auth, target.service_credential) == \
        ("myns.servicebus.windows.net", "service credential", "eh-cred")
    with pytest.raises(ValueError, match="EVENTHUB_SERVICE_CREDENTIAL needs Databricks Runtime 16.2"):
        target.credential()  # no dbutils.credentials here

    class Credentials:  # what dbutils.credentials gives on Databricks Runtime 16.2+
        def getServiceCredentialsProvider(self, name):
            return ("azure-credential-for", name)

    class FakeDbutils:
        credentials = Credentials()

    monkeypatch.setattr(databricks, "dbutils", lambda: FakeDbutils())
    assert target.credential() == ("azure-credential-for", "eh-cred")
    with pytest.raises(EventHubConfigError, match="EVENTHUB_SERVICE_CREDENTIAL needs EVENTHUB_NAMESPACE"):
        target_from_config(Config(eventhub_service_credential="eh-cred"))
    assert isinstance(EventHubTarget("ns", "hub", "Azure AD"), EventHubTarget)


def _notebook(tmp_path: Path, source: str) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    parameters = nbformat.v4.new_code_cell('EVENTHUB_CONNECTION_STRING = ""')
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [parameters, nbformat.v4.new_code_cell(source)]
    path = tmp_path / "config_cell.ipynb"
    nbformat.write(nb, path)
    return path


def test_a_connection_string_typed_in_the_config_cell_works_with_a_warning_and_papermill_p_is_refused(
        tmp_path, monkeypatch):
    import papermill

    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                      os.environ.get("PYTHONPATH", "")]))
    typed = _notebook(tmp_path, f'EVENTHUB_CONNECTION_STRING = "{AZURE}"\n'
                                "import iotgen_helpers as h\nconfig = h.load_config(globals())\n"
                                "print(config.eventhub_connection_string.reveal() == EVENTHUB_CONNECTION_STRING, "
                                "config.eventhub_connection_string)")
    out = tmp_path / "typed.out.ipynb"
    papermill.execute_notebook(str(typed), str(out), kernel_name="python3", progress_bar=False)
    outputs = [o for c in json.loads(out.read_text())["cells"] for o in c.get("outputs", [])]
    text = {o["name"]: "".join(o["text"]) for o in outputs if o["output_type"] == "stream"}
    assert text["stdout"].strip() == "True Secret('***')"
    assert text["stderr"].startswith("warning: EVENTHUB_CONNECTION_STRING is typed in the Config cell; a secret "
                                     "scope (EVENTHUB_SECRET_SCOPE/EVENTHUB_SECRET_KEY) or the environment variable")
    assert KEY not in json.dumps(outputs)
    injected = _notebook(tmp_path, "import iotgen_helpers as h\nconfig = h.load_config(globals())")
    with pytest.raises(papermill.PapermillExecutionError,
                       match="EVENTHUB_CONNECTION_STRING must not be a papermill parameter") as error:
        papermill.execute_notebook(str(injected), str(tmp_path / "injected.out.ipynb"), kernel_name="python3",
                                   parameters={"EVENTHUB_CONNECTION_STRING": AZURE}, progress_bar=False)
    assert KEY not in str(error.value)
