"""The README tells the truth: its set-up commands, schema table and configuration table match the code."""

from __future__ import annotations

from pathlib import Path

from iotgen.settings import config, schema

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


def test_every_test_docs_reliability_cites_exists():
    """docs/reliability.md promises guarantees by naming the tests that prove them: a renamed or deleted test
    must not leave a promise without proof."""
    import re

    root = Path(__file__).resolve().parents[1]
    text = (root / "docs" / "reliability.md").read_text(encoding="utf-8")
    cited = re.findall(r"`((?:[a-z_]+/)?test_[a-z_]+\.py)::(test_[a-z0-9_]+)`", text)
    last_file = None
    for match in re.finditer(r"`((?:[a-z_]+/)?test_[a-z_]+\.py)?::(test_[a-z0-9_]+)`", text):
        last_file = match.group(1) or last_file
        source = (root / "tests" / last_file).read_text(encoding="utf-8")
        assert f"def {match.group(2)}(" in source, f"docs/reliability.md cites {last_file}::{match.group(2)}"
    assert len(cited) >= 30
