"""Allocator tuning for generation throughput: keep freed heap memory in the process for reuse.

Generating events allocates and frees the same large numpy arrays block after block. glibc's ``malloc``
serves large requests (from 128 KiB, its threshold then grows dynamically) with fresh ``mmap`` pages and
hands freed memory back to the operating system, so each block pays for page faults again, and on virtual
machines a page fault is expensive: here, about 3,000 faults per 32,768-event block and a third of the run
time. :func:`retain_freed_memory` raises glibc's mmap threshold to 1 GiB and its trim threshold to 2 GiB, so
freed memory is kept in the heap and reused: no faults after the first chunk. The price is that the
process's resident memory stays at its high-water mark instead of shrinking between chunks; generation
memory is bounded by the chunk size anyway. Arrow's own allocator (mimalloc) already reuses its pages.

Nothing happens on import. The faces that run long generation loops call :func:`retain_freed_memory`
explicitly, once, before generating: the ``iotgen`` command line, the benchmarks, worker-process
initialisers and the notebook helpers. It only changes the calling process (forked workers inherit it;
spawned ones must call it themselves) and is a no-op returning False where the C library is not glibc
(macOS, Windows, musl).
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30
TRIM_THRESHOLD = 2**31 - 1


def retain_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (see the module docstring). True if the setting took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only: musl has no mallopt tuning of this kind
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
