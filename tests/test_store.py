"""Store contract tests. Every store implementation must pass them; the
``store`` fixture lists the implementations (SQLite on a real file today)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jobwatchd.models import FAIL, RUNNING, NewEvent, NewJob
from jobwatchd.store import ConflictError, StaleWriteError, Store
from jobwatchd.store.sqlite import MIGRATIONS, SQLiteStore


@pytest.fixture(params=["sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An open, empty store of each kind."""
    assert request.param == "sqlite"
    opened = SQLiteStore(tmp_path / "state" / "jobwatchd.db")
    await opened.open()
    yield opened
    await opened.close()


def new_job(job_id: str, project: str = "p1", labels: dict[str, str] | None = None) -> NewJob:
    return NewJob(job_id=job_id, project_id=project, account="default", labels=labels or {})


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
    assert [j.job_id for j in await store.active_jobs_page(None, 10)] == ["a"]
    assert await store.count_by_status() == {"PENDING": 1, "FAIL": 1}
    assert await store.delete_job("a") is True
    assert await store.delete_job("a") is False
    assert await store.active_jobs_page(None, 10) == []


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


async def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    store = SQLiteStore(path)
    with pytest.raises(RuntimeError, match="newer than this jobwatchd"):
        await store.open()


async def test_active_jobs_come_in_pages(store: Store) -> None:
    await store.register([new_job(f"j{n}") for n in range(5)], now=1.0)
    first = await store.active_jobs_page(None, 2)
    second = await store.active_jobs_page(first[-1].job_id, 2)
    third = await store.active_jobs_page(second[-1].job_id, 2)
    assert [j.job_id for j in first + second + third] == ["j0", "j1", "j2", "j3", "j4"]


async def test_a_repeat_within_one_batch_is_registered_once(store: Store) -> None:
    results = await store.register([new_job("a"), new_job("a")], now=1.0)
    assert [r.created for r in results] == [True, False]
    with pytest.raises(ConflictError):
        await store.register([new_job("b", project="p1"), new_job("b", project="p2")], now=1.0)
    assert await store.get_job("b") is None


async def test_duration_models_round_trip(store: Store) -> None:
    assert await store.load_duration_models() == {}
    await store.save_duration_models({"createServer": {"count": 3.0, "mean": 4.5, "m2": 0.2}})
    await store.save_duration_models({"createServer": {"count": 4.0, "mean": 4.4, "m2": 0.3}})
    assert await store.load_duration_models() == {
        "createServer": {"count": 4.0, "mean": 4.4, "m2": 0.3}
    }
