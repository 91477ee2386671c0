"""Why a daemon could not start, as one line and an exit code. Pure but for
looking at the state directory."""

from __future__ import annotations

import errno
import os
import sqlite3

import asyncpg

from jobwatchd.config import Config
from jobwatchd.daemon.wiring import DATABASE_FILE
from jobwatchd.options import redact_dsn


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
