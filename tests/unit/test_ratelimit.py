"""Tests of jobwatchd.ratelimit: the per-account token bucket with an explicit clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobwatchd.ratelimit import TokenBucket

FAST = settings(max_examples=30, deadline=None)

rates = st.floats(min_value=0.01, max_value=1000.0)
bursts = st.floats(min_value=1.0, max_value=20.0)
instants = st.floats(min_value=0.0, max_value=10_000.0)


def drain(bucket: TokenBucket, now: float) -> int:
    """Take every token available at ``now``; return how many."""
    taken = 0
    while bucket.try_take(now):
        taken += 1
        assert taken <= bucket.burst, "granted more than the burst at one instant"
    return taken


@pytest.mark.parametrize(
    ("rate", "burst"), [(0.0, 1.0), (-1.0, 5.0), (1.0, 0.0), (1.0, 0.999), (5.0, -3.0)]
)
def test_rejects_non_positive_rate_and_burst_below_one(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        TokenBucket(rate, burst, 0.0)


@pytest.mark.parametrize(
    ("rate", "burst", "full"), [(1.0, 1.0, 1), (20.0, 20.0, 20), (2.0, 3.5, 3)]
)
def test_starts_full(rate: float, burst: float, full: int) -> None:
    bucket = TokenBucket(rate, burst, 100.0)
    assert bucket.wait_time(100.0) == 0.0
    assert drain(bucket, 100.0) == full


def test_refills_at_the_rate() -> None:
    bucket = TokenBucket(rate=4.0, burst=2.0, now=0.0)
    assert drain(bucket, 0.0) == 2
    assert bucket.wait_time(0.0) == pytest.approx(0.25)
    assert bucket.wait_time(0.125) == pytest.approx(0.125)
    assert not bucket.try_take(0.125)
    assert bucket.try_take(0.25)
    assert not bucket.try_take(0.25)
    assert bucket.wait_time(0.25) == pytest.approx(0.25)
    # Half a second later: two more tokens, never more than the burst.
    assert drain(bucket, 0.75) == 2


def test_long_idle_is_capped_at_the_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=3.0, now=0.0)
    assert drain(bucket, 0.0) == 3
    assert drain(bucket, 1_000_000.0) == 3
    assert bucket.wait_time(1_000_000.0) == pytest.approx(0.1)


def test_fractional_burst_keeps_the_fraction() -> None:
    bucket = TokenBucket(rate=1.0, burst=1.5, now=0.0)
    assert drain(bucket, 0.0) == 1
    assert bucket.wait_time(0.0) == pytest.approx(0.5)
    assert bucket.try_take(0.5)


def test_clock_going_backwards_grants_nothing() -> None:
    bucket = TokenBucket(rate=2.0, burst=1.0, now=10.0)
    assert bucket.try_take(10.0)
    assert not bucket.try_take(5.0)
    assert bucket.wait_time(5.0) == pytest.approx(0.5)
    # The refill still counts from the latest time seen, not from the earlier one.
    assert not bucket.try_take(10.25)
    assert bucket.try_take(10.5)


def test_wait_time_does_not_consume() -> None:
    bucket = TokenBucket(rate=1.0, burst=1.0, now=0.0)
    for _ in range(5):
        assert bucket.wait_time(0.0) == 0.0
    assert bucket.try_take(0.0)


def test_update_keeps_tokens_accrued_at_the_old_rate() -> None:
    bucket = TokenBucket(rate=1.0, burst=10.0, now=0.0)
    assert drain(bucket, 0.0) == 10
    bucket.update(rate=64.0, burst=10.0, now=4.0)
    assert (bucket.rate, bucket.burst) == (64.0, 10.0)
    assert drain(bucket, 4.0) == 4
    assert bucket.wait_time(4.0) == pytest.approx(1 / 64)
    assert drain(bucket, 4.0 + 2 / 64) == 2


def test_update_to_a_smaller_burst_caps_the_tokens() -> None:
    bucket = TokenBucket(rate=1.0, burst=10.0, now=0.0)
    bucket.update(rate=1.0, burst=2.0, now=0.0)
    assert drain(bucket, 0.0) == 2
    assert drain(bucket, 1000.0) == 2


def test_update_to_a_larger_burst_adds_no_tokens_at_once() -> None:
    bucket = TokenBucket(rate=1.0, burst=2.0, now=0.0)
    bucket.update(rate=1.0, burst=10.0, now=0.0)
    assert drain(bucket, 0.0) == 2
    assert drain(bucket, 100.0) == 10


def test_a_token_is_available_after_waiting_wait_time() -> None:
    bucket = TokenBucket(rate=10.0, burst=1.0, now=0.0)
    assert bucket.try_take(0.0)
    now = 0.01
    wait = bucket.wait_time(now)
    assert wait > 0
    assert bucket.try_take(now + wait)


@FAST
@given(rates, bursts, instants, st.lists(instants, max_size=30))
def test_never_grants_more_than_burst_plus_rate_times_elapsed(
    rate: float, burst: float, start: float, times: list[float]
) -> None:
    bucket = TokenBucket(rate, burst, start)
    latest = start
    granted = 0
    for now in times:  # any order: the clock may even go backwards
        latest = max(latest, now)
        granted += drain(bucket, now)
        assert granted <= burst + rate * (latest - start) + 1e-6


@FAST
@given(rates, bursts, instants, st.lists(st.floats(min_value=0.0, max_value=5.0), max_size=30))
def test_never_grants_more_than_burst_plus_rate_times_window(
    rate: float, burst: float, start: float, gaps: list[float]
) -> None:
    bucket = TokenBucket(rate, burst, start)
    now = start
    grants: list[tuple[float, int]] = []
    for gap in gaps:
        now += gap
        grants.append((now, drain(bucket, now)))
    for i, (begin, _) in enumerate(grants):
        total = 0
        for end, count in grants[i:]:
            total += count
            assert total <= burst + rate * (end - begin) + 1e-6


@FAST
@given(rates, bursts, instants, st.lists(st.floats(min_value=-1.0, max_value=3.0), max_size=40))
def test_wait_time_agrees_with_try_take(
    rate: float, burst: float, start: float, steps: list[float]
) -> None:
    bucket = TokenBucket(rate, burst, start)
    now = start
    for step in steps:
        now += step
        wait = bucket.wait_time(now)
        assert 0.0 <= wait <= 1.0 / rate * (1 + 1e-6)  # rounded up a hair, never more
        assert bucket.try_take(now) == (wait == 0.0)


@FAST
@given(rates, bursts, instants, st.integers(min_value=1, max_value=30))
def test_waiting_wait_time_plus_a_hair_yields_a_token(
    rate: float, burst: float, start: float, takes: int
) -> None:
    bucket = TokenBucket(rate, burst, start)
    now = start
    for _ in range(takes):
        wait = bucket.wait_time(now)
        now += wait + 1e-9
        assert bucket.try_take(now)


@FAST
@given(rates, bursts, instants, rates, bursts, st.floats(min_value=0.0, max_value=100.0))
def test_update_never_exceeds_the_new_burst(
    rate: float, burst: float, start: float, new_rate: float, new_burst: float, later: float
) -> None:
    bucket = TokenBucket(rate, burst, start)
    bucket.update(new_rate, new_burst, start + later)
    assert drain(bucket, start + later) <= new_burst
    assert drain(bucket, start + later + 1e6) <= new_burst
