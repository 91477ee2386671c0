"""The PostgreSQL store, shared by a fleet of jobwatchd instances (asyncpg, a pool).

It implements :class:`jobwatchd.store.FleetStore`: the same jobs, event log and
sink positions as the SQLite store, plus leases on jobs and sinks so that
several instances share the work. The SQL lives in ``postgresql.sql`` beside
this file, one named query each; the schema in :data:`MIGRATIONS`.

Event order = commit order
--------------------------
Sinks and event streams read the log with ``events_after(position)`` and then
move their position past what they read. With concurrent writers a plain
identity column is not enough: transaction A takes seq 7, B takes seq 8 and
commits first, a reader sees 8, moves its position to 8 and never sees 7. So
:meth:`PostgresStore.record` takes one transaction-scoped advisory lock
(:data:`EVENT_LOCK`) before it draws a seq and holds it until commit: seq
allocation and commit happen in the same order, and a reader that sees seq N
sees every committed seq below it. The job update, the lock, the events and
the NOTIFY are one statement, so the lock is never held across a round trip
to the client. Transitions are rare next to polls (a poll that changes
nothing writes nothing), so serialising their commits costs little; a write
without events takes no lock at all. The alternative, readers
that stop at the oldest transaction still in flight (``pg_snapshot_xmin``),
lets writers run in parallel but makes every reader more complex and stalls
them behind any long transaction.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import secrets
import socket
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

import asyncpg
import orjson

from jobwatchd.logs import get_logger
from jobwatchd.models import JobRecord, NewEvent, NewJob, StoredEvent, is_terminal
from jobwatchd.options import read_secret, redact_dsn
from jobwatchd.store import (
    ActivePage,
    ActiveRecord,
    Registration,
    StaleWriteError,
    StoreUnavailableError,
    conflict,
    job_doc,
    job_from_row,
)

log = get_logger("jobwatchd.store.postgresql")

EVENT_LOCK: Final = 0x6A77_6576_656E  # "jweven": serialises event commits (see above)
MIGRATION_LOCK: Final = 0x6A77_6D69_6772  # "jwmigr": one instance migrates at a time
CHANNEL: Final = "jobwatchd_events"

# What a server that is down, restarting, out of connections or out of disk
# raises: the store is unavailable (503, retried), not broken.
OUTAGES: Final = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.InterfaceError,
    # A connection the server dropped in the middle of an operation can be left
    # "in another operation"; the pool replaces it, the next call gets a new one.
    asyncpg.exceptions.InternalClientError,
)

_P = ParamSpec("_P")
_T = TypeVar("_T")


def _unavailable_when_down(
    method: Callable[Concatenate[PostgresStore, _P], Awaitable[_T]],
) -> Callable[Concatenate[PostgresStore, _P], Coroutine[Any, Any, _T]]:
    """Raise :class:`StoreUnavailableError` for an outage, naming the server."""

    async def call(self: PostgresStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return await method(self, *args, **kwargs)
        except OUTAGES as exc:
            raise StoreUnavailableError(
                f"PostgreSQL at {self.url}: {type(exc).__name__}: {exc}"
            ) from exc

    functools.update_wrapper(call, method)
    return call


_REGISTER_ATTEMPTS = 3

# Each entry upgrades the schema by one version; never edit a released entry.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        job_id text COLLATE "C" PRIMARY KEY,
        project_id text NOT NULL,
        account text NOT NULL,
        status text NOT NULL,
        terminal boolean NOT NULL,
        registered_at double precision NOT NULL,
        updated_at double precision NOT NULL,
        version bigint NOT NULL,
        labels jsonb NOT NULL,
        doc json NOT NULL,
        lease_owner text,
        lease_until timestamptz,
        next_poll_at timestamptz
    );
    CREATE INDEX jobs_by_status ON jobs (status, job_id);
    CREATE INDEX jobs_active ON jobs (job_id) WHERE NOT terminal;
    CREATE INDEX jobs_finished ON jobs (updated_at) WHERE terminal;
    CREATE INDEX jobs_by_lease ON jobs (lease_until NULLS FIRST) WHERE NOT terminal;
    CREATE INDEX jobs_by_labels ON jobs USING gin (labels jsonb_path_ops);
    CREATE TABLE events (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id text NOT NULL UNIQUE,
        job_id text NOT NULL,
        type text NOT NULL,
        payload bytea NOT NULL,
        recorded_at double precision NOT NULL
    );
    CREATE TABLE sink_positions (
        sink text PRIMARY KEY,
        seq bigint NOT NULL,
        updated_at timestamptz NOT NULL
    );
    CREATE TABLE duration_models (
        job_type text PRIMARY KEY,
        model jsonb NOT NULL,
        updated_at timestamptz NOT NULL
    );
    CREATE TABLE instances (
        id text PRIMARY KEY,
        last_seen timestamptz NOT NULL
    );
    CREATE TABLE sink_leases (
        sink text PRIMARY KEY,
        owner text NOT NULL,
        until timestamptz NOT NULL
    );
    """,
    # Jobs of other services than ECS; every job stored before is an ECS one.
    """
    ALTER TABLE jobs ADD COLUMN service text NOT NULL DEFAULT 'ecs';
    """,
)

# Fields kept in the ``doc`` JSON column; the rest have columns of their own.
# ``doc`` is ``json``, not ``jsonb``: it round-trips exactly (floats, key order)
# and accepts any string upstream sends, \u0000 included.
_QUERY_NAME = re.compile(r"^-- ([a-z_]+) --$", re.MULTILINE)


def load_queries(text: str) -> dict[str, str]:
    """The named queries of a ``.sql`` file: each starts with a ``-- name --`` line."""
    parts = _QUERY_NAME.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


QUERIES: Final = load_queries(
    resources.files("jobwatchd.store").joinpath("postgresql.sql").read_text("utf-8")
)


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


def _default_instance() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class _Retry(Exception):
    """Roll the transaction back and run it again."""


class PostgresStore:
    """:class:`jobwatchd.store.FleetStore` on a PostgreSQL database.

    ``dsn`` is a ``postgresql://`` URL; a password comes from ``password_file``
    (re-read for every new connection, so it can be rotated), else the usual
    libpq sources asyncpg honours (``PGPASSWORD``, ``PGPASSFILE``/``~/.pgpass``),
    else the URL. The password never appears in ``repr`` or in a log line.
    """

    def __init__(
        self,
        dsn: str,
        *,
        instance: str | None = None,
        password_file: Path | None = None,
        min_size: int = 1,
        max_size: int = 10,
    ) -> None:
        self.instance = instance or _default_instance()
        self._dsn = dsn
        self._password_file = password_file
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._listener: asyncpg.Connection[asyncpg.Record] | None = None
        self._listener_lock = asyncio.Lock()
        self._notified = 0
        self._wakeup = asyncio.Event()

    def __repr__(self) -> str:
        return f"PostgresStore({redact_dsn(self._dsn)!r}, instance={self.instance!r})"

    @property
    def url(self) -> str:
        """The DSN with any password masked, for logs and messages."""
        return redact_dsn(self._dsn)

    def _password(self) -> Callable[[], str] | None:
        path = self._password_file
        if path is None:
            return None
        return lambda: read_secret(path, "daemon.store_password_file")

    @property
    def pool(self) -> asyncpg.Pool[asyncpg.Record]:
        """The connection pool (the store must be open)."""
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    # -- lifecycle -----------------------------------------------------------------

    async def open(self) -> None:
        """Connect the pool and apply pending migrations (safe from several
        instances at once: they queue on an advisory lock)."""
        pool = await asyncpg.create_pool(
            self._dsn,
            password=self._password(),
            min_size=self._min_size,
            max_size=self._max_size,
            server_settings={"application_name": "jobwatchd"},
        )
        try:
            async with pool.acquire() as conn:
                await _migrate(conn)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        """Close the listening connection and the pool."""
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @_unavailable_when_down
    async def schema_version(self) -> int:
        """The applied schema version."""
        version: int = await self.pool.fetchval(QUERIES["schema_version"])
        return version

    # -- jobs --------------------------------------------------------------------

    @_unavailable_when_down
    async def register(self, jobs: Sequence[NewJob], now: float) -> list[Registration]:
        """Track ``jobs`` in one transaction; roll back all on a conflict."""
        fresh: dict[str, JobRecord] = {}
        for new in jobs:
            if new.job_id not in fresh:
                fresh[new.job_id] = JobRecord(
                    job_id=new.job_id,
                    project_id=new.project_id,
                    account=new.account,
                    service=new.service,
                    labels=dict(new.labels),
                    timeout=new.timeout,
                    registered_at=now,
                    updated_at=now,
                )
        for _ in range(_REGISTER_ATTEMPTS):
            try:
                return await self._register(jobs, fresh, now)
            except _Retry:
                continue  # a job was deleted between our insert and our read
        raise RuntimeError("registration kept racing with deletions; try again")

    async def _register(
        self, jobs: Sequence[NewJob], fresh: Mapping[str, JobRecord], now: float
    ) -> list[Registration]:
        records = list(fresh.values())
        template = JobRecord(job_id="", project_id="", account="")
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                QUERIES["insert_jobs"],
                [job.job_id for job in records],
                [job.project_id for job in records],
                [job.account for job in records],
                [_json(job.labels) for job in records],
                [job_doc(job) for job in records],
                template.status,
                now,
                template.version,
                [job.service for job in records],
            )
            created = {row["job_id"] for row in rows}
            others = [job_id for job_id in fresh if job_id not in created]
            known = {job_id: fresh[job_id] for job_id in created}
            if others:
                existing = await conn.fetch(QUERIES["get_jobs"], others)
                known.update((row["job_id"], job_from_row(row)) for row in existing)
                if len(known) < len(fresh):
                    raise _Retry
            results: list[Registration] = []
            for new in jobs:
                job = known[new.job_id]
                if (clash := conflict(job, new)) is not None:
                    raise clash
                first = new.job_id in created
                results.append(Registration(job, created=first))
                created.discard(new.job_id)  # a repeat in the same batch is not new
        return results

    @_unavailable_when_down
    async def get_job(self, job_id: str) -> JobRecord | None:
        """One job, or None."""
        row = await self.pool.fetchrow(QUERIES["get_job"], job_id)
        return None if row is None else job_from_row(row)

    @_unavailable_when_down
    async def list_jobs(
        self,
        *,
        status: str | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int = 100,
        after: str | None = None,
        service: str | None = None,
    ) -> list[JobRecord]:
        """Jobs ordered by id after ``after``, filtered by status, service and
        labels (JSONB containment, served by a GIN index)."""
        args: list[Any] = [after or "", _json(dict(labels or {})), limit, service]
        if status is None:
            rows = await self.pool.fetch(QUERIES["list_jobs"], *args)
        else:
            rows = await self.pool.fetch(QUERIES["list_jobs_by_status"], *args, status)
        return [job_from_row(row) for row in rows]

    @_unavailable_when_down
    async def delete_job(self, job_id: str) -> bool:
        """Stop tracking ``job_id``; its recorded events stay in the log."""
        status: str = await self.pool.execute(QUERIES["delete_job"], job_id)
        return status != "DELETE 0"

    @_unavailable_when_down
    async def active_jobs_page(self, cursor: str | None, limit: int) -> ActivePage:
        """Non-terminal jobs by id, a page at a time (leased or not); the
        cursor is the last job id."""
        rows = await self.pool.fetch(QUERIES["active_jobs_page"], cursor or "", limit)
        jobs = [ActiveRecord.of(job_from_row(row)) for row in rows]
        return ActivePage(jobs, jobs[-1].job_id if len(jobs) == limit else None)

    @_unavailable_when_down
    async def count_by_status(self) -> dict[str, int]:
        """Jobs per status."""
        rows = await self.pool.fetch(QUERIES["count_by_status"])
        return {row[0]: int(row[1]) for row in rows}

    # -- duration models ------------------------------------------------------------

    @_unavailable_when_down
    async def load_duration_models(self) -> dict[str, dict[str, float]]:
        """Every job type's learned duration model."""
        rows = await self.pool.fetch(QUERIES["load_duration_models"])
        return {row["job_type"]: orjson.loads(row["model"]) for row in rows}

    @_unavailable_when_down
    async def save_duration_models(self, models: Mapping[str, Mapping[str, float]]) -> None:
        """Upsert duration models."""
        await self.pool.execute(
            QUERIES["save_duration_models"],
            list(models),
            [_json(dict(model)) for model in models.values()],
        )

    # -- transitions and the event log -------------------------------------------------

    @_unavailable_when_down
    async def record(self, job: JobRecord, events: Sequence[NewEvent]) -> list[StoredEvent]:
        """Conditionally write ``job`` and append ``events`` atomically.

        The write applies only if the stored version is still ``job.version``
        and the job is unleased or leased to this instance; otherwise
        :class:`StaleWriteError`. Listeners are notified at commit.
        """
        terminal = is_terminal(job.status)
        args = (
            job.job_id,
            job.version,
            job.status,
            terminal,
            job.updated_at,
            job_doc(job),
            self.instance,
        )
        stored: list[StoredEvent] = []
        if not events:
            if await self.pool.fetchval(QUERIES["record_job"], *args) is None:
                raise StaleWriteError(job.job_id)
        else:
            rows = await self.pool.fetch(
                QUERIES["record_job_with_events"],
                *args,
                EVENT_LOCK,
                [event.event_id for event in events],
                [event.job_id for event in events],
                [event.type for event in events],
                [event.payload for event in events],
            )
            if not rows:
                raise StaleWriteError(job.job_id)
            seqs = {row["event_id"]: int(row["seq"]) for row in rows}
            stored = [
                StoredEvent(
                    seq=seqs[event.event_id],
                    event_id=event.event_id,
                    job_id=event.job_id,
                    type=event.type,
                    payload=event.payload,
                )
                for event in events
            ]
        job.version += 1
        return stored

    @_unavailable_when_down
    async def events_after(self, seq: int, limit: int) -> list[StoredEvent]:
        """Events after ``seq`` in order."""
        rows = await self.pool.fetch(QUERIES["events_after"], seq, limit)
        return [
            StoredEvent(
                seq=row["seq"],
                event_id=row["event_id"],
                job_id=row["job_id"],
                type=row["type"],
                payload=bytes(row["payload"]),
            )
            for row in rows
        ]

    @_unavailable_when_down
    async def last_seq(self) -> int:
        """The newest sequence number, 0 for an empty log."""
        seq: int = await self.pool.fetchval(QUERIES["last_seq"])
        return seq

    @_unavailable_when_down
    async def recorded_at_after(self, seq: int) -> float | None:
        """The recording time of the first event after ``seq``."""
        recorded: float | None = await self.pool.fetchval(QUERIES["recorded_at_after"], seq)
        return recorded

    @_unavailable_when_down
    async def get_position(self, sink: str) -> int:
        """The sink's acknowledged position (0 when new)."""
        seq: int | None = await self.pool.fetchval(QUERIES["get_position"], sink)
        return seq or 0

    @_unavailable_when_down
    async def set_position(self, sink: str, seq: int) -> None:
        """Advance the sink's position, never backwards."""
        await self.pool.execute(QUERIES["set_position"], sink, seq)

    @_unavailable_when_down
    async def purge(self, before: float, sinks: Sequence[str]) -> tuple[int, int]:
        """Delete old terminal jobs and old events every sink has acknowledged."""
        async with self.pool.acquire() as conn, conn.transaction():
            jobs = _count(await conn.execute(QUERIES["purge_jobs"], before))
            delivered: int | None = await conn.fetchval(QUERIES["delivered_position"], list(sinks))
            if delivered is None:
                delivered = int(await conn.fetchval(QUERIES["last_seq"]))
            events = _count(await conn.execute(QUERIES["purge_events"], before, delivered))
        return jobs, events

    # -- the fleet ------------------------------------------------------------------

    @_unavailable_when_down
    async def heartbeat(self, ttl: float) -> int:
        """Note this instance as alive now; count instances seen within ``ttl`` seconds."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(QUERIES["heartbeat"], self.instance)
            await conn.execute(QUERIES["forget_instances"], float(ttl))
            live: int = await conn.fetchval(QUERIES["live_instances"], float(ttl))
        return live

    @_unavailable_when_down
    async def claim_jobs(self, limit: int, lease: float) -> list[JobRecord]:
        """Lease up to ``limit`` unheld (or expired) active jobs to this instance
        for ``lease`` seconds, earliest ``next_poll_at`` first."""
        rows = await self.pool.fetch(QUERIES["claim_jobs"], self.instance, limit, float(lease))
        rows = sorted(rows, key=lambda row: (row["next_poll_at"], row["job_id"]))
        return [job_from_row(row) for row in rows]

    @_unavailable_when_down
    async def renew_leases(self, job_ids: Sequence[str], lease: float) -> set[str]:
        """Extend this instance's leases on ``job_ids`` to ``lease`` seconds from
        now; the ids it still holds (active and leased to it)."""
        if not job_ids:
            return set()
        rows = await self.pool.fetch(
            QUERIES["renew_leases"], self.instance, list(job_ids), float(lease)
        )
        return {row["job_id"] for row in rows}

    @_unavailable_when_down
    async def release_jobs(self, next_poll_at: Mapping[str, float]) -> None:
        """Give up this instance's leases on the given jobs, keeping each one's
        next poll time (unix seconds) for the next holder."""
        if not next_poll_at:
            return
        await self.pool.execute(
            QUERIES["release_jobs"],
            self.instance,
            list(next_poll_at),
            [float(at) for at in next_poll_at.values()],
        )

    @_unavailable_when_down
    async def acquire_sink(self, sink: str, lease: float) -> bool:
        """Take ``sink``'s lease if it is free or expired, or renew ours."""
        owner = await self.pool.fetchval(QUERIES["acquire_sink"], sink, self.instance, float(lease))
        return owner is not None

    @_unavailable_when_down
    async def release_sink(self, sink: str) -> None:
        """Give up ``sink``'s lease if this instance holds it."""
        await self.pool.execute(QUERIES["release_sink"], sink, self.instance)

    @_unavailable_when_down
    async def wait_for_events(self, after: int, timeout: float) -> None:
        """Return once an event after ``after`` exists, or after ``timeout`` seconds.

        Wakes on the NOTIFY every :meth:`record` sends (from any instance), on a
        connection of its own. The log is checked once after listening starts,
        so an event recorded before that, or a notification lost with a broken
        connection, costs at most ``timeout``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self._listen()
        wakeup = self._wakeup
        if self._notified > after or await self.last_seq() > after:
            return
        while self._notified <= after:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                async with asyncio.timeout(remaining):
                    await wakeup.wait()
            except TimeoutError:
                return
            wakeup = self._wakeup

    async def _listen(self) -> None:
        async with self._listener_lock:
            if self._listener is not None and not self._listener.is_closed():
                return
            if self._pool is None:
                raise RuntimeError("store is not open")
            conn = await asyncpg.connect(
                self._dsn,
                password=self._password(),
                server_settings={"application_name": "jobwatchd-listen"},
            )
            conn.add_termination_listener(self._listener_lost)
            await conn.add_listener(CHANNEL, self._notification)
            self._listener = conn

    def _listener_lost(self, conn: object) -> None:
        if self._listener is conn:
            self._listener = None
            log.warning("store.listener_lost", url=self.url)

    def _notification(self, conn: object, pid: int, channel: str, payload: object) -> None:
        try:
            seq = int(str(payload))
        except ValueError:
            return
        if seq > self._notified:
            self._notified = seq
            wakeup, self._wakeup = self._wakeup, asyncio.Event()
            wakeup.set()


def _count(status: str) -> int:
    """The row count of a command tag such as ``DELETE 3``."""
    return int(status.rsplit(" ", 1)[-1])


async def _migrate(conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record]) -> None:
    await conn.execute(QUERIES["lock_migrations"], MIGRATION_LOCK)
    try:
        if not await conn.fetchval(QUERIES["schema_version_exists"]):
            await conn.execute(QUERIES["create_schema_version"])
        version: int = await conn.fetchval(QUERIES["schema_version"])
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"database schema version {version} is newer than this jobwatchd"
                f" supports ({len(MIGRATIONS)}); upgrade jobwatchd"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            async with conn.transaction():
                await conn.execute(script)
                await conn.execute(QUERIES["record_migration"], number)
            log.info("store.migrated", version=number)
    finally:
        await conn.execute(QUERIES["unlock_migrations"], MIGRATION_LOCK)
