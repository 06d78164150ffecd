"""Benchmark: events/s of the fleet profile, with and without every data-quality scenario, against the
independent profile in the same run (issue 6: the fleet must keep at least half the independent speed).

Contenders, each generating the same number of events as Arrow batches (``generate_range``, json_column
included, batches dropped):

* ``independent``: each event drawn on its own (the reference);
* ``independent + all scenarios`` and ``fleet``: one of the two additions;
* ``fleet + all scenarios``: ``iotgen/spec/example_spec.yaml``'s fleet and scenarios, with its schema-drift
  changes moved to the start of the time window so that every scenario (all three drift changes included)
  acts on every measured block: the worst case, not the example's average;
* ``fleet + all scenarios but schema drift``: the same without the drift changes (what the example costs
  before its first change);
* ``fleet + registry``: the fleet with the device registry on (issue 15; the registry section's defaults with
  every delivery fault on): the events, which follow the registry, plus, once per round, building the registry's
  lifecycle, its change feed, history and snapshot from scratch (what a run writes next to its events). Its
  target is a ratio to ``fleet`` of the same round: at least 0.6.
* ``fleet + offline + dropped``: the fleet with devices offline 5 % of their time (the ``offline`` defaults
  otherwise) and 1 % of reports dropped: events in order of arrival (compared with the fleet too).
* ``fleet + registry + offline + dropped``: both together (the registry's devices buffer, drop and upload only
  what they report in service; compared with ``fleet + registry`` and with the fleet).

Rounds interleave the contenders block by block (each round measures every one on the same blocks, taking
turns), so machine noise hits them alike; a contender's rate is events per second of process CPU time, single
core (BLAS/OpenMP and Arrow pools pinned
to one thread). The table gives each contender's best and range over the rounds, and its ratio to the
independent profile's rate *of the same round* (min - max), and the load average at the start and the end.
Writes ``fleet.md`` under ``--out`` (or the ``--out`` file itself when it ends in ``.md``)::

    python bench/bench_fleet.py [--events 262144] [--rounds 5] [--devices 1000] [--out bench/results]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime as dt  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa  # noqa: E402

from iotgen.settings.config import Config  # noqa: E402
from iotgen.generation.generator import BLOCK_SIZE, GeneratorSpec, generate_range  # noqa: E402
from iotgen.generation import devices as registry  # noqa: E402
from iotgen.generation.fleet import fleet_devices  # noqa: E402
from iotgen.generation.offline import Dropped, Offline  # noqa: E402
from iotgen.generation.scenarios import Scenarios  # noqa: E402
from iotgen.spec.spec_file import EXAMPLE_PATH, generator_spec  # noqa: E402

ANCHOR = "2026-01-08T00:00:00Z"
TARGET_RATIO = 0.5
REGISTRY_RATIO = 0.6  # fleet + registry against the fleet alone
REGISTRY = registry.Registry(faults=registry.CdcFaults(duplicates=0.01, out_of_order=0.01, late=0.005))


def contenders(devices: int) -> dict[str, GeneratorSpec]:
    """The specs compared, all from one seed and time window."""
    config = Config(random_seed=42, anchor_time=ANCHOR, spec_file=str(EXAMPLE_PATH), device_count=devices)
    full = generator_spec(config)
    drift = tuple(dataclasses.replace(change, at_ms=0) for change in full.scenarios.schema_drift)
    full = dataclasses.replace(full, scenarios=dataclasses.replace(full.scenarios, schema_drift=drift))
    independent = dataclasses.replace(full, fleet=None, scenarios=None)
    no_drift = dataclasses.replace(full.scenarios, schema_drift=())
    return {
        "independent": independent,
        "independent + all scenarios": dataclasses.replace(full, fleet=None),
        "fleet": dataclasses.replace(full, scenarios=None),
        "fleet + all scenarios but schema drift": dataclasses.replace(full, scenarios=no_drift),
        "fleet + all scenarios": full,
        "fleet + registry": dataclasses.replace(full, scenarios=None,
                                                fleet=dataclasses.replace(full.fleet, registry=REGISTRY)),
        "fleet + offline + dropped": dataclasses.replace(full, scenarios=Scenarios(offline=Offline(0.05),
                                                                                   dropped=Dropped(0.01))),
        "fleet + registry + offline + dropped": dataclasses.replace(
            full, fleet=dataclasses.replace(full.fleet, registry=REGISTRY),
            scenarios=Scenarios(offline=Offline(0.05), dropped=Dropped(0.01))),
    }


def build_registry(spec: GeneratorSpec) -> float:
    """CPU seconds to build ``spec``'s registry from scratch: the lifecycle of every device, then the change feed
    (flat), its history and its snapshot, as a run writes them (nothing cached)."""
    began = time.process_time()
    life = registry.Lifecycle(fleet_devices(spec), REGISTRY, spec.window_span_ms)
    registry._build_feed(life, "flat")
    history = registry._build_history(life)
    history.filter(history.column("valid_to").is_null())
    return time.process_time() - began


def measure(specs: dict[str, GeneratorSpec], start: int, events: int) -> dict[str, float]:
    """Events per CPU second of each spec generating ``events`` events from ``start`` (whole blocks, none
    cached), the specs taking turns block by block: load on the machine hits every contender alike."""
    spent = dict.fromkeys(specs, 0.0)
    for position in range(start, start + events, BLOCK_SIZE):
        for name, spec in specs.items():
            began = time.process_time()
            generate_range(spec, position, position + BLOCK_SIZE)
            spent[name] += time.process_time() - began
    for name, spec in specs.items():
        if registry.registry_of(spec) is not None:
            spent[name] += build_registry(spec)
    return {name: events / seconds for name, seconds in spent.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=8 * BLOCK_SIZE, help="events per contender per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--devices", type=int, default=1000, help="DEVICE_COUNT of the fleet")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        except OSError:
            pass
    events = max(BLOCK_SIZE, args.events // BLOCK_SIZE * BLOCK_SIZE)
    load_before = os.getloadavg()
    specs = contenders(args.devices)
    for spec in specs.values():  # warm up: caches (device tables, piece tables), first epochs
        generate_range(spec, 0, BLOCK_SIZE)
    rates: dict[str, list[float]] = {name: [] for name in specs}
    for round_ in range(args.rounds):
        start = (1 + round_) * events  # fresh blocks every round: nothing comes from a cache
        for name, rate in measure(specs, start, events).items():
            rates[name].append(rate)
        print(f"round {round_ + 1}: " + ", ".join(f"{n} {r[-1]:,.0f}/s" for n, r in rates.items()), file=sys.stderr)
    reference = rates["independent"]
    rows = []
    for name, values in rates.items():
        ratios = [v / r for v, r in zip(values, reference)]
        rows.append(f"| {name} | {max(values):,.0f} | {min(values):,.0f} - {max(values):,.0f} | "
                    f"{min(ratios):.2f} - {max(ratios):.2f} |")
    fleet_ratio = min(v / r for v, r in zip(rates["fleet"], reference))
    all_ratio = min(v / r for v, r in zip(rates["fleet + all scenarios"], reference))
    registry_ratios = [v / r for v, r in zip(rates["fleet + registry"], rates["fleet"])]
    registry_ratio = min(registry_ratios)
    offline = [v / f for v, f in zip(rates["fleet + offline + dropped"], rates["fleet"])]
    both = rates["fleet + registry + offline + dropped"]
    both_registry = [v / f for v, f in zip(both, rates["fleet + registry"])]
    both_fleet = [v / f for v, f in zip(both, rates["fleet"])]
    load_after = os.getloadavg()
    text = "\n".join([
        "# Fleet and scenarios benchmark",
        "",
        f"`python bench/bench_fleet.py --events {events} --rounds {args.rounds} --devices {args.devices}` on "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{dt.date.today().isoformat()}; one core, CPU time, BLOCK_SIZE {BLOCK_SIZE}. Rounds interleave the "
        "contenders block by block; ratios are to the independent profile of the same round. The fleet + scenarios "
        "spec is iotgen/spec/example_spec.yaml with its schema-drift changes moved to the window start (every "
        "scenario acts on every block: the worst case). Load average (1, 5, 15 min) at the start "
        f"{', '.join(f'{x:.1f}' for x in load_before)}, at the end {', '.join(f'{x:.1f}' for x in load_after)} "
        "(the machine is shared: compare ratios of the same round, not rates across runs).",
        "",
        "| profile | events/s (best) | events/s (range) | / independent (range) |",
        "|---|---|---|---|",
        *rows,
        "",
        f"Target: the fleet profile at >= {TARGET_RATIO:.0%} of the independent profile's speed: "
        f"{'met' if fleet_ratio >= TARGET_RATIO else 'NOT met'} (worst round {fleet_ratio:.2f}). "
        f"With every scenario on: worst round {all_ratio:.2f}. Offline devices and dropped reports (events in "
        f"order of arrival) against the fleet alone: {min(offline):.2f} - {max(offline):.2f}. The registry with "
        f"offline devices and dropped reports against the fleet + registry: {min(both_registry):.2f} - "
        f"{max(both_registry):.2f} (against the fleet alone: {min(both_fleet):.2f} - {max(both_fleet):.2f}).",
        "",
        f"Target: the fleet with the device registry and its change feed at >= {REGISTRY_RATIO:.0%} of the fleet "
        f"alone (same round): {'met' if registry_ratio >= REGISTRY_RATIO else 'NOT met'} (rounds "
        f"{min(registry_ratios):.2f} - {max(registry_ratios):.2f}).",
        "",
    ])
    out = args.out if args.out.suffix == ".md" else args.out / "fleet.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
