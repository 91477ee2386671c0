"""Tests of jobwatchd.policy: what each poll outcome does to a job.

Each case compares the whole decision (next poll, the poll should the write
fail, the change, the conclusion, counters, last_error, pause, log line,
reachability) with the expected one, so any changed rule fails a case.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from jobwatchd.backoff import BackoffPolicy
from jobwatchd.cloud.client import classify
from jobwatchd.engine.tracker import ActiveJob
from jobwatchd.learning import AdaptivePolicy, DurationModel
from jobwatchd.models import (
    ERROR,
    FAIL,
    INIT,
    NOT_FOUND,
    PENDING,
    PENDING_PAYMENT,
    RUNNING,
    SUCCESS,
    TIMEOUT,
)
from jobwatchd.outcome import NOT_FOUND_HINT, Outcome, OutcomeKind, UpstreamError, not_found_error
from jobwatchd.policy import (
    DEADLINE,
    NOT_FOUND_GRACE,
    REJECTED,
    REJECTIONS_BEFORE_ERROR,
    Decision,
    PollSettings,
    Reschedule,
    decide,
    decide_due,
    parse_time,
    retry,
)
from jobwatchd.statemachine import Snapshot

NOW = 1_700_000_000.0
MID = 0.5  # the draw that leaves an interval at its base (no jitter either way)
# With MID: 2, 4, 8, 16, 32, then 60 (the cap) from attempt 5 on.
BACKOFF = BackoffPolicy(min_interval=2.0, max_interval=60.0, multiplier=2.0, jitter=0.5)
GRACE = 30.0
SETTINGS = PollSettings(backoff=BACKOFF, initial_delay=1.0, timeout=3600.0, not_found_grace=GRACE)
TARGET_LAG = 5.0
ADAPTIVE = dataclasses.replace(SETTINGS, adaptive=AdaptivePolicy(target_lag=TARGET_LAG))
SUB = "sub-1"

E503 = UpstreamError(code=None, message="HTTP 503", http_status=503)
E400 = UpstreamError(code="Ecs.0005", message="bad request", http_status=400)
E404 = UpstreamError(code="Common.0011", message="Invalid job ID", http_status=404)
E401 = UpstreamError(code="APIGW.0301", message="not authorized", http_status=401)
E429 = UpstreamError(code="APIGW.0308", message="throttled", http_status=429)


def job(status: str = RUNNING, **changes: Any) -> ActiveJob:
    """An active job in ``status`` (its snapshot too), deadline 1000 s away."""
    fields: dict[str, Any] = {
        "job_id": "j-1",
        "project_id": "p1",
        "account": "acct",
        "status": status,
        "version": 3,
        "deadline": NOW + 1000.0,
        "snapshot": Snapshot(status=status, transitions=0 if status == PENDING else 2),
    }
    fields.update(changes)
    return ActiveJob(**fields)


def failed(
    kind: OutcomeKind, error: UpstreamError | None, retry_after: float | None = None
) -> Outcome:
    return Outcome(kind=kind, error=error, retry_after=retry_after)


def answer(status: str, subs: dict[str, str] | None = None, **body: Any) -> Outcome:
    """A job document, classified as upstream's answer would be."""
    document: dict[str, Any] = {"status": status, "entities": {}, **body}
    if subs is not None:
        document["entities"] = {
            "sub_jobs": [{"job_id": key, "status": value} for key, value in subs.items()]
        }
    return classify(200, {}, orjson.dumps(document), now=NOW, job_id="j-1")


def summary(decision: Decision) -> dict[str, Any]:
    """The decision as plain values (the log line by level and event)."""

    def plan(value: Reschedule | None) -> tuple[float, int] | None:
        return None if value is None else (round(value.delay, 9), value.attempt)

    change = decision.change
    return {
        "poll": plan(decision.poll),
        "if_not_recorded": plan(decision.if_not_recorded),
        "change": None
        if change is None
        else [(t.kind, t.subject, t.from_status, t.to_status) for t in change.transitions],
        "snapshot": None if change is None else change.snapshot.status,
        "concluded": decision.concluded,
        "reason": decision.reason,
        "rejections": decision.rejections,
        "not_found_since": decision.not_found_since,
        "last_error": decision.last_error,
        "pause_account": decision.pause_account,
        "log": None if decision.log is None else (decision.log.level, decision.log.event),
        "reachable": decision.reachable,
    }


# What a poll that changes nothing decides for the default job (attempt 0, no failures).
NOTHING: dict[str, Any] = {
    "poll": (2.0, 1),
    "if_not_recorded": None,
    "change": None,
    "snapshot": None,
    "concluded": None,
    "reason": None,
    "rejections": 0,
    "not_found_since": None,
    "last_error": None,
    "pause_account": None,
    "log": None,
    "reachable": True,
}


def expect(**changes: Any) -> dict[str, Any]:
    return {**NOTHING, **changes}


CASES: list[tuple[str, ActiveJob, Outcome, float, float, dict[str, Any]]] = [
    # -- transient upstream errors: backoff --------------------------------------------
    (
        "transient first",
        job(),
        failed(OutcomeKind.TRANSIENT, E503),
        NOW,
        MID,
        expect(last_error=E503, log=("warning", "poll.failed"), reachable=False),
    ),
    (
        "transient backs off",
        job(attempt=3),
        failed(OutcomeKind.TRANSIENT, E503),
        NOW,
        MID,
        expect(poll=(16.0, 4), last_error=E503, log=("warning", "poll.failed"), reachable=False),
    ),
    (
        "transient jitter low",
        job(attempt=3),
        failed(OutcomeKind.TRANSIENT, E503),
        NOW,
        0.0,
        expect(poll=(8.0, 4), last_error=E503, log=("warning", "poll.failed"), reachable=False),
    ),
    (
        "transient jitter high",
        job(attempt=3),
        failed(OutcomeKind.TRANSIENT, E503),
        NOW,
        0.75,
        expect(poll=(20.0, 4), last_error=E503, log=("warning", "poll.failed"), reachable=False),
    ),
    (
        "backoff just below the cap",
        job(attempt=4),
        failed(OutcomeKind.TRANSIENT, E503),
        NOW,
        MID,
        expect(poll=(32.0, 5), last_error=E503, log=("warning", "poll.failed"), reachable=False),
    ),
    (
        "backoff at the cap",
        job(attempt=5),
        failed(OutcomeKind.TRANSIENT, E503),
        NOW,
        MID,
        expect(poll=(60.0, 6), last_error=E503, log=("warning", "poll.failed"), reachable=False),
    ),
    (
        "backoff cap holds under jitter",
        job(attempt=5),
        failed(OutcomeKind.TRANSIENT, E503),
        NOW,
        0.99,
        expect(poll=(60.0, 6), last_error=E503, log=("warning", "poll.failed"), reachable=False),
    ),
    (
        "backoff cap after a million attempts",
        job(attempt=10**6),
        failed(OutcomeKind.TRANSIENT, E503),
        NOW,
        MID,
        expect(
            poll=(60.0, 10**6 + 1), last_error=E503, log=("warning", "poll.failed"), reachable=False
        ),
    ),
    (
        "transient keeps the rejections and the 404 clock",
        job(rejections=2, not_found_since=NOW - 10.0),
        failed(OutcomeKind.TRANSIENT, E503),
        NOW,
        MID,
        expect(
            rejections=2,
            not_found_since=NOW - 10.0,
            last_error=E503,
            log=("warning", "poll.failed"),
            reachable=False,
        ),
    ),
    (
        "transient without an error keeps last_error",
        job(),
        failed(OutcomeKind.TRANSIENT, None),
        NOW,
        MID,
        expect(log=("warning", "poll.failed"), reachable=False),
    ),
    (
        "poll capped at the deadline",
        job(attempt=3, deadline=NOW + 1.5),
        failed(OutcomeKind.TRANSIENT, E503),
        NOW,
        MID,
        expect(poll=(1.5, 4), last_error=E503, log=("warning", "poll.failed"), reachable=False),
    ),
    (
        "deadline passed during the poll: due now",
        job(attempt=3, deadline=NOW - 0.5),
        failed(OutcomeKind.TRANSIENT, E503),
        NOW,
        MID,
        expect(poll=(0.0, 4), last_error=E503, log=("warning", "poll.failed"), reachable=False),
    ),
    (
        "pending payment polls at the longest interval",
        job(PENDING_PAYMENT),
        failed(OutcomeKind.TRANSIENT, E503),
        NOW,
        MID,
        expect(poll=(60.0, 1), last_error=E503, log=("warning", "poll.failed"), reachable=False),
    ),
    # -- unauthorized: retried, the account unreachable --------------------------------
    (
        "unauthorized",
        job(attempt=1),
        failed(OutcomeKind.UNAUTHORIZED, E401),
        NOW,
        MID,
        expect(poll=(4.0, 2), last_error=E401, log=("error", "poll.unauthorized"), reachable=False),
    ),
    # -- rejections: the third ends the job ERROR --------------------------------------
    (
        "first rejection",
        job(),
        failed(OutcomeKind.REJECTED, E400),
        NOW,
        MID,
        expect(rejections=1, last_error=E400, log=("warning", "poll.rejected")),
    ),
    (
        "second rejection",
        job(rejections=1, attempt=1),
        failed(OutcomeKind.REJECTED, E400),
        NOW,
        MID,
        expect(poll=(4.0, 2), rejections=2, last_error=E400, log=("warning", "poll.rejected")),
    ),
    (
        "third rejection ends the job ERROR",
        job(rejections=2, attempt=2),
        failed(OutcomeKind.REJECTED, E400),
        NOW,
        MID,
        expect(
            poll=None,
            if_not_recorded=(8.0, 3),
            change=[("job", "", RUNNING, ERROR)],
            snapshot=ERROR,
            concluded=ERROR,
            reason=REJECTED,
            rejections=3,
            last_error=E400,
        ),
    ),
    (
        "a rejection after an unrecorded ERROR concludes again",
        job(rejections=3, attempt=3),
        failed(OutcomeKind.REJECTED, E400),
        NOW,
        MID,
        expect(
            poll=None,
            if_not_recorded=(16.0, 4),
            change=[("job", "", RUNNING, ERROR)],
            snapshot=ERROR,
            concluded=ERROR,
            reason=REJECTED,
            rejections=4,
            last_error=E400,
        ),
    ),
    (
        "rejections count across a 404",
        job(rejections=2, not_found_since=NOW),
        failed(OutcomeKind.NOT_FOUND, E404),
        NOW + 1.0,
        MID,
        expect(
            rejections=2,
            not_found_since=NOW,
            last_error=E404,
            log=("info", "poll.not_found"),
        ),
    ),
    # -- NOT_FOUND: the grace period from the first 404 --------------------------------
    (
        "first 404 starts the clock",
        job(),
        failed(OutcomeKind.NOT_FOUND, E404),
        NOW,
        MID,
        expect(not_found_since=NOW, last_error=E404, log=("info", "poll.not_found")),
    ),
    (
        "404 poll capped at the end of the grace",
        job(attempt=3, not_found_since=NOW - 25.0),
        failed(OutcomeKind.NOT_FOUND, E404),
        NOW,
        MID,
        expect(
            poll=(5.0, 4),
            not_found_since=NOW - 25.0,
            last_error=E404,
            log=("info", "poll.not_found"),
        ),
    ),
    (
        "404 just inside the grace",
        job(not_found_since=NOW - (GRACE - 0.25)),
        failed(OutcomeKind.NOT_FOUND, E404),
        NOW,
        MID,
        expect(
            poll=(0.25, 1),
            not_found_since=NOW - (GRACE - 0.25),
            last_error=E404,
            log=("info", "poll.not_found"),
        ),
    ),
    (
        "404 at the end of the grace ends the job NOT_FOUND",
        job(attempt=2, not_found_since=NOW - GRACE),
        failed(OutcomeKind.NOT_FOUND, E404),
        NOW,
        MID,
        expect(
            poll=None,
            if_not_recorded=(8.0, 3),
            change=[("job", "", RUNNING, NOT_FOUND)],
            snapshot=NOT_FOUND,
            concluded=NOT_FOUND,
            reason=NOT_FOUND_GRACE,
            not_found_since=NOW - GRACE,
            last_error=not_found_error(E404),
        ),
    ),
    (
        "a never-seen job ends NOT_FOUND from PENDING",
        job(PENDING, not_found_since=NOW - 100.0),
        failed(OutcomeKind.NOT_FOUND, None),
        NOW,
        MID,
        expect(
            poll=None,
            if_not_recorded=(2.0, 1),
            change=[("job", "", None, NOT_FOUND)],
            snapshot=NOT_FOUND,
            concluded=NOT_FOUND,
            reason=NOT_FOUND_GRACE,
            not_found_since=NOW - 100.0,
            last_error=not_found_error(None),
        ),
    ),
    # -- throttling: the account pauses ------------------------------------------------
    (
        "throttled with Retry-After",
        job(attempt=3),
        failed(OutcomeKind.THROTTLED, E429, retry_after=7.0),
        NOW,
        MID,
        expect(
            poll=(7.0, 4), last_error=E429, pause_account=7.0, log=("warning", "account.throttled")
        ),
    ),
    (
        "throttled without Retry-After pauses for the backoff",
        job(attempt=3),
        failed(OutcomeKind.THROTTLED, E429),
        NOW,
        0.0,
        expect(
            poll=(8.0, 4), last_error=E429, pause_account=8.0, log=("warning", "account.throttled")
        ),
    ),
    (
        "throttled with Retry-After 0",
        job(attempt=3),
        failed(OutcomeKind.THROTTLED, E429, retry_after=0.0),
        NOW,
        MID,
        expect(
            poll=(0.0, 4), last_error=E429, pause_account=0.0, log=("warning", "account.throttled")
        ),
    ),
    (
        "throttled near the deadline: the pause is whole, the poll at the deadline",
        job(deadline=NOW + 3.0),
        failed(OutcomeKind.THROTTLED, E429, retry_after=7.0),
        NOW,
        MID,
        expect(
            poll=(3.0, 1), last_error=E429, pause_account=7.0, log=("warning", "account.throttled")
        ),
    ),
    (
        "throttled past the deadline: the poll is due now",
        job(deadline=NOW - 1.0),
        failed(OutcomeKind.THROTTLED, E429, retry_after=7.0),
        NOW,
        MID,
        expect(
            poll=(-1.0, 1), last_error=E429, pause_account=7.0, log=("warning", "account.throttled")
        ),
    ),
    # -- answers ----------------------------------------------------------------------
    (
        "unchanged answer backs off",
        job(attempt=3),
        answer(RUNNING),
        NOW,
        MID,
        expect(poll=(16.0, 4)),
    ),
    (
        "an answer resets the rejections and the 404 clock",
        job(rejections=2, not_found_since=NOW - 20.0),
        answer(RUNNING),
        NOW,
        MID,
        expect(),
    ),
    (
        "a query problem reported with the document is kept",
        job(),
        answer(RUNNING, code="Ecs.0001", message="partly"),
        NOW,
        MID,
        expect(last_error=UpstreamError(code="Ecs.0001", message="partly", http_status=200)),
    ),
    (
        "first answer of a new job",
        job(PENDING, attempt=2),
        answer(INIT),
        NOW,
        MID,
        expect(
            poll=(2.0, 1),
            if_not_recorded=(8.0, 3),
            change=[("job", "", None, INIT)],
            snapshot=INIT,
        ),
    ),
    (
        "a new status starts the backoff over",
        job(INIT, attempt=3),
        answer(RUNNING),
        NOW,
        MID,
        expect(
            poll=(2.0, 1),
            if_not_recorded=(16.0, 4),
            change=[("job", "", INIT, RUNNING)],
            snapshot=RUNNING,
        ),
    ),
    (
        "terminal answer ends the job",
        job(attempt=3),
        answer(SUCCESS),
        NOW,
        MID,
        expect(
            poll=None,
            if_not_recorded=(16.0, 4),
            change=[("job", "", RUNNING, SUCCESS)],
            snapshot=SUCCESS,
        ),
    ),
    (
        "PENDING_PAYMENT answer polls at the longest interval",
        job(attempt=1),
        answer(PENDING_PAYMENT),
        NOW,
        MID,
        expect(
            poll=(60.0, 1),
            if_not_recorded=(4.0, 2),
            change=[("job", "", RUNNING, PENDING_PAYMENT)],
            snapshot=PENDING_PAYMENT,
        ),
    ),
    (
        "paid: back to the shortest interval",
        job(PENDING_PAYMENT, attempt=7),
        answer(RUNNING),
        NOW,
        MID,
        expect(
            poll=(2.0, 1),
            if_not_recorded=(60.0, 8),
            change=[("job", "", PENDING_PAYMENT, RUNNING)],
            snapshot=RUNNING,
        ),
    ),
    (
        "still PENDING_PAYMENT",
        job(PENDING_PAYMENT, attempt=0),
        answer(PENDING_PAYMENT),
        NOW,
        MID,
        expect(poll=(60.0, 1)),
    ),
    (
        "new sub-job starts the backoff over",
        job(attempt=3),
        answer(RUNNING, {SUB: RUNNING}),
        NOW,
        MID,
        expect(
            poll=(2.0, 1),
            if_not_recorded=(16.0, 4),
            change=[("subjob", SUB, None, RUNNING)],
            snapshot=RUNNING,
        ),
    ),
    (
        "sub-job change before the parent's",
        job(
            attempt=3,
            snapshot=Snapshot(status=RUNNING, transitions=2, sub_jobs={SUB: (RUNNING, 1)}),
        ),
        answer(FAIL, {SUB: FAIL}),
        NOW,
        MID,
        expect(
            poll=None,
            if_not_recorded=(16.0, 4),
            change=[("subjob", SUB, RUNNING, FAIL), ("job", "", RUNNING, FAIL)],
            snapshot=FAIL,
        ),
    ),
    (
        "ended sub-job is sticky: no change",
        job(
            attempt=3,
            snapshot=Snapshot(status=RUNNING, transitions=2, sub_jobs={SUB: (SUCCESS, 2)}),
        ),
        answer(RUNNING, {SUB: RUNNING}),
        NOW,
        MID,
        expect(poll=(16.0, 4)),
    ),
    (
        "a change capped at the deadline",
        job(INIT, deadline=NOW + 0.5),
        answer(RUNNING),
        NOW,
        MID,
        expect(
            poll=(0.5, 1),
            if_not_recorded=(0.5, 1),
            change=[("job", "", INIT, RUNNING)],
            snapshot=RUNNING,
        ),
    ),
    (
        "an unexpected status is logged when it arrives",
        job(),
        answer("QUEUED"),
        NOW,
        MID,
        expect(
            if_not_recorded=(2.0, 1),
            change=[("job", "", RUNNING, "QUEUED")],
            snapshot="QUEUED",
            log=("warning", "poll.unexpected_status"),
        ),
    ),
    (
        "an unexpected status is not logged again",
        job("QUEUED"),
        answer("QUEUED"),
        NOW,
        MID,
        expect(),
    ),
    (
        "an unexpected sub-job status seen before is not logged with a new one",
        job(snapshot=Snapshot(status=RUNNING, transitions=2, sub_jobs={SUB: ("ODD", 1)})),
        answer(SUCCESS, {SUB: "ODD"}),
        NOW,
        MID,
        expect(
            poll=None,
            if_not_recorded=(2.0, 1),
            change=[("job", "", RUNNING, SUCCESS)],
            snapshot=SUCCESS,
        ),
    ),
    (
        "upstream saying TIMEOUT is not jobwatchd's TIMEOUT",
        job(),
        answer(TIMEOUT),
        NOW,
        MID,
        expect(
            if_not_recorded=(2.0, 1),
            change=[("job", "", RUNNING, "upstream:TIMEOUT")],
            snapshot="upstream:TIMEOUT",
            log=("warning", "poll.unexpected_status"),
        ),
    ),
]


@pytest.mark.parametrize(
    ("state", "outcome", "now", "rand", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decide(
    state: ActiveJob, outcome: Outcome, now: float, rand: float, expected: dict[str, Any]
) -> None:
    assert summary(decide(state, outcome, now, SETTINGS, rand=rand)) == expected


def test_rejections_before_error_is_three() -> None:
    assert REJECTIONS_BEFORE_ERROR == 3


def test_every_outcome_kind_has_a_case() -> None:
    assert {case[2].kind for case in CASES} == set(OutcomeKind)


@pytest.mark.parametrize(
    ("kind", "event", "extra"),
    [
        (OutcomeKind.TRANSIENT, "poll.failed", {}),
        (OutcomeKind.UNAUTHORIZED, "poll.unauthorized", {}),
        (OutcomeKind.REJECTED, "poll.rejected", {"rejections": 1}),
        (OutcomeKind.NOT_FOUND, "poll.not_found", {"waited": 12.346}),
        (OutcomeKind.THROTTLED, "account.throttled", {"pause": 2.123}),
    ],
)
def test_log_line_names_the_job_and_the_error(
    kind: OutcomeKind, event: str, extra: dict[str, Any]
) -> None:
    error = UpstreamError(code="C.1", message="said so", http_status=418)
    outcome = Outcome(kind=kind, error=error, retry_after=2.12345)
    state = job(not_found_since=NOW - 12.34567)
    line = decide(state, outcome, NOW, SETTINGS, rand=MID).log
    assert line is not None
    assert line.event == event
    assert dict(line.fields) == {
        **extra,
        "job_id": "j-1",
        "account": "acct",
        "error_code": "C.1",
        "error_message": "said so",
        "http_status": 418,
    }


def test_unexpected_status_line_lists_the_statuses_that_arrived() -> None:
    state = job(snapshot=Snapshot(status=RUNNING, transitions=2, sub_jobs={"b": ("ODD", 1)}))
    line = decide(state, answer("WEIRD", {"a": "QUEUED", "b": "ODD"}), NOW, SETTINGS, rand=MID).log
    assert line is not None
    assert (line.level, line.event) == ("warning", "poll.unexpected_status")
    assert dict(line.fields) == {"job_id": "j-1", "statuses": ["QUEUED", "WEIRD"]}


def test_not_found_conclusion_explains_late_registration() -> None:
    decision = decide(
        job(not_found_since=NOW - GRACE),
        failed(OutcomeKind.NOT_FOUND, E404),
        NOW,
        SETTINGS,
        rand=MID,
    )
    assert decision.last_error is not None
    assert decision.last_error.message == f"Invalid job ID; {NOT_FOUND_HINT}"
    assert (decision.last_error.code, decision.last_error.http_status) == ("Common.0011", 404)


def test_no_grace_ends_on_the_first_404() -> None:
    settings = dataclasses.replace(SETTINGS, not_found_grace=0.0)
    decision = decide(job(), failed(OutcomeKind.NOT_FOUND, E404), NOW, settings, rand=MID)
    assert (decision.concluded, decision.not_found_since) == (NOT_FOUND, NOW)


def test_the_change_carries_the_answer_and_the_new_snapshot() -> None:
    outcome = answer(RUNNING, {SUB: RUNNING})
    decision = decide(job(attempt=3), outcome, NOW, SETTINGS, rand=MID)
    assert decision.change is not None
    assert decision.change.response is outcome.response
    assert decision.change.snapshot == Snapshot(
        status=RUNNING, transitions=2, sub_jobs={SUB: (RUNNING, 1)}
    )


def test_a_conclusion_carries_no_answer() -> None:
    decision = decide(
        job(rejections=2), failed(OutcomeKind.REJECTED, E400), NOW, SETTINGS, rand=MID
    )
    assert decision.change is not None
    assert decision.change.response is None
    assert decision.change.snapshot == Snapshot(status=ERROR, transitions=3)


# -- what an answer teaches: type and begin time ---------------------------------------

BEGIN = "2023-11-14T22:11:40.000Z"  # NOW - 100 s


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (job(), ("createServer", NOW - 100.0)),
        (job(job_type="deleteServer", began_at=NOW - 5.0), ("deleteServer", NOW - 5.0)),
    ],
    ids=["learned from the answer", "known ones kept"],
)
def test_an_answer_teaches_type_and_begin_time(
    state: ActiveJob, expected: tuple[str, float]
) -> None:
    outcome = answer(RUNNING, job_type="createServer", begin_time=BEGIN)
    decision = decide(state, outcome, NOW, SETTINGS, rand=MID)
    assert (decision.job_type, decision.began_at) == expected


def test_failures_keep_type_and_begin_time() -> None:
    state = job(job_type="deleteServer", began_at=NOW - 5.0)
    decision = decide(state, failed(OutcomeKind.TRANSIENT, E503), NOW, SETTINGS, rand=MID)
    assert (decision.job_type, decision.began_at) == ("deleteServer", NOW - 5.0)


# -- the learned schedule ------------------------------------------------------------------


def ready_model(samples: int = 5) -> DurationModel:
    """Jobs that took 100 s, 110 s, 90 s...: the window opens before 100 s and closes after."""
    model = DurationModel()
    for n in range(samples):
        model.observe(100.0 + 10.0 * (n % 3 - 1))
    return model


MODELS = {"createServer": ready_model()}


@pytest.mark.parametrize(
    ("state", "outcome", "models", "expected"),
    [
        (
            job(attempt=3, job_type="createServer", began_at=NOW - 100.0),
            answer(RUNNING),
            MODELS,
            expect(poll=(TARGET_LAG, 4)),
        ),
        (
            job(attempt=3),
            answer(RUNNING, job_type="createServer", begin_time=BEGIN),
            MODELS,
            expect(poll=(TARGET_LAG, 4)),
        ),
        (
            job(INIT, attempt=3, job_type="createServer", began_at=NOW - 100.0),
            answer(RUNNING),
            MODELS,
            expect(
                poll=(TARGET_LAG, 1),
                if_not_recorded=(TARGET_LAG, 4),
                change=[("job", "", INIT, RUNNING)],
                snapshot=RUNNING,
            ),
        ),
        (
            job(attempt=3, job_type="createServer", began_at=NOW - 100.0),
            answer(RUNNING),
            {"createServer": ready_model(4)},
            expect(poll=(16.0, 4)),
        ),
        (
            job(attempt=3, job_type="createServer", began_at=NOW - 100.0),
            answer(RUNNING),
            {"deleteServer": ready_model()},
            expect(poll=(16.0, 4)),
        ),
        (
            job(attempt=3, job_type="createServer"),
            answer(RUNNING),
            MODELS,
            expect(poll=(16.0, 4)),
        ),
        (
            job("QUEUED", attempt=3, job_type="createServer", began_at=NOW - 100.0),
            answer("QUEUED"),
            MODELS,
            expect(poll=(16.0, 4)),
        ),
        (
            job(PENDING_PAYMENT, attempt=3, job_type="createServer", began_at=NOW - 100.0),
            answer(PENDING_PAYMENT),
            MODELS,
            expect(poll=(60.0, 4)),
        ),
        (
            job(attempt=3, job_type="createServer", began_at=NOW - 100.0),
            failed(OutcomeKind.TRANSIENT, E503),
            MODELS,
            expect(
                poll=(TARGET_LAG, 4),
                last_error=E503,
                log=("warning", "poll.failed"),
                reachable=False,
            ),
        ),
    ],
    ids=[
        "in the window: every target_lag",
        "type and begin learned from this answer",
        "a change in the window",
        "model not ready: backoff",
        "no model of this type: backoff",
        "begin time unknown: backoff",
        "a status not known to run: backoff",
        "pending payment: longest interval",
        "failure in the window: every target_lag",
    ],
)
def test_learned_schedule(
    state: ActiveJob,
    outcome: Outcome,
    models: dict[str, DurationModel],
    expected: dict[str, Any],
) -> None:
    decision = decide(state, outcome, NOW, ADAPTIVE, rand=MID, models=models)
    assert summary(decision) == expected


def test_learned_schedule_off_without_adaptive_settings() -> None:
    state = job(attempt=3, job_type="createServer", began_at=NOW - 100.0)
    decision = decide(state, answer(RUNNING), NOW, SETTINGS, rand=MID, models=MODELS)
    assert decision.poll == Reschedule(delay=16.0, attempt=4)


# -- a due job: TIMEOUT at the deadline ------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "now", "expected"),
    [
        (job(deadline=NOW + 0.001), NOW, None),
        (
            job(deadline=NOW, attempt=2, rejections=1, not_found_since=NOW - 3.0),
            NOW,
            expect(
                poll=None,
                # A TIMEOUT not recorded is retried after the backoff, not at once.
                if_not_recorded=(8.0, 3),
                change=[("job", "", RUNNING, TIMEOUT)],
                snapshot=TIMEOUT,
                concluded=TIMEOUT,
                reason=DEADLINE,
                rejections=1,
                not_found_since=NOW - 3.0,
                reachable=None,
            ),
        ),
        (
            job(PENDING, deadline=NOW - 60.0),
            NOW,
            expect(
                poll=None,
                if_not_recorded=(2.0, 1),
                change=[("job", "", None, TIMEOUT)],
                snapshot=TIMEOUT,
                concluded=TIMEOUT,
                reason=DEADLINE,
                reachable=None,
            ),
        ),
    ],
    ids=["just before the deadline: poll", "at the deadline: TIMEOUT", "never seen, long past"],
)
def test_decide_due(state: ActiveJob, now: float, expected: dict[str, Any] | None) -> None:
    decision = decide_due(state, now, SETTINGS, rand=MID)
    assert (None if decision is None else summary(decision)) == expected


# -- a crashed poll ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (job(attempt=2), Reschedule(delay=8.0, attempt=3)),
        (job(attempt=2, deadline=NOW + 1.0), Reschedule(delay=1.0, attempt=3)),
        (job(PENDING_PAYMENT), Reschedule(delay=60.0, attempt=1)),
    ],
    ids=["backoff", "capped at the deadline", "pending payment"],
)
def test_retry_after_a_crash(state: ActiveJob, expected: Reschedule) -> None:
    assert retry(state, NOW, SETTINGS, rand=MID) == expected


# -- the decision itself -------------------------------------------------------------------------


def test_decide_reads_the_job_and_changes_nothing() -> None:
    state = job(attempt=3, rejections=2, not_found_since=NOW - 1.0)
    before = dataclasses.replace(state)
    decide(state, failed(OutcomeKind.REJECTED, E400), NOW, SETTINGS, rand=MID)
    decide(state, failed(OutcomeKind.NOT_FOUND, E404), NOW, SETTINGS, rand=MID)
    decide(
        state, answer(SUCCESS, job_type="createServer", begin_time=BEGIN), NOW, SETTINGS, rand=MID
    )
    assert state == before


def test_a_decision_is_frozen() -> None:
    decision = decide(job(), answer(RUNNING), NOW, SETTINGS, rand=MID)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.poll = None  # type: ignore[misc]


def test_the_same_inputs_decide_the_same() -> None:
    outcome = failed(OutcomeKind.TRANSIENT, E503)
    first = decide(job(attempt=2), outcome, NOW, SETTINGS, rand=0.3)
    assert decide(job(attempt=2), outcome, NOW, SETTINGS, rand=0.3) == first
    assert decide(job(attempt=2), outcome, NOW, SETTINGS, rand=0.7) != first


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2023-11-14T22:11:40.000Z", NOW - 100.0),
        ("2023-11-14T22:11:40Z", NOW - 100.0),  # ELB
        ("2023-11-15T06:11:40+0800", NOW - 100.0),  # the RDS family
        ("2023-11-14 22:11:40", NOW - 100.0),  # SFS Turbo: no zone, UTC
        ("2023-11-14T22:11:40", NOW - 100.0),
        ("2023-11-14 22:11:40.000000000 +0000 UTC", NOW - 100.0),  # CCE: Go's time.String()
        ("2023-11-14 22:11:40.250000001 +0000 UTC", NOW - 99.75),
        ("2023-11-15 06:11:40 +0800 CST", NOW - 100.0),
        ("2023-11-14 22:11:40.5 +0000", NOW - 99.5),
        (str(int((NOW - 100.0) * 1000)), NOW - 100.0),  # DCS: epoch milliseconds
        ("1" * 15, 111_111_111_111.111),
        ("1" * 16, None),  # past the year 33658: not a time
        ("\u0661\u0667" + "\u0660" * 11, None),  # digits, but not ASCII ones
        ("2023-11-14 22:11:40.1234567890 +0000 UTC", None),  # ten fraction digits
        ("2023-11-14 22:11:40 +0000 utc", None),
        ("2023-11-14T22:11:40Z" + " " * 60, None),  # longer than any timestamp
        ("", None),
        (None, None),
        ("yesterday", None),
    ],
)
def test_parse_time(value: str | None, expected: float | None) -> None:
    assert parse_time(value) == expected


# -- classified answers, end to end through the policy ---------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "concluded"),
    [
        (400, {"error": {"code": "Ecs.0005", "message": "bad"}}, ERROR),
        (200, {"status": RUNNING, "entities": {"sub_jobs": [{}] * 5001}}, ERROR),
        (200, {"status": RUNNING, "job_id": "someone-else"}, None),
        (503, {}, None),
        (404, {}, None),
    ],
    ids=["4xx", "too many sub-jobs", "answer about another job", "5xx", "404 in the grace"],
)
def test_which_answers_count_towards_error(
    status: int, body: dict[str, Any], concluded: str | None
) -> None:
    """After two rejections, a third rejected answer ends the job ERROR; an
    answer about another job is transient and never does."""
    outcome = classify(status, {}, orjson.dumps(body), now=NOW, job_id="j-1")
    decision = decide(job(rejections=2), outcome, NOW, SETTINGS, rand=MID)
    assert decision.concluded == concluded
    assert decision.last_error == outcome.error
