"""Delivery: one runner per sink reads the durable event log from the sink's
position and advances the position only after the sink acknowledged.

A crash at any point therefore re-delivers (same event ids) rather than
losing: at-least-once, in log order, which is observation order per job.
A failing sink only stalls its own runner.
"""

from __future__ import annotations

import asyncio
import random

from jobwatchd.backoff import BackoffPolicy
from jobwatchd.config import SinkFilter
from jobwatchd.logs import get_logger
from jobwatchd.sinks import Sink, decode, matches
from jobwatchd.store import Store

log = get_logger("jobwatchd.delivery")

RETRY = BackoffPolicy(min_interval=0.5, max_interval=30.0, multiplier=2.0, jitter=0.5)


class SinkRunner:
    """Feeds one sink from the event log."""

    def __init__(
        self,
        sink: Sink,
        sink_filter: SinkFilter,
        store: Store,
        *,
        batch_size: int = 500,
        retry: BackoffPolicy = RETRY,
    ) -> None:
        self.sink = sink
        self.retry = retry
        self.filter = sink_filter
        self.store = store
        self.batch_size = batch_size
        self.position = 0
        self.delivered = 0
        self.failures = 0
        self._wakeup = asyncio.Event()
        self._caught_up = asyncio.Event()
        self._rng = random.Random()

    @property
    def name(self) -> str:
        """The sink's name (its position key)."""
        return self.sink.name

    def notify(self) -> None:
        """New events were recorded."""
        self._caught_up.clear()
        self._wakeup.set()

    async def run(self) -> None:
        """Deliver forever (cancel to stop)."""
        self.position = await self.store.get_position(self.name)
        while True:
            self._wakeup.clear()
            events = await self.store.events_after(self.position, self.batch_size)
            if not events:
                self._caught_up.set()
                await self._wakeup.wait()
                continue
            batch = [decode(event) for event in events]
            selected = [item for item in batch if matches(self.filter, item.cloud_event)]
            attempt = 0
            while selected:
                try:
                    await self.sink.deliver(selected)
                    break
                except Exception as exc:
                    self.failures += 1
                    delay = self.retry.interval(attempt, self._rng.random())
                    attempt += 1
                    log.warning(
                        "sink.delivery_failed",
                        sink=self.name,
                        error=repr(exc),
                        retry_in=round(delay, 3),
                        first_seq=events[0].seq,
                    )
                    await asyncio.sleep(delay)
            self.delivered += len(selected)
            self.position = events[-1].seq
            await self.store.set_position(self.name, self.position)

    async def wait_caught_up(self, timeout: float) -> bool:
        """Wait until every recorded event is delivered; False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                await self._caught_up.wait()
        except TimeoutError:
            return False
        return True
