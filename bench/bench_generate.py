"""Benchmark: events/s per core of ``iotgen`` against per-row generators written the plain-notebook way.

One process, one core, every contender in the same run, so the ratios hold whatever the machine:

* ``iotgen -> Arrow``: :func:`iotgen.generation.generator.generate_events`, json_column included, batches dropped;
* ``iotgen -> NDJSON bytes``: the same plus :func:`iotgen.formats.encoding.ndjson_bytes` (no file);
* ``iotgen -> NDJSON file`` and ``iotgen -> Parquet file``: :func:`iotgen.runs.batch.write_files`, the
  code behind ``iotgen generate`` (atomic publish and fsync included);
* ``per-row reference -> NDJSON file``: the seed notebook's way, one dict per event with ``random`` (23 fixed
  columns + a json_column of 5-25 keys incl. nested location/diagnostics/config) and ``json.dumps`` per line;
* ``Faker per-row -> NDJSON file``: the same shape with Faker providers.

Each contender runs once to warm up, then ``--repeats`` times; the best run counts. "Per core" is events per
second of process CPU time (user + system: the kernel's page-cache writes count); wall-clock rates are shown
beside. Single core: BLAS/OpenMP pools are pinned to one thread before numpy loads, Arrow's CPU and I/O pools
to one thread, and the process to one CPU where the OS allows. ``--workers 2`` adds NDJSON runs of
``WORKER_PARTS`` parts, each a fresh Python process as ``iotgen generate`` is (start-up and imports counted), with
1 and 2 worker processes (each worker writes whole parts), interleaved round by round: CPU time per event of the
process and its workers and the parent's share of it; the same 2-worker run with every process pinned to one CPU
(the workers take turns: no contention between them, only what the code costs); a hardware reference, two
independent 1-worker runs of half the events each at once (what two busy processes on this machine cost each
other, whatever our code does); and the fixed start-up (runs of 2 events). On a shared 2-core machine wall-clock
scaling cannot be shown; CPU per event and the parent's share can. Writes a markdown table and a log-scale bar
chart:

    python bench/bench_generate.py [--events 500000] [--repeats 3] [--out bench/results]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from iotgen.base.allocator import retain_freed_memory  # noqa: E402

ALLOCATOR_TUNED = retain_freed_memory()  # before numpy and pyarrow load, as the CLI does

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import OrderedDict  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from iotgen import generate_events  # noqa: E402
from iotgen.formats.encoding import ndjson_bytes  # noqa: E402
from iotgen.runs.batch import write_files  # noqa: E402
from iotgen.settings.catalogs import (  # noqa: E402
    DEVICE_TYPES,
    ENVS,
    IOT_KEY_POOL,
    MODELS,
    NESTED_KEYS,
    REGIONS,
    SOURCES,
    STATUS_VALUES,
    ZONES,
)
from iotgen.settings.config import Config  # noqa: E402
from iotgen.spec.spec_file import generator_spec  # noqa: E402

TARGET_PER_CORE = 800_000  # into Arrow (stretch: 1,000,000)
TARGET_FILE_PER_CORE = 300_000  # NDJSON and Parquet files
TARGET_RATIO = 25
WORKER_PARTS = 8  # the worker runs write this many parts (each worker writes whole parts)
ANCHOR = "2026-06-01T00:00:00Z"
SPREAD_HOURS = 168.0


# ---- the per-row contenders ----------------------------------------------------------------------------------
def _weighted(catalog) -> tuple[list, list | None]:
    return (list(catalog), list(catalog.values())) if isinstance(catalog, dict) else (list(catalog), None)


_CATALOGS = {name: _weighted(cat) for name, cat in (
    ("device_type", DEVICE_TYPES), ("status", STATUS_VALUES), ("region", REGIONS), ("zone", ZONES),
    ("model", MODELS), ("source", SOURCES), ("env", ENVS))}
_KEYS = list(IOT_KEY_POOL)


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class NotebookRows:
    """The seed notebook's generator: ``random`` per field, one dict per event."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.base = dt.datetime.fromisoformat(ANCHOR.replace("Z", "+00:00")) - dt.timedelta(days=7)

    def pick(self, column: str) -> str:
        values, weights = _CATALOGS[column]
        return self.rnd.choices(values, weights)[0] if weights else self.rnd.choice(values)

    def picks(self, *columns: str) -> dict:
        return {column: self.pick(column) for column in columns}

    def value(self, spec: tuple, nested: dict | None = None):
        rnd, kind = self.rnd, spec[0]
        if kind == "float":
            return round(rnd.uniform(spec[1], spec[2]), spec[3])
        if kind == "int":
            return rnd.randint(spec[1], spec[2])
        if kind == "bool":
            return rnd.random() < spec[1]
        if kind == "choice":
            return rnd.choice(spec[1])
        if kind == "float_array":
            return [round(rnd.uniform(spec[3], spec[4]), spec[5]) for _ in range(rnd.randint(spec[1], spec[2]))]
        if kind == "string_array":
            return rnd.sample(spec[3], rnd.randint(spec[1], spec[2]))
        return {sub: self.value(sub_spec) for sub, sub_spec in nested.items()}

    def dynamic_json(self) -> dict:
        keys = self.rnd.sample(_KEYS, self.rnd.randint(5, 25))
        return {k: self.value(IOT_KEY_POOL[k], NESTED_KEYS.get(k)) for k in _KEYS if k in keys}

    def event(self) -> dict:
        rnd = self.rnd
        ts = self.base + dt.timedelta(milliseconds=rnd.randrange(int(SPREAD_HOURS * 3_600_000)))
        calibration = ts - dt.timedelta(milliseconds=rnd.randint(86_400_000, 365 * 86_400_000))
        created = ts + dt.timedelta(milliseconds=min(30_000, round(rnd.lognormvariate(6.685, 1.0))))
        updated = created + dt.timedelta(milliseconds=rnd.randint(1, 3_600_000) if rnd.random() < 0.2 else 0)
        return {
            "event_id": str(uuid.uuid4()),
            "timestamp": _iso(ts),
            "device_type": self.pick("device_type"),
            "firmware_version": f"{rnd.randint(1, 4)}.{rnd.randint(0, 9)}.{rnd.randint(0, 19)}",
            "battery_level": round(min(100.0, 100 * rnd.betavariate(5.0, 1.5)), 1),
            "sensor_id": f"sensor-{rnd.randint(1, 1000):05d}",
            "temperature": round(min(85.0, max(-40.0, rnd.gauss(22.0, 8.0))), 2),
            "humidity": round(min(100.0, max(0.0, rnd.gauss(50.0, 15.0))), 1),
            "pressure": round(min(1085.0, max(870.0, rnd.gauss(1013.25, 8.0))), 2),
            **self.picks("status", "region", "zone", "model"),
            "version": rnd.randint(1, 5),
            "signal_strength": int(min(-30, max(-120, round(rnd.gauss(-70, 12))))),
            "uptime_hours": round(min(8760.0, rnd.expovariate(1 / 720)), 2),
            "fault_count": min(50, int(rnd.expovariate(2.5))),
            "last_calibration": _iso(calibration),
            "maintenance_due": (ts - calibration).days > 180,
            "created_at": _iso(created),
            "updated_at": _iso(updated),
            "source": self.pick("source"),
            "env": self.pick("env"),
            "json_column": self.dynamic_json(),
        }


class FakerRows(NotebookRows):
    """The same events from Faker providers, the other common way."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        from faker import Faker

        self.fake = Faker()
        self.fake.seed_instance(seed)
        self.end = self.base + dt.timedelta(hours=SPREAD_HOURS)

    def pick(self, column: str) -> str:
        values, weights = _CATALOGS[column]
        if weights:
            return self.fake.random_element(OrderedDict(zip(values, weights)))
        return self.fake.random_element(values)

    def value(self, spec: tuple, nested: dict | None = None):
        fake, kind = self.fake, spec[0]
        if kind == "float":
            return fake.pyfloat(min_value=spec[1], max_value=spec[2], right_digits=spec[3])
        if kind == "int":
            return fake.pyint(min_value=spec[1], max_value=spec[2])
        if kind == "bool":
            return fake.pybool(truth_probability=round(100 * spec[1]))
        if kind == "choice":
            return fake.random_element(spec[1])
        if kind == "float_array":
            return [fake.pyfloat(min_value=spec[3], max_value=spec[4], right_digits=spec[5])
                    for _ in range(fake.pyint(spec[1], spec[2]))]
        if kind == "string_array":
            return fake.random_elements(spec[3], length=fake.pyint(spec[1], spec[2]), unique=True)
        return {sub: self.value(sub_spec) for sub, sub_spec in nested.items()}

    def dynamic_json(self) -> dict:
        keys = set(self.fake.random_elements(_KEYS, length=self.fake.pyint(5, 25), unique=True))
        return {k: self.value(IOT_KEY_POOL[k], NESTED_KEYS.get(k)) for k in _KEYS if k in keys}

    def event(self) -> dict:
        fake = self.fake
        ts = fake.date_time_between(self.base, self.end, tzinfo=dt.timezone.utc)
        calibration = ts - dt.timedelta(days=fake.pyint(1, 365))
        created = ts + dt.timedelta(milliseconds=fake.pyint(0, 30_000))
        return {
            "event_id": fake.uuid4(),
            "timestamp": _iso(ts),
            "device_type": self.pick("device_type"),
            "firmware_version": f"{fake.pyint(1, 4)}.{fake.pyint(0, 9)}.{fake.pyint(0, 19)}",
            "battery_level": fake.pyfloat(min_value=0, max_value=100, right_digits=1),
            "sensor_id": f"sensor-{fake.pyint(1, 1000):05d}",
            "temperature": fake.pyfloat(min_value=-40, max_value=85, right_digits=2),
            "humidity": fake.pyfloat(min_value=0, max_value=100, right_digits=1),
            "pressure": fake.pyfloat(min_value=870, max_value=1085, right_digits=2),
            **self.picks("status", "region", "zone", "model"),
            "version": fake.pyint(1, 5),
            "signal_strength": fake.pyint(-120, -30),
            "uptime_hours": fake.pyfloat(min_value=0, max_value=8760, right_digits=2),
            "fault_count": fake.pyint(0, 3),
            "last_calibration": _iso(calibration),
            "maintenance_due": (ts - calibration).days > 180,
            "created_at": _iso(created),
            "updated_at": _iso(created + dt.timedelta(milliseconds=fake.pyint(0, 3_600_000))),
            "source": self.pick("source"),
            "env": self.pick("env"),
            "json_column": self.dynamic_json(),
        }


def per_row_file(make: Callable[[int], NotebookRows]) -> Callable[[int, Path], None]:
    def run(n: int, folder: Path) -> None:
        rows = make(7)
        with open(folder / "per_row.ndjson", "w", encoding="utf-8") as out:
            for _ in range(n):
                out.write(json.dumps(rows.event()) + "\n")
            out.flush()
            os.fsync(out.fileno())

    return run


# ---- the iotgen contenders -----------------------------------------------------------------------------------
def _config(n: int, folder: Path, **extra) -> Config:
    return Config(num_events=n, random_seed=7, anchor_time=ANCHOR, output_dir=str(folder), **extra)


def iotgen_arrow(n: int, folder: Path) -> None:
    for _ in generate_events(generator_spec(_config(n, folder)), n):
        pass


def iotgen_ndjson_bytes(n: int, folder: Path) -> None:
    for batch in generate_events(generator_spec(_config(n, folder)), n):
        ndjson_bytes(batch)


def iotgen_file(fmt: str) -> Callable[[int, Path], None]:
    def run(n: int, folder: Path) -> None:
        write_files(_config(n, folder, output_format=fmt))

    return run


# ---- measuring -----------------------------------------------------------------------------------------------
@dataclass
class Result:
    name: str
    events: int
    wall: float
    cpu: float
    bytes_per_event: float | None = None
    system: float = 0.0  # of ``cpu``, the kernel's (system time: writing files into the page cache)

    @property
    def per_core(self) -> float:
        return self.events / self.cpu

    @property
    def per_second(self) -> float:
        return self.events / self.wall


def _cpu_seconds(children: bool = True) -> float:
    return sum(_cpu_split(children))


def _cpu_split(children: bool = True) -> tuple[float, float]:
    """(user, system) CPU seconds of this process (and its children) so far."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    user, system = me.ru_utime, me.ru_stime
    if children:
        spawned = resource.getrusage(resource.RUSAGE_CHILDREN)
        user, system = user + spawned.ru_utime, system + spawned.ru_stime
    return user, system


def measure(name: str, run: Callable[[int, Path], None], n: int, repeats: int, scratch: Path) -> Result:
    """The best of ``repeats`` runs of ``n`` events (least CPU time) after a warm-up."""
    best: Result | None = None
    for attempt in range(repeats + 1):
        folder = Path(tempfile.mkdtemp(dir=scratch))
        count = max(1, n // 20) if attempt == 0 else n  # the first run warms up caches and tables
        wall, (user, system) = time.perf_counter(), _cpu_split()
        run(count, folder)
        after = _cpu_split()
        wall, user, system = time.perf_counter() - wall, after[0] - user, after[1] - system
        cpu = user + system
        written = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and f.suffix != ".json")
        shutil.rmtree(folder)
        if attempt and (best is None or cpu < best.cpu):
            best = Result(name, count, wall, cpu, written / count if written else None, system)
        if attempt:
            print(f"  {name}: {count / cpu:>12,.0f} events/s per core ({count / wall:,.0f} wall; system "
                  f"{system / cpu:.0%})", flush=True)
    return best


# ---- worker processes: each run a fresh process, as `iotgen generate` ----------------------------------------
_RUN = r"""
import json, resource, sys
from iotgen.base.allocator import retain_freed_memory
retain_freed_memory()  # before numpy and pyarrow load, as the CLI does
from iotgen.runs.batch import write_files
from iotgen.settings.config import Config
n, workers, parts, out, anchor = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
write_files(Config(num_events=n, random_seed=7, anchor_time=anchor, output_dir=out, output_format="ndjson",
                   workers=workers, events_per_file=max(1, -(-n // parts))))
me = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"parent": me.ru_utime + me.ru_stime}))
"""


@dataclass
class WorkerRun:
    """One worker configuration: the least CPU time over the rounds (all processes of the run: the parent, its
    workers, start-up included), the parent's own CPU and the wall time of that round."""

    name: str
    events: int
    cpu: float = float("inf")
    parent_cpu: float = 0.0
    wall: float = 0.0

    def add(self, cpu: float, parent: float, wall: float) -> None:
        if cpu < self.cpu:
            self.cpu, self.parent_cpu, self.wall = cpu, parent, wall

    @property
    def us_per_event(self) -> float:
        return 1e6 * self.cpu / self.events


def _launch(n: int, workers: int, parts: int, scratch: Path, cpus: set[int] | None = None):
    out = tempfile.mkdtemp(dir=scratch)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                         os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", _RUN, str(n), str(workers), str(parts), out, ANCHOR],
                               stdout=subprocess.PIPE, env=env,
                               preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    return process, out


def _finish(launched) -> tuple[float, float]:
    """(CPU seconds of the process and its workers, the process's own)."""
    process, out = launched
    _, status, usage = os.wait4(process.pid, 0)
    report = process.stdout.read()
    process.stdout.close()
    process.returncode = os.waitstatus_to_exitcode(status)
    shutil.rmtree(out, ignore_errors=True)
    if process.returncode:
        raise RuntimeError(f"worker benchmark run failed with status {process.returncode}")
    return usage.ru_utime + usage.ru_stime, json.loads(report)["parent"]


def worker_runs(n: int, workers: int, rounds: int, scratch: Path) -> list[WorkerRun]:
    """1 and ``workers`` worker processes, the same pinned to one CPU, the hardware reference (``workers``
    independent 1-worker runs at once, n / workers events each) and the start-up alone; interleaved round by
    round after a warm-up round, so that the machine's load falls on all alike."""
    one_cpu = {sorted(os.sched_getaffinity(0))[-1]} if hasattr(os, "sched_setaffinity") else None
    runs = {
        "one": WorkerRun("1 worker", n),
        "many": WorkerRun(f"{workers} workers", n),
        "pinned": WorkerRun(f"{workers} workers, all on one CPU", n),
        "reference": WorkerRun(f"reference: {workers} independent 1-worker runs at once", n),
        "start one": WorkerRun("1 worker, start-up only (2 events)", 2),
        "start many": WorkerRun(f"{workers} workers, start-up only (2 events)", 2),
    }

    def single(key: str, count: int, k: int, parts: int, cpus=None) -> None:
        wall = time.perf_counter()
        cpu, parent = _finish(_launch(count, k, parts, scratch, cpus))
        runs[key].add(cpu, parent, time.perf_counter() - wall)

    def reference() -> None:
        wall = time.perf_counter()
        launched = [_launch(n // workers, 1, WORKER_PARTS // workers, scratch) for _ in range(workers)]
        done = [_finish(one) for one in launched]
        runs["reference"].add(sum(cpu for cpu, _ in done), sum(own for _, own in done), time.perf_counter() - wall)

    for attempt in range(rounds + 1):
        scale = 20 if attempt == 0 else 1  # the first round warms up the page cache and the disk
        single("one", n // scale, 1, WORKER_PARTS)
        single("many", n // scale, workers, WORKER_PARTS)
        single("pinned", n // scale, workers, WORKER_PARTS, one_cpu)
        reference()
        single("start one", 2, 1, 2)
        single("start many", 2, workers, 2)
        if attempt == 0:
            for run in runs.values():
                run.cpu = float("inf")
            continue
        print("  round {}: {}".format(attempt, ", ".join(f"{r.name} {r.cpu:.2f} s" for r in runs.values())),
              flush=True)
    return list(runs.values())


def worker_table(runs: list[WorkerRun]) -> list[str]:
    one, many, pinned, reference, start_one, start_many = runs
    lines = ["", f"NDJSON file of {WORKER_PARTS} parts with worker processes (each worker writes whole parts). Each "
             "run is a fresh Python process as `iotgen generate` is; CPU = the process and its workers, start-up "
             "included; parent = the process's own share; least CPU over the rounds:", "",
             "| run | events | wall s | CPU s | CPU µs/event | CPU vs 1 worker | parent share |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        full = r.events == one.events  # the start-up runs: CPU seconds only
        per_one = f"{r.us_per_event / one.us_per_event:.2f}" if full else ""
        lines.append(f"| {r.name} | {r.events:,} | {r.wall:.1f} | {r.cpu:.2f} | "
                     f"{f'{r.us_per_event:.2f}' if full else ''} | {per_one} | "
                     f"{'' if r is reference else f'{r.parent_cpu / r.cpu:.0%}'} |")
    workers = int(many.name.split()[0])
    steady = (many.cpu - start_many.cpu) / (one.cpu - start_one.cpu)
    lines += ["", f"- {workers} workers, start-up excluded (CPU minus the start-up-only run's, each): "
              f"{steady:.2f}x one worker; on one CPU {(pinned.cpu - start_many.cpu) / (one.cpu - start_one.cpu):.2f}x; "
              f"the reference {(reference.cpu - workers * start_one.cpu) / (one.cpu - start_one.cpu):.2f}x.",
              f"- Target: {workers} workers within 1.2x one worker's CPU per event: {many.cpu / one.cpu:.2f}x "
              f"({'met' if many.cpu <= 1.2 * one.cpu else 'NOT met'}); the parent under 10% of the run's CPU: "
              f"{many.parent_cpu / many.cpu:.0%} ({'met' if many.parent_cpu < 0.1 * many.cpu else 'NOT met'}).",
              f"- Start-up: {start_one.cpu:.2f} s CPU for one process; {start_many.cpu:.2f} s with {workers} "
              f"workers, i.e. {(start_many.cpu - start_many.parent_cpu) / workers:.2f} s per worker."]
    return lines


def machine() -> str:
    """CPU model, CPU count and load average: what the numbers depend on."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    load = ", load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()) if hasattr(os, "getloadavg") else ""
    return f"{model}, {os.cpu_count()} CPUs{load}"


def pin_to_one_cpu() -> str:
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[-1]})
        return f"pinned to CPU {cpus[-1]} of {len(cpus)}"
    return "not pinned (no sched_setaffinity)"


# ---- reporting -----------------------------------------------------------------------------------------------
def markdown(results: list[Result], reference: Result, workers: list[WorkerRun], notes: list[str]) -> str:
    lines = [
        "# Generation benchmark",
        "",
        "Events/s per core = events / process CPU seconds (user + system), one process pinned to one core; "
        "best of the repeats. Wall-clock rates beside. Ratio = per-core rate / the per-row reference's. System = "
        "the kernel's share of that CPU time (for files: copying them into the page cache, which varies from run "
        "to run with the machine, not with iotgen).",
        "",
        "| contender | events | events/s per core | events/s (wall) | x per-row reference | bytes/event | system |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        size = f"{r.bytes_per_event:,.0f}" if r.bytes_per_event else ""
        lines.append(f"| {r.name} | {r.events:,} | {r.per_core:,.0f} | {r.per_second:,.0f} | "
                     f"{r.per_core / reference.per_core:,.1f} | {size} | {r.system / r.cpu:.0%} |")
    if workers:
        lines += worker_table(workers)
    lines += ["", *[f"- {note}" for note in notes], ""]
    return "\n".join(lines)


def plot(results: list[Result], reference: Result, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.55 * len(results) + 1.4))
    names = [r.name for r in results][::-1]
    rates = [r.per_core for r in results][::-1]
    colors = ["#2b6cb0" if name.startswith("iotgen") else "#a0aec0" for name in names]
    ax.barh(names, rates, color=colors)
    ax.set_xscale("log")
    ax.axvline(TARGET_PER_CORE, color="#c53030", linestyle="--", linewidth=1)
    ax.text(TARGET_PER_CORE, len(names) - 0.4, " target 800k/core", color="#c53030", fontsize=8, va="top")
    for y, rate in enumerate(rates):
        ax.text(rate, y, f" {rate:,.0f} ({rate / reference.per_core:,.1f}x)", va="center", fontsize=8)
    ax.set_xlabel("events/s per core (log scale)")
    ax.set_xlim(min(rates) / 2, max(rates) * 12)
    ax.set_title("iotgen vs per-row generation, one core")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def arrow_only(args: argparse.Namespace) -> int:
    """``--only arrow``: the Arrow contender alone, every repeat printed, then its best and median."""
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    pinned = pin_to_one_cpu()
    scratch = Path(tempfile.mkdtemp(prefix="iotgen-bench-", dir=args.scratch))
    rates = []
    try:
        for _ in range(args.repeats):
            rates.append(measure("iotgen -> Arrow", iotgen_arrow, args.events, 1, scratch).per_core)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rates.sort()
    print(f"iotgen -> Arrow, {args.events:,} events, {len(rates)} runs: best {rates[-1]:,.0f}, median "
          f"{rates[len(rates) // 2]:,.0f} events/s per core; {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; "
          f"{machine()}; {pinned}; numpy {np.__version__}, pyarrow {pa.__version__}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=500_000, help="events per iotgen run")
    parser.add_argument("--reference-events", type=int, default=20_000, help="events per per-row reference run")
    parser.add_argument("--faker-events", type=int, default=4_000, help="events per Faker run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="also time the NDJSON file with this many workers")
    parser.add_argument("--worker-events", type=int, default=4_000_000,
                        help="events per worker run (enough to amortise starting the worker processes)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--scratch", type=Path, default=None, help="folder for the files written (default: temp)")
    parser.add_argument("--only", choices=("arrow",), default=None,
                        help="time only this contender (no workers, per-row references or files; prints its table "
                        "and writes nothing)")
    args = parser.parse_args(argv)
    if args.only == "arrow":
        return arrow_only(args)

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    scratch = Path(tempfile.mkdtemp(prefix="iotgen-bench-", dir=args.scratch))
    pinned = None
    try:
        workers = []
        if args.workers > 1:  # before pinning: worker processes need their own cores
            print("NDJSON file, worker processes (CPU time, fresh processes):", flush=True)
            workers = worker_runs(args.worker_events, args.workers, args.repeats, scratch)
        pinned = pin_to_one_cpu()
        print(f"single core ({pinned}):", flush=True)
        contenders = [
            ("iotgen -> Arrow", iotgen_arrow, args.events),
            ("iotgen -> NDJSON bytes (no file)", iotgen_ndjson_bytes, args.events),
            ("iotgen -> NDJSON file", iotgen_file("ndjson"), args.events),
            ("iotgen -> Parquet file", iotgen_file("parquet"), args.events),
            ("per-row reference -> NDJSON file", per_row_file(NotebookRows), args.reference_events),
            ("Faker per-row -> NDJSON file", per_row_file(FakerRows), args.faker_events),
        ]
        results = [measure(name, run, n, args.repeats, scratch) for name, run, n in contenders]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    reference = next(r for r in results if r.name.startswith("per-row reference"))
    arrow = results[0]
    ndjson_file = next(r for r in results if r.name == "iotgen -> NDJSON file")
    parquet_file = next(r for r in results if r.name == "iotgen -> Parquet file")
    notes = [
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; {machine()}; {pinned}; "
        f"Python {platform.python_version()}, numpy {np.__version__}, "
        f"pyarrow {pa.__version__}; allocator tuning (iotgen.base.allocator) "
        f"{'on' if ALLOCATOR_TUNED else 'unavailable'}.",
        f"Target 1: {TARGET_PER_CORE:,} events/s per core into Arrow with json_column: "
        f"{arrow.per_core:,.0f} ({'met' if arrow.per_core >= TARGET_PER_CORE else 'NOT met'}).",
        f"Target 3: {TARGET_FILE_PER_CORE:,} events/s per core into NDJSON and Parquet files: NDJSON "
        f"{ndjson_file.per_core:,.0f}, Parquet {parquet_file.per_core:,.0f} "
        f"({'met' if min(ndjson_file.per_core, parquet_file.per_core) >= TARGET_FILE_PER_CORE else 'NOT met'}); "
        f"by user time alone (without the kernel's page-cache copies): NDJSON "
        f"{ndjson_file.events / (ndjson_file.cpu - ndjson_file.system):,.0f}, Parquet "
        f"{parquet_file.events / (parquet_file.cpu - parquet_file.system):,.0f}.",
        f"Target 2: {TARGET_RATIO}x the per-row reference: Arrow {arrow.per_core / reference.per_core:,.0f}x, "
        f"NDJSON file {ndjson_file.per_core / reference.per_core:,.0f}x "
        f"({'met' if ndjson_file.per_core >= TARGET_RATIO * reference.per_core else 'NOT met'} for the file).",
        f"Events per run: iotgen {args.events:,}, per-row {args.reference_events:,}, Faker {args.faker_events:,}; "
        f"best of {args.repeats} after a warm-up run.",
    ]
    text = markdown(results, reference, workers, notes)
    print()
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "generate.md").write_text(text, encoding="utf-8")
    plot(results, reference, args.out / "generate.png")
    print(f"wrote {args.out / 'generate.md'} and {args.out / 'generate.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
