"""Which active jobs count as overdue (pure): past their type's learned p95."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobwatchd.learning import MIN_SAMPLES, DurationModel
from jobwatchd.overdue import OVERDUE_QUANTILE, OverdueIndex, is_overdue, overdue_after

NOW = 1_800_000_000.0


def trained(seconds: list[float]) -> DurationModel:
    model = DurationModel()
    for value in seconds:
        model.observe(value)
    return model


def lognormal_model(median: float, sigma: float, count: int = 400) -> DurationModel:
    rng = random.Random(3)
    return trained([rng.lognormvariate(math.log(median), sigma) for _ in range(count)])


@pytest.mark.parametrize(
    ("began_at", "limit", "now", "expected"),
    [
        (NOW - 100.0, 60.0, NOW, True),  # well past the p95
        (NOW - 30.0, 60.0, NOW, False),  # still on time
        (NOW - 60.0, 60.0, NOW, False),  # exactly at the p95: not yet
        (NOW - 60.5, 60.0, NOW, True),  # half a second past it
        (NOW - 59.5, 59.8, NOW, True),  # begin times count to the whole second
        (NOW - 59.0, 60.0, NOW, False),
        (NOW + 30.0, 60.0, NOW, False),  # begins in the future (clock skew)
        (None, 60.0, NOW, False),  # not begun (no begin time yet)
        (NOW - 1e6, None, NOW, False),  # no model ready for its type
        (0.0, 0.5, NOW, True),  # epoch begin time from a broken upstream
    ],
)
def test_is_overdue(
    began_at: float | None, limit: float | None, now: float, expected: bool
) -> None:
    assert is_overdue(began_at, limit, now) is expected


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (None, None),
        (trained([10.0] * (MIN_SAMPLES - 1)), None),  # too few jobs to trust
        (trained([10.0] * MIN_SAMPLES), 10.0 * math.exp(0.05 * 1.6448536)),  # MIN_SIGMA
    ],
)
def test_overdue_after_needs_a_ready_model(
    model: DurationModel | None, expected: float | None
) -> None:
    found = overdue_after(model)
    if expected is None:
        assert found is None
    else:
        assert found == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(("median", "sigma"), [(5.0, 0.3), (60.0, 0.8), (600.0, 0.2)])
def test_overdue_after_is_the_learned_p95(median: float, sigma: float) -> None:
    model = lognormal_model(median, sigma)
    limit = overdue_after(model)
    assert limit is not None
    assert model.cdf(limit) == pytest.approx(OVERDUE_QUANTILE, abs=1e-6)
    assert limit == pytest.approx(median * math.exp(sigma * 1.6448536), rel=0.15)


def test_the_slow_tail_moves_the_p95() -> None:
    rng = random.Random(5)
    body = [rng.lognormvariate(math.log(10.0), 0.2) for _ in range(300)]
    slow = [rng.lognormvariate(math.log(200.0), 0.2) for _ in range(30)]
    without_tail, with_tail = trained(body), trained(body + slow)
    assert with_tail.tail_share > 0
    before, after = overdue_after(without_tail), overdue_after(with_tail)
    assert before is not None and after is not None
    assert after > 2 * before


MODELS = {"createServer": trained([10.0] * 20), "deleteServer": trained([100.0] * 20)}
LIMITS = {name: overdue_after(model) for name, model in MODELS.items()}


@pytest.mark.parametrize(
    ("jobs", "expected"),
    [
        ([], {}),
        ([("createServer", "a", NOW - 60.0)], {"a": 1}),
        ([("createServer", "a", NOW - 5.0)], {}),
        ([("deleteServer", "a", NOW - 60.0)], {}),  # its type takes longer
        ([("resizeServer", "a", NOW - 1e5)], {}),  # no model for its type
        ([(None, "a", NOW - 1e5)], {}),  # type not known yet
        ([("createServer", "a", None)], {}),  # not begun
        (
            [
                ("createServer", "a", NOW - 60.0),
                ("createServer", "a", NOW - 60.0),
                ("createServer", "b", NOW - 3600.0),
                ("deleteServer", "b", NOW - 3600.0),
                ("deleteServer", "b", NOW - 1.0),
            ],
            {"a": 2, "b": 2},
        ),
    ],
)
def test_index_counts_overdue_jobs_per_account(
    jobs: list[tuple[str | None, str, float | None]], expected: dict[str, int]
) -> None:
    index = OverdueIndex()
    for job_type, account, began_at in jobs:
        index.add(job_type, account, began_at)
    assert index.overdue(MODELS, NOW) == expected


def test_jobs_leave_the_index() -> None:
    index = OverdueIndex()
    jobs = [("createServer", "a", NOW - 60.0 - i * 0.25) for i in range(8)]
    for job in jobs:
        index.add(*job)
    assert index.overdue(MODELS, NOW) == {"a": 8}
    for removed, job in enumerate(jobs, start=1):
        index.remove(*job)
        assert index.overdue(MODELS, NOW) == ({"a": 8 - removed} if removed < 8 else {})
    assert index.size == 0
    index.remove(*jobs[0])  # not indexed any more: nothing happens
    assert index.size == 0


def test_a_model_that_learns_changes_the_verdict() -> None:
    models = {"createServer": trained([10.0] * 20)}
    index = OverdueIndex()
    index.add("createServer", "a", NOW - 60.0)
    assert index.overdue(models, NOW) == {"a": 1}
    for _ in range(500):  # the type now takes about 100 s
        models["createServer"].observe(100.0)
    assert index.overdue(models, NOW) == {}


jobs_strategy = st.lists(
    st.tuples(
        st.sampled_from(["createServer", "deleteServer", "resizeServer", None]),
        st.sampled_from(["a", "b"]),
        st.one_of(st.none(), st.floats(min_value=NOW - 400.0, max_value=NOW + 5.0)),
        st.booleans(),  # removed again later
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(jobs=jobs_strategy, seed=st.integers(0, 1000))
def test_index_agrees_with_checking_every_job(
    jobs: list[tuple[str | None, str, float | None, bool]], seed: int
) -> None:
    index = OverdueIndex()
    for job_type, account, began_at, _ in jobs:
        index.add(job_type, account, began_at)
    removed = [job for job in jobs if job[3]]
    random.Random(seed).shuffle(removed)
    for job_type, account, began_at, _ in removed:
        index.remove(job_type, account, began_at)
    expected: dict[str, int] = {}
    for job_type, account, began_at, gone in jobs:
        limit = LIMITS.get(job_type) if job_type is not None else None
        if not gone and is_overdue(began_at, limit, NOW):
            expected[account] = expected.get(account, 0) + 1
    assert index.overdue(MODELS, NOW) == expected
    begun: dict[str, int] = {}
    for job_type, account, began_at, gone in jobs:
        if not gone and job_type and began_at is not None:
            begun[account] = begun.get(account, 0) + 1
    assert index.by_account == begun
    assert index.size == sum(begun.values())
