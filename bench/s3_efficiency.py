"""Scenario 3: poll efficiency. API calls per job and detection lag, four ways at once.

A realistic workload runs on the simulator with time compressed ``speed``
times. Every measured job is tracked, from the moment it is created, by all
of these at the same time (so they see exactly the same jobs):

- ``fixed 10 s loop``: :mod:`bench.clients` ``fixed``, the common hand-written loop;
- ``SDK waiter``: :mod:`bench.clients` ``expo``, the jittered exponential
  waiter of the major SDKs (min 2 s, max 120 s);
- ``jobwatchd``: the daemon with its default polling (``adaptive = true``,
  ``target_lag = 8s``), after a warm-up that taught it every job type;
- ``jobwatchd cold``: the daemon with ``adaptive = false``, which is what
  the default does for a job type it has not yet seen finish five times.

Every duration of the daemons' config (``initial_delay``, ``min_interval``,
``max_interval``, ``target_lag``, and the rate limit, inversely) and of the
two reference strategies is divided by ``speed``; lags and intervals are
reported in simulated seconds.

Job durations (simulated seconds) are drawn by the suite per job type, see
:data:`JOB_MIX`: log-normal around the type's median, and with probability
:data:`TAIL_PROBABILITY` multiplied by ``1 + Pareto(1.5)`` (a heavy tail),
capped at ``max_duration``. Arrivals are a Poisson process.

Warm-up: ``warm_per_type`` jobs of every type, drawn the same way, are
registered with the warm daemon only, and the measured jobs start once it
saw at least ``warm_needed`` of every type finish (the model needs five).
Warm-up jobs are not counted. Measured jobs come in ``repeats`` successive
cohorts of ``jobs_per_repeat`` over ``arrival_seconds`` (wall) each; each
figure is the median over cohorts.

Detection lag: for a job's terminal status, the time the tracker observed it
(the daemon's CloudEvent ``data.observed_at`` in its file sink; the
reference clients' time of the answer) minus the simulator's real transition
time (``/_sim/jobs/{id}/transitions``), same machine clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import sqlite3
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import orjson

from bench.common import (
    PYTHON,
    BenchError,
    Daemon,
    Http,
    Proc,
    Procs,
    Simulated,
    median,
    percentile,
    start_simulator,
    write_daemon,
)
from jobwatchd.backoff import BackoffPolicy
from jobwatchd.learning import AdaptivePolicy, DurationModel, adaptive_delay

if TYPE_CHECKING:
    from numpy.typing import NDArray

FIXED: Final = "fixed 10 s loop"
EXPO: Final = "SDK waiter (2-120 s)"
JW: Final = "jobwatchd (default, learned)"
JW_COLD: Final = "jobwatchd cold (no model)"
STRATEGIES: Final = (FIXED, EXPO, JW, JW_COLD)
ORACLE_FIXED: Final = "at the fixed loop's p95 lag"
ORACLE_TARGET: Final = "at target_lag"


@dataclass(frozen=True)
class JobKind:
    """How the suite draws one job type's jobs (durations in simulated seconds)."""

    job_type: str
    count: int  # sub-jobs; 1 for types without
    median: float
    sigma: float


JOB_MIX: Final = (
    JobKind("createServer", 2, 100.0, 0.35),
    JobKind("deleteServer", 1, 50.0, 0.30),
    JobKind("resizeServer", 1, 120.0, 0.30),
    JobKind("addNics", 2, 40.0, 0.35),
)
TAIL_PROBABILITY: Final = 0.05
TAIL_ALPHA: Final = 1.5
TERMINAL: Final = frozenset({"SUCCESS", "FAIL"})

# jobwatchd's defaults (PollingConfig), in real seconds.
DEFAULT_POLLING: Final = {
    "initial_delay": 1.0,
    "min_interval": 2.0,
    "max_interval": 60.0,
    "target_lag": 8.0,
    "multiplier": 1.6,
    "jitter": 0.2,
}
DEFAULT_RATE_LIMIT: Final = 20.0


@dataclass(frozen=True)
class Params:
    """Size and speed of scenario 3."""

    speed: float = 20.0
    warm_per_type: int = 10
    warm_needed: int = 6
    jobs_per_repeat: int = 150
    arrival_seconds: float = 20.0
    repeats: int = 3
    max_duration: float = 600.0
    seed: int = 42


def draw_duration(kind: JobKind, rng: random.Random, cap: float) -> float:
    """Log-normal around the kind's median; 5 % of jobs times ``1 + Pareto(1.5)``."""
    seconds = rng.lognormvariate(math.log(kind.median), kind.sigma)
    if rng.random() < TAIL_PROBABILITY:
        seconds *= 1.0 + rng.paretovariate(TAIL_ALPHA)
    return round(min(max(seconds, 5.0), cap), 3)


def job_spec(kind: JobKind, duration: float) -> dict[str, object]:
    """The ``POST /_sim/jobs`` item of one job."""
    return {"job_type": kind.job_type, "count": kind.count, "duration": duration}


@dataclass
class Tracked:
    """What one strategy saw of one job."""

    calls: int
    detected_at: float | None  # unix time the terminal status was observed


@dataclass
class Result:
    """Scenario 3's measurements."""

    params: Params
    cohorts: list[list[str]] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)  # job id -> simulated s
    truth: dict[str, float] = field(default_factory=dict)  # job id -> terminal unix time
    timelines: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    job_types: dict[str, str] = field(default_factory=dict)
    models: dict[str, dict[str, float]] = field(default_factory=dict)  # learned, wall seconds
    seen: dict[str, dict[str, Tracked]] = field(default_factory=dict)  # strategy -> job -> ...
    warmup_seconds: float = float("nan")
    notes: list[str] = field(default_factory=list)
    # The fewest calls per job possible at the fixed loop's p95 lag, and at target_lag.
    oracles: dict[str, Oracle] = field(default_factory=dict)

    def lags(self, strategy: str, jobs: Sequence[str]) -> list[float]:
        """Detection lags (simulated seconds) of ``jobs`` that ``strategy`` saw end."""
        out: list[float] = []
        for job_id in jobs:
            tracked = self.seen.get(strategy, {}).get(job_id)
            if tracked is None or tracked.detected_at is None or job_id not in self.truth:
                continue
            out.append((tracked.detected_at - self.truth[job_id]) * self.params.speed)
        return out

    def calls(self, strategy: str, jobs: Sequence[str]) -> list[int]:
        """API calls per job of ``strategy``."""
        mine = self.seen.get(strategy, {})
        return [mine[j].calls for j in jobs if j in mine]

    def summary(self) -> dict[str, dict[str, float]]:
        """Per strategy: medians over cohorts of calls/job and lag p50/p95/p99."""
        out: dict[str, dict[str, float]] = {}
        for name in STRATEGIES:
            if name not in self.seen:
                continue
            rows: dict[str, list[float]] = {k: [] for k in ("calls", "p50", "p95", "p99")}
            missed = 0
            for cohort in self.cohorts:
                lags = self.lags(name, cohort)
                calls = self.calls(name, cohort)
                missed += len(cohort) - len(lags)
                rows["calls"].append(sum(calls) / len(calls) if calls else math.nan)
                for q in (50, 95, 99):
                    rows[f"p{q}"].append(percentile(lags, q))
            everything = [j for cohort in self.cohorts for j in cohort]
            pooled = self.lags(name, everything)
            out[name] = {
                "calls_per_job": median(rows["calls"]),
                "lag_p50": median(rows["p50"]),
                "lag_p95": median(rows["p95"]),
                "lag_p99": median(rows["p99"]),
                "pooled_p95": percentile(pooled, 95),
                "pooled_p99": percentile(pooled, 99),
                "lag_max": max(pooled) if pooled else math.nan,
                "not_detected": float(missed),
            }
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON-ready results."""
        everything = [j for cohort in self.cohorts for j in cohort]
        return {
            "params": self.params.__dict__,
            "summary": self.summary(),
            "jobs": len(everything),
            "warmup_seconds": self.warmup_seconds,
            "duration_p50": percentile(list(self.durations.values()), 50),
            "duration_p95": percentile(list(self.durations.values()), 95),
            "duration_max": max(self.durations.values(), default=math.nan),
            "models_wall_seconds": self.models,
            "breakdown": {
                JW: replay_breakdown(self, adaptive=True),
                JW_COLD: replay_breakdown(self, adaptive=False),
            },
            "oracles": {
                name: {
                    "lag": oracle.lag,
                    "calls_per_job": oracle.calls_per_job,
                    "schedule_calls": oracle.schedule_calls,
                    "covered": oracle.covered,
                    "price": oracle.price,
                    "per_type": {
                        job_type: {"calls": one.calls, "covered": one.covered}
                        for job_type, one in oracle.per_type.items()
                    },
                }
                for name, oracle in self.oracles.items()
            },
            "notes": self.notes,
        }

    def compute_oracles(self) -> None:
        """The oracle bound at the fixed loop's measured p95 lag and at ``target_lag``."""
        fixed = self.summary().get(FIXED, {}).get("lag_p95", math.nan)
        lags = {ORACLE_FIXED: fixed, ORACLE_TARGET: DEFAULT_POLLING["target_lag"]}
        for name, lag in lags.items():
            if math.isfinite(lag) and lag > 0:
                self.oracles[name] = workload_oracle(self.params, lag)


def _tracker_args(sim: Simulated, mode: str, out: Path, params: Params) -> list[str]:
    speed = params.speed
    args = [PYTHON, "-m", "bench.clients", mode, "--url", sim.url, "--out", str(out)]
    args += ["--interval", str(10.0 / speed)]
    args += ["--min-delay", str(2.0 / speed), "--max-delay", str(120.0 / speed)]
    return [*args, "--max-seconds", "900"]


def scaled_polling(params: Params) -> dict[str, float]:
    """jobwatchd's default ``[polling]`` durations divided by the speed factor."""
    timed = ("initial_delay", "min_interval", "max_interval", "target_lag")
    return {
        key: value / params.speed if key in timed else value
        for key, value in DEFAULT_POLLING.items()
    }


def _polling(params: Params, *, adaptive: bool) -> dict[str, object]:
    return {**scaled_polling(params), "adaptive": adaptive}


async def run(work: Path, http: Http, params: Params, log: Callable[[str], None]) -> Result:
    """Run scenario 3."""
    result = Result(params)
    rng = random.Random(params.seed)
    with Procs(work) as procs:
        sim = await start_simulator(procs, http, speed=params.speed, seed=params.seed)
        daemons: dict[str, Daemon] = {}
        for name, adaptive in ((JW, True), (JW_COLD, False)):
            daemon = write_daemon(
                procs,
                "jobwatchd-warm" if adaptive else "jobwatchd-cold",
                sim=sim,
                polling=_polling(params, adaptive=adaptive),
                rate_limit=DEFAULT_RATE_LIMIT * params.speed,
            )
            daemon.start()
            daemons[name] = daemon
        for daemon in daemons.values():
            await daemon.wait_ready(http)
        outs = {FIXED: work / "fixed.jsonl", EXPO: work / "expo.jsonl"}
        clients: dict[str, Proc] = {
            FIXED: procs.spawn(
                "fixed",
                _tracker_args(sim, "fixed", outs[FIXED], params),
                stdin=subprocess.PIPE,
            ),
            EXPO: procs.spawn(
                "expo", _tracker_args(sim, "expo", outs[EXPO], params), stdin=subprocess.PIPE
            ),
        }
        result.warmup_seconds = await _warm_up(http, sim, daemons[JW], params, rng, log)
        log(f"  warm-up done in {result.warmup_seconds:.1f} s (not counted)")
        started = time.monotonic()
        for repeat in range(params.repeats):
            cohort = await _arrivals(
                http, sim, daemons.values(), clients.values(), params, rng, result
            )
            result.cohorts.append(cohort)
            log(f"  cohort {repeat + 1}: {len(cohort)} jobs created")
        for proc in clients.values():
            assert proc.popen.stdin is not None
            proc.popen.stdin.close()
        everything = [j for cohort in result.cohorts for j in cohort]
        longest = max(result.durations.values()) / params.speed
        deadline = started + params.repeats * params.arrival_seconds + longest + 60.0
        await _wait_done(http, daemons, clients, set(everything), deadline)
        took = time.monotonic() - started
        log(f"  every tracker saw every job finish ({took:.0f} s)")
        result.timelines = await _timelines(http, sim, everything)
        result.truth = {job_id: line[2] for job_id, line in result.timelines.items()}
        result.models = _learned_models(daemons[JW])
        for name, daemon in daemons.items():
            result.seen[name] = await _daemon_seen(http, daemon, set(everything))
        for name, path in outs.items():
            result.seen[name] = _client_seen(path)
            code = clients[name].popen.returncode
            if code != 0:
                tail = clients[name].log_tail(5).replace("\n", " / ")
                result.notes.append(f"{name}: the client exited with {code}: {tail}")
    result.compute_oracles()
    return result


async def _warm_up(
    http: Http,
    sim: Simulated,
    daemon: Daemon,
    params: Params,
    rng: random.Random,
    log: Callable[[str], None],
) -> float:
    started = time.monotonic()
    specs = [
        job_spec(kind, draw_duration(kind, rng, params.max_duration))
        for kind in JOB_MIX
        for _ in range(params.warm_per_type)
    ]
    ids = await sim.create(http, specs)
    await daemon.register(http, ids)
    deadline = started + params.max_duration / params.speed + 60.0
    while True:
        finished = await daemon.jobs(http, status="SUCCESS")
        counts = {kind.job_type: 0 for kind in JOB_MIX}
        for job in finished:
            if job["job_type"] in counts:
                counts[job["job_type"]] += 1
        if min(counts.values()) >= params.warm_needed:
            return time.monotonic() - started
        daemon.running.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"warm-up did not finish: {counts}")
        await asyncio.sleep(0.2)


async def _arrivals(
    http: Http,
    sim: Simulated,
    daemons: Sequence[Daemon] | Any,
    clients: Sequence[Proc] | Any,
    params: Params,
    rng: random.Random,
    result: Result,
) -> list[str]:
    """Create one cohort's jobs at Poisson arrival times and hand each to every tracker."""
    rate = params.jobs_per_repeat / params.arrival_seconds
    offsets: list[float] = []
    t = 0.0
    while len(offsets) < params.jobs_per_repeat:
        t += rng.expovariate(rate)
        offsets.append(t)
    scale = params.arrival_seconds / max(offsets[-1], 1e-9)
    offsets = [o * scale for o in offsets]
    plan = []
    for offset in offsets:
        kind = rng.choice(JOB_MIX)
        plan.append((offset, kind, draw_duration(kind, rng, params.max_duration)))
    created: list[str] = []
    started = time.monotonic()
    index = 0
    while index < len(plan):
        now = time.monotonic() - started
        due = []
        while index < len(plan) and plan[index][0] <= now:
            due.append(plan[index])
            index += 1
        if due:
            ids = await sim.create(http, [job_spec(kind, d) for _, kind, d in due])
            line = "".join(f"{job_id}\n" for job_id in ids).encode()
            for proc in clients:
                assert proc.popen.stdin is not None
                proc.popen.stdin.write(line)
                proc.popen.stdin.flush()
            await asyncio.gather(*(daemon.register(http, ids) for daemon in daemons))
            for job_id, (_, kind, duration) in zip(ids, due, strict=True):
                result.durations[job_id] = duration
                result.job_types[job_id] = kind.job_type
            created.extend(ids)
        if index < len(plan):
            await asyncio.sleep(max(0.0, min(0.02, plan[index][0] - (time.monotonic() - started))))
    return created


async def _wait_done(
    http: Http,
    daemons: dict[str, Daemon],
    clients: dict[str, Proc],
    jobs: set[str],
    deadline: float,
) -> None:
    while True:
        pending = 0
        for daemon in daemons.values():
            daemon.running.check_alive()
            body = await daemon.readiness(http)
            pending += body["active_jobs"]
        clients_done = all(not proc.alive() for proc in clients.values())
        # Warm-up stragglers may still be active in the warm daemon: count ours only.
        if clients_done and pending:
            pending = 0
            for daemon in daemons.values():
                for job in await daemon.jobs(http):
                    if job["job_id"] in jobs and not job["terminal"]:
                        pending += 1
        if clients_done and not pending:
            return
        if time.monotonic() > deadline:
            raise BenchError("trackers did not see every job finish in time")
        await asyncio.sleep(0.5)


async def _timelines(
    http: Http, sim: Simulated, jobs: list[str]
) -> dict[str, tuple[float, float, float]]:
    """(created, running, ended) unix times of each job, from the simulator."""
    limit = asyncio.Semaphore(16)

    async def one(job_id: str) -> tuple[str, tuple[float, float, float] | None]:
        async with limit:
            found = await sim.transitions(http, job_id)
        times = {
            item["to"]: float(item["at"])
            for item in found
            if item["job_id"] == job_id and item["parent_job_id"] is None
        }
        ended = next((times[s] for s in TERMINAL if s in times), None)
        if ended is None or "INIT" not in times or "RUNNING" not in times:
            return job_id, None
        return job_id, (times["INIT"], times["RUNNING"], ended)

    pairs = await asyncio.gather(*(one(j) for j in jobs))
    return {job_id: line for job_id, line in pairs if line is not None}


def _learned_models(daemon: Daemon) -> dict[str, dict[str, float]]:
    """The duration models the daemon stored (it flushes them every 5 s)."""
    path = daemon.state_dir / "jobwatchd.db"
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT job_type, model FROM duration_models").fetchall()
    except sqlite3.Error:
        return {}
    return {str(name): orjson.loads(model) for name, model in rows}


PHASES: Final = (
    "first poll",
    "before the window (sleeping until it opens)",
    "window (every target_lag)",
    "straggler backoff (past the window)",
    "backoff (no model)",
    "the poll that sees the end",
)


def _policies(params: Params) -> tuple[BackoffPolicy, AdaptivePolicy]:
    """The daemon's default backoff and learned-schedule policies, scaled like its config."""
    polling = scaled_polling(params)
    backoff = BackoffPolicy(
        min_interval=polling["min_interval"],
        max_interval=polling["max_interval"],
        multiplier=polling["multiplier"],
        jitter=polling["jitter"],
    )
    return backoff, AdaptivePolicy(target_lag=polling["target_lag"])


def _next_phase(
    model: DurationModel,
    policy: AdaptivePolicy,
    backoff: BackoffPolicy,
    elapsed: float,
    delay: float,
) -> str:
    """The phase of the poll that a job ``elapsed`` s old schedules ``delay`` s ahead."""
    opens, closes = model.window(policy)
    if elapsed < opens - backoff.jitter * policy.target_lag:
        # The wake-up that opens the window (jitter may bring it a little early),
        # unless max_interval cut the sleep short.
        return (
            "before the window (sleeping until it opens)"
            if delay >= backoff.max_interval
            else "window (every target_lag)"
        )
    if elapsed <= closes:
        return "window (every target_lag)"
    return "straggler backoff (past the window)"


def replay_breakdown(result: Result, *, adaptive: bool) -> dict[str, float]:
    """Where the daemon's polls go, per job on average, by replaying its schedule.

    Uses jobwatchd's own pure schedule functions (:mod:`jobwatchd.backoff`,
    :mod:`jobwatchd.learning`) with the learned models, on each measured job's
    real timeline, the way ``Tracker._delay`` uses them: the first poll tells
    the job's type and begin time (the vendor reports ``begin_time`` already
    while the job is INIT), and from then on a type with a ready model follows
    the learned schedule, INIT or RUNNING. Sub-job transitions (which only
    reset the backoff) are left out, so the total is checked against the
    measured calls per job.
    """
    params = result.params
    backoff, policy = _policies(params)
    initial_delay = scaled_polling(params)["initial_delay"]
    models = {name: DurationModel.from_json(data) for name, data in result.models.items()}
    rng = random.Random(1)
    counts: dict[str, int] = dict.fromkeys(PHASES, 0)
    jobs = 0
    for job_id in [j for cohort in result.cohorts for j in cohort]:
        timeline = result.timelines.get(job_id)
        if timeline is None:
            continue
        created, running, ended = timeline
        model = models.get(result.job_types.get(job_id, "")) if adaptive else None
        learned = model if model is not None and model.ready else None
        jobs += 1
        t = created + initial_delay
        status, attempt, phase = "PENDING", 0, "first poll"
        for _ in range(100_000):
            if t >= ended:
                counts["the poll that sees the end"] += 1
                break
            counts[phase] += 1
            now_status = "INIT" if t < running else "RUNNING"
            if now_status != status:
                attempt, status = 0, now_status
            elapsed = t - created
            rand = rng.random()
            if learned is None:
                delay = backoff.interval(attempt, rand)
                phase = "backoff (no model)"
            else:
                delay = adaptive_delay(
                    learned, elapsed, policy, backoff, attempt=attempt, rand=rand
                )
                phase = _next_phase(learned, policy, backoff, elapsed, delay)
            attempt += 1
            t += delay
    return {phase: count / jobs for phase, count in counts.items()} if jobs else {}


# -- the oracle: the fewest calls any schedule could make ------------------------------

ORACLE_STEP: Final = 0.5  # simulated seconds between candidate poll times
ORACLE_SAMPLES: Final = 50_000  # durations drawn per job type for its distribution
ORACLE_COVER: Final = 0.95  # a p95 lag bound: this share of jobs seen within it


@dataclass(frozen=True)
class OracleSchedule:
    """One job type's optimal poll times for a Lagrange multiplier."""

    calls: float  # expected calls per job
    covered: float  # share of jobs seen within the lag bound
    polls: tuple[float, ...]  # poll times, seconds since the job began


@dataclass(frozen=True)
class Oracle:
    """The lower bound on calls per job for a p95 lag bound (see :func:`oracle_bound`)."""

    lag: float
    calls_per_job: float  # the bound
    schedule_calls: float  # the calls of the schedules found (at most a hair above)
    covered: float
    price: float
    per_type: dict[str, OracleSchedule]


def duration_cdf(kind: JobKind, params: Params, seed: int) -> NDArray[np.float64]:
    """``F[i]`` = share of ``kind``'s jobs (drawn as the suite draws them) ended by
    ``i * ORACLE_STEP`` simulated seconds; the last point is past the cap."""
    rng = random.Random(seed)
    drawn = np.sort(
        np.array([draw_duration(kind, rng, params.max_duration) for _ in range(ORACLE_SAMPLES)])
    )
    grid = np.arange(0.0, params.max_duration + 2 * ORACLE_STEP, ORACLE_STEP)
    return np.searchsorted(drawn, grid, side="right") / len(drawn)


def oracle_schedule(
    cdf: NDArray[np.float64],
    *,
    lag: float,
    price: float,
    first: float,
    min_gap: float,
    max_gap: float,
    step: float = ORACLE_STEP,
) -> OracleSchedule:
    """The open-loop schedule minimising ``calls - price * covered`` for one job type.

    A job ending in ``(s[k-1], s[k]]`` is seen at poll ``s[k]``, within ``lag``
    if it ended at ``s[k] - lag`` or later; poll ``s[k]`` is made only for a job
    still running at ``s[k-1]``, so it costs ``P(D > s[k-1])`` calls per job.
    The first poll is at ``first`` (it tells the job's type); the gaps after it
    are within ``[min_gap, max_gap]``. Exact dynamic programming over the grid
    of candidate times ``i * step``; ``cdf`` as from :func:`duration_cdf`.
    """
    size = len(cdf)
    survival = 1.0 - cdf
    shortest, longest = round(min_gap / step), round(max_gap / step)
    within = round(lag / step)
    value = np.zeros(size)
    following = np.full(size, -1)
    for i in range(size - 1, -1, -1):
        if survival[i] <= 0.0:
            continue
        after = np.arange(i + max(1, shortest), min(size, i + longest + 1))
        if len(after) == 0:
            continue
        covered = cdf[after] - cdf[np.maximum(i, after - within)]
        options = survival[i] - price * covered + value[after]
        best = int(np.argmin(options))
        value[i], following[i] = options[best], after[best]
    i = round(first / step)
    calls, covered_total, polls = 1.0, float(cdf[i]), [i * step]
    while following[i] >= 0:
        j = int(following[i])
        calls += float(survival[i])
        covered_total += float(cdf[j] - cdf[max(i, j - within)])
        polls.append(j * step)
        i = j
    return OracleSchedule(calls=calls, covered=covered_total, polls=tuple(polls))


def oracle_bound(
    lag: float,
    cdfs: dict[str, NDArray[np.float64]],
    *,
    first: float,
    min_gap: float,
    max_gap: float,
    cover: float = ORACLE_COVER,
) -> Oracle:
    """Fewest calls per job of any schedule that sees ``cover`` of the jobs within ``lag``.

    The schedule may differ per job type and knows each type's true duration
    distribution (``cdfs``, types equally likely as in the workload), but not
    the individual job's duration. The share ``cover`` is of all jobs pooled,
    as the p95 lag is, so the types share the misses: a common price (Lagrange
    multiplier) per covered job is bisected until the pooled cover is reached.
    Each type's schedule minimises ``calls - price * covered``, so any schedule
    covering ``cover`` makes at least ``calls - price * (covered - cover)`` of
    the schedules found (weak duality): that is the bound, a hair below their
    calls, as they cover a hair more than ``cover``.
    """
    low, high = 1e-3, 1e5
    found: dict[str, OracleSchedule] | None = None
    for _ in range(40):
        price = math.sqrt(low * high)
        schedules = {
            name: oracle_schedule(
                cdf, lag=lag, price=price, first=first, min_gap=min_gap, max_gap=max_gap
            )
            for name, cdf in cdfs.items()
        }
        if sum(s.covered for s in schedules.values()) / len(schedules) >= cover:
            high, found = price, schedules
        else:
            low = price
    if found is None:
        raise BenchError(f"no schedule sees {cover:.0%} of jobs within {lag:g} s")
    calls = sum(s.calls for s in found.values()) / len(found)
    covered = sum(s.covered for s in found.values()) / len(found)
    return Oracle(
        lag=lag,
        calls_per_job=calls - high * (covered - cover),
        schedule_calls=calls,
        covered=covered,
        price=high,
        per_type=found,
    )


def workload_oracle(params: Params, lag: float) -> Oracle:
    """:func:`oracle_bound` for this workload, with the daemon's default gaps and first poll."""
    polling = DEFAULT_POLLING
    cdfs = {
        kind.job_type: duration_cdf(kind, params, params.seed + index)
        for index, kind in enumerate(JOB_MIX)
    }
    return oracle_bound(
        lag,
        cdfs,
        first=polling["initial_delay"],
        min_gap=polling["min_interval"],
        max_gap=polling["max_interval"],
    )


def _parse_time(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def _daemon_seen(http: Http, daemon: Daemon, jobs: set[str]) -> dict[str, Tracked]:
    seen: dict[str, Tracked] = {}
    for job in await daemon.jobs(http):
        if job["job_id"] in jobs:
            seen[job["job_id"]] = Tracked(calls=int(job["polls"]), detected_at=None)
    sink = daemon.state_dir / "transitions.jsonl"
    for line in sink.read_bytes().splitlines():
        event = orjson.loads(line)
        data = event["data"]
        if event["type"] != "jobwatchd.job.transition" or data["to"] not in TERMINAL:
            continue
        tracked = seen.get(data["job_id"])
        if tracked is not None and tracked.detected_at is None:
            tracked.detected_at = _parse_time(data["observed_at"])
    return seen


def _client_seen(path: Path) -> dict[str, Tracked]:
    seen: dict[str, Tracked] = {}
    if not path.exists():
        return seen
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        item = orjson.loads(line)
        detected = next((at for status, at in item["seen"] if status in TERMINAL), None)
        seen[item["job_id"]] = Tracked(calls=int(item["calls"]), detected_at=detected)
    return seen
