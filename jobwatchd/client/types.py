"""Typed views of the API's documents (frozen; the document itself is in ``raw``)
and the pure decision of how a wait ended."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from jobwatchd.client.errors import UnexpectedAnswer
from jobwatchd.models import ERROR, NOT_FOUND, SUCCESS, is_terminal

SUCCEEDED: Final = "succeeded"
"""Outcome: the job ended in ``SUCCESS`` and no sub-job failed."""
FAILED: Final = "failed"
"""Outcome: the job ended in ``FAIL``, ``TIMEOUT`` or another failed status."""
PARTIAL: Final = "partial"
"""Outcome: the job ended in ``SUCCESS`` while some of its sub-jobs failed."""
UNRESOLVED: Final = "unresolved"
"""Outcome: the job ended ``NOT_FOUND`` or ``ERROR``: nobody knows what it did."""
CANCELLED: Final = "cancelled"
"""Outcome: the job stopped being tracked (``DELETE``) during the wait."""
PENDING: Final = "pending"
"""Outcome: the job had not ended when the wait gave up."""

EXIT_CODES: Final[Mapping[str, int]] = {
    SUCCEEDED: 0,
    FAILED: 1,
    PARTIAL: 3,
    UNRESOLVED: 4,
    CANCELLED: 4,
    PENDING: 124,
}
"""The exit code of ``jobwatchd wait`` for each overall outcome."""

_PRECEDENCE: Final = (FAILED, PARTIAL, UNRESOLVED, CANCELLED, PENDING, SUCCEEDED)
"""The overall outcome of several jobs is the first of these any job has."""


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _percent(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0 <= value <= 100 else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True, kw_only=True)
class SubJob:
    """One sub-job of a job (an element of ``entities.sub_jobs``)."""

    job_id: str | None
    status: str
    job_type: str | None = None
    error_code: str | None = None
    fail_reason: str | None = None
    entities: Mapping[str, Any] = field(default_factory=dict)
    """``server_id`` / ``nic_id`` / ``errorcode_message``, as upstream sent them."""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def succeeded(self) -> bool:
        """Ended in ``SUCCESS``."""
        return self.status == SUCCESS

    @property
    def failed(self) -> bool:
        """Ended in any other terminal status."""
        return is_terminal(self.status) and self.status != SUCCESS

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> SubJob:
        """A sub-job from its document."""
        return cls(
            job_id=_str(doc.get("job_id")),
            status=str(doc.get("status")),
            job_type=_str(doc.get("job_type")),
            error_code=_str(doc.get("error_code")),
            fail_reason=_str(doc.get("fail_reason")),
            entities=_mapping(doc.get("entities")),
            raw=doc,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """A tracked job, as the daemon reports it (``GET /v1/jobs/{job_id}``)."""

    job_id: str
    status: str
    terminal: bool
    project_id: str | None = None
    account: str | None = None
    service: str | None = None
    """The cloud service whose job API tracks the job (``ecs``, ``evs``, ``cce``...)."""
    job_type: str | None = None
    begin_time: str | None = None
    end_time: str | None = None
    error_code: str | None = None
    fail_reason: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    sub_jobs: tuple[SubJob, ...] = ()
    sub_jobs_total: int | None = None
    percent: float | None = None
    """The percentage done upstream last reported (None: its format reports none)."""
    polls: int | None = None
    last_error: Mapping[str, Any] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """The job object exactly as the daemon sent it."""

    @classmethod
    def from_dict(cls, doc: object) -> Job:
        """A job from its JSON object; :class:`UnexpectedAnswer` if it is not one."""
        if not isinstance(doc, dict) or "job_id" not in doc or "status" not in doc:
            raise UnexpectedAnswer("jobwatchd sent an answer of an unexpected shape (not a job)")
        entities = _mapping(doc.get("entities"))
        subs = entities.get("sub_jobs")
        sub_jobs = tuple(
            SubJob.from_dict(sub)
            for sub in (subs if isinstance(subs, list) else ())
            if isinstance(sub, dict)
        )
        labels = doc.get("labels")
        last_error = doc.get("last_error")
        progress = _mapping(doc.get("progress"))
        return cls(
            job_id=str(doc["job_id"]),
            status=str(doc["status"]),
            terminal=doc.get("terminal") is True,
            project_id=_str(doc.get("project_id")),
            account=_str(doc.get("account")),
            service=_str(doc.get("service")),
            job_type=_str(doc.get("job_type")),
            begin_time=_str(doc.get("begin_time")),
            end_time=_str(doc.get("end_time")),
            error_code=_str(doc.get("error_code")),
            fail_reason=_str(doc.get("fail_reason")),
            labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
            sub_jobs=sub_jobs,
            sub_jobs_total=_int(entities.get("sub_jobs_total")),
            percent=_percent(progress.get("percent")),
            polls=_int(doc.get("polls")),
            last_error=last_error if isinstance(last_error, dict) else None,
            raw=doc,
        )

    @property
    def succeeded_sub_jobs(self) -> tuple[SubJob, ...]:
        """Sub-jobs that ended in ``SUCCESS``."""
        return tuple(sub for sub in self.sub_jobs if sub.succeeded)

    @property
    def failed_sub_jobs(self) -> tuple[SubJob, ...]:
        """Sub-jobs that ended in any other terminal status."""
        return tuple(sub for sub in self.sub_jobs if sub.failed)

    @property
    def outcome(self) -> str:
        """How the job ended (:data:`SUCCEEDED`...; :data:`PENDING` while it runs)."""
        return job_outcome(self)


def job_outcome(job: Job, *, tracked: bool = True) -> str:
    """The outcome of one job; ``tracked=False`` once the daemon stopped tracking it."""
    if not tracked:
        return CANCELLED
    if not job.terminal:
        return PENDING
    if job.status in (NOT_FOUND, ERROR):
        return UNRESOLVED
    if job.status != SUCCESS:
        return FAILED
    return PARTIAL if job.failed_sub_jobs else SUCCEEDED


def overall_outcome(outcomes: Iterable[str]) -> str:
    """The outcome of a wait for several jobs (the worst of theirs)."""
    seen = set(outcomes)
    return next((outcome for outcome in _PRECEDENCE if outcome in seen), SUCCEEDED)


@dataclass(frozen=True, slots=True)
class WaitResult:
    """How a wait ended: every job as last read, in the order given, and its outcome."""

    jobs: tuple[Job, ...]
    outcomes: tuple[str, ...]
    """Per job, in the same order: :data:`SUCCEEDED`, :data:`FAILED`, :data:`PARTIAL`,
    :data:`UNRESOLVED`, :data:`CANCELLED` or :data:`PENDING`."""

    @property
    def outcome(self) -> str:
        """The worst outcome of any job."""
        return overall_outcome(self.outcomes)

    @property
    def exit_code(self) -> int:
        """The exit code ``jobwatchd wait`` gives this result."""
        return EXIT_CODES[self.outcome]

    @property
    def ok(self) -> bool:
        """Every job ended in ``SUCCESS``."""
        return self.outcome == SUCCEEDED

    def of(self, outcome: str) -> tuple[Job, ...]:
        """The jobs with this outcome."""
        return tuple(
            job for job, seen in zip(self.jobs, self.outcomes, strict=True) if seen == outcome
        )

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``jobwatchd wait --json`` prints): the outcome,
        the exit code and, per job, its outcome, failed sub-jobs and whole object."""
        return {
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "jobs": [
                {
                    "job_id": job.job_id,
                    "status": job.status,
                    "outcome": outcome,
                    "sub_jobs_total": job.sub_jobs_total,
                    "sub_jobs_succeeded": len(job.succeeded_sub_jobs),
                    "sub_jobs_failed": len(job.failed_sub_jobs),
                    "failed_sub_jobs": [sub.raw for sub in job.failed_sub_jobs],
                    "error_code": job.error_code,
                    "fail_reason": job.fail_reason,
                    "job": job.raw,
                }
                for job, outcome in zip(self.jobs, self.outcomes, strict=True)
            ],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """A job to register: the id the cloud returned, and how to track it."""

    job_id: str
    service: str | None = None
    """The service whose job API to poll (``evs``, ``cce``...); default ``ecs``."""
    project_id: str | None = None
    """Default: the account's ``project_id``."""
    account: str | None = None
    """Default: the account whose ``project_id`` matches, else the first."""
    labels: Mapping[str, str] | None = None
    timeout: float | None = None
    """Seconds before the daemon gives up on the job (``TIMEOUT``); default ``polling.timeout``."""

    def to_body(self) -> dict[str, Any]:
        """The registration document of ``POST /v1/jobs``."""
        body: dict[str, Any] = {"job_id": self.job_id}
        if self.service is not None:
            body["service"] = self.service
        if self.project_id is not None:
            body["project_id"] = self.project_id
        if self.account is not None:
            body["account"] = self.account
        if self.labels:
            body["labels"] = dict(self.labels)
        if self.timeout is not None:
            body["timeout"] = self.timeout
        return body


@dataclass(frozen=True, slots=True)
class Registration:
    """The answer to a registration: the jobs (in the order given) and how many
    were newly tracked (the others were tracked already)."""

    jobs: tuple[Job, ...]
    created: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One event of ``/v1/events``: its position in the event log and its CloudEvent."""

    seq: int | None
    """The event log position: the resume cursor (``Last-Event-ID``)."""
    type: str
    """``jobwatchd.job.transition`` or ``jobwatchd.subjob.transition``."""
    id: str | None
    """The CloudEvent ``id`` (stable across redeliveries)."""
    subject: str | None
    time: str | None
    data: Mapping[str, Any]
    raw: Mapping[str, Any] = field(repr=False)
    """The CloudEvent exactly as the daemon sent it."""

    @property
    def job_id(self) -> str | None:
        """The job (for a sub-job event: the parent job) the event is about."""
        return _str(self.data.get("parent_job_id") or self.data.get("job_id"))

    @property
    def sub_job_id(self) -> str | None:
        """The sub-job of a sub-job event, else None."""
        return _str(self.data.get("job_id")) if self.data.get("parent_job_id") else None

    @property
    def from_status(self) -> str | None:
        """The status before (None on first observation)."""
        return _str(self.data.get("from"))

    @property
    def to_status(self) -> str | None:
        """The status after."""
        return _str(self.data.get("to"))

    @property
    def terminal(self) -> bool:
        """The transition ended the job or sub-job."""
        return self.data.get("terminal") is True

    @classmethod
    def parse(cls, seq: str | None, event_type: str, data: str) -> Event:
        """An event from an SSE block; :class:`UnexpectedAnswer` if it is not a CloudEvent."""
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UnexpectedAnswer("jobwatchd sent an event that is not JSON") from None
        if not isinstance(doc, dict):
            raise UnexpectedAnswer("jobwatchd sent an event that is not a JSON object")
        return cls(
            seq=int(seq) if seq is not None and seq.isascii() and seq.isdigit() else None,
            type=str(doc.get("type") or event_type),
            id=_str(doc.get("id")),
            subject=_str(doc.get("subject")),
            time=_str(doc.get("time")),
            data=_mapping(doc.get("data")),
            raw=doc,
        )


def parse_jobs(body: object, key: str = "jobs") -> tuple[Job, ...]:
    """The jobs of a ``{"jobs": [...]}`` answer."""
    items = body.get(key) if isinstance(body, dict) else None
    if not isinstance(items, Sequence) or isinstance(items, str):
        raise UnexpectedAnswer(f"jobwatchd sent an answer of an unexpected shape (no {key!r} list)")
    return tuple(Job.from_dict(item) for item in items)
