"""Benchmark: peak resident memory of ``iotgen generate`` for a large run, worker processes included.

Runs the real command line in a subprocess and samples the resident set size (RSS) of it and every
descendant (the ``--workers`` processes) from ``/proc`` ten times a second; reports the peak of their sum, the
peak of the largest single process (exact, from the kernel's accounting of reaped children), the time taken
and the size written. Memory must be bounded by the chunk size, not the run: the default writes 50 million
events to one file and checks the peak against ``--limit`` (2 GB).

    python bench/bench_memory.py [--events 50000000] [--format parquet] [--workers 2] [--chunk-size 65536]
                                 [--output DIR] [--markdown bench/results/memory.md]

The output goes to a temporary folder (or ``--output``) and is deleted afterwards. Disk needed: about 160
bytes/event for Parquet, 1,000 for NDJSON (50 million NDJSON events are 50 GB); the run refuses to start
without that much free space. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BYTES_PER_EVENT = {"parquet": 170, "ndjson": 1050, "json": 1050, "csv": 700, "delta": 200, "iceberg": 200}
PAGE = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def tree_rss(root: int) -> tuple[int, int]:
    """(sum of RSS over the process and its descendants, number of processes)."""
    total, count, todo = 0, 0, [root]
    while todo:
        pid = todo.pop()
        total += _rss(pid)
        count += 1
        todo += _children(pid)
    return total, count


def command(args: argparse.Namespace, folder: Path) -> list[str]:
    exe = shutil.which("iotgen", path=str(Path(sys.executable).parent)) or shutil.which("iotgen")
    base = [exe] if exe else [sys.executable, "-m", "iotgen.faces.cli"]
    tables = ("delta", "iceberg")  # one commit
    files = [] if args.format in tables else ["--events-per-file", str(max(args.events, 1))]
    return base + [
        "generate", "--events", str(args.events), "--format", args.format, "--workers", str(args.workers),
        "--chunk-size", str(args.chunk_size), *files, "--seed", "1",
        "--anchor-time", "2026-06-01T00:00:00Z", "--output", str(folder), "--no-progress",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000_000)
    parser.add_argument("--format", default="parquet", choices=sorted(BYTES_PER_EVENT))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=65_536)
    parser.add_argument("--limit", type=float, default=2.0, help="GB the peak must stay under")
    parser.add_argument("--output", type=Path, default=None, help="parent folder for the run (default: temp)")
    parser.add_argument("--markdown", type=Path, default=None, help="append the result as a table row here")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between RSS samples")
    args = parser.parse_args(argv)

    parent = args.output or Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    needed = BYTES_PER_EVENT[args.format] * args.events * 1.1
    free = shutil.disk_usage(parent).free
    if free < needed:
        print(f"needs about {needed / 1e9:.1f} GB free under {parent}, has {free / 1e9:.1f} GB: "
              "pass a smaller --events, --format parquet or another --output", file=sys.stderr)
        return 2
    folder = Path(tempfile.mkdtemp(prefix="iotgen-memory-", dir=parent))
    cmd = command(args, folder)
    print(" ".join(cmd), flush=True)
    peak, peak_processes, samples = 0, 0, 0
    start = time.perf_counter()
    try:
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while process.poll() is None:
            total, count = tree_rss(process.pid)
            if total > peak:
                peak, peak_processes = total, count
            samples += 1
            time.sleep(args.interval)
        elapsed = time.perf_counter() - start
        out, err = process.communicate()
        written = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if process.returncode:
        print(err, file=sys.stderr)
        return process.returncode
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # kB on Linux
    ok = peak < args.limit * 1e9
    row = (f"| {args.events:,} | {args.format} | {args.workers} | {args.chunk_size:,} | {peak / 1e9:.2f} "
           f"({peak_processes} process{'es' if peak_processes != 1 else ''}) | {largest / 1e9:.2f} | {elapsed:,.0f} s | {args.events / elapsed:,.0f} | "
           f"{written / 1e9:.1f} GB | {'yes' if ok else 'NO'} |")
    header = ("| events | format | workers | chunk size | peak RSS, all processes (GB) | largest process (GB) | "
              "time | events/s | written | under limit |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
    print(header)
    print(row)
    print(f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {samples} samples; limit {args.limit} GB",
          flush=True)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        fresh = not args.markdown.exists()
        with open(args.markdown, "a", encoding="utf-8") as f:
            if fresh:
                f.write("# Memory benchmark: peak resident memory of `iotgen generate`\n\n"
                        "Sampled every 0.1 s from /proc over the command and its worker processes "
                        "(bench/bench_memory.py).\n\n" + header + "\n")
            f.write(row + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
