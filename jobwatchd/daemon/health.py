"""What the daemon says about itself: ``/readyz``, ``/metrics``, ``STATUS=`` and
the watchdog, which it feeds only while it is healthy."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jobwatchd.http.server import BoundedServer
from jobwatchd.logs import get_logger
from jobwatchd.metrics import SinkStats, Snapshot
from jobwatchd.store import StoreUnavailableError
from jobwatchd.systemd import watchdog_interval

if TYPE_CHECKING:
    from jobwatchd.daemon.lifecycle import Daemon

log = get_logger("jobwatchd.daemon")

SUPERVISE_INTERVAL = 0.5
STATUS_INTERVAL = 5.0
UNHEALTHY_LOOP_LAG = 5.0


class Health:
    """Readiness, metrics and liveness of one :class:`Daemon`."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.jobs_by_status: dict[str, int] = {}
        self._sink_lag: dict[str, float] = {}
        self.last_seq = 0
        self.loop_lag = 0.0

    def readiness(self) -> dict[str, Any]:
        """The body of ``/readyz``: counts and per-account upstream state."""
        tracker = self.daemon.tracker
        assert tracker is not None
        accounts = {}
        for name in self.daemon.clients:
            pauses = self.daemon.scheduler.pauses(name)
            accounts[name] = {
                "paused_for": round(max(pauses.values(), default=0.0), 3),
                "paused": {service: round(left, 3) for service, left in pauses.items()},
                **tracker.account_state(name),
            }
        return {
            "store": tracker.store_state(),
            "active_jobs": len(tracker.active),
            "scheduled": len(self.daemon.scheduler),
            "polls": tracker.polls_done,
            "polls_in_flight": self.daemon.pollers.in_flight if self.daemon.pollers else 0,
            "pollers": self.daemon.pollers.alive if self.daemon.pollers else 0,
            "reloads": self.daemon.reloads,
            "streams": self.daemon.stream_hub.stats(),
            "api": self.api_stats(),
            "accounts": accounts,
            "sinks": {runner.name: runner.stats() for runner in self.daemon.runners.values()},
        }

    def api_stats(self) -> dict[str, int]:
        server = self.daemon.api_runner.server if self.daemon.api_runner is not None else None
        return server.stats() if isinstance(server, BoundedServer) else {}

    def snapshot(self) -> Snapshot:
        """What ``/metrics`` reads synchronously (refreshed by :meth:`metrics_text`)."""
        now = time.time()
        tracker = self.daemon.tracker
        overdue = tracker.overdue_by_account() if tracker is not None else {}
        begun = tracker.begun_by_account() if tracker is not None else {}
        sinks = [
            SinkStats(
                name=runner.name,
                delivered=runner.delivered,
                failures=runner.failures,
                position=runner.position,
                backlog=max(0, self.last_seq - runner.position),
                lag_seconds=max(0.0, now - self._sink_lag[runner.name])
                if runner.name in self._sink_lag
                else 0.0,
                dead_lettered=int(getattr(runner.sink, "dead_lettered", 0)),
            )
            for runner in self.daemon.runners.values()
        ]
        return Snapshot(
            jobs_by_status=self.jobs_by_status,
            sinks=sinks,
            paused_seconds={
                name: max(self.daemon.scheduler.pauses(name).values(), default=0.0)
                for name in self.daemon.clients
            },
            polls_in_flight=self.daemon.pollers.in_flight if self.daemon.pollers else 0,
            streams=self.daemon.stream_hub.stats(),
            overdue={**dict.fromkeys(self.daemon.clients, 0), **overdue},
            begun={**dict.fromkeys(self.daemon.clients, 0), **begun},
        )

    async def metrics_text(self) -> bytes:
        # State that needs the store is refreshed here, then read synchronously.
        tracker = self.daemon.tracker
        assert tracker is not None
        self.jobs_by_status = await tracker.count_by_status()
        positions = {runner.name: runner.position for runner in self.daemon.runners.values()}
        self.last_seq, pending = await tracker.event_log_lag(positions)
        self._sink_lag = {name: at for name, at in pending.items() if at is not None}
        return self.daemon.metrics.render()

    def status_line(self) -> str:
        tracker = self.daemon.tracker
        assert tracker is not None
        delivered = sum(runner.delivered for runner in self.daemon.runners.values())
        in_flight = self.daemon.pollers.in_flight if self.daemon.pollers else 0
        return (
            f"tracking {len(tracker.active)} jobs, {in_flight} polls in flight,"
            f" {tracker.polls_done} polls, {delivered} events delivered"
        )

    async def healthy(self, core: Sequence[asyncio.Task[Any]]) -> bool:
        if any(task.done() for task in core) or self.daemon.crashed:
            return False
        if (
            self.daemon.pollers is None
            or self.daemon.pollers.alive < self.daemon.pollers.concurrency
        ):
            return False
        if self.loop_lag > UNHEALTHY_LOOP_LAG:
            return False
        try:
            async with asyncio.timeout(UNHEALTHY_LOOP_LAG):
                await self.daemon.store.last_seq()
        except StoreUnavailableError:
            # The database is down or full, not this process: a restart would not
            # help, so the watchdog keeps being fed; /readyz reports the store.
            return True
        except (TimeoutError, Exception):
            return False
        return True

    async def supervise(self, core: Sequence[asyncio.Task[Any]]) -> None:
        """Measure event-loop lag, publish STATUS=, ping the watchdog while healthy."""
        loop = asyncio.get_running_loop()
        ping_every = watchdog_interval(os.environ, os.getpid())
        next_ping = loop.time()
        next_status = loop.time()
        while True:
            before = loop.time()
            await asyncio.sleep(SUPERVISE_INTERVAL)
            now = loop.time()
            self.loop_lag = max(0.0, now - before - SUPERVISE_INTERVAL)
            self.daemon.metrics.event_loop_lag.set(self.loop_lag)
            if ping_every is not None and now >= next_ping:
                if await self.healthy(core):
                    self.daemon.notifier.send(WATCHDOG=1)
                else:
                    log.error("daemon.unhealthy", loop_lag=round(self.loop_lag, 3))
                next_ping = now + ping_every
            if now >= next_status:
                self.daemon.notifier.send(STATUS=self.status_line())
                next_status = now + STATUS_INTERVAL
                if self.daemon.tracker is not None:
                    try:
                        await self.daemon.tracker.flush_models()
                    except StoreUnavailableError as exc:  # learned again after a restart
                        self.daemon.tracker.note_store_failure(exc)
