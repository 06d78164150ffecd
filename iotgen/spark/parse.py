"""Message bodies into typed events with ``json_column`` as VARIANT; malformed rows apart, with a reason.

:func:`parse_events` takes what a stream reader gives (the ``eventhubs`` source, the Kafka source on Event Hubs'
Kafka endpoint, or any frame with a JSON text/binary column) and returns one frame holding, per message:

* the 23 fixed columns, typed as in :mod:`iotgen.schema`, and ``json_column`` as ``VARIANT``;
* where it came from: ``_partition``, ``_sequence_number``, ``_enqueued_time`` (for inputs that are not Event
  Hubs messages: ``""``, ``-1`` and the time the row was parsed);
* ``_reason``: NULL for a good event, else why the message is not one (the same wording as ``iotgen ingest``);
* ``_body``: the raw message body (binary).

:func:`good_events` and :func:`bad_records` project the two outputs (the ``ingested`` and ``quarantine`` table
layouts of :mod:`iotgen.sinks.lakehouse`); :func:`iotgen.spark.write.write_stream` writes both from one query.
Nothing fails the query: a body that is not JSON, not an object, misses a field, has a value of the wrong type, or
whose ``json_column`` is not an object, lands in the bad records with its raw body.

The typed columns come from ``from_json`` with the exact schema (``json_column VARIANT``), so a string where a
number belongs is a bad record; like every Spark JSON reader it accepts a number or boolean where a *string*
belongs (as its text). ``try_parse_json`` is used to say why a rejected body was rejected. Typed access to the
VARIANT: ``json_column:location.lat::double``, ``variant_get(json_column, '$.co2_ppm', 'int')`` (see
:func:`typed_projection`).
"""

from __future__ import annotations

from typing import Any

from ..schema import COLUMNS, FIXED_COLUMNS, TIMESTAMP, spark_ddl

PROVENANCE = ("_partition", "_sequence_number", "_enqueued_time")
REASON, BODY = "_reason", "_body"
_PROVENANCE_KEY = "iotgen.provenance"
_PLACEHOLDERS = ("'' AS _partition", "CAST(-1 AS BIGINT) AS _sequence_number", "current_timestamp() AS _enqueued_time")
EVENT_COLUMNS = tuple(c.name for c in COLUMNS)

#: Typed projections of ``json_column`` shown in the notebooks (SQL expressions on the VARIANT).
JSON_PROJECTIONS = {
    "lat": "json_column:location.lat::double",
    "lon": "json_column:location.lon::double",
    "site": "json_column:location.site::string",
    "co2_ppm": "variant_get(json_column, '$.co2_ppm', 'int')",
    "cpu_pct": "try_variant_get(json_column, '$.diagnostics.cpu_pct', 'double')",
    "tags": "try_variant_get(json_column, '$.tags', 'array<string>')",
    "json_keys": "size(map_keys(cast(json_column as map<string, variant>)))",
}


def _sql_type(column) -> str:
    return spark_ddl().split(", ")[EVENT_COLUMNS.index(column.name)].split(" ", 1)[1]


def _kind(expr: str) -> str:
    """SQL: the JSON kind (object, array, string, number, boolean, null) of a VARIANT expression."""
    schema = f"schema_of_variant({expr})"
    return (f"CASE WHEN {schema} LIKE 'OBJECT%' THEN 'object' WHEN {schema} LIKE 'ARRAY%' THEN 'array' "
            f"WHEN {schema} = 'STRING' THEN 'string' WHEN {schema} = 'BOOLEAN' THEN 'boolean' "
            f"WHEN {schema} = 'VOID' THEN 'null' ELSE 'number' END")


def _is_object(expr: str) -> str:
    """SQL: true when a VARIANT holds a JSON object (a struct cast succeeds only for objects; cheap)."""
    return f"(try_variant_get({expr}, '$', 'struct<_iotgen_probe:int>') IS NOT NULL)"


def _expected(column) -> str:
    if column.arrow_type == TIMESTAMP:
        return "an ISO 8601 date-time string"
    return {"DOUBLE": "a number", "INT": "an integer in [-2147483648, 2147483647]", "BOOLEAN": "a boolean"}.get(
        _sql_type(column), "a string")


def _field(name: str) -> str:
    return f"variant_get(_v, '$.{name}')"


def reason_sql(text: str = "_text", body: str = "_body") -> str:
    """SQL: why a body is not an event (evaluated only for rejected rows), with ``_v`` = try_parse_json(text)."""
    branches = [
        f"WHEN {body} IS NULL OR length({body}) = 0 THEN 'body is empty'",
        f"WHEN NOT is_valid_utf8({text}) THEN 'body is not valid UTF-8'",
        "WHEN _v IS NULL THEN 'body is not valid JSON'",
        f"WHEN NOT {_is_object('_v')} THEN concat('body must be a JSON object, got ', {_kind('_v')})",
    ]
    for column in COLUMNS:
        branches.append(f"WHEN {_field(column.name)} IS NULL THEN 'missing field {column.name}'")
        branches.append(f"WHEN is_variant_null({_field(column.name)}) THEN 'field {column.name} is null'")
    for column in FIXED_COLUMNS:
        typed = f"_parsed.`{column.name}`"
        branches.append(f"WHEN {typed} IS NULL THEN 'field {column.name} must be {_expected(column)}, got ' || "
                        f"{_kind(_field(column.name))}")
    branches.append(f"WHEN NOT {_is_object(_field('json_column'))} THEN 'field json_column must be an object, "
                    f"got ' || {_kind(_field('json_column'))}")
    return "CASE " + " ".join(branches) + " ELSE 'body is not a valid event' END"


def _good_sql() -> str:
    checks = ["_parsed IS NOT NULL", "_parsed._corrupt_record IS NULL", "is_valid_utf8(_text)"]
    checks += [f"_parsed.`{c.name}` IS NOT NULL" for c in FIXED_COLUMNS]
    checks.append(_is_object("_parsed.json_column"))
    return "(" + " AND ".join(checks) + ")"


def _provenance(df: Any) -> tuple[str, list[str]]:
    """(body expression, provenance expressions) for the kinds of input the readers give."""
    cols = set(df.columns)
    if {"body", "partition", "sequenceNumber", "enqueuedTime"} <= cols:  # the eventhubs source
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
    from pyspark.sql import functions as F

    body, provenance = _provenance(df)
    if body_column is not None:
        if body_column not in df.columns:
            raise ValueError(f"body_column {body_column!r} is not a column of the frame; columns: {df.columns}")
        body = body_column
    if not body and set(EVENT_COLUMNS) <= set(df.columns):
        return _events_to_variant(df)
    if not body:
        raise ValueError("parse_events needs the eventhubs source's frame (body, partition, sequenceNumber, "
                         "enqueuedTime), a Kafka frame (value, ...), a frame with the 24 event columns, or "
                         f"body_column naming the JSON column; got columns {df.columns}")
    real = bool(provenance)
    if not provenance:
        provenance = list(_PLACEHOLDERS)
    body_type = dict(df.dtypes)[body]
    raw = f"`{body}`" if body_type == "binary" else f"CAST(`{body}` AS BINARY)"
    schema = spark_ddl("VARIANT") + ", _corrupt_record STRING"
    staged = df.selectExpr(f"{raw} AS _body", *provenance).selectExpr(
        "*", "CAST(_body AS STRING) AS _text").selectExpr(
        "*", f"from_json(_text, '{schema}', map('mode', 'PERMISSIVE')) AS _parsed")
    staged = staged.withColumn("_good", F.expr(_good_sql()))
    staged = staged.withColumn("_v", F.expr("CASE WHEN _good THEN NULL ELSE try_parse_json(_text) END"))
    staged = staged.withColumn(REASON, F.expr(f"CASE WHEN _good THEN NULL ELSE {reason_sql()} END"))
    events = [f"CASE WHEN _good THEN _parsed.`{name}` END AS `{name}`" for name in EVENT_COLUMNS]
    return _mark(staged.selectExpr(*events, *PROVENANCE, REASON, BODY), real)


def _events_to_variant(df: Any) -> Any:
    json_type = dict(df.dtypes)["json_column"]
    provenance = [c for c in PROVENANCE if c in df.columns]
    if json_type == "variant":
        variant = "json_column"
    else:
        variant = "try_parse_json(CAST(json_column AS STRING))"
    body = "CAST(to_json(struct(" + ", ".join(f"`{c}`" for c in EVENT_COLUMNS) + ")) AS BINARY)"
    staged = df.selectExpr("*", f"{variant} AS _variant")
    reason = (f"CASE WHEN _variant IS NULL THEN 'field json_column must be an object, got invalid JSON' "
              f"WHEN NOT {_is_object('_variant')} THEN 'field json_column must be an object, got ' || "
              f"{_kind('_variant')} END")
    staged = staged.selectExpr("*", f"{reason} AS {REASON}")
    # the raw body (the event as JSON text) is only built for the rejected rows
    staged = staged.selectExpr("*", f"CASE WHEN {REASON} IS NOT NULL THEN {body} END AS {BODY}")
    columns = [("_variant AS json_column" if c == "json_column" else f"`{c}`") for c in EVENT_COLUMNS]
    return _mark(staged.selectExpr(*columns, *(provenance or _PLACEHOLDERS), REASON, BODY), bool(provenance))


def _mark(parsed: Any, real: bool) -> Any:
    """Record in the ``_partition`` column's metadata whether the provenance columns are real."""
    from pyspark.sql import functions as F

    return parsed.withColumn(PROVENANCE[0], F.col(PROVENANCE[0]).alias(
        PROVENANCE[0], metadata={_PROVENANCE_KEY: "eventhubs" if real else "none"}))


def has_provenance(parsed: Any) -> bool:
    """True when the parsed frame's provenance columns come from Event Hubs or Kafka (not placeholders)."""
    return parsed.schema[PROVENANCE[0]].metadata.get(_PROVENANCE_KEY) == "eventhubs"


def good_events(parsed: Any, provenance: bool | None = None) -> Any:
    """The good events: the 24 event columns (``json_column`` VARIANT) plus the provenance columns when they are
    real (``provenance=None``), always (True) or never (False)."""
    keep = has_provenance(parsed) if provenance is None else provenance
    return parsed.where(f"{REASON} IS NULL").select(*EVENT_COLUMNS, *(PROVENANCE if keep else ()))


def bad_records(parsed: Any) -> Any:
    """The rejected messages: provenance, ``reason`` and the raw ``body`` (the ``quarantine`` layout)."""
    return parsed.where(f"{REASON} IS NOT NULL").selectExpr(*PROVENANCE, f"{REASON} AS reason", f"{BODY} AS body")


def typed_projection(events: Any, projections: dict[str, str] | None = None) -> Any:
    """A few fixed columns plus typed values read out of the ``json_column`` VARIANT (see JSON_PROJECTIONS)."""
    chosen = JSON_PROJECTIONS if projections is None else projections
    return events.selectExpr("event_id", "timestamp", "device_type", "sensor_id",
                             *[f"{expr} AS `{name}`" for name, expr in chosen.items()])
