"""The durable store: jobs, the event log (outbox) and sink delivery positions.

:class:`Store` is the seam: the daemon only talks to this protocol, so a
store shared by several instances (PostgreSQL with leases) can stand beside
the embedded SQLite one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from jobwatchd.models import JobRecord, NewEvent, NewJob, StoredEvent


class ConflictError(Exception):
    """A job is already tracked under another project; nothing was stored."""

    def __init__(self, job_id: str, project_id: str) -> None:
        super().__init__(f"job {job_id} is already tracked under project {project_id}")
        self.job_id = job_id
        self.project_id = project_id


class StaleWriteError(Exception):
    """The job changed (or vanished) since it was read; the write was not applied."""


@dataclass(frozen=True, slots=True)
class Registration:
    """The outcome of registering one job."""

    job: JobRecord
    created: bool


class Store(Protocol):
    """Everything the daemon persists. Implementations must be safe to call
    from one event loop concurrently; each method is one transaction."""

    async def open(self) -> None:
        """Open or create the store and apply pending migrations."""

    async def close(self) -> None:
        """Flush and close."""

    async def register(self, jobs: Sequence[NewJob], now: float) -> list[Registration]:
        """Track ``jobs`` atomically: all of them, or none on :class:`ConflictError`."""
        ...

    async def get_job(self, job_id: str) -> JobRecord | None:
        """One job, or None."""
        ...

    async def list_jobs(
        self,
        *,
        status: str | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[JobRecord]:
        """Jobs ordered by id, after the ``after`` id, filtered."""
        ...

    async def delete_job(self, job_id: str) -> bool:
        """Stop tracking; False when the job was unknown."""
        ...

    async def active_jobs_page(self, after: str | None, limit: int) -> list[JobRecord]:
        """Up to ``limit`` non-terminal jobs with ids after ``after``, by id: the
        schedule is rebuilt from these pages on start."""
        ...

    async def load_duration_models(self) -> dict[str, dict[str, float]]:
        """The learned duration model of each job type."""
        ...

    async def save_duration_models(self, models: Mapping[str, Mapping[str, float]]) -> None:
        """Store (replace) the given job types' duration models."""

    async def record(self, job: JobRecord, events: Sequence[NewEvent]) -> list[StoredEvent]:
        """Write ``job`` and append ``events`` in one transaction, only if the
        stored version is still ``job.version``; the stored version becomes
        ``job.version + 1`` (and so does ``job.version``). Raises
        :class:`StaleWriteError` otherwise."""
        ...

    async def events_after(self, seq: int, limit: int) -> list[StoredEvent]:
        """Up to ``limit`` events with a sequence number above ``seq``, in order."""
        ...

    async def last_seq(self) -> int:
        """The newest event's sequence number (0 when there is none)."""
        ...

    async def recorded_at_after(self, seq: int) -> float | None:
        """When the first event after ``seq`` was recorded (None when there is none)."""
        ...

    async def get_position(self, sink: str) -> int:
        """The last sequence number ``sink`` acknowledged (0 for a new sink)."""
        ...

    async def set_position(self, sink: str, seq: int) -> None:
        """Advance ``sink``'s position; it never moves backwards."""

    async def count_by_status(self) -> dict[str, int]:
        """Number of jobs per status."""
        ...

    async def purge(self, before: float, sinks: Sequence[str]) -> tuple[int, int]:
        """Delete terminal jobs last updated before ``before`` and events older
        than that which every one of ``sinks`` has acknowledged. Returns
        (jobs, events) deleted."""
        ...
