"""Pipelines: generator + sinks put together (batch files, streaming, ingest, Spark)."""
