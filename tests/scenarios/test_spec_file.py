"""The spec file: the documented example, validation that names the field, precedence with parameters."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from iotgen.faces.cli import main
from iotgen.settings.config import Config
from iotgen.spec.spec_file import EXAMPLE_PATH, generator_spec, load_spec, parse_duration_ms

from scenario_support import ANCHOR

ROOT = Path(__file__).resolve().parents[2]


def test_example_is_printed_by_the_cli_and_is_valid(capsys):
    assert EXAMPLE_PATH == ROOT / "iotgen" / "spec" / "example_spec.yaml"
    assert main(["spec", "--example"]) == 0
    assert capsys.readouterr().out == EXAMPLE_PATH.read_text()
    spec = generator_spec(Config(spec_file=str(EXAMPLE_PATH), random_seed=1, anchor_time=ANCHOR))
    assert spec.fleet is not None and spec.fleet.device_count == 200
    scenarios = spec.scenarios
    assert all(getattr(scenarios, name) for name in (
        "late", "stuck", "drift", "spikes", "out_of_range", "clock_skew", "schema_drift", "malformed_json",
        "nulls", "duplicates", "replays", "out_of_order"))  # the example shows every scenario
    text = EXAMPLE_PATH.read_text()  # offline devices and drops too, commented: they change which events there are
    assert "\n  # offline: {rate:" in text and "\n  # dropped: {rate:" in text
    uncommented = text.replace("  # offline:", "  offline:").replace("  # dropped:", "  dropped:")
    on = generator_spec(Config(random_seed=1, anchor_time=ANCHOR), spec=yaml.safe_load(uncommented))
    assert on.scenarios.offline.buffer == 100 and on.scenarios.dropped.rate == 0.01


def test_the_console_script_checks_a_spec(tmp_path):
    done = subprocess.run([sys.executable, "-m", "iotgen.faces.cli", "spec", str(EXAMPLE_PATH), "--seed", "4"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = yaml.safe_load(done.stdout)
    assert summary["profile"] == "fleet" and summary["device_count"] == 200
    assert [c["operation"] for c in summary["schema_drift"]] == ["add_key", "change_type", "remove_key"]
    assert summary["events_per_hour"] > 0 and summary["first_event_at"].endswith("Z")


@pytest.mark.parametrize("text, message", [
    ("scenarios: {late: {rate: 1.5}}", "scenarios.late.rate must be a number >= 0.0 and <= 1.0, got 1.5"),
    ("scenarios: {duplicate: {rate: 0.1}}", "scenarios.duplicate is not a known field (did you mean duplicates?)"),
    ("fleet: {jitter: 0.95}", "fleet.jitter must be a number >= 0.0 and <= 0.9, got 0.95"),
    ("fleet: {interval_s: {toaster: 10}}", "fleet.interval_s.toaster is not in DEVICE_TYPES"),
    ("fleet: {climate: {marsbase: {temperature_c: -60}}}", "fleet.climate.marsbase is not in REGIONS"),
    ("fleet: {firmware: {rollouts: [{version: 4.0.0, start: soon}]}}",
     "fleet.firmware.rollouts[0].start must be a duration such as 90s"),
    ("fleet: {status: {error: broken}}", "fleet.status.error must be one of STATUS_VALUES"),
    ("scenarios: {nulls: {temperatur: 0.1}}", "scenarios.nulls.temperatur is not a column"),
    ("scenarios: {late: {rate: 0.1, distribution: gamma}}", "scenarios.late.distribution must be one of"),
    ("scenarios: {late: {rate: 0.1, min: 2h, max: 1h}}", "scenarios.late.min must be <= max"),
    ("scenarios: {stuck: {rate: 0.1, columns: [status]}}", "scenarios.stuck.columns must list columns among"),
    ("scenarios: {schema_drift: [{at: 1h, remove_key: no_such_key}]}",
     "scenarios.schema_drift[0].remove_key 'no_such_key' is not in IOT_KEY_POOL"),
    ("scenarios: {schema_drift: [{at: 1h, add_key: co2_ppm}]}", "is already in IOT_KEY_POOL"),
    ("scenarios: {schema_drift: [{at: 1h, change_type: door_open, to: float}]}",
     "scenarios.schema_drift[0].to float needs a key whose values are int"),
    ("scenarios: {schema_drift: [{remove_key: voc_ppb}]}", "scenarios.schema_drift[0].at is required"),
    ("scenarios: {duplicates: {rate: 0.3}, replays: {rate: 0.3}}", "must be <= 0.5"),
    ("catalogs: {regions: []}", "catalogs: REGIONS must not be empty"),
    ("profile: batch", "profile must be one of independent, fleet, got 'batch'"),
    ("scenarios: [late]", "scenarios must be a mapping of field names to values"),
    ("fleet: {device_count: 0}", "fleet.device_count must be an integer >= 1, got 0"),
    ("scenarios:\n  late: {rate: 0.1\n", "is not valid YAML at line"),
])
def test_a_bad_spec_is_one_error_naming_the_field(tmp_path, text, message):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        load_spec(path)
    assert message in str(error.value)
    assert str(error.value).startswith(f"SPEC_FILE {str(path)!r}")


def test_the_cli_reports_a_bad_spec_in_one_line_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenarios: {late: {rate: -1}}\n")
    out = tmp_path / "out"
    assert main(["generate", "--spec", str(bad), "-n", "10", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "scenarios.late.rate must be" in err and "Traceback" not in err
    assert not out.exists()
    assert main(["spec", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot be read" in capsys.readouterr().err


def test_parameters_win_over_the_spec(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("profile: fleet\nfleet: {device_count: 25}\ncatalogs: {regions: [uksouth]}\n")
    spec = generator_spec(Config.load(params={"SPEC_FILE": str(path), "RANDOM_SEED": 1}, env={}))
    assert spec.fleet.device_count == 25 and spec.catalogs.regions.values == ("uksouth",)
    spec = generator_spec(Config.load(env={"IOTGEN_SPEC_FILE": str(path), "IOTGEN_DEVICE_COUNT": "9"}))
    assert spec.fleet.device_count == 9
    assert generator_spec(Config(spec_file=str(path), profile="independent")).fleet is None
    assert generator_spec(Config(spec_file=str(path))).scenarios is None  # nothing configured: no scenarios


def test_times_are_durations_or_iso_dates():
    assert [parse_duration_ms(v) for v in ("500ms", "90s", "15m", "2h", "1d", "1h30m", 2.5, "1.5h")] == \
        [500, 90_000, 900_000, 7_200_000, 86_400_000, 5_400_000, 2500, 5_400_000]
    assert [parse_duration_ms(v) for v in ("2 weeks", "-1h", True, "h", "")] == [None] * 5
    spec = generator_spec(Config(random_seed=1, anchor_time=ANCHOR), spec={"scenarios": {"schema_drift": [
        {"at": "2026-01-02T06:00:00Z", "remove_key": "voc_ppb"}, {"at": "1d", "remove_key": "rpm"}]}})
    assert [c.at_ms for c in spec.scenarios.schema_drift] == [86_400_000, 86_400_000 + 6 * 3_600_000]


def test_a_relative_spec_file_is_found_from_the_project_whatever_the_working_directory(tmp_path, monkeypatch):
    """Serverless gives a notebook no fixed working directory: a relative SPEC_FILE is looked up in the working
    directory, then the project (the folder holding iotgen), then the package."""
    from iotgen.spec.spec_file import PROJECT_ROOT, locate

    monkeypatch.chdir(tmp_path)
    assert locate("iotgen/spec/example_spec.yaml") == PROJECT_ROOT / "iotgen" / "spec" / "example_spec.yaml"
    assert locate("example_spec.yaml") == PROJECT_ROOT / "iotgen" / "spec" / "example_spec.yaml"
    (tmp_path / "example_spec.yaml").write_text("profile: fleet\n")
    assert locate("example_spec.yaml") == tmp_path / "example_spec.yaml"  # the working directory's first
    assert str(locate("nowhere.yaml")) == "nowhere.yaml"
    from iotgen.spec.spec_file import load_spec

    assert load_spec("iotgen/spec/example_spec.yaml").profile == "fleet"


def test_a_field_left_out_takes_its_dataclass_default():
    """The reader repeats no default: a spec giving only rates builds exactly the dataclasses' defaults."""
    from iotgen.generation.fleet import Fleet
    from iotgen.generation.scenarios import ClockSkew, Drift, Duplicates, Lateness, OutOfOrder, Replays, Stuck

    scenarios = {"late": {"rate": 0.1}, "stuck": {"rate": 0.1}, "drift": {"rate": 0.1}, "duplicates": {"rate": 0.1},
                 "out_of_order": {"rate": 0.1}, "replays": {"rate": 0.1}, "clock_skew": {"device_fraction": 0.1}}
    spec = generator_spec(Config(random_seed=1, anchor_time=ANCHOR, device_count=50),
                          spec={"profile": "fleet", "scenarios": scenarios})
    assert spec.fleet == Fleet(device_count=50)
    s = spec.scenarios
    assert (s.late, s.stuck, s.drift, s.duplicates, s.out_of_order, s.replays, s.clock_skew) == (
        Lateness(0.1), Stuck(0.1), Drift(0.1), Duplicates(0.1), OutOfOrder(0.1), Replays(0.1), ClockSkew(0.1))
    for distribution in ("exponential", "lognormal", "uniform"):  # the scale's default follows the distribution
        late = {"late": {"rate": 0.1, "distribution": distribution}}
        built = generator_spec(Config(random_seed=1, anchor_time=ANCHOR), spec={"scenarios": late}).scenarios.late
        assert built == Lateness(0.1, distribution)
    assert Lateness(0.1, "lognormal").scale_ms == 60_000 and Lateness(0.1).scale_ms == 120_000
