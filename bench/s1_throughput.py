"""Scenario 1: poll throughput ceiling, against the raw stack and the vendor SDK.

One simulator (speed 1) holds ``jobs`` running jobs (``createServer`` with
two sub-jobs, which stay RUNNING for a day). Four contenders poll them, each
in its own process, all at the same concurrency:

- ``raw aiohttp``: :func:`bench.clients.raw_loop`, the stack's ceiling;
- ``jobwatchd (AK/SK)``: the daemon, signing every request as against the
  real cloud, intervals of 1 ms, no rate limit;
- ``jobwatchd (auth none)``: the same without signing;
- ``jobwatchd (mixed services)``: the same, polling as many jobs spread over
  every service of the catalogue (each at its own path under the simulator's
  ``/{service}`` prefix, read in its own format; two sub-jobs where the format
  has them), to compare its CPU per poll with ECS alone;
- ``vendor SDK``: :func:`bench.clients.sdk_loop`.

All four are started up front and frozen (SIGSTOP) outside their windows, so
only one polls at a time; the order rotates each repeat. A window is
``warmup`` seconds after SIGCONT, then ``window`` seconds measured: polls =
the simulator's count of answered job queries, CPU from /proc of the
contender (and of the simulator). Both daemons are primed first (every job
observed once, so the measured windows record no transitions: pure polling).

The daemon signing with AK/SK is then profiled with py-spy for
``profile_seconds``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    PYTHON,
    BenchError,
    Daemon,
    Http,
    Proc,
    Procs,
    median,
    start_simulator,
    write_daemon,
)
from bench.profiling import Profile, record
from jobwatchd.cloud.simulated_formats import SERVICE_SPECS
from jobwatchd.cloud.simulator import SERVICE_JOB_TYPES
from jobwatchd.services import SERVICES

RAW = "raw aiohttp loop"
JW_AKSK = "jobwatchd (AK/SK signed)"
JW_NONE = "jobwatchd (no auth)"
JW_MIXED = "jobwatchd (mixed services, no auth)"
SDK = "vendor SDK (huaweicloudsdkecs)"
CONTENDERS = (RAW, JW_AKSK, JW_NONE, JW_MIXED, SDK)


@dataclass(frozen=True)
class Params:
    """Size and duration of scenario 1."""

    jobs: int = 10_000
    concurrency: int = 64
    warmup: float = 2.0
    window: float = 8.0
    repeats: int = 3
    profile_seconds: float = 10.0


@dataclass
class Window:
    """One measured window of one contender."""

    contender: str
    repeat: int
    seconds: float
    polls: int
    cpu: float
    sim_cpu: float

    @property
    def rate(self) -> float:
        """Polls per second."""
        return self.polls / self.seconds

    @property
    def cpu_per_1000(self) -> float:
        """Contender CPU seconds per 1,000 polls."""
        return 1000 * self.cpu / self.polls if self.polls else float("nan")


@dataclass
class Result:
    """Scenario 1's measurements."""

    params: Params
    windows: list[Window] = field(default_factory=list)
    profile: Profile | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per contender: medians of polls/s, CPU s per 1,000 polls, simulator CPU."""
        out: dict[str, dict[str, float]] = {}
        for name in CONTENDERS:
            mine = [w for w in self.windows if w.contender == name]
            if not mine:
                continue
            out[name] = {
                "polls_per_second": median(w.rate for w in mine),
                "cpu_per_1000": median(w.cpu_per_1000 for w in mine),
                "sim_cpu_per_1000": median(
                    1000 * w.sim_cpu / w.polls if w.polls else float("nan") for w in mine
                ),
                "cpu_share": median(w.cpu / w.seconds for w in mine),
                "repeats": float(len(mine)),
            }
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON-ready results."""
        return {
            "params": self.params.__dict__,
            "summary": self.summary(),
            "windows": [w.__dict__ | {"rate": w.rate} for w in self.windows],
            "notes": self.notes,
        }


def _mixed_specs(jobs: int) -> list[dict[str, Any]]:
    """``jobs`` simulator jobs spread evenly over every service, each running a
    day, with two sub-jobs where the service's format lists sub-jobs."""
    names = list(SERVICES)
    specs: list[dict[str, Any]] = []
    for index in range(jobs):
        service = names[index % len(names)]
        job_type = SERVICE_JOB_TYPES[service][0]
        with_subs = SERVICE_SPECS[service][job_type].sub_job_type is not None
        specs.append(
            {"service": service, "job_type": job_type, "count": 2 if with_subs else 1}
            | {"duration": 86_000}
        )
    return specs


async def _prime(http: Http, daemon: Daemon, proc: Proc, jobs: int, timeout: float) -> None:
    """Wait until the daemon observed every job once (and a bit more) and
    delivered the events of those first observations."""
    url = daemon.url
    deadline = time.monotonic() + timeout
    while True:
        proc.check_alive()
        body = await http.get(f"{url}/readyz")
        primed = body["active_jobs"] >= jobs and body["polls"] >= 1.2 * jobs
        if primed and await daemon.sink_backlog(http) == 0:  # and their events delivered
            return
        if time.monotonic() > deadline:
            raise BenchError(f"daemon not primed after {timeout}s: {body['polls']} polls")
        await asyncio.sleep(0.2)


async def run(
    work: Path, http: Http, params: Params, log: Callable[[str], None], profile_dir: Path
) -> Result:
    """Run scenario 1."""
    result = Result(params)
    with Procs(work) as procs:
        sim = await start_simulator(procs, http, speed=1.0)
        spec = {"job_type": "createServer", "count": 2, "duration": 86_000}
        ids = await sim.create(http, [spec] * params.jobs)
        ids_file = work / "ids.txt"
        ids_file.write_text("\n".join(ids))
        mixed_specs = _mixed_specs(params.jobs)
        mixed_ids = await sim.create(http, mixed_specs)
        mixed = {
            job_id: str(spec["service"])
            for job_id, spec in zip(mixed_ids, mixed_specs, strict=True)
        }
        polling = {
            "concurrency": params.concurrency,
            "initial_delay": 0,
            "min_interval": 0.001,
            "max_interval": 0.001,
            "multiplier": 1.0,
            "jitter": 0.0,
            "adaptive": False,
        }
        contenders: dict[str, Proc] = {}
        go = work / "go"
        base = [PYTHON, "-m", "bench.clients"]
        common = ["--url", sim.url, "--ids", str(ids_file), "--go-file", str(go)]
        common += ["--concurrency", str(params.concurrency), "--max-seconds", "1200"]
        # The clients import and connect meanwhile, and wait for the go file.
        contenders[RAW] = procs.spawn("raw", [*base, "raw", *common])
        if importlib.util.find_spec("huaweicloudsdkecs") is None:
            result.notes.append("vendor SDK not installed (pip install -e '.[bench]'): skipped")
        else:
            contenders[SDK] = procs.spawn("sdk", [*base, "sdk", *common])
        daemons = {
            name: write_daemon(
                procs, name.split()[0] + "-" + auth, sim=sim, polling=polling, auth=auth
            )
            for name, auth in ((JW_AKSK, "aksk"), (JW_NONE, "none"))
        }
        daemons[JW_MIXED] = write_daemon(
            procs,
            "jobwatchd-mixed",
            sim=sim,
            polling=polling,
            endpoints={name: f"{sim.url}/{name}" for name in SERVICES if name != "ecs"},
        )
        for name, daemon in daemons.items():
            contenders[name] = daemon.start()

        async def prime(name: str) -> None:
            daemon = daemons[name]
            await daemon.wait_ready(http)
            if name == JW_MIXED:
                await daemon.register(http, list(mixed), services=mixed)
            else:
                await daemon.register(http, ids)
            await _prime(http, daemon, contenders[name], params.jobs, timeout=300)
            contenders[name].suspend()

        await asyncio.gather(*(prime(name) for name in daemons))
        go.touch()
        await asyncio.sleep(0.5)
        for name in (RAW, SDK):
            if name in contenders:
                contenders[name].check_alive()
                contenders[name].suspend()
        order = [name for name in CONTENDERS if name in contenders]
        for repeat in range(params.repeats):
            rotated = order[repeat % len(order) :] + order[: repeat % len(order)]
            for name in rotated:
                proc = contenders[name]
                window = await _measure(
                    name, repeat, proc, sim.proc, lambda: sim.ok_count(http), params
                )
                result.windows.append(window)
                log(
                    f"  {name:32s} repeat {repeat + 1}: {window.rate:7.0f} polls/s, "
                    f"{window.cpu_per_1000:.3f} CPU s / 1,000 polls"
                )
        if params.profile_seconds > 0:
            proc = contenders[JW_AKSK]
            proc.resume()
            await asyncio.sleep(1.0)
            result.profile = await asyncio.to_thread(
                record, proc.pid, params.profile_seconds, profile_dir / "profile-throughput.txt"
            )
            proc.suspend()
            if result.profile.error:
                result.notes.append(result.profile.error)
    return result


async def _measure(
    name: str,
    repeat: int,
    proc: Proc,
    sim: Proc,
    polls: Callable[[], Awaitable[int]],
    params: Params,
) -> Window:
    proc.resume()
    try:
        await asyncio.sleep(params.warmup)
        proc.check_alive()
        polls0, cpu0, sim0, t0 = (
            await polls(),
            proc.cpu_seconds(),
            sim.cpu_seconds(),
            time.monotonic(),
        )
        await asyncio.sleep(params.window)
        polls1, cpu1, sim1, t1 = (
            await polls(),
            proc.cpu_seconds(),
            sim.cpu_seconds(),
            time.monotonic(),
        )
        proc.check_alive()
    finally:
        proc.suspend()
    return Window(name, repeat, t1 - t0, polls1 - polls0, cpu1 - cpu0, sim1 - sim0)
