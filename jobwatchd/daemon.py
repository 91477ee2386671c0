"""The daemon's lifecycle: wire the parts, serve, handle signals, reload, drain.

Core tasks (scheduler, purger, supervisor) are watched together with the stop
signal, and every sink runner reports its own death: if any of them dies the
daemon stops instead of staying up half-alive, and the service manager
restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import os
import random
import signal
import sqlite3
import stat
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeGuard

import asyncpg
from aiohttp import web

from jobwatchd import __version__
from jobwatchd.backoff import BackoffPolicy
from jobwatchd.cloud.auth import Authenticator, authenticator_for
from jobwatchd.cloud.client import UpstreamClient
from jobwatchd.config import AccountConfig, Config, ConfigError, load_config, read_secret
from jobwatchd.engine.delivery import SinkRunner
from jobwatchd.engine.fleet import Fleet, FleetSettings
from jobwatchd.engine.poller import PollerPool
from jobwatchd.engine.scheduler import Scheduler
from jobwatchd.engine.tracker import PollSettings, Tracker
from jobwatchd.http.deadletters import DeadLetterHandlers
from jobwatchd.http.events import EventHub
from jobwatchd.http.jobs import Api
from jobwatchd.http.routes import build_app
from jobwatchd.http.server import BoundedRunner, BoundedServer
from jobwatchd.learning import AdaptivePolicy
from jobwatchd.logs import configure_logging, get_logger
from jobwatchd.metrics import Metrics, SinkStats, Snapshot
from jobwatchd.models import StoredEvent
from jobwatchd.options import redact_dsn
from jobwatchd.sinks import SinkContext, create_sink
from jobwatchd.sinks.deadletters import DeadLetterService, DeadLetterStore
from jobwatchd.store import FleetStore, Store, StoreUnavailableError
from jobwatchd.store.postgresql import PostgresStore
from jobwatchd.store.sqlite import SQLiteStore
from jobwatchd.systemd import Notifier, monotonic_usec, watchdog_interval

log = get_logger("jobwatchd.daemon")


DRAIN_TIMEOUT = 10.0
DATABASE_FILE = "jobwatchd.db"
SUPERVISE_INTERVAL = 0.5
STATUS_INTERVAL = 5.0
UNHEALTHY_LOOP_LAG = 5.0


def poll_settings(config: Config) -> PollSettings:
    """The tracker's view of ``[polling]``."""
    polling = config.polling
    return PollSettings(
        backoff=BackoffPolicy(
            min_interval=polling.min_interval,
            max_interval=polling.max_interval,
            multiplier=polling.multiplier,
            jitter=polling.jitter,
        ),
        initial_delay=polling.initial_delay,
        timeout=polling.timeout,
        not_found_grace=polling.not_found_grace,
        adaptive=AdaptivePolicy(target_lag=polling.target_lag) if polling.adaptive else None,
    )


def _client_for(account: AccountConfig, index: int, pool_size: int) -> UpstreamClient:
    return UpstreamClient(
        endpoint=account.endpoint,
        auth=authenticator_for(account, index),
        pool_size=pool_size,
        request_timeout=account.request_timeout,
        ca_file=account.ca_file,
        max_response_size=account.max_response_size,
        max_sub_jobs=account.max_sub_jobs,
    )


def _same_connection(old: AccountConfig, new: AccountConfig) -> bool:
    return (
        old.endpoint,
        old.request_timeout,
        old.ca_file,
        old.max_response_size,
        old.max_sub_jobs,
    ) == (new.endpoint, new.request_timeout, new.ca_file, new.max_response_size, new.max_sub_jobs)


def _needs_new_credentials(old: AccountConfig | None, new: AccountConfig) -> bool:
    """Whether a reload must rebuild an account's credentials. Files are re-read
    (cheap); an IAM token is only fetched again when the IAM settings changed."""
    return old is None or new.auth != "iam-password" or old != new


@contextlib.contextmanager
def signal_handlers(
    loop: asyncio.AbstractEventLoop, handlers: Mapping[signal.Signals, Any]
) -> Iterator[None]:
    """Install loop signal handlers, and remove them on exit."""
    for signum, handler in handlers.items():
        loop.add_signal_handler(signum, handler)
    try:
        yield
    finally:
        for signum in handlers:
            loop.remove_signal_handler(signum)


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket left by an earlier run at ``path``; refuse anything else there."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(
            "api.listen", f"{path} exists and is not a socket; refusing to replace it"
        )
    path.unlink()


class Daemon:
    """One jobwatchd instance."""

    def __init__(
        self,
        config: Config,
        *,
        notifier: Notifier | None = None,
        simulator_endpoint: str | None = None,
    ) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        self.simulator_endpoint = simulator_endpoint
        self.stop_requested = asyncio.Event()
        self.store: Store = open_store(config)
        self.fleet: Fleet | None = None
        self.stream_hub = EventHub(self.store)
        self.api_runner: BoundedRunner | None = None
        self.scheduler = Scheduler()
        self.metrics = Metrics()
        self.clients: dict[str, UpstreamClient] = {}
        self.runners: dict[str, SinkRunner] = {}
        self._runner_tasks: dict[str, asyncio.Task[None]] = {}
        self.tracker: Tracker | None = None
        self.api: Api | None = None
        self.pollers: PollerPool | None = None
        self.ready = asyncio.Event()
        self.address: str | None = None
        self.reloads = 0
        self._crashed: list[str] = []
        self._jobs_by_status: dict[str, int] = {}
        self._sink_lag: dict[str, float] = {}
        self._last_seq = 0
        self._loop_lag = 0.0
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()

    # -- building -------------------------------------------------------------------

    def _build_clients(self) -> None:
        for index, account in enumerate(self.config.accounts):
            self.clients[account.name] = _client_for(
                account, index, self.config.polling.concurrency
            )
            self.scheduler.configure_account(account.name, account.rate_limit)

    def _sink_context(self) -> SinkContext:
        return SinkContext(state_dir=self.config.daemon.state_dir)

    def _create_runners(self, config: Config) -> dict[str, SinkRunner]:
        context = self._sink_context()
        return {
            sink_config.name: SinkRunner(
                create_sink(sink_config, context, index),
                sink_config.filter,
                self.store,
                store_trouble=self._store_trouble,
            )
            for index, sink_config in enumerate(config.sinks)
        }

    def _store_trouble(self, exc: Exception | None) -> None:
        """A sink runner found the store unavailable (``exc``), or answering again."""
        if self.tracker is None:
            return
        if exc is None:
            self.tracker.note_store_ok()
        else:
            self.tracker.note_store_failure(exc)

    async def _start_runner(self, runner: SinkRunner) -> None:
        await runner.sink.start()
        self.runners[runner.name] = runner
        task = asyncio.create_task(runner.run(), name=f"sink-{runner.name}")
        task.add_done_callback(self._runner_done)
        self._runner_tasks[runner.name] = task

    def _runner_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        log.error("daemon.task_died", task=task.get_name(), error=repr(task.exception()))
        self._crashed.append(task.get_name())
        self.stop_requested.set()

    async def _stop_runner(self, name: str) -> None:
        task = self._runner_tasks.pop(name)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        runner = self.runners.pop(name)
        await runner.sink.close()

    def _on_external_events(self) -> None:
        """Another instance of the fleet recorded events."""
        for runner in self.runners.values():
            runner.notify()
        self.stream_hub.notify()
        if self.tracker is not None:
            self.tracker.changed_elsewhere()

    async def _start_sink_by_name(self, name: str) -> None:
        if name in self.runners:
            return
        for index, sink_config in enumerate(self.config.sinks):
            if sink_config.name == name:
                sink = create_sink(sink_config, self._sink_context(), index)
                await self._start_runner(SinkRunner(sink, sink_config.filter, self.store))
                return

    async def _stop_sink_by_name(self, name: str) -> None:
        if name in self.runners:
            await self._stop_runner(name)

    def _on_events(self, events: Sequence[StoredEvent]) -> None:
        if events:
            self._last_seq = max(self._last_seq, events[-1].seq)
        for runner in self.runners.values():
            runner.notify()
        self.stream_hub.notify()

    def _sinks(self) -> list[object]:
        """The running sinks (they change on reload), for redelivering dead letters."""
        return [runner.sink for runner in self.runners.values()]

    # -- observability --------------------------------------------------------------

    def readiness(self) -> dict[str, Any]:
        """The body of ``/readyz``: counts and per-account upstream state."""
        tracker = self.tracker
        assert tracker is not None
        accounts = {
            name: {
                "paused_for": round(self.scheduler.paused_for(name), 3),
                **tracker.account_state(name),
            }
            for name in self.clients
        }
        return {
            "store": tracker.store_state(),
            "active_jobs": len(tracker.active),
            "scheduled": len(self.scheduler),
            "polls": tracker.polls_done,
            "polls_in_flight": self.pollers.in_flight if self.pollers else 0,
            "pollers": self.pollers.alive if self.pollers else 0,
            "reloads": self.reloads,
            "streams": self.stream_hub.stats(),
            "api": self._api_stats(),
            "accounts": accounts,
            "sinks": {runner.name: runner.stats() for runner in self.runners.values()},
        }

    def _api_stats(self) -> dict[str, int]:
        server = self.api_runner.server if self.api_runner is not None else None
        return server.stats() if isinstance(server, BoundedServer) else {}

    def _metrics_snapshot(self) -> Snapshot:
        now = time.time()
        sinks = [
            SinkStats(
                name=runner.name,
                delivered=runner.delivered,
                failures=runner.failures,
                position=runner.position,
                backlog=max(0, self._last_seq - runner.position),
                lag_seconds=max(0.0, now - self._sink_lag[runner.name])
                if runner.name in self._sink_lag
                else 0.0,
                dead_lettered=int(getattr(runner.sink, "dead_lettered", 0)),
            )
            for runner in self.runners.values()
        ]
        return Snapshot(
            jobs_by_status=self._jobs_by_status,
            sinks=sinks,
            paused_seconds={name: self.scheduler.paused_for(name) for name in self.clients},
            polls_in_flight=self.pollers.in_flight if self.pollers else 0,
            streams=self.stream_hub.stats(),
        )

    async def _metrics_text(self) -> bytes:
        # State that needs the store is refreshed here, then read synchronously.
        self._jobs_by_status = await self.store.count_by_status()
        self._last_seq = await self.store.last_seq()
        self._sink_lag = {}
        for runner in self.runners.values():
            oldest = await self.store.recorded_at_after(runner.position)
            if oldest is not None:
                self._sink_lag[runner.name] = oldest
        return self.metrics.render()

    def _status_line(self) -> str:
        tracker = self.tracker
        assert tracker is not None
        delivered = sum(runner.delivered for runner in self.runners.values())
        in_flight = self.pollers.in_flight if self.pollers else 0
        return (
            f"tracking {len(tracker.active)} jobs, {in_flight} polls in flight,"
            f" {tracker.polls_done} polls, {delivered} events delivered"
        )

    async def _healthy(self, core: Sequence[asyncio.Task[Any]]) -> bool:
        if any(task.done() for task in core) or self._crashed:
            return False
        if self.pollers is None or self.pollers.alive < self.pollers.concurrency:
            return False
        if self._loop_lag > UNHEALTHY_LOOP_LAG:
            return False
        try:
            async with asyncio.timeout(UNHEALTHY_LOOP_LAG):
                await self.store.last_seq()
        except StoreUnavailableError:
            # The database is down or full, not this process: a restart would not
            # help, so the watchdog keeps being fed; /readyz reports the store.
            return True
        except (TimeoutError, Exception):
            return False
        return True

    async def _supervise(self, core: Sequence[asyncio.Task[Any]]) -> None:
        """Measure event-loop lag, publish STATUS=, ping the watchdog while healthy."""
        loop = asyncio.get_running_loop()
        ping_every = watchdog_interval(os.environ, os.getpid())
        next_ping = loop.time()
        next_status = loop.time()
        while True:
            before = loop.time()
            await asyncio.sleep(SUPERVISE_INTERVAL)
            now = loop.time()
            self._loop_lag = max(0.0, now - before - SUPERVISE_INTERVAL)
            self.metrics.event_loop_lag.set(self._loop_lag)
            if ping_every is not None and now >= next_ping:
                if await self._healthy(core):
                    self.notifier.send(WATCHDOG=1)
                else:
                    log.error("daemon.unhealthy", loop_lag=round(self._loop_lag, 3))
                next_ping = now + ping_every
            if now >= next_status:
                self.notifier.send(STATUS=self._status_line())
                next_status = now + STATUS_INTERVAL
                if self.tracker is not None:
                    try:
                        await self.tracker.flush_models()
                    except StoreUnavailableError as exc:  # learned again after a restart
                        self.tracker.note_store_failure(exc)

    # -- running --------------------------------------------------------------------

    def _api_token(self) -> str | None:
        token_file = self.config.api.token_file
        return None if token_file is None else read_secret(token_file, "api.token_file")

    async def _start_site(self, runner: web.AppRunner) -> str:
        api = self.config.api
        unix_path = api.unix_path
        if unix_path is not None:
            unix_path.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale_socket(unix_path)
            await web.UnixSite(runner, str(unix_path)).start()
            os.chmod(unix_path, 0o660)
            return f"unix:{unix_path}"
        await web.TCPSite(runner, api.host, api.port, reuse_address=True).start()
        host, port = runner.addresses[0][:2]  # the bound port, when port 0 was asked
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code."""
        loop = asyncio.get_running_loop()
        self.config.daemon.state_dir.mkdir(parents=True, exist_ok=True)
        self._build_clients()
        runners = self._create_runners(self.config)
        await self.store.open()
        tracker = Tracker(
            store=self.store,
            scheduler=self.scheduler,
            clients=self.clients,
            settings=poll_settings(self.config),
            on_events=self._on_events,
            metrics=self.metrics,
        )
        self.tracker = tracker
        api = Api(tracker, self.config, token=self._api_token(), readiness=self.readiness)
        self.api = api
        dead_letters = DeadLetterService(DeadLetterStore(self.config.daemon.state_dir), self._sinks)
        app = build_app(api, self.stream_hub, DeadLetterHandlers(dead_letters), self._metrics_text)
        self.metrics.watch(self._metrics_snapshot)
        app_runner = BoundedRunner(
            app,
            max_connections=self.config.api.max_connections,
            access_log=None,
            handle_signals=False,
            # aiohttp closes a connection whose handler still waits for a
            # request's headers this long after the start or the last response:
            # idle keep-alive and slow-header (slowloris) connections alike.
            keepalive_timeout=self.config.api.header_timeout,
        )
        self.api_runner = app_runner
        core: list[asyncio.Task[Any]] = []
        exit_code = 0
        try:
            for client in self.clients.values():
                await client.start()
            if is_fleet(self.store):
                # Sinks run where their lease is; jobs are polled where they are claimed.
                for runner in runners.values():
                    await runner.sink.close()
                tracker.poll_on_register = False
                self.fleet = Fleet(
                    self.store,
                    tracker,
                    self.scheduler,
                    config=lambda: self.config,
                    sink_names=lambda: [sink.name for sink in self.config.sinks],
                    start_sink=self._start_sink_by_name,
                    stop_sink=self._stop_sink_by_name,
                    on_external_events=self._on_external_events,
                    settings=FleetSettings(lease=fleet_lease(self.config)),
                )
            else:
                for runner in runners.values():
                    await self._start_runner(runner)
            self._last_seq = await self.store.last_seq()
            await tracker.load_models()
            self.pollers = PollerPool(self.scheduler, tracker, self.config.polling.concurrency)
            self.pollers.start()
            core.append(asyncio.create_task(self.scheduler.run(), name="scheduler"))
            core.append(asyncio.create_task(self._purge_loop(), name="purger"))
            core.append(asyncio.create_task(self._supervise(core), name="supervisor"))
            if self.fleet is not None:
                core.append(asyncio.create_task(self.fleet.run(), name="fleet"))
            else:
                # Jobs come back page by page while the API already serves.
                restoring = asyncio.create_task(self._restore(tracker), name="restore")
                self._background.add(restoring)
                restoring.add_done_callback(self._background.discard)
            await app_runner.setup()
            self.address = await self._start_site(app_runner)
            self.ready.set()
            self.notifier.send(READY=1, STATUS=self._status_line())
            log.info(
                "daemon.ready",
                version=__version__,
                listen=self.address,
                state_dir=str(self.config.daemon.state_dir),
                accounts=[account.name for account in self.config.accounts],
                sinks=list(self.runners),
            )
            handlers = {
                signal.SIGTERM: self.stop_requested.set,
                signal.SIGINT: self.stop_requested.set,
                signal.SIGHUP: self._reload_in_background,
            }
            with signal_handlers(loop, handlers):
                stopper = asyncio.create_task(self.stop_requested.wait(), name="stop")
                done, _ = await asyncio.wait([stopper, *core], return_when="FIRST_COMPLETED")
                stopper.cancel()
                for task in done:
                    if task is not stopper:
                        error = None if task.cancelled() else task.exception()
                        log.error("daemon.task_died", task=task.get_name(), error=repr(error))
                        self._crashed.append(task.get_name())
                api.accepting = False
                self.notifier.send(STOPPING=1, STATUS="draining")
                log.info("daemon.draining")
                await self._drain()
                if self.fleet is not None:
                    await self.fleet.release()
            exit_code = 1 if self._crashed else 0
        finally:
            for task in core:
                task.cancel()
            await asyncio.gather(*core, return_exceptions=True)
            for name in list(self._runner_tasks):
                await self._stop_runner(name)
            for task in list(self._background):
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)
            if self.tracker is not None:
                with contextlib.suppress(Exception):
                    await self.tracker.flush_models()
            await app_runner.cleanup()
            for client in self.clients.values():
                await client.close()
            await self.store.close()
            self.notifier.close()
            log.info("daemon.stopped", exit_code=exit_code)
        return exit_code

    async def _restore(self, tracker: Tracker) -> None:
        started = time.monotonic()
        try:
            count = await tracker.restore()
        except Exception:
            log.exception("daemon.restore_failed")
            self._crashed.append("restore")
            self.stop_requested.set()
            return
        log.info("daemon.restored", jobs=count, seconds=round(time.monotonic() - started, 3))

    def _reload_in_background(self) -> None:
        task = asyncio.create_task(self.reload(), name="reload")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _drain(self) -> None:
        """Finish in-flight polls, then let sinks catch up, all within DRAIN_TIMEOUT."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        if self.pollers is not None and not await self.pollers.drain(DRAIN_TIMEOUT):
            log.warning("daemon.drain_timeout", part="pollers")
        for runner in self.runners.values():
            if not await runner.wait_caught_up(max(0.0, deadline - time.monotonic())):
                log.warning("daemon.drain_timeout", part=f"sink {runner.name}")

    async def _purge_loop(self) -> None:
        while True:
            retention = self.config.polling.retention
            await asyncio.sleep(min(3600.0, max(1.0, retention / 10)))
            try:
                jobs, events = await self.store.purge(time.time() - retention, list(self.runners))
            except StoreUnavailableError as exc:  # the next round purges what is due
                if self.tracker is not None:
                    self.tracker.note_store_failure(exc)
                continue
            if jobs or events:
                log.info("store.purged", jobs=jobs, events=events)

    # -- reload ---------------------------------------------------------------------

    async def reload(self) -> bool:
        """SIGHUP: re-read the config and apply sinks, credentials and polling
        settings without dropping a job or an event. An invalid config is
        refused with a log line and the running one stays."""
        async with self._reload_lock:
            self.notifier.send(RELOADING=1, MONOTONIC_USEC=monotonic_usec())
            try:
                applied = await self._reload()
            finally:
                self.notifier.send(READY=1, STATUS=self._status_line())
            self.metrics.reloads.labels("applied" if applied else "rejected").inc()
            return applied

    async def _reload(self) -> bool:
        source = self.config.source
        try:
            new = await asyncio.to_thread(load_config, source)
            if self.simulator_endpoint is not None:
                new = simulated(new, self.simulator_endpoint)
            # Build everything that can fail before changing anything.
            previous = {account.name: account for account in self.config.accounts}
            authenticators = {
                account.name: authenticator_for(account, index)
                for index, account in enumerate(new.accounts)
                if _needs_new_credentials(previous.get(account.name), account)
            }
            old_sinks = {sink.name: sink for sink in self.config.sinks}
            fresh = [
                sink
                for sink in new.sinks
                if sink.name not in old_sinks or old_sinks[sink.name] != sink
            ]
            replacements = self._create_runners(dataclasses.replace(new, sinks=tuple(fresh)))
        except ConfigError as exc:
            log.error("config.reload_rejected", error=str(exc), source=str(source))
            return False
        old = self.config
        self._apply_accounts(old, new, authenticators)
        await self._apply_sinks(old, new, replacements)
        assert self.tracker is not None
        assert self.pollers is not None
        self.tracker.settings = poll_settings(new)
        if new.polling.concurrency != self.pollers.concurrency:
            self.pollers.resize(new.polling.concurrency)
        if new.daemon.log_level != old.daemon.log_level:
            configure_logging(new.daemon.log_level)
        if new.api != old.api:
            log.warning("config.restart_needed", changed="api")
        if new.daemon.state_dir != old.daemon.state_dir:
            log.warning("config.restart_needed", changed="daemon.state_dir")
        self.config = new
        if self.api is not None:
            self.api.reconfigure(new)  # registrations see added or changed accounts
        self.reloads += 1
        log.info(
            "config.reloaded",
            source=str(source),
            accounts=[account.name for account in new.accounts],
            sinks=list(self.runners),
        )
        return True

    def _apply_accounts(
        self, old: Config, new: Config, authenticators: Mapping[str, Authenticator]
    ) -> None:
        previous = {account.name: account for account in old.accounts}
        for index, account in enumerate(new.accounts):
            self.scheduler.configure_account(account.name, account.rate_limit)
            current = previous.get(account.name)
            replaced = self.clients.get(account.name)
            auth = authenticators.get(account.name)
            if auth is None:  # unchanged IAM settings: keep the cached token
                assert replaced is not None
                auth = replaced.auth
            if current is not None and _same_connection(current, account):
                self.clients[account.name].auth = auth
                continue
            client = _client_for(account, index, new.polling.concurrency)
            client.auth = auth
            self.clients[account.name] = client
            task = asyncio.create_task(self._swap_client(client, replaced))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        for name in previous.keys() - {account.name for account in new.accounts}:
            log.warning("config.account_removed_kept", account=name)

    @staticmethod
    async def _swap_client(client: UpstreamClient, replaced: UpstreamClient | None) -> None:
        await client.start()
        if replaced is not None:
            # Polls in flight on the old session finish first.
            await asyncio.sleep(replaced.request_timeout)
            await replaced.close()

    async def _apply_sinks(
        self, old: Config, new: Config, replacements: Mapping[str, SinkRunner]
    ) -> None:
        wanted = {sink.name for sink in new.sinks}
        for name in list(self.runners):
            if name not in wanted or name in replacements:
                await self._stop_runner(name)
                if self.fleet is not None:
                    self.fleet.owned_sinks.discard(name)
        for runner in self.runners.values():
            await runner.sink.reopen()  # unchanged sinks: reopen files (logrotate)
        if self.fleet is not None:
            # The fleet starts changed sinks where their lease is.
            for runner in replacements.values():
                await runner.sink.close()
            return
        for runner in replacements.values():
            await self._start_runner(runner)


def open_store(config: Config) -> Store:
    """The store ``[daemon] store`` names: embedded SQLite, or PostgreSQL for a fleet."""
    url = config.daemon.store
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url, password_file=config.daemon.store_password_file)
    return SQLiteStore(config.daemon.state_dir / DATABASE_FILE)


def is_fleet(store: Store) -> TypeGuard[FleetStore]:
    """Whether ``store`` is shared by several instances (it leases work)."""
    return hasattr(store, "claim_jobs")


def fleet_lease(config: Config) -> float:
    """Seconds a lease lasts: how long a dead instance's jobs wait for a new holder."""
    return config.daemon.lease


def simulated(config: Config, endpoint: str) -> Config:
    """``config`` with its default account pointed at the simulator (no credentials)."""
    default = dataclasses.replace(config.accounts[0], endpoint=endpoint, auth="none")
    return dataclasses.replace(config, accounts=(default, *config.accounts[1:]))


def install_event_loop() -> str:
    """Use uvloop when it loads; returns the loop's name for the log."""
    try:
        import uvloop  # noqa: PLC0415 - optional at run time
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def run_daemon(config: Config, *, simulate: bool = False, simulator_port: int = 8788) -> int:
    """Run the daemon in the foreground (``jobwatchd run``)."""
    loop_name = install_event_loop()
    if loop_name != "uvloop":
        log.warning("daemon.uvloop_unavailable", using=loop_name)

    async def main() -> int:
        nonlocal config
        sim_runner = None
        endpoint = None
        if simulate:
            from jobwatchd.cloud.simulator import Simulator, start_simulator  # noqa: PLC0415

            simulator = Simulator(speed=10.0)
            sim_runner, port = await start_simulator(simulator, "127.0.0.1", simulator_port)
            endpoint = f"http://127.0.0.1:{port}"
            config = simulated(config, endpoint)
            demo = _create_demo_jobs(simulator, config.accounts[0].project_id)
            log.info("simulator.started", endpoint=endpoint, speed=10.0, demo_jobs=demo)
        try:
            daemon = Daemon(config, simulator_endpoint=endpoint)
            started.append(daemon)
            return await daemon.run()
        finally:
            if sim_runner is not None:
                await sim_runner.cleanup()

    started: list[Daemon] = []
    log.info("daemon.starting", loop=loop_name, pid=os.getpid())
    try:
        return asyncio.run(main())
    except Exception as exc:
        if started and started[0].ready.is_set():
            raise  # a failure after start is a bug: keep its traceback
        message, code = startup_failure(exc, config)
        print(f"jobwatchd: cannot start: {message}", file=sys.stderr)
        return code


def _root_cause(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def startup_failure(exc: BaseException, config: Config) -> tuple[str, int]:
    """One line naming why the daemon could not start, and the exit code: 2
    ("fix the config or the environment"), or 1 for a PostgreSQL server that
    is down or still starting (transient: the service manager restarts us with
    its own backoff, which a start-up retry loop here would only duplicate)."""
    exc = _root_cause(exc)
    store = config.daemon.store
    postgres = store.startswith(("postgresql://", "postgres://"))
    detail = " ".join(str(exc).split()) or type(exc).__name__
    if postgres and isinstance(exc, (ConnectionError, TimeoutError, asyncpg.CannotConnectNowError)):
        return (
            f"PostgreSQL at {redact_dsn(store)} is unreachable ({detail}); "
            "start it or fix daemon.store (exit 1: retried by the service manager)",
            1,
        )
    if isinstance(exc, asyncpg.PostgresError):
        return f"PostgreSQL at {redact_dsn(store)} refused us: {detail} (check daemon.store)", 2
    state_dir = config.daemon.state_dir
    if _disk_full(exc):
        return (
            f"no space left on the filesystem holding daemon.state_dir {state_dir} "
            f"({detail}); free some space and start again",
            2,
        )
    if _cannot_write(exc) and state_dir.is_dir() and not os.access(state_dir, os.W_OK | os.X_OK):
        return (
            f"daemon.state_dir {state_dir} is not writable by this user (uid {os.getuid()}) "
            f"or is on a read-only filesystem ({detail}); give the service user write access "
            "or choose another daemon.state_dir",
            2,
        )
    if isinstance(exc, sqlite3.DatabaseError):
        database = config.daemon.state_dir / DATABASE_FILE
        return (
            f"the database {database} is not usable ({detail}); "
            "restore it from a backup or move it aside to start empty",
            2,
        )
    if isinstance(exc, OSError):
        if exc.errno == errno.EADDRINUSE:
            return (
                f"cannot listen on {config.api.listen}: address already in use "
                "(stop the other process or change api.listen)",
                2,
            )
        if state_dir.exists() and not state_dir.is_dir():
            return f"daemon.state_dir {state_dir} is not a directory", 2
        where = f": {exc.filename}" if exc.filename else ""
        reason = exc.strerror or detail
        return (
            f"{reason}{where} (check daemon.state_dir and the sinks' paths: they must be "
            "writable directories/files with free space)",
            2,
        )
    return f"{type(exc).__name__}: {detail}", 2


def _disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, sqlite3.DatabaseError) and "database or disk is full" in str(exc)


def _cannot_write(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
    message = str(exc)
    return isinstance(exc, sqlite3.DatabaseError) and (
        "unable to open database file" in message or "readonly database" in message
    )


def _create_demo_jobs(simulator: Any, project_id: str) -> list[dict[str, Any]]:
    rng = random.Random()
    kinds = [("createServer", 3, False), ("createServer", 2, True), ("deleteServer", 1, False)]
    demo = []
    for job_type, count, fail in kinds:
        job_id = simulator.create_job(
            job_type, project_id=project_id, count=count, fail=fail, duration=rng.uniform(60, 120)
        )
        demo.append({"job_id": job_id, "job_type": job_type, "fails": fail})
    return demo


def state_path(config: Config) -> Path:
    """The database path (for tools and tests)."""
    return config.daemon.state_dir / DATABASE_FILE
