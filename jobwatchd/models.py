"""Records shared by the store, the tracker and the API: statuses, jobs and events."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PENDING = "PENDING"
INIT = "INIT"
RUNNING = "RUNNING"
SUCCESS = "SUCCESS"
FAIL = "FAIL"
TIMEOUT = "TIMEOUT"
NOT_FOUND = "NOT_FOUND"
ERROR = "ERROR"
PENDING_PAYMENT = "PENDING_PAYMENT"
"""Upstream: a prepaid resource waits for its order to be paid (may last days)."""

UPSTREAM_STATUSES = frozenset({INIT, RUNNING, SUCCESS, FAIL, PENDING_PAYMENT})
TERMINAL_STATUSES = frozenset({SUCCESS, FAIL, TIMEOUT, NOT_FOUND, ERROR})
OWN_STATUSES = frozenset({PENDING, TIMEOUT, NOT_FOUND, ERROR})
"""Statuses only jobwatchd decides; upstream saying one of them is renamed
(see :func:`upstream_status`) so it can never be taken for jobwatchd's own."""
UPSTREAM_PREFIX = "upstream:"
MAX_STATUS_LENGTH = 64
"""Longest upstream status (or sub-job id) accepted; the API's ``?status=`` bound."""

JOB_TRANSITION = "jobwatchd.job.transition"
SUBJOB_TRANSITION = "jobwatchd.subjob.transition"
EVENT_TYPES = frozenset({JOB_TRANSITION, SUBJOB_TRANSITION})

DEFAULT_SERVICE = "ecs"
"""The service a job belongs to unless its registration names another."""


def upstream_status(status: str) -> str:
    """The status jobwatchd records for an upstream ``status``: unchanged, except
    that one of jobwatchd's own names (``TIMEOUT``...) gets the ``upstream:``
    prefix, an unknown non-terminal status like any other."""
    return UPSTREAM_PREFIX + status if status in OWN_STATUSES else status


def is_terminal(status: str) -> bool:
    """Whether ``status`` ends tracking (sticky: a terminal job never changes again)."""
    return status in TERMINAL_STATUSES


def iso_time(timestamp: float) -> str:
    """Render a unix timestamp as ISO 8601 UTC with milliseconds, like the vendor API."""
    # Like datetime.fromtimestamp: round to the microsecond, then truncate.
    return _iso_millis(round(timestamp * 1_000_000) // 1000)


@functools.lru_cache(maxsize=4096)
def _iso_millis(millis: int) -> str:
    # A batch's job views share their timestamps to the millisecond.
    seconds, millis = divmod(millis, 1000)
    return f"{_iso_second(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=4096)
def _iso_second(seconds: int) -> str:
    # Job views render many timestamps of the same second (a batch shares its
    # registration time): formatting each second once keeps them cheap.
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


@dataclass(frozen=True, slots=True, kw_only=True)
class NewJob:
    """A validated registration, ready to be stored."""

    job_id: str
    project_id: str
    account: str
    service: str = DEFAULT_SERVICE
    labels: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None


@dataclass(slots=True, kw_only=True)
class JobRecord:
    """A tracked job as persisted by the store.

    ``snapshot`` holds what the state machine needs to diff the next response
    (sub-job statuses and per-subject transition counts); it is opaque JSON.
    ``version`` increases with every write, so a write can be made conditional
    on the state it was computed from. ``progress`` is the percentage
    upstream reported at the last write, when its format reports one.
    """

    job_id: str
    project_id: str
    account: str
    service: str = DEFAULT_SERVICE
    status: str = PENDING
    job_type: str | None = None
    begin_time: str | None = None
    end_time: str | None = None
    error_code: str | None = None
    fail_reason: str | None = None
    entities: dict[str, Any] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    registered_at: float = 0.0
    updated_at: float = 0.0
    polls: int = 0
    last_error: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    snapshot: dict[str, Any] = field(default_factory=dict)
    progress: float | None = None
    version: int = 0

    @property
    def terminal(self) -> bool:
        """Whether the job has reached a terminal status."""
        return is_terminal(self.status)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewEvent:
    """An event about to be appended to the durable event log."""

    event_id: str
    job_id: str
    type: str
    payload: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEvent:
    """An event in the durable event log; ``seq`` orders all events."""

    seq: int
    event_id: str
    job_id: str
    type: str
    payload: bytes


MAX_TEXT_LENGTH = 1024
"""Upstream free text (``fail_reason``, messages...) is cut to this many characters."""


def bounded_text(value: str, limit: int = MAX_TEXT_LENGTH) -> str:
    """``value`` cut to ``limit`` characters (marked with an ellipsis when cut)."""
    return value if len(value) <= limit else value[: limit - 1] + "\u2026"
