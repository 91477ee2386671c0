"""End to end: the real daemon as a subprocess against the simulator on a real socket."""

from __future__ import annotations

import random
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from jobwatchd.cloud.simulator import DEFAULT_PROJECT_ID, Simulator
from tests.helpers.daemon import DaemonProcess
from tests.helpers.events import all_terminal, assert_chain_consistent, job_chains, read_events
from tests.helpers.http import http
from tests.helpers.servers import RunningSimulator
from tests.helpers.waiting import wait_until

MULTI_SUB_JOB_TYPES = ("createServer", "deleteServer", "batchRebootServer", "addNics")


def create_jobs(
    sim: Simulator, count: int, rng: random.Random, *, duration: tuple[float, float]
) -> dict[str, bool]:
    """``count`` jobs with 1-3 sub-jobs, about a fifth failing; job_id -> fails."""
    jobs = {}
    for _ in range(count):
        fails = rng.random() < 0.2
        job_id = sim.create_job(
            rng.choice(MULTI_SUB_JOB_TYPES),
            count=rng.randint(1, 3),
            fail=fails,
            duration=rng.uniform(*duration),
        )
        jobs[job_id] = fails
    return jobs


def register_batch(daemon: DaemonProcess, job_ids: list[str]) -> None:
    status, body, _ = http(
        "POST", f"{daemon.url}/v1/jobs", {"jobs": [{"job_id": j} for j in job_ids]}
    )
    assert status == 201, body
    assert body["created"] == len(job_ids)


def sim_statuses(sim: Simulator, job_id: str) -> dict[str, list[str]]:
    """Subject -> the statuses it really went through, in order."""
    by_subject: dict[str, list[str]] = {}
    for transition in sim.transitions(job_id):
        by_subject.setdefault(transition.job_id, []).append(transition.to)
    return by_subject


def is_subsequence(observed: list[str], actual: list[str]) -> bool:
    remaining = iter(actual)
    return all(status in remaining for status in observed)


def check_events_against_simulator(
    events: list[dict[str, Any]], sim: Simulator, jobs: dict[str, bool]
) -> None:
    """Every job and sub-job: a consistent chain, only real transitions, the
    right terminal status, and sub-job terminal events before the parent's."""
    chains = job_chains(events)
    first_index: dict[str, int] = {}
    for index, event in enumerate(events):
        first_index.setdefault(event["id"], index)
    for job_id, fails in jobs.items():
        actual = sim_statuses(sim, job_id)
        assert set(actual) <= set(chains), f"missing sub-job events for {job_id}"
        for subject, statuses in actual.items():
            chain = chains[subject]
            assert_chain_consistent(chain, subject)
            observed = [to for _, to in chain]
            assert is_subsequence(observed, statuses), (subject, observed, statuses)
            assert observed[-1] == statuses[-1], (
                f"{subject} ended {observed[-1]}, not {statuses[-1]}"
            )
        assert chains[job_id][-1][1] == ("FAIL" if fails else "SUCCESS")
        parent_terminal = max(
            i for i, e in enumerate(events) if e["subject"] == job_id and e["data"]["terminal"]
        )
        for event in events:
            if (
                event["type"] == "jobwatchd.subjob.transition"
                and event["data"]["parent_job_id"] == job_id
                and event["data"]["terminal"]
            ):
                assert first_index[event["id"]] < parent_terminal, "sub-job ended after its parent"


def test_batch_of_100_jobs_arrives_in_order(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    sim = threaded_simulator.sim
    jobs = create_jobs(sim, 100, random.Random(1), duration=(40, 120))
    state = tmp_path / "state"
    daemon = start_daemon()
    register_batch(daemon, list(jobs))
    wait_until(lambda: all_terminal(daemon, list(jobs)), timeout=60, what="all jobs terminal")
    events_path = state / "events.jsonl"
    expected = {e["id"] for e in read_events(events_path)}
    # the log sink shows the same transitions, one JSON line each
    wait_until(
        lambda: expected <= {r.get("event_id") for r in daemon.log_records()},
        timeout=10,
        what="log sink lines",
    )
    assert daemon.stop() == 0
    events = read_events(events_path)
    ids = [event["id"] for event in events]
    assert len(ids) == len(set(ids)), "a clean run delivers each event once"
    check_events_against_simulator(events, sim, jobs)
    for event in events:
        assert event["specversion"] == "1.0"
        assert event["source"] == "/jobwatchd/default/ecs"
        assert event["data"]["project_id"] == DEFAULT_PROJECT_ID
    # finished jobs taught each job type's duration model, kept for the next start
    with sqlite3.connect(state / "jobwatchd.db") as db:
        learned = dict(db.execute("SELECT job_type, model FROM duration_models").fetchall())
    assert set(learned) == set(MULTI_SUB_JOB_TYPES)
    assert sum(orjson.loads(model)["count"] for model in learned.values()) == len(jobs)


def test_kill_9_mid_run_loses_nothing(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    sim = threaded_simulator.sim
    jobs = create_jobs(sim, 60, random.Random(2), duration=(150, 400))
    state = tmp_path / "state"
    daemon = start_daemon()
    register_batch(daemon, list(jobs))
    events_path = state / "events.jsonl"
    wait_until(lambda: len(read_events(events_path)) >= 40, timeout=30, what="some events")
    assert not all_terminal(daemon, list(jobs)), "the crash must come mid-run"
    daemon.kill()

    daemon.start()
    wait_until(lambda: all_terminal(daemon, list(jobs)), timeout=60, what="all jobs terminal")
    with sqlite3.connect(state / "jobwatchd.db") as db:
        recorded = {row[0] for row in db.execute("SELECT event_id FROM events")}
    wait_until(
        lambda: recorded <= {e["id"] for e in read_events(events_path)},
        timeout=10,
        what="every recorded event in the file sink",
    )
    assert daemon.stop() == 0
    events = read_events(events_path)
    by_id: dict[str, dict[str, Any]] = {}
    for event in events:
        # a duplicate is only ever a redelivery of the very same event
        assert by_id.setdefault(event["id"], event) == event
    assert recorded == set(by_id)
    check_events_against_simulator(events, sim, jobs)


def test_faulty_upstream_changes_nothing_but_pace(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    sim = threaded_simulator.sim
    jobs = create_jobs(sim, 20, random.Random(3), duration=(30, 80))
    sim.faults.error_5xx = 0.25
    sim.faults.throttle = 0.10
    sim.faults.retry_after = 0.2  # rounded up to a whole second on the wire
    sim.faults.malformed = 0.05
    state = tmp_path / "state"
    daemon = start_daemon()
    register_batch(daemon, list(jobs))
    wait_until(lambda: all_terminal(daemon, list(jobs)), timeout=120, what="all jobs terminal")
    status, _, _ = http("GET", f"{daemon.url}/readyz")
    assert status == 200, "daemon alive"
    assert sim.stats["5xx"] > 0 and sim.stats["429"] > 0 and sim.stats["malformed"] > 0
    logged = {record.get("event") for record in daemon.log_records()}
    assert {"poll.failed", "account.throttled"} <= logged
    assert daemon.stop() == 0
    check_events_against_simulator(read_events(state / "events.jsonl"), sim, jobs)


@pytest.mark.parametrize(
    ("registration", "expected"),
    [
        ({"job_id": "0" * 32}, "NOT_FOUND"),  # unknown upstream: Common.0011 past the grace
        (None, "TIMEOUT"),  # a long job with a short per-job timeout
        ("rejected", "ERROR"),  # another 400, three times in a row
    ],
)
def test_daemon_decided_terminal_statuses(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    start_daemon: Callable[..., DaemonProcess],
    registration: dict[str, Any] | str | None,
    expected: str,
) -> None:
    if registration is None:
        long_job = threaded_simulator.sim.create_job("createServer", duration=3000)
        registration = {"job_id": long_job, "timeout": 0.5}
    elif registration == "rejected":
        threaded_simulator.sim.faults.rejected = 1.0
        registration = {"job_id": threaded_simulator.sim.create_job("createServer")}
    assert isinstance(registration, dict)
    state = tmp_path / "state"
    daemon = start_daemon()
    status, _, _ = http("POST", f"{daemon.url}/v1/jobs", registration)
    assert status == 201
    job_id = registration["job_id"]
    status, job, _ = http("GET", f"{daemon.url}/v1/jobs/{job_id}?wait=20")
    assert status == 200
    assert job["status"] == expected
    assert job["terminal"] is True
    assert job["history"][-1]["to"] == expected
    if expected == "ERROR":
        assert job["polls"] == 3
        assert job["last_error"]["http_status"] == 400
    events = wait_until(
        lambda: [
            e
            for e in read_events(state / "events.jsonl")
            if e["subject"] == job_id and e["data"]["terminal"]
        ],
        timeout=10,
    )
    assert events[-1]["data"]["to"] == expected
    assert daemon.stop() == 0


def test_sighup_reopens_the_file_sink_for_logrotate(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    sim = threaded_simulator.sim
    state = tmp_path / "state"
    daemon = start_daemon()
    events_path = state / "events.jsonl"
    before = sim.create_job("resizeServer", duration=20)
    http("POST", f"{daemon.url}/v1/jobs", {"job_id": before})
    wait_until(lambda: all_terminal(daemon, [before]), timeout=20)
    wait_until(lambda: any(e["data"]["terminal"] for e in read_events(events_path)), timeout=10)
    rotated = events_path.with_suffix(".jsonl.1")
    events_path.rename(rotated)
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(
        lambda: any(r.get("event") == "config.reloaded" for r in daemon.log_records()),
        timeout=10,
    )
    after = sim.create_job("resizeServer", duration=20)
    http("POST", f"{daemon.url}/v1/jobs", {"job_id": after})
    wait_until(lambda: all_terminal(daemon, [after]), timeout=20)
    wait_until(lambda: any(e["data"]["terminal"] for e in read_events(events_path)), timeout=10)
    assert {e["subject"] for e in read_events(events_path)} == {after}
    assert {e["subject"] for e in read_events(rotated)} == {before}
    assert daemon.stop() == 0


def test_terminal_jobs_are_purged_after_retention(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    state = tmp_path / "state"
    daemon = start_daemon(extra_polling='retention = "1s"')
    job_id = threaded_simulator.sim.create_job("resizeServer", duration=20)
    http("POST", f"{daemon.url}/v1/jobs", {"job_id": job_id})
    status, job, _ = http("GET", f"{daemon.url}/v1/jobs/{job_id}?wait=20")
    assert (status, job["status"]) == (200, "SUCCESS")
    wait_until(
        lambda: http("GET", f"{daemon.url}/v1/jobs/{job_id}")[0] == 404,
        timeout=15,
        what="purge",
    )
    assert any(r.get("event") == "store.purged" for r in daemon.log_records())
    # the file sink had every event before the purge removed them from the log
    assert any(e["data"]["terminal"] for e in read_events(state / "events.jsonl"))
    assert daemon.stop() == 0
