"""The Spark matrix runs some of tests/spark in every leg and the rest once per mode (Makefile ``spark_leg``: the
Spark Connect run of pyspark 4.0 takes ``-m matrix`` only). A test whose outcome depends on the run's connectors
must carry the ``matrix`` mark, or that leg would stop testing Spark's own sinks under Spark Connect without a
word. This reads the test modules (no Spark needed) and fails on any such test left unmarked."""

from __future__ import annotations

import ast
from pathlib import Path

SPARK_TESTS = Path(__file__).parent / "spark"
#: what a test does when its outcome follows the run's connectors
CONNECTOR_SIGNS = ("connectors(", "kafka_source_available", "session_options()[\"jars\"]")
CONNECTOR_FIXTURES = {"kafka_source"}


def _marked(decorators: list[ast.expr]) -> bool:
    return any("mark.matrix" in ast.unparse(d) for d in decorators)


def _connector_dependent(function: ast.FunctionDef, source: str) -> bool:
    body = ast.get_source_segment(source, function) or ""
    arguments = {a.arg for a in function.args.args}
    return any(sign in body for sign in CONNECTOR_SIGNS) or bool(arguments & CONNECTOR_FIXTURES)


def unmarked_connector_tests(folder: Path = SPARK_TESTS) -> list[str]:
    found = []
    for path in sorted(folder.glob("test_*.py")):
        source = path.read_text()
        module = ast.parse(source)
        module_marked = any(isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "pytestmark"
                                                                  for t in node.targets)
                            and "mark.matrix" in ast.unparse(node.value) for node in module.body)
        for node in module.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                if _connector_dependent(node, source) and not (module_marked or _marked(node.decorator_list)):
                    found.append(f"{path.name}::{node.name}")
    return found


def test_every_test_that_depends_on_the_connectors_runs_in_every_leg():
    assert unmarked_connector_tests() == []


def test_the_check_finds_an_unmarked_connector_test(tmp_path):
    (tmp_path / "test_x.py").write_text(
        "import pytest\n\n"
        "def test_a(spark):\n    if 'delta' not in connectors(spark):\n        pytest.skip('no')\n\n"
        "@pytest.mark.matrix\ndef test_b(spark):\n    connectors(spark)\n\n"
        "def test_c(spark, kafka_source):\n    pass\n\n"
        "def test_d(spark):\n    pass\n")
    assert unmarked_connector_tests(tmp_path) == ["test_x.py::test_a", "test_x.py::test_c"]
