"""Shared test helpers: the simulator on a real socket, config files, and the
real daemon as a subprocess. Waiting is always on a condition with a deadline."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from jobwatchd.cloud.simulator import DEFAULT_PROJECT_ID, Simulator, start_simulator
from jobwatchd.store import Store
from jobwatchd.store.postgresql import PostgresStore
from jobwatchd.store.sqlite import SQLiteStore
from tests import pg

REPO = Path(__file__).resolve().parent.parent


def wait_until(
    predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


async def async_wait_until(
    predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Like :func:`wait_until`, yielding to the event loop between checks."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(interval)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[pg.PostgresServer]:
    """A real PostgreSQL server for the whole session (see tests/pg.py); the
    tests that use it fail, never skip, when the server is not installed."""
    try:
        pg.find_bin_dir()
    except pg.PostgresMissing as missing:
        pytest.fail(str(missing), pytrace=False)
    with pg.postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_dsn(postgres_server: pg.PostgresServer) -> str:
    """The server's URL (superuser, the ``postgres`` database)."""
    return postgres_server.dsn()


@pytest.fixture
def postgres_database(postgres_server: pg.PostgresServer) -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    name = postgres_server.create_database()
    yield postgres_server.dsn(name)
    postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An open, empty store of each kind (a module may define its own ``store``)."""
    opened: Store
    if request.param == "sqlite":
        opened = SQLiteStore(tmp_path / "state" / "jobwatchd.db")
    else:
        opened = PostgresStore(request.getfixturevalue("postgres_database"))
    await opened.open()
    yield opened
    await opened.close()


@dataclass
class RunningSimulator:
    """A simulator serving on 127.0.0.1."""

    sim: Simulator
    url: str
    port: int


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    """A fast simulator (speed 100: a 60 s job takes 0.6 s) on a free port, in
    the test's own event loop (for in-process tests)."""
    sim = Simulator(speed=100.0, seed=7)
    runner, port = await start_simulator(sim, "127.0.0.1", 0)
    try:
        yield RunningSimulator(sim, f"http://127.0.0.1:{port}", port)
    finally:
        await runner.cleanup()


@pytest.fixture
def threaded_simulator() -> Iterator[RunningSimulator]:
    """The simulator on its own thread and event loop, so blocking tests that
    drive a daemon subprocess can wait without starving it."""
    sim = Simulator(speed=100.0, seed=11)
    loop = asyncio.new_event_loop()
    started: dict[str, Any] = {}
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        runner, port = loop.run_until_complete(start_simulator(sim, "127.0.0.1", 0))
        started.update(runner=runner, port=port)
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="simulator", daemon=True)
    thread.start()
    assert ready.wait(timeout=10), "simulator did not start"
    port = started["port"]
    try:
        yield RunningSimulator(sim, f"http://127.0.0.1:{port}", port)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def write_config(
    path: Path,
    *,
    endpoint: str,
    state_dir: Path,
    extra_polling: str = "",
    extra: str = "",
    listen: str = "127.0.0.1:0",
    sinks: str | None = None,
    extra_daemon: str = "",
    extra_api: str = "",
) -> Path:
    """A daemon config tuned for tests: fast polling, log + file sinks."""
    if sinks is None:
        sinks = '[[sinks]]\ntype = "log"\n\n[[sinks]]\ntype = "file"\npath = "events.jsonl"\n'
    path.write_text(
        f"""
[daemon]
state_dir = "{state_dir}"
log_level = "info"
{extra_daemon}

[api]
listen = "{listen}"
{extra_api}

[[accounts]]
name = "default"
endpoint = "{endpoint}"
project_id = "{DEFAULT_PROJECT_ID}"
auth = "none"
rate_limit = 2000
request_timeout = "2s"

[polling]
concurrency = 32
initial_delay = "50ms"
min_interval = "100ms"
max_interval = "400ms"
multiplier = 1.5
jitter = 0.2
not_found_grace = "1s"
{extra_polling}

{sinks}
{extra}
"""
    )
    return path


class DaemonProcess:
    """``jobwatchd run`` in a subprocess, stdout captured to a file."""

    def __init__(self, config: Path, workdir: Path, *, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.workdir = workdir
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.address: str | None = None
        self.runs = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / f"daemon-{self.config.stem}-{self.runs}.log"

    def start(self) -> str:
        """Start and wait until the API is bound; returns its address."""
        self.runs += 1
        env = {**os.environ, **(self.env or {})}
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jobwatchd", "run", "-c", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
            )
        ready = wait_until(self._ready_line, timeout=30, what="daemon.ready")
        self.address = str(ready["listen"])
        return self.address

    def _ready_line(self) -> dict[str, Any] | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"daemon exited with {self.proc.returncode}:\n{self.log_path.read_text()}"
            )
        for record in self.log_records():
            if record.get("event") == "daemon.ready":
                return record
        return None

    def log_records(self, run: int | None = None) -> list[dict[str, Any]]:
        """Every JSON log line of run ``run`` (default: the current one)."""
        path = self.workdir / f"daemon-{self.config.stem}-{run or self.runs}.log"
        records = []
        for line in path.read_bytes().splitlines():
            if line.startswith(b"{"):
                try:
                    records.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue  # a line still being written
        return records

    @property
    def url(self) -> str:
        assert self.address is not None
        return f"http://{self.address}"

    def kill(self) -> None:
        """SIGKILL, no chance to clean up."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[[Path], DaemonProcess]]:
    """Create daemon processes that are always stopped at the end of the test."""
    made: list[DaemonProcess] = []

    def make(config: Path) -> DaemonProcess:
        daemon = DaemonProcess(config, tmp_path)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait(timeout=10)


def read_events(path: Path) -> list[dict[str, Any]]:
    """The CloudEvents of a file sink (complete lines only)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    return [orjson.loads(line) for line in complete.splitlines() if line]


def http(
    method: str, url: str, body: Any = None, *, timeout: float = 30.0
) -> tuple[int, Any, dict[str, str]]:
    """A blocking HTTP call for subprocess tests: (status, decoded body, headers)."""
    data = None if body is None else (body if isinstance(body, bytes) else orjson.dumps(body))
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            raw, status, headers = resp.read(), resp.status, dict(resp.headers)
    except urllib.error.HTTPError as err:
        raw, status, headers = err.read(), err.code, dict(err.headers)
    return status, (orjson.loads(raw) if raw else None), headers


def job_chains(events: list[dict[str, Any]]) -> dict[str, list[tuple[Any, Any]]]:
    """(from, to) per subject, first occurrence of each event id only, in file order."""
    seen: set[str] = set()
    chains: dict[str, list[tuple[Any, Any]]] = {}
    for event in events:
        if event["id"] in seen:
            continue
        seen.add(event["id"])
        data = event["data"]
        chains.setdefault(event["subject"], []).append((data["from"], data["to"]))
    return chains


def assert_chain_consistent(chain: list[tuple[Any, Any]], subject: str) -> None:
    """First ``from`` is null and every ``from`` is the previous ``to``."""
    assert chain, f"no events for {subject}"
    assert chain[0][0] is None, f"{subject}: first event must have from=null: {chain}"
    for (_, previous_to), (current_from, _) in itertools.pairwise(chain):
        assert current_from == previous_to, f"{subject}: broken chain {chain}"


TERMINAL_STATUSES = frozenset({"SUCCESS", "FAIL", "TIMEOUT", "NOT_FOUND", "ERROR"})


def job_statuses(daemon: DaemonProcess) -> dict[str, str]:
    """Every tracked job's status, following the list cursor."""
    statuses: dict[str, str] = {}
    after = ""
    while True:
        status, body, _ = http("GET", f"{daemon.url}/v1/jobs?limit=1000{after}")
        assert status == 200, body
        statuses.update((job["job_id"], job["status"]) for job in body["jobs"])
        if body["next"] is None:
            return statuses
        after = f"&after={body['next']}"


def all_terminal(daemon: DaemonProcess, job_ids: list[str]) -> bool:
    """Whether the daemon tracks every one of ``job_ids`` in a terminal status."""
    statuses = job_statuses(daemon)
    return all(statuses.get(job_id) in TERMINAL_STATUSES for job_id in job_ids)
