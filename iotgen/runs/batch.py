"""Batch runs: generate a run's events and write them to files, with worker processes and bounded memory.

The run is cut into chunks of ``CHUNK_SIZE`` events; each chunk is generated and encoded (in a worker process
when ``WORKERS`` > 1) and written in order, with at most one chunk per worker and one more in flight, so memory
is bounded by the chunk size whatever the run's size. Runs over ``EVENTS_PER_FILE`` events are written as a folder of
parts with a ``_manifest.json``. Every parameter is checked, and the output folder proved writable, before
anything is written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import multiprocessing
import os
import shutil
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa

from ..base.allocator import freed_memory_returned
from ..base.version import __version__
from ..generation.devices import describe_registry
from ..generation.generator import GeneratorSpec, generate_events, labelled_pieces
from ..generation.truth import Truth
from ..outputs.files import (
    EXTENSIONS,
    EventFileWriter,
    check_output_dir,
    encode_chunk,
    publish,
    run_name,
    temporary_folder,
    write_manifest,
)
from ..outputs.labels import LabelsWriter
from ..outputs.registry import registry_enabled, write_registry_files
from ..settings.catalogs import Catalogs
from ..settings.config import Config
from ..settings.schema import SCHEMA_VERSION
from ..spec.spec_file import describe, drift_timeline, generator_spec
from .batch_stats import BatchStats, ChunkStats, bucket_us, chunk_stats
from .worker_start import start_worker


@dataclass
class BatchResult:
    """What a batch run wrote: the published paths (files, or one folder of parts) and its manifest."""

    paths: list[Path]
    count: int
    seed: int
    manifest: dict = field(default_factory=dict)


@dataclass
class _Chunk:
    """What one chunk job hands back: the encoded events (for Parquet, record batches: one per generation block, so
    that nothing copies them into one), the ground truth of the scenarios (if any) and the chunk's statistics (if
    asked for)."""

    data: bytes | list[pa.RecordBatch]
    truth: Truth | None = None
    stats: ChunkStats | None = None


def _chunk_job(spec: GeneratorSpec, start: int, stop: int, fmt: str, first: bool,
               sampling: tuple[int, int] | None = None) -> _Chunk:
    pieces, truth = labelled_pieces(spec, start, stop)  # the events and the scenarios' ground truth, generated once
    data = pieces if fmt == "parquet" else \
        b"".join(encode_chunk(piece, fmt, first and i == 0) for i, piece in enumerate(pieces))
    stats = None if sampling is None else chunk_stats(
        pieces[0] if len(pieces) == 1 else pa.concat_batches(pieces),
        start, *sampling)
    return _Chunk(data, truth, stats)


@dataclass
class _Part:
    """A part file a worker wrote (under a temporary name in the run's folder), with what its chunks gave."""

    path: Path
    count: int
    truths: list = field(default_factory=list)
    stats: list = field(default_factory=list)


def _part_job(spec: GeneratorSpec, folder: Path, part_start: int, part_stop: int, chunk_size: int, fmt: str,
              sampling: tuple[int, int] | None = None) -> _Part:
    """Generate and write one whole part in this (worker) process: the parent only renames it and lists it in the
    manifest, so K workers write K parts at a time with no bytes passing through the parent."""
    writer = EventFileWriter(folder, fmt)
    try:
        result = _Part(writer.path, 0)
        for start in range(part_start, max(part_stop, part_start + 1), chunk_size):
            stop = min(part_stop, start + chunk_size)
            chunk = _chunk_job(spec, start, stop, fmt, start == part_start, sampling)
            if isinstance(chunk.data, list):
                for piece in chunk.data:
                    writer.write_batch(piece)
            else:
                writer.write_encoded(chunk.data, stop - start)
            result.truths.append(chunk.truth)
            result.stats.append(chunk.stats)
        writer.close()
        result.count = writer.count
        return result
    except BaseException:
        writer.discard()
        raise


def _chunk_bounds(count: int, chunk_size: int, events_per_file: int) -> Iterator[tuple[int, int, int, bool]]:
    """(part, start, stop, first-in-part) for every chunk; chunks never straddle parts."""
    for part, part_start in enumerate(range(0, max(count, 1), events_per_file)):
        part_stop = min(count, part_start + events_per_file)
        if part_start == part_stop:
            yield part, 0, 0, True
        for start in range(part_start, part_stop, chunk_size):
            yield part, start, min(part_stop, start + chunk_size), start == part_start


def write_files(
    config: Config,
    catalogs: Catalogs | None = None,
    *,
    now: dt.datetime | None = None,
    on_progress: Callable[[int], None] | None = None,
    stats: BatchStats | None = None,
) -> BatchResult:
    """Generate ``NUM_EVENTS`` events and write them under ``OUTPUT_DIR`` as ``OUTPUT_FORMAT``; with ``stats``,
    gather the run's statistics and preview from the same chunks (see :mod:`iotgen.runs.batch_stats`)."""
    spec = generator_spec(config, catalogs, now)  # + SPEC_FILE's catalogs, fleet (PROFILE) and scenarios
    folder = check_output_dir(config.output_dir)
    fmt = config.output_format
    count = config.num_events
    parts = max(1, -(-count // config.events_per_file))
    base = run_name(config.output_filename_prefix, now)
    # scenarios: events, _labels and _manifest.json together; the registry: its files too
    as_folder = parts > 1 or spec.scenarios is not None or registry_enabled(spec)
    target = folder if not as_folder else temporary_folder(folder, base)
    writers: dict[int, EventFileWriter] = {}
    finished: list[tuple[int, EventFileWriter | _PartFile]] = []  # parts written here or by a worker
    # spawn, not fork: the caller may have threads (DuckDB's pool, the SDK, Spark's py4j), and a forked copy of a
    # threaded process can crash or hang in the first lock one of those threads held
    pool = ProcessPoolExecutor(config.workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=start_worker, initargs=(os.getpid(),)) if config.workers > 1 else None
    labels = None
    returned = freed_memory_returned() if pool is not None else contextlib.nullcontext()  # the parent only writes
    try:
        returned.__enter__()
        if spec.scenarios is not None:
            labels = LabelsWriter(target, fmt, len(spec.scenarios.schema_drift))
        window: deque[tuple[int, int, int, Future[_Chunk] | _Chunk]] = deque()

        def drain_one() -> None:
            part, start, stop, job = window.popleft()
            chunk = job.result() if isinstance(job, Future) else job
            if labels is not None:
                assert chunk.truth is not None  # labels: the spec has scenarios, so every chunk has its truth
                labels.add(chunk.truth)
            if stats is not None:
                assert chunk.stats is not None  # stats: every chunk job was given the sampling
                stats.add(chunk.stats)
            result = chunk.data
            writer = writers.get(part)
            if writer is None:
                for done_part in sorted(writers):
                    finished.append((done_part, _closed(writers.pop(done_part))))
                writer = writers[part] = EventFileWriter(target, fmt)
            if isinstance(result, list):
                for piece in result:
                    writer.write_batch(piece)
            else:
                writer.write_encoded(result, stop - start)
            if on_progress:
                on_progress(stop - start)

        sampling = None if stats is None else (stats.every, bucket_us(spec.window_span_ms))
        if pool is not None and parts > 1:  # each worker writes whole parts
            finished.extend(_parts_by_workers(pool, config.workers, spec, target, count, config, fmt, sampling,
                                              labels, stats, on_progress))
            if labels is not None:
                labels.close()
            return _publish(finished, folder, target, base, fmt, spec, config, count, parts, labels)
        for part, start, stop, first in _chunk_bounds(count, config.chunk_size, config.events_per_file):
            if pool is None:
                window.append((part, start, stop, _chunk_job(spec, start, stop, fmt, first, sampling)))
            else:
                window.append((part, start, stop, pool.submit(_chunk_job, spec, start, stop, fmt, first, sampling)))
            while len(window) > (config.workers if pool else 0):
                drain_one()
        while window:
            drain_one()
        for done_part in sorted(writers):
            finished.append((done_part, _closed(writers.pop(done_part))))
        if labels is not None:
            labels.close()
        return _publish(finished, folder, target, base, fmt, spec, config, count, parts, labels)
    except BaseException:
        if labels is not None:
            labels.close()
        for writer in writers.values():
            writer.discard()
        for _, part_file in finished:
            part_file.discard()
        if target != folder:
            shutil.rmtree(target, ignore_errors=True)
        raise
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        returned.__exit__(None, None, None)


def _parts_by_workers(pool: ProcessPoolExecutor, workers: int, spec: GeneratorSpec, target: Path, count: int,
                      config: Config, fmt: str, sampling, labels: LabelsWriter | None, stats: BatchStats | None,
                      on_progress: Callable[[int], None] | None) -> list[tuple[int, "_PartFile"]]:
    """Every part written by a worker, at most two per worker in flight; labels, statistics and progress are
    taken in part order. Returns (part, file) in order; on failure the parts written so far are removed."""
    bounds = [(part, start, min(count, start + config.events_per_file))
              for part, start in enumerate(range(0, count, config.events_per_file))]
    window: deque[tuple[int, Future]] = deque()
    done: list[tuple[int, _PartFile]] = []
    try:
        for part, start, stop in bounds:
            window.append((part, pool.submit(_part_job, spec, target, start, stop, config.chunk_size, fmt, sampling)))
            while len(window) > 2 * workers:
                done.append(_take_part(window.popleft(), labels, stats, on_progress))
        while window:
            done.append(_take_part(window.popleft(), labels, stats, on_progress))
    except BaseException:
        for _, future in window:
            future.cancel()
        for _, future in window:  # parts still being written: wait, so that their files can be removed
            if not future.cancelled():
                try:
                    future.result()
                except BaseException:  # noqa: BLE001 - the first error is the one raised
                    pass
        for _, part_file in done:
            part_file.discard()
        raise
    return done


@dataclass
class _PartFile:
    """A finished part file as ``_publish`` needs it (what an :class:`EventFileWriter` offers)."""

    path: Path
    count: int

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def _take_part(item: tuple[int, Future], labels: LabelsWriter | None, stats: BatchStats | None,
               on_progress: Callable[[int], None] | None) -> tuple[int, _PartFile]:
    part, future = item
    result: _Part = future.result()
    for truth, chunk_stats_ in zip(result.truths, result.stats):
        if labels is not None:
            labels.add(truth)
        if stats is not None:
            stats.add(chunk_stats_)
    if on_progress:
        on_progress(result.count)
    return part, _PartFile(result.path, result.count)


def _closed(writer: EventFileWriter) -> EventFileWriter:
    writer.close()
    return writer


def _publish(finished, folder: Path, target: Path, base: str, fmt: str, spec: GeneratorSpec, config: Config,
             count: int, parts: int, labels: LabelsWriter | None = None) -> BatchResult:
    manifest = {
        "iotgen_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "count": count,
        "seed": spec.seed,
        "format": fmt,
        "window_start_ms": spec.window_start_ms,
        "window_span_ms": spec.window_span_ms,
        "min_keys": spec.min_keys,
        "max_keys": spec.max_keys,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **describe(spec),
    }
    if labels is not None:
        manifest.update(labels.manifest(drift_timeline(spec)))
    if target == folder:
        (_, writer), = finished
        path = writer.publish(base)
        manifest["parts"] = [{"path": path.name, "count": writer.count}]
        return BatchResult([path], count, spec.seed, manifest)
    if registry_enabled(spec):  # the registry's files, published with the events
        manifest["registry"] = {**describe_registry(spec, config.cdc_layout),
                                "files": write_registry_files(target, spec, fmt, config.cdc_layout)}
    entries = []
    for part, writer in finished:
        name = f"part-{part:05d}{EXTENSIONS[fmt]}"
        os.rename(writer.path, target / name)
        entries.append({"path": name, "count": writer.count})
    manifest["parts"] = entries
    write_manifest(target, manifest)
    final = publish(target, folder, base, "")
    return BatchResult([final], count, spec.seed, manifest)


def gather_stats(config: Config, catalogs: Catalogs | None = None, *, now: dt.datetime | None = None,
                 on_progress: Callable[[int], None] | None = None) -> BatchStats:
    """The statistics and preview of the run ``config`` describes, generated chunk by chunk and written nowhere
    (what a notebook shows when ``SAVE_JSON`` is false); the same numbers :func:`write_files` gathers."""
    spec = generator_spec(config, catalogs, now)
    stats = BatchStats(config.num_events, config.preview_events)
    every, bucket = stats.every, bucket_us(spec.window_span_ms)
    start = 0
    for batch in generate_events(spec, config.num_events, chunk_size=config.chunk_size):
        stats.add(chunk_stats(batch, start, every, bucket))
        start += batch.num_rows
        if on_progress:
            on_progress(batch.num_rows)
    return stats
