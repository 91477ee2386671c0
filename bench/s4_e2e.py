"""Scenario 4: end to end, from the simulator's transition to the webhook's acknowledgement.

The simulator (speed 1) gets ``createServer`` jobs of ``sub_jobs`` sub-jobs
lasting ``duration`` seconds, created at a steady rate chosen so that their
transitions (the job's RUNNING and end, and each sub-job's INIT, RUNNING and
end: ``2 + 3 * sub_jobs`` per job) come at ``rate`` per second once the first
jobs are ``duration`` old. The daemon polls every running job every
``poll_interval`` seconds and has one sink: a signed ``webhook`` (default
``concurrency`` and ``batch_max``) to :mod:`bench.receiver` in its own process.

For each real transition (``/_sim/jobs/{id}/transitions``; the job's own INIT,
at creation, is left out) the event with the same subject and status is
looked up among those the receiver acknowledged:

- end to end = acknowledgement time - transition time;
- detection = ``data.observed_at`` - transition time (bounded by the poll interval);
- delivery = acknowledgement time - ``data.observed_at`` (store, sink, HTTP).

Only transitions inside the steady window (from ``duration`` to the end of
the arrivals) are counted. A transition another one overtook between two
polls (a sub-job seen INIT -> SUCCESS at once) has no event of its own; they
are counted as coalesced.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import (
    PYTHON,
    BenchError,
    Http,
    Procs,
    free_port,
    percentile,
    start_simulator,
    write_daemon,
)

SECRET = "whsec_" + base64.b64encode(b"jobwatchd-benchmark-signing-key!").decode()


@dataclass(frozen=True)
class Params:
    """Load and length of scenario 4."""

    rate: float = 1000.0
    sub_jobs: int = 20
    duration: float = 10.0
    arrival_seconds: float = 25.0
    poll_interval: float = 0.5
    repeats: int = 1


@dataclass
class Result:
    """Scenario 4's measurements."""

    params: Params
    end_to_end: list[float] = field(default_factory=list)
    detection: list[float] = field(default_factory=list)
    delivery: list[float] = field(default_factory=list)
    steady_rate: float = float("nan")
    delivered_rate: float = float("nan")  # most events acknowledged in one second
    events: int = 0  # events acknowledged in all
    cpu_cores: dict[str, float] = field(default_factory=dict)  # in the steady window
    transitions: int = 0
    coalesced: int = 0
    missing: int = 0
    jobs: int = 0
    notes: list[str] = field(default_factory=list)
    per_second: list[tuple[float, int]] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """p50/p99 of each part, in seconds, and the rates."""
        out: dict[str, float] = {}
        for name, values in (
            ("e2e", self.end_to_end),
            ("detection", self.detection),
            ("delivery", self.delivery),
        ):
            out[f"{name}_p50"] = percentile(values, 50)
            out[f"{name}_p99"] = percentile(values, 99)
            out[f"{name}_max"] = max(values) if values else float("nan")
        out["steady_rate"] = self.steady_rate
        out["delivered_rate"] = self.delivered_rate
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON-ready results."""
        return {
            "params": self.params.__dict__,
            "summary": self.summary(),
            "transitions": self.transitions,
            "events": self.events,
            "cpu_cores": self.cpu_cores,
            "coalesced": self.coalesced,
            "missing": self.missing,
            "jobs": self.jobs,
            "notes": self.notes,
        }


async def run(work: Path, http: Http, params: Params, log: Callable[[str], None]) -> Result:
    """Run scenario 4."""
    result = Result(params)
    per_job = 2 + 3 * params.sub_jobs
    jobs_per_second = params.rate / per_job
    with Procs(work) as procs:
        sim = await start_simulator(procs, http, speed=1.0)
        port = free_port()
        receiver = procs.spawn("receiver", [PYTHON, "-m", "bench.receiver", "--port", str(port)])
        await http.wait_ok(f"http://127.0.0.1:{port}/count", receiver)
        polling = {
            "concurrency": 64,
            "initial_delay": 0,
            "min_interval": params.poll_interval,
            "max_interval": params.poll_interval,
            "multiplier": 1.0,
            "jitter": 0.0,
            "adaptive": False,
        }
        sink = {
            "type": "webhook",
            "name": "bench-hook",
            "url": f"http://127.0.0.1:{port}/hook",
            "secret": SECRET,
        }
        daemon = write_daemon(procs, "jobwatchd", sim=sim, polling=polling, sinks=[sink])
        daemon.start()
        await daemon.wait_ready(http)
        spec = {"job_type": "createServer", "count": params.sub_jobs, "duration": params.duration}
        created: list[str] = []
        started = time.monotonic()
        wall_start = time.time()
        tick = 0.05
        watched = {"jobwatchd": daemon.running, "simulator": sim.proc, "receiver": receiver}
        mark: tuple[float, dict[str, float]] | None = None
        while True:
            elapsed = time.monotonic() - started
            if mark is None and elapsed >= params.duration:
                mark = (time.monotonic(), {k: v.cpu_seconds() for k, v in watched.items()})
            if elapsed >= params.arrival_seconds:
                break
            due = int(elapsed * jobs_per_second) + 1 - len(created)
            if due > 0:
                ids = await sim.create(http, [spec] * due)
                await daemon.register(http, ids)
                created.extend(ids)
            await asyncio.sleep(tick)
        wall_end = time.time()
        if mark is not None:
            span = time.monotonic() - mark[0]
            result.cpu_cores = {
                k: (v.cpu_seconds() - mark[1][k]) / span for k, v in watched.items()
            }
        result.jobs = len(created)
        log(f"  {len(created)} jobs created over {params.arrival_seconds:.0f} s")
        deadline = time.monotonic() + params.duration + 90.0
        while True:
            daemon.running.check_alive()
            body = await daemon.readiness(http)
            hook = body["sinks"].get("bench-hook", {})
            if body["active_jobs"] == 0 and not hook.get("in_flight"):
                stats = await http.get(f"http://127.0.0.1:{port}/count")
                await asyncio.sleep(1.0)
                again = await http.get(f"http://127.0.0.1:{port}/count")
                if again["requests"] == stats["requests"]:
                    break
            if time.monotonic() > deadline:
                result.notes.append("the webhook had not caught up when the wait ended")
                break
            await asyncio.sleep(0.5)
        received = await http.get(f"http://127.0.0.1:{port}/results")
        truth = await _truth(http, sim.url, created)
        _match(result, truth, received, wall_start + params.duration, wall_end)
        log(
            f"  {result.transitions} transitions in the steady window at "
            f"{result.steady_rate:,.0f}/s; {result.coalesced} coalesced, {result.missing} missing"
        )
    return result


async def _truth(http: Http, url: str, jobs: list[str]) -> list[dict[str, Any]]:
    limit = asyncio.Semaphore(16)

    async def one(job_id: str) -> list[dict[str, Any]]:
        async with limit:
            found: list[dict[str, Any]] = await http.get(f"{url}/_sim/jobs/{job_id}/transitions")
        return found

    lists = await asyncio.gather(*(one(j) for j in jobs))
    return [t for found in lists for t in found]


def _match(
    result: Result,
    truth: list[dict[str, Any]],
    received: list[list[Any]],
    window_start: float,
    window_end: float,
) -> None:
    acked: dict[tuple[str, str], tuple[float, float]] = {}
    for at, event in received:
        key = (event["subject"], event["data"]["to"])
        observed = datetime.fromisoformat(event["data"]["observed_at"]).timestamp()
        if key not in acked:  # a redelivery keeps the first acknowledgement
            acked[key] = (float(at), observed)
    counted = [
        t
        for t in truth
        if window_start <= t["at"] <= window_end
        and not (t["parent_job_id"] is None and t["to"] == "INIT")
    ]
    result.transitions = len(counted)
    span = window_end - window_start
    result.steady_rate = len(counted) / span if span > 0 else float("nan")
    seen_subjects = {subject for subject, _ in acked}
    for t in counted:
        hit = acked.get((t["job_id"], t["to"]))
        if hit is None:
            if t["job_id"] in seen_subjects:
                result.coalesced += 1
            else:
                result.missing += 1
            continue
        ack, observed = hit
        result.end_to_end.append(ack - t["at"])
        result.detection.append(observed - t["at"])
        result.delivery.append(ack - observed)
    per_second: dict[int, int] = {}
    for at, _ in received:
        per_second[int(at)] = per_second.get(int(at), 0) + 1
    result.delivered_rate = float(max(per_second.values(), default=0))
    result.events = len(received)
    buckets: dict[int, int] = {}
    for t in truth:
        buckets[int(t["at"] - window_start)] = buckets.get(int(t["at"] - window_start), 0) + 1
    result.per_second = sorted((float(k), v) for k, v in buckets.items())
    if result.missing:
        result.notes.append(f"{result.missing} transitions of jobs never delivered")
    if not counted:
        raise BenchError("no transition in the steady window")
