"""The daemon's lifecycle: wire the parts, serve, handle signals, reload, drain.

Core tasks (scheduler, purger, supervisor) are watched together with the stop
signal, and every sink runner reports its own death: if any of them dies the
daemon stops instead of staying up half-alive, and the service manager
restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, Final

from aiohttp import web

from jobwatchd import __version__
from jobwatchd.cloud.client import UpstreamClient
from jobwatchd.config import Config
from jobwatchd.daemon.health import Health
from jobwatchd.daemon.reload import Reloader
from jobwatchd.daemon.startup import startup_failure
from jobwatchd.daemon.wiring import (
    client_for,
    fleet_lease,
    install_event_loop,
    is_fleet,
    open_store,
    poll_settings,
    remove_stale_socket,
    signal_handlers,
    simulated,
)
from jobwatchd.engine.delivery import SinkRunner
from jobwatchd.engine.fleet import Fleet, FleetSettings
from jobwatchd.engine.poller import PollerPool
from jobwatchd.engine.scheduler import Scheduler
from jobwatchd.engine.tracker import Tracker
from jobwatchd.http.deadletters import DeadLetterHandlers
from jobwatchd.http.events import EventHub
from jobwatchd.http.jobs import Api
from jobwatchd.http.routes import build_app
from jobwatchd.http.server import BoundedRunner
from jobwatchd.logs import get_logger
from jobwatchd.metrics import Metrics
from jobwatchd.models import DEFAULT_SERVICE, NewJob, StoredEvent
from jobwatchd.options import read_secret
from jobwatchd.sinks import SinkConfig, SinkContext, create_sink
from jobwatchd.sinks.deadletters import DeadLetterService, DeadLetterStore
from jobwatchd.store import Store, StoreUnavailableError
from jobwatchd.systemd import Notifier

log = get_logger("jobwatchd.daemon")


DRAIN_TIMEOUT = 10.0


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
        self.crashed: list[str] = []
        """Names of the tasks that died: the daemon stops, exit code 1."""
        self._background: set[asyncio.Task[Any]] = set()
        self.health = Health(self)
        self.reloader = Reloader(self)

    # -- building -------------------------------------------------------------------

    def _build_clients(self) -> None:
        for index, account in enumerate(self.config.accounts):
            self.clients[account.name] = client_for(account, index, self.config.polling.concurrency)
            self.scheduler.configure_account(account.name, account.rate_limits_by_service())

    def _sink_context(self) -> SinkContext:
        return SinkContext(state_dir=self.config.daemon.state_dir)

    def create_runners(self, config: Config) -> dict[str, SinkRunner]:
        return {
            sink_config.name: self._runner_for(sink_config, index)
            for index, sink_config in enumerate(config.sinks)
        }

    def _runner_for(self, sink_config: SinkConfig, index: int) -> SinkRunner:
        """The runner of the ``index``-th sink of the config."""
        return SinkRunner(
            create_sink(sink_config, self._sink_context(), index),
            sink_config.filter,
            self.store,
            store_trouble=self._store_trouble,
        )

    def _store_trouble(self, exc: Exception | None) -> None:
        """A sink runner found the store unavailable (``exc``), or answering again."""
        if self.tracker is None:
            return
        if exc is None:
            self.tracker.note_store_ok()
        else:
            self.tracker.note_store_failure(exc)

    async def start_runner(self, runner: SinkRunner) -> None:
        await runner.sink.start()
        self.runners[runner.name] = runner
        task = asyncio.create_task(runner.run(), name=f"sink-{runner.name}")
        task.add_done_callback(self._runner_done)
        self._runner_tasks[runner.name] = task

    def _runner_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        log.error("daemon.task_died", task=task.get_name(), error=repr(task.exception()))
        self.crashed.append(task.get_name())
        self.stop_requested.set()

    async def stop_runner(self, name: str) -> None:
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
                await self.start_runner(self._runner_for(sink_config, index))
                return

    async def _stop_sink_by_name(self, name: str) -> None:
        if name in self.runners:
            await self.stop_runner(name)

    def _on_events(self, events: Sequence[StoredEvent]) -> None:
        for runner in self.runners.values():
            runner.notify()
        self.stream_hub.notify()

    def _sinks(self) -> list[object]:
        """The running sinks (they change on reload), for redelivering dead letters."""
        return [runner.sink for runner in self.runners.values()]

    # -- observability --------------------------------------------------------------

    # -- running --------------------------------------------------------------------

    def _api_token(self) -> str | None:
        token_file = self.config.api.token_file
        return None if token_file is None else read_secret(token_file, "api.token_file")

    async def _start_site(self, runner: web.AppRunner) -> str:
        api = self.config.api
        unix_path = api.unix_path
        if unix_path is not None:
            unix_path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_socket(unix_path)
            await web.UnixSite(runner, str(unix_path)).start()
            os.chmod(unix_path, 0o660)
            return f"unix:{unix_path}"
        await web.TCPSite(runner, api.host, api.port, reuse_address=True).start()
        host, port = runner.addresses[0][:2]  # the bound port, when port 0 was asked
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (or a core task dies); returns the exit code."""
        self.config.daemon.state_dir.mkdir(parents=True, exist_ok=True)
        self._build_clients()
        runners = self.create_runners(self.config)
        await self.store.open()
        tracker = self._build_tracker()
        app_runner = self._build_api(tracker)
        core: list[asyncio.Task[Any]] = []
        exit_code = 0
        try:
            await self._start(tracker, runners, core)
            await app_runner.setup()
            self.address = await self._start_site(app_runner)
            self._announce_ready()
            await self._serve_until_stopped(core)
            exit_code = 1 if self.crashed else 0
        finally:
            await self._shut_down(core, app_runner)
            log.info("daemon.stopped", exit_code=exit_code)
        return exit_code

    def _build_tracker(self) -> Tracker:
        self.tracker = Tracker(
            store=self.store,
            scheduler=self.scheduler,
            clients=self.clients,
            settings=poll_settings(self.config),
            on_events=self._on_events,
            metrics=self.metrics,
        )
        return self.tracker

    def _build_api(self, tracker: Tracker) -> BoundedRunner:
        self.api = Api(
            tracker, self.config, token=self._api_token(), readiness=self.health.readiness
        )
        dead_letters = DeadLetterService(DeadLetterStore(self.config.daemon.state_dir), self._sinks)
        app = build_app(
            self.api,
            self.stream_hub,
            DeadLetterHandlers(dead_letters, body_timeout=self.config.api.body_timeout),
            self.health.metrics_text,
        )
        self.metrics.watch(self.health.snapshot)
        self.api_runner = BoundedRunner(
            app,
            max_connections=self.config.api.max_connections,
            access_log=None,
            handle_signals=False,
            # aiohttp closes a connection whose handler still waits for a
            # request's headers this long after the start or the last response:
            # idle keep-alive and slow-header (slowloris) connections alike.
            keepalive_timeout=self.config.api.header_timeout,
        )
        return self.api_runner

    async def _start(
        self, tracker: Tracker, runners: Mapping[str, SinkRunner], core: list[asyncio.Task[Any]]
    ) -> None:
        """Clients, sinks (or the fleet), pollers and the core tasks; jobs come back
        page by page while the API already serves."""
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
                await self.start_runner(runner)
        await tracker.load_models()
        self.pollers = PollerPool(self.scheduler, tracker, self.config.polling.concurrency)
        self.pollers.start()
        core.append(asyncio.create_task(self.scheduler.run(), name="scheduler"))
        core.append(asyncio.create_task(self._purge_loop(), name="purger"))
        core.append(asyncio.create_task(self.health.supervise(core), name="supervisor"))
        if self.fleet is not None:
            core.append(asyncio.create_task(self.fleet.run(), name="fleet"))
        else:
            self.spawn(self._restore(tracker), "restore")

    def _announce_ready(self) -> None:
        self.ready.set()
        self.notifier.send(READY=1, STATUS=self.health.status_line())
        log.info(
            "daemon.ready",
            version=__version__,
            listen=self.address,
            state_dir=str(self.config.daemon.state_dir),
            accounts=[account.name for account in self.config.accounts],
            sinks=list(self.runners),
        )

    async def _serve_until_stopped(self, core: Sequence[asyncio.Task[Any]]) -> None:
        """Wait for SIGTERM/SIGINT or a core task's death (SIGHUP reloads), then drain."""
        handlers = {
            signal.SIGTERM: self.stop_requested.set,
            signal.SIGINT: self.stop_requested.set,
            signal.SIGHUP: lambda: self.spawn(self.reloader.reload(), "reload"),
        }
        with signal_handlers(asyncio.get_running_loop(), handlers):
            stopper = asyncio.create_task(self.stop_requested.wait(), name="stop")
            done, _ = await asyncio.wait([stopper, *core], return_when="FIRST_COMPLETED")
            stopper.cancel()
            for task in done:
                if task is not stopper:
                    error = None if task.cancelled() else task.exception()
                    log.error("daemon.task_died", task=task.get_name(), error=repr(error))
                    self.crashed.append(task.get_name())
            assert self.api is not None
            self.api.accepting = False
            self.notifier.send(STOPPING=1, STATUS="draining")
            log.info("daemon.draining")
            await self._drain()
            if self.fleet is not None:
                await self.fleet.release()

    async def _shut_down(
        self, core: Sequence[asyncio.Task[Any]], app_runner: web.AppRunner
    ) -> None:
        for task in core:
            task.cancel()
        await asyncio.gather(*core, return_exceptions=True)
        for name in list(self._runner_tasks):
            await self.stop_runner(name)
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

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        """Run ``work`` in the background; cancelled when the daemon stops."""
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _restore(self, tracker: Tracker) -> None:
        started = time.monotonic()
        try:
            count = await tracker.restore()
        except Exception:
            log.exception("daemon.restore_failed")
            self.crashed.append("restore")
            self.stop_requested.set()
            return
        log.info("daemon.restored", jobs=count, seconds=round(time.monotonic() - started, 3))

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


DEMO_LABEL: Final = {"demo": "simulated"}
"""The label of the demo jobs ``jobwatchd run --simulate`` tracks."""


async def _track_demo_jobs(daemon: Daemon, demo: Sequence[Mapping[str, object]]) -> None:
    """Track the simulator's demo jobs (one per service shown) once the daemon is ready."""
    await daemon.ready.wait()
    account = daemon.config.default_account
    assert daemon.tracker is not None
    jobs = [
        NewJob(
            job_id=str(job["job_id"]),
            project_id=account.project_id,
            account=account.name,
            service=str(job.get("service", DEFAULT_SERVICE)),
            labels=DEMO_LABEL,
        )
        for job in demo
    ]
    try:
        await daemon.tracker.register(jobs)
    except Exception:  # the demo is a convenience: never a reason to stop
        log.exception("simulator.demo_jobs_not_tracked")


def run_daemon(config: Config, *, simulate: bool = False, simulator_port: int = 8788) -> int:
    """Run the daemon in the foreground (``jobwatchd run``)."""
    loop_name = install_event_loop()
    if loop_name != "uvloop":
        log.warning("daemon.uvloop_unavailable", using=loop_name)

    async def main() -> int:
        nonlocal config
        sim_runner = None
        endpoint = None
        demo: list[dict[str, object]] = []
        if simulate:
            from jobwatchd.cloud.simulator import (  # noqa: PLC0415
                Simulator,
                create_demo_jobs,
                start_simulator,
            )

            simulator = Simulator(speed=10.0)
            sim_runner, port = await start_simulator(simulator, "127.0.0.1", simulator_port)
            endpoint = f"http://127.0.0.1:{port}"
            config = simulated(config, endpoint)
            demo = create_demo_jobs(simulator, 3, config.accounts[0].project_id)
            log.info("simulator.started", endpoint=endpoint, speed=10.0, demo_jobs=demo)
        tracking: asyncio.Task[None] | None = None
        try:
            daemon = Daemon(config, simulator_endpoint=endpoint)
            started.append(daemon)
            if simulate:
                tracking = asyncio.create_task(_track_demo_jobs(daemon, demo))
            return await daemon.run()
        finally:
            if tracking is not None:
                tracking.cancel()
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
