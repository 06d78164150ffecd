"""Kafka benchmark: the Kafka producer and the Kafka ingest, side by side with their AMQP counterparts in one run.

Producers (``iotgen stream``'s loop, ``BATCH_SIZE`` 10,000, no pause, ``PARTITION_KEY=sensor_id``): the Kafka
producer into a real Apache Kafka broker (KRaft, tests/kafka_broker.py) with the default headers, with
``KAFKA_HEADERS=all`` (the four headers it sent before) and with ``none``, into the emulator's Kafka endpoint, the
AMQP producer into the emulator, and generate + encode alone (the producer's own ceiling); the contenders take
turns within each round, so load on the shared machine hits them alike. For each the CPU time of the producer
process (all its threads) per event, and of the broker's JVM per event. Target: >= 100,000 events/s from one
producer process into the real broker.

Ingest (``available_now`` into Delta with VARIANT, ``INGEST_MAX_BATCH_EVENTS`` 10,000): the same N events read
through AMQP (azure-eventhub SDK) and through Kafka (librdkafka) from the emulator, and through Kafka from the real
broker; each rate is N over the time from the start to the last commit. Target: Kafka >= 3x AMQP.

    python bench/bench_kafka.py [--events 300000] [--local-events 100000] [--ingest-events 100000]
                                [--rounds 3] [--out bench/results/kafka.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from iotgen import generate_events, generate_table  # noqa: E402
from iotgen.formats.encoding import json_lines  # noqa: E402
from iotgen.runs.ingest import IngestOptions, run_ingest  # noqa: E402
from iotgen.runs.stream import stream_events  # noqa: E402
from iotgen.outputs.table_target import TableTarget  # noqa: E402
from iotgen.settings.config import Config, Secret  # noqa: E402

BATCH = 10_000


def generate_rate(n: int) -> float:
    config = Config(random_seed=1)
    start = time.perf_counter()
    for chunk in generate_events(config, n, chunk_size=BATCH):
        json_lines(chunk)
    return n / (time.perf_counter() - start)


CPU_PER_EVENT: dict[str, list[float]] = {}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # this process, all its threads
    return usage.ru_utime + usage.ru_stime


BROKER_CPU_PER_EVENT: dict[str, list[float]] = {}


def _process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of another process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stream_rate(config: Config, n: int, start_event: int, label: str = "", broker_pid: int | None = None) -> float:
    cpu = _cpu_seconds()
    broker_cpu = _process_cpu_seconds(broker_pid) if broker_pid else 0.0
    summary = stream_events(config.replace(stream_events=n, stream_start_event=start_event, batch_size=BATCH,
                                           sleep_interval_sec=0, random_seed=1))
    assert summary.acknowledged == n and summary.failed == 0, str(summary)
    if label:
        CPU_PER_EVENT.setdefault(label, []).append((_cpu_seconds() - cpu) / n * 1e6)
    if label and broker_pid:
        BROKER_CPU_PER_EVENT.setdefault(label, []).append((_process_cpu_seconds(broker_pid) - broker_cpu) / n * 1e6)
    return summary.events_per_sec


def ingest_rate(config: Config, source: str, n: int, folder: Path) -> float:
    target = TableTarget("delta", str(folder / f"ingest-{source}-{secrets.token_hex(3)}"), "variant")
    last = [0.0]

    def on_commit(summary) -> None:
        last[0] = time.perf_counter()

    start = time.perf_counter()
    summary = run_ingest(config, target, IngestOptions(max_batch_events=10_000, max_batch_seconds=5.0,
                                                       available_now=True), on_commit=on_commit, source=source)
    assert summary.events == n, summary.lines()
    return n / (last[0] - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000, help="events per run into the real broker")
    parser.add_argument("--local-events", type=int, default=100_000, help="events per run into the emulator")
    parser.add_argument("--ingest-events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None, help="write the Markdown results here")
    args = parser.parse_args()
    from confluent_kafka import Producer
    from kafka_broker import KafkaBroker

    from iotgen.emulator import start_emulator_process

    produce: dict[str, list[float]] = {}
    ingest: dict[str, list[float]] = {}
    with KafkaBroker(secrets.token_urlsafe(16), heap="1g") as broker, \
            start_emulator_process(hub=["kafka", "amqp", "ingest"], partitions=4, kafka_port="any") as emulator:
        topic = broker.create_topic("bench", 4)
        to_broker = Config(stream_protocol="kafka", kafka_bootstrap_servers=broker.bootstrap, kafka_topic=topic)
        to_emulator_kafka = Config(stream_protocol="kafka", kafka_bootstrap_servers=emulator.kafka_bootstrap,
                                   eventhub_connection_string=Secret(emulator.connection_string_for("kafka")))
        to_emulator_amqp = Config(eventhub_connection_string=Secret(emulator.connection_string_for("amqp")))
        broker_pid = broker.process.pid if broker.process is not None else None
        load = [os.getloadavg()[0]]
        stream_rate(to_broker, 20_000, 10**9)  # warm-up: the broker's JIT, the connections
        for round_ in range(args.rounds):
            offset = round_ * max(args.events, args.local_events)
            for label, call in (
                ("generate + encode only (reference)", lambda: generate_rate(args.events)),
                ("Kafka producer -> Apache Kafka broker",
                 lambda: stream_rate(to_broker, args.events, offset, "Kafka producer -> Apache Kafka broker",
                                     broker_pid)),
                ("Kafka producer -> Apache Kafka broker, KAFKA_HEADERS=all",
                 lambda: stream_rate(to_broker.replace(kafka_headers="all"), args.events, offset,
                                     "Kafka producer -> Apache Kafka broker, KAFKA_HEADERS=all", broker_pid)),
                ("Kafka producer -> Apache Kafka broker, KAFKA_HEADERS=none",
                 lambda: stream_rate(to_broker.replace(kafka_headers="none"), args.events, offset,
                                     "Kafka producer -> Apache Kafka broker, KAFKA_HEADERS=none", broker_pid)),
                ("Kafka producer -> emulator (Kafka endpoint)",
                 lambda: stream_rate(to_emulator_kafka, args.local_events, offset,
                                     "Kafka producer -> emulator (Kafka endpoint)")),
                ("AMQP producer -> emulator (AMQP)", lambda: stream_rate(to_emulator_amqp, args.local_events, offset,
                                                                         "AMQP producer -> emulator (AMQP)")),
            ):
                produce.setdefault(label, []).append(call())
            print(f"round {round_ + 1}: " + ", ".join(f"{k}: {v[-1]:,.0f}/s" for k, v in produce.items()),
                  file=sys.stderr)
        load.append(os.getloadavg()[0])

        bodies = [b.encode() for b in json_lines(generate_table(Config(random_seed=2,
                                                                       num_events=args.ingest_events))).to_pylist()]
        stream_events(Config(eventhub_connection_string=Secret(emulator.connection_string_for("ingest")),
                             random_seed=2, stream_events=args.ingest_events, batch_size=BATCH,
                             sleep_interval_sec=0, stream_time_mode="window"))
        ingest_topic = broker.create_topic("ingest", 4)
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
        for i, body in enumerate(bodies):
            while True:
                try:
                    producer.produce(ingest_topic, body, str(i % 1000).encode())
                    break
                except BufferError:
                    producer.poll(0.05)
        assert producer.flush(60) == 0
        amqp = Config.load(env={"EVENTHUB_CONNECTION_STRING": emulator.connection_string_for("ingest")})
        kafka_emulator = amqp.replace(kafka_bootstrap_servers=emulator.kafka_bootstrap)
        kafka_broker = Config(kafka_bootstrap_servers=broker.bootstrap, kafka_topic=ingest_topic)
        with tempfile.TemporaryDirectory(prefix="iotgen-bench-kafka-") as tmp:
            for round_ in range(args.rounds):
                for label, config, source in (
                    ("AMQP ingest <- emulator", amqp, "eventhub"),
                    ("Kafka ingest <- emulator (Kafka endpoint)", kafka_emulator, "kafka"),
                    ("Kafka ingest <- Apache Kafka broker", kafka_broker, "kafka"),
                ):
                    ingest.setdefault(label, []).append(ingest_rate(config, source, args.ingest_events, Path(tmp)))
                print(f"ingest round {round_ + 1}: " + ", ".join(f"{k}: {v[-1]:,.0f}/s" for k, v in ingest.items()),
                      file=sys.stderr)

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):,.0f} | {min(values):,.0f} - {max(values):,.0f}"

    amqp_ingest = ingest["AMQP ingest <- emulator"]
    lines = [
        "# Kafka benchmark", "",
        f"`python bench/bench_kafka.py --events {args.events} --local-events {args.local_events} --ingest-events "
        f"{args.ingest_events} --rounds {args.rounds}` on {platform.machine()}, {os.cpu_count()} cores shared by "
        f"the producer or ingest, the broker (Java 17, Apache Kafka 4.1.1, KRaft) and the emulator (pure Python), "
        f"Python {platform.python_version()}, {dt.date.today()}. Ranges over {args.rounds} rounds. The machine's "
        f"1-minute load average (other work included) was {load[0]:.1f} before the producer rounds and "
        f"{load[-1]:.1f} after them.", "",
        "## Producers (one process, `iotgen stream` loop)", "",
        "| contender | events/s, median | range | producer CPU per event (all threads), median | events/s on a "
        "core of its own (1 s / CPU per event) | broker JVM CPU per event, median |", "|---|---|---|---|---|---|",
        *[f"| {label} | {cell(values)} | " + (
            f"{statistics.median(CPU_PER_EVENT[label]):.1f} us | {1e6 / statistics.median(CPU_PER_EVENT[label]):,.0f}"
            if label in CPU_PER_EVENT else "- | -") + " | " + (
            f"{statistics.median(BROKER_CPU_PER_EVENT[label]):.1f} us" if label in BROKER_CPU_PER_EVENT else "-")
          + " |" for label, values in produce.items()], "",
        "## Ingest into Delta (VARIANT), available-now", "",
        "| contender | events/s, median | range | x AMQP ingest (same round) |", "|---|---|---|---|",
    ]
    for label, values in ingest.items():
        ratios = [v / a for v, a in zip(values, amqp_ingest)]
        lines.append(f"| {label} | {cell(values)} | {min(ratios):.2f} - {max(ratios):.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
