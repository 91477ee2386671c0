"""Why a start failed, as one line and an exit code (jobwatchd.daemon.startup)."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import asyncpg
import pytest

from jobwatchd.config import Config, parse_config
from jobwatchd.daemon.startup import startup_failure

ACCOUNT = {"name": "a", "endpoint": "https://ecs.example", "project_id": "p", "auth": "none"}
DSN = "postgresql://jobwatchd:hunter2@db.example:5432/jobs"


def _config(state_dir: Path, store: str = "sqlite") -> Config:
    daemon = {"state_dir": str(state_dir)} | ({"store": store} if store != "sqlite" else {})
    return parse_config({"daemon": daemon, "accounts": [ACCOUNT]}, verify_secrets=False)


@pytest.mark.parametrize(
    ("store", "exc", "code", "says"),
    [
        (DSN, ConnectionRefusedError(111, "Connection refused"), 1, "is unreachable"),
        (DSN, TimeoutError(), 1, "is unreachable"),
        (DSN, asyncpg.CannotConnectNowError("starting up"), 1, "is unreachable"),
        (DSN, asyncpg.InvalidPasswordError("password authentication failed"), 2, "refused us"),
        ("sqlite", sqlite3.DatabaseError("file is not a database"), 2, "is not usable"),
        ("sqlite", sqlite3.OperationalError("database or disk is full"), 2, "no space left"),
        ("sqlite", OSError(errno.ENOSPC, "No space left on device"), 2, "no space left"),
        ("sqlite", OSError(errno.EADDRINUSE, "Address in use"), 2, "address already in use"),
        (
            "sqlite",
            ExceptionGroup("startup", [OSError(errno.EADDRINUSE, "Address in use")]),
            2,
            "address already in use",
        ),
        ("sqlite", ValueError("odd"), 2, "ValueError: odd"),
    ],
)
def test_each_cause_is_one_line_with_its_exit_code(
    tmp_path: Path, store: str, exc: BaseException, code: int, says: str
) -> None:
    message, exit_code = startup_failure(exc, _config(tmp_path, store))
    assert exit_code == code
    assert says in message
    assert "\n" not in message
    assert "hunter2" not in message


def test_a_state_dir_that_is_a_file_is_named(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("")
    message, code = startup_failure(
        FileExistsError(errno.EEXIST, "File exists", str(state)),
        _config(state),
    )
    assert code == 2
    assert message == f"daemon.state_dir {state} is not a directory"
