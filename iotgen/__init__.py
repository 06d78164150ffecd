"""iotgen: synthetic IoT events with 23 fixed columns and a dynamic JSON column, fast and reproducible.

The package is laid out by layer, each importing only from those below it (docs/architecture.md, checked by
tests/test_layers.py): ``base`` -> ``settings`` -> ``generation`` -> ``spec`` -> ``formats`` -> ``outputs`` ->
``runs`` (``runs.spark`` on Spark) -> ``faces`` (the CLI; ``iotgen_helpers`` and the notebooks beside the package).
``emulator`` (the local Event Hubs endpoint) imports nothing else of iotgen's.
"""

from .base.version import __version__

__all__ = ["__version__"]
