"""Store contract tests. Every store implementation must pass them: the
``store`` fixture runs each test on SQLite (a real file) and on PostgreSQL (a
real server, tests/pg.py). The fleet tests at the end are PostgreSQL's own:
leases, sink leases, notifications, concurrent migrations, event order."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import orjson
import pytest

from jobwatchd.models import FAIL, RUNNING, JobRecord, NewEvent, NewJob, StoredEvent
from jobwatchd.options import redact_dsn
from jobwatchd.store import (
    DOC_FIELDS,
    ActiveRecord,
    ConflictError,
    StaleWriteError,
    Store,
    job_doc,
    job_from_row,
)
from jobwatchd.store.postgresql import MIGRATIONS as PG_MIGRATIONS
from jobwatchd.store.postgresql import PostgresStore
from jobwatchd.store.sqlite import MIGRATIONS, SQLiteStore
from tests.helpers import pg


def new_job(
    job_id: str, project: str = "p1", labels: dict[str, str] | None = None, service: str = "ecs"
) -> NewJob:
    return NewJob(
        job_id=job_id, project_id=project, account="default", labels=labels or {}, service=service
    )


def event(job_id: str, n: int) -> NewEvent:
    return NewEvent(
        event_id=f"{job_id}-{n}", job_id=job_id, type="jobwatchd.job.transition", payload=b"{}"
    )


async def test_register_creates_then_reports_existing(store: Store) -> None:
    first = await store.register([new_job("a", labels={"team": "x"})], now=100.0)
    assert [(r.job.job_id, r.created) for r in first] == [("a", True)]
    again = await store.register([new_job("a")], now=200.0)
    assert [(r.job.job_id, r.created) for r in again] == [("a", False)]
    assert again[0].job.registered_at == 100.0
    assert again[0].job.labels == {"team": "x"}


async def test_batch_with_a_conflict_stores_nothing(store: Store) -> None:
    await store.register([new_job("a", project="p1")], now=1.0)
    with pytest.raises(ConflictError) as caught:
        await store.register([new_job("b"), new_job("a", project="p2"), new_job("c")], now=2.0)
    assert caught.value.job_id == "a"
    assert await store.get_job("b") is None
    assert await store.get_job("c") is None


async def test_each_job_keeps_its_service(store: Store) -> None:
    batch = [new_job("e1"), new_job("v1", service="evs"), new_job("c1", service="cce")]
    created = await store.register(batch, now=1.0)
    assert [r.job.service for r in created] == ["ecs", "evs", "cce"]
    again = await store.register([new_job("v1", service="evs")], now=2.0)
    assert (again[0].created, again[0].job.service) == (False, "evs")
    got = await store.get_job("c1")
    assert got is not None and got.service == "cce"
    assert [j.job_id for j in await store.list_jobs(service="evs")] == ["v1"]
    assert [j.job_id for j in await store.list_jobs(service="ecs")] == ["e1"]
    assert [j.job_id for j in await store.list_jobs(service="cce", status="PENDING")] == ["c1"]
    assert await store.list_jobs(service="cce", status="RUNNING") == []
    page = await store.active_jobs_page(None, 10)
    assert {(job.job_id, job.service) for job in page.jobs} == {
        ("e1", "ecs"),
        ("v1", "evs"),
        ("c1", "cce"),
    }
    job = (await store.get_job("v1")) or pytest.fail("v1 vanished")
    job.status, job.progress = RUNNING, 42.5
    await store.record(job, [])
    reread = await store.get_job("v1")
    assert reread is not None and (reread.service, reread.progress) == ("evs", 42.5)


async def test_the_same_job_under_another_service_is_a_conflict(store: Store) -> None:
    await store.register([new_job("a", service="evs")], now=1.0)
    with pytest.raises(ConflictError) as caught:
        await store.register([new_job("b"), new_job("a", service="ims")], now=2.0)
    assert (caught.value.job_id, caught.value.field, caught.value.known) == ("a", "service", "evs")
    assert "already tracked under service evs" in str(caught.value)
    assert await store.get_job("b") is None


async def test_record_is_conditional_on_version(store: Store) -> None:
    (registration,) = await store.register([new_job("a")], now=1.0)
    job = registration.job
    stale = await store.get_job("a")
    assert stale is not None
    job.status = RUNNING
    stored = await store.record(job, [event("a", 0)])
    assert [e.event_id for e in stored] == ["a-0"]
    assert job.version == 1
    stale.status = FAIL
    with pytest.raises(StaleWriteError):
        await store.record(stale, [event("a", 1)])
    reread = await store.get_job("a")
    assert reread is not None
    assert reread.status == RUNNING
    assert [e.event_id for e in await store.events_after(0, 10)] == ["a-0"]


async def test_events_are_ordered_and_paged(store: Store) -> None:
    (registration,) = await store.register([new_job("a")], now=1.0)
    job = registration.job
    await store.record(job, [event("a", n) for n in range(5)])
    first = await store.events_after(0, 3)
    assert [e.event_id for e in first] == ["a-0", "a-1", "a-2"]
    rest = await store.events_after(first[-1].seq, 10)
    assert [e.event_id for e in rest] == ["a-3", "a-4"]
    assert await store.last_seq() == rest[-1].seq


async def test_positions_start_at_zero_and_never_go_back(store: Store) -> None:
    assert await store.get_position("file") == 0
    await store.set_position("file", 7)
    await store.set_position("file", 3)
    assert await store.get_position("file") == 7


async def test_list_filters_and_cursor(store: Store) -> None:
    await store.register(
        [new_job(f"j{n}", labels={"team": "red" if n % 2 else "blue"}) for n in range(6)], now=1.0
    )
    page = await store.list_jobs(limit=4)
    assert [j.job_id for j in page] == ["j0", "j1", "j2", "j3"]
    rest = await store.list_jobs(limit=4, after="j3")
    assert [j.job_id for j in rest] == ["j4", "j5"]
    red = await store.list_jobs(labels={"team": "red"})
    assert [j.job_id for j in red] == ["j1", "j3", "j5"]
    assert await store.list_jobs(status="RUNNING") == []
    assert len(await store.list_jobs(status="PENDING")) == 6


async def test_active_jobs_and_delete(store: Store) -> None:
    results = await store.register([new_job("a"), new_job("b")], now=1.0)
    done = results[1].job
    done.status = FAIL
    await store.record(done, [])
    assert [j.job_id for j in (await store.active_jobs_page(None, 10)).jobs] == ["a"]
    assert await store.count_by_status() == {"PENDING": 1, "FAIL": 1}
    assert await store.delete_job("a") is True
    assert await store.delete_job("a") is False
    assert (await store.active_jobs_page(None, 10)).jobs == []


async def test_purge_keeps_undelivered_events(store: Store) -> None:
    (registration,) = await store.register([new_job("a")], now=1.0)
    job = registration.job
    job.status = FAIL
    job.updated_at = 10.0
    stored = await store.record(job, [event("a", 0), event("a", 1)])
    await store.set_position("file", stored[0].seq)
    jobs, events = await store.purge(before=20.0, sinks=["file"])
    assert (jobs, events) == (1, 1)
    assert [e.event_id for e in await store.events_after(0, 10)] == ["a-1"]
    assert await store.get_job("a") is None


async def test_sqlite_schema_is_versioned_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store = SQLiteStore(path)
    await store.open()
    await store.register([new_job("a")], now=1.0)
    assert await store.schema_version() == len(MIGRATIONS)
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reopened = SQLiteStore(path)
    await reopened.open()
    assert await reopened.get_job("a") is not None
    await reopened.close()


def _old_doc(job: JobRecord) -> str:
    """``doc`` as schema versions up to 3 wrote it: every field, defaults too."""
    return orjson.dumps({key: getattr(job, key) for key in DOC_FIELDS}).decode()


async def test_sqlite_migrates_a_version_3_database_keeping_every_job(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    fresh = JobRecord(
        job_id="fresh", project_id="p1", account="default", registered_at=1.0, updated_at=1.0
    )
    running = JobRecord(
        job_id="running",
        project_id="p2",
        account="other",
        status=RUNNING,
        job_type="resizeServer",
        begin_time="2016-04-25T20:04:47.591Z",
        entities={"sub_jobs": []},
        labels={"team": "red"},
        timeout=30.0,
        registered_at=2.0,
        updated_at=3.0,
        polls=5,
        last_error={"code": "E", "message": "m", "http_status": None, "at": "t"},
        history=[{"from": "PENDING", "to": "RUNNING", "at": "t"}],
        snapshot={"status": RUNNING},
        version=2,
    )
    failed = JobRecord(job_id="failed", project_id="p1", account="default", status=FAIL, version=1)
    with sqlite3.connect(path) as db:
        for number, script in enumerate(MIGRATIONS[:3], start=1):
            db.executescript(f"{script}; PRAGMA user_version = {number};")
        db.executemany(
            "INSERT INTO jobs (job_id, project_id, account, status, terminal, registered_at,"
            " updated_at, version, labels, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    job.job_id,
                    job.project_id,
                    job.account,
                    job.status,
                    int(job.terminal),
                    job.registered_at,
                    job.updated_at,
                    job.version,
                    orjson.dumps(job.labels).decode(),
                    _old_doc(job),
                )
                for job in (fresh, running, failed)
            ],
        )
    db.close()
    store = SQLiteStore(path)
    await store.open()
    try:
        assert await store.schema_version() == len(MIGRATIONS) > 3
        for job in (fresh, running, failed):
            assert await store.get_job(job.job_id) == job
        assert [j.job_id for j in await store.list_jobs()] == ["failed", "fresh", "running"]
        assert [j.job_id for j in await store.list_jobs(labels={"team": "red"})] == ["running"]
        assert [j.job_id for j in await store.list_jobs(status=FAIL)] == ["failed"]
        active = {j.job_id: j for j in await all_active(store, 1)}
        assert active == {"fresh": ActiveRecord.of(fresh), "running": ActiveRecord.of(running)}
        (again,) = await store.register([new_job("running", project="p2")], now=9.0)
        assert not again.created and again.job == running
        with pytest.raises(ConflictError):
            await store.register([new_job("new"), new_job("fresh", project="p3")], now=9.0)
        assert await store.get_job("new") is None
        running.status = FAIL
        await store.record(running, [])
        assert [j.job_id for j in await all_active(store, 10)] == ["fresh"]
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        indexes = {
            row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
    db.close()
    assert {"jobs_by_id", "jobs_by_status", "jobs_active"} <= indexes
    assert "jobs_active_by_id" not in indexes


async def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    store = SQLiteStore(path)
    with pytest.raises(RuntimeError, match="newer than this jobwatchd"):
        await store.open()


async def all_active(store: Store, limit: int) -> list[ActiveRecord]:
    """Every active job, paging ``limit`` at a time to the end."""
    jobs: list[ActiveRecord] = []
    cursor: str | None = None
    for _ in range(1000):
        page = await store.active_jobs_page(cursor, limit)
        assert len(page.jobs) <= limit
        jobs.extend(page.jobs)
        if page.cursor is None:
            return jobs
        cursor = page.cursor
    raise AssertionError("the pages never ended")


async def test_active_jobs_come_in_pages(store: Store) -> None:
    # Batches share their registration time: pages must split ties exactly.
    await store.register([new_job(f"j{n}") for n in range(5)], now=1.0)
    await store.register([new_job(f"k{n}") for n in range(4)], now=2.0)
    for limit in (1, 2, 3, 9, 10):
        ids = [j.job_id for j in await all_active(store, limit)]
        assert sorted(ids) == [f"j{n}" for n in range(5)] + [f"k{n}" for n in range(4)]


async def test_active_jobs_carry_what_polling_needs(store: Store) -> None:
    new = [
        NewJob(job_id="t", project_id="p9", account="other", labels={"a": "b"}, timeout=90.5),
        new_job("plain"),
        new_job("done"),
        new_job("seen"),
    ]
    results = {r.job.job_id: r.job for r in await store.register(new, now=5.0)}
    done = results["done"]
    done.status = FAIL
    await store.record(done, [])
    seen = results["seen"]
    seen.status = RUNNING
    seen.updated_at = 7.0
    seen.job_type = "resizeServer"
    seen.begin_time = "2016-04-25T20:04:47.591Z"
    seen.polls = 4
    seen.last_error = {"code": "E", "message": "m", "http_status": 503, "at": "x"}
    seen.entities = {"sub_jobs": [{"job_id": "s1"}]}
    seen.history = [{"from": "PENDING", "to": "RUNNING", "at": "x"}]
    seen.snapshot = {"status": RUNNING, "subs": {"s1": "INIT"}}
    await store.record(seen, [])
    by_id = {j.job_id: j for j in await all_active(store, 2)}
    assert set(by_id) == {"t", "plain", "seen"}
    assert by_id["t"] == ActiveRecord(
        job_id="t",
        project_id="p9",
        account="other",
        status="PENDING",
        version=0,
        registered_at=5.0,
        timeout=90.5,
    )
    assert by_id["plain"] == ActiveRecord(
        job_id="plain", project_id="p1", account="default", status="PENDING", version=0,
        registered_at=5.0,
    )  # fmt: skip
    assert by_id["seen"] == ActiveRecord(
        job_id="seen",
        project_id="p1",
        account="default",
        status=RUNNING,
        version=1,
        registered_at=5.0,
        polls=4,
        last_error={"code": "E", "message": "m", "http_status": 503, "at": "x"},
        job_type="resizeServer",
        begin_time="2016-04-25T20:04:47.591Z",
        snapshot={"status": RUNNING, "subs": {"s1": "INIT"}},
    )


async def test_registration_round_trips_every_field(store: Store) -> None:
    new = NewJob(job_id="t", project_id="p9", account="other", labels={"k": "v"}, timeout=60.0)
    (registration,) = await store.register([new], now=3.0)
    stored = await store.get_job("t")
    assert stored == registration.job
    assert stored == JobRecord(
        job_id="t",
        project_id="p9",
        account="other",
        labels={"k": "v"},
        timeout=60.0,
        registered_at=3.0,
        updated_at=3.0,
    )


def test_job_doc_keeps_only_what_differs_from_the_defaults() -> None:
    fresh = JobRecord(job_id="a", project_id="p", account="x")
    assert job_doc(fresh) == "{}"
    full = JobRecord(
        job_id="a",
        project_id="p",
        account="x",
        job_type="t",
        begin_time="b",
        end_time="e",
        error_code="c",
        fail_reason="f",
        entities={"e": 1},
        timeout=5.0,
        polls=3,
        last_error={"code": "x"},
        history=[{"from": "A", "to": "B", "at": "t"}],
        snapshot={"s": 1},
        progress=12.5,
        service="cce",
    )
    for record in (fresh, full):
        row = {
            "job_id": "a",
            "project_id": "p",
            "account": "x",
            "service": record.service,
            "status": record.status,
            "registered_at": 0.0,
            "updated_at": 0.0,
            "version": 0,
            "labels": "{}",
            "doc": job_doc(record),
        }
        assert job_from_row(row) == record


async def test_a_repeat_within_one_batch_is_registered_once(store: Store) -> None:
    results = await store.register([new_job("a"), new_job("a")], now=1.0)
    assert [r.created for r in results] == [True, False]
    with pytest.raises(ConflictError):
        await store.register([new_job("b", project="p1"), new_job("b", project="p2")], now=1.0)
    assert await store.get_job("b") is None


async def test_a_batch_mixing_new_known_and_repeated_jobs(store: Store) -> None:
    await store.register([new_job("a", labels={"old": "1"})], now=1.0)
    batch = [new_job("x", labels={"k": "v"}), new_job("a"), new_job("x"), new_job("y")]
    results = await store.register(batch, now=2.0)
    assert [(r.job.job_id, r.created) for r in results] == [
        ("x", True),
        ("a", False),
        ("x", False),
        ("y", True),
    ]
    assert results[1].job.labels == {"old": "1"} and results[1].job.registered_at == 1.0
    assert results[0].job == results[2].job
    for job_id, labels in (("x", {"k": "v"}), ("y", {})):
        stored = await store.get_job(job_id)
        assert stored is not None
        assert (stored.labels, stored.registered_at, stored.version) == (labels, 2.0, 0)
    assert len(await store.list_jobs()) == 3


async def test_duration_models_round_trip(store: Store) -> None:
    assert await store.load_duration_models() == {}
    await store.save_duration_models({"createServer": {"count": 3.0, "mean": 4.5, "m2": 0.2}})
    await store.save_duration_models({"createServer": {"count": 4.0, "mean": 4.4, "m2": 0.3}})
    assert await store.load_duration_models() == {
        "createServer": {"count": 4.0, "mean": 4.4, "m2": 0.3}
    }


# --- PostgreSQL: the fleet --------------------------------------------------------

LONG = 60.0  # a lease that cannot run out during a test
SHORT = 0.3  # one that runs out quickly (waited for on a condition, with a deadline)
T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], timeout: float = 10.0, what: str = "condition"
) -> T:
    """Call ``probe`` until it returns something truthy; fail after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


Fleet = Callable[[str], Awaitable[PostgresStore]]


@pytest.fixture
async def fleet(postgres_database: str) -> AsyncIterator[Fleet]:
    """Open PostgreSQL stores on one database, as instances of one fleet."""
    opened: list[PostgresStore] = []

    async def make(instance: str) -> PostgresStore:
        store = PostgresStore(postgres_database, instance=instance, max_size=20)
        await store.open()
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


async def fetchval(dsn: str, query: str, *args: object) -> Any:
    """One value, read straight from the database."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


async def test_two_instances_never_claim_the_same_job(fleet: Fleet) -> None:
    stores = [await fleet(name) for name in ("a", "b", "c")]
    ids = [f"j{n:03d}" for n in range(300)]
    await stores[0].register([new_job(job_id) for job_id in ids], now=1.0)

    async def drain(store: PostgresStore) -> list[str]:
        claimed: list[str] = []
        while batch := await store.claim_jobs(7, LONG):
            claimed += [job.job_id for job in batch]
        return claimed

    claims = await asyncio.gather(*(drain(store) for store in stores))
    everything = [job_id for claimed in claims for job_id in claimed]
    assert sorted(everything) == ids  # every job once: no overlap, none left out
    assert await stores[0].claim_jobs(10, LONG) == []


async def test_claim_skips_jobs_another_claim_has_locked(
    fleet: Fleet, postgres_database: str
) -> None:
    a = await fleet("a")
    await a.register([new_job(f"j{n}") for n in range(6)], now=1.0)
    other = await asyncpg.connect(postgres_database)
    try:
        async with other.transaction():  # a claim of j0-j2 in flight elsewhere
            await other.execute("SELECT 1 FROM jobs WHERE job_id < 'j3' FOR UPDATE")
            async with asyncio.timeout(5):  # SKIP LOCKED: no waiting
                claimed = await a.claim_jobs(10, LONG)
    finally:
        await other.close()
    assert [job.job_id for job in claimed] == ["j3", "j4", "j5"]


async def test_claims_return_whole_records_earliest_poll_first(fleet: Fleet) -> None:
    a, b = await fleet("a"), await fleet("b")
    await a.register([new_job(n, labels={"team": n}) for n in ("x", "y", "z")], now=5.0)
    claimed = await a.claim_jobs(10, LONG)
    assert [(j.job_id, j.labels, j.version, j.registered_at) for j in claimed] == [
        ("x", {"team": "x"}, 0, 5.0),
        ("y", {"team": "y"}, 0, 5.0),
        ("z", {"team": "z"}, 0, 5.0),
    ]
    await a.release_jobs({"x": 3000.0, "y": 1000.0, "z": 2000.0})
    assert [job.job_id for job in await b.claim_jobs(2, LONG)] == ["y", "z"]
    assert [job.job_id for job in await b.claim_jobs(2, LONG)] == ["x"]


async def test_release_hands_over_only_our_own_leases(fleet: Fleet, postgres_database: str) -> None:
    a, b = await fleet("a"), await fleet("b")
    await a.register([new_job("mine"), new_job("theirs")], now=1.0)
    assert [j.job_id for j in await a.claim_jobs(1, LONG)] == ["mine"]
    assert [j.job_id for j in await b.claim_jobs(1, LONG)] == ["theirs"]
    await a.release_jobs({"mine": 1234.5, "theirs": 1.0})
    owner = "SELECT lease_owner FROM jobs WHERE job_id = $1"
    assert await fetchval(postgres_database, owner, "mine") is None
    assert await fetchval(postgres_database, owner, "theirs") == "b"
    next_poll = "SELECT extract(epoch FROM next_poll_at)::float8 FROM jobs WHERE job_id = $1"
    assert await fetchval(postgres_database, next_poll, "mine") == 1234.5


async def test_renew_extends_and_returns_only_the_leases_still_held(
    fleet: Fleet, postgres_database: str
) -> None:
    a, b = await fleet("a"), await fleet("b")
    await a.register([new_job(f"a{n}") for n in range(4)], now=1.0)
    claimed = {job.job_id: job for job in await a.claim_jobs(10, SHORT)}
    await a.register([new_job("b0")], now=1.0)
    assert [j.job_id for j in await b.claim_jobs(10, LONG)] == ["b0"]
    assert await a.delete_job("a2")
    finished = claimed["a3"]
    finished.status = FAIL
    await a.record(finished, [])
    held = await a.renew_leases(["a0", "a1", "a2", "a3", "b0", "unknown"], LONG)
    assert held == {"a0", "a1"}
    left = "SELECT extract(epoch FROM lease_until - now())::float8 FROM jobs WHERE job_id = $1"
    assert await fetchval(postgres_database, left, "a0") > LONG - 10
    assert await a.renew_leases([], LONG) == set()


async def test_expired_leases_are_taken_over_and_the_old_holder_cannot_write(
    fleet: Fleet,
) -> None:
    a, b = await fleet("a"), await fleet("b")
    await a.register([new_job("j")], now=1.0)
    (job,) = await a.claim_jobs(10, SHORT)
    job.status = RUNNING
    await a.record(job, [event("j", 0)])
    assert await b.claim_jobs(10, LONG) == []  # held by a until its lease runs out
    (taken,) = await eventually(lambda: b.claim_jobs(10, LONG), what="b takes j over")
    assert (taken.job_id, taken.version, taken.status) == ("j", 1, RUNNING)
    job.status = FAIL  # a, stalled, comes back with a write at the current version
    with pytest.raises(StaleWriteError):
        await a.record(job, [event("j", 1)])
    assert await a.renew_leases(["j"], LONG) == set()
    taken.status = FAIL
    await b.record(taken, [event("j", 2)])
    assert [e.event_id for e in await b.events_after(0, 10)] == ["j-0", "j-2"]


async def test_a_leased_job_is_written_only_by_its_holder(fleet: Fleet) -> None:
    a, b = await fleet("a"), await fleet("b")
    await a.register([new_job("j")], now=1.0)
    await a.claim_jobs(10, LONG)
    job = await b.get_job("j")
    assert job is not None
    job.status = RUNNING
    with pytest.raises(StaleWriteError):
        await b.record(job, [event("j", 0)])
    assert job.version == 0
    await a.record(job, [event("j", 0)])
    assert job.version == 1


async def test_a_finished_job_gives_its_lease_up(fleet: Fleet) -> None:
    a, b = await fleet("a"), await fleet("b")
    await a.register([new_job("j")], now=1.0)
    (job,) = await a.claim_jobs(10, LONG)
    job.status = FAIL
    await a.record(job, [event("j", 0)])
    assert await b.claim_jobs(10, LONG) == []
    assert await a.renew_leases(["j"], LONG) == set()


async def test_one_instance_at_a_time_holds_a_sink(fleet: Fleet) -> None:
    a, b = await fleet("a"), await fleet("b")
    assert await a.acquire_sink("webhook", SHORT)
    assert not await b.acquire_sink("webhook", LONG)
    assert await b.acquire_sink("file", LONG)  # leases are per sink
    assert await a.acquire_sink("webhook", SHORT)  # renewing our own
    await b.release_sink("webhook")  # not b's to release
    assert not await b.acquire_sink("webhook", LONG)
    await eventually(lambda: b.acquire_sink("webhook", LONG), what="a's lease to run out")
    assert not await a.acquire_sink("webhook", LONG)
    await b.release_sink("webhook")
    assert await a.acquire_sink("webhook", LONG)


async def test_heartbeats_count_live_instances(fleet: Fleet) -> None:
    a, b = await fleet("a"), await fleet("b")
    assert await a.heartbeat(LONG) == 1
    assert await b.heartbeat(LONG) == 2
    assert await a.heartbeat(LONG) == 2

    async def alone() -> bool:
        return await a.heartbeat(SHORT) == 1

    await eventually(alone, what="b to be counted out")


async def test_wait_for_events_wakes_on_another_instance_s_record(fleet: Fleet) -> None:
    a, b = await fleet("a"), await fleet("b")
    (registration,) = await b.register([new_job("j")], now=1.0)
    job = registration.job
    loop = asyncio.get_running_loop()
    started = loop.time()
    await a.wait_for_events(0, timeout=SHORT)  # nothing yet: waits out the timeout
    assert loop.time() - started >= SHORT - 0.01
    for n in range(3):
        after = await a.last_seq()
        waiter = asyncio.create_task(a.wait_for_events(after, timeout=30))
        job.status = RUNNING
        await b.record(job, [event("j", n)])
        async with asyncio.timeout(10):
            await waiter
    async with asyncio.timeout(10):  # already there: returns at once
        await a.wait_for_events(0, timeout=30)


async def test_a_lost_listener_costs_at_most_the_timeout(fleet: Fleet, postgres_dsn: str) -> None:
    a, b = await fleet("a"), await fleet("b")
    (registration,) = await b.register([new_job("j")], now=1.0)
    await a.wait_for_events(0, timeout=0.01)  # listening now
    killed = await fetchval(
        postgres_dsn,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE application_name = 'jobwatchd-listen'",
    )
    assert killed == 1
    await b.record(registration.job, [event("j", 0)])  # its NOTIFY reaches nobody
    async with asyncio.timeout(10):
        await a.wait_for_events(0, timeout=30)  # reconnects, and finds it in the log


async def test_concurrent_starts_migrate_once(postgres_database: str) -> None:
    stores = [PostgresStore(postgres_database, instance=f"i{n}") for n in range(6)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        versions = [await store.schema_version() for store in stores]
    finally:
        for store in stores:
            await store.close()
    assert versions == [len(PG_MIGRATIONS)] * 6
    applied = await fetchval(postgres_database, "SELECT count(*) FROM schema_version")
    assert applied == len(PG_MIGRATIONS)


async def test_postgresql_refuses_a_newer_schema(postgres_database: str) -> None:
    store = PostgresStore(postgres_database)
    await store.open()
    await store.close()
    newer = len(PG_MIGRATIONS) + 1
    await fetchval(postgres_database, "INSERT INTO schema_version (version) VALUES ($1)", newer)
    with pytest.raises(RuntimeError, match="newer than this jobwatchd"):
        await PostgresStore(postgres_database).open()


async def test_event_order_is_commit_order(fleet: Fleet) -> None:
    """Readers that move their position past what they read never skip an
    event, however the writers of two instances interleave."""
    writers = [await fleet("a"), await fleet("b")]
    reader = await fleet("reader")
    jobs, records, readers = 60, 8, 4
    results = await writers[0].register([new_job(f"j{n:02d}") for n in range(jobs)], now=1.0)

    async def write(index: int) -> None:
        job = results[index].job
        for n in range(records):
            job.status = f"S{n}"
            await writers[index % 2].record(
                job, [event(job.job_id, 2 * n), event(job.job_id, 2 * n + 1)]
            )

    async def follow(done: asyncio.Event) -> list[StoredEvent]:
        read: list[StoredEvent] = []
        while True:
            finished = done.is_set()
            batch = await reader.events_after(read[-1].seq if read else 0, 1000)
            read.extend(batch)
            if not batch and finished:
                return read

    done = asyncio.Event()
    following = [asyncio.create_task(follow(done)) for _ in range(readers)]
    await asyncio.gather(*(write(index) for index in range(jobs)))
    done.set()
    async with asyncio.timeout(30):
        views = await asyncio.gather(*following)
    for read in views:
        assert len(read) == jobs * records * 2  # none skipped
        assert len({e.event_id for e in read}) == len(read)
        for index in range(jobs):  # and per job, in the order recorded
            job_id = f"j{index:02d}"
            mine = [e.event_id for e in read if e.job_id == job_id]
            assert mine == [f"{job_id}-{n}" for n in range(records * 2)]


GATE = 4242  # an advisory lock key of the test's own


async def test_a_late_commit_holds_back_later_events(fleet: Fleet, postgres_database: str) -> None:
    """The race itself, made certain: a writer stops after drawing its seq and
    before committing (a trigger waits on a lock the test holds); a second
    writer must then neither commit nor become visible ahead of it."""
    a, b, reader = await fleet("a"), await fleet("b"), await fleet("reader")
    slow, fast = [r.job for r in await a.register([new_job("slow"), new_job("fast")], now=1.0)]
    gate = await asyncpg.connect(postgres_database)
    try:
        await gate.execute(
            f"""
            CREATE FUNCTION wait_at_gate() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.job_id = 'slow' THEN PERFORM pg_advisory_xact_lock({GATE}); END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER wait_at_gate AFTER INSERT ON events
                FOR EACH ROW EXECUTE FUNCTION wait_at_gate();
            """
        )
        await gate.execute("SELECT pg_advisory_lock($1)", GATE)

        async def waiting() -> int:
            return int(
                await gate.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                )
            )

        slow.status = fast.status = RUNNING
        slow_write = asyncio.create_task(a.record(slow, [event("slow", 0)]))
        await eventually(waiting, what="the slow writer to stop at the gate")
        fast_write = asyncio.create_task(b.record(fast, [event("fast", 0)]))

        async def fast_is_held_back() -> bool:
            return fast_write.done() or await waiting() == 2

        await eventually(fast_is_held_back, what="the fast writer to commit or wait")
        assert not fast_write.done()
        assert await reader.events_after(0, 10) == []
        await gate.execute("SELECT pg_advisory_unlock($1)", GATE)
        async with asyncio.timeout(10):
            await asyncio.gather(slow_write, fast_write)
    finally:
        await gate.close()
    assert [e.event_id for e in await reader.events_after(0, 10)] == ["slow-0", "fast-0"]


async def test_passwords_come_from_a_file_or_the_environment(
    postgres_server: pg.PostgresServer,
    postgres_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    database = postgres_database.rsplit("/", 1)[1]
    dsn = postgres_server.dsn(database, user=pg.PASSWORD_USER)
    with pytest.raises(asyncpg.PostgresError):  # SCRAM: no password, no entry
        await PostgresStore(dsn).open()
    secret = tmp_path / "pg-password"
    secret.write_text(pg.PASSWORD + "\n")
    secret.chmod(0o600)
    from_file = PostgresStore(dsn, password_file=secret)
    await from_file.open()
    assert await from_file.schema_version() == len(PG_MIGRATIONS)
    await from_file.close()
    monkeypatch.setenv("PGPASSWORD", pg.PASSWORD)
    from_env = PostgresStore(dsn)
    await from_env.open()
    await from_env.close()
    inline = PostgresStore(dsn.replace(pg.PASSWORD_USER, f"{pg.PASSWORD_USER}:{pg.PASSWORD}"))
    assert pg.PASSWORD not in repr(inline)
    assert pg.PASSWORD not in inline.url


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://jw:hunter2@db:5432/jobs", "postgresql://jw:***@db:5432/jobs"),
        ("postgres://jw:p@ss@db/jobs", "postgres://jw:***@db/jobs"),
        ("postgresql://jw@db/jobs", "postgresql://jw@db/jobs"),
        ("postgresql:///jobs?host=/run/pg", "postgresql:///jobs?host=/run/pg"),
        ("postgresql://db/jobs?password=hunter2&x=1", "postgresql://db/jobs?password=***&x=1"),
        ("host=db password=hunter2 dbname=jobs", "host=db password=*** dbname=jobs"),
        ("sqlite", "sqlite"),
    ],
)
def test_redact_dsn(dsn: str, shown: str) -> None:
    assert redact_dsn(dsn) == shown
