"""Time units and the few time formats iotgen reads and writes (one copy of each).

* :data:`HOUR_MS`, :data:`DAY_MS`: milliseconds in an hour and a day (event times are epoch milliseconds);
* :func:`parse_datetime`: ISO 8601 text (a ``Z`` suffix allowed), a date or a datetime; naive means UTC;
* :func:`iso_utc` / :func:`iso_time`: a moment or epoch ms as ISO 8601 UTC with milliseconds and ``Z``;
* :func:`parse_duration_ms`: ``90s``, ``15m``, ``2h``, ``1d``, ``1h30m``, ``500ms``, ``10 seconds`` or a number of
  seconds.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": HOUR_MS, "d": DAY_MS}
_UNIT_WORDS = {"milliseconds": "ms", "millisecond": "ms", "millis": "ms", "ms": "ms", "seconds": "s", "second": "s",
               "secs": "s", "sec": "s", "s": "s", "minutes": "m", "minute": "m", "mins": "m", "min": "m", "m": "m",
               "hours": "h", "hour": "h", "h": "h", "days": "d", "day": "d", "d": "d"}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(" + "|".join(sorted(_UNIT_WORDS, key=len, reverse=True)) + ")")


def parse_datetime(value: Any) -> dt.datetime | None:
    """``value`` as a timezone-aware datetime (naive text, dates and datetimes are UTC); None if it is not an
    ISO 8601 date-time, a date or a datetime."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, dt.datetime):
        return None
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value


def iso_utc(moment: dt.datetime) -> str:
    """A moment as ISO 8601 UTC with milliseconds: ``2026-06-01T12:00:00.000Z``."""
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_time(ms: int) -> str:
    """Epoch ms as ISO 8601 UTC with milliseconds."""
    return iso_utc(dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc))


def parse_duration_ms(value: Any) -> int | None:
    """``90s``, ``15m``, ``2h``, ``1d``, ``1h30m``, ``500ms`` (or the units' words: ``10 seconds``, ``2 min``) or a
    number of seconds, in ms (None if not one)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(round(value * 1000)) if value >= 0 and value == value and value != float("inf") else None
    if not isinstance(value, str):
        return None
    text = value.strip().lower().replace(" ", "")
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return int(round(sum(float(n) * _UNITS_MS[_UNIT_WORDS[u]] for n, u in parts)))
