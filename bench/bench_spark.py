"""Benchmark: rows/s of the ``iotgen`` Spark source against dbldatagen, same 24-column schema, same run.

Both write to Spark's ``noop`` sink (every row is produced and consumed, nothing is stored), on local Spark
with ``--cores`` cores. Reported: rows/s of each, the ratio iotgen / dbldatagen, and iotgen's speed-up from 1 to
2 partitions. Also the embedded generator alone (no Spark) as a reference for the Spark overhead.

    python bench/bench_spark.py --events 2000000 --repeats 3 [--markdown bench/results/spark.md]

dbldatagen has no map type, so its ``json_column`` is the nearest equivalent: ``to_json`` of a struct with a
fixed set of 14 keys, one of them a nested object (ours has 5-25 keys drawn per event from a pool of 40).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from iotgen import generate_events  # noqa: E402
from iotgen.generation.generator import BLOCK_SIZE
from iotgen.settings.catalogs import DEVICE_TYPES, ENVS, MODELS, REGIONS, SOURCES, STATUS_VALUES, ZONES  # noqa: E402
from iotgen.settings.config import Config  # noqa: E402
from iotgen.spec.spec_file import generator_spec


def dbldatagen_frame(spark, rows: int, partitions: int, json_column: bool = True):
    import dbldatagen as dg

    def weighted(name, catalog):
        values = list(catalog)
        weights = [float(w) for w in catalog.values()] if isinstance(catalog, dict) else [1.0] * len(values)
        return dict(colName=name, colType="string", values=values, weights=weights, random=True)

    json_expr = (
        "to_json(named_struct("
        "'co2_ppm', cast(380 + rand() * 4620 as int), 'pm25_ugm3', round(rand() * 250, 1), "
        "'noise_db', round(25 + rand() * 95, 1), 'power_w', round(rand() * 5000, 2), "
        "'voltage_v', round(200 + rand() * 50, 2), 'motion_detected', rand() < 0.2, "
        "'power_source', element_at(array('battery', 'mains', 'solar', 'poe'), cast(rand() * 4 as int) + 1), "
        "'connectivity', element_at(array('wifi', 'lte', '5g', 'lorawan'), cast(rand() * 4 as int) + 1), "
        "'latency_ms', cast(1 + rand() * 1999 as int), 'packet_loss_pct', round(rand() * 20, 2), "
        "'readings', array(round(rand() * 100, 2), round(rand() * 100, 2)), "
        "'tags', array('indoor', 'pilot'), 'alarm_state', 'none', "
        "'location', named_struct('lat', round(rand() * 130 - 60, 6), 'lon', round(rand() * 360 - 180, 6), "
        "'site', 'plant-1')))"
    )
    spec = (
        dg.DataGenerator(spark, name="iot_events", rows=rows, partitions=partitions, randomSeed=42)
        .withColumn("event_id", "string", expr="uuid()")
        .withColumn("timestamp", "timestamp", begin="2026-01-01 00:00:00", end="2026-01-07 23:59:59",
                    interval="1 second", random=True)
        .withColumn(**weighted("device_type", DEVICE_TYPES))
        .withColumn("firmware_version", "string", expr="concat(cast(1 + floor(rand() * 4) AS INT), '.', "
                    "cast(floor(rand() * 10) AS INT), '.', cast(floor(rand() * 20) AS INT))")
        .withColumn("battery_level", "double", minValue=0.0, maxValue=100.0, step=0.1, random=True)
        .withColumn("sensor_id", "string", minValue=1, maxValue=1000, prefix="sensor", random=True)
        .withColumn("temperature", "double", minValue=-40.0, maxValue=85.0, step=0.01, random=True)
        .withColumn("humidity", "double", minValue=0.0, maxValue=100.0, step=0.1, random=True)
        .withColumn("pressure", "double", minValue=870.0, maxValue=1085.0, step=0.01, random=True)
        .withColumn(**weighted("status", STATUS_VALUES))
        .withColumn(**weighted("region", REGIONS))
        .withColumn(**weighted("zone", ZONES))
        .withColumn(**weighted("model", MODELS))
        .withColumn("version", "int", minValue=1, maxValue=5, random=True)
        .withColumn("signal_strength", "int", minValue=-120, maxValue=-30, random=True)
        .withColumn("uptime_hours", "double", minValue=0.0, maxValue=8760.0, step=0.01, random=True)
        .withColumn("fault_count", "int", minValue=0, maxValue=50, random=True)
        .withColumn("last_calibration", "timestamp", expr="timestamp - make_interval(0, 0, 0, cast(1 + rand() * 364 as int))")
        .withColumn("maintenance_due", "boolean", expr="datediff(timestamp, last_calibration) > 180")
        .withColumn("created_at", "timestamp", expr="timestamp + make_interval(0, 0, 0, 0, 0, 0, rand() * 30)")
        .withColumn("updated_at", "timestamp", expr="created_at + make_interval(0, 0, 0, 0, 0, 0, rand() * 3600)")
        .withColumn(**weighted("source", SOURCES))
        .withColumn(**weighted("env", ENVS))
    )
    if json_column:
        spec = spec.withColumn("json_column", "string", expr=json_expr)
    return spec.build()


def iotgen_frame(spark, rows: int, partitions: int):
    return (spark.read.format("iotgen").option("numEvents", rows).option("seed", 42)
            .option("numPartitions", partitions).option("anchorTime", "2026-01-08T00:00:00Z").load())


def tree_cpu_seconds() -> float:
    """CPU seconds used so far by this process and all its descendants that are alive (the JVM, its Python
    workers): read from /proc, so a run's CPU cost is the difference of two readings (Linux only; 0 elsewhere)."""
    if not os.path.isdir("/proc"):
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[tuple[int, float]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append((int(entry), (int(fields[11]) + int(fields[12])) / ticks))
    own = os.times()
    total, stack = own.user + own.system, [os.getpid()]
    while stack:
        for pid, cpu in children.get(stack.pop(), []):
            total += cpu
            stack.append(pid)
    return total


def timed_noop(frame) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process tree) to produce every row into Spark's noop sink."""
    cpu, start = tree_cpu_seconds(), time.perf_counter()
    frame.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - start, tree_cpu_seconds() - cpu


def embedded_rate(rows: int) -> float:
    spec = generator_spec(Config(random_seed=42, anchor_time="2026-01-08T00:00:00Z"))
    start = time.perf_counter()
    for _ in generate_events(spec, rows, chunk_size=BLOCK_SIZE):
        pass
    return rows / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--markdown", help="write the results table to this file")
    args = parser.parse_args(argv)

    from iotgen.runs.spark.session import get_spark

    spark = get_spark("iotgen-bench", cores=args.cores)
    n = args.events
    assert dbldatagen_frame(spark, 1000, 1).count() == 1000 and len(dbldatagen_frame(spark, 10, 1).columns) == 24
    # warm up: Python workers, JIT, the key-pool compilation
    timed_noop(iotgen_frame(spark, 4 * BLOCK_SIZE, args.cores))
    timed_noop(dbldatagen_frame(spark, 100_000, args.cores))

    names = {
        "iotgen1": "iotgen, 1 partition",
        "iotgen": f"iotgen, {args.cores} partitions",
        "dbl": f"dbldatagen, {args.cores} partitions",
        "dbl23": f"dbldatagen without json_column (23 columns), {args.cores} partitions",
    }
    frames = {
        "iotgen1": lambda: iotgen_frame(spark, n, 1),
        "iotgen": lambda: iotgen_frame(spark, n, args.cores),
        "dbl": lambda: dbldatagen_frame(spark, n, args.cores),
        "dbl23": lambda: dbldatagen_frame(spark, n, args.cores, json_column=False),
    }
    rates: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    embedded: list[float] = []
    for repeat in range(args.repeats):  # interleaved, so load from other processes hits all alike
        for key, make in frames.items():
            wall, used = timed_noop(make())
            rates[key].append(n / wall)
            cpu[key].append(used * 1_000_000 / n)
        embedded.append(embedded_rate(n // 2))
        print(f"repeat {repeat + 1}: " + ", ".join(f"{names[k]} {v[-1]:,.0f}/s" for k, v in rates.items())
              + f", embedded {embedded[-1]:,.0f}/s", flush=True)

    ratios = [a / b for a, b in zip(rates["iotgen"], rates["dbl"])]
    scaling = [a / b for a, b in zip(rates["iotgen"], rates["iotgen1"])]
    med = statistics.median
    lines = [
        f"Spark source benchmark: {n:,} events x {args.repeats} repeats (interleaved), local[{args.cores}], "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d}, pyspark {spark.version}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs shared with other work. Every row goes into Spark's `noop` sink.",
        "",
        "| run | rows/s median | rows/s min - max | CPU s per 1M rows (median) |",
        "|---|---:|---:|---:|",
    ]
    for key, name in names.items():
        lines.append(f"| {name} | {med(rates[key]):,.0f} | {min(rates[key]):,.0f} - {max(rates[key]):,.0f} | "
                     f"{med(cpu[key]):.1f} |")
    lines += [
        f"| embedded generator alone (no Spark), 1 core | {med(embedded):,.0f} | "
        f"{min(embedded):,.0f} - {max(embedded):,.0f} | |",
        "",
        f"- iotgen / dbldatagen ({args.cores} partitions each, same 24 columns): median **{med(ratios):.2f}x** "
        f"(range {min(ratios):.2f}x - {max(ratios):.2f}x)",
        f"- iotgen speed-up from 1 to {args.cores} partitions: median **{med(scaling):.2f}x** "
        f"(range {min(scaling):.2f}x - {max(scaling):.2f}x); CPU per row "
        f"{med(cpu['iotgen']) / med(cpu['iotgen1']):.2f}x that of 1 partition",
        f"- CPU per row: dbldatagen uses **{med(cpu['dbl']) / med(cpu['iotgen']):.2f}x** what iotgen uses "
        f"(same 24 columns, {args.cores} partitions each)",
    ]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
