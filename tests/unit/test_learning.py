"""The learned duration models and the adaptive schedule (pure)."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobwatchd.backoff import BackoffPolicy
from jobwatchd.learning import (
    MAX_MODELS,
    MAX_WEIGHT,
    TAIL_Z,
    AdaptivePolicy,
    DurationModel,
    adaptive_delay,
    learnable_type,
)

BACKOFF = BackoffPolicy(min_interval=2.0, max_interval=60.0, multiplier=1.6, jitter=0.2)
POLICY = AdaptivePolicy(target_lag=8.0)


def trained(median: float, sigma: float, count: int = 2000, seed: int = 1) -> DurationModel:
    rng = random.Random(seed)
    model = DurationModel()
    for _ in range(count):
        model.observe(rng.lognormvariate(math.log(median), sigma))
    return model


def with_tail(seconds: float, rng: random.Random) -> float:
    """5 % of jobs take 1 + Pareto(1.5) times longer, as in benchmark scenario 3."""
    if rng.random() < 0.05:
        return seconds * (1.0 + rng.paretovariate(1.5))
    return seconds


def test_model_recovers_a_log_normal() -> None:
    model = trained(90.0, 0.4)
    assert model.ready
    assert model.quantile(0.5) == pytest.approx(90.0, rel=0.1)
    assert model.sigma == pytest.approx(0.4, rel=0.15)
    assert model.count + model.tail_count == pytest.approx(MAX_WEIGHT)
    assert model.tail_share < 0.02  # a log-normal has almost no jobs past 2.5 sigma


def test_model_is_not_ready_before_a_few_samples() -> None:
    model = DurationModel()
    for seconds in (10.0, 12.0, 11.0, 9.0):
        model.observe(seconds)
    assert not model.ready
    model.observe(10.0)
    assert model.ready


def test_a_heavy_tail_is_learned_apart_and_leaves_the_body_fit_alone() -> None:
    rng = random.Random(3)
    model = DurationModel()
    logs = []
    for _ in range(3000):
        seconds = with_tail(rng.lognormvariate(math.log(100.0), 0.3), rng)
        logs.append(math.log(seconds))
        model.observe(seconds)
    one_fit = statistics.stdev(logs[-500:])
    assert one_fit > 0.4  # one log-normal for everything: widened by the tail
    assert model.sigma == pytest.approx(0.3, rel=0.1)
    assert model.quantile(0.5) == pytest.approx(100.0, rel=0.05)
    assert 0.03 < model.tail_share < 0.07
    assert model.tail_mean > model.mean + TAIL_Z * model.sigma


def test_no_job_is_called_slow_before_the_body_has_enough_jobs() -> None:
    model = DurationModel()
    for seconds in (100.0, 101.0, 99.0, 100.5, 99.5, 300.0):
        model.observe(seconds)
    assert model.tail_count == 0.0  # six jobs: too few to call 300 s a tail
    assert model.count == 6.0


def test_model_follows_drift() -> None:
    model = trained(60.0, 0.2, count=1000)
    rng = random.Random(2)
    for _ in range(3000):
        model.observe(rng.lognormvariate(math.log(240.0), 0.2))
    # Every new job is "slow" at first: once they are too many for a tail, the
    # body takes them, and the old durations are forgotten.
    assert model.quantile(0.5) == pytest.approx(240.0, rel=0.1)
    assert model.sigma == pytest.approx(0.2, rel=0.2)
    assert model.tail_share < 0.05


def test_model_survives_a_json_round_trip() -> None:
    rng = random.Random(4)
    model = DurationModel()
    for _ in range(300):
        model.observe(with_tail(rng.lognormvariate(math.log(30.0), 0.3), rng))
    assert model.tail_count > 0
    again = DurationModel.from_json(model.to_json())
    assert again == model
    assert again.window(POLICY) == model.window(POLICY)


def test_a_model_stored_before_the_tail_loads_without_one() -> None:
    model = DurationModel.from_json({"count": 50.0, "mean": 3.0, "m2": 4.41})
    assert model.tail_count == 0.0
    assert model.tail_share == 0.0
    assert model.overall_quantile(0.99) == pytest.approx(model.quantile(0.99))


def test_overall_quantile_mixes_body_and_tail() -> None:
    model = DurationModel(
        count=90.0, mean=math.log(100.0), m2=89 * 0.09, tail_count=10.0, tail_mean=math.log(400.0)
    )
    assert model.tail_share == pytest.approx(0.1)
    for p in (0.5, 0.9, 0.95, 0.99):
        assert model.cdf(model.overall_quantile(p)) == pytest.approx(p, abs=1e-9)
    # A tenth of the jobs are slow: the 95 % quantile is among them, far past the body's.
    assert model.overall_quantile(0.95) > 2 * model.quantile(0.95)


def test_window_opens_target_lag_after_the_early_quantile_and_closes_at_the_late_one() -> None:
    model = DurationModel(
        count=95.0, mean=math.log(100.0), m2=94 * 0.09, tail_count=5.0, tail_mean=math.log(300.0)
    )
    opens, closes = model.window(POLICY)
    assert opens == pytest.approx(model.quantile(POLICY.early_mass) + POLICY.target_lag)
    assert closes == pytest.approx(model.overall_quantile(1 - POLICY.late_mass))
    assert model.cdf(closes) == pytest.approx(1 - POLICY.late_mass)
    # The tail is covered: the window reaches well past the body's 99.9 % quantile.
    assert closes > model.quantile(0.999)


def test_the_window_follows_what_the_model_learns() -> None:
    model = trained(100.0, 0.3, count=50)
    before = model.window(POLICY)
    model.observe(1000.0)
    assert model.window(POLICY) != before


def test_schedule_sleeps_until_the_window_opens() -> None:
    model = trained(120.0, 0.3)
    opens, _ = model.window(POLICY)
    assert opens > 70.0
    # Far from it: wake up after at most max_interval.
    assert adaptive_delay(model, 1.0, POLICY, BACKOFF, attempt=0, rand=0.5) == 60.0
    # Near it: wake up when it opens, up to jitter * target_lag early.
    near = opens - 20.0
    latest = adaptive_delay(model, near, POLICY, BACKOFF, attempt=0, rand=0.0)
    earliest = adaptive_delay(model, near, POLICY, BACKOFF, attempt=0, rand=0.999999)
    assert latest == pytest.approx(20.0)
    assert earliest == pytest.approx(20.0 - BACKOFF.jitter * POLICY.target_lag, abs=1e-4)


@pytest.mark.parametrize("rand", [0.0, 0.5, 0.999999])
def test_a_job_woken_early_by_jitter_is_in_the_window(rand: float) -> None:
    model = trained(120.0, 0.3)
    opens, _ = model.window(POLICY)
    woken = opens - 20.0 + adaptive_delay(model, opens - 20.0, POLICY, BACKOFF, attempt=0, rand=0.9)
    assert woken < opens
    delay = adaptive_delay(model, woken, POLICY, BACKOFF, attempt=1, rand=rand)
    assert delay == POLICY.target_lag


@pytest.mark.parametrize("rand", [0.0, 0.3, 0.999999])
def test_schedule_polls_exactly_every_target_lag_in_the_window(rand: float) -> None:
    model = trained(120.0, 0.3)
    opens, closes = model.window(POLICY)
    for elapsed in (opens, 120.0, closes):
        delay = adaptive_delay(model, elapsed, POLICY, BACKOFF, attempt=3, rand=rand)
        assert delay == POLICY.target_lag  # never shorter (calls) nor longer (lag)


def test_stragglers_fall_back_to_backoff() -> None:
    model = trained(120.0, 0.3)
    _, closes = model.window(POLICY)
    late = closes + 1.0
    assert adaptive_delay(model, late, POLICY, BACKOFF, attempt=20, rand=0.5) == 60.0


@settings(max_examples=200, deadline=None)
@given(
    median=st.floats(0.5, 10_000),
    sigma=st.floats(0.05, 2.0),
    tail=st.floats(0.0, 0.3),
    slower=st.floats(1.0, 50.0),
    elapsed=st.floats(0, 1e6),
    attempt=st.integers(0, 1000),
    rand=st.floats(0, 0.999999),
)
def test_delay_always_within_the_configured_bounds(
    median: float,
    sigma: float,
    tail: float,
    slower: float,
    elapsed: float,
    attempt: int,
    rand: float,
) -> None:
    model = DurationModel(
        count=100.0 * (1 - tail),
        mean=math.log(median),
        m2=99 * sigma**2,
        tail_count=100.0 * tail,
        tail_mean=math.log(median * slower),
        tail_m2=10 * sigma**2,
    )
    delay = adaptive_delay(model, elapsed, POLICY, BACKOFF, attempt=attempt, rand=rand)
    assert BACKOFF.min_interval <= delay <= BACKOFF.max_interval
    opens, closes = model.window(POLICY)
    assert 0 < opens <= closes


@pytest.mark.parametrize(
    ("job_type", "known", "limit", "expected"),
    [
        ("createServer", {}, 256, True),
        ("createServer", {"createServer": 1}, 1, True),
        ("deleteServer", {"createServer": 1}, 1, False),
        ("x" * 64, {}, 256, True),
        ("x" * 65, {}, 256, False),
        ("", {}, 256, False),
        ("create\x1b[2J", {}, 256, False),
        ("créer", {}, 256, False),
        ("create server", {}, 256, True),
    ],
)
def test_only_a_bounded_number_of_sane_job_types_is_learned(
    job_type: str, known: dict[str, int], limit: int, expected: bool
) -> None:
    assert learnable_type(job_type, known, limit) is expected


def test_the_default_bound_on_learned_types() -> None:
    known = {f"type{n}": n for n in range(MAX_MODELS)}
    assert learnable_type("type0", known)
    assert not learnable_type("another", known)
