"""The client's pure parts: typed views of the API's documents, how a wait's
outcome and exit code are decided, and problems turned into exceptions."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from jobwatchd.client import (
    CANCELLED,
    FAILED,
    PARTIAL,
    PENDING,
    SUCCEEDED,
    UNRESOLVED,
    ApiError,
    AsyncClient,
    Conflict,
    Event,
    Job,
    JobFailed,
    JobSpec,
    JobUnresolved,
    JobWaiter,
    NotTracked,
    PartialFailure,
    Unauthorized,
    UnexpectedAnswer,
    WaitResult,
    WaitTimeout,
    job_outcome,
    overall_outcome,
    raise_for_result,
)


def job(status: str, terminal: bool | None = None, subs: list[str] | None = None) -> Job:
    doc: dict[str, Any] = {
        "job_id": f"job-{status}",
        "status": status,
        "terminal": status in ("SUCCESS", "FAIL", "TIMEOUT", "NOT_FOUND", "ERROR")
        if terminal is None
        else terminal,
    }
    if subs is not None:
        doc["entities"] = {
            "sub_jobs_total": len(subs),
            "sub_jobs": [{"job_id": f"s{i}", "status": s} for i, s in enumerate(subs)],
        }
    return Job.from_dict(doc)


@pytest.mark.parametrize(
    ("status", "subs", "tracked", "expected"),
    [
        ("SUCCESS", None, True, SUCCEEDED),
        ("SUCCESS", ["SUCCESS", "SUCCESS"], True, SUCCEEDED),
        ("SUCCESS", ["SUCCESS", "FAIL"], True, PARTIAL),
        ("FAIL", ["SUCCESS", "FAIL"], True, FAILED),
        ("FAIL", None, True, FAILED),
        ("TIMEOUT", None, True, FAILED),
        ("NOT_FOUND", None, True, UNRESOLVED),
        ("ERROR", None, True, UNRESOLVED),
        ("RUNNING", ["SUCCESS", "RUNNING"], True, PENDING),
        ("RUNNING", None, False, CANCELLED),
    ],
)
def test_job_outcome(status: str, subs: list[str] | None, tracked: bool, expected: str) -> None:
    assert job_outcome(job(status, subs=subs), tracked=tracked) == expected


@pytest.mark.parametrize(
    ("outcomes", "overall", "code"),
    [
        ([SUCCEEDED, SUCCEEDED], SUCCEEDED, 0),
        ([SUCCEEDED, FAILED], FAILED, 1),
        ([PARTIAL, FAILED, PENDING], FAILED, 1),
        ([SUCCEEDED, PARTIAL, UNRESOLVED], PARTIAL, 3),
        ([UNRESOLVED, PENDING], UNRESOLVED, 4),
        ([CANCELLED, SUCCEEDED], CANCELLED, 4),
        ([PENDING, SUCCEEDED], PENDING, 124),
    ],
)
def test_the_worst_outcome_decides_the_exit_code(
    outcomes: list[str], overall: str, code: int
) -> None:
    assert overall_outcome(outcomes) == overall
    result = WaitResult(tuple(job("SUCCESS") for _ in outcomes), tuple(outcomes))
    assert (result.outcome, result.exit_code) == (overall, code)
    assert result.ok is (code == 0)


def test_a_failed_wait_raises_with_the_failed_sub_jobs() -> None:
    partial = job("SUCCESS", subs=["SUCCESS", "FAIL", "FAIL"])
    result = WaitResult((job("SUCCESS"), partial), (SUCCEEDED, PARTIAL))
    with pytest.raises(PartialFailure) as caught:
        raise_for_result(result)
    assert isinstance(caught.value, JobFailed)
    assert caught.value.job is partial
    assert [sub.job_id for sub in caught.value.failed_sub_jobs] == ["s1", "s2"]
    assert caught.value.jobs == result.jobs

    failed = job("FAIL", subs=["FAIL"])
    with pytest.raises(JobFailed) as plain:
        raise_for_result(WaitResult((partial, failed), (PARTIAL, FAILED)))
    assert type(plain.value) is JobFailed and plain.value.job is failed

    with pytest.raises(JobUnresolved):
        raise_for_result(WaitResult((job("NOT_FOUND"),), (UNRESOLVED,)))
    with pytest.raises(WaitTimeout) as timed_out:
        raise_for_result(WaitResult((job("RUNNING"),), (PENDING,)))
    assert [j.status for j in timed_out.value.unfinished] == ["RUNNING"]
    raise_for_result(WaitResult((job("SUCCESS"),), (SUCCEEDED,)))  # no exception


def test_summary_names_each_job_and_its_failed_sub_jobs() -> None:
    partial = job("SUCCESS", subs=["SUCCESS", "FAIL"])
    summary = WaitResult((partial,), (PARTIAL,)).summary()
    assert summary["outcome"] == PARTIAL and summary["exit_code"] == 3
    (entry,) = summary["jobs"]
    assert entry["sub_jobs_succeeded"] == 1 and entry["sub_jobs_failed"] == 1
    assert entry["failed_sub_jobs"] == [{"job_id": "s1", "status": "FAIL"}]
    assert entry["job"] == partial.raw
    orjson.dumps(summary)  # JSON-ready


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (400, {"title": "Invalid request", "detail": "bad", "field": "jobs[0].job_id"}, ApiError),
        (401, {"title": "Unauthorized"}, Unauthorized),
        (404, {"title": "Not found", "detail": "job x is not tracked"}, NotTracked),
        (409, {"title": "Conflict", "detail": "other project"}, Conflict),
        (500, None, ApiError),
    ],
)
def test_problems_become_typed_exceptions(status: int, body: Any, kind: type[ApiError]) -> None:
    error = ApiError.from_answer(status, body)
    assert type(error) is kind and error.status == status
    problem = body or {}
    assert (error.title, error.detail, error.field) == (
        problem.get("title"),
        problem.get("detail"),
        problem.get("field"),
    )
    if status == 401:
        assert "a valid API token is required" in str(error)
    else:
        assert str(error).startswith(f"jobwatchd answered {status}")


def test_job_view_keeps_the_raw_document_and_tolerates_odd_types() -> None:
    doc = {
        "job_id": "j",
        "status": "SUCCESS",
        "terminal": True,
        "labels": {"team": "db"},
        "entities": {"sub_jobs_total": "2", "sub_jobs": [{"status": "SUCCESS"}, "junk"]},
        "polls": True,
    }
    view = Job.from_dict(doc)
    assert view.raw is doc and view.labels == {"team": "db"}
    assert view.sub_jobs_total is None and view.polls is None
    assert [sub.status for sub in view.sub_jobs] == ["SUCCESS"]
    for shapeless in ({"jobs": "x"}, "text", None):
        with pytest.raises(UnexpectedAnswer):
            Job.from_dict(shapeless)


def test_event_view() -> None:
    cloud_event = {
        "id": "e1",
        "type": "jobwatchd.subjob.transition",
        "subject": "sub",
        "time": "t",
        "data": {"job_id": "sub", "parent_job_id": "parent", "from": None, "to": "FAIL"},
    }
    event = Event.parse("41", "jobwatchd.subjob.transition", orjson.dumps(cloud_event).decode())
    assert (event.seq, event.job_id, event.sub_job_id) == (41, "parent", "sub")
    assert (event.from_status, event.to_status, event.terminal) == (None, "FAIL", False)
    with pytest.raises(UnexpectedAnswer):
        Event.parse("42", "x", "not json")


def test_job_spec_sends_only_what_is_set() -> None:
    assert JobSpec(job_id="a").to_body() == {"job_id": "a"}
    assert JobSpec(
        job_id="a", project_id="p", account="acc", labels={"k": "v"}, timeout=60
    ).to_body() == {
        "job_id": "a",
        "project_id": "p",
        "account": "acc",
        "labels": {"k": "v"},
        "timeout": 60,
    }


@pytest.mark.parametrize(
    ("jobs", "finished", "seconds"),
    [(1, 0, 30.0), (64, 0, 30.0), (128, 0, 15.0), (128, 64, 30.0), (640, 0, 3.0), (10_000, 0, 1.0)],
)
def test_long_polls_shorten_so_every_job_is_asked_again_within_30_s(
    jobs: int, finished: int, seconds: float
) -> None:
    waiter = JobWaiter(AsyncClient("127.0.0.1:9"), [f"j{n}" for n in range(jobs)])
    for progress in list(waiter.progress.values())[:finished]:
        progress.final = True
    assert waiter._poll_seconds() == pytest.approx(seconds)


def test_a_reconnect_notice_is_passed_on_once_per_outage_message() -> None:
    notices: list[str] = []
    waiter = JobWaiter(AsyncClient("127.0.0.1:9"), ["a", "b"], on_retry=notices.append)
    for _ in range(3):  # every long-poll of the outage, at about the same time
        waiter._retry("cannot reach jobwatchd; reconnecting")
    waiter._retry("jobwatchd closed the event stream (shutdown); reconnecting")
    assert notices == [
        "cannot reach jobwatchd; reconnecting",
        "jobwatchd closed the event stream (shutdown); reconnecting",
    ]
