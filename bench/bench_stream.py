"""Benchmark: events/s through the real azure-eventhub SDK to the local endpoint, per producer process, and the
rate accuracy of the token bucket at 1k, 5k and 10k events/s.

    python bench/bench_stream.py [--events 200000] [--repeats 3] [--accuracy-seconds 60] [--markdown FILE]

One ``iotgen.emulator`` subprocess (in memory, 4 partitions) on 127.0.0.1 is the endpoint; the producer is this
process. Measured, in the same run:

* **generate + encode only** (reference): events/s of the generator, JSON bodies and AMQP messages, no sending;
* **iotgen stream**: events/s acknowledged by the endpoint, unpaced, ``BATCH_SIZE`` 8192, after a warm-up;
* **SDK public API** (reference): the same producer and pipeline, but batches filled the way the SDK's samples
  do it, one ``EventData`` and ``EventDataBatch.add`` per event, sent with ``send_batch``;
* **rate accuracy**: ``RATE_EVENTS_PER_SEC`` 1,000 / 5,000 / 10,000 for ``--accuracy-seconds``: acknowledged
  events / elapsed time against the target.

The emulator (pure Python) runs on the same machine and takes most of a core: on 2 cores the producer and the
endpoint compete, so the stream figure is a floor for a producer talking to Azure.
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

import azure.eventhub  # noqa: E402

from iotgen.emulator import start_emulator_process  # noqa: E402
from iotgen.formats.eventhub_messages import encode_messages  # noqa: E402
from iotgen.generation.generator import generate_range  # noqa: E402
from iotgen.outputs.eventhubs import EventHubProducer  # noqa: E402
from iotgen.runs.stream import stream_events  # noqa: E402
from iotgen.settings.config import Config, Secret  # noqa: E402
from iotgen.spec.spec_file import generator_spec


def encode_only(config: Config, events: int) -> float:
    spec = generator_spec(config)
    start = time.perf_counter()
    for first in range(0, events, 8192):
        encode_messages(generate_range(spec, first, min(events, first + 8192)))
    return events / (time.perf_counter() - start)


def stream_rate(producer: EventHubProducer, config: Config) -> tuple[float, object]:
    summary = stream_events(config, producer)
    assert summary.ok and summary.acknowledged == summary.sent, summary
    return summary.events_per_sec, summary


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events per throughput run")
    parser.add_argument("--public-events", type=int, default=20_000, help="events per SDK public-API run")
    parser.add_argument("--repeats", type=int, default=3, help="throughput runs (ranges are reported)")
    parser.add_argument("--accuracy-seconds", type=float, default=60.0, help="length of each rate-accuracy run")
    parser.add_argument("--rates", default="1000,5000,10000", help="target rates for the accuracy runs")
    parser.add_argument("--markdown", help="write the results as markdown to this file")
    args = parser.parse_args(argv)

    base = Config(random_seed=7, sleep_interval_sec=0, stream_time_mode="live")
    reference, streamed, public, producer_cpu, emulator_cpu = [], [], [], [], []
    accuracy: list[tuple[float, float, float, float]] = []
    with start_emulator_process(partitions=4) as emulator:
        config = base.replace(eventhub_connection_string=Secret(emulator.connection_string))
        with EventHubProducer.open(config) as producer:
            stream_rate(producer, config.replace(stream_events=20_000, batch_size=8192))  # warm-up
            for run in range(args.repeats):
                reference.append(encode_only(config, min(args.events, 100_000)))
                cpu = time.process_time(), process_cpu_seconds(emulator.pid)
                rate, summary = stream_rate(producer, config.replace(stream_events=args.events, batch_size=8192,
                                                                     stream_start_event=run * args.events))
                streamed.append(rate)
                producer_cpu.append((time.process_time() - cpu[0]) / summary.acknowledged * 1e6)
                emulator_cpu.append((process_cpu_seconds(emulator.pid) - cpu[1]) / summary.acknowledged * 1e6)
                with EventHubProducer.open(config, fast=False) as slow:
                    public.append(stream_rate(slow, config.replace(stream_events=args.public_events,
                                                                   batch_size=8192))[0])
                print(f"run {run + 1}: generate+encode {reference[-1]:,.0f} ev/s; stream {rate:,.0f} ev/s "
                      f"({summary.mb_per_sec:.1f} MB/s; CPU per event: producer {producer_cpu[-1]:.1f} us, endpoint "
                      f"{emulator_cpu[-1]:.1f} us); SDK public API {public[-1]:,.0f} ev/s", flush=True)
            for target in [float(r) for r in args.rates.split(",")]:
                batch = max(100, int(target / 10))  # 10 steps per second
                rate, summary = stream_rate(producer, config.replace(
                    stream_duration_sec=args.accuracy_seconds, rate_events_per_sec=target, batch_size=batch))
                accuracy.append((target, rate, summary.acknowledged, summary.elapsed_sec))
                print(f"rate {target:,.0f}: {rate:,.1f} ev/s ({(rate / target - 1) * 100:+.2f} %) "
                      f"over {summary.elapsed_sec:.1f} s", flush=True)

    def span(values, decimals=0):
        low, high = f"{min(values):,.{decimals}f}", f"{max(values):,.{decimals}f}"
        return f"{low} - {high}" if len(values) > 1 else low

    lines = [
        "# Event Hubs streaming benchmark",
        "",
        f"`python bench/bench_stream.py --events {args.events} --repeats {args.repeats} --accuracy-seconds "
        f"{args.accuracy_seconds:g}` on {platform.machine()}, 2 cores shared with the local endpoint, "
        f"Python {platform.python_version()}, azure-eventhub {azure.eventhub.__version__}, "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d}.",
        "",
        "## Throughput per producer process (real SDK, real AMQP, local endpoint, 4 partitions)",
        "",
        "| measure | events/s (median) | range |",
        "|---|---|---|",
        f"| generate + encode only (reference, no sending) | {statistics.median(reference):,.0f} | {span(reference)} |",
        f"| **iotgen stream** (acknowledged, BATCH_SIZE 8192, PARTITION_KEY sensor_id) | "
        f"**{statistics.median(streamed):,.0f}** | {span(streamed)} |",
        f"| same, SDK public API: one `EventData` + `add` per event (reference) | {statistics.median(public):,.0f} | "
        f"{span(public)} |",
        "",
        f"- stream / generate+encode: {statistics.median(streamed) / statistics.median(reference):.2f}; "
        f"stream / SDK public API: {statistics.median(streamed) / statistics.median(public):.1f}x. "
        "Target: >= 20,000 events/s per producer process.",
        f"- CPU time per event streamed: producer process {statistics.median(producer_cpu):.1f} us "
        f"({span(producer_cpu, 1)}), endpoint process {statistics.median(emulator_cpu):.1f} us "
        f"({span(emulator_cpu, 1)}); so one producer process with a core to itself sends up to "
        f"**{1e6 / statistics.median(producer_cpu):,.0f} events/s** (the local endpoint, a pure-Python server, "
        f"takes up to {1e6 / statistics.median(emulator_cpu):,.0f}/s on its own core).",
        "",
        f"## Rate accuracy ({args.accuracy_seconds:g} s per rate, BATCH_SIZE = rate / 10)",
        "",
        "| target events/s | achieved events/s | error | events | elapsed |",
        "|---|---|---|---|---|",
        *[f"| {t:,.0f} | {r:,.1f} | {(r / t - 1) * 100:+.2f} % | {n:,} | {e:.1f} s |" for t, r, n, e in accuracy],
        "",
        "Achieved = events acknowledged by the endpoint / time from the start of the stream to the last "
        "acknowledgement. Target: within 1 %.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
