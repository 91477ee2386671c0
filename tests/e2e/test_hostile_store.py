"""Store faults and re-registration against the real daemon: nothing is lost,
nothing fails silently."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jobwatchd.models import NewJob
from jobwatchd.store.sqlite import SQLiteStore
from tests.helpers import pg
from tests.helpers.cli import cli
from tests.helpers.config import write_config
from tests.helpers.daemon import DaemonProcess
from tests.helpers.events import read_events
from tests.helpers.http import http
from tests.helpers.servers import RunningSimulator
from tests.helpers.waiting import wait_until


def _job(daemon: DaemonProcess, job_id: str) -> dict[str, Any]:
    status, body, _ = http("GET", f"{daemon.url}/v1/jobs/{job_id}")
    assert status == 200, body
    assert isinstance(body, dict)
    return body


def _metric(daemon: DaemonProcess, name: str) -> float:
    with urllib.request.urlopen(f"{daemon.url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def _started(
    tmp_path: Path, sim: RunningSimulator, factory: Callable[[Path], DaemonProcess]
) -> tuple[DaemonProcess, Path]:
    """A daemon on SQLite polling ``sim``, started; and its state directory."""
    state = tmp_path / "state"
    daemon = factory(write_config(tmp_path / "c.toml", endpoint=sim.url, state_dir=state))
    daemon.start()
    return daemon, state


def test_a_cancelled_job_registered_again_is_tracked_to_the_end(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    daemon_factory: Callable[[Path], DaemonProcess],
) -> None:
    job_id = threaded_simulator.sim.create_job("createServer", count=2, duration=400)
    daemon, state = _started(tmp_path, threaded_simulator, daemon_factory)
    status, _, _ = http("POST", f"{daemon.url}/v1/jobs", {"job_id": job_id})
    assert status == 201
    wait_until(lambda: _job(daemon, job_id)["history"], timeout=20, what="first observation")
    status, _, _ = http("DELETE", f"{daemon.url}/v1/jobs/{job_id}")
    assert status == 204
    status, _, _ = http("POST", f"{daemon.url}/v1/jobs", {"job_id": job_id})
    assert status == 201
    wait_until(lambda: _job(daemon, job_id)["status"] == "SUCCESS", timeout=30, what="job SUCCESS")
    job = _job(daemon, job_id)
    assert job["last_error"] is None
    assert job["history"][0]["from"] is None, "the new registration starts a new history"
    assert not [r for r in daemon.log_records() if r.get("event") == "store.write_failed"]
    events = wait_until(
        lambda: (
            [e for e in read_events(state / "events.jsonl") if e["data"]["to"] == "SUCCESS"]
            and read_events(state / "events.jsonl")
        ),
        timeout=10,
        what="events in the file sink",
    )
    ids = [event["id"] for event in events]
    assert len(ids) == len(set(ids)), "event ids repeat across registrations"
    first_observations = [e for e in events if e["subject"] == job_id and e["data"]["from"] is None]
    assert len(first_observations) == 2, "both registrations' first transitions are delivered"
    assert daemon.stop() == 0


def test_a_store_write_failing_during_a_poll_is_visible_and_recovers(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    daemon_factory: Callable[[Path], DaemonProcess],
) -> None:
    job_id = threaded_simulator.sim.create_job("createServer", count=1, duration=300)
    daemon, state = _started(tmp_path, threaded_simulator, daemon_factory)
    status, _, _ = http("POST", f"{daemon.url}/v1/jobs", {"job_id": job_id})
    assert status == 201
    # Another process holds the write lock: every write of the daemon times out.
    holder = sqlite3.connect(state / "jobwatchd.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")

        def refused() -> dict[str, Any] | None:
            status, body, _ = http("GET", f"{daemon.url}/readyz")
            return body if status == 503 else None

        ready = wait_until(refused, timeout=40, what="/readyz 503 while the store fails")
        assert ready["store"]["status"] == "failing"
        assert "locked" in ready["store"]["last_error"]
        job = _job(daemon, job_id)
        assert job["status"] == "PENDING"
        assert job["last_error"]["code"] == "STORE_WRITE_FAILED"
        assert "locked" in job["last_error"]["message"]
        assert _metric(daemon, "jobwatchd_store_write_failures_total") >= 1
        failures = [r for r in daemon.log_records() if r.get("event") == "store.write_failed"]
        assert failures and failures[0]["job_id"] == job_id
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # Nothing lost: the job is observed again and every transition recorded.
    wait_until(lambda: _job(daemon, job_id)["status"] == "SUCCESS", timeout=30, what="job SUCCESS")
    assert http("GET", f"{daemon.url}/readyz")[0] == 200
    assert [r for r in daemon.log_records() if r.get("event") == "store.recovered"]
    history = _job(daemon, job_id)["history"]
    assert history[0]["from"] is None and history[-1]["to"] == "SUCCESS"
    assert daemon.stop() == 0


def _start_failure(tmp_path: Path, config: Path) -> tuple[int, str]:
    result = cli("run", "-c", str(config), cwd=tmp_path)
    return result.returncode, result.stderr


def _garbage_db(state: Path) -> None:
    state.mkdir()
    (state / "jobwatchd.db").write_bytes(b"this is not a database" * 100)


def _header_only_db(state: Path) -> None:
    state.mkdir()
    (state / "jobwatchd.db").write_bytes(b"SQLite format 3\x00")


def _db_is_a_directory(state: Path) -> None:
    (state / "jobwatchd.db").mkdir(parents=True)


def _state_dir_is_a_file(state: Path) -> None:
    state.write_text("")


@pytest.mark.parametrize(
    ("prepare", "cause"),
    [
        (_garbage_db, "jobwatchd.db is not usable"),
        (_header_only_db, "jobwatchd.db is not usable"),
        (_db_is_a_directory, "jobwatchd.db"),
        (_state_dir_is_a_file, "is not a directory"),
    ],
)
def test_a_bad_state_dir_or_database_is_one_line_and_exit_2(
    tmp_path: Path, prepare: Callable[[Path], None], cause: str
) -> None:
    state = tmp_path / "state"
    prepare(state)
    config = write_config(tmp_path / "c.toml", endpoint="http://127.0.0.1:9", state_dir=state)
    code, stderr = _start_failure(tmp_path, config)
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("jobwatchd: cannot start: ") and cause in lines[0], stderr


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(
            tmp_path / "c.toml",
            endpoint="http://127.0.0.1:9",
            state_dir=tmp_path / "state",
            listen=f"127.0.0.1:{port}",
        )
        code, stderr = _start_failure(tmp_path, config)
    assert code == 2, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert "address already in use" in stderr and "api.listen" in stderr, stderr


@contextlib.contextmanager
def _world_readable_dir() -> Iterator[Path]:
    """A directory another user can reach (pytest's tmp_path is private to us)."""
    root = Path(tempfile.mkdtemp(prefix="jobwatchd-startup-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _small_filesystem(where: Path, *, read_only: bool = False) -> Iterator[Path]:
    """A 64 KiB tmpfs at ``where``: filled up, or remounted read-only."""
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        (where / "state").mkdir()
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        else:
            with contextlib.suppress(OSError), open(where / "fill", "wb") as fill:
                while True:
                    fill.write(b"\0" * 4096)
        yield where / "state"
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _without_root_file_access() -> list[str]:
    """A command prefix under which even root obeys file permissions (the
    interpreter may live in a private home, so switching users is no option)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop root's file access")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", "--"]


@pytest.mark.parametrize(
    ("case", "cause"),
    [
        ("unwritable", "is not writable by this user"),
        ("read-only", "on a read-only filesystem"),
        ("full", "no space left on the filesystem holding daemon.state_dir"),
    ],
)
def test_a_state_dir_that_cannot_be_written_is_one_line_and_exit_2(case: str, cause: str) -> None:
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(_world_readable_dir())
        prefix: list[str] = []
        if case == "unwritable":
            state = root / "state"
            state.mkdir()
            state.chmod(0o555)
            prefix = _without_root_file_access()
        else:
            state = stack.enter_context(
                _small_filesystem(root / "fs", read_only=case == "read-only")
            )
        config = write_config(root / "c.toml", endpoint="http://127.0.0.1:9", state_dir=state)
        config.chmod(0o644)
        result = subprocess.run(
            [*prefix, sys.executable, "-m", "jobwatchd", "run", "-c", str(config)],
            capture_output=True,
            cwd=root,
            timeout=60,
            check=False,
        )
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("jobwatchd: cannot start: "), stderr
    assert cause in lines[0] and str(state) in lines[0], stderr


def test_postgresql_down_at_start_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(
        tmp_path / "c.toml",
        endpoint="http://127.0.0.1:9",
        state_dir=tmp_path / "state",
        extra_daemon=f'store = "postgresql://jobwatchd:hunter2@127.0.0.1:{port}/jobs"',
    )
    code, stderr = _start_failure(tmp_path, config)
    assert code == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert "PostgreSQL at" in lines[0] and "unreachable" in lines[0], stderr
    assert "hunter2" not in stderr


def test_a_registration_the_store_refuses_gets_503_with_retry_after(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    daemon_factory: Callable[[Path], DaemonProcess],
) -> None:
    job_id = threaded_simulator.sim.create_job("createServer", count=1, duration=100)
    daemon, state = _started(tmp_path, threaded_simulator, daemon_factory)
    holder = sqlite3.connect(state / "jobwatchd.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        status, body, headers = http("POST", f"{daemon.url}/v1/jobs", {"job_id": job_id})
        assert status == 503, body
        assert headers["Content-Type"].startswith("application/problem+json")
        assert int(headers["Retry-After"]) > 0
        assert "locked" in body["detail"]
        status, ready, _ = http("GET", f"{daemon.url}/readyz")
        assert status == 503 and ready["store"]["status"] == "failing"
        assert not [r for r in daemon.log_records() if r.get("event") == "api.error"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # Nothing half-stored: the retry registers it, and it is tracked to the end.
    status, _, _ = http("POST", f"{daemon.url}/v1/jobs", {"job_id": job_id})
    assert status == 201
    wait_until(lambda: _job(daemon, job_id)["status"] == "SUCCESS", timeout=30, what="job SUCCESS")
    wait_until(
        lambda: http("GET", f"{daemon.url}/readyz")[0] == 200, timeout=20, what="ready again"
    )
    assert daemon.stop() == 0


async def test_sqlite_reads_are_not_queued_behind_a_waiting_write(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "jobwatchd.db")
    await store.open()
    try:
        job = NewJob(job_id="seen", project_id="p1", account="default", labels={})
        await store.register([job], 1.0)
        holder = sqlite3.connect(tmp_path / "jobwatchd.db", isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            other = NewJob(job_id="blocked", project_id="p1", account="default", labels={})
            writing = asyncio.create_task(store.register([other], 2.0))
            await asyncio.sleep(0)  # let the write reach the writer thread
            found = await store.get_job("seen")
            # The write still waits for the lock another process holds: the
            # read did not queue behind it.
            assert found is not None and not writing.done()
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        registered = await writing
        assert [r.created for r in registered] == [True]
    finally:
        await store.close()


def test_a_postgresql_outage_under_a_fleet_daemon_is_waited_out(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    with pg.postgres_server() as server:
        dsn = server.dsn(server.create_database())
        state = tmp_path / "state"
        daemon = start_daemon(extra_daemon=f'store = "{dsn}"\nlease = "2s"\n')
        before = threaded_simulator.sim.create_job("createServer", count=1, duration=200)
        assert http("POST", f"{daemon.url}/v1/jobs", {"job_id": before})[0] == 201
        wait_until(lambda: _job(daemon, before)["history"], timeout=20, what="first observation")

        server.pause()
        try:

            def refused() -> dict[str, Any] | None:
                status, body, _ = http("GET", f"{daemon.url}/readyz")
                return body if status == 503 else None

            ready = wait_until(refused, timeout=30, what="/readyz 503 while PostgreSQL is down")
            assert ready["store"]["status"] == "failing"
            assert "PostgreSQL" in ready["store"]["last_error"]
            during = threaded_simulator.sim.create_job("createServer", count=1, duration=50)
            status, body, headers = http("POST", f"{daemon.url}/v1/jobs", {"job_id": during})
            assert status == 503, body
            assert int(headers["Retry-After"]) > 0
            assert http("GET", f"{daemon.url}/v1/jobs/{before}")[0] == 503
            assert daemon.proc is not None and daemon.proc.poll() is None, "the daemon exited"
        finally:
            server.resume()

        wait_until(
            lambda: http("GET", f"{daemon.url}/readyz")[0] == 200, timeout=40, what="ready again"
        )
        assert http("POST", f"{daemon.url}/v1/jobs", {"job_id": during})[0] == 201
        for job_id in (before, during):

            def succeeded(job_id: str = job_id) -> bool:
                return bool(_job(daemon, job_id)["status"] == "SUCCESS")

            wait_until(succeeded, timeout=60, what=f"{job_id} SUCCESS")
        # Every transition reached the sink, once the store was back.
        events = wait_until(
            lambda: (
                len(
                    [e for e in read_events(state / "events.jsonl") if e["data"]["to"] == "SUCCESS"]
                )
                >= 2
                and read_events(state / "events.jsonl")
            ),
            timeout=30,
            what="both SUCCESS events in the file sink",
        )
        assert {e["subject"] for e in events if e["data"]["to"] == "SUCCESS"} >= {before, during}
        assert not [r for r in daemon.log_records() if r.get("event") == "poll.crashed"]
        assert daemon.stop() == 0
