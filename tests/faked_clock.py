"""Run a command with the wall clock set to another moment; monotonic clocks and sleeps stay real.

    python tests/faked_clock.py 2031-07-14T23:59:00Z -- pytest iot_data_generation.ipynb notebooks --nbval ...

``make test`` runs the notebook suite this way, on another date and starting a minute before midnight UTC (so
the run crosses a day boundary): a committed output that depends on the day or the time it was produced fails.

The clock is moved by libfaketime (the ``libfaketime`` wheel on PyPI vendors it; Debian's faketime 0.9.10 hangs
Python 3.11's timed waits, which use the monotonic clock). Every process the command starts (the Jupyter kernel,
the local Event Hubs endpoint, Spark's JVM, the ingest's receiver) sees the same wall clock: a fixed offset from
the real one. Before running the command a child process checks that the clock really moved, so a library that
fails to load cannot leave the real clock in place silently.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

CHECK = "import datetime as d; print(d.datetime.now(d.timezone.utc).timestamp())"


def clock_env(at: dt.datetime, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment that shows ``at`` (aware) as the current time from now on, in every child process."""
    import libfaketime

    library = Path(libfaketime.__file__).parent / "vendor" / "libfaketime" / "src" / "libfaketime.so.1"
    if not library.exists():
        raise SystemExit(f"faked_clock: {library} is missing (pip install libfaketime)")
    offset = round(at.timestamp() - dt.datetime.now(dt.timezone.utc).timestamp())
    env = dict(os.environ if env is None else env)
    preload = env.get("LD_PRELOAD")
    env.update({
        "LD_PRELOAD": f"{library}:{preload}" if preload else str(library),
        "FAKETIME": f"{offset:+d}",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",  # time-outs and sleeps run on the real monotonic clock
        "FAKETIME_FORCE_MONOTONIC_FIX": "0",
        "TZ": "UTC",
    })
    return env


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: faked_clock.py ISO-TIME -- COMMAND [ARG ...]", file=sys.stderr)
        return 2
    at = dt.datetime.fromisoformat(argv[0].replace("Z", "+00:00"))
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.timezone.utc)
    env = clock_env(at)
    seen = float(subprocess.run([sys.executable, "-c", CHECK], env=env, check=True, capture_output=True,
                                text=True).stdout)
    if abs(seen - at.timestamp()) > 60:
        print(f"faked_clock: the clock did not move (a child saw {dt.datetime.fromtimestamp(seen, dt.timezone.utc)})",
              file=sys.stderr)
        return 1
    print(f"faked_clock: wall clock starts at {at.isoformat()} for: {' '.join(argv[2:])}", file=sys.stderr)
    return subprocess.run(argv[2:], env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
