"""Several daemons sharing one PostgreSQL store: leases, takeover, no duplicates."""

from __future__ import annotations

import asyncio
import random
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from tests.helpers.config import write_config
from tests.helpers.daemon import DaemonProcess
from tests.helpers.events import all_terminal, assert_chain_consistent, job_chains, read_events
from tests.helpers.http import http
from tests.helpers.servers import RunningSimulator
from tests.helpers.waiting import wait_until

LEASE = 2.0


def fleet_config(
    tmp_path: Path, name: str, dsn: str, sim: RunningSimulator, events_file: Path
) -> Path:
    """One instance's config: its own state dir, the shared store and file sink."""
    return write_config(
        tmp_path / f"{name}.toml",
        endpoint=sim.url,
        state_dir=tmp_path / name,
        sinks=f'[[sinks]]\ntype = "file"\npath = "{events_file}"\n',
        extra_daemon=f'store = "{dsn}"\nlease = "{LEASE}s"\n',
    )


def recorded_events(dsn: str) -> list[dict[str, Any]]:
    """Every CloudEvent in the shared log, in sequence order."""

    async def fetch() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch("SELECT payload FROM events ORDER BY seq")
        finally:
            await conn.close()
        return [orjson.loads(bytes(row["payload"])) for row in rows]

    return asyncio.run(fetch())


def instance_id(daemon: DaemonProcess) -> str:
    """The fleet instance id a daemon logged."""
    found = wait_until(
        lambda: [r["instance"] for r in daemon.log_records() if r.get("event") == "fleet.joined"],
        timeout=20,
    )
    return str(found[0])


def held_by(dsn: str, instance: str) -> int:
    """Active jobs whose lease ``instance`` holds (expired or not)."""

    async def count() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            held = await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE NOT terminal AND lease_owner = $1", instance
            )
        finally:
            await conn.close()
        return int(held)

    return asyncio.run(count())


def assert_each_transition_once(events: list[dict[str, Any]]) -> None:
    ids = [event["id"] for event in events]
    assert len(ids) == len(set(ids)), "an event recorded twice"
    for subject, chain in job_chains(events).items():
        assert_chain_consistent(chain, subject)
        assert len(chain) == len(set(chain)), f"{subject}: a transition recorded twice"


def test_three_instances_share_1000_jobs_and_survive_a_kill(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    postgres_database: str,
    daemon_factory: Callable[[Path], DaemonProcess],
) -> None:
    sim = threaded_simulator.sim
    events_file = tmp_path / "shared-events.jsonl"
    daemons = [
        daemon_factory(
            fleet_config(tmp_path, f"node{n}", postgres_database, threaded_simulator, events_file)
        )
        for n in range(3)
    ]
    for daemon in daemons:
        daemon.start()
    rng = random.Random(5)
    jobs = [
        sim.create_job(
            rng.choice(["createServer", "deleteServer", "addNics"]),
            count=rng.randint(1, 2),
            fail=rng.random() < 0.2,
            duration=rng.uniform(300, 900),
        )
        for _ in range(1000)
    ]
    for n, daemon in enumerate(daemons):  # registered across the three instances
        batch = [{"job_id": job} for job in jobs[n::3]]
        status, _, _ = http("POST", f"{daemon.url}/v1/jobs", {"jobs": batch})
        assert status == 201
    wait_until(lambda: len(read_events(events_file)) >= 300, timeout=60, what="some events")
    victim, survivors = daemons[1], [daemons[0], daemons[2]]
    victim_id = instance_id(victim)
    assert held_by(postgres_database, victim_id) > 0, "the victim holds jobs when it dies"
    killed_at = time.monotonic()
    victim.kill()
    wait_until(
        lambda: held_by(postgres_database, victim_id) == 0,
        timeout=LEASE + 10,
        interval=0.05,
        what="the survivors taking the victim's jobs over",
    )
    takeover = time.monotonic() - killed_at

    # a long-poll on one instance sees a job end wherever it is polled
    status, waited, _ = http("GET", f"{survivors[0].url}/v1/jobs/{jobs[2]}?wait=60", timeout=70)
    assert (status, waited["terminal"]) == (200, True)
    wait_until(lambda: all_terminal(survivors[0], jobs), timeout=120, what="every job terminal")
    events = recorded_events(postgres_database)
    assert_each_transition_once(events)
    terminal_jobs = {
        e["subject"]
        for e in events
        if e["type"] == "jobwatchd.job.transition" and e["data"]["terminal"]
    }
    assert terminal_jobs == set(jobs)
    # the event stream of any instance serves the whole shared log
    history = f"{survivors[1].url}/v1/events?after=0&follow=false"
    with urllib.request.urlopen(history, timeout=30) as resp:
        streamed = [
            line.split(b":", 1)[1].strip()
            for line in resp.read().splitlines()
            if line.startswith(b"data:")
        ]
    assert [orjson.loads(data)["id"] for data in streamed] == [e["id"] for e in events]
    wait_until(
        lambda: {e["id"] for e in events} <= {e["id"] for e in read_events(events_file)},
        timeout=30,
        what="every recorded event in the shared file sink",
    )
    delivered = read_events(events_file)
    first_seen: dict[str, dict[str, Any]] = {}
    for event in delivered:
        assert first_seen.setdefault(event["id"], event) == event, "a duplicate is a redelivery"
    # per-job order in the sink is the recording order
    order = {event["id"]: index for index, event in enumerate(events)}
    per_job: dict[str, list[int]] = {}
    for event in first_seen.values():
        per_job.setdefault(event["data"].get("parent_job_id") or event["subject"], []).append(
            order[event["id"]]
        )
    assert all(seqs == sorted(seqs) for seqs in per_job.values())

    print(f"takeover after kill -9: {takeover:.2f}s (lease {LEASE}s)")
    assert takeover < LEASE + 5, "a dead instance's jobs are taken over within a bounded time"
    for survivor in survivors:
        assert survivor.stop() == 0


def test_a_paused_instance_cannot_record_a_duplicate_after_resuming(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    postgres_database: str,
    daemon_factory: Callable[[Path], DaemonProcess],
) -> None:
    sim = threaded_simulator.sim
    events_file = tmp_path / "shared-events.jsonl"
    first = daemon_factory(
        fleet_config(tmp_path, "a", postgres_database, threaded_simulator, events_file)
    )
    first.start()
    jobs = [sim.create_job("createServer", count=2, duration=600) for _ in range(30)]
    http("POST", f"{first.url}/v1/jobs", {"jobs": [{"job_id": job} for job in jobs]})
    wait_until(lambda: len(read_events(events_file)) >= 30, timeout=30, what="first observations")
    sim.faults.latency = 0.5  # polls are in flight when the instance freezes
    wait_until(lambda: http("GET", f"{first.url}/readyz")[1]["polls_in_flight"] > 0, timeout=10)
    assert first.proc is not None
    first.proc.send_signal(signal.SIGSTOP)
    try:
        second = daemon_factory(
            fleet_config(tmp_path, "b", postgres_database, threaded_simulator, events_file)
        )
        second.start()
        sim.faults.latency = 0.0
        # The second instance takes every job over once the leases expire, and sees them end.
        wait_until(lambda: all_terminal(second, jobs), timeout=60, what="every job terminal")
    finally:
        first.proc.send_signal(signal.SIGCONT)
    # The first instance wakes with stale answers in flight; it must not record them.
    wait_until(
        lambda: any(
            r.get("event") in ("job.lease_lost", "job.vanished") for r in first.log_records()
        ),
        timeout=30,
        what="the stale instance noticing it lost its leases",
    )
    assert_each_transition_once(recorded_events(postgres_database))
    assert first.stop() == 0
    assert second.stop() == 0
