"""The third-party private APIs iotgen uses (iotgen.outputs.private_api) exist in the installed libraries, and the
public fallbacks work when they do not."""

from __future__ import annotations

import pyarrow as pa
import pytest

from iotgen.outputs import private_api
from iotgen.outputs.iceberg import iceberg_app_versions, open_catalog, write_iceberg
from iotgen.outputs.lakehouse import LAYOUTS

CONNECTION = ("Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=a;SharedAccessKey=b;UseDevelopmentEmulator=true;"
              "EntityPath=h")


@pytest.fixture
def without(monkeypatch):
    """Make one cached private entry point look missing (as after an upgrade that moved it)."""
    def remove(name: str) -> None:
        getattr(private_api, name).cache_clear()
        monkeypatch.setattr(private_api, name, lambda: None)
    yield remove
    monkeypatch.undo()
    private_api._sdk_hash.cache_clear()
    private_api._iceberg_files.cache_clear()


def test_the_installed_libraries_have_what_iotgen_relies_on():
    from azure.eventhub import EventData, EventDataBatch, EventHubProducerClient

    client = EventHubProducerClient.from_connection_string(CONNECTION)  # connects on first use only
    try:
        assert private_api.has_links(client)
    finally:
        client.close()
    sdk = EventDataBatch(max_size_in_bytes=1024)
    sdk.add(EventData(b"x"))
    encoded = private_api.first_encoded(sdk)
    ours = EventDataBatch(max_size_in_bytes=1024)
    private_api.fill_encoded(ours, [encoded], sdk.size_in_bytes)
    assert (len(ours), ours.size_in_bytes, private_api.first_encoded(ours)) == (1, sdk.size_in_bytes, encoded)
    assert private_api._sdk_hash() is not None
    assert private_api.iceberg_files_supported()


def test_partition_keys_stay_in_one_partition_without_the_sdk_resolver(without):
    with_sdk = [private_api.partition_for_key(f"sensor-{i:05d}", 4) for i in range(200)]
    assert set(with_sdk) == {0, 1, 2, 3}
    without("_sdk_hash")
    fallback = [private_api.partition_for_key(f"sensor-{i:05d}", 4) for i in range(200)]
    assert set(fallback) == {0, 1, 2, 3}
    assert fallback == [private_api.partition_for_key(f"sensor-{i:05d}", 4) for i in range(200)]


def test_iceberg_appends_through_the_public_api_when_the_private_writer_is_missing(tmp_path, without):
    import datetime as dt

    at = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
    rows = pa.Table.from_pylist([{"_partition": "0", "_sequence_number": i, "_enqueued_time": at,
                                  "reason": f"r{i}", "body": b"x"} for i in range(5)], schema=LAYOUTS["quarantine"])
    catalog = open_catalog(warehouse=tmp_path / "private")
    write_iceberg(catalog, "iot.q", rows, idempotency_key=("app", 1))
    without("_iceberg_files")
    catalog = open_catalog(warehouse=tmp_path / "public")
    write_iceberg(catalog, "iot.q", rows, idempotency_key=("app", 1))
    write_iceberg(catalog, "iot.q", rows, idempotency_key=("app", 2))
    assert write_iceberg(catalog, "iot.q", rows, idempotency_key=("app", 2)).skipped  # exactly once still
    table = catalog.load_table("iot.q")
    assert table.scan().to_arrow().num_rows == 10
    assert iceberg_app_versions(catalog, "iot.q", ["app"]) == {"app": 2}
