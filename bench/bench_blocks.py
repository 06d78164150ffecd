"""Benchmark: CPU time per event of each block of generation into Arrow, this tree against another in one run.

A block is a top-level statement of :func:`iotgen.generation.generator.build_events` (one per column, then the
record batch's assembly), of :func:`iotgen.generation.dynamic_json.build_json_column` (choosing keys, drawing
values, placing piece codes, joining the text) and the chunking around them (:func:`generate_events` minus
:func:`build_events`: cutting blocks into chunks). Each statement's CPU time is read before and after it runs
(a line tracer on those functions only: a few microseconds per statement, on statements that take
milliseconds per block of 32,768 events). ``--baseline DIR`` runs the same measurement on the code in another
checkout (e.g. main) in a subprocess, in the same run, and prints both side by side:

    python bench/bench_blocks.py [--events 500000] [--repeats 5] [--baseline /work/main] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

HERE = Path(__file__).resolve()
ANCHOR = "2026-06-01T00:00:00Z"


# ---- in the measured process (its iotgen comes from PYTHONPATH) ------------------------------------------------
def _labels(function) -> dict[int, str]:
    """Source line -> the label of the top-level statement of ``function`` that holds it."""
    lines, first = inspect.getsourcelines(function)
    tree = ast.parse(textwrap.dedent("".join(lines)))
    body = tree.body[0].body
    out: dict[int, str] = {}
    for statement in body:
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            continue  # the docstring
        if isinstance(statement, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            label = ", ".join(ast.unparse(t) for t in targets)
        elif isinstance(statement, ast.For):
            label = f"for {ast.unparse(statement.target)} in {ast.unparse(statement.iter)}"
        elif isinstance(statement, ast.Return):
            label = "return " + ast.unparse(statement.value)[:40] if statement.value is not None else "return"
        else:
            label = ast.unparse(statement).splitlines()[0][:50]
        for line in range(statement.lineno, statement.end_lineno + 1):
            out[first - 1 + line] = label
    return out


class BlockTimer:
    """CPU nanoseconds per top-level statement of the traced functions (a line tracer on them alone)."""

    def __init__(self, functions: dict) -> None:
        self.codes = {f.__code__: (name, _labels(f)) for name, f in functions.items()}
        self.totals: dict[tuple[str, str], int] = {}
        self.order: list[tuple[str, str]] = []
        self._open: dict[int, tuple[str, int]] = {}

    def _add(self, where: str, label: str, ns: int) -> None:
        key = (where, label)
        if key not in self.totals:
            self.totals[key] = 0
            self.order.append(key)
        self.totals[key] += ns

    def _global(self, frame, event, arg):
        if event == "call" and frame.f_code in self.codes:
            return self._local
        return None

    def _local(self, frame, event, arg):
        where, labels = self.codes[frame.f_code]
        key = id(frame)
        if event == "line" and key in self._open and labels.get(frame.f_lineno) == self._open[key][0]:
            return self._local  # still in the same statement (a loop's body): no clock read, less overhead
        now = time.process_time_ns()
        if key in self._open:
            label, since = self._open[key]
            self._add(where, label, now - since)
        if event == "return":
            self._open.pop(key, None)
        elif event == "line":
            label = labels.get(frame.f_lineno)
            if label is not None:
                self._open[key] = (label, time.process_time_ns())
            else:
                self._open.pop(key, None)
        return self._local

    def __enter__(self) -> "BlockTimer":
        sys.settrace(self._global)
        return self

    def __exit__(self, *exc) -> None:
        sys.settrace(None)


def child(events: int) -> dict:
    """One measurement of this interpreter's iotgen: events/s per CPU second untraced, then CPU per block."""
    from iotgen.base.allocator import retain_freed_memory

    retain_freed_memory()
    import pyarrow as pa

    from iotgen import generate_events
    from iotgen.generation import dynamic_json, generator
    from iotgen.settings.config import Config
    from iotgen.spec.spec_file import generator_spec

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})

    def run(n: int) -> None:
        config = Config(num_events=n, random_seed=7, anchor_time=ANCHOR, output_dir=".")
        for _ in generate_events(generator_spec(config), n):
            pass

    run(max(1, events // 20))  # warm-up: caches and piece tables
    cpu = time.process_time_ns()
    run(events)
    cpu = time.process_time_ns() - cpu
    # The blocks: build_events's statements (since arrow-speed: _draw_block's, and _columns's assembly), and
    # json_column's (since arrow-speed: _piece_codes's and joined_text's).
    functions = {"build_events": getattr(generator, "_draw_block", generator.build_events)}
    if hasattr(generator, "_columns"):
        functions["assembly"] = generator._columns
    if hasattr(dynamic_json, "_piece_codes"):
        functions["json_column"] = dynamic_json._piece_codes
        functions["json_column join"] = dynamic_json.joined_text
        functions["json_column keys"] = dynamic_json.text_codes
    else:
        functions["json_column"] = dynamic_json.build_json_column
    timer = BlockTimer(functions)
    traced = time.process_time_ns()
    with timer:
        run(events)
    traced = time.process_time_ns() - traced
    return {
        "iotgen": str(Path(generator.__file__).resolve().parents[2]),
        "per_core": events / (cpu / 1e9),
        "ns_per_event": cpu / events,
        "traced_ns_per_event": traced / events,
        "blocks": [[where, label, timer.totals[(where, label)] / events] for where, label in timer.order],
    }


# ---- the parent: alternate the trees, one process per measurement ---------------------------------------------
def measure(tree: Path, events: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, str(HERE), "--child", "--events", str(events)], env=env, check=True,
                         capture_output=True, text=True, cwd=str(tree)).stdout
    return json.loads(out.strip().splitlines()[-1])


def _median_blocks(runs: list[dict]) -> dict[tuple[str, str], float]:
    keys: dict[tuple[str, str], list[float]] = {}
    for r in runs:
        inside = 0.0
        for where, label, ns in r["blocks"]:
            keys.setdefault((where, label), []).append(ns)
            inside += ns if where in ("build_events", "assembly") else 0.0  # the others run inside these
        keys.setdefault(("generate_events", "outside the blocks (chunks, joins)"), []).append(
            r["traced_ns_per_event"] - inside)
    return {key: statistics.median(values) for key, values in keys.items()}


def _group(where: str, label: str) -> str:
    """The part of generation a block belongs to, the same for both layouts of the code (main's one
    ``build_events``; since arrow-speed ``_draw_block`` + ``_columns``)."""
    if where == "generate_events":
        return "chunks (cutting blocks into chunks, joining blocks)"
    if where == "build_events":
        if label.startswith("return") or label in ("columns", "cats", "payload"):
            return "" if label == "payload" else "Arrow columns and the batch"
        return "fixed columns: draws (main: with their Arrow strings)"
    if where == "assembly":
        return "" if label.startswith("if not isinstance") else "Arrow columns and the batch"
    if label == "chosen":
        return "json_column: choosing keys"
    if label.startswith("for (j, key)"):
        return "json_column: drawing values"
    if label.startswith("for (rows, before"):
        return "json_column: placing piece codes"
    if label == "text" or label.startswith("data_view"):
        return "json_column: joining the text (Arrow take, braces)"
    if where == "json_column keys":
        return ""  # the calls of the functions traced on their own
    return "json_column: counting pieces"


def _grouped(runs: list[dict]) -> dict[str, float]:
    out: dict[str, float] = {}
    for (where, label), ns in _median_blocks(runs).items():
        group = _group(where, label)
        if group:
            out[group] = out.get(group, 0.0) + ns
    return out


def summary(runs: list[dict], base_runs: list[dict]) -> str:
    after, before = _grouped(runs), _grouped(base_runs)
    lines = ["| part | before ns/event | after ns/event | after / before |", "|---|---:|---:|---:|"]
    for group in sorted(set(after) | set(before), key=lambda g: (g.startswith("chunks"), g.startswith("Arrow"), g)):
        a, b = after.get(group), before.get(group)
        lines.append(f"| {group} | {b:,.0f} | {a:,.0f} | {a / b:.2f} |" if a is not None and b else
                     f"| {group} | {'' if b is None else f'{b:,.0f}'} | {'' if a is None else f'{a:,.0f}'} | |")
    total_a, total_b = (statistics.median(r["traced_ns_per_event"] for r in rs) for rs in (runs, base_runs))
    lines.append(f"| **all (traced)** | {total_b:,.0f} | {total_a:,.0f} | {total_a / total_b:.2f} |")
    return "\n".join(lines)


def rates(runs: list[dict], base_runs: list[dict], note_this: str, note_base: str) -> str:
    lines = []
    for title, rs in ((note_this, runs), (note_base, base_runs)):
        if rs:
            rates = sorted(r["per_core"] for r in rs)
            lines.append(f"- {title}: {rates[-1]:,.0f} events/s per core best, {statistics.median(rates):,.0f} "
                         f"median of {len(rs)} (untraced; {rs[0]['iotgen']})")
    if base_runs:
        pairs = sorted(a["per_core"] / b["per_core"] for a, b in zip(runs, base_runs))
        lines.append(f"- after / before, measurement by measurement: median {statistics.median(pairs):.2f}x "
                     f"(from {pairs[0]:.2f}x to {pairs[-1]:.2f}x)")
    return "\n".join(lines)


def table(runs: list[dict], base_runs: list[dict]) -> str:
    after = _median_blocks(runs)
    before = _median_blocks(base_runs) if base_runs else {}
    keys = list(after) + [k for k in before if k not in after]
    lines = ["| function | block (top-level statement) | " + ("before ns/event | " if before else "")
              + "after ns/event |" + (" after / before |" if before else ""),
              "|---|---|" + ("---:|" if before else "") + "---:|" + ("---:|" if before else "")]
    for key in keys:
        a, b = after.get(key), before.get(key)
        cells = [key[0], f"`{key[1]}`"]
        if before:
            cells.append(f"{b:,.1f}" if b is not None else "")
        cells.append(f"{a:,.1f}" if a is not None else "")
        if before:
            cells.append(f"{a / b:.2f}" if a is not None and b else "")
        lines.append("| " + " | ".join(cells) + " |")
    total_a = statistics.median(r["traced_ns_per_event"] for r in runs)
    cells = ["all", "**traced total**"]
    if before:
        total_b = statistics.median(r["traced_ns_per_event"] for r in base_runs)
        cells.append(f"{total_b:,.1f}")
    cells.append(f"{total_a:,.1f}")
    if before:
        cells.append(f"{total_a / total_b:.2f}")
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> str:
    """CPU model, CPU count and load average (bench_generate's; imported here, in the parent only, because it
    puts this checkout's iotgen first on the path)."""
    sys.path.insert(0, str(HERE.parent))
    from bench_generate import machine as described

    return described()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=5, help="measurements of each tree, alternating")
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to measure in the same run")
    parser.add_argument("--tree", type=Path, default=HERE.parents[1], help="the checkout measured (default: this one)")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.events)))
        return 0
    this = args.tree.resolve()
    runs, base_runs = [], []
    load_before = machine()
    for i in range(args.repeats):
        for tree, into in ((args.baseline, base_runs), (this, runs)):
            if tree is not None:
                r = measure(tree, args.events)
                into.append(r)
                print(f"  {i + 1}/{args.repeats} {tree}: {r['per_core']:,.0f} events/s per core", flush=True)
    text = "\n".join([
        "## Blocks of generation into Arrow (CPU per event)",
        "",
        f"{args.events:,} events per measurement (json_column as text, no fleet, no scenarios), one process per "
        "measurement pinned to one core, the trees alternating; a block's figure is the median over the "
        "measurements of CPU ns per event (a line tracer on the generator's functions: `build_events` and "
        "`build_json_column` before arrow-speed; `_draw_block`, `_columns`, `text_codes`, `_piece_codes` and "
        "`joined_text` since), first summed into the parts of generation; events/s per core from an untraced run "
        "of the same events in the same process. The tracer adds a few µs per statement executed.",
        "",
        rates(runs, base_runs, f"after (this tree, {this.name})", f"before ({args.baseline})"),
        "",
        *([summary(runs, base_runs), "", "Statement by statement (medians):", ""] if base_runs else []),
        table(runs, base_runs),
        "",
        f"- {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; at the start: {load_before}; at the end: "
        f"{machine().rsplit(', ', 1)[-1]}; Python {platform.python_version()}.",
        "",
    ])
    print()
    print(text)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
