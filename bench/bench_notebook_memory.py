"""Benchmark: peak memory of the main notebook as NUM_EVENTS grows (issue 17: flat, within 1.3x from 1M to 20M).

Runs ``iot_data_generation.ipynb`` headless with papermill, as a user preparing a load test would
(``-p NUM_EVENTS <n>``, Parquet files to spare the disk, tables and output in a temporary folder), once per size,
and samples from ``/proc`` ten times a second the kernel's own resident memory (the Python process that runs
the cells) and that of the whole tree (papermill, the kernel, the local Event Hubs endpoint, Spark's JVM and
its Python workers). Reports both peaks per size and the ratio of the largest size to the smallest.

    python bench/bench_notebook_memory.py [--events 1000000 20000000] [--markdown bench/results/notebook_memory.md]

Disk: about 170 bytes/event of Parquet plus the notebook's Delta and Iceberg copies of the batch (about 3x
that in all); everything is deleted afterwards. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_memory import _children, _rss, tree_rss  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "iot_data_generation.ipynb"
TARGET_RATIO = 1.3


def _kernel(root: int) -> int | None:
    """The ipykernel process under papermill (the one whose memory the cells grow)."""
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"ipykernel" in f.read():
                    return pid
        except OSError:
            pass
        todo += _children(pid)
    return None


def run(events: int, parent: Path, interval: float) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="iotgen-nb-memory-", dir=parent))
    papermill = shutil.which("papermill", path=str(Path(sys.executable).parent)) or "papermill"
    cmd = [papermill, str(NOTEBOOK), str(folder / "executed.ipynb"), "--cwd", str(ROOT), "-k", "python3",
           "--log-level", "WARNING", "-p", "NUM_EVENTS", str(events), "-p", "OUTPUT_FORMAT", "parquet",
           "-p", "OUTPUT_DIR", str(folder / "output")]
    kernel_peak = tree_peak = 0
    start = time.perf_counter()
    try:
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        kernel = None
        while process.poll() is None:
            kernel = kernel or _kernel(process.pid)
            if kernel is not None:
                kernel_peak = max(kernel_peak, _rss(kernel))
            tree_peak = max(tree_peak, tree_rss(process.pid)[0])
            time.sleep(interval)
        elapsed = time.perf_counter() - start
        _, err = process.communicate()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if process.returncode:
        raise SystemExit(f"papermill failed for {events:,} events:\n{err[-3000:]}")
    return {"events": events, "kernel": kernel_peak, "tree": tree_peak, "seconds": elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000, 20_000_000])
    parser.add_argument("--output", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--markdown", type=Path, default=None, help="write the result table here")
    args = parser.parse_args(argv)
    needed = max(args.events) * 170 * 3.3
    if shutil.disk_usage(args.output).free < needed:
        print(f"needs about {needed / 1e9:.1f} GB free under {args.output}", file=sys.stderr)
        return 2
    results = [run(n, args.output, args.interval) for n in sorted(args.events)]
    small, large = results[0], results[-1]
    lines = ["| NUM_EVENTS | kernel peak RSS (GB) | whole tree peak RSS (GB) | notebook run |",
             "|---:|---:|---:|---:|"]
    lines += [f"| {r['events']:,} | {r['kernel'] / 1e9:.2f} | {r['tree'] / 1e9:.2f} | {r['seconds']:,.0f} s |"
              for r in results]
    kernel_ratio, tree_ratio = large["kernel"] / small["kernel"], large["tree"] / small["tree"]
    verdict = "yes" if kernel_ratio <= TARGET_RATIO else "NO"
    lines.append("")
    lines.append(f"{large['events']:,} vs {small['events']:,} events: kernel {kernel_ratio:.2f}x, whole tree "
                 f"{tree_ratio:.2f}x (target: kernel within {TARGET_RATIO}x: {verdict}); "
                 f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text("# Notebook memory: the main notebook at load-test sizes\n\n"
                                 "`python bench/bench_notebook_memory.py` (papermill, Parquet files, RSS sampled "
                                 "from /proc every 0.1 s).\n\n" + text + "\n", encoding="utf-8")
    return 0 if verdict == "yes" else 1


if __name__ == "__main__":
    sys.exit(main())
