"""The ECS job API's answer format (``GET /v1/{project_id}/jobs/{job_id}``, see
docs/statuses-and-events.md): parsing a decoded body into a :class:`JobResponse`,
which is a :class:`jobwatchd.statemachine.JobAnswer`. Pure, no I/O.

The vendor documents the body as ``status`` (``SUCCESS``/``RUNNING``/``FAIL``/
``INIT``), ``entities`` (``sub_jobs``, ``sub_jobs_total``, resource ids),
``job_id``, ``job_type``, ``begin_time``, ``end_time``, ``error_code`` and
``fail_reason`` (Elastic Cloud Server API reference, "Querying Task Execution
Status").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, TypeGuard

from jobwatchd.models import (
    FAIL,
    MAX_STATUS_LENGTH,
    MAX_TEXT_LENGTH,
    SUCCESS,
    UPSTREAM_STATUSES,
    bounded_text,
    upstream_status,
)

MAX_SUB_JOBS = 5000
"""Default bound on ``entities.sub_jobs`` (a batch of the vendor's holds at most a few hundred)."""


class MalformedResponse(ValueError):
    """The upstream body is not a job status document; retry, never a transition."""


class TooManySubJobs(MalformedResponse):
    """The document lists more sub-jobs than jobwatchd agrees to track."""


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
    def progress(self) -> float | None:
        """The ECS format reports no percentage (progress is the sub-jobs done)."""
        return None

    @property
    def job_id(self) -> str | None:
        """The job the document is about, as it says (checked against the one asked for)."""
        value = self.body.get("job_id")
        return value if isinstance(value, str) else None

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
