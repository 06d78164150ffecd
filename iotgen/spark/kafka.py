"""Event Hubs through its Kafka endpoint with Spark's built-in Kafka source: the route Databricks recommends.

Event Hubs namespaces of the Standard tier and above expose a Kafka endpoint at
``<namespace>.servicebus.windows.net:9093`` (SASL_SSL, mechanism PLAIN, user ``$ConnectionString``, the
connection string as the password). Databricks runtimes ship the Kafka source with a *shaded* Kafka client,
hence ``kafkashaded.org.apache.kafka...PlainLoginModule``; open-source Spark with the
``spark-sql-kafka-0-10`` package uses the unshaded class (``shaded=False``). The Basic tier has no Kafka
endpoint, and neither does the local emulator: use the ``eventhubs`` source there.

::

    from iotgen.spark.kafka import read_kafka_stream
    raw = read_kafka_stream(spark, dbutils.secrets.get("iot", "eventhub-connection-string"))
    events = iotgen.spark.parse.parse_events(raw)     # value -> typed columns + json_column VARIANT
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .source_eventhubs import parse_connection_string

KAFKA_PORT = 9093
SHADED_LOGIN_MODULE = "kafkashaded.org.apache.kafka.common.security.plain.PlainLoginModule"
LOGIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"


def kafka_options(connection_string: str, *, topic: str | None = None, starting_offsets: str = "earliest",
                  max_offsets_per_trigger: int | None = None, shaded: bool = True,
                  fail_on_data_loss: bool = True) -> dict[str, str]:
    """Options for ``spark.readStream.format("kafka")`` reading an event hub through its Kafka endpoint.

    ``topic`` is the event hub (default: the connection string's ``EntityPath``). The result holds the
    connection string (in ``kafka.sasl.jaas.config``): pass it to Spark, never print it.
    """
    fields = parse_connection_string(connection_string)
    if fields.get("usedevelopmentemulator", "").lower() == "true":
        raise ValueError("the Event Hubs emulator has no Kafka endpoint: read it with format('eventhubs') "
                         "(SPARK_SOURCE=eventhubs)")
    host = urlsplit(fields["endpoint"]).hostname or ""
    if not host or "." not in host:
        raise ValueError("the connection string's Endpoint must be sb://<namespace>.servicebus.windows.net/ for "
                         "the Kafka route")
    if "sharedaccesskey" not in fields and "sharedaccesssignature" not in fields:
        raise ValueError("the Kafka route needs a connection string with SharedAccessKey (or "
                         "SharedAccessSignature); for Azure AD use format('eventhubs')")
    topic = topic or fields.get("entitypath")
    if not topic:
        raise ValueError("EVENTHUB_NAME is required when the connection string has no EntityPath")
    if starting_offsets not in ("earliest", "latest") and not starting_offsets.lstrip().startswith("{"):
        raise ValueError(f"starting_offsets must be earliest, latest or Kafka's JSON form, got {starting_offsets!r}")
    password = connection_string.strip().replace('"', '\\"')
    module = SHADED_LOGIN_MODULE if shaded else LOGIN_MODULE
    options = {
        "kafka.bootstrap.servers": f"{host}:{KAFKA_PORT}",
        "subscribe": topic,
        "kafka.security.protocol": "SASL_SSL",
        "kafka.sasl.mechanism": "PLAIN",
        "kafka.sasl.jaas.config": f'{module} required username="$ConnectionString" password="{password}";',
        "kafka.request.timeout.ms": "60000",
        "kafka.session.timeout.ms": "30000",
        "startingOffsets": starting_offsets,
        "failOnDataLoss": "true" if fail_on_data_loss else "false",
    }
    if max_offsets_per_trigger:
        options["maxOffsetsPerTrigger"] = str(int(max_offsets_per_trigger))
    return options


def read_kafka_stream(spark: Any, connection_string: str, **options: Any) -> Any:
    """``spark.readStream.format("kafka")`` on the event hub's Kafka endpoint (see :func:`kafka_options`)."""
    return spark.readStream.format("kafka").options(**kafka_options(connection_string, **options)).load()
