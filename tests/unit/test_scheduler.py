"""The scheduler: due order, replacement, removal, rate limits, pauses, and the
hand-over of due jobs to waiting pollers.

The scheduler runs for real; the assertions are about order and counts, never
about how long something took.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from jobwatchd.engine.scheduler import Scheduler, lane_key
from tests.helpers.waiting import async_wait_until


@pytest.fixture
async def running() -> AsyncIterator[Scheduler]:
    scheduler = Scheduler()
    scheduler.configure_lane("a", 10_000)
    task = asyncio.create_task(scheduler.run())
    yield scheduler
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def settle() -> None:
    """Give the scheduler loop many turns, to see that it hands out nothing more."""
    for _ in range(50):
        await asyncio.sleep(0)


async def take(scheduler: Scheduler, count: int) -> list[str]:
    async with asyncio.timeout(10):
        return [await scheduler.next_due() for _ in range(count)]


class Consumer:
    """A poller stand-in: takes every job it is handed, in the background."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.taken: list[str] = []
        self._scheduler = scheduler
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.taken.append(await self._scheduler.next_due())

    async def stop(self) -> None:
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task


async def test_jobs_come_out_in_due_order(running: Scheduler) -> None:
    for job_id, delay in [("late", 0.3), ("first", 0.0), ("middle", 0.1)]:
        running.schedule(job_id, "a", delay)
    assert await take(running, 3) == ["first", "middle", "late"]
    assert len(running) == 0


async def test_a_due_job_is_taken_without_waiting() -> None:
    scheduler = Scheduler()  # no dispatcher running: only direct takes can succeed
    scheduler.configure_lane("a", 10_000)
    scheduler.schedule("now", "a", 0.0)
    scheduler.schedule("later", "a", 60.0)
    assert scheduler.take_due() == "now"
    assert scheduler.take_due() is None
    assert scheduler.due_in("now") is None
    assert scheduler.due_in("later") is not None
    scheduler.schedule("again", "a", 0.0)
    async with asyncio.timeout(10):
        assert await scheduler.next_due() == "again"


async def test_rescheduling_replaces_and_removal_forgets(running: Scheduler) -> None:
    running.schedule("moved", "a", 60.0)
    running.schedule("gone", "a", 0.05)
    running.remove("gone")
    running.schedule("moved", "a", 0.0)  # replaces the 60 s plan
    running.schedule("marker", "a", 0.2)
    assert await take(running, 2) == ["moved", "marker"]
    assert running.take_due() is None
    assert running.due_in("moved") is None
    assert len(running) == 0


async def test_waiting_pollers_each_get_a_different_job(running: Scheduler) -> None:
    consumers = [Consumer(running) for _ in range(5)]
    await settle()
    for n in range(20):
        running.schedule(f"j{n}", "a", 0.0)
    await async_wait_until(lambda: sum(len(c.taken) for c in consumers) >= 20, timeout=10)
    await settle()
    taken = [job for c in consumers for job in c.taken]
    assert sorted(taken) == sorted(f"j{n}" for n in range(20))
    for consumer in consumers:
        await consumer.stop()


async def test_a_job_handed_to_a_cancelled_poller_stays_scheduled() -> None:
    scheduler = Scheduler()
    scheduler.configure_lane("a", 10_000)
    poller = asyncio.create_task(scheduler.next_due())
    await settle()  # the poller waits
    scheduler.schedule("j", "a", 0.0)
    # What run() does, then a cancel before the poller runs again: the race
    # the dispatcher cannot rule out (white-box, to make it deterministic).
    handed = scheduler.take_due()
    assert handed == "j"
    scheduler._idle.popleft().set_result((handed, "a"))
    poller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await poller
    assert scheduler.due_in("j") is not None
    assert scheduler.take_due() == "j"


async def test_rate_limit_bounds_dispatches() -> None:
    now = [0.0]
    scheduler = Scheduler(clock=lambda: now[0])
    scheduler.configure_lane("slow", 5)
    for n in range(20):
        scheduler.schedule(f"j{n}", "slow", 0.0)
    task = asyncio.create_task(scheduler.run())
    consumer = Consumer(scheduler)
    try:
        # With the clock frozen only the burst (= rate) may pass.
        await async_wait_until(lambda: len(consumer.taken) >= 5, timeout=5)
        await settle()
        assert len(consumer.taken) == 5
        assert scheduler.take_due() is None
        now[0] += 1.0  # one second later: five more tokens
        scheduler.schedule("nudge", "slow", 100.0)  # wake the loop
        await async_wait_until(lambda: len(consumer.taken) >= 10, timeout=5)
        await settle()
        assert len(consumer.taken) == 10
    finally:
        await consumer.stop()
        task.cancel()


async def test_accounts_take_turns() -> None:
    scheduler = Scheduler()
    for account in ("x", "y"):
        scheduler.configure_lane(account, 10_000)
    for n in range(3):
        scheduler.schedule(f"x{n}", "x", 0.0)
        scheduler.schedule(f"y{n}", "y", 0.0)
    taken = [scheduler.take_due() for _ in range(6)]
    assert taken == ["x0", "y0", "x1", "y1", "x2", "y2"]


async def test_pause_holds_one_account_only() -> None:
    scheduler = Scheduler()
    scheduler.configure_lane("throttled", 1000)
    scheduler.configure_lane("healthy", 1000)
    scheduler.pause("throttled", 30.0)
    scheduler.schedule("t1", "throttled", 0.0)
    scheduler.schedule("h1", "healthy", 0.0)
    scheduler.schedule("h2", "healthy", 0.05)
    task = asyncio.create_task(scheduler.run())
    try:
        assert await take(scheduler, 2) == ["h1", "h2"]
        assert scheduler.paused_for("throttled") > 25
        assert scheduler.due_in("t1") is not None, "paused job stays scheduled"
    finally:
        task.cancel()


async def test_each_service_of_an_account_has_its_own_lane() -> None:
    scheduler = Scheduler()
    scheduler.configure_account("acct", {"ecs": 1000, "cce": 1000})
    assert scheduler.lanes == []  # a lane is made by its first job, not by its config
    scheduler.pause(lane_key("acct", "cce"), 30.0)
    scheduler.schedule("c1", lane_key("acct", "cce"), 0.0)
    scheduler.schedule("e1", lane_key("acct", "ecs"), 0.0)
    scheduler.schedule("e2", lane_key("acct", "ecs"), 0.01)
    task = asyncio.create_task(scheduler.run())
    try:
        assert await take(scheduler, 2) == ["e1", "e2"]
        assert set(scheduler.pauses("acct")) == {"cce"}
        assert scheduler.pauses("acct")["cce"] > 25
        assert scheduler.pauses("other") == {}
        assert scheduler.paused_for(lane_key("acct", "ecs")) == 0.0
        assert scheduler.due_in("c1") is not None, "the throttled service's job waits"
        assert scheduler.lanes == ["acct/cce", "acct/ecs"]
    finally:
        task.cancel()


def test_a_lane_without_a_rate_limit_is_refused() -> None:
    scheduler = Scheduler()
    scheduler.configure_account("acct", {"ecs": 5})
    with pytest.raises(KeyError):
        scheduler.schedule("j", lane_key("acct", "evs"), 0.0)


async def test_a_lanes_rate_limit_is_its_own() -> None:
    scheduler = Scheduler()
    scheduler.configure_account("acct", {"ecs": 1000, "evs": 1})
    for index in range(5):
        scheduler.schedule(f"v{index}", lane_key("acct", "evs"), 0.0)
        scheduler.schedule(f"e{index}", lane_key("acct", "ecs"), 0.0)
    taken = []
    while (job := scheduler.take_due()) is not None:
        taken.append(job)
    # EVS allows a burst of one; ECS's lane is not held back by it.
    assert sorted(taken) == ["e0", "e1", "e2", "e3", "e4", "v0"]


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("plans", "paused", "drained", "expected"),
    [
        # (job, lane, delay) in order; a job planned twice leaves a stale entry.
        ([("j1", "a", 5.0), ("j2", "b", 3.0)], {}, "", 3.0),
        ([("j1", "a", 1.0), ("j1", "a", 4.0), ("j2", "b", 6.0)], {}, "", 4.0),
        ([("j1", "a", 1.0), ("j1", "b", 8.0)], {}, "", 8.0),
        ([("j1", "a", 1.0), ("j2", "b", 2.0)], {"a": 7.0}, "", 2.0),
        ([("j1", "a", 1.0), ("j2", "b", 2.0)], {"a": 7.0, "b": 9.0}, "", 7.0),
        # Lane a's bucket (2 tokens a second) empty: its next token in 0.5 s.
        ([("j1", "a", 0.0), ("j2", "b", 3.0)], {}, "a", 0.5),
        ([("j1", "a", 0.0), ("j2", "b", 0.2)], {}, "a", 0.2),
    ],
)
def test_the_dispatcher_wakes_by_when_the_first_job_may_be_polled(
    plans: list[tuple[str, str, float]],
    paused: dict[str, float],
    drained: str,
    expected: float,
) -> None:
    clock = _Clock()
    scheduler = Scheduler(clock=clock)
    for lane in "ab":
        scheduler.configure_lane(lane, 2.0)
    for job_id, lane, delay in plans:
        scheduler.schedule(job_id, lane, delay)
    for lane in drained:
        bucket = scheduler._lane(lane).bucket
        while bucket.try_take(clock.now):
            pass
    for lane, seconds in paused.items():
        scheduler.pause(lane, seconds)
    # Early (a stale entry on top) is allowed, late never; waking early then
    # drops the stale entries, and the next wake-up is the exact one.
    for _ in range(len(plans) + 1):
        earliest = scheduler._earliest(clock.now)
        assert earliest is not None and earliest <= 1000.0 + expected + 1e-9
        if earliest == pytest.approx(1000.0 + expected):
            break
        clock.now = max(clock.now, earliest)
        assert scheduler._take(clock.now) is None, "woken early, nothing is due"
    else:
        pytest.fail("the dispatcher never came to the exact time")
    clock.now = 1000.0 + expected
    assert scheduler._take(clock.now) is not None, "at that time a job is handed out"
