"""A token bucket: holds a long-run rate (events/s, bytes/s) without drift, with an optional linear ramp-up.

Tokens accrue continuously at ``rate`` per second (during ``ramp_up`` seconds the rate climbs linearly from 0)
up to ``capacity``; :meth:`TokenBucket.acquire` blocks until enough tokens are there and takes them. The bucket
starts empty, so a run never opens with a burst. Because waiting is computed from the accrued total, not from
sleeping a fixed interval after each send, time spent sending is not added to the schedule: the rate does not
drift down (the seed notebook's ``sleep`` after every batch delivered noticeably less than it asked for).

A request larger than ``capacity`` waits for a full bucket and then leaves it in debt, so the long-run rate
still holds. The clock and the sleep function can be replaced (tests and simulations).

With ``curve`` (a :class:`~iotgen.generation.rate_profile.RateCurve`: a rate profile, ramp-up included) the rate
follows the curve instead of ``rate``: tokens accrue as the curve's integral, with the same no-drift waits.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Protocol

from ..base.errors import InputError


class Curve(Protocol):
    """A rate over the seconds elapsed since the start, its integral and the integral's inverse."""

    def rate_at(self, elapsed: float) -> float: ...

    def issued(self, elapsed: float) -> float: ...

    def time_for(self, issued: float) -> float: ...


class TokenBucket:
    """``rate`` tokens per second, at most ``capacity`` banked, ramping up linearly over ``ramp_up`` seconds."""

    def __init__(
        self,
        rate: float,
        capacity: float,
        *,
        ramp_up: float = 0.0,
        curve: Curve | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
            raise InputError(f"rate must be a finite number > 0, got {rate!r}")
        if not (isinstance(capacity, (int, float)) and math.isfinite(capacity) and capacity > 0):
            raise InputError(f"capacity must be a finite number > 0, got {capacity!r}")
        if not (isinstance(ramp_up, (int, float)) and math.isfinite(ramp_up) and ramp_up >= 0):
            raise InputError(f"ramp_up must be a finite number >= 0, got {ramp_up!r}")
        self.rate = float(rate)
        self.capacity = float(capacity)
        self.ramp_up = float(ramp_up)
        self.curve = curve
        self._clock = clock
        self._sleep = sleep
        self._start = clock()
        self._tokens = 0.0
        self._issued_at_update = 0.0  # tokens issued from the start up to the last update

    # ---- the rate curve ---------------------------------------------------------------------------------------
    def rate_at(self, elapsed: float) -> float:
        """The rate ``elapsed`` seconds after the start (climbing during the ramp-up)."""
        if self.curve is not None:
            return self.curve.rate_at(elapsed)
        if elapsed <= 0:
            return 0.0 if self.ramp_up > 0 else self.rate
        return self.rate * min(1.0, elapsed / self.ramp_up) if self.ramp_up > 0 else self.rate

    def issued(self, elapsed: float) -> float:
        """Tokens issued from the start until ``elapsed`` seconds (the integral of :meth:`rate_at`)."""
        if self.curve is not None:
            return self.curve.issued(elapsed)
        elapsed = max(0.0, elapsed)
        if self.ramp_up <= 0:
            return self.rate * elapsed
        if elapsed <= self.ramp_up:
            return self.rate * elapsed * elapsed / (2 * self.ramp_up)
        return self.rate * (elapsed - self.ramp_up / 2)

    def time_for(self, issued: float) -> float:
        """The elapsed time at which ``issued`` tokens have been issued (the inverse of :meth:`issued`)."""
        if self.curve is not None:
            return self.curve.time_for(issued)
        if issued <= 0:
            return 0.0
        if self.ramp_up <= 0:
            return issued / self.rate
        if issued <= self.rate * self.ramp_up / 2:
            return math.sqrt(2 * self.ramp_up * issued / self.rate)
        return issued / self.rate + self.ramp_up / 2

    # ---- taking tokens ----------------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self._clock() - self._start

    def _update(self, elapsed: float) -> None:
        issued = self.issued(elapsed)
        self._tokens = min(self.capacity, self._tokens + issued - self._issued_at_update)
        self._issued_at_update = issued

    def wait_time(self, amount: float) -> float:
        """Seconds until ``amount`` tokens (at most a full bucket) are available; 0 if they are now."""
        elapsed = self.elapsed()
        self._update(elapsed)
        missing = min(amount, self.capacity) - self._tokens
        if missing <= 1e-9 * max(1.0, amount):  # rounding: a clock cannot wait for less
            return 0.0
        return max(0.0, self.time_for(self._issued_at_update + missing) - elapsed)

    def acquire(self, amount: float) -> float:
        """Block until ``amount`` tokens are available, take them; return the seconds waited."""
        if amount < 0:
            raise InputError(f"amount must be >= 0, got {amount!r}")
        waited = 0.0
        while True:
            wait = self.wait_time(amount)
            if wait <= 1e-9:
                break
            self._sleep(wait)
            waited += wait
        self._tokens -= amount
        return waited
