"""Store faults and re-registration against the real daemon: nothing is lost,
nothing fails silently."""

from __future__ import annotations

import sqlite3
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import (
    DaemonProcess,
    RunningSimulator,
    http,
    read_events,
    wait_until,
    write_config,
)


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


def test_a_cancelled_job_registered_again_is_tracked_to_the_end(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    daemon_factory: Callable[[Path], DaemonProcess],
) -> None:
    job_id = threaded_simulator.sim.create_job("createServer", count=2, duration=400)
    state = tmp_path / "state"
    config = write_config(tmp_path / "c.toml", endpoint=threaded_simulator.url, state_dir=state)
    daemon = daemon_factory(config)
    daemon.start()
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
    state = tmp_path / "state"
    config = write_config(tmp_path / "c.toml", endpoint=threaded_simulator.url, state_dir=state)
    daemon = daemon_factory(config)
    daemon.start()
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
