"""Running as a system service: the systemd unit, sd_notify, reload, drain, metrics."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobwatchd.config import parse_duration
from jobwatchd.daemon import DRAIN_TIMEOUT
from jobwatchd.systemd import Notifier, notify_message, watchdog_interval
from tests.helpers import REPO
from tests.helpers.config import DEFAULT_SINKS, write_config
from tests.helpers.daemon import DaemonProcess
from tests.helpers.events import all_terminal, read_events
from tests.helpers.http import http
from tests.helpers.servers import RunningSimulator
from tests.helpers.waiting import wait_until

UNIT = REPO / "systemd" / "jobwatchd.service"


# -- the unit file ------------------------------------------------------------------


@pytest.fixture
def unit_for_this_machine(tmp_path: Path) -> Path:
    """The shipped unit with ExecStart pointing at this venv's console script,
    so `verify` can check the command exists."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing; `make test` installs systemd's tools")
    script = Path(sys.executable).parent / "jobwatchd"
    text = UNIT.read_text().replace("/opt/jobwatchd/bin/jobwatchd", str(script))
    path = tmp_path / "jobwatchd.service"
    path.write_text(text)
    return path


def test_unit_verifies(unit_for_this_machine: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit_for_this_machine)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_unit_exposure_is_at_most_1_5(unit_for_this_machine: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit_for_this_machine)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 1.5, result.stdout


def test_unit_declares_what_the_daemon_relies_on() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "DynamicUser=yes",
        "StateDirectory=jobwatchd",
        "RuntimeDirectory=jobwatchd",
        "ConfigurationDirectory=jobwatchd",
        "WatchdogSec=",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "StartLimitBurst=",
        "LimitNOFILE=",
        "IPAddressDeny=any",
    ):
        assert line in text, line


def _directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_unit_does_not_restart_a_startup_failure_in_a_loop() -> None:
    directives = _directives(UNIT.read_text())
    assert "2" in directives["RestartPreventExitStatus"][0].split()
    restart_sec = parse_duration(directives["RestartSec"][0], "RestartSec")
    assert restart_sec >= 5
    interval = parse_duration(directives["StartLimitIntervalSec"][0], "StartLimitIntervalSec")
    burst = int(directives["StartLimitBurst"][0])
    # the start limit must be reachable: burst restarts fit in the interval
    assert burst * restart_sec < interval


def test_unit_ip_allow_list_is_not_everything() -> None:
    allowed = " ".join(_directives(UNIT.read_text()).get("IPAddressAllow", [])).split()
    assert allowed, "IPAddressDeny=any without an allow list blocks loopback too"
    for everything in ("any", "0.0.0.0/0", "::/0"):
        assert everything not in allowed


def test_unit_file_limit_covers_the_api_connection_bound() -> None:
    limit = int(_directives(UNIT.read_text())["LimitNOFILE"][0].split(":")[0])
    # every API connection, the upstream pool per account, sinks and the store
    assert limit >= 2 * (1024 + 64)


# -- sd_notify ----------------------------------------------------------------------


def test_notify_messages_and_watchdog_settings() -> None:
    assert notify_message(READY=1, STATUS="ok") == b"READY=1\nSTATUS=ok"
    assert watchdog_interval({"WATCHDOG_USEC": "4000000"}, pid=10) == 2.0
    assert watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "11"}, pid=10) is None
    assert watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "10"}, pid=10) == 2.0
    assert watchdog_interval({}, pid=10) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, pid=10) is None
    assert Notifier({}).send(READY=1) is False


class NotifySocket:
    """A real AF_UNIX datagram socket standing in for systemd's."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[dict[str, str]] = []

    def pump(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                return self.messages
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.messages.append(fields)

    def wait_for(self, key: str, after: int = 0, timeout: float = 20) -> int:
        """Index of the first message from ``after`` on that carries ``key``."""

        def find() -> int | None:
            self.pump()
            for index in range(after, len(self.messages)):
                if key in self.messages[index]:
                    return index + 1  # truthy even for the first message
            return None

        return int(wait_until(find, timeout=timeout, what=f"sd_notify {key}")) - 1


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.sock.close()


def test_abstract_socket_address_is_supported(tmp_path: Path) -> None:
    name = f"jobwatchd-test-{os.getpid()}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind("\0" + name)
    receiver.settimeout(5)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.send(READY=1)
        assert receiver.recv(100) == b"READY=1"
        notifier.close()
    finally:
        receiver.close()


def start_notified(
    tmp_path: Path, sim: RunningSimulator, notify: NotifySocket, **config: Any
) -> DaemonProcess:
    path = write_config(
        tmp_path / "c.toml", endpoint=sim.url, state_dir=tmp_path / "state", **config
    )
    daemon = DaemonProcess(
        path, tmp_path, env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000"}
    )
    daemon.start()
    return daemon


def test_sd_notify_lifecycle(
    tmp_path: Path, threaded_simulator: RunningSimulator, notify_socket: NotifySocket
) -> None:
    daemon = start_notified(tmp_path, threaded_simulator, notify_socket)
    try:
        ready = notify_socket.wait_for("READY")
        # READY=1 comes only once the API answers.
        assert http("GET", f"{daemon.url}/healthz")[0] == 200
        assert "STATUS" in notify_socket.messages[ready]
        first_ping = notify_socket.wait_for("WATCHDOG", after=ready)
        notify_socket.wait_for("WATCHDOG", after=first_ping + 1)
        assert notify_socket.messages[first_ping]["WATCHDOG"] == "1"
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        reloading = notify_socket.wait_for("RELOADING", after=ready + 1)
        assert int(notify_socket.messages[reloading]["MONOTONIC_USEC"]) > 0
        notify_socket.wait_for("READY", after=reloading + 1)
        daemon.proc.send_signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING", after=reloading + 1)
        assert daemon.proc.wait(timeout=DRAIN_TIMEOUT + 10) == 0
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.proc.kill()


# -- reload -------------------------------------------------------------------------


def test_reload_applies_a_new_sink_and_polling_settings_while_jobs_run(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    sim = threaded_simulator.sim
    state = tmp_path / "state"
    daemon = start_daemon()
    config = daemon.config
    jobs = [sim.create_job("createServer", count=2, duration=300) for _ in range(10)]
    http("POST", f"{daemon.url}/v1/jobs", {"jobs": [{"job_id": j} for j in jobs]})
    wait_until(lambda: len(read_events(state / "events.jsonl")) >= 10, timeout=20)

    write_config(
        config,
        endpoint=threaded_simulator.url,
        state_dir=state,
        concurrency=8,
        sinks=DEFAULT_SINKS
        + '\n[[sinks]]\nname = "terminal"\ntype = "file"\npath = "terminal.jsonl"\n'
        "terminal_only = true\n",
        extra=f'\n[[accounts]]\nname = "other"\nendpoint = "{threaded_simulator.url}"\n'
        'project_id = "otherproject"\nauth = "none"\n',
    )
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: any(r.get("event") == "config.reloaded" for r in daemon.log_records()))

    wait_until(lambda: all_terminal(daemon, jobs), timeout=40)
    terminal = state / "terminal.jsonl"
    # the new sink starts from the oldest retained event: it gets every terminal event
    wait_until(
        lambda: {e["subject"] for e in read_events(terminal) if e["subject"] in jobs} == set(jobs),
        timeout=10,
    )
    assert all(e["data"]["terminal"] for e in read_events(terminal))
    _, ready, _ = http("GET", f"{daemon.url}/readyz")
    assert ready["reloads"] == 1
    assert ready["pollers"] == 8
    status, added, _ = http("POST", f"{daemon.url}/v1/jobs", {"job_id": "x1", "account": "other"})
    assert (status, added["account"], added["project_id"]) == (201, "other", "otherproject")
    assert set(ready["sinks"]) == {"log", "file", "terminal"}
    assert daemon.stop() == 0


def test_invalid_config_on_reload_keeps_the_running_one(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    state = tmp_path / "state"
    daemon = start_daemon()
    config = daemon.config
    write_config(config, endpoint=threaded_simulator.url, state_dir=state, min_interval="soon")
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    rejected = wait_until(
        lambda: [r for r in daemon.log_records() if r.get("event") == "config.reload_rejected"]
    )
    assert "polling.min_interval" in rejected[0]["error"]
    job = threaded_simulator.sim.create_job("resizeServer", duration=20)
    http("POST", f"{daemon.url}/v1/jobs", {"job_id": job})
    status, body, _ = http("GET", f"{daemon.url}/v1/jobs/{job}?wait=20")
    assert (status, body["status"]) == (200, "SUCCESS")
    _, ready, _ = http("GET", f"{daemon.url}/readyz")
    assert ready["reloads"] == 0
    assert daemon.stop() == 0


# -- drain --------------------------------------------------------------------------


def test_sigterm_drains_in_flight_polls_and_loses_nothing(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    sim = threaded_simulator.sim
    sim.faults.latency = 1.0  # every poll is in flight for a second
    state = tmp_path / "state"
    daemon = start_daemon()
    jobs = [sim.create_job("createServer", count=2, duration=150) for _ in range(12)]
    http("POST", f"{daemon.url}/v1/jobs", {"jobs": [{"job_id": j} for j in jobs]})
    wait_until(lambda: http("GET", f"{daemon.url}/readyz")[1]["polls_in_flight"] > 0, timeout=20)
    assert daemon.proc is not None
    stopped_at = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=DRAIN_TIMEOUT + 10) == 0
    drained = time.monotonic() - stopped_at
    records = daemon.log_records()
    assert any(r.get("event") == "daemon.draining" for r in records)
    assert not any(r.get("event") == "daemon.drain_timeout" for r in records), drained

    sim.faults.latency = 0.0
    daemon.start()

    wait_until(lambda: all_terminal(daemon, jobs), timeout=40)
    with sqlite3.connect(state / "jobwatchd.db") as db:
        recorded = {row[0] for row in db.execute("SELECT event_id FROM events")}
    wait_until(
        lambda: recorded <= {e["id"] for e in read_events(state / "events.jsonl")},
        timeout=10,
        what="every recorded event in the file sink",
    )
    terminal = {e["subject"] for e in read_events(state / "events.jsonl") if e["data"]["terminal"]}
    assert set(jobs) <= terminal
    assert daemon.stop() == 0


# -- metrics ------------------------------------------------------------------------


def scrape(daemon: DaemonProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``, parsed by prometheus_client's own parser."""
    with urllib.request.urlopen(f"{daemon.url}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_agree_with_what_happened(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    sim = threaded_simulator.sim
    state = tmp_path / "state"
    daemon = start_daemon()
    good = [sim.create_job("createServer", count=2, duration=40) for _ in range(5)]
    bad = [sim.create_job("deleteServer", count=1, fail=True, duration=40) for _ in range(3)]
    http("POST", f"{daemon.url}/v1/jobs", {"jobs": [{"job_id": j} for j in good + bad]})

    wait_until(lambda: all_terminal(daemon, good + bad), timeout=30)
    wait_until(
        lambda: scrape(daemon)[("jobwatchd_sink_backlog_events", (("sink", "file"),))] == 0,
        timeout=10,
    )
    events = read_events(state / "events.jsonl")
    samples = scrape(daemon)
    assert samples[("jobwatchd_jobs", (("status", "SUCCESS"),))] == 5
    assert samples[("jobwatchd_jobs", (("status", "FAIL"),))] == 3
    assert samples[("jobwatchd_registrations_total", ())] == 8
    transitions = sum(
        v for (name, _), v in samples.items() if name == "jobwatchd_transitions_total"
    )
    assert transitions == len(events)
    assert samples[("jobwatchd_sink_deliveries_total", (("sink", "file"),))] == len(events)
    ok_polls = samples[("jobwatchd_polls_total", (("account", "default"), ("outcome", "observed")))]
    assert ok_polls >= len(good) + len(bad)
    assert samples[("jobwatchd_poll_duration_seconds_count", (("account", "default"),))] >= ok_polls
    assert ("jobwatchd_event_loop_lag_seconds", ()) in samples
    assert daemon.stop() == 0


# -- logs ---------------------------------------------------------------------------


def test_daemon_logs_are_json_lines_with_the_usual_keys(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    daemon_factory: Callable[[Path], DaemonProcess],
) -> None:
    config = write_config(
        tmp_path / "c.toml", endpoint=threaded_simulator.url, state_dir=tmp_path / "s"
    )
    daemon = daemon_factory(config)
    daemon.start()
    job = threaded_simulator.sim.create_job("resizeServer", duration=20)
    http("POST", f"{daemon.url}/v1/jobs", {"job_id": job})
    http("GET", f"{daemon.url}/v1/jobs/{job}?wait=20")
    assert daemon.stop() == 0
    lines = daemon.log_path.read_bytes().splitlines()
    records = daemon.log_records()
    assert len(records) == len(lines), "every stdout line is one JSON object"
    iso = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z")
    for record in records:
        assert iso.fullmatch(record["timestamp"]), record
        assert record["level"] in {"debug", "info", "warning", "error"}
        assert record["logger"].startswith("jobwatchd.")
    transitions = [r for r in records if r["event"] == "job.transition"]
    assert transitions and all(r["job_id"] == job for r in transitions)
    registered = [r for r in records if r["event"] == "job.registered"]
    assert registered[0]["job_id"] == job


def test_console_rendering_on_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    import structlog  # noqa: PLC0415

    from jobwatchd.logs import configure_logging, get_logger  # noqa: PLC0415

    try:
        configure_logging("info", console=True)
        get_logger("jobwatchd.test").info("hello.world", job_id="abc")
        get_logger("jobwatchd.test").debug("hidden.at.info")
    finally:
        structlog.reset_defaults()
    out = capsys.readouterr().out
    assert "hello.world" in out and "job_id" in out and "abc" in out
    assert not out.lstrip().startswith("{"), "not JSON on a terminal"
    assert "hidden.at.info" not in out
