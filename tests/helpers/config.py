"""Daemon config files for the tests, built from keyword options (never by
patching the text of another config)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import tomli_w

from jobwatchd.cloud.simulator import DEFAULT_PROJECT_ID
from jobwatchd.models import DEFAULT_SERVICE
from jobwatchd.services import SERVICES

LOG_SINK = '[[sinks]]\ntype = "log"\n'
FILE_SINK = '[[sinks]]\ntype = "file"\npath = "events.jsonl"\n'
DEFAULT_SINKS = f"{LOG_SINK}\n{FILE_SINK}"
"""A log sink and a file sink writing ``events.jsonl`` in the state directory."""


def simulator_endpoints(url: str, services: Iterable[str] = SERVICES) -> str:
    """The account line that places ``services`` at the simulator at ``url``,
    each under its own prefix (``{url}/evs``...; ECS stays at the root)."""
    entries = ", ".join(
        f'"{name}" = "{url}/{name}"' for name in services if name != DEFAULT_SERVICE
    )
    return f"endpoints = {{ {entries} }}\n"


def write_token(path: Path, token: str) -> Path:
    """An API token file as the daemon wants it (owner-only)."""
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def write_config(
    path: Path,
    *,
    endpoint: str,
    state_dir: Path,
    listen: str = "127.0.0.1:0",
    token_file: Path | None = None,
    project_id: str = DEFAULT_PROJECT_ID,
    concurrency: int = 32,
    min_interval: str = "100ms",
    max_interval: str = "400ms",
    not_found_grace: str = "1s",
    sinks: str = DEFAULT_SINKS,
    extra_daemon: str = "",
    extra_api: str = "",
    extra_account: str = "",
    extra_polling: str = "",
    extra: str = "",
) -> Path:
    """A daemon config tuned for tests: one account ``default`` (no auth) at
    ``endpoint``, fast polling, ``sinks`` (a log and a file sink by default).

    The ``extra_*`` texts go at the end of their table; ``extra`` (more tables)
    at the end of the file. Writing the same path again is how a test changes
    the config of a running daemon before a reload."""
    token = f'token_file = "{token_file}"\n' if token_file is not None else ""
    path.write_text(
        f"""
[daemon]
state_dir = "{state_dir}"
log_level = "info"
{extra_daemon}

[api]
listen = "{listen}"
{token}{extra_api}

[[accounts]]
name = "default"
endpoint = "{endpoint}"
project_id = "{project_id}"
auth = "none"
rate_limit = 2000
request_timeout = "2s"
{extra_account}

[polling]
concurrency = {concurrency}
initial_delay = "50ms"
min_interval = "{min_interval}"
max_interval = "{max_interval}"
multiplier = 1.5
jitter = 0.2
not_found_grace = "{not_found_grace}"
{extra_polling}

{sinks}
{extra}
"""
    )
    return path


def secret_file(path: Path, content: str) -> str:
    """A secret file (owner-only) holding ``content``; its path as text."""
    path.write_text(content + "\n")
    path.chmod(0o600)
    return str(path)


def write_accounts_config(path: Path, state_dir: Path, accounts: list[dict[str, Any]]) -> Path:
    """A fast-polling daemon config with these ``[[accounts]]`` and log + file sinks."""
    defaults = {"rate_limit": 2000, "request_timeout": "2s"}
    data = {
        "daemon": {"state_dir": str(state_dir), "log_level": "info"},
        "api": {"listen": "127.0.0.1:0"},
        "accounts": [defaults | account for account in accounts],
        "polling": {
            "concurrency": 32,
            "initial_delay": "50ms",
            "min_interval": "100ms",
            "max_interval": "400ms",
            "multiplier": 1.5,
            "jitter": 0.2,
            "not_found_grace": "1s",
        },
        "sinks": [{"type": "log"}, {"type": "file", "path": "events.jsonl"}],
    }
    path.write_text(tomli_w.dumps(data))
    return path
