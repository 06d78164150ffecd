"""Event files: NDJSON, a JSON array, Parquet and CSV, written atomically and never over an existing file.

A file is written under a hidden temporary name in its final folder and published with a hard link (which
fails rather than overwrite), falling back to a checked rename where the file system has no hard links (some
FUSE mounts): a crash leaves nothing under a final name. Temporary names carry their owner
(``.iotgen-<host>-<pid>-...``), so a run killed with SIGKILL leaves files that the next run in the same folder
removes once that process is provably gone (same host, PID no longer alive): :func:`remove_abandoned`. Text formats
are produced chunk by chunk as bytes (so worker processes can encode them); Parquet buffers rows into fixed-size row
groups, so the file is the same whatever the chunk size.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import io
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..base import jsontext
from ..base.errors import InputError
from ..formats.encoding import json_bytes, ndjson_bytes
from ..settings.databricks import check_location
from ..settings.schema import ARROW_SCHEMA

EXTENSIONS = {"ndjson": ".ndjson", "json": ".json", "parquet": ".parquet", "csv": ".csv"}
PARQUET_ROW_GROUP = 65_536


_LOGGER = logging.getLogger(__name__)
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]  # a shared folder (NFS, a Volume) may
_TEMPORARY = re.compile(r"^\.iotgen-([0-9a-f]{8})-(\d+)-")              # hold several hosts' runs
MANIFEST = "_manifest.json"


def temporary_prefix() -> str:
    """The start of this process's temporary names: ``.iotgen-<host hash>-<pid>-``."""
    return f".iotgen-{_HOST}-{os.getpid()}-"


def check_output_dir(path: str | os.PathLike, parameter: str = "OUTPUT_DIR") -> Path:
    """Create the folder if needed and prove it writable; else one ``ValueError`` naming ``parameter`` (on
    Databricks also when it is not in a volume: never the driver's disk, the DBFS root or the Git folder). A
    folder inside a published run (a folder holding ``_manifest.json``) is refused. Temporary files left there
    by killed runs are removed (:func:`remove_abandoned`)."""
    check_location(parameter, os.fspath(path), "outputs")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{parameter} {os.fspath(path)!r} exists and is not a folder")
    run = next((p for p in (folder.absolute(), *folder.absolute().parents) if (p / MANIFEST).is_file()), None)
    if run is not None:
        raise InputError(f"{parameter} {os.fspath(path)!r} is inside the published run {os.fspath(run)!r} (it holds "
                         f"{MANIFEST}); choose a folder outside it")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=temporary_prefix() + "probe-"):
            pass
    except OSError as exc:
        raise InputError(f"{parameter} {os.fspath(path)!r} is not writable: {exc.strerror or exc}") from None
    remove_abandoned(folder)
    return folder


def remove_abandoned(folder: Path) -> list[Path]:
    """Remove the temporary files and folders in ``folder`` whose owner is provably gone: made on this host by a
    process that no longer exists. Anything else (another host's, a live process's) is left alone."""
    removed = []
    for entry in folder.iterdir():
        match = _TEMPORARY.match(entry.name)
        if match is None or match.group(1) != _HOST or _alive(int(match.group(2))):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except FileNotFoundError:
            continue  # another run cleaned it first
        except OSError as exc:
            _LOGGER.warning("cannot remove %s, left by a killed run: %s", entry, exc.strerror or exc)
            continue
        removed.append(entry)
    if removed:
        _LOGGER.info("removed %d temporary item(s) left in %s by killed runs", len(removed), folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return pid < 2**31  # another user's live process (or a nonsense PID: not ours to judge)
    return True


def temporary_folder(folder: Path, base: str) -> Path:
    """A new hidden folder for a run's parts, owned by this process, with the usual mode (umask), not 0700."""
    path = Path(tempfile.mkdtemp(dir=folder, prefix=f"{temporary_prefix()}{base}.", suffix=".tmp"))
    os.chmod(path, 0o777 & ~_umask())
    return path


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def run_name(prefix: str, now: dt.datetime | None = None) -> str:
    """``PREFIX_YYYYMMDD_HHMMSS`` (UTC)."""
    now = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    return f"{prefix}_{now:%Y%m%d_%H%M%S}"


def _candidates(folder: Path, base: str, extension: str):
    yield folder / f"{base}{extension}"
    for i in range(1, 10_000):
        yield folder / f"{base}_{i}{extension}"
    raise FileExistsError(f"no free name for {base}{extension} in {folder}")


def publish(temporary: Path, folder: Path, base: str, extension: str) -> Path:
    """Give ``temporary`` its final name ``base[_N]extension`` in ``folder`` without replacing anything."""
    for final in _candidates(folder, base, extension):
        try:
            if temporary.is_dir():
                if final.exists():
                    continue
                os.rename(temporary, final)
            else:
                os.link(temporary, final)
                os.unlink(temporary)
            return final
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK) \
                    or final.exists():
                raise
            os.rename(temporary, final)  # no hard links here: checked rename
            return final
    raise AssertionError("unreachable")


class EventFileWriter:
    """Writes one file of events in a format, under a temporary name until :meth:`publish`.

    Text formats take pre-encoded chunks (:func:`encode_chunk`); Parquet takes record batches.
    """

    def __init__(self, folder: Path, fmt: str) -> None:
        if fmt not in EXTENSIONS:
            raise InputError(f"OUTPUT_FORMAT must be one of {', '.join(EXTENSIONS)}, got {fmt!r}")
        self.format = fmt
        self.folder = folder
        handle, name = tempfile.mkstemp(dir=folder, prefix=temporary_prefix(), suffix=EXTENSIONS[fmt] + ".tmp")
        self.path = Path(name)
        os.chmod(handle, 0o666 & ~_umask())  # mkstemp makes 0600; published files get the usual mode
        self._file: BinaryIO = os.fdopen(handle, "wb")
        self._parquet: pq.ParquetWriter | None = None
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self.count = 0
        if fmt == "json":
            self._file.write(b"[")

    def write_encoded(self, data: bytes, count: int) -> None:
        """Append a chunk from :func:`encode_chunk` (``first`` must be True for the file's first chunk)."""
        self._file.write(data)
        self.count += count

    def write_batch(self, batch: pa.RecordBatch) -> None:
        if self.format != "parquet":
            self.write_encoded(encode_chunk(batch, self.format, first=self.count == 0), batch.num_rows)
            return
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self.count += batch.num_rows
        while self._pending_rows >= PARQUET_ROW_GROUP:
            self._flush_row_group(PARQUET_ROW_GROUP)

    def _flush_row_group(self, rows: int) -> None:
        table = pa.Table.from_batches(self._pending, schema=self._pending[0].schema)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self._file, table.schema, compression="zstd")
        group = table.slice(0, rows).combine_chunks()  # one chunk: the same bytes however the run was chunked
        rest = table.slice(rows)
        self._pending = rest.to_batches() if rest.num_rows else []
        self._pending_rows = rest.num_rows
        del table, rest  # the batches written are let go before the row group is encoded
        self._parquet.write_table(group, row_group_size=rows)

    def close(self) -> None:
        if self.format == "parquet":
            if self._pending_rows:
                self._flush_row_group(self._pending_rows)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self._file, ARROW_SCHEMA, compression="zstd")
            self._parquet.close()
        elif self.format == "json":
            self._file.write(b"\n]\n" if self.count else b"]\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def publish(self, base: str) -> Path:
        return publish(self.path, self.folder, base, EXTENSIONS[self.format])

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)


def encode_chunk(batch: pa.RecordBatch, fmt: str, first: bool) -> bytes:
    """A chunk of a text file: NDJSON lines, JSON array items (``first`` omits the leading comma), CSV rows
    (``first`` adds the header). The same events give the same bytes however they are chunked."""
    if fmt == "ndjson":
        return ndjson_bytes(batch)
    if fmt == "json":
        body = json_bytes(batch, before=",\n")  # as NDJSON is made: no array of lines joined again
        return body[1:] if first and body else body  # the file's first item: "\n" + object
    if fmt == "csv":
        columns = [_csv_timestamps(col) if pa.types.is_timestamp(col.type) else col for col in batch.columns]
        table = pa.Table.from_arrays(columns, names=batch.schema.names)
        sink = io.BytesIO()
        pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=first))
        return sink.getvalue()
    raise InputError(f"OUTPUT_FORMAT must be one of {', '.join(EXTENSIONS)}, got {fmt!r}")


def _csv_timestamps(column: pa.Array) -> pa.Array:
    """ISO 8601 text of a timestamp column; a null stays an empty cell (data-quality scenarios make some)."""
    text = jsontext.timestamp_text(pc.fill_null(pc.cast(column, pa.int64()), 0).to_numpy() // 1000, quoted=False)
    return text if not column.null_count else pc.if_else(pc.is_valid(column), text, pa.scalar(None, pa.string()))


def write_manifest(folder: Path, manifest: dict) -> Path:
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    return path
