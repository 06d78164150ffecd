"""The batch run that fills a lakehouse table: :func:`write_table` generates ``NUM_EVENTS`` events chunk by chunk
(memory bounded by ``CHUNK_SIZE``) and appends them to a :class:`~iotgen.outputs.table_target.TableTarget` in one
atomic commit, with the device registry's tables next to it when the registry is on.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pyarrow as pa

from ..generation.generator import BLOCK_SIZE, generate_events
from ..outputs.lakehouse import TableCommit
from ..outputs.registry import registry_datasets, registry_enabled, write_registry_delta, write_registry_iceberg
from ..outputs.table_target import TableTarget, config_target
from ..settings.catalogs import Catalogs
from ..settings.config import Config
from ..spec.spec_file import generator_spec

@dataclass
class TableResult:
    """What a batch run appended: the target, its commit and the seed of the events."""

    target: TableTarget
    commit: TableCommit
    count: int
    seed: int
    #: With the device registry: its tables next to the events table, by dataset (see write_registry_tables).
    registry: dict[str, "TableTarget"] = field(default_factory=dict)


def write_table(
    config: Config,
    catalogs: Catalogs | None = None,
    *,
    now: dt.datetime | None = None,
    on_progress: Callable[[int], None] | None = None,
    target: TableTarget | None = None,
) -> TableResult:
    """Generate ``NUM_EVENTS`` events and append them to the ``OUTPUT_FORMAT`` table (delta or iceberg) in one
    commit. The target is checked before any event is generated."""
    target = target or config_target(config)
    target.check()
    spec = generator_spec(config, catalogs, now)

    # A Delta VARIANT column straight from the generator (no JSON parse), unless scenarios rewrite the text
    direct = target.format == "delta" and target.json_column_mode == "variant" and spec.scenarios is None

    def chunks() -> Iterator[pa.RecordBatch]:
        # One commit: chunk edges are invisible in the table, and a chunk of at most one generation block is never
        # joined from two (a copy), which keeps a third of generation's memory off (bench/results/memory.md)
        for batch in generate_events(spec, config.num_events, chunk_size=min(config.chunk_size, BLOCK_SIZE),
                                     json_column="variant" if direct else "text"):
            yield batch
            if on_progress:
                on_progress(batch.num_rows)

    data: Any = chunks() if config.num_events else pa.Table.from_batches([], schema=_events_schema())
    commit = target.write(data)
    registry = write_registry_tables(target, spec, config.cdc_layout) if registry_enabled(spec) else {}
    return TableResult(target, commit, commit.rows, spec.seed, registry)


def registry_target(target: TableTarget, dataset: str) -> TableTarget:
    """The table of a registry dataset next to the events table: ``<events>_devices``, ``<events>_device_changes``,
    ``<events>_device_history``, ``<events>_device_change_labels``."""
    return target.sibling("_" + dataset.lstrip("_"))


def write_registry_tables(target: TableTarget, spec, layout: str) -> dict[str, TableTarget]:
    """Write the device registry's datasets (:func:`iotgen.outputs.registry.registry_datasets`) as tables next to
    the events table ``target``, each replacing its previous contents in one commit."""
    written = {}
    for name, table in registry_datasets(spec, layout).items():
        sibling = registry_target(target, name)
        if target.format == "delta":
            write_registry_delta(sibling.location, table)
        else:
            write_registry_iceberg(target.catalog(), sibling.location, table)
        written[name] = sibling
    return written


def _events_schema() -> pa.Schema:
    from ..settings.schema import ARROW_SCHEMA

    return ARROW_SCHEMA
