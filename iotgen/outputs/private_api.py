"""Every use of a third-party library's private API, in one place: what it relies on is checked when first
needed, and where it is missing iotgen takes the library's public API instead, saying so in one logged line.

* **azure-eventhub** (``<6``): the fast producer fills an ``EventDataBatch`` with messages iotgen encoded itself
  (``batch._message.data``, ``_size``, ``_count``) and sends it on the client's per-partition link
  (``client._start_producer``, ``client._producers[p]._open_with_retry`` / ``.send``), one attempt per send so
  that iotgen counts every retry; the partition a key maps to is the SDK's own hash
  (``azure.eventhub._buffered_producer._partition_resolver.generate_hash_code``). Public fallback: ``batch.add``
  with ``EventData`` and ``client.send_batch`` (slower; a send the SDK repeats itself is not counted), and a
  CRC-32 of the key (each key still lands in one partition).
* **pyiceberg** (``<0.13``): :func:`iceberg_data_files` writes a group of rows into data files of an open
  transaction with ``pyiceberg.io.pyarrow._dataframe_to_data_files``, so that one fast-append snapshot carries
  every file and the app-transaction properties. Public fallback: ``Transaction.append`` per group (one snapshot
  per group in the same commit; the properties ride on each).

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
def _data_files_writer():
    try:
        from pyiceberg.io.pyarrow import _dataframe_to_data_files
    except ImportError:
        _LOGGER.warning("this pyiceberg has no _dataframe_to_data_files: Iceberg appends go through "
                        "Transaction.append (one snapshot per group of rows)")
        return None
    return _dataframe_to_data_files


def iceberg_append(tx: Any, table: Any, groups: Iterable[Any], properties: dict[str, str]) -> int:
    """Append groups of rows (pyarrow Tables) to an open transaction; returns the rows appended. One
    fast-append snapshot with every data file and ``properties`` where the private writer is there, else one
    public ``append`` per group."""
    import itertools

    writer = _data_files_writer()
    rows = 0
    if writer is None:
        for group in groups:
            rows += group.num_rows
            tx.append(group, snapshot_properties=properties)
        return rows
    counter = itertools.count(0)
    with tx.update_snapshot(snapshot_properties=properties).fast_append() as append:
        for group in groups:
            rows += group.num_rows
            for data_file in writer(table_metadata=tx.table_metadata, df=group, io=table.io,
                                    write_uuid=append.commit_uuid, counter=counter):
                append.append_data_file(data_file)
    return rows
