"""Several jobwatchd instances sharing one PostgreSQL store.

Each instance runs a :class:`Fleet` beside its usual parts:

- **Jobs by lease.** It claims active jobs nobody holds (or whose holder's
  lease expired) up to its fair share, polls only those, and renews the
  leases while it runs. A dead instance's leases expire after ``lease``
  seconds and the others take its jobs over. A job lost to another instance
  is dropped at once; a write based on a lost lease is refused by the store,
  so a transition is never recorded twice.
- **Sinks by lease.** One instance at a time delivers to each sink, from the
  shared position, so per-job order and at-least-once hold across failovers.
- **One rate limit for the fleet.** Each instance takes ``rate_limit / live
  instances`` of every account, live instances being known from heartbeats.
- **Waking waiters everywhere.** Events recorded by any instance wake this
  instance's sink runners, event streams and long-polls (LISTEN/NOTIFY).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from jobwatchd.config import Config
from jobwatchd.engine.scheduler import Scheduler
from jobwatchd.engine.tracker import Tracker
from jobwatchd.logs import get_logger
from jobwatchd.models import TERMINAL_STATUSES
from jobwatchd.store import STORE_RETRY, FleetStore, StoreUnavailableError

log = get_logger("jobwatchd.fleet")


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetSettings:
    """Timing of leases and heartbeats."""

    lease: float = 15.0
    claim_interval: float = 0.5
    claim_batch: int = 1000

    @property
    def renew_interval(self) -> float:
        """Renew well before a lease runs out."""
        return self.lease / 3

    @property
    def heartbeat_ttl(self) -> float:
        """An instance not seen for this long is not counted as live."""
        return self.lease


def fair_share(active: int, live: int) -> int:
    """How many jobs one of ``live`` instances should hold of ``active``: an
    even split with some slack, so a newcomer or a survivor can take jobs on."""
    return math.ceil(active / max(1, live) * 1.1) + 10


class Fleet:
    """The fleet duties of one instance."""

    def __init__(
        self,
        store: FleetStore,
        tracker: Tracker,
        scheduler: Scheduler,
        *,
        config: Callable[[], Config],
        sink_names: Callable[[], list[str]],
        start_sink: Callable[[str], Awaitable[None]],
        stop_sink: Callable[[str], Awaitable[None]],
        on_external_events: Callable[[], None],
        settings: FleetSettings | None = None,
    ) -> None:
        self.store = store
        self.tracker = tracker
        self.scheduler = scheduler
        self._config = config
        self._sink_names = sink_names
        self._start_sink = start_sink
        self._stop_sink = stop_sink
        self._on_external_events = on_external_events
        self.settings = settings or FleetSettings()
        self.live = 1
        self.owned_sinks: set[str] = set()
        self._rng = random.Random()
        self._store_down = False
        self._next_share = 0.0
        self._renewing = False
        self._last_seen: int | None = None
        self.claimed = 0
        self.lost = 0
        self._active = 0
        self._active_counted_at = -math.inf

    async def run(self) -> None:
        """Claim, renew, share and listen until cancelled.

        While the store is unavailable each loop waits (with backoff, up to
        10 s: STORE_RETRY) and tries again; the tracker counts and logs it and
        ``/readyz`` reports the store failing until a loop gets through again.
        Leases that lapse meanwhile are renewed or lost as the store decides.
        """
        log.info("fleet.joined", instance=self.store.instance, lease=self.settings.lease)
        await asyncio.gather(
            self._outlasting(self._claim_once, self.settings.claim_interval),
            self._outlasting(self._renew_once, self.settings.renew_interval),
            self._outlasting(self._listen_once, 0.0),
        )

    async def _outlasting(self, step: Callable[[], Awaitable[None]], interval: float) -> None:
        """Run ``step`` every ``interval`` seconds, outlasting store outages."""
        failures = 0
        while True:
            try:
                await step()
            except StoreUnavailableError as exc:
                self._store_down = True
                self.tracker.note_store_failure(exc)
                failures += 1
                await asyncio.sleep(STORE_RETRY.interval(failures - 1, self._rng.random()))
                continue
            failures = 0
            if self._store_down:
                self._store_down = False
                self.tracker.note_store_ok()
            if interval:
                await asyncio.sleep(interval)

    async def _claim_once(self) -> None:
        loop = asyncio.get_running_loop()
        live = await self.store.heartbeat(self.settings.heartbeat_ttl)
        if live != self.live:
            log.info("fleet.instances", live=live, instance=self.store.instance)
            self.live = live
            self.share_rate_limits()
        if loop.time() >= self._next_share:
            await self._balance_sinks()
            self._next_share = loop.time() + self.settings.renew_interval
        await self._claim()

    def share_rate_limits(self) -> None:
        """Each account's rate limit, divided among the live instances."""
        for account in self._config().accounts:
            self.scheduler.configure_account(
                account.name, account.rate_limits_by_service(self.live)
            )

    async def _claim(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() >= self._active_counted_at + self.settings.renew_interval:
            counts = await self.store.count_by_status()
            self._active = sum(n for status, n in counts.items() if status not in TERMINAL_STATUSES)
            self._active_counted_at = loop.time()
        room = fair_share(self._active, self.live) - len(self.tracker.active)
        if room <= 0:
            return
        wanted = min(room, self.settings.claim_batch)
        records = await self.store.claim_jobs(wanted, self.settings.lease)
        if len(records) == wanted:
            self._active_counted_at = -math.inf  # more are waiting: recount next time
        spread = self._config().polling.min_interval
        adopted = sum(
            self.tracker.adopt(record, delay=self._rng.random() * spread) for record in records
        )
        if adopted:
            self.claimed += adopted
            log.info("fleet.claimed", jobs=adopted, holding=len(self.tracker.active))

    async def _renew_once(self) -> None:
        if not self._renewing:  # the first renewal is one interval after joining
            self._renewing = True
            return
        held = list(self.tracker.active)
        kept = await self.store.renew_leases(held, self.settings.lease)
        for job_id in held:
            if job_id not in kept and job_id in self.tracker.active:
                self.tracker.drop(job_id)
                self.lost += 1

    async def _balance_sinks(self) -> None:
        for name in self._sink_names():
            owned = await self.store.acquire_sink(name, self.settings.lease)
            if owned and name not in self.owned_sinks:
                log.info("fleet.sink_acquired", sink=name, instance=self.store.instance)
                await self._start_sink(name)
                self.owned_sinks.add(name)
            elif not owned and name in self.owned_sinks:
                log.warning("fleet.sink_lost", sink=name, instance=self.store.instance)
                await self._stop_sink(name)
                self.owned_sinks.discard(name)

    async def _listen_once(self) -> None:
        if self._last_seen is None:
            self._last_seen = await self.store.last_seq()
        await self.store.wait_for_events(self._last_seen, timeout=1.0)
        newest = await self.store.last_seq()
        if newest > self._last_seen:
            self._last_seen = newest
            self._on_external_events()

    async def release(self) -> None:
        """Hand held jobs (with their schedule) and sinks back to the fleet."""
        with contextlib.suppress(Exception):
            await self.store.release_jobs(self.tracker.schedule_snapshot())
        for name in list(self.owned_sinks):
            with contextlib.suppress(Exception):
                await self.store.release_sink(name)
