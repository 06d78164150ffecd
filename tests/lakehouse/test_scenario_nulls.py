"""Tables take events with injected nulls (the data-quality scenarios), and give the nulls back."""

from __future__ import annotations

import pyarrow.compute as pc

from iotgen.config import Config
from iotgen.generator import GeneratorSpec, generate_table
from iotgen.pipelines.tables import parse_target


def test_delta_and_iceberg_keep_scenario_nulls(tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("scenarios:\n  nulls:\n    temperature: 0.2\n    region: 0.1\n")
    config = Config(random_seed=3, num_events=3000, spec_file=str(spec_file), anchor_time="2026-06-01T00:00:00Z",
                    output_dir=str(tmp_path))
    events = generate_table(GeneratorSpec.from_config(config), 3000)
    expected = {c: events.column(c).null_count for c in ("temperature", "region")}
    assert 450 < expected["temperature"] < 750 and 200 < expected["region"] < 400
    for target in (f"delta:{tmp_path / 'delta'}", "iceberg:iot.nulls"):
        table = parse_target(target, output_dir=str(tmp_path))
        table.write(events)
        read = table.read()
        assert read.num_rows == 3000, target
        assert {c: read.column(c).null_count for c in expected} == expected, target
        assert pc.count_distinct(read.column("event_id")).as_py() == 3000
