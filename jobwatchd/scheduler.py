"""The poll schedule: one heap of next-poll times per account feeding a queue.

There is no task, sleep or timer per job. One loop looks at the earliest due
job of each account, waits until it is due and the account's rate limit and
throttling pause allow it, then hands the job id to the pollers through a
bounded queue. Memory and CPU are proportional to polls, not to jobs: a
tracked job costs one dict entry and one heap entry.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from jobwatchd.ratelimit import TokenBucket


@dataclass(slots=True)
class _AccountLane:
    bucket: TokenBucket
    heap: list[tuple[float, int, str]] = field(default_factory=list)
    paused_until: float = 0.0


class Scheduler:
    """Decides when each job is polled; all times are on ``clock`` (monotonic)."""

    def __init__(
        self, queue: asyncio.Queue[str], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._queue = queue
        self._clock = clock
        self._lanes: dict[str, _AccountLane] = {}
        self._due: dict[str, float] = {}
        self._counter = itertools.count()
        self._wakeup = asyncio.Event()

    def configure_account(self, account: str, rate_limit: float) -> None:
        """Create or update ``account``'s lane with its rate limit (burst = rate)."""
        burst = max(1.0, rate_limit)
        lane = self._lanes.get(account)
        if lane is None:
            self._lanes[account] = _AccountLane(TokenBucket(rate_limit, burst, self._clock()))
        else:
            lane.bucket.update(rate_limit, burst, self._clock())
        self._wakeup.set()

    def schedule(self, job_id: str, account: str, delay: float) -> None:
        """Poll ``job_id`` after ``delay`` seconds, replacing any earlier plan."""
        due = self._clock() + max(0.0, delay)
        self._due[job_id] = due
        heapq.heappush(self._lanes[account].heap, (due, next(self._counter), job_id))
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

    async def run(self) -> None:
        """Dispatch due jobs forever (cancel to stop)."""
        while True:
            now = self._clock()
            earliest: float | None = None
            dispatched = False
            for lane in list(self._lanes.values()):
                ready = self._ready_at(lane, now)
                if ready is None:
                    continue
                if ready <= now and lane.bucket.try_take(now):
                    _, _, job_id = heapq.heappop(lane.heap)
                    del self._due[job_id]
                    # Blocks while every poller is busy: natural backpressure.
                    await self._queue.put(job_id)
                    dispatched = True
                    now = self._clock()
                elif earliest is None or ready < earliest:
                    earliest = ready
            if dispatched:
                continue
            self._wakeup.clear()
            timeout = None if earliest is None else max(0.0, earliest - self._clock())
            try:
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()
            except TimeoutError:
                pass
