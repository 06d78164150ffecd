"""Allocator tuning for generation throughput: keep freed memory in the process for reuse.

Generating events allocates and frees the same large arrays chunk after chunk. glibc's ``malloc`` (numpy's
arrays) serves large requests with fresh ``mmap`` pages and returns freed memory to the operating system, and
Arrow's bundled mimalloc (record batches, text) gives freed pages back after a short delay; so every chunk pays
for page faults again. On virtual machines a page fault is expensive: the faults of one 32,768-event block can
take a third of its run time (bench/results/generate.md).

:func:`retain_freed_memory` raises glibc's mmap threshold to 1 GiB and its trim threshold to 2 GiB (``mallopt``)
and sets ``MIMALLOC_PURGE_DELAY=-1`` (unless already set), so freed memory stays in the process and is reused
without faults. The price: the process's resident memory stays at its high-water mark instead of shrinking
between chunks; generation memory is bounded by the chunk size anyway.

Nothing happens on import. The faces that run long generation loops call :func:`retain_freed_memory`
explicitly, once, as early as they can: the ``iotgen`` command line, the benchmarks, worker-process
initialisers and the notebook helpers. mimalloc reads its setting when pyarrow loads, so that part only takes
effect when the call comes before ``import pyarrow`` (the variable also reaches child processes started later);
the glibc part works at any time and is inherited by forked workers. Where the C library is not glibc (macOS,
Windows, musl) the glibc part is a no-op.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from typing import Iterator

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30
TRIM_THRESHOLD = 2**31 - 1
_RETAINED = [False]  # this process's glibc thresholds are retain_freed_memory's
#: glibc's own default thresholds (128 KiB), for a process that should give freed memory back
DEFAULT_THRESHOLD = 128 * 1024


#: deltalake's Rust writer has its own jemalloc (symbols prefixed ``_rjem_``, so it reads ``_RJEM_MALLOC_CONF``),
#: which by default keeps freed pages for 10 s: a Delta write's memory then grows with its throughput. Returned at
#: once instead, a Delta write's peak memory is lower and it is no slower (bench/bench_memory.py --format delta;
#: bench/results/memory.md).
DELTALAKE_JEMALLOC = "dirty_decay_ms:0,muzzy_decay_ms:0"


def retain_freed_memory() -> bool:
    """Keep freed memory for reuse (see the module docstring). True if glibc's setting took effect. Also sets
    :data:`DELTALAKE_JEMALLOC` (unless ``_RJEM_MALLOC_CONF`` is set), read when deltalake loads."""
    os.environ.setdefault("MIMALLOC_PURGE_DELAY", "-1")
    os.environ.setdefault("_RJEM_MALLOC_CONF", DELTALAKE_JEMALLOC)
    _RETAINED[0] = _glibc_thresholds(MMAP_THRESHOLD, TRIM_THRESHOLD)
    return _RETAINED[0]


def _glibc_thresholds(mmap: int, trim: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        _ = libc.gnu_get_libc_version  # glibc only: AttributeError elsewhere (musl)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, mmap) == 1 and mallopt(M_TRIM_THRESHOLD, trim) == 1


@contextlib.contextmanager
def freed_memory_returned() -> Iterator[None]:
    """glibc's default thresholds while the block runs, then :func:`retain_freed_memory`'s again if they were
    set: for a process that only writes what worker processes generate, where retention gains nothing and
    would keep the pages of every chunk received (about 0.1 GB of a Parquet run's parent, bench/results/memory.md)."""
    retained = _RETAINED[0]
    _glibc_thresholds(DEFAULT_THRESHOLD, DEFAULT_THRESHOLD)
    try:
        yield
    finally:
        if retained:
            _glibc_thresholds(MMAP_THRESHOLD, TRIM_THRESHOLD)
