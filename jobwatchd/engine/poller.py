"""The bounded pool of pollers that polls the jobs the scheduler says are due."""

from __future__ import annotations

import asyncio
import contextlib

from jobwatchd.engine.scheduler import Scheduler
from jobwatchd.engine.tracker import Tracker
from jobwatchd.logs import get_logger
from jobwatchd.store import StoreUnavailableError

log = get_logger("jobwatchd.poller")


class PollerPool:
    """``concurrency`` workers, each polling one job at a time."""

    def __init__(self, scheduler: Scheduler, tracker: Tracker, concurrency: int) -> None:
        self._scheduler = scheduler
        self._tracker = tracker
        self._concurrency = concurrency
        self._workers: set[asyncio.Task[None]] = set()
        self._busy: set[asyncio.Task[None]] = set()
        self._retiring: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._accepting = True

    @property
    def in_flight(self) -> int:
        """Polls running right now."""
        return len(self._busy)

    @property
    def alive(self) -> int:
        """Workers running and not retiring (equals ``concurrency`` unless one died)."""
        return sum(1 for w in self._workers if not w.done() and w not in self._retiring)

    @property
    def concurrency(self) -> int:
        """The configured number of workers."""
        return self._concurrency

    def start(self) -> None:
        """Start the workers."""
        self.resize(self._concurrency)

    def resize(self, concurrency: int) -> None:
        """Run ``concurrency`` workers. Surplus idle workers stop now, busy ones
        after their current poll: no poll is cut short."""
        self._concurrency = concurrency
        self._workers = {w for w in self._workers if not w.done()}
        active = [w for w in self._workers if w not in self._retiring]
        for _ in range(concurrency - len(active)):
            worker = asyncio.create_task(self._work(), name="poller")
            self._workers.add(worker)
        surplus = len(active) - concurrency
        for worker in sorted(active, key=lambda w: w in self._busy):
            if surplus <= 0:
                break
            surplus -= 1
            if worker in self._busy:
                self._retiring.add(worker)
            else:
                worker.cancel()

    async def _work(self) -> None:
        me = asyncio.current_task()
        assert me is not None
        while self._accepting and me not in self._retiring:
            job_id = await self._scheduler.next_due()
            self._busy.add(me)
            self._idle.clear()
            try:
                await self._tracker.poll(job_id)
            except StoreUnavailableError as exc:  # counted and logged, rate-limited
                self._tracker.note_store_failure(exc, job_id=job_id)
                self._tracker.reschedule_after_crash(job_id)
            except Exception:
                log.exception("poll.crashed", job_id=job_id)
                self._tracker.reschedule_after_crash(job_id)
            finally:
                self._busy.discard(me)
                if not self._busy:
                    self._idle.set()

    async def drain(self, timeout: float) -> bool:
        """Stop taking jobs, let in-flight polls finish within ``timeout``; True if they did."""
        self._accepting = False
        for worker in self._workers:
            if worker not in self._busy:
                worker.cancel()
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
