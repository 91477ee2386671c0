"""The scheduler: due order, replacement, removal, rate limits and pauses.

The scheduler runs for real; the assertions are about order and counts, never
about how long something took.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from jobwatchd.scheduler import Scheduler
from tests.conftest import async_wait_until


@pytest.fixture
async def running() -> AsyncIterator[tuple[Scheduler, asyncio.Queue[str]]]:
    queue: asyncio.Queue[str] = asyncio.Queue(maxsize=100)
    scheduler = Scheduler(queue)
    scheduler.configure_account("a", rate_limit=10_000)
    task = asyncio.create_task(scheduler.run())
    yield scheduler, queue
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def settle() -> None:
    """Give the scheduler loop many turns, to see that it dispatches nothing more."""
    for _ in range(50):
        await asyncio.sleep(0)


async def take(queue: asyncio.Queue[str], count: int) -> list[str]:
    async with asyncio.timeout(10):
        return [await queue.get() for _ in range(count)]


async def test_jobs_come_out_in_due_order(running: tuple[Scheduler, asyncio.Queue[str]]) -> None:
    scheduler, queue = running
    for job_id, delay in [("late", 0.3), ("first", 0.0), ("middle", 0.1)]:
        scheduler.schedule(job_id, "a", delay)
    assert await take(queue, 3) == ["first", "middle", "late"]
    assert len(scheduler) == 0


async def test_rescheduling_replaces_and_removal_forgets(
    running: tuple[Scheduler, asyncio.Queue[str]],
) -> None:
    scheduler, queue = running
    scheduler.schedule("moved", "a", 60.0)
    scheduler.schedule("gone", "a", 0.05)
    scheduler.remove("gone")
    scheduler.schedule("moved", "a", 0.0)  # replaces the 60 s plan
    scheduler.schedule("marker", "a", 0.2)
    assert await take(queue, 2) == ["moved", "marker"]
    assert queue.empty()
    assert scheduler.due_in("moved") is None


async def test_rate_limit_bounds_dispatches() -> None:
    queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1000)
    now = [0.0]
    scheduler = Scheduler(queue, clock=lambda: now[0])
    scheduler.configure_account("slow", rate_limit=5)
    for n in range(20):
        scheduler.schedule(f"j{n}", "slow", 0.0)
    task = asyncio.create_task(scheduler.run())
    try:
        # With the clock frozen only the burst (= rate) may pass.
        await async_wait_until(lambda: queue.qsize() >= 5, timeout=5)
        await settle()
        assert queue.qsize() == 5
        now[0] += 1.0  # one second later: five more tokens
        scheduler.schedule("nudge", "slow", 100.0)  # wake the loop
        await async_wait_until(lambda: queue.qsize() >= 10, timeout=5)
        await settle()
        assert queue.qsize() == 10
    finally:
        task.cancel()


async def test_pause_holds_one_account_only() -> None:
    queue: asyncio.Queue[str] = asyncio.Queue(maxsize=100)
    scheduler = Scheduler(queue)
    scheduler.configure_account("throttled", rate_limit=1000)
    scheduler.configure_account("healthy", rate_limit=1000)
    scheduler.pause("throttled", 30.0)
    scheduler.schedule("t1", "throttled", 0.0)
    scheduler.schedule("h1", "healthy", 0.0)
    scheduler.schedule("h2", "healthy", 0.05)
    task = asyncio.create_task(scheduler.run())
    try:
        assert await take(queue, 2) == ["h1", "h2"]
        assert scheduler.paused_for("throttled") > 25
        assert scheduler.due_in("t1") is not None, "paused job stays scheduled"
    finally:
        task.cancel()
