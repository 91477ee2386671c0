"""Turn upstream answers into ordered transitions. Pure, no I/O.

The state machine compares what was last seen of a job (a :class:`Snapshot`)
with a fresh answer and returns the transitions in delivery order: every
sub-job's transition comes before the parent's. Terminal is sticky for the job
and for each sub-job.

An answer is any :class:`JobAnswer`: each service's answer format has its own
parser under :mod:`jobwatchd.cloud` (the ECS family's is
:mod:`jobwatchd.cloud.ecs`), and this module sees only the common shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol

from jobwatchd.models import PENDING, is_terminal


class ReportedState(Protocol):
    """What upstream reports of a job or a sub-job: ``status`` checked, the rest as
    reported (bounded)."""

    @property
    def status(self) -> str:
        """The status (an unknown upstream one passed through)."""
        ...

    @property
    def job_type(self) -> str | None:
        """The type (``createServer``...)."""
        ...

    @property
    def entities(self) -> dict[str, Any]:
        """The entities (resource ids, error details)."""
        ...

    @property
    def error_code(self) -> str | None:
        """The error code, if any."""
        ...

    @property
    def fail_reason(self) -> str | None:
        """Why it failed, if it did."""
        ...

    @property
    def begin_time(self) -> str | None:
        """When it began (vendor format)."""
        ...

    @property
    def end_time(self) -> str | None:
        """When it ended (vendor format)."""
        ...


class SubJobAnswer(ReportedState, Protocol):
    """One sub-job as upstream reported it."""

    @property
    def job_id(self) -> str:
        """The sub-job's id (checked)."""
        ...


class JobAnswer(ReportedState, Protocol):
    """A job as upstream reported it in one answer, with its sub-jobs."""

    @property
    def job_id(self) -> str | None:
        """The job the answer says it is about (None: not said)."""
        ...

    @property
    def progress(self) -> float | None:
        """The percentage done upstream reports, when its format has one."""
        ...

    @property
    def sub_jobs(self) -> Sequence[SubJobAnswer]:
        """The sub-jobs, in upstream's order."""
        ...

    @property
    def sub_jobs_total(self) -> int | None:
        """How many sub-jobs upstream says there are (None: not said)."""
        ...

    @property
    def sub_jobs_succeeded(self) -> int:
        """Sub-jobs that reached SUCCESS."""
        ...

    @property
    def sub_jobs_failed(self) -> int:
        """Sub-jobs that reached FAIL."""
        ...

    @property
    def code(self) -> str | None:
        """A top-level error code reported with the document."""
        ...

    @property
    def message(self) -> str | None:
        """A top-level message reported with the document."""
        ...

    @property
    def unexpected_statuses(self) -> frozenset[str]:
        """Statuses outside the documented ones, passed through but worth a log line."""
        ...


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
    sub_job: SubJobAnswer | None = None

    @property
    def terminal(self) -> bool:
        """Whether ``to_status`` is terminal."""
        return is_terminal(self.to_status)


def observe(previous: Snapshot, response: JobAnswer) -> tuple[list[Transition], Snapshot]:
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
