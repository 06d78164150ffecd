"""The example spec ships in the wheel: ``iotgen spec --example`` works from an installed package, far from the
source tree (it is package data, ``iotgen/spec/example_spec.yaml``, read with importlib.resources)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from iotgen.settings.config import Config
from iotgen.spec.spec_file import EXAMPLE_PATH, generator_spec

from scenario_support import ANCHOR

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def test_the_example_spec_is_package_data():
    assert EXAMPLE_PATH == ROOT / "iotgen" / "spec" / "example_spec.yaml" and EXAMPLE_PATH.is_file()
    assert not (ROOT / "docs" / "example_spec.yaml").exists()  # one copy of the text


def test_iotgen_spec_example_works_from_an_installed_wheel(tmp_path):
    """Build the wheel (offline, with this environment's setuptools), install it into a folder of its own and
    run its console script from outside the repository."""
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools in this environment")
    source = tmp_path / "source"  # a copy: building in the repository would leave build/ and *.egg-info there
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "iotgen_helpers.py"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "iotgen", source / "iotgen", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist, site, elsewhere = tmp_path / "dist", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
         str(source), "-w", str(dist), cwd=tmp_path)
    (wheel,) = dist.glob("iotgen-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "iotgen/spec/example_spec.yaml" in names and not any(n.startswith("docs/") for n in names)
    _run(sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", "--target", str(site),
         str(wheel), cwd=tmp_path)
    # The installed copy comes first on the path (this environment's editable install comes after it).
    env = {**os.environ, "PYTHONPATH": str(site)}
    found = _run(sys.executable, "-c", "import iotgen.spec.spec_file as s; print(s.__file__)", cwd=elsewhere, env=env)
    assert Path(found.stdout.strip()).is_relative_to(site)

    printed = _run(str(site / "bin" / "iotgen"), "spec", "--example", cwd=elsewhere, env=env).stdout
    assert printed == EXAMPLE_PATH.read_text(encoding="utf-8")
    data = yaml.safe_load(printed)
    spec = generator_spec(Config(random_seed=1, anchor_time=ANCHOR), spec=data)
    assert spec.fleet is not None and spec.fleet.device_count == 200 and spec.scenarios is not None
    # ... and the printed text, saved to a file, is a valid SPEC_FILE for the installed package's CLI.
    (elsewhere / "my_spec.yaml").write_text(printed, encoding="utf-8")
    summary = _run(str(site / "bin" / "iotgen"), "spec", "my_spec.yaml", "--seed", "3", cwd=elsewhere, env=env)
    assert yaml.safe_load(summary.stdout)["profile"] == "fleet"
