"""The client's exceptions: one base class, then what went wrong talking to the
daemon (:class:`ConnectionFailed`, :class:`ApiError` and its subclasses,
:class:`UnexpectedAnswer`, :class:`UsageError`) and how a wait ended other
than in success (:class:`JobFailed`, :class:`PartialFailure`,
:class:`JobUnresolved`, :class:`WaitTimeout`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobwatchd.client.types import Job, SubJob, WaitResult


class ClientError(Exception):
    """Base class of every exception the client raises."""


class UsageError(ClientError, ValueError):
    """The call itself is wrong (no job ids, an invalid id, a bad argument)."""


class ConnectionFailed(ClientError):
    """The daemon could not be reached, or the connection broke."""


class UnexpectedAnswer(ClientError):
    """The daemon answered in a shape that is not its API's (not JSON, wrong types)."""


class ApiError(ClientError):
    """An error answer of the API: an RFC 9457 problem document.

    ``status`` is the HTTP status; ``title``, ``detail`` and ``field`` (the
    offending request field, for a 400) come from the problem document when it
    has them; ``problem`` is the whole document (empty when there was none).
    """

    def __init__(
        self,
        status: int,
        *,
        title: str | None = None,
        detail: str | None = None,
        field: str | None = None,
        problem: Mapping[str, Any] | None = None,
        message: str | None = None,
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.field = field
        self.problem: Mapping[str, Any] = problem or {}
        super().__init__(message or problem_text(status, detail))

    @classmethod
    def from_answer(cls, status: int, body: object) -> ApiError:
        """The exception for an error answer (the subclass its status calls for)."""
        problem = body if isinstance(body, dict) else {}

        def text(key: str) -> str | None:
            value = problem.get(key)
            return value if isinstance(value, str) else None

        kind: type[ApiError] = {401: Unauthorized, 404: NotTracked, 409: Conflict}.get(
            status, ApiError
        )
        message = (
            "jobwatchd refused the request: a valid API token is required"
            if status == 401
            else None
        )
        return kind(
            status,
            title=text("title"),
            detail=text("detail"),
            field=text("field"),
            problem=problem,
            message=message,
        )


class Unauthorized(ApiError):
    """401: the API needs a (valid) bearer token."""


class NotTracked(ApiError):
    """404: the daemon does not track this job (never registered, or cancelled)."""


class Conflict(ApiError):
    """409: the job is already tracked under another project."""


def problem_text(status: int, detail: object) -> str:
    """A one-line description of an error answer."""
    if detail is not None:
        return f"jobwatchd answered {status}: {detail}"
    return f"jobwatchd answered {status}"


# -- how a wait ends -------------------------------------------------------------------


class WaitError(ClientError):
    """A wait ended, but not with every job in ``SUCCESS``; ``result`` has every job."""

    def __init__(self, message: str, result: WaitResult) -> None:
        super().__init__(message)
        self.result = result

    @property
    def jobs(self) -> tuple[Job, ...]:
        """The jobs waited for, as last read, in the order given."""
        return self.result.jobs


class JobFailed(WaitError):
    """A job ended in ``FAIL`` or ``TIMEOUT`` (or another failed status).

    ``job`` is the first such job, ``failed_sub_jobs`` its failed sub-jobs,
    ``failed_jobs`` every failed job.
    """

    def __init__(self, message: str, result: WaitResult, failed_jobs: Sequence[Job]) -> None:
        super().__init__(message, result)
        self.failed_jobs = tuple(failed_jobs)
        self.job = self.failed_jobs[0]

    @property
    def failed_sub_jobs(self) -> tuple[SubJob, ...]:
        """The sub-jobs of :attr:`job` that failed."""
        return self.job.failed_sub_jobs


class PartialFailure(JobFailed):
    """A job ended in ``SUCCESS`` while some of its sub-jobs failed (some servers
    were created, some not); a :class:`JobFailed`."""


class JobUnresolved(WaitError):
    """A job ended without a verdict: ``NOT_FOUND`` (upstream does not know it),
    ``ERROR`` (upstream rejected the query), or it stopped being tracked
    (cancelled) during the wait. ``job`` is the first such job."""

    def __init__(self, message: str, result: WaitResult, jobs: Sequence[Job]) -> None:
        super().__init__(message, result)
        self.unresolved_jobs = tuple(jobs)
        self.job = self.unresolved_jobs[0]


class WaitTimeout(WaitError):
    """The wait's timeout passed before every job ended; ``unfinished`` are those still running."""

    def __init__(self, message: str, result: WaitResult, unfinished: Sequence[Job]) -> None:
        super().__init__(message, result)
        self.unfinished = tuple(unfinished)
