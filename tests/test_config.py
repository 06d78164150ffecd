"""Config: defaults, merge precedence, validation messages, secrets."""

from __future__ import annotations

import datetime as dt
import logging

import re

import pytest

from iotgen.base.errors import InputError
from iotgen.settings.config import PARAMETERS, Config, Secret, parameter_docs

SEED_PARAMETERS = (
    "NUM_EVENTS MIN_KEYS MAX_KEYS OUTPUT_DIR SAVE_JSON OUTPUT_FILENAME_PREFIX RANDOM_SEED BASE_TIME_DAYS_AGO "
    "TIME_SPREAD_HOURS EVENTHUB_NAMESPACE EVENTHUB_NAME EVENTHUB_CONNECTION_STRING BATCH_SIZE SLEEP_INTERVAL_SEC "
    "CATALOG_VOLUME_PATH DELTA_TABLE_NAME CHECKPOINT_DIR ICEBERG_TABLE_NAME"
).split()
CONNECTION = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=c2VjcmV0a2V5;EntityPath=hub"


def test_every_seed_parameter_is_a_config_parameter():
    assert set(SEED_PARAMETERS) <= set(PARAMETERS)
    config = Config()
    assert config.num_events == 1000 and (config.min_keys, config.max_keys) == (5, 25)
    assert config.output_dir == "output" and config.output_format == "ndjson"


def test_precedence_file_env_params_cli(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("NUM_EVENTS: 10\nmin_keys: 2\nMAX_KEYS: 9\nRANDOM_SEED: 1\nOUTPUT_DIR: from-file\n")
    env = {"IOTGEN_NUM_EVENTS": "20", "IOTGEN_MIN_KEYS": "3", "IOTGEN_OUTPUT_DIR": "from-env"}
    config = Config.load(config_file=path, env=env, params={"NUM_EVENTS": 30, "OUTPUT_DIR": None},
                         cli={"NUM_EVENTS": "40"})
    assert config.num_events == 40      # CLI beats notebook params
    assert config.min_keys == 3         # env beats file
    assert config.max_keys == 9         # file beats default
    assert config.output_dir == "from-env"  # None means "not given"
    assert config.random_seed == 1
    assert Config.load(config_file=path, env=env, params={"NUM_EVENTS": 30}).num_events == 30


def test_env_values_are_parsed():
    config = Config.load(env={"IOTGEN_SAVE_JSON": "false", "IOTGEN_SLEEP_INTERVAL_SEC": "0.25",
                              "IOTGEN_RANDOM_SEED": "none", "IOTGEN_ANCHOR_TIME": "2026-01-02T03:04:05Z"})
    assert config.save_json is False and config.sleep_interval_sec == 0.25 and config.random_seed is None
    assert config.anchor_time == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("changes, message", [
    ({"num_events": -1}, "NUM_EVENTS must be an integer from 0 to 10^12, got -1"),
    ({"num_events": 2.5}, "NUM_EVENTS must be an integer"),
    ({"num_events": True}, "NUM_EVENTS must be an integer"),
    ({"num_events": "many"}, "NUM_EVENTS must be an integer"),
    ({"min_keys": 9, "max_keys": 3}, "MIN_KEYS must be <= MAX_KEYS"),
    ({"min_keys": 0}, "MIN_KEYS must be an integer from 1 to 1000"),
    ({"output_format": "xml"}, "OUTPUT_FORMAT must be one of ndjson, json, parquet, csv, delta, iceberg"),
    ({"output_dir": ""}, "OUTPUT_DIR must be a non-empty string"),
    ({"output_filename_prefix": "../x"}, "OUTPUT_FILENAME_PREFIX must be a plain file-name prefix"),
    ({"time_spread_hours": 0}, "TIME_SPREAD_HOURS must be a number > 0 and <= 876000"),
    ({"base_time_days_ago": -2}, "BASE_TIME_DAYS_AGO must be a number >= 0 and <= 36500"),
    ({"batch_size": 0}, "BATCH_SIZE must be an integer from 1 to 10^6"),
    ({"workers": 0}, "WORKERS must be an integer from 1 to 256"),
    ({"random_seed": -3}, "RANDOM_SEED must be an integer from 0 to 2^64 - 1"),
    ({"save_json": "maybe"}, "SAVE_JSON must be true or false"),
    ({"anchor_time": "yesterday"}, "ANCHOR_TIME must be an ISO 8601 date-time"),
    # every number has a range the code can honour (issue 13)
    ({"num_events": 10**30}, "NUM_EVENTS must be an integer from 0 to 10^12, got 10000000000"),
    ({"num_sensors": 10**30}, "NUM_SENSORS must be an integer from 1 to 10^9"),
    ({"device_count": 10**8}, "DEVICE_COUNT must be an integer from 1 to 10^7"),
    ({"time_spread_hours": 1e300}, "TIME_SPREAD_HOURS must be a number > 0 and <= 876000, got 1e+300"),
    ({"base_time_days_ago": "1e300"}, "BASE_TIME_DAYS_AGO must be a number >= 0 and <= 36500"),
    ({"base_time_days_ago": float("nan")}, "BASE_TIME_DAYS_AGO must be a number"),
    ({"rate_events_per_sec": float("inf")}, "RATE_EVENTS_PER_SEC must be a number > 0 and <= 10^8"),
    ({"chunk_size": 10**9}, "CHUNK_SIZE must be an integer from 1 to 4194304"),
    ({"anchor_time": "0001-01-01T00:00:00Z"}, "ANCHOR_TIME must be from 1971-01-01 to 9998-01-01 (UTC)"),
    ({"anchor_time": "9999-12-31T23:59:59Z"}, "ANCHOR_TIME must be from 1971-01-01 to 9998-01-01 (UTC)"),
    ({"anchor_time": "0001-01-01T00:00:00+05:00"}, "ANCHOR_TIME must be from 1971-01-01"),
    ({"anchor_time": "1980-01-01T00:00:00Z", "base_time_days_ago": 5000},
     "BASE_TIME_DAYS_AGO=5000 puts the event-time window's start before 1971-01-01"),
    ({"anchor_time": "9990-01-01T00:00:00Z", "time_spread_hours": 800_000},
     "TIME_SPREAD_HOURS=800000 puts the event-time window's end after 9998-01-01"),
])
def test_bad_values_name_the_parameter(changes, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Config(**changes)


def test_unknown_parameter_suggests_the_right_name(tmp_path):
    with pytest.raises(ValueError, match=r"unknown parameter 'NUM_EVENT' in the notebook parameters \(did you mean NUM_EVENTS\?\)"):
        Config.load(params={"NUM_EVENT": 5}, env={})
    with pytest.raises(ValueError, match="unknown parameter 'FOO' in the environment"):
        Config.load(env={"IOTGEN_FOO": "1"})


@pytest.mark.parametrize("text, message", [
    ("NUM_EVENTS: [1, 2", "is not valid YAML at line"),
    ("- just\n- a list\n", "must hold a mapping"),
])
def test_malformed_config_file(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        Config.load(config_file=path, env={})
    with pytest.raises(ValueError, match="cannot be read"):
        Config.load(config_file=tmp_path / "missing.yaml", env={})


def test_secrets_never_come_from_params_or_files(tmp_path):
    with pytest.raises(ValueError, match="EVENTHUB_CONNECTION_STRING must not be set in the notebook parameters"):
        Config.load(params={"EVENTHUB_CONNECTION_STRING": CONNECTION}, env={})
    path = tmp_path / "c.yaml"
    path.write_text(f"EVENTHUB_CONNECTION_STRING: '{CONNECTION}'\n")
    with pytest.raises(ValueError, match="must not be set in the config file") as info:
        Config.load(config_file=path, env={})
    assert "c2VjcmV0a2V5" not in str(info.value)


def test_connection_string_from_env_or_secret_is_redacted(caplog):
    config = Config.load(env={"EVENTHUB_CONNECTION_STRING": CONNECTION})
    assert isinstance(config.eventhub_connection_string, Secret)
    assert config.eventhub_connection_string.reveal() == CONNECTION
    logging.getLogger("test").warning("config: %s / %r", config, config)
    shown = repr(config) + str(config) + f"{config}" + str(config.as_params(include_secrets=True)) + caplog.text
    assert "c2VjcmV0a2V5" not in shown and "SharedAccessKey" not in shown
    assert "EVENTHUB_CONNECTION_STRING" not in config.as_params()
    from_secret = Config.load(env={}, secrets={"EVENTHUB_CONNECTION_STRING": CONNECTION})
    assert from_secret.eventhub_connection_string == Secret(CONNECTION)


def test_replace_validates_again():
    config = Config(num_events=5)
    assert config.replace(num_events=6).num_events == 6
    with pytest.raises(ValueError, match="NUM_EVENTS"):
        config.replace(num_events=-6)


def test_checkpoint_dir_defaults():
    assert Config(checkpoint_dir="/x/cp").resolved_checkpoint_dir() == "/x/cp"
    assert Config(catalog_volume_path="/Volumes/c/s/v/").resolved_checkpoint_dir() == "/Volumes/c/s/v/checkpoints"
    assert Config(output_dir="out").resolved_checkpoint_dir() == "out/checkpoints"


def test_anchor_defaults_to_start_of_utc_day():
    now = dt.datetime(2026, 3, 4, 15, 16, 17, tzinfo=dt.timezone.utc)
    assert Config().resolved_anchor_time(now) == dt.datetime(2026, 3, 4, tzinfo=dt.timezone.utc)


def test_config_table_shows_what_differs_from_the_defaults_and_hides_the_secret():
    import iotgen_helpers as h

    key = "s3cr3tKeyValue"
    config = Config.load(params={"NUM_EVENTS": 10, "INGEST_AVAILABLE_NOW": "yes"},
                         env={"EVENTHUB_CONNECTION_STRING": f"Endpoint=sb://x/;SharedAccessKeyName=a;"
                                                            f"SharedAccessKey={key};EntityPath=h"})
    table = h.config_table(config)
    assert list(table.index) == ["NUM_EVENTS", "EVENTHUB_CONNECTION_STRING", "INGEST_AVAILABLE_NOW"]
    assert table.loc["NUM_EVENTS", "value"] == "10" and table.loc["NUM_EVENTS", "default"] == "1000"
    assert table.loc["INGEST_AVAILABLE_NOW", "value"] == "True"
    assert key not in table.to_string() and key not in table.to_html()
    everything = h.config_table(config, changed_only=False)
    assert list(everything.index) == [name for name, _, _ in parameter_docs()]


def test_every_parameter_states_what_it_accepts_and_numbers_have_both_bounds():
    from iotgen.settings.config import PARAMETERS, allowed

    for name in PARAMETERS:
        text = allowed(name)
        assert text, name
        if PARAMETERS[name].type in ("int", "float", "int | None", "float | None"):
            assert " - " in text or "<=" in text, f"{name}: {text}"


def test_the_variables_of_other_faces_do_not_break_config():
    config = Config.load(env={"IOTGEN_EMULATOR_KEY": "k", "IOTGEN_CONFIG": "", "IOTGEN_NUM_EVENTS": "7"})
    assert config.num_events == 7


def test_spark_trigger_is_checked_when_the_config_is_built_with_the_one_trigger_grammar():
    from iotgen.base.times import parse_duration_ms
    from iotgen.settings.config import parse_trigger

    with pytest.raises(InputError, match="^SPARK_TRIGGER must be availableNow, once or an interval"):
        Config(spark_trigger="sometimes")
    assert Config(spark_trigger=" 2 min ").spark_trigger == "2 min"
    assert parse_trigger("2 min") == {"processingTime": "2 minutes"}
    assert parse_trigger("processingTime: 90 seconds") == {"processingTime": "90 seconds"}
    assert parse_trigger("1.5s") == {"processingTime": "1500 milliseconds"}
    assert parse_trigger("available-now") == {"availableNow": True}
    # the same duration grammar as the YAML spec's durations
    assert parse_duration_ms("10 seconds") == parse_duration_ms("10s") == 10_000
    assert parse_duration_ms("1h30m") == parse_duration_ms("1 hour 30 minutes") == 5_400_000
    assert parse_duration_ms("10") is None and parse_duration_ms("ten seconds") is None


def test_one_value_parser_serves_config_and_the_spark_options():
    """Config parameters and Spark source options read a number, a flag or a choice with the same rules and
    the same one-line message (iotgen.base.values)."""
    from iotgen.runs.spark.source_eventhubs import EventHubsOptions

    with pytest.raises(InputError) as from_config:
        Config(ramp_up_sec="-1")
    assert str(from_config.value).startswith("RAMP_UP_SEC must be a number")
    good = "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey=b;EntityPath=h"
    for option, value, message in [("maxEventsPerTrigger", "0", "maxEventsPerTrigger must be an integer from 1"),
                                   ("receiveTimeout", "nan", "receiveTimeout must be a number > 0"),
                                   ("failOnDataLoss", "maybe", "failOnDataLoss must be true or false"),
                                   ("transport", "carrier pigeon", "transport must be one of amqp, websockets")]:
        with pytest.raises(InputError, match=f"^{message}"):
            EventHubsOptions.parse({"connectionString": good, option: value})
    assert EventHubsOptions.parse({"connectionString": good, "failOnDataLoss": " FALSE "}).fail_on_data_loss is False
