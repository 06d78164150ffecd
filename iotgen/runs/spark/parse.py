"""Message bodies into typed events with ``json_column`` as VARIANT; malformed messages apart, with a reason.

:func:`parse_events` takes what a stream reader gives (the ``iotgen_eventhubs`` source, the Kafka source on Event
Hubs' Kafka endpoint, or any frame with a JSON text/binary column) and returns one frame holding, per message:

* the 23 fixed columns, typed as in :mod:`iotgen.settings.schema`, and ``json_column`` as ``VARIANT``;
* where it came from: ``_partition``, ``_sequence_number``, ``_enqueued_time`` (for inputs that are not Event
  Hubs messages: ``""``, ``-1`` and the time the row was parsed);
* ``_good``: whether the message is an event;
* ``_body``: the raw message body (binary).

:func:`good_events` and :func:`bad_records` project the two outputs (the ``ingested`` and ``quarantine`` table
layouts of :mod:`iotgen.outputs.lakehouse`); :func:`iotgen.runs.spark.write.write_stream` writes both from one query.
Nothing fails the query: a body that is not JSON, not an object, misses a field, has a value of the wrong type, or
whose ``json_column`` is not an object, lands in the bad records with its raw body and the reason (worded as
``iotgen ingest`` words it). The reason is worked out only for the rejected rows, so good rows cost one
``from_json`` pass.

The typed columns come from ``from_json`` with the exact schema (``json_column VARIANT``), so a string where a
number belongs is a bad record; like every Spark JSON reader it accepts a number or boolean where a *string*
belongs (as its text). Typed access to the VARIANT: ``variant_get(json_column, '$.location.lat', 'double')``,
``try_variant_get(json_column, '$.tags', 'array<string>')`` (see :func:`typed_projection`); these work on every
supported runtime (Databricks SQL and Spark 4.3 also take ``json_column:location.lat::double``, Spark 4.0 does
not).
"""

from __future__ import annotations

from typing import Any

from ...base.errors import InputError
from ...settings.schema import COLUMNS, FIXED_COLUMNS, TIMESTAMP, spark_ddl

PROVENANCE = ("_partition", "_sequence_number", "_enqueued_time")
GOOD, BODY = "_good", "_body"
EVENT_COLUMNS = tuple(c.name for c in COLUMNS)
_PROVENANCE_KEY = "iotgen.provenance"
_PLACEHOLDERS = ("'' AS _partition", "CAST(-1 AS BIGINT) AS _sequence_number", "current_timestamp() AS _enqueued_time")
_PARSE_SCHEMA = spark_ddl("VARIANT") + ", _corrupt_record STRING"

#: Message bodies that are not events, one per kind of rejection (for demos of the bad-records output).
EXAMPLE_BAD_BODIES = (
    b"not json at all",
    b"[1, 2, 3]",
    b'{"event_id": "0d4c6f0e-5b1e-4b8e-9a55-2f6d1c7f4e21", "temperature": "hot"}',
)

#: Typed projections of ``json_column`` shown in the notebooks (SQL expressions on the VARIANT).
JSON_PROJECTIONS = {
    "lat": "variant_get(json_column, '$.location.lat', 'double')",
    "lon": "variant_get(json_column, '$.location.lon', 'double')",
    "site": "variant_get(json_column, '$.location.site', 'string')",
    "co2_ppm": "variant_get(json_column, '$.co2_ppm', 'int')",
    "cpu_pct": "try_variant_get(json_column, '$.diagnostics.cpu_pct', 'double')",
    "tags": "try_variant_get(json_column, '$.tags', 'array<string>')",
    "json_keys": "size(map_keys(cast(json_column as map<string, variant>)))",
}


def _sql_type(column) -> str:
    return spark_ddl().split(", ")[EVENT_COLUMNS.index(column.name)].split(" ", 1)[1]


def _expected(column) -> str:
    if column.arrow_type == TIMESTAMP:
        return "an ISO 8601 date-time string"
    return {"DOUBLE": "a number", "INT": "an integer in [-2147483648, 2147483647]", "BOOLEAN": "a boolean"}.get(
        _sql_type(column), "a string")


def _is_object(expr: str) -> str:
    """SQL: true when a VARIANT holds a JSON object (a struct cast succeeds only for objects; cheap)."""
    return f"(try_variant_get({expr}, '$', 'struct<_iotgen_probe:int>') IS NOT NULL)"


def _kind(schema: str) -> str:
    """SQL: the JSON kind (object, array, string, number, boolean, null) from a ``schema_of_variant`` result."""
    return (f"CASE WHEN {schema} LIKE 'OBJECT%' THEN 'object' WHEN {schema} LIKE 'ARRAY%' THEN 'array' "
            f"WHEN {schema} = 'STRING' THEN 'string' WHEN {schema} = 'BOOLEAN' THEN 'boolean' "
            f"WHEN {schema} = 'VOID' THEN 'null' ELSE 'number' END")


def _good_sql() -> str:
    checks = [f"length({BODY}) > 0", "is_valid_utf8(_text)", "_parsed IS NOT NULL", "_parsed._corrupt_record IS NULL"]
    checks += [f"_parsed.`{c.name}` IS NOT NULL" for c in FIXED_COLUMNS]
    checks.append(_is_object("_parsed.json_column"))
    return "coalesce(" + " AND ".join(checks) + ", false)"


def _provenance(df: Any) -> tuple[str, list[str]]:
    """(body column, provenance expressions) for the kinds of input the readers give."""
    cols = set(df.columns)
    if {"body", "partition", "sequenceNumber", "enqueuedTime"} <= cols:  # the iotgen_eventhubs source
        return "body", ["CAST(partition AS STRING) AS _partition", "sequenceNumber AS _sequence_number",
                        "enqueuedTime AS _enqueued_time"]
    if {"value", "topic", "partition", "offset", "timestamp"} <= cols:  # Kafka (Event Hubs' Kafka endpoint)
        return "value", ["CAST(partition AS STRING) AS _partition", "offset AS _sequence_number",
                         "timestamp AS _enqueued_time"]
    return "", []


def parse_events(df: Any, body_column: str | None = None) -> Any:
    """Parse message bodies (see the module docstring); ``body_column`` names the JSON column of other inputs.

    A frame that already has the 24 event columns (the ``iotgen`` source, files) is not re-parsed: only its
    ``json_column`` text becomes VARIANT (rows whose ``json_column`` is not a JSON object are bad records).
    """
    from .runtime import require_variant

    require_variant("parsing json_column to VARIANT")
    body, provenance = _provenance(df)
    if body_column is not None:
        if body_column not in df.columns:
            raise InputError(f"body_column {body_column!r} is not a column of the frame; columns: {df.columns}")
        body = body_column
    if not body and set(EVENT_COLUMNS) <= set(df.columns):
        return _events_to_variant(df)
    if not body:
        raise InputError("parse_events needs the iotgen_eventhubs source's frame (body, partition, sequenceNumber, "
                         "enqueuedTime), a Kafka frame (value, ...), a frame with the 24 event columns, or "
                         f"body_column naming the JSON column; got columns {df.columns}")
    real = bool(provenance)
    raw = f"`{body}`" if dict(df.dtypes)[body] == "binary" else f"CAST(`{body}` AS BINARY)"
    staged = (df.selectExpr(f"{raw} AS {BODY}", *(provenance or _PLACEHOLDERS))
              .selectExpr("*", f"CAST({BODY} AS STRING) AS _text")
              .selectExpr("*", f"from_json(_text, '{_PARSE_SCHEMA}', map('mode', 'PERMISSIVE')) AS _parsed"))
    events = [f"_parsed.`{name}` AS `{name}`" for name in EVENT_COLUMNS]
    return _mark(staged.selectExpr(*events, *PROVENANCE, f"{_good_sql()} AS {GOOD}", BODY), real)


def _events_to_variant(df: Any) -> Any:
    if dict(df.dtypes)["json_column"] == "variant":
        variant = "json_column"
    else:
        variant = "try_parse_json(CAST(json_column AS STRING))"
    provenance = [c for c in PROVENANCE if c in df.columns]
    staged = df.selectExpr("*", f"{variant} AS _variant").selectExpr(
        "*", f"coalesce({_is_object('_variant')}, false) AS {GOOD}")
    # the raw body (the event as JSON, json_column inline when it is JSON) is only built for the rejected rows
    fixed = ", ".join(f"`{c}`" for c in EVENT_COLUMNS if c != "json_column")
    body = (f"CAST(CASE WHEN _variant IS NOT NULL THEN to_json(struct({fixed}, _variant AS json_column)) "
            f"ELSE to_json(struct({fixed}, json_column)) END AS BINARY)")
    columns = [("_variant AS json_column" if c == "json_column" else f"`{c}`") for c in EVENT_COLUMNS]
    return _mark(staged.selectExpr(*columns, *(provenance or _PLACEHOLDERS), GOOD,
                                   f"CASE WHEN NOT {GOOD} THEN {body} END AS {BODY}"), bool(provenance))


def _mark(parsed: Any, real: bool) -> Any:
    """Record in the ``_partition`` column's metadata whether the provenance columns are real."""
    return parsed.withMetadata(PROVENANCE[0], {_PROVENANCE_KEY: "eventhubs" if real else "none"})  # Connect too


def has_provenance(parsed: Any) -> bool:
    """True when the parsed frame's provenance columns come from Event Hubs or Kafka (not placeholders)."""
    return parsed.schema[PROVENANCE[0]].metadata.get(_PROVENANCE_KEY) == "eventhubs"


def good_events(parsed: Any, provenance: bool | None = None) -> Any:
    """The good events: the 24 event columns (``json_column`` VARIANT) plus the provenance columns when they are
    real (``provenance=None``), always (True) or never (False)."""
    keep = has_provenance(parsed) if provenance is None else provenance
    return parsed.where(GOOD).select(*EVENT_COLUMNS, *(PROVENANCE if keep else ()))


def _names(columns) -> str:
    return "array(" + ", ".join(f"'{c.name}'" for c in columns) + ")"


def reason_sql() -> str:
    """SQL: why a body (``_text``, ``_body``) is not an event, over the staged columns of :func:`bad_records`."""
    expected = "map(" + ", ".join(f"'{c.name}', '{_expected(c)}'" for c in FIXED_COLUMNS) + ")"
    payload = "try_element_at(_m, 'json_column')"
    return (
        f"CASE WHEN {BODY} IS NULL OR length({BODY}) = 0 THEN 'body is empty' "
        "WHEN NOT is_valid_utf8(_text) THEN 'body is not valid UTF-8' "
        "WHEN _v IS NULL THEN 'body is not valid JSON' "
        f"WHEN _m IS NULL THEN 'body must be a JSON object, got ' || ({_kind('schema_of_variant(_v)')}) "
        "WHEN size(_missing) > 0 THEN 'missing field ' || _missing[0] "
        "WHEN size(_nulls) > 0 THEN 'field ' || _nulls[0] || ' is null' "
        f"WHEN _wrong IS NOT NULL THEN 'field ' || _wrong || ' must be ' || element_at({expected}, _wrong) || "
        f"', got ' || ({_kind('schema_of_variant(try_element_at(_m, _wrong))')}) "
        f"WHEN NOT {_is_object(payload)} THEN 'field json_column must be an object, got ' || "
        f"({_kind(f'schema_of_variant({payload})')}) "
        "ELSE 'body is not a valid event' END")


def bad_records(parsed: Any) -> Any:
    """The rejected messages: provenance, ``reason`` and the raw ``body`` (the ``quarantine`` layout)."""
    typed = "array(" + ", ".join(f"named_struct('n', '{c.name}', 'bad', _parsed.`{c.name}` IS NULL)"
                                 for c in FIXED_COLUMNS) + ")"
    staged = (parsed.where(f"NOT {GOOD}").selectExpr(*PROVENANCE, BODY, f"CAST({BODY} AS STRING) AS _text")
              .selectExpr("*", "try_parse_json(_text) AS _v",
                          f"from_json(_text, '{_PARSE_SCHEMA}', map('mode', 'PERMISSIVE')) AS _parsed")
              .selectExpr("*", f"CASE WHEN {_is_object('_v')} THEN CAST(_v AS map<string, variant>) END AS _m")
              .selectExpr("*", f"array_except({_names(COLUMNS)}, map_keys(_m)) AS _missing",
                          f"filter({_names(COLUMNS)}, k -> is_variant_null(try_element_at(_m, k))) AS _nulls",
                          f"try_element_at(filter({typed}, x -> x.bad), 1).n AS _wrong"))
    return staged.selectExpr(*PROVENANCE, f"{reason_sql()} AS reason", f"{BODY} AS body")


def typed_projection(events: Any, projections: dict[str, str] | None = None) -> Any:
    """A few fixed columns plus typed values read out of the ``json_column`` VARIANT (see JSON_PROJECTIONS)."""
    chosen = JSON_PROJECTIONS if projections is None else projections
    return events.selectExpr("event_id", "timestamp", "device_type", "sensor_id",
                             *[f"{expr} AS `{name}`" for name, expr in chosen.items()])
