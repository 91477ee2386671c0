"""Built-in simulated cloud: the ECS "Querying Task Execution Status" API, and
every other service's job API of :data:`jobwatchd.services.SERVICES`.

The simulator serves ECS's ``GET /v1/{project_id}/jobs/{job_id}`` at the root,
and each service's own job query under ``/{service}`` (``/evs/v1/...``,
``/cce/api/v3/projects/...``, ``/rds/v3/{project_id}/jobs?id=...``), each in
exactly the vendor's response format (:mod:`jobwatchd.cloud.simulated_formats`),
so jobwatchd (and users testing their own pipelines) can run with no cloud
account. Jobs move INIT -> RUNNING ->
SUCCESS/FAIL, with sub-jobs for batch operations, over realistic durations
compressed by a ``speed`` factor, and faults (latency, 5xx, throttling,
malformed bodies, missing ``status``, 404) can be injected on request.

Each job is stored only as its timeline: a handful of wall-clock instants
drawn when the job is created. A response is a pure function of that
timeline and the current clock reading, so there is no background task per
job, a fake clock makes tests deterministic, and 100,000 jobs cost little
more than their timelines.

Like the real gateway it can demand credentials: a fixed token, AK/SK
signatures (verified), or tokens from its IAM endpoint ``POST /v3/auth/tokens``;
and it can throttle one project alone (see :class:`Simulator`).

Control endpoints under ``/_sim/`` create jobs, report the true transitions
(for measuring detection lag), and read or change the faults and statistics.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hmac
import math
import random
import re
import secrets
import signal
import ssl
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from aiohttp import web

from jobwatchd import services
from jobwatchd.cloud import signing
from jobwatchd.cloud.simulated_formats import (
    ERROR_STYLES,
    FAIL,
    INIT,
    INSTANCE_SUFFIXES,
    PENDING_PAYMENT,
    RUNNING,
    SERVICE_SPECS,
    SUCCESS,
    UUID_JOB_IDS,
    JobSpec,
    SimJob,
    SimSubJob,
    error_body,
    format_time,
    has_init,
    not_found,
    render,
    without_status,
)

__all__ = [
    "DEFAULT_PROJECT_ID",
    "DEMO_SERVICES",
    "JOB_TYPES",
    "MAX_ARRIVALS",
    "MAX_SIGNATURE_AGE",
    "MAX_SUB_JOBS",
    "OUTCOMES",
    "SERVICE_JOB_TYPES",
    "Faults",
    "Simulator",
    "Transition",
    "create_demo_jobs",
    "format_time",
    "max_in_window",
    "run_standalone",
    "start_simulator",
]

DEFAULT_PROJECT_ID: Final = "0123456789abcdef0123456789abcdef"
"""The project ID jobs belong to unless another one is given."""

MAX_SUB_JOBS: Final = 1000
"""Upper bound of ``count`` (sub-jobs of one job)."""

MAX_BATCH: Final = 10_000
"""Most jobs one ``POST /_sim/jobs`` may create."""

MAX_DURATION: Final = 7 * 24 * 3600.0
"""Longest simulated duration accepted for a job, in seconds."""

MAX_SIGNATURE_AGE: Final = 15 * 60.0
"""How far ``X-Sdk-Date`` may be from the simulator's clock, in seconds (as the gateway)."""

MAX_ARRIVALS: Final = 10_000
"""Arrival times kept per service in :attr:`Simulator.arrivals`."""

_PROJECT_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_JSON_TYPE: Final = "application/json"

_SPECS: Final[Mapping[str, JobSpec]] = SERVICE_SPECS["ecs"]
# Jobs whose answer names their resource (a cluster, a load balancer) besides sub-jobs.
_SERVICES_WITH_A_RESOURCE: Final = frozenset({"cce", "elb"})

JOB_TYPES: Final[tuple[str, ...]] = tuple(_SPECS)
"""The ECS job types :meth:`Simulator.create_job` accepts (see :data:`SERVICE_JOB_TYPES`)."""

SERVICE_JOB_TYPES: Final[Mapping[str, tuple[str, ...]]] = {
    name: tuple(specs) for name, specs in SERVICE_SPECS.items()
}
"""Every service's job types, its default first."""

# Outcomes counted in Simulator.stats, one per job query.
OUTCOMES: Final[tuple[str, ...]] = (
    "ok",
    "5xx",
    "429",
    "malformed",
    "no_status",
    "404",
    "400",
    "unknown_job",
    "unauthorized",
    "throttled",
)


@dataclass(slots=True, kw_only=True)
class Faults:
    """Fault injection settings, applied to every job query.

    ``latency`` (seconds) delays every job query. The probabilities
    (``error_5xx``, ``throttle``, ``malformed``, ``no_status``, ``not_found``,
    ``rejected``) are each drawn per request, in the order throttle, 5xx, 404,
    malformed, no status, rejected (a 400 other than "invalid job ID"); the
    first that fires is the only one injected.
    ``retry_after`` (seconds) is the ``Retry-After`` of injected 429s,
    rounded up to whole seconds.
    """

    latency: float = 0.0
    error_5xx: float = 0.0
    throttle: float = 0.0
    retry_after: float = 1.0
    malformed: float = 0.0
    no_status: float = 0.0
    not_found: float = 0.0
    rejected: float = 0.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ValueError` naming the first field out of range."""
        for field in dataclasses.fields(self):
            _check_fault_value(field.name, getattr(self, field.name))

    def to_dict(self) -> dict[str, float]:
        """Return the settings as a plain dict (field order)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def update(self, changes: Mapping[str, object]) -> None:
        """Apply a partial update, all or nothing.

        Raises :class:`ValueError` for an unknown field or a bad value, and
        then leaves the settings unchanged.
        """
        names = {f.name for f in dataclasses.fields(self)}
        checked: dict[str, float] = {}
        for name, value in changes.items():
            if name not in names:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(names))}")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{name} must be a number")
            _check_fault_value(name, value)
            checked[name] = float(value)
        for name, value in checked.items():
            setattr(self, name, value)


_PROBABILITY_FIELDS: Final = frozenset(
    {"error_5xx", "throttle", "malformed", "no_status", "not_found", "rejected"}
)


def _check_fault_value(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number")
    if name in _PROBABILITY_FIELDS:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a probability between 0 and 1")
    elif value < 0.0:
        raise ValueError(f"{name} must be zero or more seconds")


@dataclass(frozen=True, slots=True)
class Transition:
    """A real transition of a job or sub-job, for measuring detection lag.

    ``at`` is the wall-clock unix time (per the simulator's clock) at which
    the (sub-)job entered status ``to``; ``parent_job_id`` is None for a
    top-level job.
    """

    job_id: str
    parent_job_id: str | None
    to: str
    at: float

    def to_dict(self) -> dict[str, object]:
        """Return the transition as a JSON-ready dict."""
        return {
            "job_id": self.job_id,
            "parent_job_id": self.parent_job_id,
            "to": self.to,
            "at": self.at,
        }


def _check_create_args(
    job_type: object,
    project_id: object,
    count: object,
    fail: object,
    duration: object,
    payment: object = 0.0,
    service: object = "ecs",
) -> None:
    """Raise :class:`ValueError` if the arguments of a job creation are bad."""
    if not isinstance(service, str):
        raise TypeError("service must be a string")
    if service not in SERVICE_SPECS:
        raise ValueError(f"service must be one of: {', '.join(SERVICE_SPECS)}")
    specs = SERVICE_SPECS[service]
    if not isinstance(job_type, str):
        raise TypeError("job_type must be a string")
    if job_type not in specs:
        where = "" if service == "ecs" else f" for service {service}"
        raise ValueError(f"job_type must be one of{where}: {', '.join(specs)}")
    if not isinstance(project_id, str):
        raise TypeError("project_id must be a string")
    if not _PROJECT_ID_RE.fullmatch(project_id):
        raise ValueError("project_id must be 1-64 characters of [A-Za-z0-9_-]")
    if isinstance(count, bool) or not isinstance(count, int):
        raise TypeError("count must be an integer")
    if specs[job_type].sub_job_type is None:
        if count != 1:
            raise ValueError(f"count must be 1 for {job_type}, which has no sub-jobs")
    elif not 1 <= count <= MAX_SUB_JOBS:
        raise ValueError(f"count must be between 1 and {MAX_SUB_JOBS}")
    if not isinstance(fail, bool):
        raise TypeError("fail must be true or false")
    if duration is not None:
        if isinstance(duration, bool) or not isinstance(duration, int | float):
            raise TypeError("duration must be a number of seconds or null")
        if not math.isfinite(duration) or not 0.0 <= duration <= MAX_DURATION:
            raise ValueError(f"duration must be between 0 and {MAX_DURATION:.0f} seconds")
    if isinstance(payment, bool) or not isinstance(payment, int | float):
        raise TypeError("payment must be a number of seconds")
    if not math.isfinite(payment) or not 0.0 <= payment <= MAX_DURATION:
        raise ValueError(f"payment must be between 0 and {MAX_DURATION:.0f} seconds")
    if payment and service != "ecs":
        raise ValueError("payment (PENDING_PAYMENT) is simulated for ecs jobs only")


def max_in_window(times: Iterable[float], window: float = 1.0) -> int:
    """The most of ``times`` (seconds, in any order) within any one half-open span
    ``[t, t + window)``: the peak rate a client reached."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


class Simulator:
    """The simulated job APIs: job timelines, fault injection and the HTTP app.

    ECS's ``GET /v1/{project_id}/jobs/{job_id}`` is served at the root, and
    every service of :data:`jobwatchd.services.SERVICES` (``ecs`` too)
    under the prefix ``/{service}``: its own path in its own answer format
    (:mod:`jobwatchd.cloud.simulated_formats`), so
    ``services.job_url(name, f"{url}/{name}", project_id, job_id)`` queries
    it. A job belongs to one service; asked for under another service's route
    (or at the root, for a non-ECS job) it is not found, in that service's
    error form. Faults, throttling and authentication apply to every route.

    ``speed`` compresses time: with ``speed=10`` a job of 60 simulated
    seconds takes 6 s of wall time. The timestamps it reports are wall-clock
    times from ``clock``. ``seed`` makes job IDs, timelines and fault draws
    reproducible.

    Authentication is off unless one of these is given, and then a job query
    must pass one of them (a 401 with the gateway's error body otherwise):

    - ``token``: a fixed ``X-Auth-Token``;
    - ``credentials`` (access key -> secret key): an ``SDK-HMAC-SHA256``
      signature, verified by recomputing it, with ``X-Sdk-Date`` within
      :data:`MAX_SIGNATURE_AGE` of the clock and ``host`` and ``x-sdk-date``
      signed; an ``X-Project-Id``, when sent, must name the URL's project;
    - ``iam_users`` ((domain, user) -> password): the IAM endpoint
      ``POST /v3/auth/tokens`` issues project-scoped tokens (in
      ``X-Subject-Token``) living ``token_lifetime`` wall-clock seconds, and
      a job query may carry an issued, unexpired token for its project.

    :meth:`throttle_project` makes one project's queries answer 429 (or 403)
    with the gateway's throttling body, as when one account exceeds its quota.
    """

    def __init__(
        self,
        *,
        speed: float = 1.0,
        token: str | None = None,
        faults: Faults | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        credentials: Mapping[str, str] | None = None,
        iam_users: Mapping[tuple[str, str], str] | None = None,
        token_lifetime: float = 24 * 3600.0,
    ) -> None:
        if isinstance(speed, bool) or not math.isfinite(speed) or speed <= 0:
            raise ValueError("speed must be a positive number")
        if token is not None and not token:
            raise ValueError("token must not be empty")
        if not math.isfinite(token_lifetime) or token_lifetime <= 0:
            raise ValueError("token_lifetime must be a positive number of seconds")
        self.credentials: dict[str, str] = dict(credentials or {})
        """Access key -> secret key accepted in ``SDK-HMAC-SHA256`` signatures."""
        self.iam_users: dict[tuple[str, str], str] = dict(iam_users or {})
        """(domain name, user name) -> password the IAM endpoint accepts."""
        self.token_lifetime: float = float(token_lifetime)
        """Wall-clock seconds an issued IAM token is valid."""
        self.throttled: dict[str, int] = {}
        """Project ID -> the HTTP status (429 or 403) all its job queries get."""
        self.project_stats: collections.defaultdict[str, collections.Counter[str]] = (
            collections.defaultdict(collections.Counter)
        )
        """Job queries answered, by project, then by outcome."""
        self.service_stats: collections.defaultdict[str, collections.Counter[str]] = (
            collections.defaultdict(collections.Counter)
        )
        """Job queries answered, by service (``ecs`` for the root route), then by outcome."""
        self.arrivals: collections.defaultdict[str, collections.deque[float]] = (
            collections.defaultdict(lambda: collections.deque(maxlen=MAX_ARRIVALS))
        )
        """Service -> the ``time.monotonic()`` arrival times of its last
        :data:`MAX_ARRIVALS` job queries (see :func:`max_in_window`)."""
        self._tokens: dict[str, tuple[float, str]] = {}  # token -> (expires at, project)
        self.speed: float = float(speed)
        """Time compression factor (simulated seconds per wall second)."""
        self.token: str | None = token
        """The ``X-Auth-Token`` job queries must carry, or None for no auth."""
        self.faults: Faults = faults if faults is not None else Faults()
        """Current fault settings; mutable, changes apply to the next request."""
        self.stats: collections.Counter[str] = collections.Counter()
        """Job queries answered, by outcome (see ``OUTCOMES``)."""
        self._clock = clock
        self._rng = random.Random(seed)
        # A separate stream, so the number of requests served does not change
        # the timelines of jobs created afterwards.
        self._fault_rng = random.Random(self._rng.getrandbits(64))
        self._jobs: dict[str, SimJob] = {}

    # ------------------------------------------------------------- accounts

    def throttle_project(self, project_id: str, status: int = 429) -> None:
        """Answer every job query of ``project_id``, on every service's route, with
        ``status`` (429, or 403 as some gateways do) and the ``APIGW.0308`` body,
        ``Retry-After`` from the faults."""
        if status not in (403, 429):
            raise ValueError("status must be 429 or 403")
        self.throttled[project_id] = status

    def unthrottle_project(self, project_id: str) -> None:
        """Stop throttling ``project_id``."""
        self.throttled.pop(project_id, None)

    def issued_tokens(self) -> list[str]:
        """Every IAM token issued so far (for tests that check they never leak)."""
        return list(self._tokens)

    def revoke_tokens(self) -> None:
        """Invalidate every issued IAM token (as a password change would)."""
        self._tokens.clear()

    # ----------------------------------------------------------------- jobs

    def create_job(
        self,
        job_type: str | None = None,
        *,
        project_id: str = DEFAULT_PROJECT_ID,
        count: int = 1,
        fail: bool = False,
        duration: float | None = None,
        payment: float = 0.0,
        service: str = "ecs",
    ) -> str:
        """Create a job of ``service`` starting now and return its job ID (32 hex
        digits, or a UUID where the service's examples have one).

        ``job_type`` is one of :data:`SERVICE_JOB_TYPES` ``[service]``, by
        default the first (``createServer`` for ECS). Only ECS jobs take
        ``payment``.

        ``count`` is the number of sub-jobs (servers or NICs); job types
        without sub-jobs (``resizeServer``) take only 1. With ``fail`` one
        sub-job (if any) fails and the job ends in FAIL. ``duration`` is the
        simulated seconds from creation to the terminal status; by default it
        is drawn from a log-normal distribution typical of the job type, with
        an occasional slow tail. With ``payment`` (simulated seconds) the job
        first answers ``PENDING_PAYMENT`` that long, as a prepaid resource does
        until its order is paid, and only then starts. Raises
        :class:`ValueError` for a bad value and :class:`TypeError` for a value
        of the wrong type.
        """
        if job_type is None:
            job_type = SERVICE_JOB_TYPES[service][0] if service in SERVICE_JOB_TYPES else ""
        _check_create_args(job_type, project_id, count, fail, duration, payment, service)
        spec = SERVICE_SPECS[service][job_type]
        rng = self._rng
        if duration is None:
            duration = self._draw_duration(spec, count)
        created = self._clock()
        start = created + float(payment) / self.speed
        wall = float(duration) / self.speed

        def at(fraction: float) -> float:
            return start + wall * fraction

        # Fractions of the job's duration: the job runs after 3-10 %, sub-jobs
        # appear shortly after and run within the first 20 %, succeed within
        # 55-93 % (a failure may come from 30 %), and the job ends at 100 %,
        # after all its sub-jobs.
        run_f = rng.uniform(0.03, 0.10)
        init = has_init(service)  # else the job (and its sub-jobs) runs from its start
        failure: tuple[str, str] | None = rng.choice(spec.failures) if fail else None
        entity_id: str | None = None
        subs: tuple[SimSubJob, ...] | None = None
        if spec.sub_job_type is None or service in _SERVICES_WITH_A_RESOURCE:
            entity_id = self._new_entity_id(service)
        if spec.sub_job_type is not None:
            failing = rng.randrange(count) if fail else -1
            made: list[SimSubJob] = []
            for i in range(count):
                begin_f = run_f + rng.uniform(0.005, 0.05)
                sub_run_f = begin_f + rng.uniform(0.005, 0.05)
                sub_failed = i == failing
                end_f = rng.uniform(0.30, 0.90) if sub_failed else rng.uniform(0.55, 0.93)
                sub_begin = at(begin_f)
                made.append(
                    SimSubJob(
                        job_id=self._new_job_id(service),
                        entity_id=self._new_uuid(),
                        begin=sub_begin,
                        running=at(sub_run_f) if init else sub_begin,
                        end=at(end_f),
                        failure=failure if sub_failed else None,
                        job_type=None if service == "ecs" else spec.sub_type(i),
                    )
                )
            subs = tuple(made)
        job_id = self._new_job_id(service)
        self._jobs[job_id] = SimJob(
            job_id=job_id,
            project_id=project_id,
            job_type=job_type,
            spec=spec,
            duration=float(duration),
            begin=start,
            running=at(run_f) if init else start,
            end=at(1.0),
            failure=failure,
            entity_id=entity_id,
            subs=subs,
            created=created,
            service=service,
        )
        return job_id

    def job_ids(self) -> list[str]:
        """Return the IDs of all jobs, oldest first."""
        return list(self._jobs)

    def service_of(self, job_id: str) -> str:
        """The service job ``job_id`` belongs to; :class:`KeyError` for an unknown job."""
        return self._jobs[job_id].service

    def transitions(self, job_id: str) -> list[Transition]:
        """Return the transitions of a job and its sub-jobs reached by now.

        They are in the order they happened; at equal times, causes come
        before effects, so every sub-job's terminal transition precedes the
        job's. Statuses are jobwatchd's (``INIT``, ``RUNNING``, ``SUCCESS``,
        ``FAIL``, and ECS's ``PENDING_PAYMENT``) whatever the service's own
        words (CCE's ``Running``, ELB's ``COMPLETE``, RDS's ``Completed``...):
        what jobwatchd maps the answers to, so they compare with its events.
        Services without an initial status (the RDS family, SFS Turbo) have
        no ``INIT``: their jobs are ``RUNNING`` from the start. Raises
        :class:`KeyError` for an unknown job.
        """
        job = self._jobs[job_id]
        now = self._clock()
        terminal = FAIL if job.failure is not None else SUCCESS
        init = has_init(job.service)
        found = [
            *(
                [Transition(job_id, None, PENDING_PAYMENT, job.created)]
                if job.created < job.begin
                else []
            ),
            *([Transition(job_id, None, INIT, job.begin)] if init else []),
            Transition(job_id, None, RUNNING, job.running),
        ]
        for sub in job.subs or ():
            to = FAIL if sub.failure is not None else SUCCESS
            if init:
                found.append(Transition(sub.job_id, job_id, INIT, sub.begin))
            found.append(Transition(sub.job_id, job_id, RUNNING, sub.running))
            found.append(Transition(sub.job_id, job_id, to, sub.end))
        found.append(Transition(job_id, None, terminal, job.end))
        # The list is built in causal order and sort() is stable.
        reached = [t for t in found if t.at <= now]
        reached.sort(key=lambda t: t.at)
        return reached

    def job_body(self, job_id: str, now: float | None = None) -> dict[str, Any]:
        """Return the vendor response body of a job at ``now`` (default: the clock),
        in its service's format. Raises :class:`KeyError` for an unknown job.
        """
        job = self._jobs[job_id]
        return render(job, self._clock() if now is None else now)

    def _draw_duration(self, spec: JobSpec, count: int) -> float:
        rng = self._rng
        # Batches take somewhat longer than single operations.
        median = spec.median_duration * (1.0 + 0.15 * math.log2(count))
        seconds = rng.lognormvariate(math.log(median), spec.sigma)
        if rng.random() < 0.05:  # the slow tail real clouds have
            seconds *= rng.uniform(2.0, 5.0)
        return min(max(seconds, 5.0), 3600.0)

    def _new_job_id(self, service: str = "ecs") -> str:
        while True:
            if service in UUID_JOB_IDS:
                job_id = self._new_uuid()
            else:
                job_id = f"{self._rng.getrandbits(128):032x}"
            if job_id not in self._jobs:
                return job_id

    def _new_entity_id(self, service: str) -> str:
        suffix = INSTANCE_SUFFIXES.get(service)
        if suffix is None:
            return self._new_uuid()
        return f"{self._rng.getrandbits(128):032x}{suffix}"

    def _new_uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    # ----------------------------------------------------------------- HTTP

    def app(self) -> web.Application:
        """Build the aiohttp application serving the job API and ``/_sim/`` control."""
        app = web.Application()
        app.router.add_get("/v1/{project_id}/jobs/{job_id}", self._job_handler("ecs"))
        for name, entry in services.SERVICES.items():
            # The catalogue's own path templates use aiohttp's {name} placeholders.
            app.router.add_get(f"/{name}{entry.path}", self._job_handler(name))
        app.router.add_post("/v3/auth/tokens", self._handle_iam_token)
        app.router.add_post("/_sim/jobs", self._handle_create)
        app.router.add_get("/_sim/jobs", self._handle_list)
        app.router.add_get("/_sim/jobs/{job_id}/transitions", self._handle_transitions)
        app.router.add_get("/_sim/faults", self._handle_get_faults)
        app.router.add_put("/_sim/faults", self._handle_put_faults)
        app.router.add_get("/_sim/stats", self._handle_stats)
        return app

    def _draw_fault(self) -> str | None:
        faults, rng = self.faults, self._fault_rng
        for outcome, probability in (
            ("429", faults.throttle),
            ("5xx", faults.error_5xx),
            ("404", faults.not_found),
            ("malformed", faults.malformed),
            ("no_status", faults.no_status),
            ("400", faults.rejected),
        ):
            # random() < 1.0 always holds and < 0.0 never does, so 1 and 0 are exact.
            if probability > 0.0 and rng.random() < probability:
                return outcome
        return None

    def _job_handler(
        self, service: str
    ) -> Callable[[web.Request], Coroutine[Any, Any, web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            return await self._handle_job(request, service)

        return handle

    async def _handle_job(self, request: web.Request, service: str) -> web.Response:
        self.arrivals[service].append(time.monotonic())
        if self.faults.latency > 0:
            await asyncio.sleep(self.faults.latency)
        request_id = uuid.uuid4().hex
        headers = {"X-Request-Id": request_id}
        project_id = request.match_info["project_id"]
        counts = self.project_stats[project_id]
        per_service = self.service_stats[service]

        def count(outcome: str) -> None:
            self.stats[outcome] += 1
            counts[outcome] += 1
            per_service[outcome] += 1

        refusal = await self._authenticate(request, project_id, request_id)
        if refusal is not None:
            count("unauthorized")
            return _json(refusal, 401, headers)
        if project_id in self.throttled:
            count("throttled")
            return self._throttled(self.throttled[project_id], request_id, headers)
        query_key = services.SERVICES[service].query_key
        if query_key is None:
            job_id: str | None = request.match_info["job_id"]
        else:
            job_id = request.query.get(query_key)
        job = self._jobs.get(job_id) if job_id else None
        if job is None or job.project_id != project_id or job.service != service:
            count("unknown_job")
            if service == "ecs":
                body = _vendor_error("Common.0011", "Failed to obtain the job.")
                return _json(body, 400, headers)
            status, body = not_found(service, request_id)
            return _json(body, status, headers)
        fault = self._draw_fault()
        count(fault or "ok")
        if fault == "429":
            return self._throttled(429, request_id, headers)
        if service != "ecs" and fault is not None and fault != "malformed":
            return self._service_fault(service, fault, job, request_id, headers)
        if fault == "5xx":
            status = self._fault_rng.choice((500, 502, 503))
            return _json(_vendor_error("Common.0001", "System error."), status, headers)
        if fault == "404":
            return _json(_vendor_error("Common.0011", "Failed to obtain the job."), 404, headers)
        if fault == "400":
            # A permanent rejection other than "Invalid job ID".
            body = _vendor_error("Ecs.0005", "Invalid request parameter.")
            return _json(body, 400, headers)
        if fault == "no_status":
            # The job API's own error form: code and message at the top level.
            no_status = {"code": "Common.0021", "message": "Failed to obtain the job."}
            return _json(no_status, 200, headers)
        raw = orjson.dumps(render(job, self._clock(), request_id))
        if fault == "malformed":
            # Any strict prefix of a JSON object is invalid JSON.
            raw = raw[: max(1, len(raw) // 2)]
        return web.Response(
            body=raw, status=200, headers=headers, content_type=_JSON_TYPE, charset="UTF-8"
        )

    def _service_fault(
        self, service: str, fault: str, job: SimJob, request_id: str, headers: dict[str, str]
    ) -> web.Response:
        """A fault (other than 429 and malformed) in a non-ECS service's own form."""
        style = ERROR_STYLES[service]
        if fault == "5xx":
            status = self._fault_rng.choice((500, 502, 503))
            return _json(error_body(service, *style.server_error, request_id), status, headers)
        if fault == "404":
            status, body = not_found(service, request_id, 404)
            return _json(body, status, headers)
        if fault == "400":
            return _json(error_body(service, *style.rejected, request_id), 400, headers)
        # no_status: ECS's own query-failure form is ECS's; the ECS shape of the
        # other services loses its status, a nested format the one in its envelope.
        if services.SERVICES[service].answer_format == "ecs":
            no_status = {"code": "Common.0021", "message": "Failed to obtain the job."}
            return _json(no_status, 200, headers)
        return _json(without_status(service, render(job, self._clock(), request_id)), 200, headers)

    async def _authenticate(
        self, request: web.Request, project_id: str, request_id: str
    ) -> dict[str, Any] | None:
        """None when the job query may pass, else the body of the 401."""
        if self.token is None and not self.credentials and not self.iam_users:
            return None
        authorization = request.headers.get("Authorization")
        if authorization is not None and self.credentials:
            return await self._verify_signature(request, authorization, project_id, request_id)
        given = request.headers.get("X-Auth-Token")
        if given is not None:
            if self.token is not None and hmac.compare_digest(given.encode(), self.token.encode()):
                return None
            issued = self._tokens.get(given)
            if issued is not None:
                expires, scope = issued
                if self._clock() >= expires:
                    return _gateway_error("APIGW.0307", "The token must be updated.", request_id)
                if scope != project_id:
                    return _iam_refusal("the token is not scoped to this project", request_id)
                return None
        if not self.credentials and not self.iam_users:
            return _vendor_error("Common.0013", "Invalid token.")
        return _iam_refusal("no valid signature or token", request_id)

    async def _verify_signature(
        self, request: web.Request, authorization: str, project_id: str, request_id: str
    ) -> dict[str, Any] | None:
        parsed = signing.parse_authorization(authorization)
        if parsed is None:
            return _iam_refusal(f"the algorithm must be {signing.ALGORITHM}", request_id)
        access_key, signed, given = parsed
        secret_key = self.credentials.get(access_key)
        if secret_key is None:
            return _iam_refusal("unknown access key", request_id)
        if "host" not in signed or "x-sdk-date" not in signed:
            return _iam_refusal("host and x-sdk-date must be signed", request_id)
        sdk_date = request.headers.get(signing.HEADER_DATE, "")
        try:
            when = datetime.strptime(sdk_date, signing.DATE_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            return _iam_refusal("x-sdk-date is missing or malformed", request_id)
        if abs(self._clock() - when.timestamp()) > MAX_SIGNATURE_AGE:
            return _iam_refusal("x-sdk-date expired", request_id)
        headers = {name: request.headers[name] for name in signed if name in request.headers}
        if signing.HEADER_CONTENT_SHA256 in request.headers:
            headers[signing.HEADER_CONTENT_SHA256.lower()] = request.headers[
                signing.HEADER_CONTENT_SHA256
            ]
        try:
            canonical = signing.canonical_request(
                request.method, request.rel_url, headers, signed, await request.read()
            )
        except ValueError:
            return _iam_refusal("a signed header is missing", request_id)
        expected = signing.signature(secret_key, signing.string_to_sign(canonical, sdk_date))
        if not hmac.compare_digest(expected, given):
            return _iam_refusal("verify aksk signature fail", request_id)
        sent_project = request.headers.get("X-Project-Id")
        if sent_project is not None and sent_project != project_id:
            return _iam_refusal("X-Project-Id does not match the URL", request_id)
        return None

    def _throttled(self, status: int, request_id: str, headers: dict[str, str]) -> web.Response:
        limit = "policy user over ratelimit,limit:60,time:1 minute"
        body = {
            "error_code": "APIGW.0308",
            "error_msg": f"The throttling threshold has been reached: {limit}",
            "request_id": request_id,
        }
        headers["Retry-After"] = str(math.ceil(self.faults.retry_after))
        return _json(body, status, headers)

    async def _handle_iam_token(self, request: web.Request) -> web.Response:
        """IAM's ``POST /v3/auth/tokens``: password authentication, project scope."""
        headers = {"X-Request-Id": uuid.uuid4().hex}
        try:
            domain, user, password, project_id = _parse_password_auth(await _read_json(request))
        except (TypeError, ValueError) as exc:
            self.stats["iam_refused"] += 1
            return _json(_iam_error(400, "Bad Request", str(exc)), 400, headers)
        known = self.iam_users.get((domain, user))
        if known is None or not hmac.compare_digest(known.encode(), password.encode()):
            self.stats["iam_refused"] += 1
            message = "The username or password is wrong."
            return _json(_iam_error(401, "Unauthorized", message), 401, headers)
        now = self._clock()
        expires = now + self.token_lifetime
        # Expired tokens are kept a while, so a late query gets "expired", not "invalid".
        self._tokens = {t: v for t, v in self._tokens.items() if v[0] > now - 3600}
        token = "MIIT" + secrets.token_urlsafe(96)
        self._tokens[token] = (expires, project_id)
        self.stats["iam_tokens"] += 1
        body = {
            "token": {
                "expires_at": _iam_time(expires),
                "issued_at": _iam_time(now),
                "methods": ["password"],
                "project": {"id": project_id, "domain": {"name": domain}},
                "user": {"name": user, "domain": {"name": domain}},
            }
        }
        headers["X-Subject-Token"] = token
        return _json(body, 201, headers)

    async def _handle_create(self, request: web.Request) -> web.Response:
        try:
            specs, batch = _parse_create_body(await _read_json(request))
        except (TypeError, ValueError) as exc:
            return _bad_request(str(exc))
        # Everything was validated first, so a bad batch creates nothing.
        ids = [self._create_from(spec) for spec in specs]
        if batch:
            return _json({"jobs": [{"job_id": job_id} for job_id in ids]}, 201)
        return _json({"job_id": ids[0]}, 201)

    def _create_from(self, spec: dict[str, Any]) -> str:
        return self.create_job(
            spec["job_type"],
            project_id=spec["project_id"],
            count=spec["count"],
            fail=spec["fail"],
            duration=spec["duration"],
            payment=spec["payment"],
            service=spec["service"],
        )

    async def _handle_list(self, request: web.Request) -> web.Response:
        return _json({"job_ids": self.job_ids()})

    async def _handle_transitions(self, request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        if job_id not in self._jobs:
            return _json({"error": "not_found", "message": f"no job {job_id}"}, 404)
        return _json([t.to_dict() for t in self.transitions(job_id)])

    async def _handle_get_faults(self, request: web.Request) -> web.Response:
        return _json(self.faults.to_dict())

    async def _handle_put_faults(self, request: web.Request) -> web.Response:
        try:
            data = await _read_json(request)
            if not isinstance(data, dict):
                return _bad_request("body must be a JSON object")
            self.faults.update(data)
        except (TypeError, ValueError) as exc:
            return _bad_request(str(exc))
        return _json(self.faults.to_dict())

    async def _handle_stats(self, request: web.Request) -> web.Response:
        counts: dict[str, object] = {outcome: self.stats[outcome] for outcome in OUTCOMES}
        counts.update(self.stats)
        counts["services"] = {
            name: {
                **{outcome: self.service_stats[name][outcome] for outcome in OUTCOMES},
                **self.service_stats[name],
            }
            for name in services.SERVICES
        }
        return _json(counts)


def _vendor_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _gateway_error(code: str, message: str, request_id: str) -> dict[str, Any]:
    """The API gateway's own error form (authentication, throttling)."""
    return {"error_code": code, "error_msg": message, "request_id": request_id}


def _iam_refusal(detail: str, request_id: str) -> dict[str, Any]:
    return _gateway_error(
        "APIGW.0301", f"Incorrect IAM authentication information: {detail}", request_id
    )


def _iam_error(code: int, title: str, message: str) -> dict[str, Any]:
    """IAM's (Keystone's) error form: a numeric code."""
    return {"error": {"code": code, "message": message, "title": title}}


def _iam_time(t: float) -> str:
    """IAM's timestamps: ``2026-01-01T12:00:00.123000Z``."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _field(data: object, *path: str) -> object:
    for name in path:
        if not isinstance(data, dict) or name not in data:
            raise ValueError(f"missing {'.'.join(path)}")
        data = data[name]
    return data


def _text_field(data: object, *path: str) -> str:
    value = _field(data, *path)
    if not isinstance(value, str) or not value:
        raise TypeError(f"{'.'.join(path)} must be a non-empty string")
    return value


def _parse_password_auth(data: object) -> tuple[str, str, str, str]:
    """(domain, user, password, project ID) of a password token request."""
    methods = _field(data, "auth", "identity", "methods")
    if not isinstance(methods, list) or "password" not in methods:
        raise ValueError("auth.identity.methods must include password")
    user = ("auth", "identity", "password", "user")
    project_id = _text_field(data, "auth", "scope", "project", "id")
    if not _PROJECT_ID_RE.fullmatch(project_id):
        raise ValueError("auth.scope.project.id is not a project ID")
    return (
        _text_field(data, *user, "domain", "name"),
        _text_field(data, *user, "name"),
        _text_field(data, *user, "password"),
        project_id,
    )


def _json(
    data: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        headers=headers,
        content_type=_JSON_TYPE,
        charset="UTF-8",
    )


def _bad_request(message: str) -> web.Response:
    return _json({"error": "bad_request", "message": message}, 400)


async def _read_json(request: web.Request) -> object:
    raw = await request.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError("body is not valid JSON") from None


_CREATE_KEYS: Final = frozenset(
    {"service", "job_type", "project_id", "count", "fail", "duration", "payment"}
)


def _parse_create_body(data: object) -> tuple[list[dict[str, Any]], bool]:
    """Validate a ``POST /_sim/jobs`` body; return the job specs and whether it is a batch."""
    if not isinstance(data, dict):
        raise TypeError("body must be a JSON object")
    if "jobs" not in data:
        return [_parse_job_request(data)], False
    if len(data) != 1:
        raise ValueError('a batch body has only the key "jobs"')
    items = data["jobs"]
    if not isinstance(items, list) or not items:
        raise ValueError("jobs must be a non-empty list")
    if len(items) > MAX_BATCH:
        raise ValueError(f"at most {MAX_BATCH} jobs per request")
    specs = []
    for index, item in enumerate(items):
        try:
            specs.append(_parse_job_request(item))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"jobs[{index}]: {exc}") from None
    return specs, True


def _parse_job_request(item: object) -> dict[str, Any]:
    """Validate one job of ``POST /_sim/jobs`` and fill in the defaults."""
    if not isinstance(item, dict):
        raise TypeError("a job must be a JSON object")
    unknown = set(item) - _CREATE_KEYS
    if unknown:
        raise ValueError(f"unknown key(s): {', '.join(sorted(unknown))}")
    service = item.get("service", "ecs")
    known = isinstance(service, str) and service in SERVICE_JOB_TYPES
    default_type = SERVICE_JOB_TYPES[service][0] if known else ""
    spec: dict[str, Any] = {
        "job_type": item.get("job_type", default_type),
        "project_id": item.get("project_id", DEFAULT_PROJECT_ID),
        "count": item.get("count", 1),
        "fail": item.get("fail", False),
        "duration": item.get("duration"),
        "payment": item.get("payment", 0.0),
        "service": service,
    }
    _check_create_args(**spec)
    return spec


async def start_simulator(
    sim: Simulator,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[web.AppRunner, int]:
    """Serve ``sim`` on a real socket; return the runner and the bound port.

    ``port=0`` picks a free port; ``ssl_context`` serves HTTPS. The caller
    stops the server with ``await runner.cleanup()``.
    """
    runner = web.AppRunner(sim.app())
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
        bound = int(runner.addresses[0][1])
    except BaseException:
        await runner.cleanup()
        raise
    return runner, bound


def run_standalone(
    *,
    host: str,
    port: int,
    speed: float,
    token: str | None,
    faults: Faults,
    demo_jobs: int,
    seed: int | None,
) -> None:
    """Run the simulator in the foreground until SIGINT or SIGTERM.

    Creates ``demo_jobs`` jobs of assorted services and types (about one in
    four failing) and prints one line per demo job (with its service), one
    with the listening URL, and a ``curl`` line per service of the demo jobs
    (its ``/{service}`` prefix URL).
    """
    if demo_jobs < 0:
        raise ValueError("demo_jobs must be zero or more")
    sim = Simulator(speed=speed, token=token, faults=faults, seed=seed)
    asyncio.run(_serve(sim, host, port, demo_jobs))


async def _serve(sim: Simulator, host: str, port: int, demo_jobs: int) -> None:
    runner, bound = await start_simulator(sim, host, port)
    try:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            # Not available on Windows; Ctrl-C then ends asyncio.run() instead.
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, stop.set)
        demo = create_demo_jobs(sim, demo_jobs)
        for job in demo:
            duration = float(str(job["duration"]))
            subs = f"sub_jobs={job['sub_jobs']}" if job["sub_jobs"] else "no sub-jobs"
            print(
                f"demo job {job['job_id']} {job['service']} {job['job_type']} {subs} "
                f"-> {job['outcome']} after {duration:.1f}s simulated "
                f"({duration / sim.speed:.1f}s wall)",
                flush=True,
            )
        url = f"http://[{host}]:{bound}" if ":" in host else f"http://{host}:{bound}"
        auth = " X-Auth-Token required" if sim.token is not None else ""
        print(
            f"simulated job APIs listening on {url} (ECS at /, every service at /{{service}}) "
            f"project_id={DEFAULT_PROJECT_ID} speed={sim.speed:g}{auth}",
            flush=True,
        )
        header = " -H 'X-Auth-Token: <token>'" if sim.token is not None else ""
        if demo:
            example = sim.job_ids()[0]
            print(f"try: curl{header} {url}/v1/{DEFAULT_PROJECT_ID}/jobs/{example}", flush=True)
        shown: set[str] = set()
        for job in demo:
            service = str(job["service"])
            if service in shown:
                continue
            shown.add(service)
            job_id = str(job["job_id"])
            query = services.job_url(service, f"{url}/{service}", DEFAULT_PROJECT_ID, job_id)
            print(f"try ({service}): curl{header} '{query}'", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


DEMO_SERVICES: Final[tuple[str, ...]] = (
    "ecs",
    "evs",
    "cce",
    "ims",
    "elb",
    "rds",
    "vpc",
    "bms",
    "dcs",
    "sfs-turbo",
    "taurusdb",
    "dds",
    "geminidb",
)
"""The services demo jobs cycle over: with three demo jobs, an ECS, an EVS and a CCE one."""


def create_demo_jobs(
    sim: Simulator, count: int, project_id: str = DEFAULT_PROJECT_ID
) -> list[dict[str, object]]:
    """``count`` jobs over :data:`DEMO_SERVICES` in turn (each service's job types
    in turn), one in four failing; what each will do."""
    demo: list[dict[str, object]] = []
    for i in range(count):
        service = DEMO_SERVICES[i % len(DEMO_SERVICES)]
        types = SERVICE_JOB_TYPES[service]
        job_type = types[(i // len(DEMO_SERVICES)) % len(types)]
        has_subs = SERVICE_SPECS[service][job_type].sub_job_type is not None
        items = 1 + i % 3 if has_subs else 1
        fail = i % 4 == 3
        job_id = sim.create_job(
            job_type, project_id=project_id, count=items, fail=fail, service=service
        )
        demo.append(
            {
                "job_id": job_id,
                "service": service,
                "job_type": job_type,
                "sub_jobs": items if has_subs else 0,
                "outcome": FAIL if fail else SUCCESS,
                "duration": round(sim._jobs[job_id].duration, 1),
            }
        )
    return demo
