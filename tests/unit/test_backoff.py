"""Tests of jobwatchd.backoff: exponential poll intervals with jitter."""

from __future__ import annotations

import math
import sys

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from jobwatchd.backoff import BackoffPolicy

FAST = settings(max_examples=30, deadline=None)
# The shipped defaults: 2 s growing by 1.6 up to 60 s, ±20 %.
DEFAULT = BackoffPolicy(min_interval=2.0, max_interval=60.0, multiplier=1.6, jitter=0.2)
HUGE_ATTEMPTS = [10**6, 2**31, 2**53 + 1, sys.maxsize, 2**64, 10**18 * 7]


@st.composite
def policies(draw: st.DrawFn) -> BackoffPolicy:
    """Policies as the config allows them: 0 < min <= max, multiplier >= 1, 0 <= jitter <= 1."""
    min_interval = draw(st.floats(min_value=1e-3, max_value=1e4, allow_nan=False))
    max_interval = min_interval * draw(st.floats(min_value=1.0, max_value=1e4))
    return BackoffPolicy(
        min_interval=min_interval,
        max_interval=max_interval,
        multiplier=draw(st.floats(min_value=1.0, max_value=100.0)),
        jitter=draw(st.floats(min_value=0.0, max_value=1.0)),
    )


attempts = st.integers(min_value=-5, max_value=2**63)
draws = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [
        (-3, 2.0),
        (0, 2.0),
        (1, 3.2),
        (2, 5.12),
        (3, 8.192),
        (7, 2.0 * 1.6**7),
        (8, 60.0),
        (9, 60.0),
        (100, 60.0),
    ],
)
def test_base_grows_geometrically_to_the_cap(attempt: int, expected: float) -> None:
    assert DEFAULT.base(attempt) == pytest.approx(expected)


@pytest.mark.parametrize("attempt", HUGE_ATTEMPTS)
def test_huge_attempts_do_not_overflow(attempt: int) -> None:
    assert DEFAULT.base(attempt) == 60.0
    assert DEFAULT.interval(attempt, 0.999999) == 60.0
    assert DEFAULT.interval(attempt, 0.0) == pytest.approx(48.0)


@pytest.mark.parametrize("multiplier", [1.0, 0.5, 0.0, -2.0])
def test_no_growth_without_a_multiplier_above_one(multiplier: float) -> None:
    policy = BackoffPolicy(min_interval=2.0, max_interval=60.0, multiplier=multiplier, jitter=0.0)
    assert [policy.base(attempt) for attempt in (0, 1, 10, 10**9)] == [2.0] * 4


def test_zero_min_interval_stays_at_zero_before_jitter() -> None:
    policy = BackoffPolicy(min_interval=0.0, max_interval=60.0, multiplier=2.0, jitter=0.5)
    assert policy.base(10) == 0.0
    assert policy.interval(10, 0.99) == 0.0


def test_equal_bounds_pin_the_interval() -> None:
    policy = BackoffPolicy(min_interval=5.0, max_interval=5.0, multiplier=3.0, jitter=1.0)
    assert {
        policy.interval(attempt, rand) for attempt in (0, 1, 50) for rand in (0, 0.5, 0.99)
    } == {5.0}


@pytest.mark.parametrize(
    ("rand", "expected"),
    [(0.0, 8.192 * 0.8), (0.25, 8.192 * 0.9), (0.5, 8.192), (0.75, 8.192 * 1.1)],
)
def test_jitter_spreads_both_ways(rand: float, expected: float) -> None:
    assert DEFAULT.interval(3, rand) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [(0, 0.0, 2.0), (0, 0.1, 2.0), (0, 0.75, 2.2), (100, 0.9999, 60.0), (100, 0.75, 60.0)],
)
def test_jitter_is_clamped_to_the_bounds(attempt: int, rand: float, expected: float) -> None:
    assert DEFAULT.interval(attempt, rand) == pytest.approx(expected)


def test_delivery_style_policy() -> None:
    policy = BackoffPolicy(min_interval=0.5, max_interval=30.0, multiplier=2.0, jitter=0.5)
    assert [policy.base(attempt) for attempt in range(8)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        30.0,
        30.0,
    ]


@FAST
@given(policies(), attempts, draws)
def test_interval_always_within_bounds(policy: BackoffPolicy, attempt: int, rand: float) -> None:
    interval = policy.interval(attempt, rand)
    assert math.isfinite(interval)
    assert policy.min_interval <= interval <= policy.max_interval


@FAST
@given(policies(), attempts)
def test_base_within_bounds_and_non_decreasing(policy: BackoffPolicy, attempt: int) -> None:
    base = policy.base(attempt)
    assert policy.min_interval <= base <= policy.max_interval
    assert policy.base(attempt + 1) >= base


@FAST
@given(policies(), st.integers(min_value=0, max_value=200))
def test_base_sequence_is_monotone_and_reaches_the_cap(policy: BackoffPolicy, extra: int) -> None:
    assume(policy.multiplier >= 1.01)
    bases = [policy.base(attempt) for attempt in range(0, 2000, 7)]
    assert bases == sorted(bases)
    assert bases[0] == policy.min_interval
    assert bases[-1] == policy.max_interval
    assert policy.base(10**6 + extra) == policy.max_interval


@FAST
@given(policies(), attempts, draws, draws)
def test_interval_is_monotone_in_the_draw(
    policy: BackoffPolicy, attempt: int, rand_a: float, rand_b: float
) -> None:
    low, high = sorted((rand_a, rand_b))
    assert policy.interval(attempt, low) <= policy.interval(attempt, high)


@FAST
@given(policies(), attempts, draws)
def test_interval_is_the_clamped_jittered_base(
    policy: BackoffPolicy, attempt: int, rand: float
) -> None:
    base = policy.base(attempt)
    low = max(policy.min_interval, base * (1 - policy.jitter))
    high = min(policy.max_interval, base * (1 + policy.jitter))
    interval = policy.interval(attempt, rand)
    assert low * (1 - 1e-12) <= interval <= high * (1 + 1e-12)


@FAST
@given(policies(), attempts)
def test_without_jitter_interval_equals_base(policy: BackoffPolicy, attempt: int) -> None:
    still = BackoffPolicy(
        min_interval=policy.min_interval,
        max_interval=policy.max_interval,
        multiplier=policy.multiplier,
        jitter=0.0,
    )
    assert still.interval(attempt, 0.0) == still.interval(attempt, 0.7) == still.base(attempt)
