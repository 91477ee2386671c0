"""The daemon under test: in-process (:func:`running_daemon`, in the test's
event loop) or as a ``jobwatchd run`` subprocess (:class:`DaemonProcess`)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from jobwatchd.config import load_config
from jobwatchd.daemon import Daemon
from tests.helpers.config import FILE_SINK, write_config, write_token
from tests.helpers.servers import RunningSimulator
from tests.helpers.waiting import wait_until


@dataclass
class InProcessDaemon:
    """A running in-process daemon, a client session and the API's base URL."""

    daemon: Daemon
    session: aiohttp.ClientSession
    url: str
    sim: RunningSimulator

    async def call(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None
    ) -> tuple[int, Any, str]:
        """``method path`` with a JSON ``body`` (or ``raw`` bytes): (status,
        decoded body, content type)."""
        payload = raw if raw is not None else (None if body is None else orjson.dumps(body))
        data = None if payload is None else io.BytesIO(payload)
        async with self.session.request(method, self.url + path, data=data) as resp:
            content = await resp.read()
            return resp.status, (orjson.loads(content) if content else None), resp.content_type


@contextlib.asynccontextmanager
async def running_daemon(
    tmp_path: Path,
    sim: RunningSimulator,
    *,
    sinks: str = FILE_SINK,
    token: str | None = None,
    listen: str = "127.0.0.1:0",
    extra_api: str = "",
    extra_account: str = "",
    extra: str = "",
    prepare: Callable[[Daemon], None] | None = None,
) -> AsyncIterator[InProcessDaemon]:
    """A daemon polling ``sim``, its config ``tmp_path/c.toml`` and its state in
    ``tmp_path/state``, running in this event loop until the block ends; then
    it must stop cleanly (exit 0).

    ``token`` is written to ``tmp_path/token`` and required by the API;
    ``prepare`` sees the daemon before it runs."""
    token_file = write_token(tmp_path / "token", token) if token is not None else None
    config = write_config(
        tmp_path / "c.toml",
        endpoint=sim.url,
        state_dir=tmp_path / "state",
        listen=listen,
        token_file=token_file,
        sinks=sinks,
        extra_api=extra_api,
        extra_account=extra_account,
        extra=extra,
    )
    daemon = Daemon(load_config(config))
    if prepare is not None:
        prepare(daemon)
    task = asyncio.create_task(daemon.run())
    try:
        async with asyncio.timeout(10):
            await daemon.ready.wait()
        async with aiohttp.ClientSession() as session:
            yield InProcessDaemon(daemon, session, f"http://{daemon.address}", sim)
    finally:
        daemon.stop_requested.set()
        assert await asyncio.wait_for(task, 20) == 0


class DaemonProcess:
    """``jobwatchd run`` in a subprocess, stdout captured to a file."""

    def __init__(
        self,
        config: Path,
        workdir: Path,
        *,
        env: dict[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.config = config
        self.workdir = workdir
        self.env = env
        self.args = tuple(args)
        """More arguments of ``jobwatchd run``."""
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
                [sys.executable, "-m", "jobwatchd", "run", "-c", str(self.config), *self.args],
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

    def reap(self) -> None:
        """Kill the process if it still runs (a test's cleanup)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
