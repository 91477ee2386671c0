"""The daemon's lifecycle: wire the parts, serve, handle signals, drain.

Side tasks (scheduler, sink runners, purger) are watched together with the
stop signal: if one of them dies, the daemon stops instead of staying up
half-alive, and the service manager restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from jobwatchd import __version__
from jobwatchd.api import Api
from jobwatchd.backoff import BackoffPolicy
from jobwatchd.config import AccountConfig, Config, ConfigError, read_secret
from jobwatchd.delivery import SinkRunner
from jobwatchd.logs import get_logger
from jobwatchd.models import StoredEvent
from jobwatchd.poller import PollerPool
from jobwatchd.scheduler import Scheduler
from jobwatchd.sinks import SinkContext, create_sink
from jobwatchd.store.sqlite import SQLiteStore
from jobwatchd.tracker import PollSettings, Tracker
from jobwatchd.upstream import Authenticator, NoAuth, TokenAuth, UpstreamClient

log = get_logger("jobwatchd.daemon")

DRAIN_TIMEOUT = 10.0
DATABASE_FILE = "jobwatchd.db"


def authenticator_for(account: AccountConfig, index: int) -> Authenticator:
    """The credential provider for ``account``."""
    if account.auth == "none":
        return NoAuth()
    if account.auth == "token":
        assert account.token_file is not None, "config validation requires token_file"
        return TokenAuth(account.token_file)
    raise ConfigError(
        f"accounts[{index}].auth",
        f"{account.auth!r} is not supported by this version yet; use 'token'",
    )


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
    )


@contextlib.contextmanager
def signal_handlers(
    loop: asyncio.AbstractEventLoop, handlers: dict[signal.Signals, Any]
) -> Iterator[None]:
    """Install loop signal handlers, and remove them on exit."""
    for signum, handler in handlers.items():
        loop.add_signal_handler(signum, handler)
    try:
        yield
    finally:
        for signum in handlers:
            loop.remove_signal_handler(signum)


class Daemon:
    """One jobwatchd instance."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stop_requested = asyncio.Event()
        self.store = SQLiteStore(config.daemon.state_dir / DATABASE_FILE)
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=config.polling.concurrency)
        self.scheduler = Scheduler(self.queue)
        self.clients: dict[str, UpstreamClient] = {}
        self.runners: list[SinkRunner] = []
        self.tracker: Tracker | None = None
        self.pollers: PollerPool | None = None
        self.started_at = time.time()
        self.ready = asyncio.Event()
        self.address: str | None = None

    def _build_clients(self) -> None:
        for index, account in enumerate(self.config.accounts):
            self.clients[account.name] = UpstreamClient(
                endpoint=account.endpoint,
                auth=authenticator_for(account, index),
                pool_size=self.config.polling.concurrency,
                request_timeout=account.request_timeout,
                ca_file=account.ca_file,
            )
            self.scheduler.configure_account(account.name, account.rate_limit)

    def _build_sinks(self) -> None:
        context = SinkContext(state_dir=self.config.daemon.state_dir)
        for index, sink_config in enumerate(self.config.sinks):
            sink = create_sink(sink_config, context, index)
            self.runners.append(SinkRunner(sink, sink_config.filter, self.store))

    def _on_events(self, events: Sequence[StoredEvent]) -> None:
        for runner in self.runners:
            runner.notify()

    def readiness(self) -> dict[str, Any]:
        """The body of ``/readyz``: counts and per-account upstream state."""
        tracker = self.tracker
        assert tracker is not None
        accounts = {
            name: {
                "paused_for": round(self.scheduler.paused_for(name), 3),
                **tracker.account_state.get(name, {"last_poll": None}),
            }
            for name in self.clients
        }
        return {
            "active_jobs": len(tracker.active),
            "scheduled": len(self.scheduler),
            "polls": tracker.polls_done,
            "accounts": accounts,
            "sinks": {
                runner.name: {"position": runner.position, "delivered": runner.delivered}
                for runner in self.runners
            },
        }

    def _api_token(self) -> str | None:
        token_file = self.config.api.token_file
        return None if token_file is None else read_secret(token_file, "api.token_file")

    async def _start_site(self, runner: web.AppRunner) -> str:
        api = self.config.api
        unix_path = api.unix_path
        site: web.BaseSite
        if unix_path is not None:
            unix_path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                unix_path.unlink()
            site = web.UnixSite(runner, str(unix_path))
            await site.start()
            os.chmod(unix_path, 0o660)
            return f"unix:{unix_path}"
        site = web.TCPSite(runner, api.host, api.port, reuse_address=True)
        await site.start()
        host, port = runner.addresses[0][:2]  # the bound port, when port 0 was asked
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code."""
        loop = asyncio.get_running_loop()
        self.config.daemon.state_dir.mkdir(parents=True, exist_ok=True)
        self._build_clients()
        await self.store.open()
        tracker = Tracker(
            store=self.store,
            scheduler=self.scheduler,
            clients=self.clients,
            settings=poll_settings(self.config),
            on_events=self._on_events,
        )
        self.tracker = tracker
        self._build_sinks()
        api = Api(tracker, self.config, token=self._api_token(), readiness=self.readiness)
        app_runner = web.AppRunner(api.app(), access_log=None, handle_signals=False)
        tasks: list[asyncio.Task[Any]] = []
        try:
            for client in self.clients.values():
                await client.start()
            for runner in self.runners:
                await runner.sink.start()
            restored = await tracker.restore()
            self.pollers = PollerPool(self.queue, tracker, self.config.polling.concurrency)
            self.pollers.start()
            tasks.append(asyncio.create_task(self.scheduler.run(), name="scheduler"))
            tasks.extend(
                asyncio.create_task(runner.run(), name=f"sink-{runner.name}")
                for runner in self.runners
            )
            tasks.append(asyncio.create_task(self._purge_loop(), name="purger"))
            await app_runner.setup()
            address = await self._start_site(app_runner)
            self.address = address
            self.ready.set()
            log.info(
                "daemon.ready",
                version=__version__,
                listen=address,
                state_dir=str(self.config.daemon.state_dir),
                restored_jobs=restored,
                accounts=[account.name for account in self.config.accounts],
                sinks=[runner.name for runner in self.runners],
            )
            handlers = {
                signal.SIGTERM: self.stop_requested.set,
                signal.SIGINT: self.stop_requested.set,
                signal.SIGHUP: lambda: asyncio.ensure_future(self.handle_sighup()),
            }
            with signal_handlers(loop, handlers):
                stopper = asyncio.create_task(self.stop_requested.wait(), name="stop")
                done, _ = await asyncio.wait([stopper, *tasks], return_when="FIRST_COMPLETED")
                stopper.cancel()
                crashed = [task for task in done if task is not stopper]
                for task in crashed:
                    exc = task.exception() if not task.cancelled() else None
                    log.error("daemon.task_died", task=task.get_name(), error=repr(exc))
                api.accepting = False
                log.info("daemon.draining")
                await self._drain(app_runner)
            return 1 if crashed else 0
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await app_runner.cleanup()
            for client in self.clients.values():
                await client.close()
            for runner in self.runners:
                await runner.sink.close()
            await self.store.close()
            log.info("daemon.stopped")

    async def _drain(self, app_runner: web.AppRunner) -> None:
        deadline = time.monotonic() + DRAIN_TIMEOUT
        if self.pollers is not None:
            finished = await self.pollers.drain(DRAIN_TIMEOUT)
            if not finished:
                log.warning("daemon.drain_timeout", part="pollers")
        for runner in self.runners:
            if not await runner.wait_caught_up(max(0.0, deadline - time.monotonic())):
                log.warning("daemon.drain_timeout", part=f"sink {runner.name}")

    async def handle_sighup(self) -> None:
        """Reopen file sinks (log rotation)."""
        log.info("daemon.reopening_sinks")
        for runner in self.runners:
            try:
                await runner.sink.reopen()
            except Exception:
                log.exception("sink.reopen_failed", sink=runner.name)

    async def _purge_loop(self) -> None:
        retention = self.config.polling.retention
        period = min(3600.0, max(1.0, retention / 10))
        while True:
            await asyncio.sleep(period)
            jobs, events = await self.store.purge(
                time.time() - retention, [runner.name for runner in self.runners]
            )
            if jobs or events:
                log.info("store.purged", jobs=jobs, events=events)


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
        if simulate:
            from jobwatchd.simulator import Simulator, start_simulator  # noqa: PLC0415

            simulator = Simulator(speed=10.0)
            sim_runner, port = await start_simulator(simulator, "127.0.0.1", simulator_port)
            endpoint = f"http://127.0.0.1:{port}"
            config = simulated(config, endpoint)
            demo = _create_demo_jobs(simulator, config.accounts[0].project_id)
            log.info("simulator.started", endpoint=endpoint, speed=10.0, demo_jobs=demo)
        try:
            return await Daemon(config).run()
        finally:
            if sim_runner is not None:
                await sim_runner.cleanup()

    log.info("daemon.starting", loop=loop_name, pid=os.getpid())
    return asyncio.run(main())


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
