"""The sink runner (jobwatchd.engine.delivery) on a real SQLite store: what it
does when the store is unavailable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import orjson
import pytest

from jobwatchd.backoff import BackoffPolicy
from jobwatchd.engine import delivery
from jobwatchd.engine.delivery import SinkRunner
from jobwatchd.models import JOB_TRANSITION, NewEvent, NewJob, StoredEvent
from jobwatchd.sinks import Delivery, SinkFilter
from jobwatchd.store import StoreUnavailableError
from jobwatchd.store.sqlite import SQLiteStore
from tests.helpers.waiting import async_wait_until

FAST = BackoffPolicy(min_interval=0.01, max_interval=0.05, multiplier=2.0, jitter=0.0)


class OutageStore(SQLiteStore):
    """The SQLite store, unavailable for the event log while ``down`` is set."""

    down = False
    refused = 0

    async def events_after(self, seq: int, limit: int) -> list[StoredEvent]:
        if self.down:
            self.refused += 1
            raise StoreUnavailableError("SQLite: database is locked")
        return await super().events_after(seq, limit)

    async def get_position(self, sink: str) -> int:
        if self.down:
            self.refused += 1
            raise StoreUnavailableError("SQLite: database is locked")
        return await super().get_position(sink)


class RecordingSink:
    name = "recording"

    def __init__(self) -> None:
        self.received: list[str] = []

    async def start(self) -> None:
        return None

    async def deliver(self, batch: Sequence[Delivery]) -> None:
        self.received.extend(item.event.event_id for item in batch)

    async def reopen(self) -> None:
        return None

    async def close(self) -> None:
        return None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[OutageStore]:
    opened = OutageStore(tmp_path / "db.sqlite")
    await opened.open()
    yield opened
    await opened.close()


async def _record(store: SQLiteStore, job_id: str, count: int) -> None:
    (registration,) = await store.register(
        [NewJob(job_id=job_id, project_id="p", account="a", labels={})], now=1.0
    )
    events = [
        NewEvent(
            event_id=f"{job_id}-{n}",
            job_id=job_id,
            type=JOB_TRANSITION,
            payload=orjson.dumps({"id": f"{job_id}-{n}", "type": JOB_TRANSITION, "data": {}}),
        )
        for n in range(count)
    ]
    await store.record(registration.job, events)


@pytest.mark.parametrize("when", ["at start", "while running"])
async def test_an_unavailable_store_is_waited_out_and_nothing_is_lost(
    store: OutageStore, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    monkeypatch.setattr(delivery, "STORE_RETRY", FAST)
    reports: list[Exception | None] = []
    sink = RecordingSink()
    runner = SinkRunner(sink, SinkFilter(), store, retry=FAST, store_trouble=reports.append)
    await _record(store, "job1", 3)
    store.down = when == "at start"
    task = asyncio.create_task(runner.run())
    try:
        if when == "while running":
            await async_wait_until(lambda: len(sink.received) == 3, 10, what="first events")
            store.down = True
            await _record(store, "job2", 2)  # written by the tracker before the outage
            runner.notify()
        await async_wait_until(lambda: store.refused >= 3, 10, what="retries while down")
        assert not task.done(), "the runner died with the store"
        assert reports and all(isinstance(r, StoreUnavailableError) for r in reports)
        store.down = False
        expected = 3 if when == "at start" else 5
        await async_wait_until(lambda: len(sink.received) == expected, 10, what="delivery")
        await async_wait_until(lambda: reports[-1] is None, 10, what="recovery reported")
        assert len(set(sink.received)) == expected
        assert await runner.wait_caught_up(10)
        assert await store.get_position("recording") == expected
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
