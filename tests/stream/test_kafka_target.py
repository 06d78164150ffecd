"""Where the Kafka producer and ingest connect: Event Hubs' Kafka endpoint from the connection string, the local
emulator's, or any Kafka from the KAFKA_* parameters (no I/O here)."""

from __future__ import annotations

import re

import pytest

from iotgen.settings.config import Config
from iotgen.outputs.kafka import KafkaConfigError, kafka_target_from_config

AZURE = ("Endpoint=sb://myns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=abc123=;"
         "EntityPath=iot-events")
LOCAL = ("Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=k;"
         "UseDevelopmentEmulator=true;EntityPath=hub-1")


def _config(env: dict, **params) -> Config:
    return Config.load(env=env).replace(**params)


def test_event_hubs_kafka_endpoint_from_the_connection_string():
    target = kafka_target_from_config(_config({"EVENTHUB_CONNECTION_STRING": AZURE}))
    assert (target.bootstrap, target.topic, target.security_protocol, target.sasl_mechanism,
            target.sasl_username) == ("myns.servicebus.windows.net:9093", "iot-events", "SASL_SSL", "PLAIN",
                                      "$ConnectionString")
    settings = target.client_settings()
    assert settings["sasl.password"] == AZURE and settings["metadata.max.age.ms"] == 180_000
    assert "abc123" not in repr(target) and "abc123" not in target.description
    assert target.description == "kafka://myns.servicebus.windows.net:9093/iot-events (Event Hubs, SASL_SSL PLAIN)"
    # the table offsets of the ingest: the same identity as the AMQP side (namespace host, event hub)
    assert (target.namespace, target.eventhub) == ("myns.servicebus.windows.net:9093", "iot-events")


def test_local_emulator_from_its_connection_string():
    target = kafka_target_from_config(_config({"EVENTHUB_CONNECTION_STRING": LOCAL}))
    assert (target.bootstrap, target.topic, target.security_protocol, target.kind) == (
        "127.0.0.1:9092", "hub-1", "SASL_PLAINTEXT", "local emulator")
    moved = kafka_target_from_config(_config({"EVENTHUB_CONNECTION_STRING": LOCAL},
                                             kafka_bootstrap_servers="127.0.0.1:19092"))
    assert moved.bootstrap == "127.0.0.1:19092" and moved.security_protocol == "SASL_PLAINTEXT"


def test_any_kafka_plaintext_scram_and_tls():
    plain = kafka_target_from_config(Config(kafka_bootstrap_servers="a:9092,b:9092", kafka_topic="t"))
    assert (plain.security_protocol, plain.kind) == ("PLAINTEXT", "Kafka")
    assert "sasl.username" not in plain.client_settings()
    scram = kafka_target_from_config(_config({"KAFKA_SASL_PASSWORD": "pw"}, kafka_bootstrap_servers="a:9093",
                                             kafka_topic="t", kafka_sasl_username="u",
                                             kafka_sasl_mechanism="scram-sha-512", kafka_ssl_ca_location="/ca.pem"))
    settings = scram.client_settings()
    assert (settings["security.protocol"], settings["sasl.mechanism"], settings["sasl.username"],
            settings["sasl.password"], settings["ssl.ca.location"]) == ("SASL_SSL", "SCRAM-SHA-512", "u", "pw",
                                                                         "/ca.pem")


@pytest.mark.parametrize("env, params, message", [
    ({}, {}, "KAFKA_BOOTSTRAP_SERVERS must be set"),
    ({}, {"kafka_bootstrap_servers": "a:1"}, "KAFKA_TOPIC must be set"),
    ({}, {"kafka_bootstrap_servers": "a", "kafka_topic": "t"}, "KAFKA_BOOTSTRAP_SERVERS must be host:port"),
    ({}, {"kafka_bootstrap_servers": "a:1", "kafka_topic": "t", "kafka_security_protocol": "sasl_ssl"},
     "needs KAFKA_SASL_USERNAME and the KAFKA_SASL_PASSWORD environment variable"),
    ({"EVENTHUB_CONNECTION_STRING": "Endpoint=http://x;SharedAccessKey=1"}, {}, "must have Endpoint=sb://"),
])
def test_missing_or_wrong_settings_name_the_parameter(env, params, message):
    with pytest.raises(KafkaConfigError, match=message):
        kafka_target_from_config(_config(env, **params))


def test_the_sasl_password_is_a_secret_from_its_environment_variable_only():
    config = Config.load(env={"KAFKA_SASL_PASSWORD": "s3cret"})
    assert config.kafka_sasl_password.reveal() == "s3cret" and "s3cret" not in repr(config)
    with pytest.raises(ValueError, match="KAFKA_SASL_PASSWORD must not be set in the environment"):
        Config.load(env={"IOTGEN_KAFKA_SASL_PASSWORD": "s3cret"})


KEY = "SharedAccessKeyName=a;SharedAccessKey=TOPSECRET;EntityPath=h"


@pytest.mark.parametrize("connection, bootstrap, expected", [
    (f"Endpoint=sb://myns.servicebus.windows.net/;{KEY}", "", ("myns.servicebus.windows.net:9093", "SASL_SSL")),
    (f"Endpoint=amqps://MyNs.servicebus.windows.net;{KEY}", "", ("MyNs.servicebus.windows.net:9093", "SASL_SSL")),
    (f"Endpoint=sb://127.0.0.1:5672;{KEY};UseDevelopmentEmulator=true", "", ("127.0.0.1:9092", "SASL_PLAINTEXT")),
    (f"Endpoint=sb://localhost;{KEY};UseDevelopmentEmulator=true", "h:1", ("h:1", "SASL_PLAINTEXT")),
    (f"Endpoint=sb://myns.servicebus.windows.net/;{KEY}", "b1:9093,b2:9093", ("b1:9093,b2:9093", "SASL_SSL")),
    (f"Endpoint=sb://myns/;{KEY}", "", "must have Endpoint=sb://<namespace>.servicebus.windows.net/"),
    (f"Endpoint=https://myns.servicebus.windows.net/;{KEY}", "", "must have Endpoint=sb://"),
    (f"Endpoint=sb://myns.servicebus.windows.net/;{KEY}", "b1", "KAFKA_BOOTSTRAP_SERVERS must be host:port"),
])
def test_the_producer_and_sparks_kafka_route_find_the_same_endpoint(connection, bootstrap, expected):
    """One reading of the connection string (iotgen.outputs.kafka.kafka_endpoint) for the producer and ingest
    (kafka_target_from_config) and for Spark's Kafka source (kafka_options): the same host:port and security
    protocol, or the same one-line error (without the key)."""
    from iotgen.runs.spark.kafka import kafka_options

    config = _config({"EVENTHUB_CONNECTION_STRING": connection}, kafka_bootstrap_servers=bootstrap)
    if isinstance(expected, str):
        for read in (lambda: kafka_target_from_config(config),
                     lambda: kafka_options(connection, bootstrap_servers=bootstrap)):
            with pytest.raises(KafkaConfigError, match=re.escape(expected)) as error:
                read()
            assert "TOPSECRET" not in str(error.value)
        return
    target = kafka_target_from_config(config)
    options = kafka_options(connection, bootstrap_servers=bootstrap)
    assert (target.bootstrap, target.security_protocol) == expected
    assert (options["kafka.bootstrap.servers"], options["kafka.security.protocol"]) == expected


def test_murmur2_partitions_as_kafka_and_null_keys_apart():
    """Kafka's own murmur2 test vectors (its UtilsTest), and a partition for each key; a null key gets -1 (the
    producer spreads those). The placement itself is checked against librdkafka in test_stream_kafka.py."""
    import pyarrow as pa

    from iotgen.outputs.kafka import murmur2, murmur2_partitions

    vectors = {"21": -973932308, "foobar": -790332482, "a-little-bit-long-string": -985981536,
               "a-little-bit-longer-string": -1486304829, "abc": 479470107,
               "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971}
    hashes = murmur2(pa.array([k.encode() for k in vectors], pa.binary())).tolist()
    assert [h - 2**32 if h >= 2**31 else h for h in hashes] == list(vectors.values())
    keys = pa.array(["21", None, "foobar", "21"])
    assert murmur2_partitions(keys, 7).tolist() == [(-973932308 & 0x7FFFFFFF) % 7, -1,
                                                    (-790332482 & 0x7FFFFFFF) % 7, (-973932308 & 0x7FFFFFFF) % 7]
    assert murmur2_partitions(pa.array([None, None], pa.string()), 3).tolist() == [-1, -1]
