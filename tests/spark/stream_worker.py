"""A streaming job the kill tests run in their own process (and SIGKILL): Event Hubs -> Parquet and -> Delta.

Usage: ``python stream_worker.py OUT_DIR ENGINE`` with ``EVENTHUB_CONNECTION_STRING`` in the environment. The
queries read the hub with the ``iotgen_eventhubs`` source (a few events per micro-batch) and write through
:func:`iotgen.runs.spark.write.write_stream`. ENGINE ``embedded``: one query to a Parquet folder and one to a Delta
table through the embedded writer; ``spark``: Spark's own Delta streaming sink (``json_column`` VARIANT; the
session needs delta-spark, ``IOTGEN_SPARK_JARS``). Their checkpoints are under OUT_DIR. Runs until killed (or
300 s). The session (classic or Spark Connect, connectors) is the test run's (``spark_support.session_options``).
"""

from __future__ import annotations

import os
import sys


def queries(spark, out: str, connection_string: str, trigger: str, max_events: int | None, engine: str):
    from iotgen.runs.spark.write import write_stream

    def raw():
        reader = (spark.readStream.format("iotgen_eventhubs").option("connectionString", connection_string)
                  .option("startingPosition", "earliest").option("receiveTimeout", "30"))
        if max_events:
            reader = reader.option("maxEventsPerTrigger", str(max_events))
        return reader.load()

    if engine == "spark":
        return [write_stream(raw(), "delta", f"{out}/delta", f"{out}/checkpoint-delta", trigger=trigger,
                             engine="spark")]
    return [
        write_stream(raw(), "parquet", f"{out}/parquet", f"{out}/checkpoint-parquet", trigger=trigger),
        write_stream(raw(), "delta", f"{out}/delta", f"{out}/checkpoint-delta", trigger=trigger, engine="embedded"),
    ]


def main() -> int:
    from iotgen.runs.spark.session import get_spark

    from spark_support import session_options

    out, engine = sys.argv[1], sys.argv[2]
    spark = get_spark("iotgen-stream-worker", cores=2, **session_options())
    running = queries(spark, out, os.environ["EVENTHUB_CONNECTION_STRING"], "1 second", max_events=60, engine=engine)
    print("started", flush=True)
    spark.streams.awaitAnyTermination(300)
    for query in running:
        query.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
