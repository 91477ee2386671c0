"""A Python client for jobwatchd's HTTP API (see docs/client.md).

:class:`AsyncClient` for asyncio code, :class:`Client` for plain scripts: register
jobs, read and list them, cancel them, follow the event stream (resuming
exactly after a reconnect) and wait for jobs to end, with typed results
(:class:`Job`, :class:`Event`, :class:`WaitResult`) and typed errors
(:class:`ApiError`, :class:`JobFailed`, :class:`WaitTimeout`...). The
``jobwatchd`` console script is built on it."""

from jobwatchd.client.aio import AsyncClient, JobWaiter, base_url, raise_for_result
from jobwatchd.client.errors import (
    ApiError,
    ClientError,
    Conflict,
    ConnectionFailed,
    JobFailed,
    JobUnresolved,
    NotTracked,
    PartialFailure,
    Unauthorized,
    UnexpectedAnswer,
    UsageError,
    WaitError,
    WaitTimeout,
)
from jobwatchd.client.progress import JobProgress
from jobwatchd.client.sse import SseMessage, SseParser
from jobwatchd.client.sync import Client
from jobwatchd.client.types import (
    CANCELLED,
    EXIT_CODES,
    FAILED,
    PARTIAL,
    PENDING,
    SUCCEEDED,
    UNRESOLVED,
    Event,
    Job,
    JobSpec,
    Registration,
    SubJob,
    WaitResult,
    job_outcome,
    overall_outcome,
)

__all__ = [
    "CANCELLED",
    "EXIT_CODES",
    "FAILED",
    "PARTIAL",
    "PENDING",
    "SUCCEEDED",
    "UNRESOLVED",
    "ApiError",
    "AsyncClient",
    "Client",
    "ClientError",
    "Conflict",
    "ConnectionFailed",
    "Event",
    "Job",
    "JobFailed",
    "JobProgress",
    "JobSpec",
    "JobUnresolved",
    "JobWaiter",
    "NotTracked",
    "PartialFailure",
    "Registration",
    "SseMessage",
    "SseParser",
    "SubJob",
    "Unauthorized",
    "UnexpectedAnswer",
    "UsageError",
    "WaitError",
    "WaitResult",
    "WaitTimeout",
    "base_url",
    "job_outcome",
    "overall_outcome",
    "raise_for_result",
]
