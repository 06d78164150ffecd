"""Generation: pure, vectorised, deterministic from a seed (blocks of events, json_column, the fleet, scenarios and
their ground truth). No I/O, no globals. Imports base and settings.
"""
