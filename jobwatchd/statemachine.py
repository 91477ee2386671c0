"""Turn upstream responses into ordered transitions. Pure, no I/O.

The state machine compares what was last seen of a job (a :class:`Snapshot`)
with a fresh response and returns the transitions in delivery order: every
sub-job's transition comes before the parent's. Terminal is sticky for the job
and for each sub-job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, TypeGuard

from jobwatchd.models import (
    FAIL,
    MAX_STATUS_LENGTH,
    PENDING,
    SUCCESS,
    UPSTREAM_STATUSES,
    is_terminal,
    upstream_status,
)

MAX_SUB_JOBS = 5000
"""Default bound on ``entities.sub_jobs`` (a batch of the vendor's holds at most a few hundred)."""
MAX_TEXT_LENGTH = 1024
"""Upstream free text (``fail_reason``, messages...) is cut to this many characters."""


class MalformedResponse(ValueError):
    """The upstream body is not a job status document; retry, never a transition."""


class TooManySubJobs(MalformedResponse):
    """The document lists more sub-jobs than jobwatchd agrees to track."""


def bounded_text(value: str, limit: int = MAX_TEXT_LENGTH) -> str:
    """``value`` cut to ``limit`` characters (marked with an ellipsis when cut)."""
    return value if len(value) <= limit else value[: limit - 1] + "\u2026"


def _optional_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if not isinstance(value, str):
        return None
    return value if len(value) <= MAX_TEXT_LENGTH else bounded_text(value)


def is_status_name(value: object) -> TypeGuard[str]:
    """A usable upstream status or sub-job id: 1-64 printable ASCII characters."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_STATUS_LENGTH
        and value.isascii()
        and value.isprintable()
    )


def _entities(body: Mapping[str, Any]) -> dict[str, Any]:
    value = body.get("entities")
    return value if isinstance(value, dict) else dict(value) if isinstance(value, Mapping) else {}


class SubJob(NamedTuple):
    """One element of ``entities.sub_jobs``: its id and status, checked when
    parsed; the other fields are read from the element when asked for (most
    polls only compare statuses)."""

    job_id: str
    status: str
    element: Mapping[str, Any]

    @property
    def job_type(self) -> str | None:
        """The sub-job's type."""
        return _optional_str(self.element, "job_type")

    @property
    def entities(self) -> dict[str, Any]:
        """The sub-job's entities (empty when absent or not an object)."""
        return _entities(self.element)

    @property
    def error_code(self) -> str | None:
        """The sub-job's error code, if any."""
        return _optional_str(self.element, "error_code")

    @property
    def fail_reason(self) -> str | None:
        """Why the sub-job failed, if it did."""
        return _optional_str(self.element, "fail_reason")

    @property
    def begin_time(self) -> str | None:
        """When the sub-job began (vendor format)."""
        return _optional_str(self.element, "begin_time")

    @property
    def end_time(self) -> str | None:
        """When the sub-job ended (vendor format)."""
        return _optional_str(self.element, "end_time")


class JobResponse(NamedTuple):
    """A parsed ``GET /v1/{project_id}/jobs/{job_id}`` response.

    ``status`` and the sub-jobs' ids and statuses are checked when parsed;
    the descriptive fields are read from ``body`` when asked for. The response
    owns ``body``: :func:`parse_response` does not copy it, so a caller that
    keeps using the decoded document must pass a copy.
    """

    status: str
    entities: dict[str, Any]
    sub_jobs: tuple[SubJob, ...]
    sub_jobs_total: int | None
    body: Mapping[str, Any]

    @property
    def job_type(self) -> str | None:
        """The job's type (``createServer``...)."""
        return _optional_str(self.body, "job_type")

    @property
    def begin_time(self) -> str | None:
        """When the job began (vendor format)."""
        return _optional_str(self.body, "begin_time")

    @property
    def end_time(self) -> str | None:
        """When the job ended (vendor format)."""
        return _optional_str(self.body, "end_time")

    @property
    def error_code(self) -> str | None:
        """The job's error code, if any."""
        return _optional_str(self.body, "error_code")

    @property
    def fail_reason(self) -> str | None:
        """Why the job failed, if it did."""
        return _optional_str(self.body, "fail_reason")

    @property
    def code(self) -> str | None:
        """A top-level ``code`` reported with the document (a query problem)."""
        return _optional_str(self.body, "code")

    @property
    def message(self) -> str | None:
        """A top-level ``message`` reported with the document."""
        return _optional_str(self.body, "message")

    @property
    def sub_jobs_succeeded(self) -> int:
        """Sub-jobs that reached SUCCESS."""
        return sum(1 for sub in self.sub_jobs if sub.status == SUCCESS)

    @property
    def sub_jobs_failed(self) -> int:
        """Sub-jobs that reached FAIL."""
        return sum(1 for sub in self.sub_jobs if sub.status == FAIL)

    @property
    def unexpected_statuses(self) -> frozenset[str]:
        """Statuses outside INIT/RUNNING/SUCCESS/FAIL, passed through but worth a log line."""
        if self.status in UPSTREAM_STATUSES and all(
            sub.status in UPSTREAM_STATUSES for sub in self.sub_jobs
        ):
            return _NONE
        seen = {self.status, *(sub.status for sub in self.sub_jobs)}
        return frozenset(seen - UPSTREAM_STATUSES)


_NONE: frozenset[str] = frozenset()


def _parse_sub_job(item: object) -> SubJob | None:
    if not isinstance(item, Mapping):
        return None
    job_id, status = item.get("job_id"), item.get("status")
    if not is_status_name(job_id):
        return None
    if not (isinstance(status, str) and status in UPSTREAM_STATUSES):
        if not is_status_name(status):
            return None
        status = upstream_status(status)
    return SubJob(job_id, status, item)


def parse_response(body: object, *, max_sub_jobs: int = MAX_SUB_JOBS) -> JobResponse:
    """Parse a decoded JSON body; raise :class:`MalformedResponse` if it has no usable status,
    :class:`TooManySubJobs` if it lists more than ``max_sub_jobs`` sub-jobs.

    A status is 1-64 printable ASCII characters; one of jobwatchd's own names
    (``TIMEOUT``, ``NOT_FOUND``, ``ERROR``, ``PENDING``) is recorded with the
    ``upstream:`` prefix, so only jobwatchd decides those. Sub-jobs without a
    usable id or status are skipped rather than failing the whole poll: the
    parent's status is still trustworthy. The result keeps ``body`` (see
    :class:`JobResponse`).
    """
    if not isinstance(body, Mapping):
        raise MalformedResponse("response body is not a JSON object")
    status = body.get("status")
    if not (isinstance(status, str) and status in UPSTREAM_STATUSES):
        if not isinstance(status, str) or not status:
            raise MalformedResponse("response has no status")
        if not is_status_name(status):
            raise MalformedResponse(
                f"response status is not 1-{MAX_STATUS_LENGTH} printable ASCII characters"
            )
        status = upstream_status(status)
    entities = _entities(body)
    raw_subs = entities.get("sub_jobs")
    sub_jobs: tuple[SubJob, ...] = ()
    if isinstance(raw_subs, list) and raw_subs:
        if len(raw_subs) > max_sub_jobs:
            raise TooManySubJobs(
                f"response lists {len(raw_subs)} sub-jobs, more than max_sub_jobs ({max_sub_jobs})"
            )
        parsed = [_parse_sub_job(item) for item in raw_subs]
        sub_jobs = tuple(sub for sub in parsed if sub is not None)
    total = entities.get("sub_jobs_total")
    if isinstance(total, bool) or not isinstance(total, int):
        total = len(sub_jobs) if sub_jobs else None
    return JobResponse(status, entities, sub_jobs, total, body)


_NO_SUB_JOBS: Mapping[str, tuple[str, int]] = MappingProxyType({})  # shared: most jobs


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """What was last seen of a job: its status, how many transitions it made,
    and each sub-job's status with its own transition count."""

    status: str = PENDING
    transitions: int = 0
    sub_jobs: Mapping[str, tuple[str, int]] = field(default_factory=lambda: _NO_SUB_JOBS)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form for the store."""
        return {
            "status": self.status,
            "transitions": self.transitions,
            "sub_jobs": {key: list(value) for key, value in self.sub_jobs.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Snapshot:
        """Rebuild from :meth:`to_json` output (an empty mapping is a fresh job)."""
        subs = data.get("sub_jobs")
        return cls(
            status=str(data.get("status", PENDING)),
            transitions=int(data.get("transitions", 0)),
            sub_jobs={str(key): (str(value[0]), int(value[1])) for key, value in subs.items()}
            if subs
            else _NO_SUB_JOBS,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """One observed change of status. ``ordinal`` counts the subject's earlier
    transitions, which makes event ids reproducible."""

    kind: Literal["job", "subjob"]
    subject: str
    ordinal: int
    from_status: str | None
    to_status: str
    sub_job: SubJob | None = None

    @property
    def terminal(self) -> bool:
        """Whether ``to_status`` is terminal."""
        return is_terminal(self.to_status)


def observe(previous: Snapshot, response: JobResponse) -> tuple[list[Transition], Snapshot]:
    """Diff ``response`` against ``previous``; return the transitions and the new
    snapshot (``previous`` itself when nothing changed)."""
    if is_terminal(previous.status):
        return [], previous
    transitions: list[Transition] = []
    sub_jobs = previous.sub_jobs
    changed: dict[str, tuple[str, int]] | None = None  # copied on the first change
    for sub in response.sub_jobs:
        seen = sub_jobs.get(sub.job_id)
        if seen is not None and (seen[0] == sub.status or is_terminal(seen[0])):
            continue
        if changed is None:
            changed = dict(sub_jobs)
            sub_jobs = changed
        ordinal = 0 if seen is None else seen[1]
        transitions.append(
            Transition(
                kind="subjob",
                subject=sub.job_id,
                ordinal=ordinal,
                from_status=None if seen is None else seen[0],
                to_status=sub.status,
                sub_job=sub,
            )
        )
        changed[sub.job_id] = (sub.status, ordinal + 1)
    first = previous.transitions == 0
    status_changed = first or response.status != previous.status
    if not status_changed and changed is None:
        return transitions, previous
    if status_changed:
        transitions.append(
            Transition(
                kind="job",
                subject="",
                ordinal=previous.transitions,
                from_status=None if first else previous.status,
                to_status=response.status,
            )
        )
    snapshot = Snapshot(
        status=response.status if status_changed else previous.status,
        transitions=previous.transitions + (1 if status_changed else 0),
        sub_jobs=sub_jobs,
    )
    return transitions, snapshot


def conclude(previous: Snapshot, status: str) -> tuple[list[Transition], Snapshot]:
    """A terminal status decided by jobwatchd itself (TIMEOUT, NOT_FOUND, ERROR)."""
    if is_terminal(previous.status):
        return [], previous
    first = previous.transitions == 0
    transition = Transition(
        kind="job",
        subject="",
        ordinal=previous.transitions,
        from_status=None if first else previous.status,
        to_status=status,
    )
    snapshot = Snapshot(
        status=status, transitions=previous.transitions + 1, sub_jobs=previous.sub_jobs
    )
    return [transition], snapshot
