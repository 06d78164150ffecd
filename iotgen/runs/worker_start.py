"""What a batch run's worker process does first, before numpy and pyarrow load in it.

A worker of ``iotgen generate --workers K`` is a fresh interpreter (spawned, not forked: see
:func:`iotgen.runs.batch.write_files`), so each worker pays for starting Python and importing what generation needs,
about 1 s of CPU time each on the benchmark machine, once per run (bench/results/generate.md). A third of that was
pandas, which generation never uses: pyarrow imports it on the first ``pa.array`` of a Python list, only to check
whether the list is a pandas object. :func:`start_worker` runs as the pool's initializer, from this module, which
imports neither numpy nor pyarrow, so it comes before they load (the pool unpickles the initializer first; the
tasks' modules load with the first task). It

* makes ``import pandas`` fail in the worker (pyarrow then works without its pandas integration, which a worker
  never needs; every other import is untouched),
* keeps freed memory in the process for reuse (:func:`iotgen.base.allocator.retain_freed_memory`), and
* ends the worker with its parent (:func:`iotgen.runs.parent_watch.exit_with_parent`).
"""

from __future__ import annotations

import importlib.abc
import sys

from ..base.allocator import retain_freed_memory
from .parent_watch import exit_with_parent

SKIPPED = ("pandas",)  # packages a worker never imports (pyarrow would load them only to look)


class _Skip(importlib.abc.MetaPathFinder):
    """Refuses to import :data:`SKIPPED` (and their submodules): the import raises ModuleNotFoundError, as if they
    were not installed."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".", 1)[0] in SKIPPED:
            raise ModuleNotFoundError(f"{fullname} is not loaded in iotgen worker processes", name=fullname)
        return None


def skip_unneeded_imports() -> bool:
    """Refuse :data:`SKIPPED` from now on, unless one is loaded already (then its own lazy imports must work).
    True if the refusal is in place."""
    if any(isinstance(finder, _Skip) for finder in sys.meta_path):
        return True
    if any(name.split(".", 1)[0] in SKIPPED for name in sys.modules):
        return False
    sys.meta_path.insert(0, _Skip())
    return True


def start_worker(parent_pid: int) -> None:
    """The initializer of a batch run's worker processes (see the module docstring)."""
    skip_unneeded_imports()
    retain_freed_memory()
    exit_with_parent(parent_pid)  # a killed `iotgen generate` takes its workers (hundreds of MB each) with it
