"""Batch workers start light: pandas (which pyarrow would import only to look) is never loaded in them, and what
they write is the same as one process writes."""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import pytest

from iotgen.runs.worker_start import skip_unneeded_imports, start_worker


def _generate_and_report(_: int) -> tuple[bool, str]:
    from iotgen import generate_table
    from iotgen.settings.config import Config

    generate_table(Config(num_events=500, random_seed=3, anchor_time="2026-06-01T00:00:00Z"))
    try:
        import pandas  # noqa: F401
        refused = ""
    except ModuleNotFoundError as error:
        refused = str(error)
    return "pandas" in sys.modules, refused


def test_a_worker_generates_without_loading_pandas_and_refuses_it():
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context, initializer=start_worker, initargs=(os.getpid(),)) as pool:
        loaded, refused = pool.submit(_generate_and_report, 0).result()
    assert not loaded
    assert refused == "pandas is not loaded in iotgen worker processes"


def test_a_process_that_has_pandas_loaded_keeps_it_working():
    pytest.importorskip("pandas")
    finders = list(sys.meta_path)
    assert skip_unneeded_imports() is False  # pandas is loaded here: its own lazy imports must still work
    assert sys.meta_path == finders
