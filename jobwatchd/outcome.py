"""What one poll of upstream learned, whatever the service: an :class:`Outcome`.
Pure data, no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any

from jobwatchd.statemachine import JobAnswer

# Our own codes in last_error, for what jobwatchd refused to take from upstream.
REDIRECT_CODE = "jobwatchd.Redirect"
TOO_LARGE_CODE = "jobwatchd.ResponseTooLarge"


JOB_ID_MISMATCH_CODE = "jobwatchd.JobIdMismatch"
NOT_FOUND_HINT = (
    "upstream deletes a job's record about a day after it ends, so a job registered late"
    " answers 404"
)


class OutcomeKind(enum.Enum):
    """What one poll learned."""

    OBSERVED = "observed"
    NOT_FOUND = "not_found"
    REJECTED = "rejected"
    UNAUTHORIZED = "unauthorized"
    THROTTLED = "throttled"
    TRANSIENT = "transient"


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamError:
    """An error reported by (or about) the upstream API."""

    code: str | None
    message: str
    http_status: int | None

    def to_json(self, at: str) -> dict[str, Any]:
        """The job object's ``last_error`` form."""
        return {
            "code": self.code,
            "message": self.message,
            "http_status": self.http_status,
            "at": at,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """The classified result of one poll."""

    kind: OutcomeKind
    response: JobAnswer | None = None
    error: UpstreamError | None = None
    retry_after: float | None = None


def not_found_error(error: UpstreamError | None) -> UpstreamError:
    """The ``last_error`` of a job concluded NOT_FOUND: upstream's answer and the likely reason."""
    if error is None:
        return UpstreamError(code=None, message=f"job not found; {NOT_FOUND_HINT}", http_status=404)
    return replace(error, message=f"{error.message}; {NOT_FOUND_HINT}")


def too_large(status: int, limit: int) -> UpstreamError:
    """The error kept for an answer whose body is over ``limit`` bytes."""
    return UpstreamError(
        code=TOO_LARGE_CODE,
        message=f"answer body over {limit} bytes (max_response_size); not read",
        http_status=status,
    )
