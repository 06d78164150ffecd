"""The ground-truth labels of a run with data-quality scenarios, written next to its events.

One row per injected fault or anomaly (:data:`iotgen.generation.scenarios.LABEL_SCHEMA`), appended chunk by chunk as the
events are written: ``_labels.parquet`` when the events are Parquet, else ``_labels.ndjson``. The counts per
kind, and how many events each schema-drift change touched, go to the run's manifest (:meth:`manifest`).
The file is written inside the run's (temporary) folder, which is published as a whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ..formats.encoding import ndjson_bytes
from ..generation.scenarios import label_counts
from ..generation.truth import LABEL_SCHEMA, Truth


class LabelsWriter:
    def __init__(self, folder: Path, fmt: str, drift_changes: int = 0) -> None:
        self.parquet = fmt == "parquet"
        self.path = Path(folder) / ("_labels.parquet" if self.parquet else "_labels.ndjson")
        self.count = 0
        self.by_kind: dict[str, int] = {}
        self.drift_counts = [0] * drift_changes
        self._writer = pq.ParquetWriter(self.path, LABEL_SCHEMA, compression="zstd") if self.parquet else None
        self._file = None if self.parquet else open(self.path, "wb")

    def add(self, truth: Truth) -> None:
        labels = truth.labels
        if labels.num_rows:
            if self._writer is not None:
                self._writer.write_table(labels)
            else:
                assert self._file is not None, "LabelsWriter.add after close"
                self._file.write(ndjson_bytes(labels))
            for key, n in label_counts(labels).items():
                self.by_kind[key] = self.by_kind.get(key, 0) + n
        self.count += labels.num_rows
        self.drift_counts = [a + b for a, b in zip(self.drift_counts, truth.drift_counts)]

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        elif self._file is not None:
            self._file.close()
            self._file = None

    def manifest(self, timeline: list[dict[str, Any]]) -> dict[str, Any]:
        """The manifest's ``labels`` section and the schema-drift timeline with event counts."""
        return {
            "labels": {"path": self.path.name, "count": self.count, "by_kind": dict(sorted(self.by_kind.items()))},
            "schema_drift": [dict(change, events=n) for change, n in zip(timeline, self.drift_counts)],
        }
