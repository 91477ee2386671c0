"""The learned duration models and the adaptive schedule (pure)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobwatchd.backoff import BackoffPolicy
from jobwatchd.learning import MAX_WEIGHT, AdaptivePolicy, DurationModel, adaptive_delay

BACKOFF = BackoffPolicy(min_interval=2.0, max_interval=60.0, multiplier=1.6, jitter=0.2)
POLICY = AdaptivePolicy(target_lag=8.0)


def trained(median: float, sigma: float, count: int = 2000, seed: int = 1) -> DurationModel:
    rng = random.Random(seed)
    model = DurationModel()
    for _ in range(count):
        model.observe(rng.lognormvariate(math.log(median), sigma))
    return model


def test_model_recovers_a_log_normal() -> None:
    model = trained(90.0, 0.4)
    assert model.ready
    assert model.quantile(0.5) == pytest.approx(90.0, rel=0.1)
    assert model.sigma == pytest.approx(0.4, rel=0.15)
    assert model.count == MAX_WEIGHT


def test_model_is_not_ready_before_a_few_samples() -> None:
    model = DurationModel()
    for seconds in (10.0, 12.0, 11.0, 9.0):
        model.observe(seconds)
    assert not model.ready
    model.observe(10.0)
    assert model.ready


def test_model_follows_drift() -> None:
    model = trained(60.0, 0.2, count=1000)
    rng = random.Random(2)
    for _ in range(3000):
        model.observe(rng.lognormvariate(math.log(240.0), 0.2))
    assert model.quantile(0.5) == pytest.approx(240.0, rel=0.1)


def test_model_survives_a_json_round_trip() -> None:
    model = trained(30.0, 0.3, count=50)
    again = DurationModel.from_json(model.to_json())
    assert again == model


def test_schedule_sleeps_until_completion_becomes_likely() -> None:
    model = trained(120.0, 0.3)
    start = model.quantile(POLICY.early_mass)
    assert adaptive_delay(model, 10.0, POLICY, BACKOFF, attempt=0, rand=0.5) == min(
        60.0, start - 10.0
    )
    near = start - 5.0
    assert adaptive_delay(model, near, POLICY, BACKOFF, attempt=0, rand=0.5) == pytest.approx(5.0)


def test_schedule_polls_every_target_lag_while_completion_is_likely() -> None:
    model = trained(120.0, 0.3)
    for elapsed in (model.quantile(0.1), 120.0, model.quantile(0.98)):
        delay = adaptive_delay(model, elapsed, POLICY, BACKOFF, attempt=3, rand=0.999)
        assert BACKOFF.min_interval <= delay <= POLICY.target_lag


def test_stragglers_fall_back_to_backoff() -> None:
    model = trained(120.0, 0.3)
    late = model.quantile(0.999)
    assert adaptive_delay(model, late, POLICY, BACKOFF, attempt=20, rand=0.5) == 60.0


@settings(max_examples=200, deadline=None)
@given(
    median=st.floats(0.5, 10_000),
    sigma=st.floats(0.05, 2.0),
    elapsed=st.floats(0, 1e6),
    attempt=st.integers(0, 1000),
    rand=st.floats(0, 0.999999),
)
def test_delay_always_within_the_configured_bounds(
    median: float, sigma: float, elapsed: float, attempt: int, rand: float
) -> None:
    model = DurationModel(count=100.0, mean=math.log(median), m2=99 * sigma**2)
    delay = adaptive_delay(model, elapsed, POLICY, BACKOFF, attempt=attempt, rand=rand)
    assert BACKOFF.min_interval <= delay <= BACKOFF.max_interval
