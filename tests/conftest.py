"""The tests' fixtures; what they are built from lives in :mod:`tests.helpers`
(nothing imports from this file)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jobwatchd.cloud.simulator import Simulator, start_simulator
from jobwatchd.store import Store
from jobwatchd.store.postgresql import PostgresStore
from jobwatchd.store.sqlite import SQLiteStore
from tests.helpers import pg
from tests.helpers.config import write_config
from tests.helpers.daemon import DaemonProcess
from tests.helpers.servers import RunningSimulator, simulator_in_thread


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[pg.PostgresServer]:
    """A real PostgreSQL server for the whole session (see tests/helpers/pg.py);
    the tests that use it fail, never skip, when the server is not installed."""
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
    with simulator_in_thread(Simulator(speed=100.0, seed=11)) as running:
        yield running


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
        daemon.reap()


@pytest.fixture
def start_daemon(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    daemon_factory: Callable[[Path], DaemonProcess],
) -> Callable[..., DaemonProcess]:
    """Start a daemon subprocess polling the threaded simulator: its config
    ``tmp_path/c.toml`` from :func:`~tests.helpers.config.write_config` with the
    given options, its state in ``tmp_path/state``."""

    def start(**options: Any) -> DaemonProcess:
        config = write_config(
            tmp_path / "c.toml",
            endpoint=threaded_simulator.url,
            state_dir=tmp_path / "state",
            **options,
        )
        daemon = daemon_factory(config)
        daemon.start()
        return daemon

    return start
