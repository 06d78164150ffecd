"""Ground truth: what the data-quality scenarios did to a range of events, carried with those events.

A block with scenarios comes out of :func:`~.generator.labelled_block` as its events and a :class:`Truth`
together: the labels (one row per injected fault and event, :data:`LABEL_SCHEMA`) and, per schema-drift change,
which of the events it touched. :meth:`Truth.slice` and :meth:`Truth.concat` cut and join truths exactly as
the events are cut and joined, so any range of events has its truth without generating anything twice.
Pure data: no generation, no I/O, no state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

LABEL_SCHEMA = pa.schema([
    pa.field("event_index", pa.int64(), nullable=False),
    pa.field("event_id", pa.string()),
    pa.field("sensor_id", pa.string()),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("column", pa.string()),
    pa.field("value", pa.float64()),
    pa.field("source_index", pa.int64()),
    pa.field("note", pa.string()),
])


@dataclass(frozen=True)
class Truth:
    """The ground truth of events ``start .. start + n``: their labels (:data:`LABEL_SCHEMA`, ``event_index``
    absolute) and, per schema-drift change, a boolean per event: whether the change touched it."""

    labels: pa.Table
    drifted: tuple[np.ndarray, ...] = field(default=())
    start: int = 0

    @property
    def drift_counts(self) -> tuple[int, ...]:
        """How many of the events each schema-drift change touched."""
        return tuple(int(np.count_nonzero(mask)) for mask in self.drifted)

    def slice(self, start: int, stop: int) -> "Truth":
        """The truth of events ``start .. stop`` (absolute positions inside this truth's range)."""
        index = self.labels.column("event_index")
        inside = pc.and_(pc.greater_equal(index, start), pc.less(index, stop))
        lo, hi = start - self.start, stop - self.start
        return Truth(self.labels.filter(inside), tuple(mask[lo:hi] for mask in self.drifted), start)

    @staticmethod
    def empty(start: int = 0, changes: int = 0) -> "Truth":
        return Truth(LABEL_SCHEMA.empty_table(), tuple(np.zeros(0, dtype=bool) for _ in range(changes)), start)

    @staticmethod
    def concat(parts: Sequence["Truth"]) -> "Truth":
        """Consecutive truths as one (the first one's start)."""
        if len(parts) == 1:
            return parts[0]
        drifted = tuple(np.concatenate(masks) for masks in zip(*(p.drifted for p in parts)))
        return Truth(pa.concat_tables([p.labels for p in parts]), drifted, parts[0].start)
