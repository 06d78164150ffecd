"""iotgen: synthetic IoT events with 23 fixed columns and a dynamic JSON column, fast and reproducible.

The public API, importable from here (``from iotgen import Config, generate_events``):

- :class:`Config` (every parameter), :class:`Catalogs`, :class:`InputError` (bad input, one line);
- :func:`generator_spec` (Config + YAML spec -> :class:`GeneratorSpec`, the one path);
- :func:`generate_events`, :func:`generate_table`: events of a Config or a spec, chunk by chunk or whole;
- :func:`generate_fixed_row`, :func:`generate_dynamic_json`: the seed notebook's per-row functions;
- :func:`registry_snapshot`, :func:`registry_history`, :func:`change_feed`: the device registry of a fleet spec
  (``DEVICE_REGISTRY``), its SCD2 history and its change feed (docs/registry.md).

The package is laid out by layer, each importing only from those below it (docs/architecture.md, checked by
tests/test_layers.py): ``base`` -> ``settings`` -> ``generation`` -> ``spec`` -> ``formats`` -> ``outputs`` ->
``runs`` (``runs.spark`` on Spark) -> ``faces`` (the CLI, this module's functions; ``iotgen_helpers`` and the
notebooks beside the package). ``emulator`` (the local Event Hubs endpoint) imports nothing else of iotgen's.
Names are imported when first used, so ``import iotgen.emulator`` loads no numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Iterator

from .base.version import __version__

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from .base.errors import InputError
    from .generation.devices import change_feed, registry_history, registry_snapshot
    from .generation.generator import GeneratorSpec, generate_dynamic_json
    from .settings.catalogs import Catalogs
    from .settings.config import Config
    from .spec.spec_file import generator_spec

_LAZY = {
    "Config": "iotgen.settings.config",
    "Catalogs": "iotgen.settings.catalogs",
    "InputError": "iotgen.base.errors",
    "GeneratorSpec": "iotgen.generation.generator",
    "generate_dynamic_json": "iotgen.generation.generator",
    "generator_spec": "iotgen.spec.spec_file",
    "registry_snapshot": "iotgen.generation.devices",
    "registry_history": "iotgen.generation.devices",
    "change_feed": "iotgen.generation.devices",
}

__all__ = ["__version__", "Config", "Catalogs", "InputError", "GeneratorSpec", "generator_spec", "generate_events",
           "generate_table", "generate_fixed_row", "generate_dynamic_json", "registry_snapshot", "registry_history",
           "change_feed"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'iotgen' has no attribute {name!r}")


def _spec_and_defaults(spec: Any, catalogs: Any) -> "tuple[GeneratorSpec, Config]":
    from .base.errors import InputError
    from .generation.generator import GeneratorSpec
    from .settings.config import Config
    from .spec.spec_file import generator_spec

    if isinstance(spec, GeneratorSpec):
        if catalogs is not None:
            raise InputError("catalogs can only be given with a Config; a GeneratorSpec already holds its catalogs")
        return spec, Config()
    config = spec if spec is not None else Config()
    return generator_spec(config, catalogs), config


def generate_events(spec: "GeneratorSpec | Config | None" = None, num_events: int | None = None, *,
                    chunk_size: int | None = None, catalogs: "Catalogs | None" = None, **kwargs: Any) -> Iterator[Any]:
    """Yield events as Arrow record batches (``as_pandas=True``: DataFrames) from a :class:`GeneratorSpec`, or
    from a :class:`Config` (None: the defaults) whose spec :func:`generator_spec` builds (with ``catalogs``, when
    given) and whose ``NUM_EVENTS`` and ``CHUNK_SIZE`` are the defaults of ``num_events`` and ``chunk_size``.
    Other arguments (``start``, ``as_pandas``, ``json_column``): :func:`iotgen.generation.generator.generate_events`."""
    from .generation import generator

    spec, defaults = _spec_and_defaults(spec, catalogs)
    return generator.generate_events(spec, defaults.num_events if num_events is None else num_events,
                                     chunk_size=defaults.chunk_size if chunk_size is None else chunk_size, **kwargs)


def generate_table(spec: "GeneratorSpec | Config | None" = None, num_events: int | None = None,
                   **kwargs: Any) -> "pa.Table":
    """All events of :func:`generate_events` (same arguments) as one Arrow table."""
    from .generation import generator

    batches = list(generate_events(spec, num_events, **kwargs))
    return generator.table_of(batches)


def generate_fixed_row(rng: "np.random.Generator | int | None" = None, *, config: "Config | None" = None,
                       **catalog_overrides: Any) -> dict[str, Any]:
    """One event's 23 fixed columns as a dict of JSON values (timestamps as ISO 8601 text), as in the seed
    notebook. ``rng``: a numpy Generator, a seed, or None (fresh). ``config``: the window and keys (default: the
    defaults with seed 0). Catalog overrides: ``device_types``, ``status_values``, ``regions``, ``zones``,
    ``models``, ``sources``, ``envs``."""
    from .base.errors import InputError
    from .generation import generator
    from .settings.catalogs import CATEGORICAL_CATALOGS, Catalogs
    from .settings.config import Config
    from .spec.spec_file import generator_spec

    unknown = set(catalog_overrides) - set(CATEGORICAL_CATALOGS)
    if unknown:
        raise InputError(f"unknown catalog override(s) {sorted(unknown)}; allowed: {', '.join(CATEGORICAL_CATALOGS)}")
    spec = generator_spec(config or Config(random_seed=0), Catalogs.build(**catalog_overrides))
    return generator.generate_fixed_row(spec, rng)
