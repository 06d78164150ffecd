"""A streaming job the kill test runs in its own process (and SIGKILLs): Event Hubs -> Parquet and -> Delta.

Usage: ``python stream_worker.py OUT_DIR`` with ``EVENTHUB_CONNECTION_STRING`` in the environment. Two queries read
the hub with the ``eventhubs`` source (a few events per micro-batch) and write through
:func:`iotgen.spark.write.write_stream`: one to a Parquet folder, one to a Delta table through the embedded
writer. Their checkpoints are under OUT_DIR. Runs until killed (or 300 s).
"""

from __future__ import annotations

import os
import sys


def queries(spark, out: str, connection_string: str, trigger: str, max_events: int | None):
    from iotgen.spark.write import write_stream

    def raw():
        reader = (spark.readStream.format("eventhubs").option("connectionString", connection_string)
                  .option("startingPosition", "earliest").option("receiveTimeout", "30"))
        if max_events:
            reader = reader.option("maxEventsPerTrigger", str(max_events))
        return reader.load()

    return [
        write_stream(raw(), "parquet", f"{out}/parquet", f"{out}/checkpoint-parquet", trigger=trigger),
        write_stream(raw(), "delta", f"{out}/delta", f"{out}/checkpoint-delta", trigger=trigger, engine="embedded"),
    ]


def main() -> int:
    from iotgen.spark.session import get_spark

    out = sys.argv[1]
    spark = get_spark("iotgen-stream-worker", cores=2)
    running = queries(spark, out, os.environ["EVENTHUB_CONNECTION_STRING"], "1 second", max_events=60)
    print("started", flush=True)
    spark.streams.awaitAnyTermination(300)
    for query in running:
        query.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
