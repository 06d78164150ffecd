"""Committed notebooks: every code cell executed in order (nbval skips cells that never ran), no errors,
no secrets in outputs, the Databricks install cell first, then a papermill ``parameters`` cell."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted([ROOT / "iot_data_generation.ipynb", *(ROOT / "notebooks").glob("*.ipynb")])
SECRET = re.compile(r"SharedAccessKey=(?!\*\*\*|<|\{|\$)[A-Za-z0-9+/=]{8,}")


def code_cells(path: Path) -> list[dict]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def test_the_main_notebook_and_the_suite_exist():
    assert (ROOT / "iot_data_generation.ipynb").exists()
    assert len(NOTEBOOKS) >= 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_code_cell_was_executed_in_order(path):
    counts = [c["execution_count"] for c in code_cells(path)]
    assert None not in counts, f"{path.name}: cells {[i for i, c in enumerate(counts) if c is None]} never ran"
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: not one top-to-bottom run: {counts}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_errors_and_no_secrets_in_outputs(path):
    for cell in code_cells(path):
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", f"{path.name}: {output.get('ename')}: {output.get('evalue')}"
            assert not SECRET.search(json.dumps(output)), f"{path.name}: an output holds a SharedAccessKey"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_databricks_install_cell_comes_first_then_the_parameters_cell(path):
    """Databricks: ``%pip install -r`` (the path right from this notebook's folder) and a Python restart run
    before anything else, and only there; then the papermill ``parameters`` cell."""
    first, second = code_cells(path)[:2]
    assert "databricks-install" in first.get("metadata", {}).get("tags", [])
    source = "".join(first["source"])
    assert 'if "DATABRICKS_RUNTIME_VERSION" in os.environ:' in source and "dbutils.library.restartPython()" in source
    requirements = re.search(r'run_line_magic\("pip", "install --quiet -r ([^"]+)"\)', source).group(1)
    assert (path.parent / requirements).resolve() == ROOT / "requirements.txt"
    assert first["outputs"] == []  # it did nothing here
    assert "parameters" in second.get("metadata", {}).get("tags", [])


FENCED = re.compile(r"```python\n(.*?)```", re.S)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_package_calls_shown_next_to_the_helpers_exist(path):
    """The "In your own code" snippets in markdown cells teach the package itself: each one is valid Python and
    every name it imports from iotgen exists (so a rename cannot leave a notebook teaching a stale call)."""
    import ast
    import importlib

    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    snippets = [s for c in cells if c["cell_type"] == "markdown" for s in FENCED.findall("".join(c["source"]))]
    if path.name == "iot_data_generation.ipynb":
        assert len(snippets) >= 9, "the main notebook shows the package call of each section"
    for snippet in snippets:
        for node in ast.walk(ast.parse(snippet)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("iotgen"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{path.name}: {node.module}.{alias.name} does not exist"
