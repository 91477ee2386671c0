"""Turn upstream responses into ordered transitions (PRODUCT §2, §3). Pure, no I/O.

The state machine compares what was last seen of a job (a :class:`Snapshot`)
with a fresh response and returns the transitions in delivery order: every
sub-job's transition comes before the parent's. Terminal is sticky for the job
and for each sub-job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from jobwatchd.models import FAIL, PENDING, SUCCESS, UPSTREAM_STATUSES, is_terminal


class MalformedResponse(ValueError):
    """The upstream body is not a job status document; retry, never a transition."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SubJob:
    """One element of ``entities.sub_jobs``."""

    job_id: str
    job_type: str | None
    status: str
    entities: dict[str, Any]
    error_code: str | None
    fail_reason: str | None
    begin_time: str | None
    end_time: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobResponse:
    """A parsed ``GET /v1/{project_id}/jobs/{job_id}`` response."""

    status: str
    job_type: str | None
    begin_time: str | None
    end_time: str | None
    error_code: str | None
    fail_reason: str | None
    entities: dict[str, Any]
    sub_jobs: tuple[SubJob, ...]
    sub_jobs_total: int | None
    code: str | None = None
    message: str | None = None

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
        seen = {self.status, *(sub.status for sub in self.sub_jobs)}
        return frozenset(seen - UPSTREAM_STATUSES)


def _optional_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) else None


def _parse_sub_job(item: object) -> SubJob | None:
    if not isinstance(item, Mapping):
        return None
    job_id, status = item.get("job_id"), item.get("status")
    if not isinstance(job_id, str) or not job_id or not isinstance(status, str) or not status:
        return None
    entities = item.get("entities")
    return SubJob(
        job_id=job_id,
        job_type=_optional_str(item, "job_type"),
        status=status,
        entities=dict(entities) if isinstance(entities, Mapping) else {},
        error_code=_optional_str(item, "error_code"),
        fail_reason=_optional_str(item, "fail_reason"),
        begin_time=_optional_str(item, "begin_time"),
        end_time=_optional_str(item, "end_time"),
    )


def parse_response(body: object) -> JobResponse:
    """Parse a decoded JSON body; raise :class:`MalformedResponse` if it has no usable status.

    Sub-jobs without an id or status are skipped rather than failing the whole
    poll: the parent's status is still trustworthy.
    """
    if not isinstance(body, Mapping):
        raise MalformedResponse("response body is not a JSON object")
    status = body.get("status")
    if not isinstance(status, str) or not status:
        raise MalformedResponse("response has no status")
    raw_entities = body.get("entities")
    entities = dict(raw_entities) if isinstance(raw_entities, Mapping) else {}
    raw_subs = entities.get("sub_jobs")
    parsed = [_parse_sub_job(item) for item in raw_subs] if isinstance(raw_subs, list) else []
    sub_jobs = tuple(sub for sub in parsed if sub is not None)
    total = entities.get("sub_jobs_total")
    if isinstance(total, bool) or not isinstance(total, int):
        total = len(sub_jobs) if sub_jobs else None
    return JobResponse(
        status=status,
        job_type=_optional_str(body, "job_type"),
        begin_time=_optional_str(body, "begin_time"),
        end_time=_optional_str(body, "end_time"),
        error_code=_optional_str(body, "error_code"),
        fail_reason=_optional_str(body, "fail_reason"),
        entities=entities,
        sub_jobs=sub_jobs,
        sub_jobs_total=total,
        code=_optional_str(body, "code"),
        message=_optional_str(body, "message"),
    )


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
    """Diff ``response`` against ``previous``; return the transitions and the new snapshot."""
    if is_terminal(previous.status):
        return [], previous
    transitions: list[Transition] = []
    sub_jobs = dict(previous.sub_jobs)
    for sub in response.sub_jobs:
        seen = sub_jobs.get(sub.job_id)
        if seen is not None and (seen[0] == sub.status or is_terminal(seen[0])):
            continue
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
        sub_jobs[sub.job_id] = (sub.status, ordinal + 1)
    first = previous.transitions == 0
    status_changed = first or response.status != previous.status
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
