"""Every notebook's papermill ``parameters`` cell is annotated as papermill reads it: ``papermill --help-notebook``
lists every parameter of the cell, in order, with the type of its Config parameter and its comment."""

from __future__ import annotations

import ast
import json
import types
import typing
from pathlib import Path

import papermill
import pytest

from iotgen.settings.config import Config

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = [ROOT / "iot_data_generation.ipynb", *sorted((ROOT / "notebooks").glob("*.ipynb"))]
#: Parameters of the notebooks that are not Config's (they steer the notebook itself), with their types.
NOTEBOOK_ONLY = {"CONFIG_FILE": "Optional[str]", "LAKEHOUSE_DIR": "str", "SEND_BAD_MESSAGES": "bool"}
#: Config types given as text in a notebook: ANCHOR_TIME in ISO 8601, the connection string before it is a Secret.
AS_TEXT = {"anchor_time", "eventhub_connection_string"}


def expected_type(name: str) -> str:
    """The annotation a parameters-cell variable carries: its Config parameter's type (``Optional[...]`` where
    None is allowed), else the notebook's own parameter's."""
    if name in NOTEBOOK_ONLY:
        return NOTEBOOK_ONLY[name]
    field = name.lower()
    hint = typing.get_type_hints(Config)[field]
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    optional = type(None) in args
    (base,) = [a for a in args if a is not type(None)]
    text = "str" if field in AS_TEXT else base.__name__
    return f"Optional[{text}]" if optional else text


def parameters_cell(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    (cell,) = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    return "".join(cell["source"])


def assigned(source: str) -> list[tuple[str, str | None]]:
    """(name, annotation) of every assignment in the cell, in order."""
    out = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign):
            out.append((node.target.id, ast.unparse(node.annotation)))
        elif isinstance(node, ast.Assign):
            out.extend((t.id, None) for t in node.targets)
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_lists_every_parameter_with_its_type_and_comment(path):
    cell = assigned(parameters_cell(path))
    inferred = papermill.inspect_notebook(str(path))
    assert [name for name, _ in cell] == list(inferred), "papermill must see every variable of the cell, in order"
    for name, annotation in cell:
        assert annotation == expected_type(name), f"{path.name}: {name} is annotated {annotation}"
        assert inferred[name]["inferred_type_name"] == annotation
        assert inferred[name]["help"], f"{path.name}: {name} has no comment"


def test_the_annotated_cell_runs_and_gives_the_defaults_papermill_shows():
    """The annotations are valid Python (the cell runs as is) and papermill's defaults are the cell's values."""
    source = parameters_cell(NOTEBOOKS[0])
    namespace: dict = {}
    exec(compile(source, "parameters", "exec"), namespace)  # noqa: S102 - the project's own notebook cell
    inferred = papermill.inspect_notebook(str(NOTEBOOKS[0]))
    for name, info in inferred.items():
        assert ast.literal_eval(info["default"]) == namespace[name]
