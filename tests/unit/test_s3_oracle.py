"""Benchmark scenario 3's arithmetic: the oracle bound and the replay of the
learned schedule (pure; no processes are started)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench import s3_efficiency as s3
from jobwatchd.learning import DurationModel

STEP = s3.ORACLE_STEP


def point_masses(*durations: float, cap: float = 200.0) -> np.ndarray:
    """The CDF on the oracle's grid of jobs ending at ``durations``, equally likely."""
    grid = np.arange(0.0, cap + 2 * STEP, STEP)
    ends = np.sort(np.array(durations))
    return np.searchsorted(ends, grid, side="right") / len(ends)


def test_one_known_duration_costs_the_first_poll_and_one_more() -> None:
    cdf = point_masses(30.0)
    best = s3.oracle_schedule(cdf, lag=5.0, price=10.0, first=1.0, min_gap=2.0, max_gap=60.0)
    assert best.calls == pytest.approx(2.0)
    assert best.covered == pytest.approx(1.0)
    assert best.polls[0] == 1.0
    assert 30.0 <= best.polls[1] <= 35.0


def test_max_gap_forces_polls_while_nothing_can_end() -> None:
    cdf = point_masses(30.0)
    best = s3.oracle_schedule(cdf, lag=5.0, price=10.0, first=1.0, min_gap=2.0, max_gap=10.0)
    assert best.calls == pytest.approx(4.0)  # 1, then <= 11, <= 21, then 30..31
    gaps = np.diff(best.polls)
    assert gaps.max() <= 10.0
    assert best.covered == pytest.approx(1.0)


def test_the_bound_gives_up_early_jobs_rather_than_late_ones() -> None:
    # Half the jobs end at 20 s, half at 100 s. Covering the late half costs
    # polls at 1, 61 (max_gap), 100: 1 + 1 + 0.5 calls. Covering the early half
    # instead costs more (1, 20, then 80 and 100 for the rest: 1 + 1 + 0.5 + 0.5),
    # and that is also what covering both costs.
    cdfs = {"only": point_masses(20.0, 100.0)}
    half = s3.oracle_bound(5.0, cdfs, first=1.0, min_gap=2.0, max_gap=60.0, cover=0.5)
    assert half.calls_per_job == pytest.approx(2.5)
    assert half.covered == pytest.approx(0.5)
    polls = half.per_type["only"].polls
    assert any(100.0 <= t <= 105.0 for t in polls)
    assert not any(20.0 <= t <= 25.0 for t in polls)
    every = s3.oracle_bound(5.0, cdfs, first=1.0, min_gap=2.0, max_gap=60.0, cover=1.0)
    assert every.calls_per_job == pytest.approx(3.0)
    assert every.covered == pytest.approx(1.0)


def test_types_share_the_misses() -> None:
    # Two types; 3/4 of all jobs must be covered. Type "a" is cheap to cover
    # entirely, "b" (ending at 20 or 100) only its late half: pooled 0.75.
    cdfs = {"a": point_masses(30.0), "b": point_masses(20.0, 100.0)}
    bound = s3.oracle_bound(5.0, cdfs, first=1.0, min_gap=2.0, max_gap=60.0, cover=0.75)
    assert bound.per_type["a"].covered == pytest.approx(1.0)
    assert bound.per_type["b"].covered == pytest.approx(0.5)
    assert bound.calls_per_job == pytest.approx((2.0 + 2.5) / 2)


def test_the_bound_is_below_a_feasible_schedule_and_meets_its_cover() -> None:
    params = s3.Params()
    kind = s3.JOB_MIX[1]
    cdf = s3.duration_cdf(kind, params, seed=5)
    bound = s3.oracle_bound(9.5, {kind.job_type: cdf}, first=1.0, min_gap=2.0, max_gap=60.0)
    assert bound.covered >= s3.ORACLE_COVER
    assert bound.calls_per_job <= bound.schedule_calls <= bound.calls_per_job + 0.05
    # A feasible schedule: poll at 1, then every 9.5 s from 9.5 s on (covers all).
    polls = [1.0, *np.arange(9.5, params.max_duration + 9.5, 9.5)]
    survival = 1.0 - cdf
    calls = 1.0 + sum(survival[round(t / STEP)] for t in polls[:-1])
    assert bound.calls_per_job < calls


def replay_result(model: DurationModel, timeline: tuple[float, float, float]) -> s3.Result:
    result = s3.Result(s3.Params(speed=1.0))
    result.cohorts = [["job"]]
    result.timelines = {"job": timeline}
    result.job_types = {"job": "t"}
    result.models = {"t": model.to_json()}
    return result


def test_replay_follows_the_learned_schedule_from_the_first_poll() -> None:
    # sigma 0.1 around 100 s: the window opens at ~82.5 + 8 = ~90.5 s.
    model = DurationModel(count=100.0, mean=math.log(100.0), m2=99 * 0.01)
    opens, _ = model.window(s3._policies(s3.Params(speed=1.0))[1])
    assert 90.0 < opens < 91.0
    # Created at 0, RUNNING at 5 (the model applies while INIT too), ended at 100.
    counts = s3.replay_breakdown(replay_result(model, (0.0, 5.0, 100.0)), adaptive=True)
    assert counts["first poll"] == 1.0  # at 1 s
    assert counts["before the window (sleeping until it opens)"] == 1.0  # at 61 s
    # The window's first poll at 88.9-90.5 s, then every 8 s: 96.9-98.5, then the end.
    assert counts["window (every target_lag)"] == 2.0
    assert counts["the poll that sees the end"] == 1.0
    assert counts["straggler backoff (past the window)"] == 0.0
    assert counts["backoff (no model)"] == 0.0


def test_replay_without_a_model_is_plain_backoff() -> None:
    model = DurationModel(count=100.0, mean=math.log(100.0), m2=99 * 0.01)
    counts = s3.replay_breakdown(replay_result(model, (0.0, 5.0, 100.0)), adaptive=False)
    assert counts["first poll"] == 1.0
    assert counts["window (every target_lag)"] == 0.0
    assert counts["backoff (no model)"] > 3.0
