"""The embedded SQLite store (WAL), the default.

All SQL runs on one dedicated thread that owns the connection, so the event
loop never blocks on disk. WAL with ``synchronous=NORMAL`` keeps every
committed transaction across a process crash (``kill -9``); only a power loss
can drop the last few commits.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from jobwatchd.models import (
    PENDING,
    JobRecord,
    NewEvent,
    NewJob,
    StoredEvent,
    is_terminal,
)
from jobwatchd.store import (
    EMPTY_DOC,
    ActivePage,
    ActiveRecord,
    Registration,
    StaleWriteError,
    StoreUnavailableError,
    conflict,
    job_doc,
    job_from_row,
)

T = TypeVar("T")

# Threads (each with its own connection) serving reads: API lists and
# lookups, the sinks' reads of the event log.
READER_THREADS = 2

# Each entry upgrades the schema by one version; never edit a released entry.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        job_id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL,
        account TEXT NOT NULL,
        status TEXT NOT NULL,
        terminal INTEGER NOT NULL,
        registered_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        version INTEGER NOT NULL,
        labels TEXT NOT NULL,
        doc TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX jobs_by_status ON jobs (status, job_id);
    CREATE INDEX jobs_active ON jobs (terminal, updated_at);
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        job_id TEXT NOT NULL,
        type TEXT NOT NULL,
        payload BLOB NOT NULL,
        recorded_at REAL NOT NULL
    );
    CREATE TABLE sink_positions (
        sink TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
    """
    CREATE TABLE duration_models (
        job_type TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        updated_at REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # Restoring pages by id must not sort the whole active set for each page.
    """
    CREATE INDEX jobs_active_by_id ON jobs (terminal, job_id);
    """,
    # Registration at scale: rows are appended in rowid order instead of
    # inserted at random places of a tree keyed by job id, and only one index
    # (the id) takes random inserts. The restore pages through jobs_active.
    """
    CREATE TABLE jobs_v4 (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL,
        project_id TEXT NOT NULL,
        account TEXT NOT NULL,
        status TEXT NOT NULL,
        terminal INTEGER NOT NULL,
        registered_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        version INTEGER NOT NULL,
        labels TEXT NOT NULL,
        doc TEXT NOT NULL
    );
    INSERT INTO jobs_v4 (job_id, project_id, account, status, terminal, registered_at,
                         updated_at, version, labels, doc)
    SELECT job_id, project_id, account, status, terminal, registered_at, updated_at,
           version, labels, doc
    FROM jobs ORDER BY registered_at, job_id;
    DROP TABLE jobs;
    ALTER TABLE jobs_v4 RENAME TO jobs;
    CREATE UNIQUE INDEX jobs_by_id ON jobs (job_id);
    CREATE INDEX jobs_by_status ON jobs (status);
    CREATE INDEX jobs_active ON jobs (terminal, updated_at);
    """,
    # Jobs of other services than ECS; every job stored before is an ECS one.
    """
    ALTER TABLE jobs ADD COLUMN service TEXT NOT NULL DEFAULT 'ecs';
    """,
)

# Fields kept in the ``doc`` JSON column; the rest have columns of their own.
_WAL_CHECKPOINT_PAGES = 20_000
_IN_CHUNK = 500  # ids per IN (...) query, well under the parameter limit
_JOB_COLUMNS = (
    "job_id, project_id, account, service, status, registered_at, updated_at, version, labels, doc"
)


_INSERT_BATCH = """
    INSERT INTO jobs (job_id, project_id, account, labels, doc, service,
                      status, terminal, registered_at, updated_at, version)
    SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, ?1, 0, ?2, ?2, 0
    FROM json_each(?3) WHERE true
    ON CONFLICT (job_id) DO NOTHING
"""
# A page of active jobs as one JSON array of ActiveRecord-shaped arrays, built
# by SQLite in one step with the GIL released (the tracker activates the
# previous page meanwhile) instead of row by row. A new job's document ({})
# is not parsed; otherwise only the fields polling needs are taken from it.
# REAL columns go through printf('%!.17g') so no digit is lost on the way.
_ACTIVE_PAGE = """
    SELECT count(*), json_group_array(
        CASE doc WHEN '{}' THEN json_array(
            job_id, project_id, account, status, version,
            json(printf('%!.17g', registered_at)), NULL, 0, NULL, NULL, NULL, NULL, service)
        ELSE json_array(
            job_id, project_id, account, status, version,
            json(printf('%!.17g', registered_at)),
            doc->'timeout', ifnull(doc->>'polls', 0), doc->'last_error',
            doc->>'job_type', doc->>'begin_time',
            CASE WHEN doc->>'snapshot' = '{}' THEN NULL ELSE doc->'snapshot' END, service)
        END)
    FROM (
        SELECT job_id, project_id, account, status, version, registered_at, doc, service
        FROM jobs INDEXED BY jobs_active
        WHERE terminal = 0 AND (updated_at, id) > (?1, ?2)
        ORDER BY updated_at, id
        LIMIT ?3
    )
"""
# Where the next page starts: the page's last row (an index-only scan).
_ACTIVE_PAGE_END = """
    SELECT updated_at, id FROM jobs INDEXED BY jobs_active
    WHERE terminal = 0 AND (updated_at, id) > (?1, ?2)
    ORDER BY updated_at, id
    LIMIT 1 OFFSET ?3 - 1
"""


def _event_from_row(row: sqlite3.Row) -> StoredEvent:
    return StoredEvent(
        seq=row["seq"],
        event_id=row["event_id"],
        job_id=row["job_id"],
        type=row["type"],
        payload=bytes(row["payload"]),
    )


class SQLiteStore:
    """:class:`jobwatchd.store.Store` on an SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        # Reads run on their own threads and connections (WAL lets readers
        # proceed while the one writer writes), so a burst of list scans never
        # queues a registration or a poll's write behind it.
        self._readers: ThreadPoolExecutor | None = None
        self._reader_local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()

    def _reader_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._reader_local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA query_only=ON")
            self._reader_local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run the read-only ``fn`` on a reader thread's own connection."""
        if self._readers is None:
            raise RuntimeError("store is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._readers, lambda: fn(self._reader_conn())
            )
        except sqlite3.OperationalError as exc:
            raise StoreUnavailableError(f"SQLite: {exc}") from exc

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None or self._conn is None:
            raise RuntimeError("store is not open")
        conn = self._conn
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, conn)
        except sqlite3.OperationalError as exc:  # locked, busy, disk full, I/O error
            raise StoreUnavailableError(f"SQLite: {exc}") from exc

    async def open(self) -> None:
        """Open the database file (creating its directory) and migrate it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobwatchd-sqlite")

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # Checkpoint every ~80 MiB of WAL instead of every 4 MiB: a batch
            # of random job ids dirties thousands of id-index pages, and pages
            # dirtied again by the next batches are then copied back once.
            conn.execute(f"PRAGMA wal_autocheckpoint={_WAL_CHECKPOINT_PAGES}")
            conn.execute("PRAGMA busy_timeout=5000")
            _migrate(conn)
            return conn

        self._conn = await asyncio.get_running_loop().run_in_executor(self._executor, connect)
        self._readers = ThreadPoolExecutor(
            max_workers=READER_THREADS, thread_name_prefix="jobwatchd-sqlite-read"
        )

    async def close(self) -> None:
        """Checkpoint the WAL and close."""
        if self._conn is None or self._executor is None:
            return

        def shutdown(conn: sqlite3.Connection) -> None:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()

        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        for reader in self._reader_conns:
            reader.close()
        self._reader_conns.clear()
        self._reader_local = threading.local()
        await self._run(shutdown)
        self._executor.shutdown(wait=True)
        self._conn = None
        self._executor = None

    async def schema_version(self) -> int:
        """The applied schema version."""
        return await self._run(_current_version)

    async def register(self, jobs: Sequence[NewJob], now: float) -> list[Registration]:
        """Track ``jobs`` in one transaction; roll back all on a conflict.

        One INSERT ... SELECT over a JSON array stores the whole batch (the
        GIL is released while SQLite works). Only when it did not insert every
        job (some known already, or repeated in the batch) are the batch's
        rows read back, to tell the new ones (higher ids) from the known.
        """
        rows = orjson.dumps(
            [
                (
                    job.job_id,
                    job.project_id,
                    job.account,
                    orjson.dumps(dict(job.labels)).decode() if job.labels else "{}",
                    EMPTY_DOC
                    if job.timeout is None
                    else orjson.dumps({"timeout": job.timeout}).decode(),
                    job.service,
                )
                for job in jobs
            ]
        )

        def work(conn: sqlite3.Connection) -> list[Registration]:
            with _transaction(conn):
                # Rows are appended: the ones this batch inserts have higher ids.
                (last_id,) = conn.execute("SELECT ifnull(max(id), 0) FROM jobs").fetchone()
                inserted = conn.execute(_INSERT_BATCH, (PENDING, now, rows)).rowcount
                existing: dict[str, JobRecord] = {}
                new_ids: set[str] = set()
                if inserted < len(jobs):  # some known already, or repeated in the batch
                    ids = list({job.job_id for job in jobs})
                    for start in range(0, len(ids), _IN_CHUNK):
                        chunk = ids[start : start + _IN_CHUNK]
                        marks = ",".join("?" * len(chunk))
                        found = conn.execute(
                            f"SELECT id, {_JOB_COLUMNS} FROM jobs WHERE job_id IN ({marks})",
                            chunk,
                        )
                        for row in found:
                            if row["id"] > last_id:
                                new_ids.add(row["job_id"])
                            else:
                                existing[row["job_id"]] = job_from_row(row)
                results: list[Registration] = []
                for new in jobs:
                    job_id = new.job_id
                    known = existing.get(job_id)
                    if known is None:
                        if inserted < len(jobs) and job_id not in new_ids:
                            raise AssertionError(f"job {job_id} was neither stored nor known")
                        job = JobRecord(
                            job_id=job_id,
                            project_id=new.project_id,
                            account=new.account,
                            service=new.service,
                            labels=dict(new.labels),
                            timeout=new.timeout,
                            registered_at=now,
                            updated_at=now,
                        )
                        existing[job_id] = job  # a repeat later in the batch is not new
                        results.append(Registration(job, created=True))
                        continue
                    if (clash := conflict(known, new)) is not None:
                        raise clash
                    results.append(Registration(known, created=False))
            return results

        return await self._run(work)

    async def get_job(self, job_id: str) -> JobRecord | None:
        """One job, or None."""

        def work(conn: sqlite3.Connection) -> JobRecord | None:
            row = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
            return None if row is None else job_from_row(row)

        return await self._read(work)

    async def list_jobs(
        self,
        *,
        status: str | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int = 100,
        after: str | None = None,
        service: str | None = None,
    ) -> list[JobRecord]:
        """Jobs ordered by id after ``after``, filtered by status, service and labels."""
        clauses: list[str] = []
        params: list[Any] = []
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if service is not None:
            clauses.append("service = ?")
            params.append(service)
        if after is not None:
            clauses.append("job_id > ?")
            params.append(after)
        for key, value in (labels or {}).items():
            clauses.append(
                "EXISTS (SELECT 1 FROM json_each(jobs.labels) WHERE key = ? AND value = ?)"
            )
            params.extend((key, value))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        # Walk job_id order and filter, never "every job of the status, sorted":
        # a page stops after `limit` matches, so listing all of a status costs
        # one pass over the table in all instead of a sort per page.
        query = (
            f"SELECT {_JOB_COLUMNS} FROM jobs INDEXED BY jobs_by_id {where} ORDER BY job_id LIMIT ?"
        )
        params.append(limit)

        def work(conn: sqlite3.Connection) -> list[JobRecord]:
            return [job_from_row(row) for row in conn.execute(query, params)]

        return await self._read(work)

    async def delete_job(self, job_id: str) -> bool:
        """Stop tracking ``job_id``; its recorded events stay in the log."""

        def work(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,)).rowcount > 0

        return await self._run(work)

    async def active_jobs_page(self, cursor: str | None, limit: int) -> ActivePage:
        """Non-terminal jobs in (updated_at, id) order, read off the jobs_active
        index; only the fields polling needs are read (SQLite extracts them
        from the document and renders the page as one JSON array). The cursor
        is the last row's ``updated_at:id``."""
        after_time, after_id = -math.inf, 0
        if cursor is not None:
            time_text, _, id_text = cursor.partition(":")
            after_time, after_id = float(time_text), int(id_text)

        def work(conn: sqlite3.Connection) -> ActivePage:
            args = (after_time, after_id, limit)
            count, page = conn.execute(_ACTIVE_PAGE, args).fetchone()
            jobs = list(map(ActiveRecord._make, orjson.loads(page)))
            if count < limit:
                return ActivePage(jobs, None)
            updated_at, row_id = conn.execute(_ACTIVE_PAGE_END, args).fetchone()
            return ActivePage(jobs, f"{updated_at!r}:{row_id}")

        return await self._run(work)

    async def load_duration_models(self) -> dict[str, dict[str, float]]:
        """Every job type's learned duration model."""

        def work(conn: sqlite3.Connection) -> dict[str, dict[str, float]]:
            rows = conn.execute("SELECT job_type, model FROM duration_models")
            return {row[0]: orjson.loads(row[1]) for row in rows}

        return await self._run(work)

    async def save_duration_models(self, models: Mapping[str, Mapping[str, float]]) -> None:
        """Upsert duration models."""

        def work(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.executemany(
                    "INSERT INTO duration_models (job_type, model, updated_at)"
                    " VALUES (?, ?, unixepoch()) ON CONFLICT (job_type) DO UPDATE"
                    " SET model = excluded.model, updated_at = excluded.updated_at",
                    [(name, orjson.dumps(dict(model)).decode()) for name, model in models.items()],
                )

        await self._run(work)

    async def record(self, job: JobRecord, events: Sequence[NewEvent]) -> list[StoredEvent]:
        """Conditionally write ``job`` and append ``events`` atomically."""

        def work(conn: sqlite3.Connection) -> list[StoredEvent]:
            stored: list[StoredEvent] = []
            with _transaction(conn):
                updated = conn.execute(
                    "UPDATE jobs SET status = ?, terminal = ?, updated_at = ?, version = ?,"
                    " doc = ? WHERE job_id = ? AND version = ?",
                    (
                        job.status,
                        int(is_terminal(job.status)),
                        job.updated_at,
                        job.version + 1,
                        job_doc(job),
                        job.job_id,
                        job.version,
                    ),
                ).rowcount
                if updated != 1:
                    raise StaleWriteError(job.job_id)
                for event in events:
                    cursor = conn.execute(
                        "INSERT INTO events (event_id, job_id, type, payload, recorded_at)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (event.event_id, event.job_id, event.type, event.payload, job.updated_at),
                    )
                    assert cursor.lastrowid is not None
                    stored.append(
                        StoredEvent(
                            seq=cursor.lastrowid,
                            event_id=event.event_id,
                            job_id=event.job_id,
                            type=event.type,
                            payload=event.payload,
                        )
                    )
            return stored

        stored = await self._run(work)
        job.version += 1
        return stored

    async def events_after(self, seq: int, limit: int) -> list[StoredEvent]:
        """Events after ``seq`` in order."""

        def work(conn: sqlite3.Connection) -> list[StoredEvent]:
            rows = conn.execute(
                "SELECT seq, event_id, job_id, type, payload FROM events"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            )
            return [_event_from_row(row) for row in rows]

        return await self._read(work)

    async def last_seq(self) -> int:
        """The newest sequence number, 0 for an empty log."""

        def work(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT max(seq) FROM events").fetchone()
            return int(row[0] or 0)

        return await self._read(work)

    async def recorded_at_after(self, seq: int) -> float | None:
        """The recording time of the first event after ``seq``."""

        def work(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT recorded_at FROM events WHERE seq > ? ORDER BY seq LIMIT 1", (seq,)
            ).fetchone()
            return None if row is None else float(row[0])

        return await self._read(work)

    async def get_position(self, sink: str) -> int:
        """The sink's acknowledged position (0 when new)."""

        def work(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT seq FROM sink_positions WHERE sink = ?", (sink,)).fetchone()
            return 0 if row is None else int(row[0])

        return await self._read(work)

    async def set_position(self, sink: str, seq: int) -> None:
        """Advance the sink's position, never backwards."""

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO sink_positions (sink, seq, updated_at) VALUES (?, ?, unixepoch())"
                " ON CONFLICT (sink) DO UPDATE SET seq = max(seq, excluded.seq),"
                " updated_at = excluded.updated_at",
                (sink, seq),
            )

        await self._run(work)

    async def count_by_status(self) -> dict[str, int]:
        """Jobs per status."""

        def work(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute("SELECT status, count(*) FROM jobs GROUP BY status")
            return {row[0]: int(row[1]) for row in rows}

        return await self._read(work)

    async def purge(self, before: float, sinks: Sequence[str]) -> tuple[int, int]:
        """Delete old terminal jobs and old events every sink has acknowledged."""

        def work(conn: sqlite3.Connection) -> tuple[int, int]:
            with _transaction(conn):
                jobs = conn.execute(
                    "DELETE FROM jobs WHERE terminal = 1 AND updated_at < ?", (before,)
                ).rowcount
                positions = [
                    conn.execute(
                        "SELECT coalesce(max(seq), 0) FROM sink_positions WHERE sink = ?", (sink,)
                    ).fetchone()[0]
                    for sink in sinks
                ]
                delivered = min(positions, default=None)
                if delivered is None:
                    delivered = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[
                        0
                    ]
                events = conn.execute(
                    "DELETE FROM events WHERE recorded_at < ? AND seq <= ?", (before, delivered)
                ).rowcount
            return jobs, events

        return await self._run(work)


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _current_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _migrate(conn: sqlite3.Connection) -> None:
    version = _current_version(conn)
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"database schema version {version} is newer than this jobwatchd"
            f" supports ({len(MIGRATIONS)}); upgrade jobwatchd"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        # executescript commits first; wrap each step so it applies atomically.
        conn.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {number}; COMMIT;")
