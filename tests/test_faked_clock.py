"""The faked clock the notebook suite runs under (tests/faked_clock.py) really moves the wall clock of every child
process, leaves time-outs and sleeps working, and the notebooks' event windows are pinned."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import datetime as d, subprocess, sys, threading, time
t = time.monotonic(); time.sleep(0.1); threading.Event().wait(0.2); waited = time.monotonic() - t
child = subprocess.run([sys.executable, "-c", "import time; print(time.time())"], capture_output=True, text=True)
print(d.datetime.now(d.timezone.utc).isoformat(), round(waited, 1), child.stdout.strip())
"""


def test_the_wall_clock_moves_for_children_and_waits_still_end():
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "faked_clock.py"), "2031-07-14T23:59:00Z", "--",
                          sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True)
    now, waited, grandchild = out.stdout.split()
    assert now.startswith("2031-07-14T23:5"), now
    assert 0.25 <= float(waited) < 2, waited  # the monotonic clock and timed waits are real
    at = dt.datetime(2031, 7, 14, 23, 59, tzinfo=dt.timezone.utc).timestamp()
    assert abs(float(grandchild) - at) < 120  # seen by a process the command started


def test_notebooks_with_a_seeded_window_pin_anchor_time():
    """A seeded notebook shows events of a window; with ANCHOR_TIME None that window moves with the day."""
    for path in [ROOT / "iot_data_generation.ipynb", *(ROOT / "notebooks").glob("*.ipynb")]:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        parameters = "".join(next(c for c in cells if "parameters" in c["metadata"].get("tags", []))["source"])
        if re.search(r'^STREAM_TIME_MODE(: str)? = "live"', parameters, re.M) and "NUM_EVENTS" not in parameters:
            continue  # streams with event times re-based to the send time, shows no window (02)
        assert re.search(r'^ANCHOR_TIME(: Optional\[str\])? = "20', parameters, re.M), f"{path.name}: ANCHOR_TIME not pinned"
