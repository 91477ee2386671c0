"""The bounded pool of pollers that drains the scheduler's queue."""

from __future__ import annotations

import asyncio
import contextlib

from jobwatchd.logs import get_logger
from jobwatchd.tracker import Tracker

log = get_logger("jobwatchd.poller")


class PollerPool:
    """``concurrency`` workers, each polling one job at a time."""

    def __init__(self, queue: asyncio.Queue[str], tracker: Tracker, concurrency: int) -> None:
        self._queue = queue
        self._tracker = tracker
        self._concurrency = concurrency
        self._workers: list[asyncio.Task[None]] = []
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._accepting = True

    @property
    def in_flight(self) -> int:
        """Polls running right now."""
        return self._in_flight

    def start(self) -> None:
        """Start the workers."""
        self._workers = [
            asyncio.create_task(self._work(), name=f"poller-{number}")
            for number in range(self._concurrency)
        ]

    async def _work(self) -> None:
        while self._accepting:
            job_id = await self._queue.get()
            if not self._accepting:
                break
            self._in_flight += 1
            self._idle.clear()
            try:
                await self._tracker.poll(job_id)
            except Exception:
                log.exception("poll.crashed", job_id=job_id)
                self._tracker.reschedule_after_crash(job_id)
            finally:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.set()
                self._queue.task_done()

    async def drain(self, timeout: float) -> bool:
        """Stop taking jobs, let in-flight polls finish within ``timeout``; True if they did."""
        self._accepting = False
        finished = True
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            finished = False
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        return finished
