"""The README tells the truth: its set-up commands, schema table and configuration table match the code."""

from __future__ import annotations

from pathlib import Path

from iotgen import config, schema

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
CI = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text(encoding="utf-8")


def test_the_two_setup_commands_come_first_and_ci_runs_the_test_one():
    top = README.split("```bash", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in top.strip().splitlines()] == ["make demo", "make test"]
    assert "make test" in CI


def test_schema_table_is_current():
    assert schema.markdown_table() in README


def test_configuration_table_is_current():
    assert config.markdown_table() in README
