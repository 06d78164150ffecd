"""Lakehouse benchmark: batch write events/s to Delta (VARIANT, string) and Iceberg, and the Event Hubs -> Delta
ingest's end-to-end events/s against the raw SDK receive rate measured in the same run (target: >= 80 %).

Both consumers start on a hub holding the same N events and stop once they have all of them: the raw consumer
when its callback has counted N, the ingest (``available_now``) when its last commit holds them; each rate is N
over the time from starting the client to that moment (the ingest's includes reading the table's offsets and
each partition's end, parsing, VARIANT encoding and the Delta commits).

    python bench/bench_lakehouse.py [--events 50000] [--ingest-events 100000] [--repeat 2] [--batch-only]
                                    [--out bench/results/lakehouse.md]

Rates are ratios against references measured in the same run (the generator alone; a bare SDK consumer
draining the same hub), so a busy machine moves both sides. Run it more than once and read the ranges.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from iotgen import generate_events, generate_table  # noqa: E402
from iotgen.formats.encoding import json_lines  # noqa: E402
from iotgen.runs.ingest import IngestOptions, run_ingest  # noqa: E402
from iotgen.outputs.table_target import TableTarget, parse_target  # noqa: E402
from iotgen.settings.config import Config  # noqa: E402


def batch_rates(n: int, folder: Path, cpu: dict[str, list[float]] | None = None) -> dict[str, float]:
    """Events/s of each contender, one after the other; ``cpu`` collects each one's CPU time per event (this
    process and its threads: delta-rs writes on several), which a busy shared machine moves far less."""
    config = Config(random_seed=1, num_events=n, anchor_time="2026-03-01T00:00:00Z")
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in generate_events(config, n):
        pass
    rates = {"generate only (reference)": n / (time.perf_counter() - start)}
    if cpu is not None:
        cpu.setdefault("generate only (reference)", []).append((time.process_time() - cpu_start) / n)
    for label, target, json_column in (
        # VARIANT as iotgen generate writes it (write_table): json_column encoded by the generator, no JSON parse
        ("Delta, json_column VARIANT", TableTarget("delta", str(folder / "dv"), "variant"), "variant"),
        ("Delta, json_column string", TableTarget("delta", str(folder / "ds"), "string"), "text"),
        ("Iceberg v2 (SQLite catalog)", parse_target("iceberg:iot.bench", output_dir=str(folder)), "text"),
    ):
        start, cpu_start = time.perf_counter(), time.process_time()
        commit = target.write(generate_events(config, n, json_column=json_column))
        assert commit.rows == n
        rates[label] = n / (time.perf_counter() - start)
        if cpu is not None:
            cpu.setdefault(label, []).append((time.process_time() - cpu_start) / n)
    return rates


def send(connection_string: str, bodies: list[str]) -> None:
    from azure.eventhub import EventData, EventHubProducerClient

    with EventHubProducerClient.from_connection_string(connection_string) as producer:
        batch = producer.create_batch()
        for body in bodies:
            event = EventData(body)
            try:
                batch.add(event)
            except ValueError:
                producer.send_batch(batch)
                batch = producer.create_batch()
                batch.add(event)
        producer.send_batch(batch)


def raw_receive_rate(connection_string: str, n: int) -> float:
    from azure.eventhub import EventHubConsumerClient

    got = [0]
    done = threading.Event()
    client = EventHubConsumerClient.from_connection_string(connection_string, consumer_group="$Default")

    def on_batch(context, events) -> None:
        got[0] += len(events)
        if got[0] >= n:
            done.set()

    start = time.perf_counter()
    thread = threading.Thread(target=client.receive_batch, kwargs=dict(
        on_event_batch=on_batch, starting_position="-1", max_batch_size=1000, prefetch=2000), daemon=True)
    thread.start()
    assert done.wait(600), "raw consumer did not receive everything"
    elapsed = time.perf_counter() - start
    client.close()
    thread.join(30)
    return n / elapsed


def ingest_rate(connection_string: str, n: int, folder: Path) -> float:
    config = Config.load(env={"EVENTHUB_CONNECTION_STRING": connection_string})
    target = TableTarget("delta", str(folder / "ingest"), "variant")
    last_commit = [0.0]

    def on_commit(summary) -> None:
        last_commit[0] = time.perf_counter()

    start = time.perf_counter()
    summary = run_ingest(config, target, IngestOptions(max_batch_events=10_000, max_batch_seconds=5.0,
                                                       available_now=True), on_commit=on_commit)
    assert summary.events == n, summary
    return n / (last_commit[0] - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--ingest-events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", default=None, help="write the Markdown results here")
    parser.add_argument("--batch-only", action="store_true", help="skip the Event Hubs ingest part")
    args = parser.parse_args()
    from iotgen.emulator import start_emulator_process

    batch: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    ingest: list[tuple[float, float]] = []
    bodies = [] if args.batch_only else \
        json_lines(generate_table(Config(random_seed=2, num_events=args.ingest_events))).to_pylist()
    with tempfile.TemporaryDirectory(prefix="iotgen-bench-") as tmp:
        batch_rates(min(args.events, 20_000), Path(tmp))  # warm-up: imports, compiled key pools, first writes
    for run in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="iotgen-bench-") as tmp:
            for label, rate in batch_rates(args.events, Path(tmp), cpu).items():
                batch.setdefault(label, []).append(rate)
            if args.batch_only:
                print(f"run {run + 1}: batch {({k: round(v[-1]) for k, v in batch.items()})}", file=sys.stderr)
                continue
            hubs = ["raw", "ingest"]
            with start_emulator_process(hub=hubs, partitions=4) as emulator:
                for hub in hubs:
                    send(emulator.connection_string_for(hub), bodies)
                raw = raw_receive_rate(emulator.connection_string_for("raw"), len(bodies))
                ing = ingest_rate(emulator.connection_string_for("ingest"), len(bodies), Path(tmp))
                ingest.append((raw, ing))
        print(f"run {run + 1}: batch {({k: round(v[-1]) for k, v in batch.items()})}; raw {raw:,.0f}/s, "
              f"ingest {ing:,.0f}/s ({ing / raw:.0%})", file=sys.stderr)

    def span(values: list[float]) -> str:
        return f"{min(values):,.0f} - {max(values):,.0f}" if len(values) > 1 else f"{values[0]:,.0f}"

    reference = batch["generate only (reference)"]
    lines = [
        "# Lakehouse benchmark", "",
        f"`python bench/bench_lakehouse.py --events {args.events} --ingest-events {args.ingest_events} "
        f"--repeat {args.repeat}{' --batch-only' if args.batch_only else ''}` on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, {dt.date.today()} (shared machine: ranges "
        "over runs, after one warm-up run).", "",
        f"## Batch writes ({args.events:,} events, one commit)", "",
        "| target | events/s | share of generate-only time | CPU time per event (us) |", "|---|---|---|---|",
    ]
    for label, rates in batch.items():
        share = "1.00" if label.startswith("generate") else \
            f"{min(r / g for r, g in zip(rates, reference)):.2f} - {max(r / g for r, g in zip(rates, reference)):.2f}"
        micros = [c * 1e6 for c in cpu[label]]
        lines.append(f"| {label} | {span(rates)} | {share} | {min(micros):.2f} - {max(micros):.2f} |")
    variant, string = "Delta, json_column VARIANT", "Delta, json_column string"
    by_rate = [v / s for v, s in zip(batch[variant], batch[string])]
    by_cpu = [s / v for v, s in zip(cpu[variant], cpu[string])]
    lines += ["", f"Delta VARIANT / Delta string, speed in the same run (target >= 0.8): {min(by_rate):.2f} - "
              f"{max(by_rate):.2f} by wall-clock rate, {min(by_cpu):.2f} - {max(by_cpu):.2f} by CPU time per event "
              f"(median {statistics.median(by_cpu):.2f})."]
    text = "\n".join(lines) + "\n"
    if not ingest:
        print(text)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text)
        return 0
    ratios = [i / r for r, i in ingest]
    lines += [
        "", f"## Event Hubs -> Delta ingest ({args.ingest_events:,} events, local emulator, 4 partitions)", "",
        "| measure | events/s |", "|---|---|",
        f"| raw SDK receive (reference, same run) | {span([r for r, _ in ingest])} |",
        f"| ingest end to end (receive, parse, VARIANT, commit) | {span([i for _, i in ingest])} |",
        f"| ingest / raw receive | {min(ratios):.0%} - {max(ratios):.0%} (target >= 80 %) |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
