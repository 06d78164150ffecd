"""Run the azure-eventhub SDK's own live tests against a local ``iotgen emulator`` (``make sdk-live-tests``).

1. Downloads the sdist of the *installed* azure-eventhub version from PyPI (``pip download --no-binary :all:``)
   into ``.sdk-live/`` (git-ignored) and extracts its ``tests/`` folder; nothing of the SDK's test code is kept
   in this repository.
2. Installs the one test plugin the suite needs beyond this project's dev requirements (pytest-asyncio, pinned in
   ``tests/sdk_live/requirements.txt``) into ``.sdk-live/site`` (the project's venv is left as it is).
3. Runs ``tests/livetest`` (sync and async) with the SDK's ``conftest.py`` replaced by the SAS-only fixtures of
   ``tests/sdk_live/sdk_live_fixtures.py``, which start the emulator on a free port.
4. Prints passed/failed/skipped with the reason of every skip; exit status 0 only if no applicable test failed.

Usage: ``python tests/sdk_live/run_sdk_live.py [PYTEST ARGS...]``, e.g. ``-k test_send``,
``livetest/synctests/test_send.py`` (paths relative to the SDK's tests folder) or ``--sleep False``
(the suite's own option: no 250 s wait for the service's idle time-out). Writes ``.sdk-live/summary.json``,
``.sdk-live/emulator.log`` and ``.sdk-live/pytest.log``.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = ROOT / ".sdk-live"
PACKAGE = "azure-eventhub"
#: pytest-xdist workers by default (``-n N`` overrides, ``-n 0`` runs in one process).
WORKERS = 8


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], check=True)


def sdk_tests(version: str) -> Path:
    """The ``tests`` folder of the sdist of ``azure-eventhub==version``, downloaded and extracted once."""
    target = WORK / f"azure_eventhub-{version}"
    if (target / "tests" / "livetest").is_dir():
        return target / "tests"
    dist = WORK / "dist"
    _pip("download", f"{PACKAGE}=={version}", "--no-binary", ":all:", "--no-deps", "-d", str(dist))
    sdist = dist / f"azure_eventhub-{version}.tar.gz"
    if not sdist.is_file():
        raise SystemExit(f"run_sdk_live: pip did not download {sdist.name} into {dist}")
    partial = WORK / f".azure_eventhub-{version}.partial"
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if m.name.startswith(f"azure_eventhub-{version}/tests/")]
        archive.extractall(partial, members=members, filter="data")
    (partial / f"azure_eventhub-{version}").rename(target)  # complete or absent under the final name
    partial.rmdir()
    return target / "tests"


def plugins() -> Path:
    """pytest-asyncio (pinned) installed into ``.sdk-live/site``, once."""
    site = WORK / "site"
    requirements = HERE / "requirements.txt"
    stamp = site / ".installed"
    if not stamp.is_file() or stamp.read_text() != requirements.read_text():
        _pip("install", "--no-deps", "--upgrade", "--target", str(site), "-r", str(requirements))
        stamp.write_text(requirements.read_text())
    return site


def main(argv: list[str]) -> int:
    version = importlib.metadata.version(PACKAGE)
    WORK.mkdir(exist_ok=True)
    tests = sdk_tests(version)
    site = plugins()
    for stale in WORK.glob("emulator*.log"):  # from a run with other workers
        stale.unlink()
    env = dict(os.environ)
    # The fixtures plugin, pytest-asyncio, and the SDK's test helpers (tracing_common) importable.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), str(site), str(tests), env.get("PYTHONPATH")]))
    env["SDK_LIVE_SUMMARY"] = str(WORK / "summary.json")
    env["SDK_LIVE_EMULATOR_LOG"] = str(WORK / "emulator.log")
    # Paths are relative to the SDK's tests folder: livetest/synctests/test_send.py::test_send_with_partition_key
    paths = [] if any(arg.startswith("livetest") for arg in argv) else ["livetest"]
    # The suite mostly sleeps (15 s waits for events): several workers, each with its own emulator.
    workers = [] if any(arg.startswith(("-n", "--numprocesses")) for arg in argv) else ["-n", str(WORKERS)]
    command = [sys.executable, "-m", "pytest", *paths, *workers,
               "-c", str(HERE / "sdk_live_pytest.ini"), "--rootdir", str(tests), "--noconftest", "-p", "sdk_live_fixtures",
               *argv]
    print(f"azure-eventhub {version}: running its live tests ({tests / 'livetest'}) against iotgen emulator",
          flush=True)
    started = time.monotonic()
    with open(WORK / "pytest.log", "wb") as log:
        process = subprocess.Popen(command, cwd=tests, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
            log.write(line)
        status = process.wait()
    print(f"run time: {time.monotonic() - started:.0f} s (log: {WORK / 'pytest.log'})", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
