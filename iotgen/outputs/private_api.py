"""Every use of a third-party library's private API, in one place: what it relies on is checked when first
needed, and where it is missing iotgen takes the library's public API instead, saying so in one logged line.

* **azure-eventhub** (``<6``): the fast producer fills an ``EventDataBatch`` with messages iotgen encoded itself
  (``batch._message.data``, ``_size``, ``_count``) and sends it on the client's per-partition link
  (``client._start_producer``, ``client._producers[p]._open_with_retry`` / ``.send``), one attempt per send so
  that iotgen counts every retry; the partition a key maps to is the SDK's own hash
  (``azure.eventhub._buffered_producer._partition_resolver.generate_hash_code``). Public fallback: ``batch.add``
  with ``EventData`` and ``client.send_batch`` (slower; a send the SDK repeats itself is not counted), and a
  CRC-32 of the key (each key still lands in one partition).
* **pyiceberg** (``<0.13``): iotgen writes an Iceberg table's Parquet files itself
  (:class:`iotgen.outputs.iceberg.IcebergFiles`, memory bounded as for Delta) and makes their data file records
  with pyiceberg's footer statistics (``pyiceberg.io.pyarrow.compute_statistics_plan``,
  ``data_file_statistics_from_parquet_metadata``, ``parquet_path_to_id_mapping``, ``DataFile.from_args``, the
  table's location provider), then adds them in one fast-append snapshot with the app-transaction properties
  (``Transaction.update_snapshot().fast_append()``). Public fallback: ``Transaction.append`` per group of rows
  (one snapshot per group in the same commit; the properties ride on each).

``tests/test_private_api.py`` checks each of these against the installed libraries, so an upgrade that moves one
fails there first, by name.
"""

from __future__ import annotations

import logging
import zlib
from functools import lru_cache
from typing import Any, Iterable

_LOGGER = logging.getLogger(__name__)

#: The SDK's key for the producer without a partition (``azure.eventhub._constants.ALL_PARTITIONS``).
ALL_PARTITIONS = "all-partitions"


# ---- azure-eventhub --------------------------------------------------------------------------------------------
def fill_encoded(batch: Any, messages: list[bytes], size: int) -> None:
    """Put encoded messages into an empty ``EventDataBatch`` (what ``add`` does after encoding each event)."""
    batch._message.data.extend(messages)
    batch._size = size
    batch._count = len(messages)


def first_encoded(batch: Any) -> bytes:
    """The first message of a batch, as the SDK encoded it."""
    return bytes(batch._message.data[0])


def has_links(client: Any) -> bool:
    """Whether the client has the per-partition links :func:`open_link` and :func:`send_on_link` use."""
    producers = getattr(client, "_producers", None)
    return (callable(getattr(client, "_start_producer", None)) and isinstance(producers, dict)
            and ALL_PARTITIONS in producers
            and callable(getattr(type(producers[ALL_PARTITIONS]), "_open_with_retry", None)))


def open_link(client: Any, partition_id: str | None, timeout: float) -> None:
    """Open the client's link to a partition (or the gateway link) now, not on the first send."""
    partition = partition_id or ALL_PARTITIONS
    client._start_producer(partition, timeout)
    client._producers[partition]._open_with_retry()


def send_on_link(client: Any, batch: Any, timeout: float) -> None:
    """One send attempt of a batch on its partition's link (the SDK's own retries stay off)."""
    partition = batch._partition_id or ALL_PARTITIONS
    client._start_producer(partition, timeout)
    client._producers[partition].send(batch, timeout=timeout)


@lru_cache(maxsize=1)
def _sdk_hash():
    try:
        from azure.eventhub._buffered_producer._partition_resolver import generate_hash_code
    except ImportError:
        _LOGGER.warning("this azure-eventhub has no partition resolver: partition keys are spread by CRC-32 (each "
                        "key still in one partition, not the one the service would pick)")
        return None
    return generate_hash_code


def partition_for_key(key: str, partitions: int) -> int:
    """The partition (index) the Event Hubs service assigns to a partition key, as the SDK computes it."""
    generate_hash_code = _sdk_hash()
    if generate_hash_code is None:
        return zlib.crc32(key.encode("utf-8")) % partitions
    return abs(generate_hash_code(key) % partitions)


# ---- pyiceberg ---------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _iceberg_files() -> Any:
    """pyiceberg's pieces for data files written outside it: the statistics of a Parquet footer, the data file
    record, the location provider."""
    try:
        from types import SimpleNamespace

        from pyiceberg.io.pyarrow import (
            compute_statistics_plan,
            data_file_statistics_from_parquet_metadata,
            parquet_path_to_id_mapping,
        )
        from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
        from pyiceberg.table.locations import load_location_provider
        from pyiceberg.typedef import Record
    except ImportError:
        _LOGGER.warning("this pyiceberg lacks what iotgen writes Iceberg data files with: Iceberg appends go "
                        "through Transaction.append (one snapshot per group of rows)")
        return None
    return SimpleNamespace(statistics_plan=compute_statistics_plan, column_ids=parquet_path_to_id_mapping,
                           statistics=data_file_statistics_from_parquet_metadata, DataFile=DataFile,
                           DataFileContent=DataFileContent, FileFormat=FileFormat,
                           location_provider=load_location_provider, Record=Record)


def iceberg_files_supported() -> bool:
    """Whether iotgen can write Iceberg data files itself (:class:`IcebergDataFile`); else
    :func:`iceberg_append_tables`."""
    return _iceberg_files() is not None


class IcebergDataFile:
    """Data file records of one table's schema and properties, from the footers of the files iotgen wrote, as
    pyiceberg's own writer makes them (``pyiceberg.io.pyarrow.write_file``)."""

    def __init__(self, table_metadata: Any, metrics: dict[str, str]) -> None:
        api = _iceberg_files()
        self._api = api
        self._metadata = table_metadata
        schema = table_metadata.schema()
        self._plan = api.statistics_plan(schema, {**table_metadata.properties, **metrics})
        self._ids = api.column_ids(schema)
        self._locations = api.location_provider(table_metadata.location, table_metadata.properties)

    def location(self, name: str) -> str:
        """Where a data file ``name`` (which may start with a partition path) goes."""
        return self._locations.new_data_location(name)

    def __call__(self, location: str, partition: tuple, size: int, parquet_metadata: Any) -> Any:
        api = self._api
        statistics = api.statistics(parquet_metadata=parquet_metadata, stats_columns=self._plan,
                                    parquet_column_mapping=self._ids)
        return api.DataFile.from_args(
            content=api.DataFileContent.DATA, file_path=location, file_format=api.FileFormat.PARQUET,
            partition=api.Record(*partition), file_size_in_bytes=size, sort_order_id=None,
            spec_id=self._metadata.default_spec_id, equality_ids=None, key_metadata=None,
            **statistics.to_serialized_dict())


def iceberg_append_files(tx: Any, data_files: Iterable[Any], properties: dict[str, str]) -> None:
    """One fast-append snapshot of ``data_files`` with ``properties`` in its summary, in an open transaction."""
    with tx.update_snapshot(snapshot_properties=properties).fast_append() as append:
        for data_file in data_files:
            append.append_data_file(data_file)


def iceberg_append_tables(tx: Any, groups: Iterable[Any], properties: dict[str, str]) -> int:
    """The public way: ``Transaction.append`` per group of rows (pyarrow Tables), one snapshot each with
    ``properties``; returns the rows appended."""
    rows = 0
    for group in groups:
        rows += group.num_rows
        tx.append(group, snapshot_properties=properties)
    return rows
