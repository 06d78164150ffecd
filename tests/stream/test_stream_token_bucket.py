"""The token bucket on a simulated clock: long-run rate without drift, ramp-up, burst cap, debt, bad input."""

from __future__ import annotations

import pytest

from iotgen.runs.token_bucket import TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds
        self.slept += seconds


def bucket(rate: float, capacity: float, clock: FakeClock, **kwargs) -> TokenBucket:
    return TokenBucket(rate, capacity, clock=clock, sleep=clock.sleep, **kwargs)


@pytest.mark.parametrize("rate", [1_000, 5_000, 10_000])
def test_a_minute_of_steps_holds_the_rate_even_when_each_send_takes_time(rate):
    clock = FakeClock()
    b = bucket(rate, max(1000, rate), clock)
    sent = 0
    while True:
        b.acquire(500)
        if clock.now - 100.0 > 60.0:
            break
        sent += 500
        clock.now += 0.8 * 500 / rate  # the send itself takes 80% of the step's time budget
    assert abs(sent / 60.0 - rate) / rate < 0.01


def test_the_seed_loops_drift_is_gone():
    """BATCH_SIZE=500 every SLEEP_INTERVAL_SEC=1 with a 0.3 s send: the seed's loop made 385 events/s."""
    clock = FakeClock()
    b = bucket(500, 1000, clock)
    for _ in range(120):
        b.acquire(500)
        clock.now += 0.3
    assert clock.now - 100.0 == pytest.approx(120.3, abs=0.01)


def test_starts_empty_so_a_run_never_opens_with_a_burst():
    clock = FakeClock()
    b = bucket(100, 1000, clock)
    assert b.acquire(50) == pytest.approx(0.5)


def test_after_an_idle_period_the_burst_is_capped_by_the_capacity():
    clock = FakeClock()
    b = bucket(100, 200, clock)
    clock.now += 3600
    assert b.acquire(200) == 0
    assert b.acquire(100) == pytest.approx(1.0)


def test_a_request_larger_than_the_capacity_waits_for_a_full_bucket_then_goes_into_debt():
    clock = FakeClock()
    b = bucket(100, 50, clock)
    assert b.acquire(150) == pytest.approx(0.5)
    assert b.acquire(50) == pytest.approx(1.5)  # 100 tokens of debt, then 50 more
    assert clock.now - 100.0 == pytest.approx(2.0)  # 200 tokens at 100/s: the long-run rate holds


def test_ramp_up_climbs_linearly_then_holds_the_rate():
    clock = FakeClock()
    b = bucket(1000, 2000, clock, ramp_up=10.0)
    assert b.rate_at(5.0) == pytest.approx(500)
    assert b.issued(10.0) == pytest.approx(5000)  # the area under the ramp
    assert b.issued(12.0) == pytest.approx(7000)
    assert b.time_for(b.issued(3.7)) == pytest.approx(3.7)
    assert b.time_for(b.issued(17.2)) == pytest.approx(17.2)
    for _ in range(14):
        b.acquire(500)
    assert clock.now - 100.0 == pytest.approx(12.0)  # 7000 events: 5000 in the ramp, 2000 at full rate


@pytest.mark.parametrize("args", [(0, 10), (-5, 10), (float("inf"), 10), (10, 0), (10, float("nan"))])
def test_bad_rates_and_capacities_are_refused(args):
    with pytest.raises(ValueError):
        TokenBucket(*args)


def test_bad_ramp_and_amount_are_refused():
    with pytest.raises(ValueError, match="ramp_up"):
        TokenBucket(10, 10, ramp_up=-1)
    with pytest.raises(ValueError, match="amount"):
        TokenBucket(10, 10).acquire(-1)
