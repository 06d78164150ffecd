"""Parsing one value of a setting or an option (a Config parameter, a Spark source option, a CLI flag): the one
copy of each rule, so a number, a flag or a choice is read and refused alike everywhere. Each raises
:class:`~iotgen.base.errors.InputError` with one line naming the parameter, what is allowed and what was given."""

from __future__ import annotations

from typing import Any, Iterable

from .errors import InputError


def show_bound(number: float) -> str:
    """A bound as people write it: 1,000,000,000,000 as 10^12, 65,536 as 65536."""
    if number == 2**64 - 1:
        return "2^64 - 1"
    if number >= 10**6 and float(number).is_integer() and str(int(number)).rstrip("0") == "1":
        return f"10^{len(str(int(number))) - 1}"
    return f"{number:g}" if isinstance(number, float) else str(number)


def parse_int(name: str, value: Any, minimum: int = 0, maximum: int = 10**12) -> int:
    """An integer in ``minimum .. maximum`` (int, integral float, or its text)."""
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise InputError(f"{name} must be an integer from {show_bound(minimum)} to {show_bound(maximum)}, "
                         f"got {value!r}")
    return value


def parse_number(name: str, value: Any, minimum: float = 0.0, strict: bool = False, maximum: float = 1e12) -> float:
    """A number >= ``minimum`` (> with ``strict``) and <= ``maximum`` (a finite one: no NaN, no infinity)."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
            or value < minimum or (strict and value == minimum) or value > maximum:
        relation = ">" if strict else ">="
        raise InputError(f"{name} must be a number {relation} {show_bound(minimum)} and <= {show_bound(maximum)}, "
                         f"got {value!r}")
    return float(value)


def parse_bool(name: str, value: Any) -> bool:
    """true/false, 1/0, yes/no, on/off (any case), or a bool."""
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
        return value.strip().lower() in ("true", "1", "yes", "on")
    if not isinstance(value, bool):
        raise InputError(f"{name} must be true or false, got {value!r}")
    return value


def parse_choice(name: str, value: Any, allowed: Iterable[str]) -> str:
    """One of ``allowed`` (lower case), in any case, surrounding blanks ignored."""
    allowed = tuple(allowed)
    if not isinstance(value, str) or value.strip().lower() not in allowed:
        raise InputError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value.strip().lower()
