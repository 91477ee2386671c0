"""Delivery: one runner per sink reads the durable event log after the sink's
position and advances the position only over acknowledged events.

The contract with a sink (see :class:`jobwatchd.sinks.Sink`):

- ``deliver(batch)`` gets events in log order; returning acknowledges all of
  them, raising means none: the same batch is retried after a backoff.
- A sink may declare ``concurrency`` (default 1): how many ``deliver`` calls
  may run at once. The runner never lets two running calls hold events of the
  same job and never hands out a job's event before its earlier events were
  acknowledged, so per-job order holds while jobs proceed independently.
- A sink may declare ``batch_max`` (default: the runner's ``batch_size``): the
  most events one call gets.

Calls finish in any order. The runner keeps a bounded window of events read
but not yet passed by the position; the position moves to the end of the
longest acknowledged prefix (the low watermark), so a crash at any point
re-delivers (same event ids) rather than loses. Events a sink's filter
rejects count as acknowledged. A failing sink only stalls its own runner, and
a failing job only stalls its own events, up to the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from jobwatchd.backoff import BackoffPolicy
from jobwatchd.logs import get_logger
from jobwatchd.sinks import Delivery, Sink, SinkFilter, decode, matches
from jobwatchd.store import STORE_RETRY, Store, StoreUnavailableError

log = get_logger("jobwatchd.delivery")

RETRY = BackoffPolicy(min_interval=0.5, max_interval=30.0, multiplier=2.0, jitter=0.5)
WINDOW = 10_000
"""Events read past the position that may wait for an earlier one to be acknowledged."""
POSITION_INTERVAL = 0.2
"""Seconds between writes of a moving position; it is always written before idling."""


def _declared(sink: Sink, attribute: str, default: int) -> int:
    value = getattr(sink, attribute, default)
    return value if isinstance(value, int) and value >= 1 else default


class SinkRunner:
    """Feeds one sink from the event log."""

    def __init__(
        self,
        sink: Sink,
        sink_filter: SinkFilter,
        store: Store,
        *,
        batch_size: int = 500,
        window: int = WINDOW,
        retry: BackoffPolicy = RETRY,
        store_trouble: Callable[[Exception | None], None] | None = None,
    ) -> None:
        self.sink = sink
        self._store_trouble = store_trouble or (lambda exc: None)
        self._store_failures = 0
        self.retry = retry
        self.filter = sink_filter
        self.store = store
        self.batch_size = batch_size
        self.concurrency = _declared(sink, "concurrency", 1)
        self.batch_max = _declared(sink, "batch_max", batch_size)
        # Events held in memory (waiting or in flight): enough to keep every
        # slot busy with a full batch and the next one ready.
        self.read_ahead = max(batch_size, 2 * self.concurrency * self.batch_max)
        self.window = max(window, self.read_ahead)
        self.position = 0
        self.delivered = 0
        self._failures = 0
        self._wakeup = asyncio.Event()
        self._caught_up = asyncio.Event()
        self._rng = random.Random()
        self._read_to = 0
        self._pending: dict[str, deque[Delivery]] = {}  # per job, not yet handed out
        self._ready: list[tuple[int, str]] = []  # heap of (first pending seq, job); may be stale
        self._busy: set[str] = set()  # jobs with a batch in flight
        self._held = 0  # events pending or in flight
        self._unpassed: deque[int] = deque()  # selected seqs the position has not passed
        self._acked: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._crash: BaseException | None = None
        self._stored_position = 0
        self._stored_at = 0.0

    @property
    def name(self) -> str:
        """The sink's name (its position key)."""
        return self.sink.name

    @property
    def failures(self) -> int:
        """Failed delivery attempts: the runner's retries plus the sink's own
        (a sink that retries internally counts them in ``failed_attempts``)."""
        return self._failures + _declared(self.sink, "failed_attempts", 0)

    @property
    def in_flight(self) -> int:
        """Batches being delivered now."""
        return len(self._tasks)

    def stats(self) -> dict[str, Any]:
        """Delivery state, plus the sink's own counters if it has ``stats()``."""
        result: dict[str, Any] = {
            "position": self.position,
            "delivered": self.delivered,
            "failures": self.failures,
            "in_flight": self.in_flight,
            "held": self._held,
        }
        extra = getattr(self.sink, "stats", None)
        if callable(extra):
            result.update(extra())
        return result

    def notify(self) -> None:
        """New events were recorded."""
        self._caught_up.clear()
        self._wakeup.set()

    async def _outlast_store(self, exc: StoreUnavailableError) -> None:
        """Report an unavailable store and wait (with backoff) before trying again;
        deliveries in flight go on meanwhile."""
        self._store_failures += 1
        self._store_trouble(exc)
        await asyncio.sleep(STORE_RETRY.interval(self._store_failures - 1, self._rng.random()))

    def _store_answered(self) -> None:
        if self._store_failures:
            self._store_failures = 0
            self._store_trouble(None)

    async def run(self) -> None:
        """Deliver forever (cancel to stop); an unavailable store is waited out."""
        while True:
            try:
                self.position = await self.store.get_position(self.name)
                break
            except StoreUnavailableError as exc:
                await self._outlast_store(exc)
        self._store_answered()
        self._read_to = self._stored_position = self.position
        try:
            while True:
                self._wakeup.clear()
                try:
                    more = await self._read()
                except StoreUnavailableError as exc:
                    await self._outlast_store(exc)
                    continue
                self._dispatch()
                self._advance()
                if self._crash is not None:
                    raise self._crash
                if more:
                    continue
                try:
                    await self._store_position(force=not self._wakeup.is_set())
                except StoreUnavailableError as exc:
                    await self._outlast_store(exc)
                    continue
                self._store_answered()
                if (
                    not self._wakeup.is_set()  # checked after the await: notify() may have run
                    and not self._held
                    and not self._unpassed
                    and self._stored_position == self.position
                ):
                    self._caught_up.set()
                await self._wakeup.wait()
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._advance()
            # Best effort: what is not stored is only delivered again after a restart.
            with contextlib.suppress(Exception):
                await self._store_position(force=True)

    async def _read(self) -> bool:
        """Read into the window; True when a full page came and there is room for more."""
        room = min(self.read_ahead - self._held, self.window - len(self._unpassed))
        # Refill in pages, not one event per acknowledgement: each read is a query.
        if room <= 0 or (self._held and room < min(self.batch_size, self.read_ahead // 2)):
            return False
        limit = min(room, self.batch_size)
        events = await self.store.events_after(self._read_to, limit)
        for event in events:
            self._read_to = event.seq
            item = decode(event)
            if not matches(self.filter, item.cloud_event):
                continue
            self._unpassed.append(event.seq)
            self._held += 1
            job = event.job_id
            queue = self._pending.get(job)
            if queue is None:
                queue = self._pending[job] = deque()
            if not queue and job not in self._busy:
                heapq.heappush(self._ready, (event.seq, job))
            queue.append(item)
        return len(events) == limit

    def _next_batch(self) -> list[Delivery]:
        """Up to ``batch_max`` pending events of idle jobs, in log order."""
        batch: list[Delivery] = []
        taken: set[str] = set()
        while self._ready and len(batch) < self.batch_max:
            seq, job = heapq.heappop(self._ready)
            queue = self._pending.get(job)
            if not queue or queue[0].event.seq != seq or (job in self._busy and job not in taken):
                continue  # stale: the job's head moved, or it went busy (re-pushed when idle)
            batch.append(queue.popleft())
            taken.add(job)
            if queue:
                heapq.heappush(self._ready, (queue[0].event.seq, job))
            else:
                del self._pending[job]
        self._busy |= taken
        return batch

    def _dispatch(self) -> None:
        while len(self._tasks) < self.concurrency:
            batch = self._next_batch()
            if not batch:
                return
            task = asyncio.create_task(self._deliver(batch), name=f"deliver-{self.name}")
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._crash = task.exception()  # a bug, not a delivery failure: stop the runner
        self._wakeup.set()

    async def _deliver(self, batch: Sequence[Delivery]) -> None:
        attempt = 0
        while True:
            try:
                await self.sink.deliver(batch)
                break
            except Exception as exc:
                self._failures += 1
                delay = self.retry.interval(attempt, self._rng.random())
                attempt += 1
                log.warning(
                    "sink.delivery_failed",
                    sink=self.name,
                    error=repr(exc),
                    retry_in=round(delay, 3),
                    first_seq=batch[0].event.seq,
                    events=len(batch),
                )
                await asyncio.sleep(delay)
        self.delivered += len(batch)
        self._held -= len(batch)
        for item in batch:
            self._acked.add(item.event.seq)
        for job in {item.event.job_id for item in batch}:
            self._busy.discard(job)
            queue = self._pending.get(job)
            if queue:
                heapq.heappush(self._ready, (queue[0].event.seq, job))

    def _advance(self) -> None:
        """Move the position over the acknowledged prefix."""
        while self._unpassed and self._unpassed[0] in self._acked:
            self._acked.discard(self._unpassed.popleft())
        self.position = max(
            self.position, self._unpassed[0] - 1 if self._unpassed else self._read_to
        )

    async def _store_position(self, *, force: bool) -> None:
        """Write a moved position: at once before idling, else at most every
        POSITION_INTERVAL (a crash in between only re-delivers those events)."""
        now = time.monotonic()
        if self.position > self._stored_position and (
            force or now - self._stored_at >= POSITION_INTERVAL
        ):
            await self.store.set_position(self.name, self.position)
            self._stored_position = self.position
            self._stored_at = now

    async def wait_caught_up(self, timeout: float) -> bool:
        """Wait until every recorded event is delivered; False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                await self._caught_up.wait()
        except TimeoutError:
            return False
        return True
