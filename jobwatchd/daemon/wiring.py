"""How a daemon is put together from its config: the store, the upstream clients,
the poll settings, the event loop, signals and the API's socket."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeGuard

from jobwatchd.backoff import BackoffPolicy
from jobwatchd.cloud.auth import Authenticator, authenticator_for
from jobwatchd.cloud.client import UpstreamClient
from jobwatchd.config import AccountConfig, Config, ConfigError
from jobwatchd.engine.tracker import PollSettings
from jobwatchd.learning import AdaptivePolicy
from jobwatchd.models import DEFAULT_SERVICE
from jobwatchd.services import SERVICES
from jobwatchd.store import FleetStore, Store
from jobwatchd.store.postgresql import PostgresStore
from jobwatchd.store.sqlite import SQLiteStore

DATABASE_FILE = "jobwatchd.db"


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


def client_for(
    account: AccountConfig, index: int, pool_size: int, auth: Authenticator | None = None
) -> UpstreamClient:
    """The upstream client of ``account`` (the ``index``-th in the config), with
    ``auth``, or credentials built for it."""
    return UpstreamClient(
        endpoints=account.service_endpoints,
        auth=authenticator_for(account, index) if auth is None else auth,
        pool_size=pool_size,
        request_timeout=account.request_timeout,
        ca_file=account.ca_file,
        max_response_size=account.max_response_size,
        max_sub_jobs=account.max_sub_jobs,
    )


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


def remove_stale_socket(path: Path) -> None:
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
    """``config`` with its default account pointed at the simulator (no
    credentials): ECS at its root, every service under its own prefix."""
    default = dataclasses.replace(
        config.accounts[0],
        endpoint=endpoint,
        endpoints={name: f"{endpoint}/{name}" for name in SERVICES if name != DEFAULT_SERVICE},
        auth="none",
    )
    return dataclasses.replace(config, accounts=(default, *config.accounts[1:]))


def install_event_loop() -> str:
    """Use uvloop when it loads; returns the loop's name for the log."""
    try:
        import uvloop  # noqa: PLC0415 - optional at run time
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def state_path(config: Config) -> Path:
    """The database path (for tools and tests)."""
    return config.daemon.state_dir / DATABASE_FILE
