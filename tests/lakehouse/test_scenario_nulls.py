"""Tables take events with injected nulls (the data-quality scenarios), and give the nulls back."""

from __future__ import annotations

import pyarrow.compute as pc

from iotgen import generate_table
from iotgen.outputs.table_target import parse_target
from iotgen.settings.config import Config
from iotgen.spec.spec_file import generator_spec


def test_delta_and_iceberg_keep_scenario_nulls(tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("scenarios:\n  nulls:\n    temperature: 0.2\n    region: 0.1\n")
    config = Config(random_seed=3, num_events=3000, spec_file=str(spec_file), anchor_time="2026-06-01T00:00:00Z",
                    output_dir=str(tmp_path))
    events = generate_table(generator_spec(config), 3000)
    expected = {c: events.column(c).null_count for c in ("temperature", "region")}
    assert 450 < expected["temperature"] < 750 and 200 < expected["region"] < 400
    for target in (f"delta:{tmp_path / 'delta'}", "iceberg:iot.nulls"):
        table = parse_target(target, output_dir=str(tmp_path))
        table.write(events)
        read = table.read()
        assert read.num_rows == 3000, target
        assert {c: read.column(c).null_count for c in expected} == expected, target
        assert pc.count_distinct(read.column("event_id")).as_py() == 3000


def test_every_scenario_reaches_a_delta_variant_table_malformed_json_as_variant_strings(tmp_path, duck):
    """The example spec turns every scenario on (malformed json_column, schema drift, nulls ...): a Delta table
    with json_column as VARIANT takes the whole batch. A json_column that is not JSON is stored as a VARIANT
    string holding its text, as a JSON file holds it; every other one reads back as the same JSON value."""
    import json

    from lakehouse_support import ROOT

    from iotgen.runs.tables import write_table

    config = Config(random_seed=11, num_events=6000, spec_file=str(ROOT / "iotgen" / "spec" / "example_spec.yaml"),
                    anchor_time="2026-06-01T00:00:00Z", output_dir=str(tmp_path), output_format="delta")
    written = write_table(config)
    assert written.count == 6000
    events = generate_table(generator_spec(config), 6000)
    expected = {}
    for event_id, text in zip(events.column("event_id").to_pylist(), events.column("json_column").to_pylist()):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text  # not JSON: kept as a string
        expected.setdefault(event_id, []).append(value)
    rows = duck.sql(f"SELECT event_id, json_column::JSON::VARCHAR AS j FROM delta_scan('{written.target.location}')"
                    ).fetchall()
    got = {}
    for event_id, text in rows:
        got.setdefault(event_id, []).append(json.loads(text))
    assert len(rows) == 6000
    canonical = lambda values: sorted(json.dumps(v, sort_keys=True) for v in values)  # noqa: E731
    assert {k: canonical(v) for k, v in got.items()} == \
        {k: canonical(v) for k, v in expected.items()}
    assert sum(isinstance(v, str) for values in got.values() for v in values) >= 10  # the malformed ones
