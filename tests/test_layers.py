"""Imports go one way through the layers of docs/architecture.md: a module imports only from its own layer or the
layers below it (lazy imports inside functions included), and the emulator imports nothing else of iotgen's."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "iotgen"

#: Bottom to top. A module is in the first layer with a prefix it starts with.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("iotgen.base",)),
    ("settings", ("iotgen.settings",)),
    ("generation", ("iotgen.generation",)),
    ("spec", ("iotgen.spec",)),
    ("formats", ("iotgen.formats",)),
    ("outputs", ("iotgen.outputs",)),
    ("runs", ("iotgen.runs",)),
    ("faces", ("iotgen.faces", "iotgen")),
]
#: Upward imports that are deliberate, each with its reason. Keep this short.
ALLOWED_UPWARD: set[tuple[str, str]] = set()  # none today


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The iotgen modules a file imports, at the top or inside functions."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {t for t in found if t in modules and t != name}


def layer_of(module: str) -> int | None:
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    return None if best is None else best[0]


def test_every_module_has_a_layer_and_imports_go_down_only():
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if name.startswith("iotgen.emulator"):
            continue
        own = layer_of(name)
        assert own is not None, f"{name} has no layer: add it to LAYERS (and docs/architecture.md)"
        for target in sorted(imports(path)):
            if target.startswith("iotgen.emulator"):
                assert own >= layer_of("iotgen.runs"), f"{name} imports the emulator (runs and faces only)"
                continue
            other = layer_of(target)
            if other is not None and other > own and (name, target) not in ALLOWED_UPWARD:
                violations.append(f"{name} ({LAYERS[own][0]}) imports {target} ({LAYERS[other][0]})")
    assert not violations, "imports against the layers:\n" + "\n".join(violations)


def test_the_emulator_imports_nothing_else_of_iotgen():
    for path in sorted((PACKAGE / "emulator").rglob("*.py")):
        outside = {t for t in imports(path) if not t.startswith("iotgen.emulator")}
        assert not outside, f"{module_name(path)} imports {sorted(outside)}"


def test_the_allowed_exceptions_are_still_needed():
    for name, target in ALLOWED_UPWARD:
        path = ROOT / (name.replace(".", "/") + ".py")
        assert target in imports(path), f"{name} no longer imports {target}: remove it from ALLOWED_UPWARD"


def test_the_package_root_is_the_public_api_and_stays_light():
    """``from iotgen import ...`` gives every public name (imported when first used), and importing a subpackage
    such as the emulator loads nothing of the generator (no numpy)."""
    import subprocess
    import sys

    import iotgen

    for name in iotgen.__all__:
        assert getattr(iotgen, name) is not None, name
    probe = "import sys, iotgen.emulator; print('numpy' in sys.modules, 'iotgen.settings.config' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "False"]
