"""Event Hubs through its Kafka endpoint with Spark's built-in Kafka source: the route Databricks recommends.

Event Hubs namespaces of the Standard tier and above expose a Kafka endpoint at
``<namespace>.servicebus.windows.net:9093``. Two ways to authenticate:

* a **Unity Catalog service credential** (Databricks Runtime 16.1+; what Databricks recommends on serverless and
  standard access mode): ``databricks.serviceCredential = <name>``, nothing secret in the options;
* the **connection string** (SASL_SSL, mechanism PLAIN, user ``$ConnectionString``, the connection string as the
  password). Databricks runtimes ship the Kafka source with a *shaded* Kafka client, hence
  ``kafkashaded.org.apache.kafka...PlainLoginModule``; open-source Spark with the ``spark-sql-kafka-0-10``
  package uses the unshaded class (``shaded`` follows the runtime: shaded on Databricks only).

The **local endpoint** (``iotgen emulator``, ``UseDevelopmentEmulator=true`` in the connection string) speaks
Kafka too, as Microsoft's Event Hubs emulator does: its host and port 9092 (or ``bootstrap_servers``, the Config's
KAFKA_BOOTSTRAP_SERVERS), SASL_PLAINTEXT with the same PLAIN login. That is how the Kafka route is tested here.

The client settings follow Azure's recommendations for the Kafka endpoint (``request.timeout.ms`` 60000,
``session.timeout.ms`` 30000, ``metadata.max.age.ms`` and ``connections.max.idle.ms`` 180000: Azure closes idle
connections after 240 s). The Basic tier has no Kafka endpoint: use the ``iotgen_eventhubs`` source there. This
module needs no Python data source support: it works on every runtime (Spark 3.5-based Databricks runtimes included)
where the Kafka source is on the classpath.

::

    from iotgen.runs.spark.kafka import read_kafka_stream
    raw = read_kafka_stream(spark, service_credential="eventhubs-cred", namespace="myns", topic="iot-events")
    events = iotgen.runs.spark.parse.parse_events(raw)     # value -> typed columns + json_column VARIANT
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ...base.errors import InputError
from ...outputs.eventhubs import SERVICE_BUS_SUFFIX, parse_connection_string
from ...outputs.kafka import kafka_endpoint
from ...settings.databricks import on_databricks

SHADED_LOGIN_MODULE = "kafkashaded.org.apache.kafka.common.security.plain.PlainLoginModule"
LOGIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
#: Azure's recommended client settings for the Event Hubs Kafka endpoint.
CLIENT_SETTINGS = {
    "kafka.request.timeout.ms": "60000",
    "kafka.session.timeout.ms": "30000",
    "kafka.metadata.max.age.ms": "180000",
    "kafka.connections.max.idle.ms": "180000",
}


def _host(namespace: str) -> str:
    """``myns`` / ``myns.servicebus.windows.net`` / ``sb://myns.servicebus.windows.net/`` -> the host name."""
    text = namespace.strip()
    host = urlsplit(text).hostname if "://" in text else text.strip("/")
    if not host:
        raise InputError(f"EVENTHUB_NAMESPACE must name a namespace (myns or myns.servicebus.windows.net), "
                         f"got {namespace!r}")
    return host if "." in host else f"{host}{SERVICE_BUS_SUFFIX}"


def kafka_options(connection_string: str | None = None, *, namespace: str | None = None, topic: str | None = None,
                  service_credential: str | None = None, starting_offsets: str = "earliest",
                  max_offsets_per_trigger: int | None = None, shaded: bool | None = None,
                  fail_on_data_loss: bool = True, bootstrap_servers: str | None = None) -> dict[str, str]:
    """Options for ``spark.readStream.format("kafka")`` reading an event hub through its Kafka endpoint.

    With ``service_credential`` (a Unity Catalog service credential's name) the namespace comes from
    ``namespace`` or the connection string's ``Endpoint`` and no key is used; else the connection string
    authenticates. ``topic`` is the event hub (default: the connection string's ``EntityPath``).
    ``bootstrap_servers`` overrides the endpoint's host:port (default ``<namespace>:9093``, or the local
    endpoint's ``<host>:9092``). ``shaded`` None: the Kafka client's login class of the runtime (shaded on
    Databricks). With a connection string the result holds it (in ``kafka.sasl.jaas.config``): pass it to Spark,
    never print it.
    """
    fields = parse_connection_string(connection_string) if connection_string else {}
    if not fields:
        if not namespace:
            raise InputError("the Kafka route needs EVENTHUB_CONNECTION_STRING or, with EVENTHUB_SERVICE_CREDENTIAL, "
                             "EVENTHUB_NAMESPACE")
        endpoint = kafka_endpoint({"endpoint": f"sb://{_host(namespace)}/"}, bootstrap_servers or "")
    else:
        endpoint = kafka_endpoint(fields, bootstrap_servers or "")
    host, local = endpoint.host, endpoint.local
    topic = topic or fields.get("entitypath")
    if not topic:
        raise InputError("EVENTHUB_NAME is required when the connection string has no EntityPath")
    if starting_offsets not in ("earliest", "latest") and not starting_offsets.lstrip().startswith("{"):
        raise InputError(f"starting_offsets must be earliest, latest or Kafka's JSON form, got {starting_offsets!r}")
    options = {"kafka.bootstrap.servers": endpoint.bootstrap, "subscribe": topic}
    if service_credential:
        if local:
            raise InputError("EVENTHUB_SERVICE_CREDENTIAL is for Azure Event Hubs, not the local endpoint")
        options["databricks.serviceCredential"] = service_credential
        options["databricks.serviceCredential.scope"] = f"https://{host}/.default"
    else:
        if not connection_string or ("sharedaccesskey" not in fields and "sharedaccesssignature" not in fields):
            raise InputError("the Kafka route needs a connection string with SharedAccessKey (or "
                             "SharedAccessSignature), or EVENTHUB_SERVICE_CREDENTIAL; for Azure AD use "
                             "format('iotgen_eventhubs')")
        password = connection_string.strip().replace('"', '\\"')
        module = SHADED_LOGIN_MODULE if (on_databricks() if shaded is None else shaded) else LOGIN_MODULE
        options.update({
            "kafka.security.protocol": endpoint.sasl_protocol,
            "kafka.sasl.mechanism": "PLAIN",
            "kafka.sasl.jaas.config": f'{module} required username="$ConnectionString" password="{password}";',
        })
    options.update(CLIENT_SETTINGS)
    options["startingOffsets"] = starting_offsets
    options["failOnDataLoss"] = "true" if fail_on_data_loss else "false"
    if max_offsets_per_trigger:
        options["maxOffsetsPerTrigger"] = str(int(max_offsets_per_trigger))
    return options


def kafka_source_available(spark: Any) -> bool:
    """True when the session has Spark's Kafka source (always on Databricks; elsewhere when
    ``spark-sql-kafka-0-10`` is on the classpath, e.g. SPARK_JARS). Planning a stream connects to nothing."""
    if on_databricks():
        return True
    try:
        probe = spark.readStream.format("kafka").option("kafka.bootstrap.servers", "127.0.0.1:9")
        probe.option("subscribe", "probe").load().schema  # noqa: B018 - resolves the source on classic and Connect
    except Exception:  # noqa: BLE001 - any failure to resolve means no Kafka source here
        return False
    return True


def read_kafka_stream(spark: Any, connection_string: str | None = None, **options: Any) -> Any:
    """``spark.readStream.format("kafka")`` on the event hub's Kafka endpoint (see :func:`kafka_options`)."""
    return spark.readStream.format("kafka").options(**kafka_options(connection_string, **options)).load()
