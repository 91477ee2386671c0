"""The poll schedule: one heap of next-poll times per account, drained by the pollers.

There is no task, sleep or timer per job. A poller that finishes a poll takes
the next due job straight from the heaps (earliest first, accounts in turn,
within each account's rate limit and throttling pause); only when nothing is
due does it wait, and one dispatcher task wakes it when a job becomes due.
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
from collections.abc import Callable
from dataclasses import dataclass, field

from jobwatchd.ratelimit import TokenBucket


@dataclass(slots=True)
class _AccountLane:
    account: str
    bucket: TokenBucket
    heap: list[tuple[float, int, str]] = field(default_factory=list)
    paused_until: float = 0.0


class Scheduler:
    """Decides when each job is polled; all times are on ``clock`` (monotonic)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lanes: dict[str, _AccountLane] = {}
        self._order: list[_AccountLane] = []
        self._next_lane = 0
        self._due: dict[str, float] = {}
        self._counter = itertools.count()
        self._wakeup = asyncio.Event()
        # Pollers waiting for a job, each handed (job_id, account) by run().
        self._idle: collections.deque[asyncio.Future[tuple[str, str]]] = collections.deque()

    def configure_account(self, account: str, rate_limit: float) -> None:
        """Create or update ``account``'s lane with its rate limit (burst = rate)."""
        burst = max(1.0, rate_limit)
        lane = self._lanes.get(account)
        if lane is None:
            lane = _AccountLane(account, TokenBucket(rate_limit, burst, self._clock()))
            self._lanes[account] = lane
            self._order.append(lane)
        else:
            lane.bucket.update(rate_limit, burst, self._clock())
        self._wakeup.set()

    def schedule(self, job_id: str, account: str, delay: float) -> None:
        """Poll ``job_id`` after ``delay`` seconds, replacing any earlier plan."""
        due = self._clock() + max(0.0, delay)
        self._due[job_id] = due
        heapq.heappush(self._lanes[account].heap, (due, next(self._counter), job_id))
        if self._idle:  # busy pollers look at the heaps themselves when done
            self._wakeup.set()

    def remove(self, job_id: str) -> None:
        """Forget ``job_id``; a stale heap entry is skipped when it surfaces."""
        self._due.pop(job_id, None)

    def pause(self, account: str, seconds: float) -> None:
        """Stop dispatching ``account``'s jobs for ``seconds`` (throttling)."""
        lane = self._lanes[account]
        lane.paused_until = max(lane.paused_until, self._clock() + seconds)

    def paused_for(self, account: str) -> float:
        """Seconds left of ``account``'s pause (0 when not paused)."""
        return max(0.0, self._lanes[account].paused_until - self._clock())

    def due_in(self, job_id: str) -> float | None:
        """Seconds until ``job_id`` is due, or None when it is not scheduled."""
        due = self._due.get(job_id)
        return None if due is None else due - self._clock()

    def __len__(self) -> int:
        return len(self._due)

    def _head(self, lane: _AccountLane) -> tuple[float, str] | None:
        """The lane's earliest live entry, dropping stale ones."""
        while lane.heap:
            due, _, job_id = lane.heap[0]
            if self._due.get(job_id) == due:
                return due, job_id
            heapq.heappop(lane.heap)
        return None

    def _ready_at(self, lane: _AccountLane, now: float) -> float | None:
        head = self._head(lane)
        if head is None:
            return None
        return max(head[0], lane.paused_until, now + lane.bucket.wait_time(now))

    def _take(self, now: float) -> tuple[str, str] | None:
        """Pop a job that may be polled now, trying the accounts in turn."""
        lanes = self._order
        count = len(lanes)
        for offset in range(count):
            index = (self._next_lane + offset) % count
            lane = lanes[index]
            ready = self._ready_at(lane, now)
            if ready is not None and ready <= now and lane.bucket.try_take(now):
                _, _, job_id = heapq.heappop(lane.heap)
                del self._due[job_id]
                self._next_lane = index + 1
                return job_id, lane.account
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
                job_id, account = waiter.result()
                self.schedule(job_id, account, 0.0)
            raise
        return job_id

    def _earliest(self, now: float) -> float | None:
        ready = [at for lane in self._order if (at := self._ready_at(lane, now)) is not None]
        return min(ready, default=None)

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
                timeout = None if earliest is None else max(0.0, earliest - self._clock())
            try:
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()
            except TimeoutError:
                pass
