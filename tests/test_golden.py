"""Golden output: the seeded bytes of every profile and file format, and the labels, pinned by their hashes.

A refactor must leave the data alone: any change of the generated events, of their encoding or of the labels
fails here. After a deliberate change of the data, regenerate the hashes (and say so in the commit):

    python tests/test_golden.py --update

The runs pin ANCHOR_TIME and the clock, so the hashes do not depend on the day they are computed. Parquet is
hashed by its contents (the writer's version is in its footer); the text formats byte for byte.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).with_name("golden_outputs.json")
NOW = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
PROFILES = {
    "independent": {},
    "fleet": {"profile": "fleet", "device_count": 300},
    "fleet+scenarios": {"spec_file": str(ROOT / "iotgen" / "spec" / "example_spec.yaml"), "device_count": 300},
}
FORMATS = ("ndjson", "json", "csv", "parquet")
EVENTS = 40_000  # two blocks of 32,768: a block boundary is crossed


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_digest(path: Path) -> str:
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        return _digest(json.dumps(table.to_pylist(), default=str, sort_keys=True).encode())
    return _digest(path.read_bytes())


def outputs(profile: str, fmt: str) -> dict[str, str]:
    """The digests of one seeded run's files: events, labels (with scenarios), the manifest's data fields."""
    from iotgen.settings.config import Config
    from iotgen.runs.batch import write_files

    with tempfile.TemporaryDirectory() as folder:
        config = Config(num_events=EVENTS, random_seed=20260601, anchor_time="2026-05-20T00:00:00Z",
                        output_dir=folder, output_format=fmt, chunk_size=10_000, **PROFILES[profile])
        (path,) = write_files(config, now=NOW).paths
        if path.is_file():
            return {"events": _file_digest(path)}
        manifest = json.loads((path / "_manifest.json").read_text())
        for volatile in ("created_at", "iotgen_version"):
            manifest.pop(volatile, None)
        digests = {"manifest": _digest(json.dumps(manifest, sort_keys=True).encode())}
        for item in sorted(path.iterdir()):
            if item.name != "_manifest.json":
                digests[item.name] = _file_digest(item)
        return digests


CASES = [(profile, fmt) for profile in PROFILES for fmt in FORMATS]


@pytest.mark.parametrize("profile, fmt", CASES, ids=[f"{p}-{f}" for p, f in CASES])
def test_seeded_output_is_unchanged_byte_for_byte(profile, fmt):
    golden = json.loads(GOLDEN.read_text())
    assert outputs(profile, fmt) == golden[f"{profile}/{fmt}"]


def test_the_fleet_with_scenarios_writes_labels():
    golden = json.loads(GOLDEN.read_text())
    assert "_labels.ndjson" in golden["fleet+scenarios/ndjson"] and "_labels.parquet" in golden["fleet+scenarios/parquet"]


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit(__doc__)
    GOLDEN.write_text(json.dumps({f"{p}/{f}": outputs(p, f) for p, f in CASES}, indent=2, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
