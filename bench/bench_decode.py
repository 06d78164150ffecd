"""Benchmark: the ingest's decoder, ``decode_bodies(json_column="variant")``, CPU per body with and without the
fast path for iotgen's own ``json_column`` (iotgen/formats/pool_json.py), in the same run.

    python bench/bench_decode.py [--events 100000] [--batch 10000] [--rounds 5] [--markdown FILE]

Bodies are the JSON lines the producers send (``iotgen.formats.encoding.json_lines``), decoded in micro-batches
of ``--batch`` (the ingest's default ``INGEST_MAX_BATCH_EVENTS``) on one core (``use_threads=False``, as the
ingest does). Two sets:

* **default**: the default Config (independent events, no scenarios);
* **scenario-heavy**: the example spec (iotgen/spec/example_spec.yaml) with the independent profile, so the events
  span its whole week and every schema-drift change is in: about 70% of the bodies carry the added key
  ``firmware_channel`` and a sixth the changed ``co2_ppm``, plus its nulls, malformed JSON, duplicates...

Contenders, interleaved round by round: **general** (``key_pool=()``: DuckDB encodes every ``json_column``, as
before), **fast, default pool** and **fast, ingest pool** (the pool the ingest derives from the Config's spec:
catalogs + the keys its schema drift adds). Process CPU time (user + system) per body, median over rounds, and
the ratio to the general path's CPU in the same round.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

from iotgen.formats.decoding import decode_bodies  # noqa: E402
from iotgen.formats.encoding import json_lines  # noqa: E402
from iotgen.formats.pool_json import compile_pool  # noqa: E402
from iotgen.generation.generator import generate_range  # noqa: E402
from iotgen.runs.ingest import json_column_pool  # noqa: E402
from iotgen.settings.catalogs import Catalogs  # noqa: E402
from iotgen.settings.config import Config  # noqa: E402
from iotgen.spec.spec_file import PROJECT_ROOT, generator_spec  # noqa: E402

DEFAULT_POOL = Catalogs.build().key_pool
EXAMPLE_SPEC = PROJECT_ROOT / "iotgen" / "spec" / "example_spec.yaml"


def bodies(config: Config, events: int) -> pa.Array:
    spec = generator_spec(config)
    lines = [json_lines(pa.Table.from_batches([generate_range(spec, first, min(events, first + 50_000))]))
             for first in range(0, events, 50_000)]
    return pa.concat_arrays(lines).cast(pa.binary())


def cpu_per_body(data: pa.Array, batch: int, key_pool) -> float:
    start = time.process_time()
    for first in range(0, len(data), batch):
        decode_bodies(data.slice(first, batch), json_column="variant", use_threads=False, key_pool=key_pool)
    return (time.process_time() - start) / len(data)


def commit_cpu_per_body(data: pa.Array, batch: int, key_pool) -> float:
    """The ingest's commit path per micro-batch: ``build_batch`` (decode + the ingest columns) and
    ``write_delta`` into a fresh local Delta table (VARIANT json_column), CPU of all threads."""
    from iotgen.outputs.delta import write_delta
    from iotgen.runs.ingest import build_batch
    from iotgen.settings.schema import TIMESTAMP

    folder = Path(tempfile.mkdtemp(prefix="bench_decode_"))
    try:
        start = time.process_time()
        for first in range(0, len(data), batch):
            bodies_ = data.slice(first, batch)
            n = len(bodies_)
            ingested, _ = build_batch(bodies_, pa.array(["0"] * n), pa.array(np.arange(first, first + n)),
                                      pa.array(np.zeros(n, dtype=np.int64)).cast(TIMESTAMP), "variant", key_pool)
            write_delta(folder / "events", ingested, json_column_mode="variant")
        return (time.process_time() - start) / len(data)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def fast_share(data: pa.Array, batch: int, key_pool) -> float:
    metadata = compile_pool(key_pool).metadata
    fast = total = 0
    for first in range(0, len(data), batch):
        column = decode_bodies(data.slice(first, batch), json_column="variant", use_threads=False,
                               key_pool=key_pool).events.column("json_column").combine_chunks()
        fast += int(np.sum(np.array(column.field(0).to_pylist(), dtype=object) == metadata))
        total += len(column)
    return fast / total


def components(data: pa.Array, batch: int, rounds: int) -> list[tuple[str, float]]:
    """CPU per body of the pieces, one micro-batch of default bodies, median over ``rounds``: the fixed columns'
    parse alone and with json_column typed, the fast path's pattern and encoder, DuckDB's encoder."""
    from iotgen.formats import decoding
    from iotgen.formats.pool_json import encode
    from iotgen.formats.variant import try_field_to_variant

    text = data.slice(0, batch).cast(pa.string())
    shape = compile_pool(DEFAULT_POOL)
    schema = decoding._PARSE_SCHEMA.set(decoding._PARSE_SCHEMA.get_field_index("json_column"),
                                        pa.field("json_column", shape.struct))
    parsed = decoding._parse(text, False, schema)
    structs = parsed.column("json_column").combine_chunks()
    pieces = {
        "pyarrow parse, fixed columns (both paths)": lambda: decoding._parse(text, False),
        "pyarrow parse, fixed columns + json_column typed (fast path)": lambda: decoding._parse(text, False, schema),
        "RE2 pattern (fast path)": lambda: pc.match_substring_regex(text, shape.pattern),
        "encode from the typed columns (fast path)": lambda: encode(structs, shape),
        "DuckDB json_extract -> VARIANT -> Parquet VARIANT (general path)":
            lambda: try_field_to_variant(text, "json_column", False),
    }
    times: dict[str, list[float]] = {name: [] for name in pieces}
    for _ in range(rounds):
        for name, piece in pieces.items():
            start = time.process_time()
            piece()
            times[name].append((time.process_time() - start) / len(text))
    return [(name, statistics.median(t) * 1e6) for name, t in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--scenario-events", type=int, default=30_000,
                        help="bodies of the scenario-heavy set (its malformed bodies are examined one by one)")
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--commit", action="store_true",
                        help="also the ingest's commit path: build_batch + write_delta to a local Delta table")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    anchor = "2026-03-01T00:00:00Z"
    sets = {
        "default": Config(random_seed=1, anchor_time=anchor),
        "scenario-heavy (example spec, independent)": Config(random_seed=2, anchor_time=anchor,
                                                             spec_file=str(EXAMPLE_SPEC), profile="independent"),
    }
    load = [os.getloadavg()[0]]
    rows = []
    for (name, config), events in zip(sets.items(), (args.events, args.scenario_events)):
        data = bodies(config, events)
        pools = {"general (DuckDB)": (), "fast, default pool": DEFAULT_POOL,
                 "fast, ingest pool": json_column_pool(config)}
        shares = {label: fast_share(data, args.batch, pool) for label, pool in pools.items() if pool}
        for pool in pools.values():  # warm-up: compiled patterns, DuckDB connection
            cpu_per_body(data.slice(0, args.batch), args.batch, pool)
        times: dict[str, list[float]] = {label: [] for label in pools}
        commit_pools = {"general (DuckDB), decode + Delta write": (), "fast, ingest pool, decode + Delta write":
                        pools["fast, ingest pool"]} if args.commit else {}
        times.update({label: [] for label in commit_pools})
        for r in range(args.rounds):
            for label, pool in pools.items():
                times[label].append(cpu_per_body(data, args.batch, pool))
            for label, pool in commit_pools.items():
                times[label].append(commit_cpu_per_body(data, args.batch, pool))
            print(f"{name} round {r + 1}: " + ", ".join(f"{label} {t[-1] * 1e6:.1f} us" for label, t in times.items()),
                  flush=True)
        for label, t in times.items():
            general = times["general (DuckDB)" if "Delta" not in label else "general (DuckDB), decode + Delta write"]
            ratios = [g / x for g, x in zip(general, t)]
            rows.append((f"{name} ({events:,})", label, statistics.median(t) * 1e6, min(t) * 1e6, max(t) * 1e6,
                         statistics.median(ratios), min(ratios), max(ratios), shares.get(label)))
        load.append(os.getloadavg()[0])
    lines = [
        "# Decode benchmark (the ingest's decode_bodies, json_column as VARIANT)",
        "",
        f"`python bench/bench_decode.py --events {args.events} --scenario-events {args.scenario_events} "
        f"--batch {args.batch} --rounds {args.rounds}{' --commit' if args.commit else ''}` on "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{dt.date.today().isoformat()}. Process CPU per body, one core (`use_threads=False`), micro-batches of "
        f"{args.batch}; median and range over {args.rounds} interleaved rounds. 1-minute load average "
        + " -> ".join(f"{x:.1f}" for x in load) + " (other work on the machine included).",
        "",
        "| bodies (count) | contender | CPU per body, median | range | x general path (same round), median | range "
        "| bodies on the fast path |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, label, med, low, high, ratio, rlow, rhigh, share in rows:
        lines.append(f"| {name} | {label} | {med:.1f} us | {low:.1f} - {high:.1f} | {ratio:.2f}x | "
                     f"{rlow:.2f} - {rhigh:.2f} | {'-' if share is None else f'{share:.1%}'} |")
    load_before = os.getloadavg()[0]
    pieces = components(bodies(sets["default"], args.batch), args.batch, args.rounds)
    lines += ["", f"Pieces, one micro-batch of {args.batch} default bodies, median of {args.rounds} (load average "
              f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}):", "", "| piece | CPU per body |", "|---|---|"]
    lines += [f"| {name} | {us:.1f} us |" for name, us in pieces]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
