"""Every service's job API end to end: the daemon as a subprocess polls the
simulator, each job at its own service's host prefix and path, reads each answer
format, and records the same ordered transitions as the simulator made; and each
service's rate limit holds on its own, counted by the simulator."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobwatchd.cloud.simulated_formats import SERVICE_SPECS
from jobwatchd.cloud.simulator import (
    DEFAULT_PROJECT_ID,
    SERVICE_JOB_TYPES,
    Simulator,
    max_in_window,
)
from jobwatchd.models import TERMINAL_STATUSES
from jobwatchd.services import SERVICES
from tests.helpers.config import (
    secret_file,
    simulator_endpoints,
    write_accounts_config,
    write_config,
)
from tests.helpers.daemon import DaemonProcess
from tests.helpers.events import all_terminal, check_against_simulator, read_events
from tests.helpers.http import http
from tests.helpers.servers import simulator_in_thread
from tests.helpers.waiting import wait_until

AK, SK = "AKSERVICES0000001", "sk-services-never-logged"
PROGRESS_FORMATS = frozenset({"ims", "rds", "rds-list"})
"""Answer formats that report a percentage done."""


def sub_jobs_of(service: str) -> int:
    """How many sub-jobs the service's first job type takes (1 where it has none)."""
    spec = SERVICE_SPECS[service][SERVICE_JOB_TYPES[service][0]]
    return 2 if spec.sub_job_type is not None else 1


def job_object(daemon: DaemonProcess, job_id: str) -> dict[str, Any]:
    status, body, _ = http("GET", f"{daemon.url}/v1/jobs/{job_id}")
    assert status == 200, body
    assert isinstance(body, dict)
    return body


def test_a_mixed_batch_is_polled_at_each_services_path_in_its_format(
    tmp_path: Path, daemon_factory: Callable[[Path], DaemonProcess]
) -> None:
    """One registration holding a succeeding and a failing job of every service:
    each is polled only under its own service's prefix, every request signed
    with AK/SK for the host, path and query it goes to (the simulator verifies
    each), read in its format; its events match the simulator's true
    transitions, sub-jobs included."""
    sim = Simulator(speed=40, seed=31, credentials={AK: SK})
    with simulator_in_thread(sim) as cloud:
        config = write_accounts_config(
            tmp_path / "c.toml",
            tmp_path / "state",
            [
                {
                    "name": "default",
                    "endpoint": cloud.url,
                    "endpoints": {
                        name: f"{cloud.url}/{name}" for name in SERVICES if name != "ecs"
                    },
                    "project_id": DEFAULT_PROJECT_ID,
                    "auth": "aksk",
                    "ak_file": secret_file(tmp_path / "ak", AK),
                    "sk_file": secret_file(tmp_path / "sk", SK),
                }
            ],
        )
        daemon = daemon_factory(config)
        daemon.start()
        jobs: dict[str, list[str]] = {}
        for index, service in enumerate(SERVICES):
            count = sub_jobs_of(service)
            jobs[service] = [
                sim.create_job(service=service, count=count, duration=60.0 + 4 * index),
                sim.create_job(service=service, count=count, duration=80.0, fail=True),
            ]
        batch = [{"job_id": job, "service": name} for name, ids in jobs.items() for job in ids]
        status, body, _ = http("POST", f"{daemon.url}/v1/jobs", {"jobs": batch})
        assert status == 201, body
        assert body["created"] == len(batch)
        every = [job_id for ids in jobs.values() for job_id in ids]
        wait_until(lambda: all_terminal(daemon, every), timeout=60, what="every job terminal")
        finals = {job_id: job_object(daemon, job_id) for job_id in every}
        assert daemon.stop() == 0

    for service, (succeeding, failing) in jobs.items():
        assert (finals[succeeding]["service"], finals[succeeding]["status"]) == (service, "SUCCESS")
        assert (finals[failing]["service"], finals[failing]["status"]) == (service, "FAIL")
        counts = sim.service_stats[service]
        assert counts["ok"] > 0, service
        assert counts["unknown_job"] == 0, f"{service}: a job was asked for at another path"
        if sub_jobs_of(service) > 1:
            progress = finals[succeeding]["progress"]
            assert (progress["sub_jobs_done"], progress["sub_jobs_total"]) == (2, 2), service
    assert sim.stats["unauthorized"] == 0, "every signature verified"
    assert sim.stats["unknown_job"] == 0

    events = read_events(tmp_path / "state" / "events.jsonl")
    check_against_simulator(events, sim, every)
    service_of = {job_id: name for name, ids in jobs.items() for job_id in ids}
    percentages: dict[str, list[object]] = {}
    for event in events:
        data = event["data"]
        owner = data.get("parent_job_id") or data["job_id"]
        assert data["service"] == service_of[owner]
        assert event["source"] == f"/jobwatchd/default/{service_of[owner]}"
        if "parent_job_id" not in data and data["to"] not in TERMINAL_STATUSES:
            percentages.setdefault(service_of[owner], []).append(data["progress"])
    for service, seen in percentages.items():
        reported = [value for value in seen if value is not None]
        if SERVICES[service].answer_format in PROGRESS_FORMATS:
            assert reported, f"{service} reports progress, but no event carried it"
            assert all(isinstance(value, float) and 0 <= value <= 100 for value in reported)
        else:
            assert reported == [], f"{service} has no percentage, yet events carried one"


def test_each_services_rate_limit_holds_on_its_own(
    tmp_path: Path, daemon_factory: Callable[[Path], DaemonProcess]
) -> None:
    """ECS, EVS and CCE jobs of one account, EVS limited to 4 polls a second and
    CCE to 2: the simulator never sees more in a second than the limit plus its
    burst, while ECS, unlimited, is polled far more often."""
    sim = Simulator(speed=1, seed=32)
    with simulator_in_thread(sim) as cloud:
        config = write_config(
            tmp_path / "c.toml",
            endpoint=cloud.url,
            state_dir=tmp_path / "state",
            min_interval="50ms",
            max_interval="50ms",
            extra_account=simulator_endpoints(cloud.url, ["evs", "cce"])
            + "rate_limits = { evs = 4, cce = 2 }\n",
        )
        daemon = daemon_factory(config)
        daemon.start()
        batch = [
            {"job_id": sim.create_job(service=service, duration=3000.0), "service": service}
            for service in ("ecs", "evs", "cce")
            for _ in range(10)
        ]
        status, body, _ = http("POST", f"{daemon.url}/v1/jobs", {"jobs": batch})
        assert status == 201, body
        wait_until(
            lambda: len(sim.arrivals["cce"]) >= 8 and len(sim.arrivals["evs"]) >= 16,
            timeout=30,
            what="several seconds of EVS and CCE polls",
        )
        assert daemon.stop() == 0

    # A token bucket lets through its burst (the rate) at once, then the rate.
    assert max_in_window(sim.arrivals["evs"], 1.0) <= 4 + 4
    assert max_in_window(sim.arrivals["cce"], 1.0) <= 2 + 2
    assert max_in_window(sim.arrivals["ecs"], 1.0) > 8 + 4
    assert sim.service_stats["evs"]["ok"] == len(sim.arrivals["evs"])


def test_the_simulated_run_tracks_an_ecs_an_evs_and_a_cce_job(tmp_path: Path) -> None:
    """``jobwatchd run --simulate`` (what ``make run`` starts): the demo jobs of the
    in-process simulator are tracked from the start, one per service shown, and
    each is answered at its own service's path."""
    config = write_config(tmp_path / "c.toml", endpoint="http://127.0.0.1:9", state_dir=tmp_path)
    daemon = DaemonProcess(config, tmp_path, args=["--simulate", "--simulator-port", "0"])
    try:
        daemon.start()

        def demo_jobs() -> dict[str, dict[str, Any]] | None:
            status, body, _ = http("GET", f"{daemon.url}/v1/jobs?label=demo=simulated")
            assert status == 200, body
            jobs = {job["service"]: job for job in body["jobs"]}
            return jobs if len(jobs) == 3 else None

        jobs = wait_until(demo_jobs, timeout=20, what="the demo jobs tracked")
        assert set(jobs) == {"ecs", "evs", "cce"}

        def observed() -> bool:
            found = demo_jobs() or {}
            return all(job["status"] != "PENDING" for job in found.values())

        wait_until(observed, timeout=20, what="each demo job answered by its service")
        started = next(r for r in daemon.log_records() if r.get("event") == "simulator.started")
        assert {job["service"] for job in started["demo_jobs"]} == {"ecs", "evs", "cce"}
        assert daemon.stop() == 0
    finally:
        daemon.reap()
