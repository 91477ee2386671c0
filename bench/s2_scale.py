"""Scenario 2: scale. Registration rate, RSS and restart-to-ready with many active jobs.

The simulator creates ``max(sizes)`` jobs (``resizeServer``, running for a
day) through its batch API. One daemon (default polling, the default rate
limit of 20 polls/s, a file sink) is then filled through ``POST /v1/jobs``
in batches of 10,000, one request at a time, up to each size in turn. At
each size:

- registration rate: jobs per second over that size's batches (and the
  median of the per-batch rates);
- RSS (VmRSS) once registration settled, and the peak (VmHWM);
- ``restarts`` times: ``kill -9``, start again, time until ``/readyz``
  answers 200 (the API serves, registrations are accepted, restored jobs
  are polled as they come back); the last restart also waits until every job
  is back in the schedule (``active_jobs`` = size) and reads RSS again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.common import (
    BenchError,
    Daemon,
    Http,
    Procs,
    Simulated,
    median,
    start_simulator,
    write_daemon,
)
from bench.profiling import Profile, record

BATCH = 10_000


class RestoreTimeout(BenchError):
    """The jobs were not all back within ``restore_timeout``."""


@dataclass(frozen=True)
class Params:
    """Sizes and repeats of scenario 2."""

    sizes: tuple[int, ...] = (100_000, 1_000_000)
    restarts: int = 3
    restore_timeout: float = 60.0
    profile_jobs: int = 50_000
    profile_seconds: float = 5.0


@dataclass
class Checkpoint:
    """Measurements at one size."""

    jobs: int
    registered: int = 0
    registration_seconds: float = 0.0
    registration_cpu: float = 0.0  # daemon CPU seconds while registering
    batch_rates: list[float] = field(default_factory=list)
    rss_mib: float = float("nan")
    hwm_mib: float = float("nan")
    ready_seconds: list[float] = field(default_factory=list)
    restore_seconds: float = float("nan")
    restored: int = 0  # jobs back in the schedule when the wait ended
    restore_waited: float = float("nan")  # seconds from the restart to then
    rss_after_restore_mib: float = float("nan")

    @property
    def rate(self) -> float:
        """Jobs per second over this size's registrations."""
        if not self.registration_seconds:
            return float("nan")
        return self.registered / self.registration_seconds

    def to_json(self) -> dict[str, Any]:
        """JSON-ready measurements."""
        return self.__dict__ | {
            "rate": self.rate,
            "median_batch_rate": median(self.batch_rates),
            "median_ready_seconds": median(self.ready_seconds),
        }


@dataclass
class Result:
    """Scenario 2's measurements."""

    params: Params
    checkpoints: list[Checkpoint] = field(default_factory=list)
    simulator_create_rate: float = float("nan")
    simulator_rss_mib: float = float("nan")
    registration_profile: Profile | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready results."""
        return {
            "params": self.params.__dict__,
            "checkpoints": [c.to_json() for c in self.checkpoints],
            "simulator_create_rate": self.simulator_create_rate,
            "simulator_rss_mib": self.simulator_rss_mib,
            "registration_profile": None
            if self.registration_profile is None
            else self.registration_profile.__dict__,
            "notes": self.notes,
        }


def _hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run(
    work: Path, http: Http, params: Params, log: Callable[[str], None], profile_dir: Path
) -> Result:
    """Run scenario 2."""
    result = Result(params)
    total = max(params.sizes) + params.profile_jobs
    with Procs(work) as procs:
        sim = await start_simulator(procs, http, speed=1.0)
        body = orjson.dumps({"jobs": [{"job_type": "resizeServer", "duration": 86_000}] * BATCH})
        ids: list[str] = []
        started = time.monotonic()
        while len(ids) < total:
            answer = await http.post(f"{sim.url}/_sim/jobs", raw=body)
            ids.extend(job["job_id"] for job in answer["jobs"])
        del ids[total:]
        extra = ids[max(params.sizes) :]
        del ids[max(params.sizes) :]
        result.simulator_create_rate = len(ids) / (time.monotonic() - started)
        result.simulator_rss_mib = sim.proc.rss_mib()
        log(
            f"  simulator: {len(ids):,} jobs at {result.simulator_create_rate:,.0f}/s, "
            f"RSS {result.simulator_rss_mib:,.0f} MiB"
        )
        daemon = write_daemon(procs, "jobwatchd", sim=sim, polling={}, rate_limit=20.0)
        daemon.start()
        await daemon.wait_ready(http)
        done = 0
        for size in sorted(params.sizes):
            point = Checkpoint(size)
            result.checkpoints.append(point)
            await _register(http, daemon, ids[done:size], point)
            done = size
            await asyncio.sleep(1.0)
            proc = daemon.running
            point.rss_mib, point.hwm_mib = proc.rss_mib(), _hwm_mib(proc.pid)
            log(
                f"  {size:>9,} jobs: registered at {point.rate:,.0f}/s, "
                f"RSS {point.rss_mib:,.0f} MiB (peak {point.hwm_mib:,.0f})"
            )
            for attempt in range(params.restarts):
                last = attempt == params.restarts - 1
                try:
                    await _restart(http, daemon, point, size, params, wait_restore=last)
                except RestoreTimeout as exc:
                    result.notes.append(str(exc))
            log(
                f"  {size:>9,} jobs: ready after kill -9 in {median(point.ready_seconds):.2f} s "
                f"(median of {len(point.ready_seconds)}); {point.restored:,} jobs back after "
                f"{point.restore_waited:.1f} s"
            )
        daemon.running.stop()
        if extra:
            result.registration_profile = await _profile_registration(
                procs, http, sim, extra, params, profile_dir / "profile-registration.txt"
            )
            if result.registration_profile.error:
                result.notes.append(result.registration_profile.error)
    return result


async def _register(http: Http, daemon: Daemon, ids: list[str], point: Checkpoint) -> None:
    bodies = [
        orjson.dumps({"jobs": [{"job_id": job_id} for job_id in ids[i : i + BATCH]]})
        for i in range(0, len(ids), BATCH)
    ]
    url = f"{daemon.url}/v1/jobs"
    cpu0 = daemon.running.cpu_seconds()
    started = time.monotonic()
    for body in bodies:
        t0 = time.monotonic()
        await http.post(url, raw=body)
        point.batch_rates.append(BATCH / (time.monotonic() - t0))
    point.registration_seconds = time.monotonic() - started
    point.registration_cpu = daemon.running.cpu_seconds() - cpu0
    point.registered = len(ids)


async def _restart(
    http: Http, daemon: Daemon, point: Checkpoint, size: int, params: Params, *, wait_restore: bool
) -> None:
    daemon.running.kill9()
    started = time.monotonic()
    proc = daemon.start()
    await daemon.wait_ready(http, timeout=120)
    point.ready_seconds.append(time.monotonic() - started)
    if not wait_restore:
        return
    deadline = started + params.restore_timeout
    while True:
        active = (await daemon.readiness(http))["active_jobs"]
        point.restored, point.restore_waited = active, time.monotonic() - started
        if active >= size:
            point.restore_seconds = point.restore_waited
            break
        proc.check_alive()
        if time.monotonic() > deadline:
            raise RestoreTimeout(
                f"{size:,} jobs: only {active:,} back in the schedule "
                f"{params.restore_timeout:.0f} s after the restart (the wait ends there)"
            )
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    point.rss_after_restore_mib = proc.rss_mib()


async def _profile_registration(
    procs: Procs, http: Http, sim: Simulated, ids: list[str], params: Params, out: Path
) -> Profile:
    """py-spy on a fresh daemon while it registers ``ids`` (not a measured figure)."""
    daemon = write_daemon(procs, "jobwatchd-profiled", sim=sim, polling={}, rate_limit=20.0)
    proc = daemon.start()
    await daemon.wait_ready(http)
    recording = asyncio.create_task(
        asyncio.to_thread(record, proc.pid, params.profile_seconds, out, 100)
    )
    await asyncio.sleep(0.3)
    try:
        await _register(http, daemon, ids, Checkpoint(len(ids)))
    finally:
        profile = await recording
        proc.stop()
    return profile
