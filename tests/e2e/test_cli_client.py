"""The real ``jobwatchd`` console script against a real daemon (a subprocess) and
the simulator: ``events`` with reconnect-and-resume, ``wait`` on a terminal and
across a restart, Unix sockets with and without a token, the token requirement
off loopback, and shell completion."""

from __future__ import annotations

import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from tests.helpers.cli import INSTALLED, Terminal
from tests.helpers.cli import cli as run_cli
from tests.helpers.config import write_config, write_token
from tests.helpers.daemon import DaemonProcess
from tests.helpers.events import read_events
from tests.helpers.servers import RunningSimulator
from tests.helpers.waiting import wait_until

JOBWATCHD = INSTALLED
TOKEN = "unix-socket-token-42"


def cli(
    *args: str, timeout: float = 60.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, timeout=timeout, env=env, command=JOBWATCHD)


class Lines:
    """A subprocess whose stdout lines are collected by a thread."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.errors), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _pump(stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line.rstrip("\n"))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=20)
        for thread in self._threads:
            thread.join(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return code


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory for Unix sockets (their paths are limited to ~100 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="jw-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def make_config(
    tmp_path: Path, endpoint: str, listen: str, token: bool = False, name: str = "c.toml"
) -> Path:
    return write_config(
        tmp_path / name,
        endpoint=endpoint,
        state_dir=tmp_path / "state",
        listen=listen,
        token_file=write_token(tmp_path / "api-token", TOKEN) if token else None,
    )


def unix_request(path: Path, target: str, token: str | None = None) -> int:
    """The status of a GET over a Unix socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        sock.sendall(f"GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode())
        head = sock.recv(64).decode()
    return int(head.split()[1])


def cloud_event_ids(path: Path) -> list[str]:
    """The file sink's event ids, first occurrences, in order."""
    seen: dict[str, None] = {}
    for event in read_events(path):
        seen.setdefault(event["id"], None)
    return list(seen)


def test_unix_socket_without_token(
    tmp_path: Path,
    short_dir: Path,
    threaded_simulator: RunningSimulator,
    daemon_factory: Callable[[Path], DaemonProcess],
) -> None:
    sock = short_dir / "api.sock"
    config = make_config(tmp_path, threaded_simulator.url, f"unix:{sock}")
    daemon = daemon_factory(config)
    assert daemon.start() == f"unix:{sock}"
    mode = sock.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
    assert unix_request(sock, "/v1/jobs") == 200

    job = threaded_simulator.sim.create_job("createServer", count=2, duration=30)
    api = ["--api", f"unix:{sock}"]
    done = cli("register", job, "--wait", "--timeout", "30", *api)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{job} SUCCESS sub-jobs 2/2" in done.stdout
    # Without --api the client finds the socket in the config.
    status = cli("status", job, "--json", "-c", str(config))
    assert status.returncode == 0, status.stderr
    assert orjson.loads(status.stdout)["status"] == "SUCCESS"

    listed = cli("events", "--json", *api)
    assert listed.returncode == 0, listed.stderr
    printed = [orjson.loads(line) for line in listed.stdout.splitlines()]
    sink = tmp_path / "state" / "events.jsonl"
    wait_until(lambda: len(read_events(sink)) >= len(printed), 20, what="the file sink")
    assert [event["id"] for event in printed] == cloud_event_ids(sink)
    assert printed == read_events(sink)

    mine = cli("events", "--job", job, *api).stdout.splitlines()
    assert len(mine) == len(printed)  # the only job: its events and its sub-jobs'
    assert [line.split()[0] for line in mine] == [str(n) for n in range(1, len(mine) + 1)]
    later = cli("events", "--job", job, "--since", mine[0].split()[0], *api)
    assert later.stdout.splitlines() == mine[1:]
    parents = cli("events", "--job", job, "--type", "jobwatchd.job.transition", *api)
    lines = parents.stdout.splitlines()
    assert lines and all(f" job {job} " in line for line in lines)
    assert lines[-1].endswith("-> SUCCESS")
    assert cli("events", "--since", "soon", *api).returncode == 2


def test_unix_socket_with_token(
    tmp_path: Path,
    short_dir: Path,
    threaded_simulator: RunningSimulator,
    daemon_factory: Callable[[Path], DaemonProcess],
) -> None:
    sock = short_dir / "api.sock"
    config = make_config(tmp_path, threaded_simulator.url, f"unix:{sock}", token=True)
    daemon_factory(config).start()
    assert unix_request(sock, "/v1/jobs") == 401
    assert unix_request(sock, "/v1/jobs", "wrong") == 401
    assert unix_request(sock, "/v1/jobs", TOKEN) == 200
    assert unix_request(sock, "/healthz") == 200
    assert unix_request(sock, "/v1/events?follow=false") == 401

    job = threaded_simulator.sim.create_job("deleteServer", count=1, duration=30)
    api = ["--api", f"unix:{sock}"]
    refused = cli("register", job, *api)
    assert refused.returncode == 2 and "token" in refused.stderr
    refused = cli("events", *api)
    assert refused.returncode == 2 and "token" in refused.stderr

    token_file = tmp_path / "api-token"
    registered = cli("register", job, *api, "--token-file", str(token_file))
    assert registered.returncode == 0, registered.stderr
    # -c gives both the socket and the token file.
    waited = cli("wait", job, "--timeout", "30", "--json", "-c", str(config))
    assert waited.returncode == 0, waited.stderr
    assert [j["job"]["status"] for j in orjson.loads(waited.stdout)["jobs"]] == ["SUCCESS"]
    events = cli("events", "--json", "-c", str(config))
    assert events.returncode == 0 and events.stdout.count('"specversion"') >= 2


def test_listening_off_loopback_needs_a_token(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    daemon_factory: Callable[[Path], DaemonProcess],
) -> None:
    open_config = make_config(tmp_path, threaded_simulator.url, "0.0.0.0:0", name="open.toml")
    refused = cli("run", "-c", str(open_config), timeout=30)
    assert refused.returncode == 2
    assert "api.token_file" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1

    config = make_config(tmp_path, threaded_simulator.url, "0.0.0.0:0", token=True)
    address = daemon_factory(config).start()
    assert address.startswith("0.0.0.0:")
    api = ["--api", address]
    assert cli("list", *api).returncode == 2
    listed = cli("list", "--json", *api, "--token-file", str(tmp_path / "api-token"))
    assert listed.returncode == 0 and orjson.loads(listed.stdout) == []


def test_events_follow_resumes_after_the_daemon_restarts(
    tmp_path: Path,
    short_dir: Path,
    threaded_simulator: RunningSimulator,
    daemon_factory: Callable[[Path], DaemonProcess],
) -> None:
    sock = short_dir / "api.sock"
    daemon = daemon_factory(make_config(tmp_path, threaded_simulator.url, f"unix:{sock}"))
    daemon.start()
    sim = threaded_simulator.sim
    api = ["--api", f"unix:{sock}"]
    sink = tmp_path / "state" / "events.jsonl"
    first = sim.create_job("createServer", count=2, duration=30)
    assert cli("register", first, "--wait", "--timeout", "30", *api).returncode == 0

    follower = Lines([*JOBWATCHD, "events", "--follow", "--json", *api])
    try:
        history = cli("events", "--json", *api).stdout.splitlines()
        assert history
        wait_until(lambda: len(follower.lines) >= len(history), 20, what="the history printed")

        daemon.kill()  # no goodbye: the client has to notice and reconnect
        wait_until(lambda: any("reconnecting" in e for e in follower.errors), 20, what="retry")
        daemon.start()
        second = sim.create_job("addNics", count=3, duration=30)
        assert cli("register", second, "--wait", "--timeout", "30", *api).returncode == 0
        wait_until(
            lambda: (
                any(f'"subject":"{second}"' in line for line in follower.lines)
                and len(follower.lines) >= len(cloud_event_ids(sink))
            ),
            20,
            what="the second job's events after the restart",
        )
    finally:
        code = follower.stop()
    assert code in (0, 130), follower.errors
    printed = [orjson.loads(line)["id"] for line in follower.lines]
    assert printed == cloud_event_ids(sink), "every event once, in order, across the restart"
    assert len(printed) == len(set(printed))


def test_wait_on_a_terminal_shows_progress_and_keeps_exit_codes(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    daemon_factory: Callable[[Path], DaemonProcess],
) -> None:
    address = daemon_factory(make_config(tmp_path, threaded_simulator.url, "127.0.0.1:0")).start()
    sim = threaded_simulator.sim
    api = ["--api", address]
    ok = sim.create_job("createServer", count=3, duration=40)
    bad = sim.create_job("createServer", count=2, fail=True, duration=30)
    slow = sim.create_job("deleteServer", duration=5000)
    assert cli("register", ok, bad, slow, "--label", "team=tty", *api).returncode == 0

    success = Terminal([*JOBWATCHD, "wait", ok, "--timeout", "30", *api])
    assert success.wait() == 0, success.output
    assert "SUB-JOBS" in success.output and "ELAPSED" in success.output  # the live table
    assert ok in success.output and "SUCCESS" in success.output and "3/3" in success.output

    failed = Terminal([*JOBWATCHD, "wait", ok, bad, "--timeout", "30", *api])
    assert failed.wait() == 1, failed.output
    assert "FAIL" in failed.output and "Ecs." in failed.output

    timed_out = Terminal([*JOBWATCHD, "wait", slow, "--timeout", "0.5", *api])
    assert timed_out.wait() == 124, timed_out.output
    assert "timed out" in timed_out.output

    unknown = Terminal([*JOBWATCHD, "wait", "never-registered", *api])
    assert unknown.wait() == 2 and "not tracked" in unknown.output

    table = Terminal([*JOBWATCHD, "list", "--label", "team=tty", *api])
    assert table.wait() == 0
    assert "JOB" in table.output and "STATUS" in table.output and "3 jobs" in table.output
    detail = Terminal([*JOBWATCHD, "status", bad, *api])
    assert detail.wait() == 0
    assert "history" in detail.output and "fail_reason" in detail.output


def test_wait_rides_out_a_daemon_restart(
    tmp_path: Path,
    short_dir: Path,
    threaded_simulator: RunningSimulator,
    daemon_factory: Callable[[Path], DaemonProcess],
) -> None:
    sock = short_dir / "api.sock"
    daemon = daemon_factory(make_config(tmp_path, threaded_simulator.url, f"unix:{sock}"))
    daemon.start()
    job = threaded_simulator.sim.create_job("createServer", count=2, duration=400)
    api = ["--api", f"unix:{sock}"]
    assert cli("register", job, *api).returncode == 0
    waiting = Terminal([*JOBWATCHD, "wait", job, "--timeout", "60", *api])
    # The live line shows a status once the stream is open and the job was read.
    wait_until(lambda: "RUNNING" in waiting.output or "INIT" in waiting.output, 20, what="live")
    daemon.kill()
    daemon.start()
    assert waiting.wait() == 0, waiting.output
    assert "reconnecting" in waiting.output and "SUCCESS" in waiting.output


def test_shell_completion(tmp_path: Path) -> None:
    code = cli("completion", "bash")
    assert code.returncode == 0 and "jobwatchd" in code.stdout and "complete" in code.stdout
    out = tmp_path / "completions"
    line = "jobwatchd ev"
    completed = cli(
        env={
            "_ARGCOMPLETE": "1",
            "_ARGCOMPLETE_SHELL": "bash",
            "COMP_LINE": line,
            "COMP_POINT": str(len(line)),
            "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
        }
    )
    assert completed.returncode == 0, completed.stderr
    assert "events" in out.read_text().split()
    line = "jobwatchd events --fo"
    cli(
        env={
            "_ARGCOMPLETE": "1",
            "_ARGCOMPLETE_SHELL": "bash",
            "COMP_LINE": line,
            "COMP_POINT": str(len(line)),
            "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
        }
    )
    assert out.read_text().split() == ["--follow"]
