"""What JSON a table holds exactly: the bounds every body and ``json_column`` value must keep, checked vectorised.

The rule (docs/lakehouse.md states it too): a JSON text is *out of bounds* when

* it nests deeper than :data:`MAX_DEPTH` (64) levels of arrays and objects;
* an integer literal in it (no fraction, no exponent) lies outside the int64 range [-2^63, 2^63 - 1] (a VARIANT
  or a typed column would change it: DuckDB turns such integers into doubles, or fails);
* a number in it overflows a double (``1e400``: it would be stored as infinity, which JSON cannot write back).

Numbers with a fraction or an exponent are doubles, as every JSON reader of these tables reads them. The ingest
quarantines an out-of-bounds body with the reason; the VARIANT encoder refuses such a value. Checking is cheap
for the common case: one C++ regex pass over the raw texts finds the rows that could break a bound (a number token
of 19 digits or with a 3-digit exponent, more than 64 opening brackets, strings not told apart), and only those
rows are parsed in Python to decide.
"""

from __future__ import annotations

import json
import math
import re

import pyarrow as pa
import pyarrow.compute as pc

MAX_DEPTH = 64
INT64 = (-(2**63), 2**63 - 1)
_STRING = r'"(?:[^"\\]|\\.)*"'
_BRACKET = re.compile(r"[\[\]{}]")
#: What could break a bound, looked for in the raw text: a number token (after ``:``, ``[``, ``,`` or the start)
#: of 19+ digits or with a 3-digit exponent, or more than MAX_DEPTH opening brackets anywhere. A superset of the
#: rows out of bounds (digits and brackets inside strings count too): each suspect is then judged exactly.
_SUSPECT = (r"(?:^|[:\[,])\s*-?(?:\d{19}|\d+(?:\.\d+)?[eE][+-]?\d{3})"
            rf"|(?:[^\[{{]*[\[{{]){{{MAX_DEPTH + 1}}}")


class _OutOfBounds(Exception):
    pass


def out_of_bounds(text: pa.Array) -> dict[int, str]:
    """``{row: reason}`` for the rows of a string array that break a bound (nulls and rows that are not JSON
    are not judged here)."""
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    if len(text) == 0:
        return {}
    suspects = pc.match_substring_regex(pc.fill_null(text, ""), _SUSPECT)
    reasons = {}
    for row in pc.indices_nonzero(suspects).to_pylist():
        reason = bound_broken(text[row].as_py())
        if reason is not None:
            reasons[row] = reason
    return reasons


def bound_broken(text: str, blank: str | None = None) -> str | None:
    """Why one JSON text is out of bounds, or None (also None when it is not JSON at all)."""
    blank = re.sub(_STRING, '""', text) if blank is None else blank
    depth = deepest = 0
    for match in _BRACKET.finditer(blank):
        depth += 1 if match.group() in "[{" else -1
        deepest = max(deepest, depth)
    if deepest > MAX_DEPTH:
        return f"JSON nests deeper than {MAX_DEPTH} levels"
    try:
        json.loads(text, parse_int=_check_int, parse_float=_check_float)
    except _OutOfBounds as exc:
        return str(exc)
    except (ValueError, RecursionError):
        return None  # not JSON: the parser's own message says why elsewhere
    return None


def _check_int(literal: str) -> int:
    value = int(literal)
    if not INT64[0] <= value <= INT64[1]:
        shown = literal if len(literal) <= 40 else literal[:37] + "..."
        raise _OutOfBounds(f"integer {shown} is outside the int64 range")
    return value


def _check_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise _OutOfBounds(f"number {literal[:40]} overflows a double")
    return value
