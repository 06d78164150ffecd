"""iotgen: synthetic IoT events with 23 fixed columns and a dynamic JSON column, fast and reproducible.

Layers, each importing only from those before it: ``config`` -> ``catalogs`` -> generator (``generator``,
``dynamic_json``, ``jsontext``, ``schema``; pure) -> ``sinks`` (files, Event Hubs, tables) -> ``pipelines``
-> faces (``cli``, ``iotgen_helpers``, notebooks).
"""

__version__ = "0.1.0"
