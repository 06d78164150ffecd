"""Runs: generation and outputs driven together (a batch with workers, a paced stream, the exactly-once ingest,
tables) and, in spark/, the same on Spark (data sources, parsing, writers).
"""
