"""Formats: events <-> bytes (NDJSON/JSON bodies, Event Hubs messages, the VARIANT encoding of json_column, decoding
bodies back to columns with DuckDB). No destinations.
"""
