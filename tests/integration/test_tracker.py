"""The tracker, its scheduler and its pollers (jobwatchd.engine) in process, on
both stores, against the simulator on a real socket: registration to the last
transition, what a poll that cannot be recorded does, and draining."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import orjson

from jobwatchd.backoff import BackoffPolicy
from jobwatchd.cloud.auth import NoAuth
from jobwatchd.cloud.client import UpstreamClient
from jobwatchd.cloud.simulator import DEFAULT_PROJECT_ID
from jobwatchd.engine.poller import PollerPool
from jobwatchd.engine.scheduler import Scheduler
from jobwatchd.engine.tracker import PollSettings, Tracker
from jobwatchd.models import FAIL, SUCCESS, NewJob, StoredEvent
from jobwatchd.store import Store
from tests.helpers.servers import RunningSimulator
from tests.helpers.waiting import async_wait_until

SETTINGS = PollSettings(
    backoff=BackoffPolicy(min_interval=0.05, max_interval=0.2, multiplier=2.0, jitter=0.1),
    initial_delay=0.0,
    timeout=600.0,
    not_found_grace=5.0,
)


@dataclass
class Engine:
    tracker: Tracker
    pollers: PollerPool
    batches: list[list[StoredEvent]] = field(default_factory=list)
    """The events of each recorded poll, as announced."""


@contextlib.asynccontextmanager
async def engine(store: Store, simulator: RunningSimulator) -> AsyncIterator[Engine]:
    client = UpstreamClient(endpoint=simulator.url, auth=NoAuth(), pool_size=4, request_timeout=5.0)
    await client.start()
    scheduler = Scheduler()
    scheduler.configure_account("default", {"ecs": 50.0})
    batches: list[list[StoredEvent]] = []

    def on_events(events: Sequence[StoredEvent]) -> None:
        batches.append(list(events))

    tracker = Tracker(
        store=store,
        scheduler=scheduler,
        clients={"default": client},
        settings=SETTINGS,
        on_events=on_events,
    )
    pollers = PollerPool(scheduler, tracker, 4)
    pollers.start()
    running = asyncio.create_task(scheduler.run())
    try:
        yield Engine(tracker, pollers, batches)
    finally:
        await pollers.drain(5.0)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await client.close()


def _job(job_id: str) -> NewJob:
    return NewJob(job_id=job_id, project_id=DEFAULT_PROJECT_ID, account="default")


async def test_registered_jobs_are_followed_to_their_end(
    store: Store, simulator: RunningSimulator
) -> None:
    ok = simulator.sim.create_job("createServer", count=2, duration=30)
    bad = simulator.sim.create_job("createServer", count=2, fail=True, duration=30)
    async with engine(store, simulator) as running:
        await running.tracker.register([_job(ok), _job(bad)])
        await async_wait_until(lambda: not running.tracker.active, 20, what="both jobs to end")
        assert running.tracker.polls_done >= 2
    finals = {job_id: await store.get_job(job_id) for job_id in (ok, bad)}
    assert {job_id: record.status for job_id, record in finals.items() if record} == {
        ok: SUCCESS,
        bad: FAIL,
    }
    logged = await store.events_after(0, 1000)
    announced = [event for batch in running.batches for event in batch]
    # Announcements only wake the readers, who read the log by seq: two polls
    # committed in seq order may announce in either order, but nothing is left
    # out and one job's events are announced in their order.
    assert sorted(e.seq for e in announced) == [e.seq for e in logged], "every event announced"
    for job_id in (ok, bad):
        order = [e.seq for e in announced if e.job_id == job_id]
        assert order == sorted(order), f"{job_id}'s events announced in order"
    for job_id in (ok, bad):
        mine = [orjson.loads(e.payload) for e in logged if e.job_id == job_id]
        parent = [e for e in mine if e["subject"] == job_id]
        assert parent[0]["data"]["from"] is None and parent[-1]["data"]["terminal"]
        assert len({e["subject"] for e in mine}) == 3, "the job and its two sub-jobs"
    # Within one poll's events, the sub-jobs' transitions come before the parent's.
    for batch in running.batches:
        subjects = [orjson.loads(e.payload)["subject"] for e in batch]
        parents = [i for i, (e, s) in enumerate(zip(batch, subjects, strict=True)) if s == e.job_id]
        assert parents in ([], [len(batch) - 1]), subjects


async def test_a_cancelled_job_is_polled_no_more(store: Store, simulator: RunningSimulator) -> None:
    job_id = simulator.sim.create_job("createServer", duration=600)
    async with engine(store, simulator) as running:
        await running.tracker.register([_job(job_id)])
        await async_wait_until(
            lambda: running.tracker.polls_done >= 2, 10, what="a couple of polls"
        )
        assert await running.tracker.delete(job_id)
        polls = running.tracker.polls_done
        assert job_id not in running.tracker.active
        assert running.tracker.next_poll_at(job_id) is None
        # A later registration of another job is polled; the cancelled one is not.
        other = simulator.sim.create_job("createServer", duration=30)
        await running.tracker.register([_job(other)])
        await async_wait_until(lambda: other not in running.tracker.active, 20, what="other ends")
        assert await store.get_job(job_id) is None
        assert running.tracker.polls_done > polls


async def test_draining_lets_a_poll_in_flight_finish(
    store: Store, simulator: RunningSimulator
) -> None:
    job_id = simulator.sim.create_job("createServer", duration=600)
    simulator.sim.faults.latency = 0.5  # every answer takes half a second
    async with engine(store, simulator) as running:
        await running.tracker.register([_job(job_id)])
        await async_wait_until(lambda: running.pollers.in_flight == 1, 10, what="a poll in flight")
        assert await running.pollers.drain(10.0)
        assert running.pollers.in_flight == 0
        record = await store.get_job(job_id)
        assert record is not None and record.history, "the poll in flight was recorded"
