"""The restore: every active job comes back from the store into the tracker
(and the schedule) with what polling needs, on both stores, page by page."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from jobwatchd.backoff import BackoffPolicy
from jobwatchd.engine import tracker as tracker_module
from jobwatchd.engine.scheduler import Scheduler
from jobwatchd.engine.tracker import PollSettings, Tracker, gc_paused
from jobwatchd.models import FAIL, RUNNING, NewJob
from jobwatchd.statemachine import Snapshot
from jobwatchd.store import Store

DEFAULT_TIMEOUT = 3600.0
ACCOUNTS = ("default", "other")


@pytest.fixture(autouse=True)
def unfreeze() -> Iterator[None]:
    """The restore freezes what it built (gc.freeze); undo it after each test."""
    yield
    gc.unfreeze()


def make_tracker(store: Store) -> Tracker:
    scheduler = Scheduler()
    for account in ACCOUNTS:
        scheduler.configure_account(account, {"ecs": 10.0})
    settings = PollSettings(
        backoff=BackoffPolicy(min_interval=1.0, max_interval=60.0, multiplier=2.0, jitter=0.1),
        initial_delay=2.0,
        timeout=DEFAULT_TIMEOUT,
        not_found_grace=60.0,
    )
    return Tracker(
        store=store, scheduler=scheduler, clients={}, settings=settings, on_events=lambda _: None
    )


def job(job_id: str, **extra: object) -> NewJob:
    return NewJob(job_id=job_id, project_id="p1", account="default", **extra)  # type: ignore[arg-type]


async def test_every_active_job_comes_back_with_what_polling_needs(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracker_module, "RESTORE_PAGE", 3)  # several pages, ties split
    await store.register([job(f"a{n}") for n in range(7)], now=100.0)
    await store.register(
        [
            NewJob(job_id="t", project_id="p2", account="other", labels={"k": "v"}, timeout=50.0),
            job("seen"),
            job("done"),
            job("gone"),
        ],
        now=200.0,
    )
    await store.register([job(f"b{n}") for n in range(4)], now=300.0)
    records = {j.job_id: j for j in await store.list_jobs(limit=100)}
    done = records["done"]
    done.status = FAIL
    await store.record(done, [])
    seen = records["seen"]
    seen.status = RUNNING
    seen.updated_at = 250.0
    seen.job_type = "resizeServer"
    seen.begin_time = "2016-04-25T20:04:47.591Z"
    seen.polls = 6
    seen.last_error = {"code": "E", "message": "m", "http_status": 502, "at": "x"}
    seen.entities = {"sub_jobs": [{"job_id": "s1", "status": "RUNNING"}]}
    seen.history = [{"from": "PENDING", "to": "RUNNING", "at": "x"}]
    snapshot = Snapshot(status=RUNNING, transitions=1, sub_jobs={"s1": ("RUNNING", 1)})
    seen.snapshot = snapshot.to_json()
    await store.record(seen, [])
    assert await store.delete_job("gone")

    tracker = make_tracker(store)
    assert await tracker.restore() == 13
    expected = {f"a{n}" for n in range(7)} | {f"b{n}" for n in range(4)} | {"t", "seen"}
    assert set(tracker.active) == expected
    assert tracker.restored == len(expected)
    for job_id in expected:
        assert tracker.scheduler.due_in(job_id) is not None, job_id
    a0 = tracker.active["a0"]
    assert (a0.project_id, a0.account, a0.status, a0.version) == ("p1", "default", "PENDING", 0)
    assert a0.deadline == 100.0 + DEFAULT_TIMEOUT
    assert (a0.polls, a0.last_error, a0.job_type, a0.began_at) == (0, None, None, None)
    assert a0.snapshot == Snapshot()
    t = tracker.active["t"]
    assert (t.project_id, t.account, t.deadline) == ("p2", "other", 250.0)
    live = tracker.active["seen"]
    assert (live.status, live.version, live.polls) == (RUNNING, 1, 6)
    assert live.deadline == 200.0 + DEFAULT_TIMEOUT
    assert live.last_error == {"code": "E", "message": "m", "http_status": 502, "at": "x"}
    assert live.job_type == "resizeServer"
    assert live.began_at == tracker_module.parse_time("2016-04-25T20:04:47.591Z")
    assert live.snapshot == snapshot


async def test_restore_skips_jobs_registered_or_deleted_meanwhile(store: Store) -> None:
    await store.register([job("a"), job("b")], now=1.0)
    tracker = make_tracker(store)
    (registration,) = await tracker.register([job("c")])
    assert registration.created and "c" in tracker.active
    assert await tracker.restore() == 2
    assert set(tracker.active) == {"a", "b", "c"}


def test_gc_pauses_nest_and_restore_the_collector_state() -> None:
    assert gc.isenabled()
    try:
        with gc_paused():
            assert not gc.isenabled()
            with gc_paused():
                assert not gc.isenabled()
            assert not gc.isenabled()
        assert gc.isenabled()
        gc.disable()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()


async def test_restore_leaves_the_collector_on_and_its_jobs_out_of_it(store: Store) -> None:
    await store.register([job("a")], now=1.0)
    tracker = make_tracker(store)
    assert await tracker.restore() == 1
    assert gc.isenabled()
    restored = tracker.active["a"]
    assert gc.is_tracked(restored) and gc.get_freeze_count() > 0
    assert not any(obj is restored for obj in gc.get_objects())  # frozen: no generation
