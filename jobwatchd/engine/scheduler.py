"""The poll schedule: one heap of next-poll times per lane, drained by the pollers.

A lane is one account's polls of one service's API (:func:`lane_key`): the
vendor rate-limits and throttles each API on its own, so each lane has its own
token bucket and its own throttling pause.

There is no task, sleep or timer per job. A poller that finishes a poll takes
the next due job straight from the heaps (earliest first, lanes in turn,
within each lane's rate limit and throttling pause); only when nothing is
due does it wait, and one dispatcher task wakes it when a job becomes due
(:data:`DISPATCH_SLACK` late, handing out together the jobs due by then).
Memory and CPU are proportional to polls, not to jobs: a tracked job costs
one dict entry and one heap entry. The pollers' number bounds the polls in
flight.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from jobwatchd.ratelimit import TokenBucket

DISPATCH_SLACK = 0.005
"""Seconds the dispatcher waits past the first due time, then hands out every
job due by then. Below the ceiling, jobs come due one by one (thousands of
due times a second); a wake-up per job costs as much as its poll. Waking a
little late batches them: polls are at most this late, on intervals of
seconds."""


def lane_key(account: str, service: str) -> str:
    """The lane of ``account``'s polls of ``service`` (account names hold no '/')."""
    return f"{account}/{service}"


@dataclass(slots=True)
class _Lane:
    key: str
    bucket: TokenBucket
    heap: list[tuple[float, int, str]] = field(default_factory=list)
    paused_until: float = 0.0


class Scheduler:
    """Decides when each job is polled; all times are on ``clock`` (monotonic)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lanes: dict[str, _Lane] = {}
        self._order: list[_Lane] = []
        self._rates: dict[str, float] = {}
        self._next_lane = 0
        self._due: dict[str, float] = {}
        self._counter = itertools.count()
        self._wakeup = asyncio.Event()
        # Pollers waiting for a job, each handed (job_id, lane) by run().
        self._idle: collections.deque[asyncio.Future[tuple[str, str]]] = collections.deque()

    def configure_lane(self, lane: str, rate_limit: float) -> None:
        """Set ``lane``'s rate limit (burst = rate). The lane itself is made when
        its first job is scheduled, so lanes without jobs cost nothing per poll."""
        self._rates[lane] = rate_limit
        known = self._lanes.get(lane)
        if known is not None:
            known.bucket.update(rate_limit, max(1.0, rate_limit), self._clock())
        self._wakeup.set()

    def configure_account(self, account: str, rate_limits: Mapping[str, float]) -> None:
        """Set the rate limit of each of ``account``'s lanes, by service."""
        for service, rate_limit in rate_limits.items():
            self.configure_lane(lane_key(account, service), rate_limit)

    def _lane(self, key: str) -> _Lane:
        lane = self._lanes.get(key)
        if lane is None:
            rate = self._rates[key]  # KeyError: a lane never configured
            lane = _Lane(key, TokenBucket(rate, max(1.0, rate), self._clock()))
            self._lanes[key] = lane
            self._order.append(lane)
        return lane

    @property
    def lanes(self) -> list[str]:
        """The lanes that have had jobs, in the order they are taken in turn."""
        return [lane.key for lane in self._order]

    def schedule(self, job_id: str, lane: str, delay: float) -> None:
        """Poll ``job_id`` in ``lane`` after ``delay`` seconds, replacing any earlier plan."""
        due = self._clock() + max(0.0, delay)
        self._due[job_id] = due
        heapq.heappush(self._lane(lane).heap, (due, next(self._counter), job_id))
        if self._idle:  # busy pollers look at the heaps themselves when done
            self._wakeup.set()

    def remove(self, job_id: str) -> None:
        """Forget ``job_id``; a stale heap entry is skipped when it surfaces."""
        self._due.pop(job_id, None)

    def pause(self, lane: str, seconds: float) -> None:
        """Stop dispatching ``lane``'s jobs for ``seconds`` (throttling)."""
        held = self._lane(lane)
        held.paused_until = max(held.paused_until, self._clock() + seconds)

    def paused_for(self, lane: str) -> float:
        """Seconds left of ``lane``'s pause (0 when not paused, or never used)."""
        held = self._lanes.get(lane)
        return 0.0 if held is None else max(0.0, held.paused_until - self._clock())

    def pauses(self, account: str) -> dict[str, float]:
        """Seconds left of each paused lane of ``account``, by service."""
        prefix, now = f"{account}/", self._clock()
        return {
            lane.key.removeprefix(prefix): lane.paused_until - now
            for lane in self._order
            if lane.key.startswith(prefix) and lane.paused_until > now
        }

    def due_in(self, job_id: str) -> float | None:
        """Seconds until ``job_id`` is due, or None when it is not scheduled."""
        due = self._due.get(job_id)
        return None if due is None else due - self._clock()

    def __len__(self) -> int:
        return len(self._due)

    def _head(self, lane: _Lane) -> tuple[float, str] | None:
        """The lane's earliest live entry, dropping stale ones."""
        while lane.heap:
            due, _, job_id = lane.heap[0]
            if self._due.get(job_id) == due:
                return due, job_id
            heapq.heappop(lane.heap)
        return None

    def _ready_at(self, lane: _Lane, now: float) -> float | None:
        head = self._head(lane)
        if head is None:
            return None
        return max(head[0], lane.paused_until, now + lane.bucket.wait_time(now))

    def _take(self, now: float) -> tuple[str, str] | None:
        """Pop a job that may be polled now, trying the lanes in turn."""
        lanes = self._order
        count = len(lanes)
        for offset in range(count):
            index = (self._next_lane + offset) % count
            lane = lanes[index]
            heap = lane.heap
            # The heap's top is no later than its earliest live entry: a lane
            # whose top is not due has nothing due (and is skipped cheaply).
            if not heap or heap[0][0] > now or lane.paused_until > now:
                continue
            head = self._head(lane)
            # As _ready_at(lane, now) <= now, with the bucket refilled once.
            if head is not None and head[0] <= now and lane.bucket.try_take(now):
                _, _, job_id = heapq.heappop(lane.heap)
                del self._due[job_id]
                self._next_lane = index + 1
                return job_id, lane.key
        return None

    def take_due(self) -> str | None:
        """The id of a job that may be polled now (no longer scheduled), else None."""
        taken = self._take(self._clock())
        return None if taken is None else taken[0]

    async def next_due(self) -> str:
        """The next job to poll: at once when one may be polled now, else when one may."""
        taken = self._take(self._clock())
        if taken is not None:
            return taken[0]
        waiter: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
        self._idle.append(waiter)
        self._wakeup.set()
        try:
            job_id, _ = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Handed a job, then cancelled before taking it: keep it scheduled.
                job_id, lane = waiter.result()
                self.schedule(job_id, lane, 0.0)
            raise
        return job_id

    def _earliest(self, now: float) -> float | None:
        """When the next job may be polled, or a little earlier: a stale heap
        top (its job rescheduled) only wakes the dispatcher early, and the
        next _take drops it."""
        earliest: float | None = None
        for lane in self._order:
            heap = lane.heap
            if not heap:
                continue
            at = max(heap[0][0], lane.paused_until)
            if earliest is not None and at >= earliest:
                continue
            wait = lane.bucket.wait_time(now)
            if wait > 0.0:
                at = max(at, now + wait)
            if earliest is None or at < earliest:
                earliest = at
        return earliest

    async def run(self) -> None:
        """Hand due jobs to waiting pollers forever (cancel to stop)."""
        while True:
            idle = self._idle
            while idle:
                if idle[0].done():  # its poller was cancelled
                    idle.popleft()
                    continue
                taken = self._take(self._clock())
                if taken is None:
                    break
                idle.popleft().set_result(taken)
            self._wakeup.clear()
            timeout: float | None = None
            if idle:
                earliest = self._earliest(self._clock())
                if earliest is not None:
                    timeout = max(0.0, earliest - self._clock()) + DISPATCH_SLACK
            try:
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()
            except TimeoutError:
                pass
