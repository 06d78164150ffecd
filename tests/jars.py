"""Where the JVM artifacts of deps/maven/<bundle>/pom.xml are (``make jars`` copies them to .jars/<bundle>/)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def jar_dir(bundle: str) -> Path:
    """The folder of ``bundle``'s jars; a clear error naming the command that fetches them when it is missing."""
    folder = ROOT / ".jars" / bundle
    if not (folder / ".done").exists():
        raise FileNotFoundError(f"{folder} is missing: run `make jars` (resolves deps/maven/{bundle}/pom.xml "
                                "from Maven Central)")
    return folder


def jars(bundle: str) -> list[Path]:
    """Every jar of ``bundle``, sorted."""
    return sorted(jar_dir(bundle).glob("*.jar"))
