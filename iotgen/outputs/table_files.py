"""The Parquet data files of one table write, written by pyarrow: what Delta and Iceberg writes share.

Batches are split by their partition (one value per row, given beside the batch), and each partition has at most
one open file. Once ``pending_rows`` rows wait over all partitions, every partition's rows are written as a row
group (all at once, so no slice keeps an older batch alive), and a file is closed at ``target_file_size`` bytes.
So a long write's memory is bounded by ``pending_rows``, not by the partitions it spans or their files' size
(bench/results/memory.md). The table format says where a file goes and what a closed file becomes (a Delta add
action, an Iceberg data file): :class:`TableFiles` is subclassed by each.
"""

from __future__ import annotations

from typing import Any, Hashable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


class TableFiles:
    """Data files of one write. Subclasses give :meth:`_create` (a file's location and a binary stream to write
    it to), :meth:`_finished` (what a closed file becomes) and :meth:`_delete`."""

    def __init__(self, schema: pa.Schema, target_file_size: int, pending_rows: int, *, compression: str,
                 statistics: list[str], compression_level: int | None = None) -> None:
        self.schema = schema
        self.target_file_size = target_file_size
        self.pending_rows = pending_rows
        self.rows = 0
        self._compression = compression
        self._compression_level = compression_level
        self._statistics = statistics
        self._pending: dict[Hashable, list[pa.RecordBatch]] = {}
        self._pending_rows: dict[Hashable, int] = {}
        self._open: dict[Hashable, tuple[str, Any, Any]] = {}  # partition -> (location, stream, writer)
        self._written: list[str] = []
        self._finished_files: list[Any] = []

    # ---- what a table format gives -----------------------------------------------------------------------------
    def _create(self, partition: Hashable, number: int) -> tuple[str, Any]:
        """The location of the ``number``-th file of this write, in ``partition``, and a stream to write it to."""
        raise NotImplementedError

    def _finished(self, partition: Hashable, location: str, size: int, metadata: pq.FileMetaData) -> Any:
        """What a closed file becomes (its footer's ``metadata``), returned by :meth:`close` in file order."""
        raise NotImplementedError

    def _delete(self, location: str) -> None:
        raise NotImplementedError

    # ---- writing -----------------------------------------------------------------------------------------------
    def add(self, batch: pa.RecordBatch, partitions: pa.Array | None = None) -> None:
        """Rows of ``self.schema``; ``partitions`` holds each row's partition value (None: unpartitioned)."""
        if not batch.num_rows:
            return
        self.rows += batch.num_rows
        for partition, part in self._split(batch, partitions):
            self._pending.setdefault(partition, []).append(part)
            self._pending_rows[partition] = self._pending_rows.get(partition, 0) + part.num_rows
        if sum(self._pending_rows.values()) >= self.pending_rows:  # all at once: no slice keeps an old batch alive
            for partition in sorted(self._pending, key=str):
                self._flush(partition)

    @staticmethod
    def _split(batch: pa.RecordBatch, partitions: pa.Array | None
               ) -> Iterator[tuple[Hashable, pa.RecordBatch]]:
        if partitions is None:
            yield None, batch
            return
        if not partitions.null_count and pc.count_distinct(partitions).as_py() == 1:
            yield partitions[0].as_py(), batch
            return
        order = pc.sort_indices(partitions)
        counts = pc.value_counts(partitions.take(order))  # in order of first appearance: sorted
        data = batch.take(order)
        start = 0
        for value, count in zip(counts.field(0).to_pylist(), counts.field(1).to_pylist()):
            yield value, data.slice(start, count)
            start += count

    def _flush(self, partition: Hashable) -> None:
        batches = self._pending.pop(partition)
        self._pending_rows.pop(partition)
        if partition not in self._open:
            location, stream = self._create(partition, len(self._written))
            self._written.append(location)
            try:
                writer = pq.ParquetWriter(stream, self.schema, compression=self._compression,
                                          compression_level=self._compression_level,
                                          write_statistics=self._statistics)
            except BaseException:
                stream.close()
                raise
            self._open[partition] = (location, stream, writer)
        location, stream, writer = self._open[partition]
        table = pa.Table.from_batches(batches, schema=self.schema)
        writer.write_table(table, row_group_size=table.num_rows)
        if stream.tell() >= self.target_file_size:
            self._close_file(partition)

    def _close_file(self, partition: Hashable) -> None:
        location, stream, writer = self._open.pop(partition)
        writer.close()
        size = stream.tell()
        stream.close()
        self._finished_files.append(self._finished(partition, location, size, writer.writer.metadata))

    def close(self) -> list[Any]:
        """Write what is pending and close every file; what each file written became (:meth:`_finished`)."""
        for partition in sorted(self._pending, key=str):
            self._flush(partition)
        for partition in sorted(self._open, key=str):
            self._close_file(partition)
        return self._finished_files

    def discard(self) -> None:
        """Close and delete every file written."""
        for _, stream, writer in self._open.values():
            stream.close()
            try:
                writer.close()  # it can only fail now (the stream is closed), but it then leaves nothing behind
            except (ValueError, OSError):
                pass
        self._open.clear()
        for location in self._written:
            self._delete(location)
