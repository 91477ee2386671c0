"""The durable store: jobs, the event log (outbox) and sink delivery positions.

:class:`Store` is the seam: the daemon only talks to this protocol, so a
store shared by several instances (PostgreSQL with leases) can stand beside
the embedded SQLite one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import orjson

from jobwatchd.backoff import BackoffPolicy
from jobwatchd.models import DEFAULT_SERVICE, JobRecord, NewEvent, NewJob, StoredEvent

# JobRecord fields both stores keep in one JSON document column; the others
# have columns of their own (they are queried or updated on their own).
DOC_FIELDS = (
    "job_type",
    "begin_time",
    "end_time",
    "error_code",
    "fail_reason",
    "entities",
    "timeout",
    "polls",
    "last_error",
    "history",
    "snapshot",
    "progress",
)


class Row(Protocol):
    """A database row read by column name (sqlite3.Row, asyncpg.Record)."""

    def __getitem__(self, key: str) -> Any: ...


def job_from_row(row: Row) -> JobRecord:
    """A JobRecord from a row of the jobs columns plus the ``doc`` document."""
    doc: dict[str, Any] = orjson.loads(row["doc"])
    return JobRecord(
        job_id=row["job_id"],
        project_id=row["project_id"],
        account=row["account"],
        service=row["service"],
        status=row["status"],
        registered_at=row["registered_at"],
        updated_at=row["updated_at"],
        version=row["version"],
        labels=orjson.loads(row["labels"]),
        **{key: doc[key] for key in DOC_FIELDS if key in doc},
    )


# A field left out of ``doc`` reads back as its JobRecord default, so the
# document keeps only the fields that differ: a new job's is ``{}``.
_DOC_DEFAULTS: dict[str, Any] = {
    key: getattr(JobRecord(job_id="", project_id="", account=""), key) for key in DOC_FIELDS
}
EMPTY_DOC = "{}"


def job_doc(job: JobRecord) -> str:
    """The ``doc`` document of a job (JSON text), without default-valued fields."""
    doc = {}
    for key, default in _DOC_DEFAULTS.items():
        value = getattr(job, key)
        if value != default:
            doc[key] = value
    return orjson.dumps(doc).decode() if doc else EMPTY_DOC


class ActiveRecord(NamedTuple):
    """What polling needs of an active job (the restore reads only this).

    A tuple, so that a store can build a million of them cheaply."""

    job_id: str
    project_id: str
    account: str
    status: str
    version: int
    registered_at: float
    timeout: float | None = None
    polls: int = 0
    last_error: dict[str, Any] | None = None
    job_type: str | None = None
    begin_time: str | None = None
    snapshot: dict[str, Any] | None = None
    service: str = DEFAULT_SERVICE

    @classmethod
    def of(cls, job: JobRecord) -> ActiveRecord:
        """The polling part of a whole record."""
        return cls(
            job_id=job.job_id,
            project_id=job.project_id,
            account=job.account,
            status=job.status,
            version=job.version,
            registered_at=job.registered_at,
            timeout=job.timeout,
            polls=job.polls,
            last_error=job.last_error,
            job_type=job.job_type,
            begin_time=job.begin_time,
            snapshot=job.snapshot or None,
            service=job.service,
        )


@dataclass(slots=True)
class ActivePage:
    """One page of active jobs and the cursor to the next (None after the last)."""

    jobs: list[ActiveRecord]
    cursor: str | None


class ConflictError(Exception):
    """A job is already tracked under another project or service; nothing was stored.

    ``field`` names what differs (``project_id`` or ``service``), ``known`` its
    value on the tracked job."""

    def __init__(self, job_id: str, known: str, field: str = "project_id") -> None:
        what = "project" if field == "project_id" else field
        super().__init__(f"job {job_id} is already tracked under {what} {known}")
        self.job_id = job_id
        self.field = field
        self.known = known


def conflict(known: JobRecord, new: NewJob) -> ConflictError | None:
    """The conflict of registering ``new`` again when ``known`` is tracked, if any."""
    if known.project_id != new.project_id:
        return ConflictError(new.job_id, known.project_id)
    if known.service != new.service:
        return ConflictError(new.job_id, known.service, "service")
    return None


class StoreUnavailableError(Exception):
    """The store could not do its work right now (locked by another process,
    disk full, I/O error, server gone); nothing was changed, retry later."""


STORE_RETRY = BackoffPolicy(min_interval=0.5, max_interval=10.0, multiplier=2.0, jitter=0.2)
"""How a background loop (a sink runner, the fleet's) waits for an unavailable
store to come back: 0.5 s doubling to 10 s."""


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

    async def schema_version(self) -> int:
        """The applied schema version (``open`` applies every migration it knows)."""
        ...

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
        service: str | None = None,
    ) -> list[JobRecord]:
        """Jobs ordered by id, after the ``after`` id, filtered."""
        ...

    async def delete_job(self, job_id: str) -> bool:
        """Stop tracking; False when the job was unknown."""
        ...

    async def active_jobs_page(self, cursor: str | None, limit: int) -> ActivePage:
        """Up to ``limit`` non-terminal jobs after ``cursor`` (None: from the
        start), in an order of the store's choosing, with the cursor of the
        next page: the schedule is rebuilt from these pages on start. Paging
        to the end yields every job that was active throughout; a job written
        meanwhile may come again or not at all (the caller already holds it)."""
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


class FleetStore(Store, Protocol):
    """A store shared by several jobwatchd instances (PostgreSQL).

    Work is shared by leases: an instance polls only the jobs it holds a lease
    on, renews its leases while it runs, and the leases of a dead instance
    expire so that others take its jobs over. Lease times are on the
    database's clock, so instances need no synchronised clocks. Once a lease
    has been taken over, :meth:`Store.record` by the old holder raises
    :class:`StaleWriteError`: a transition is never recorded twice.
    """

    instance: str
    """This instance's id (unique per process run)."""

    async def heartbeat(self, ttl: float) -> int:
        """Record that this instance is alive; return how many instances were
        seen within the last ``ttl`` seconds (this one included)."""
        ...

    async def claim_jobs(self, limit: int, lease: float) -> list[JobRecord]:
        """Take up to ``limit`` active jobs that nobody holds (or whose lease
        expired), earliest ``next_poll_at`` first (``FOR UPDATE SKIP LOCKED``),
        leasing them to this instance for ``lease`` seconds."""
        ...

    async def renew_leases(self, job_ids: Sequence[str], lease: float) -> set[str]:
        """Extend this instance's leases on ``job_ids``; return the ids it still
        holds (the others were taken over, finished or deleted)."""
        ...

    async def release_jobs(self, next_poll_at: Mapping[str, float]) -> None:
        """Give up leases, remembering each job's next poll (unix time) so the
        next holder keeps the schedule."""

    async def acquire_sink(self, sink: str, lease: float) -> bool:
        """Take or renew the lease that lets one instance deliver to ``sink``."""
        ...

    async def release_sink(self, sink: str) -> None:
        """Give up the lease on ``sink``."""

    async def wait_for_events(self, after: int, timeout: float) -> None:
        """Return when an event after ``after`` exists (recorded by any
        instance; LISTEN/NOTIFY), or after ``timeout`` seconds."""
