"""Scenario 5: poll throughput of a fleet, 1 vs 3 instances on one PostgreSQL.

One simulator (speed 1) holds ``jobs`` running jobs (``createServer`` with two
sub-jobs, RUNNING for a day), as in scenario 1. A throwaway PostgreSQL server
(:mod:`tests.helpers.pg`: Debian's binaries, ``initdb`` into a temporary directory,
fsync off) holds the fleet's store. For each repeat, and for N = 1 and N = 3
(the order alternates between repeats), N daemons start on a fresh database
(``store = "postgresql://..."``, ``lease`` as configured, intervals of 1 ms,
no rate limit, no auth), all the jobs are registered through the first
instance, and the suite waits until the instances' ``/readyz`` ``active_jobs``
add up to the job count (the fleet claimed every job), every job was
polled about once (the first observations are recorded) and the sink
delivered every event of those (``jobwatchd_sink_backlog_events`` is 0:
a window that overlapped that delivery would measure it, not polling,
which is what an earlier version of this scenario did). After ``warmup``
seconds, a window of ``window`` seconds is measured: polls = the sum of the
``/readyz`` ``polls`` deltas of the instances (cross-checked against the
simulator's count), CPU from /proc of the daemons, of the simulator and of
every process of the PostgreSQL cluster. Then the instances are stopped and
the database dropped.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    Daemon,
    Http,
    Procs,
    Simulated,
    cpu_seconds,
    median,
    start_simulator,
    write_daemon,
)
from tests.helpers import pg

SIZES = (1, 3)


@dataclass(frozen=True)
class Params:
    """Size and duration of scenario 5."""

    jobs: int = 10_000
    concurrency: int = 64
    lease: float = 15.0
    warmup: float = 2.0
    window: float = 5.0
    repeats: int = 3
    claim_timeout: float = 120.0


@dataclass
class Window:
    """One measured window of one fleet size."""

    instances: int
    repeat: int
    seconds: float
    polls: int
    sim_polls: int
    cpu: float
    sim_cpu: float
    db_cpu: float
    held: list[int]
    claim_seconds: float

    @property
    def rate(self) -> float:
        """Aggregate polls per second."""
        return self.polls / self.seconds

    @property
    def cpu_per_1000(self) -> float:
        """Daemon CPU seconds (all instances) per 1,000 polls."""
        return 1000 * self.cpu / self.polls if self.polls else float("nan")

    @property
    def db_cpu_per_1000(self) -> float:
        """PostgreSQL CPU seconds per 1,000 polls."""
        return 1000 * self.db_cpu / self.polls if self.polls else float("nan")


@dataclass
class Result:
    """Scenario 5's measurements."""

    params: Params
    windows: list[Window] = field(default_factory=list)
    postgres: str = ""
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[int, dict[str, float]]:
        """Per fleet size: medians of polls/s, CPU per 1,000 polls, spread."""
        out: dict[int, dict[str, float]] = {}
        for size in SIZES:
            mine = [w for w in self.windows if w.instances == size]
            if not mine:
                continue
            out[size] = {
                "polls_per_second": median(w.rate for w in mine),
                "sim_polls_per_second": median(w.sim_polls / w.seconds for w in mine),
                "cpu_per_1000": median(w.cpu_per_1000 for w in mine),
                "db_cpu_per_1000": median(w.db_cpu_per_1000 for w in mine),
                "sim_cpu_per_1000": median(
                    1000 * w.sim_cpu / w.polls if w.polls else float("nan") for w in mine
                ),
                "daemon_cores": median(w.cpu / w.seconds for w in mine),
                "db_cores": median(w.db_cpu / w.seconds for w in mine),
                "sim_cores": median(w.sim_cpu / w.seconds for w in mine),
                "held_min": float(min(min(w.held) for w in mine)),
                "held_max": float(max(max(w.held) for w in mine)),
                "claim_seconds": median(w.claim_seconds for w in mine),
                "repeats": float(len(mine)),
            }
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON-ready results."""
        return {
            "params": self.params.__dict__,
            "postgres": self.postgres,
            "summary": {str(k): v for k, v in self.summary().items()},
            "windows": [
                w.__dict__ | {"rate": w.rate, "cpu_per_1000": w.cpu_per_1000} for w in self.windows
            ],
            "notes": self.notes,
        }


def cluster_cpu(server: pg.PostgresServer) -> float:
    """CPU seconds of the cluster's postmaster and its children (backends, workers)."""
    try:
        postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            if pid == postmaster or int(stat[1]) == postmaster:
                total += cpu_seconds(pid)
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
    return total


async def _readiness(http: Http, daemons: Sequence[Daemon]) -> list[dict[str, Any]]:
    for daemon in daemons:
        daemon.running.check_alive()
    return list(await asyncio.gather(*(d.readiness(http) for d in daemons)))


async def _wait_claimed(
    http: Http, daemons: Sequence[Daemon], jobs: int, timeout: float
) -> list[dict[str, Any]]:
    """Wait until the fleet holds every job, polled each about once, and
    delivered the events of those first observations (a window that overlaps
    the delivery of that backlog measures delivery, not polling)."""
    deadline = time.monotonic() + timeout
    while True:
        bodies = await _readiness(http, daemons)
        held = sum(int(b["active_jobs"]) for b in bodies)
        polls = sum(int(b["polls"]) for b in bodies)
        backlog = -1
        if held >= jobs and polls >= 1.2 * jobs:
            backlog = sum(await asyncio.gather(*(d.sink_backlog(http) for d in daemons)))
            if backlog == 0:
                return bodies
        if time.monotonic() > deadline:
            raise BenchError(
                f"{len(daemons)} instance(s) hold {held} of {jobs} jobs after {timeout}s "
                f"({polls} polls, sink backlog {backlog})"
            )
        await asyncio.sleep(0.2)


async def _one_fleet(
    work: Path,
    http: Http,
    params: Params,
    server: pg.PostgresServer,
    sim: Simulated,
    ids: list[str],
    size: int,
    repeat: int,
) -> Window:
    database = await asyncio.to_thread(server.create_database)
    polling = {
        "concurrency": params.concurrency,
        "initial_delay": 0,
        "min_interval": 0.001,
        "max_interval": 0.001,
        "multiplier": 1.0,
        "jitter": 0.0,
        "adaptive": False,
    }
    extra = {"store": server.dsn(database), "lease": f"{params.lease:g}s"}
    try:
        with Procs(work) as procs:
            daemons = [
                write_daemon(
                    procs,
                    f"fleet{size}-r{repeat + 1}-node{n + 1}",
                    sim=sim,
                    polling=polling,
                    daemon_extra=extra,
                )
                for n in range(size)
            ]
            for daemon in daemons:
                daemon.start()
            await asyncio.gather(*(d.wait_ready(http) for d in daemons))
            began = time.monotonic()
            await daemons[0].register(http, ids)
            await _wait_claimed(http, daemons, len(ids), params.claim_timeout)
            claim_seconds = time.monotonic() - began
            await asyncio.sleep(params.warmup)
            procs_ = [d.running for d in daemons]
            before = await _readiness(http, daemons)
            sim0 = await sim.ok_count(http)
            cpu0 = sum(p.cpu_seconds() for p in procs_)
            simcpu0, db0, t0 = sim.proc.cpu_seconds(), cluster_cpu(server), time.monotonic()
            await asyncio.sleep(params.window)
            after = await _readiness(http, daemons)
            sim1 = await sim.ok_count(http)
            cpu1 = sum(p.cpu_seconds() for p in procs_)
            simcpu1, db1, t1 = sim.proc.cpu_seconds(), cluster_cpu(server), time.monotonic()
            polls = sum(
                int(a["polls"]) - int(b["polls"]) for a, b in zip(after, before, strict=True)
            )
            held = [int(a["active_jobs"]) for a in after]
            if sum(held) != len(ids):
                raise BenchError(
                    f"{size} instance(s) held {held} (sum != {len(ids)}) after the window"
                )
    finally:
        await asyncio.to_thread(server.drop_database, database)
    return Window(
        size,
        repeat,
        t1 - t0,
        polls,
        sim1 - sim0,
        cpu1 - cpu0,
        simcpu1 - simcpu0,
        db1 - db0,
        held,
        claim_seconds,
    )


async def run(work: Path, http: Http, params: Params, log: Callable[[str], None]) -> Result:
    """Run scenario 5."""
    result = Result(params)
    with Procs(work) as procs, pg.postgres_server() as server:
        result.postgres = server.psql("SHOW server_version").strip()
        sim = await start_simulator(procs, http, speed=1.0)
        spec = {"job_type": "createServer", "count": 2, "duration": 86_000}
        ids = await sim.create(http, [spec] * params.jobs)
        for repeat in range(params.repeats):
            order = SIZES if repeat % 2 == 0 else SIZES[::-1]
            for size in order:
                window = await _one_fleet(work, http, params, server, sim, ids, size, repeat)
                result.windows.append(window)
                log(
                    f"  {size} instance(s) repeat {repeat + 1}: {window.rate:7.0f} polls/s, "
                    f"{window.cpu_per_1000:.3f} daemon CPU s / 1,000 polls, "
                    f"{window.db_cpu_per_1000:.3f} PostgreSQL CPU s / 1,000 polls, "
                    f"held {window.held}"
                )
    return result
