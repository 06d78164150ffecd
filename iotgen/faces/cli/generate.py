"""``iotgen generate``: write a batch of events to files under OUTPUT_DIR, or to a Delta / Iceberg table."""

from __future__ import annotations

import argparse
import sys

from ...runs.batch import write_files
from ...runs.tables import write_table
from ...settings.config import TABLE_FORMATS
from .options import GENERATION_FLAGS, add_config_option, add_generation_options, load_config

HELP = "generate a batch of events and write them to files (prints the written paths)"

FLAGS = {
    **GENERATION_FLAGS, "events": "NUM_EVENTS", "format": "OUTPUT_FORMAT", "output": "OUTPUT_DIR",
    "prefix": "OUTPUT_FILENAME_PREFIX", "min_keys": "MIN_KEYS", "max_keys": "MAX_KEYS", "workers": "WORKERS",
    "chunk_size": "CHUNK_SIZE", "events_per_file": "EVENTS_PER_FILE", "anchor_time": "ANCHOR_TIME",
    "json_column_mode": "JSON_COLUMN_MODE",
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", "-n", type=str, metavar="N", help="number of events (NUM_EVENTS)")
    parser.add_argument("--format", metavar="FMT",
                        help="ndjson (default) | json | parquet | csv | delta | iceberg (OUTPUT_FORMAT)")
    parser.add_argument("--output", "-o", metavar="DIR", help="output folder (OUTPUT_DIR, default: output)")
    parser.add_argument("--prefix", metavar="NAME", help="file name prefix (OUTPUT_FILENAME_PREFIX)")
    parser.add_argument("--min-keys", metavar="A", help="fewest json_column keys (MIN_KEYS)")
    parser.add_argument("--max-keys", metavar="B", help="most json_column keys (MAX_KEYS)")
    parser.add_argument("--workers", metavar="K", help="worker processes (WORKERS)")
    parser.add_argument("--chunk-size", metavar="C", help="events per chunk, bounds memory (CHUNK_SIZE)")
    parser.add_argument("--events-per-file", metavar="E", help="split larger runs into parts (EVENTS_PER_FILE)")
    parser.add_argument("--anchor-time", metavar="ISO", help="reference 'now' of the time window (ANCHOR_TIME)")
    parser.add_argument("--json-column-mode", metavar="M",
                        help="Delta json_column: variant | string (JSON_COLUMN_MODE)")
    add_generation_options(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    add_config_option(parser)


def run(args: argparse.Namespace) -> int:
    config = load_config(args, FLAGS)
    progress = None
    if sys.stderr.isatty() and not args.no_progress:
        from tqdm import tqdm

        progress = tqdm(total=config.num_events, unit="ev", unit_scale=True, file=sys.stderr, leave=False)
    try:
        if config.output_format in TABLE_FORMATS:  # Delta / Iceberg: see iotgen.runs.tables
            table = write_table(config, on_progress=progress.update if progress else None)
            print(table.target.location)
            print(f"appended {table.count} events (seed {table.seed}) to {table.target.describe(table.commit)}",
                  file=sys.stderr)
            for name, sibling in table.registry.items():
                print(sibling.location)
                print(f"wrote the registry's {name.lstrip('_')} to {sibling.describe()}", file=sys.stderr)
            return 0
        result = write_files(config, on_progress=progress.update if progress else None)
    finally:
        if progress is not None:
            progress.close()
    for path in result.paths:
        print(path)
    print(f"wrote {result.count} events (seed {result.seed})", file=sys.stderr)
    return 0
