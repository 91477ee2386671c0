"""The webhook sink against real aiohttp receivers on 127.0.0.1.

Receivers verify every signature with the Standard Webhooks reference library
(``standardwebhooks``) and parse every body with the CloudEvents SDK
(``cloudevents``). In-process tests drive a :class:`SinkRunner` over a real
SQLite store; the outage, crash and dead-letter tests run the daemon as a
subprocess with the receiver on its own thread and event loop.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import itertools
import random
import socket
import sqlite3
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson
import pytest
from aiohttp import web
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from cloudevents.core.formats.json import JSONFormat
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from structlog.testing import capture_logs

from jobwatchd import __version__
from jobwatchd.config import Secret, SinkConfig, SinkFilter
from jobwatchd.engine.delivery import SinkRunner
from jobwatchd.models import JOB_TRANSITION, SUBJOB_TRANSITION, NewEvent, NewJob, iso_time
from jobwatchd.sinks import SinkContext
from jobwatchd.sinks.deadletters import DeadLetterStore
from jobwatchd.sinks.webhook import BATCH_CONTENT_TYPE, CONTENT_TYPE, WebhookOptions, WebhookSink
from jobwatchd.store.sqlite import SQLiteStore
from tests.helpers.cli import cli as run_cli
from tests.helpers.config import write_config
from tests.helpers.daemon import DaemonProcess
from tests.helpers.events import all_terminal, read_events
from tests.helpers.http import http
from tests.helpers.servers import RunningSimulator, port_of, serve_app, started_in_thread
from tests.helpers.waiting import async_wait_until, wait_until

SECRET = "whsec_" + base64.b64encode(b"jobwatchd-test-signing-key-0001").decode()
NEXT_SECRET = "whsec_" + base64.b64encode(b"jobwatchd-test-signing-key-0002").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"not-the-key-anyone-configured").decode()

Answer = tuple[int, Mapping[str, str]]


# -- the receiver ---------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request the receiver answered."""

    arrived: float
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    status: int
    peer: Any

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def cloud_events(self) -> list[BaseCloudEvent]:
        """The body parsed by the CloudEvents SDK (structured or batched mode)."""
        if self.headers["content-type"] == BATCH_CONTENT_TYPE:
            return [JSONFormat().read(None, orjson.dumps(item)) for item in orjson.loads(self.body)]
        return [from_http_event(HTTPMessage(headers=dict(self.headers), body=self.body))]

    def event_ids(self) -> list[str]:
        return [event.get_id() for event in self.cloud_events()]


@dataclass
class Receiver:
    """Records every request and answers with ``answer(body)`` after ``delay(body)``."""

    answer: Callable[[bytes], Answer] = lambda body: (204, {})
    delay: Callable[[bytes], float] = lambda body: 0.0
    requests: list[Request] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    url: str = ""
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        body = await request.read()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            pause = self.delay(body)
            if pause:
                await asyncio.sleep(pause)  # a slow endpoint, not synchronisation
        finally:
            self.in_flight -= 1
        status, headers = self.answer(body)
        transport = request.transport
        self.requests.append(
            Request(
                arrived=arrived,
                headers={key.lower(): value for key, value in request.headers.items()},
                body=body,
                status=status,
                peer=transport.get_extra_info("peername") if transport else None,
            )
        )
        text = "" if status < 300 else f"refused with {status}: schema mismatch"
        return web.Response(status=status, headers=dict(headers), text=text)

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/hook/{token}", self._handle)
        self._runner = await serve_app(app, port, access_log=None)
        bound = port_of(self._runner)
        self.url = f"http://127.0.0.1:{bound}/hook/url-token-s3cr3t?key=query-s3cr3t"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def snapshot(self) -> list[Request]:
        return list(self.requests)

    def accepted(self) -> list[Request]:
        return [request for request in self.snapshot() if 200 <= request.status < 300]

    def accepted_ids(self) -> set[str]:
        return {event_id for request in self.accepted() for event_id in request.event_ids()}


def always(status: int, headers: Mapping[str, str] | None = None) -> Callable[[bytes], Answer]:
    answer: Answer = (status, MappingProxyType(dict(headers or {})))
    return lambda body: answer


def verify(request: Request, secret: str = SECRET) -> Any:
    """The body as verified by the reference library (raises if the signature is wrong)."""
    return Webhook(secret).verify(request.body, dict(request.headers))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A receiver in the test's event loop."""
    running = Receiver()
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
def threaded_receiver() -> Iterator[Receiver]:
    """A receiver on its own thread and loop, for tests that block on a subprocess."""
    with started_in_thread(Receiver(), Receiver.start, Receiver.stop, name="receiver") as running:
        yield running


# -- in-process: a runner over a real store -------------------------------------------


def make_event(job: str, n: int, *, kind: str = JOB_TRANSITION, age: float = 0.0) -> dict[str, Any]:
    """A CloudEvent of job ``job``, observed ``age`` seconds ago."""
    subject = job if kind == JOB_TRANSITION else f"{job}-sub"
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{job}/{n}")),
        "source": "/jobwatchd/default/ecs",
        "type": kind,
        "subject": subject,
        "time": iso_time(time.time() - age),
        "datacontenttype": "application/json",
        "data": {"job_id": subject, "n": n, "to": "RUNNING", "terminal": False, "labels": {}},
    }


async def record(
    store: SQLiteStore, jobs: Sequence[str], per_job: int, *, age: float = 0.0
) -> list[str]:
    """``per_job`` events for each job, interleaved in the log, observed ``age``
    seconds ago; their ids in log order."""
    registered = await store.register(
        [NewJob(job_id=job, project_id="p", account="a", labels={}) for job in jobs], now=1.0
    )
    records = {result.job.job_id: result.job for result in registered}
    ids = []
    for n in range(per_job):
        for job in jobs:
            kind = SUBJOB_TRANSITION if n % 3 == 1 else JOB_TRANSITION
            event = make_event(job, n, kind=kind, age=age)
            payload = NewEvent(
                event_id=event["id"], job_id=job, type=event["type"], payload=orjson.dumps(event)
            )
            await store.record(records[job], [payload])
            ids.append(event["id"])
    return ids


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "db.sqlite")
    await opened.open()
    yield opened
    await opened.close()


@dataclass
class Running:
    sink: WebhookSink
    runner: SinkRunner
    task: asyncio.Task[None]


@pytest.fixture
async def start_sink(tmp_path: Path, store: SQLiteStore) -> AsyncIterator[Callable[..., Any]]:
    started: list[Running] = []

    async def start(url: str, **options: Any) -> Running:
        sink_filter = options.pop("filter", SinkFilter())
        options = {"secrets": (Secret(SECRET),), "timeout": 2.0, **options}
        config = SinkConfig(type="webhook", name="hook", options=WebhookOptions(url=url, **options))
        sink = WebhookSink(config, SinkContext(state_dir=tmp_path))
        await sink.start()
        runner = SinkRunner(sink, sink_filter, store)
        running = Running(sink, runner, asyncio.create_task(runner.run()))
        started.append(running)
        return running

    yield start
    for running in started:
        running.task.cancel()
        await asyncio.gather(running.task, return_exceptions=True)
        await running.sink.close()


def per_job_order(requests: Sequence[Request]) -> dict[str, list[str]]:
    """Event ids per job (the ``job`` of the event id's uuid5 name), first acceptance only."""
    seen: set[str] = set()
    order: dict[str, list[str]] = {}
    for request in requests:
        for event in request.cloud_events():
            if event.get_id() in seen:
                continue
            seen.add(event.get_id())
            data = event.get_data()
            assert isinstance(data, dict)
            job = str(data["job_id"]).removesuffix("-sub")
            order.setdefault(job, []).append(event.get_id())
    return order


def expected_order(jobs: Sequence[str], per_job: int) -> dict[str, list[str]]:
    return {job: [make_event(job, n)["id"] for n in range(per_job)] for job in jobs}


async def test_signed_cloudevent_with_headers_over_one_kept_alive_connection(
    receiver: Receiver, store: SQLiteStore, start_sink: Callable[..., Any]
) -> None:
    ids = await record(store, ["job1"], 4)
    running = await start_sink(receiver.url)
    await async_wait_until(lambda: len(receiver.accepted()) == 4, timeout=10)
    requests = receiver.accepted()
    for request, event_id in zip(requests, ids, strict=True):
        assert verify(request)["id"] == event_id
        (event,) = request.cloud_events()
        assert event.get_id() == event_id == request.webhook_id
        assert event.get_source() == "/jobwatchd/default/ecs"
        assert request.headers["content-type"] == CONTENT_TYPE
        assert request.headers["user-agent"] == f"jobwatchd/{__version__}"
        assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
        with pytest.raises(WebhookVerificationError):
            verify(request, OTHER_SECRET)
    assert len({request.peer for request in requests}) == 1, "keep-alive: one connection"
    await async_wait_until(lambda: running.runner.position == 4, timeout=10)
    assert await store.get_position("hook") == 4


async def test_rotation_signs_with_every_secret(
    tmp_path: Path, receiver: Receiver, store: SQLiteStore, start_sink: Callable[..., Any]
) -> None:
    secret_file = tmp_path / "next-secret"
    secret_file.write_text(NEXT_SECRET + "\n")
    secret_file.chmod(0o600)
    await record(store, ["job1"], 1)
    await start_sink(receiver.url, secret_files=(secret_file,))
    (request,) = await async_wait_until(receiver.accepted, timeout=10)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert verify(request, SECRET) == verify(request, NEXT_SECRET)  # either key alone verifies
    with pytest.raises(WebhookVerificationError):
        verify(request, OTHER_SECRET)


def retry_after_date(seconds: float) -> str:
    return email.utils.formatdate(time.time() + seconds, usegmt=True)


@pytest.mark.parametrize(
    ("first", "headers", "min_gap"),
    [
        (503, {}, 0.0),
        (500, {}, 0.0),
        (408, {}, 0.0),
        (429, {"Retry-After": "1"}, 0.95),
        (503, {"Retry-After": "date"}, 0.95),
    ],
)
async def test_retryable_answers_are_retried(
    receiver: Receiver,
    store: SQLiteStore,
    start_sink: Callable[..., Any],
    first: int,
    headers: dict[str, str],
    min_gap: float,
) -> None:
    failures = 1

    def answer(body: bytes) -> Answer:
        if len(receiver.requests) >= failures:
            return 204, {}
        if headers.get("Retry-After") == "date":
            # an HTTP date has whole seconds: 2 s from now is 1 to 2 s away
            return first, {"Retry-After": retry_after_date(2.0)}
        return first, headers

    receiver.answer = answer
    (event_id,) = await record(store, ["job1"], 1)
    running = await start_sink(receiver.url)
    await async_wait_until(receiver.accepted, timeout=15)
    requests = receiver.snapshot()
    assert [request.status for request in requests] == [first, 204]
    assert {request.webhook_id for request in requests} == {event_id}
    for earlier, later in itertools.pairwise(requests):
        assert later.arrived - earlier.arrived >= min_gap
    assert running.sink.dead_lettered == 0
    assert running.sink.failed_attempts == failures
    await async_wait_until(lambda: running.runner.position == 1, timeout=10)


async def test_connection_errors_and_timeouts_are_retried(
    store: SQLiteStore, start_sink: Callable[..., Any]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    receiver = Receiver()
    arrivals = itertools.count()
    receiver.delay = lambda body: 1.0 if next(arrivals) == 0 else 0.0
    (event_id,) = await record(store, ["job1"], 1)
    url = f"http://127.0.0.1:{port}/hook/url-token-s3cr3t?key=query-s3cr3t"
    with capture_logs() as logs:
        running = await start_sink(url, timeout=0.3)
        # nothing listens yet: connection refused, retried
        await async_wait_until(lambda: running.sink.failed_attempts >= 2, timeout=10)
        await receiver.start(port)
        try:
            await async_wait_until(lambda: running.runner.position == 1, timeout=15)
        finally:
            await receiver.stop()
    # the first answer came after the 0.3 s timeout: retried, same webhook-id
    assert next(arrivals) >= 2
    assert {request.webhook_id for request in receiver.snapshot()} == {event_id}
    assert running.sink.dead_lettered == 0
    reasons = [log["reason"] for log in logs if log["event"] == "webhook.retry"]
    assert any("Connect" in reason for reason in reasons)
    assert any("Timeout" in reason for reason in reasons)
    assert b"s3cr3t" not in orjson.dumps(logs)


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
async def test_other_4xx_dead_letters_at_once_and_the_job_goes_on(
    tmp_path: Path,
    receiver: Receiver,
    store: SQLiteStore,
    start_sink: Callable[..., Any],
    status: int,
) -> None:
    first, second = await record(store, ["job1"], 2)
    receiver.answer = lambda body: (status, {}) if orjson.loads(body)["id"] == first else (204, {})
    with capture_logs() as logs:
        running = await start_sink(receiver.url)
        await async_wait_until(receiver.accepted, timeout=10)
        await async_wait_until(lambda: running.runner.position == 2, timeout=10)
    assert [request.webhook_id for request in receiver.snapshot()] == [first, second]
    (entry,) = DeadLetterStore(tmp_path).read("hook")
    assert (entry.event_id, entry.status, entry.attempts) == (first, status, 1)
    assert entry.reason == f"HTTP {status}: refused with {status}: schema mismatch"
    assert entry.event["id"] == first and entry.job_id == "job1"
    assert running.sink.dead_lettered == 1
    (line,) = [log for log in logs if log["event"] == "webhook.dead_lettered"]
    assert line["event_id"] == first and line["log_level"] == "error"


async def test_retries_stop_at_max_retry_age_and_nothing_secret_is_logged(
    tmp_path: Path, receiver: Receiver, store: SQLiteStore, start_sink: Callable[..., Any]
) -> None:
    receiver.answer = always(503)
    (event_id,) = await record(store, ["job1"], 1)
    with capture_logs() as logs:
        running = await start_sink(receiver.url, max_retry_age=1.0)
        await async_wait_until(lambda: running.sink.dead_lettered == 1, timeout=10)
        await async_wait_until(lambda: running.runner.position == 1, timeout=10)
    assert len(receiver.snapshot()) >= 2
    (entry,) = DeadLetterStore(tmp_path).read("hook")
    assert entry.event_id == event_id and entry.status == 503
    assert entry.reason.startswith("gave up after") and "max_retry_age" in entry.reason
    assert any(log["event"] == "webhook.retry" for log in logs)
    written = orjson.dumps(logs) + (tmp_path / "dead-letters" / "hook.jsonl").read_bytes()
    for secret in (SECRET, SECRET.removeprefix("whsec_"), "url-token-s3cr3t", "query-s3cr3t"):
        assert secret.encode() not in written


async def test_max_retry_age_counts_from_the_transition_not_from_the_first_attempt(
    tmp_path: Path, receiver: Receiver, store: SQLiteStore, start_sink: Callable[..., Any]
) -> None:
    # An event observed an hour ago (say, before a restart during an outage)
    # gets no fresh 60 s of retries: its first failure dead-letters it.
    receiver.answer = always(503)
    (old,) = await record(store, ["job1"], 1, age=3600.0)
    running = await start_sink(receiver.url, max_retry_age=60.0)
    await async_wait_until(lambda: running.runner.position == 1, timeout=10)
    assert running.sink.dead_lettered == 1
    assert len(receiver.snapshot()) == 1
    (entry,) = DeadLetterStore(tmp_path).read("hook")
    assert entry.event_id == old and "after the transition" in entry.reason
    # A fresh event under the same sink is retried (not dead-lettered at once).
    (fresh,) = await record(store, ["job2"], 1)
    running.runner.notify()
    await async_wait_until(lambda: len(receiver.snapshot()) >= 3, timeout=10)
    assert running.sink.dead_lettered == 1
    receiver.answer = always(204)
    await async_wait_until(lambda: running.runner.position == 2, timeout=20)
    assert running.sink.dead_lettered == 1
    assert fresh in {request.webhook_id for request in receiver.snapshot()}


async def test_jobs_deliver_concurrently_each_in_order(
    receiver: Receiver, store: SQLiteStore, start_sink: Callable[..., Any]
) -> None:
    jobs = [f"job{i:02d}" for i in range(12)]
    await record(store, jobs, 6)
    rng = random.Random(5)
    receiver.delay = lambda body: rng.uniform(0.0, 0.02)
    running = await start_sink(receiver.url, concurrency=4)
    await async_wait_until(lambda: len(receiver.accepted()) == 72, timeout=20)
    assert per_job_order(receiver.accepted()) == expected_order(jobs, 6)
    assert 2 <= receiver.max_in_flight <= 4
    await async_wait_until(lambda: running.runner.position == 72, timeout=10)
    assert len(receiver.accepted_ids()) == 72, "no duplicates without a crash"


async def test_a_failing_job_holds_back_only_itself(
    receiver: Receiver, store: SQLiteStore, start_sink: Callable[..., Any]
) -> None:
    jobs = ["stuck", "job1", "job2", "job3"]
    await record(store, jobs, 3)
    stuck_ids = set(expected_order(["stuck"], 3)["stuck"])
    released = False

    def answer(body: bytes) -> Answer:
        return (503, {}) if not released and orjson.loads(body)["id"] in stuck_ids else (204, {})

    receiver.answer = answer
    running = await start_sink(receiver.url, concurrency=2)
    others = {event_id for job in jobs[1:] for event_id in expected_order([job], 3)[job]}
    await async_wait_until(lambda: receiver.accepted_ids() >= others, timeout=15)
    assert not receiver.accepted_ids() & stuck_ids
    assert running.runner.position == 0, "the stuck job's first event is seq 1"
    attempted = {request.webhook_id for request in receiver.snapshot()} & stuck_ids
    assert attempted == {make_event("stuck", 0)["id"]}, "later events wait for the first"
    released = True
    await async_wait_until(lambda: running.runner.position == 12, timeout=15)
    assert per_job_order(receiver.accepted()) == expected_order(jobs, 3)


async def test_batch_mode_posts_arrays_in_job_order(
    receiver: Receiver, store: SQLiteStore, start_sink: Callable[..., Any]
) -> None:
    jobs = [f"job{i}" for i in range(6)]
    await record(store, jobs, 5)
    receiver.delay = lambda body: 0.01
    running = await start_sink(receiver.url, batch_max=4, concurrency=2)
    await async_wait_until(lambda: len(receiver.accepted_ids()) == 30, timeout=20)
    requests = receiver.accepted()
    sizes = [len(request.cloud_events()) for request in requests]
    assert max(sizes) > 1 and max(sizes) <= 4
    assert len(requests) < 30
    for request in requests:
        assert request.headers["content-type"] == BATCH_CONTENT_TYPE
        assert [event["id"] for event in verify(request)] == request.event_ids()
        if len(request.event_ids()) > 1:
            assert request.webhook_id not in request.event_ids()
    assert per_job_order(requests) == expected_order(jobs, 5)
    await async_wait_until(lambda: running.runner.position == 30, timeout=10)


async def test_filters_apply_to_the_webhook_sink(
    receiver: Receiver, store: SQLiteStore, start_sink: Callable[..., Any]
) -> None:
    await record(store, ["job1", "job2"], 3)
    running = await start_sink(
        receiver.url, filter=SinkFilter(types=frozenset({SUBJOB_TRANSITION}))
    )
    await async_wait_until(lambda: running.runner.position == 6, timeout=10)
    events = [event for request in receiver.accepted() for event in request.cloud_events()]
    assert [event.get_type() for event in events] == [SUBJOB_TRANSITION] * 2


# -- the daemon as a subprocess -------------------------------------------------------


def webhook_sinks(url: str, **extra: str) -> str:
    lines = "\n".join(f"{key} = {value}" for key, value in extra.items())
    return f"""
[[sinks]]
type = "file"
path = "events.jsonl"

[[sinks]]
type = "webhook"
name = "hook"
url = "{url}"
secret = "{SECRET}"
timeout = "2s"
max_retry_age = "60s"
concurrency = 4
{lines}
"""


def recorded(state: Path) -> list[tuple[int, str, str]]:
    """(seq, event_id, job_id) of every event in the daemon's log."""
    with sqlite3.connect(state / "jobwatchd.db") as db:
        rows = db.execute("SELECT seq, event_id, job_id FROM events ORDER BY seq").fetchall()
    return [(int(seq), str(event_id), str(job_id)) for seq, event_id, job_id in rows]


def check_delivered(receiver: Receiver, state: Path) -> None:
    """Every recorded event arrived, signed and parseable, each job's in log order,
    and any duplicate is the same event under the same webhook-id."""
    log = recorded(state)
    accepted = receiver.accepted()
    assert {event_id for _, event_id, _ in log} <= receiver.accepted_ids()
    bodies: dict[str, bytes] = {}
    for request in accepted:
        assert verify(request)["id"] == request.webhook_id
        (event,) = request.cloud_events()
        assert event.get_id() == request.webhook_id
        assert bodies.setdefault(request.webhook_id, request.body) == request.body
    job_of = {event_id: job_id for _, event_id, job_id in log}
    arrived: dict[str, list[str]] = {}
    seen: set[str] = set()
    for request in accepted:
        if request.webhook_id not in seen:
            seen.add(request.webhook_id)
            arrived.setdefault(job_of[request.webhook_id], []).append(request.webhook_id)
    in_log: dict[str, list[str]] = {}
    for _, event_id, job_id in log:
        in_log.setdefault(job_id, []).append(event_id)
    assert arrived == in_log


def create_jobs(sim: Any, count: int, seed: int, duration: tuple[float, float]) -> list[str]:
    rng = random.Random(seed)
    return [
        sim.create_job(
            "createServer",
            count=rng.randint(1, 3),
            fail=rng.random() < 0.2,
            duration=rng.uniform(*duration),
        )
        for _ in range(count)
    ]


def register(daemon: DaemonProcess, job_ids: list[str]) -> None:
    status, body, _ = http(
        "POST", f"{daemon.url}/v1/jobs", {"jobs": [{"job_id": job} for job in job_ids]}
    )
    assert status == 201, body


def answered(receiver: Receiver, status: int) -> list[Request]:
    return [request for request in receiver.snapshot() if request.status == status]


def test_outage_503_then_429_loses_nothing_and_polling_goes_on(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    threaded_receiver: Receiver,
    daemon_factory: Callable[[Path], DaemonProcess],
) -> None:
    receiver = threaded_receiver
    receiver.answer = always(503)
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "c.toml",
        endpoint=threaded_simulator.url,
        state_dir=state,
        sinks=webhook_sinks(receiver.url),
    )
    jobs = create_jobs(threaded_simulator.sim, 12, seed=1, duration=(150, 450))
    daemon = daemon_factory(config)
    daemon.start()
    register(daemon, jobs)
    events_path = state / "events.jsonl"
    wait_until(lambda: len(answered(receiver, 503)) >= 4, timeout=15, what="503s")
    during = len(read_events(events_path))
    wait_until(
        lambda: len(read_events(events_path)) >= during + 10,
        timeout=15,
        what="transitions recorded while the webhook is down",
    )
    receiver.answer = always(429, {"Retry-After": "1"})
    wait_until(lambda: len(answered(receiver, 429)) >= 4, timeout=15, what="429s")
    assert not receiver.accepted()
    receiver.answer = always(204)

    wait_until(lambda: all_terminal(daemon, jobs), timeout=30, what="all jobs terminal")
    wait_until(
        lambda: {event_id for _, event_id, _ in recorded(state)} <= receiver.accepted_ids(),
        timeout=30,
        what="every event at the receiver",
    )
    check_delivered(receiver, state)
    requests = receiver.snapshot()
    for index, request in enumerate(requests):
        if request.status == 429:
            retry = next(r for r in requests[index + 1 :] if r.webhook_id == request.webhook_id)
            assert retry.arrived - request.arrived >= 0.95, "Retry-After honoured"
    status, ready, _ = http("GET", f"{daemon.url}/readyz")
    assert status == 200
    assert ready["sinks"]["hook"]["dead_lettered"] == 0
    assert ready["sinks"]["hook"]["failed_attempts"] >= 8
    assert daemon.stop() == 0


def test_kill_9_during_an_outage_then_recovery_delivers_everything(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    threaded_receiver: Receiver,
    daemon_factory: Callable[[Path], DaemonProcess],
) -> None:
    receiver = threaded_receiver
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "c.toml",
        endpoint=threaded_simulator.url,
        state_dir=state,
        sinks=webhook_sinks(receiver.url),
    )
    jobs = create_jobs(threaded_simulator.sim, 16, seed=2, duration=(250, 700))
    daemon = daemon_factory(config)
    daemon.start()
    register(daemon, jobs)
    wait_until(lambda: len(receiver.accepted()) >= 8, timeout=15, what="some deliveries")
    receiver.answer = always(503)
    wait_until(
        lambda: (
            len(recorded(state)) >= len(receiver.accepted_ids()) + 8
            and len(answered(receiver, 503)) >= 2
        ),
        timeout=20,
        what="a backlog during the outage",
    )
    assert not all_terminal(daemon, jobs), "the crash must come mid-run"
    daemon.kill()

    before_restart = len(answered(receiver, 503))
    daemon.start()
    wait_until(
        lambda: len(answered(receiver, 503)) >= before_restart + 2,
        timeout=15,
        what="the restarted daemon retrying",
    )
    receiver.answer = always(204)
    wait_until(lambda: all_terminal(daemon, jobs), timeout=30, what="all jobs terminal")
    wait_until(
        lambda: {event_id for _, event_id, _ in recorded(state)} <= receiver.accepted_ids(),
        timeout=30,
        what="every event at the receiver",
    )
    assert daemon.stop() == 0
    check_delivered(receiver, state)


def cli(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    assert daemon.address is not None
    return run_cli(*args, "--api", daemon.address)


def test_rejected_events_are_dead_lettered_and_redeliver_sends_them(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    threaded_receiver: Receiver,
    daemon_factory: Callable[[Path], DaemonProcess],
) -> None:
    receiver = threaded_receiver
    receiver.answer = always(400)
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "c.toml",
        endpoint=threaded_simulator.url,
        state_dir=state,
        sinks=webhook_sinks(receiver.url),
    )
    jobs = create_jobs(threaded_simulator.sim, 2, seed=3, duration=(60, 120))
    daemon = daemon_factory(config)
    daemon.start()
    register(daemon, jobs)
    wait_until(lambda: all_terminal(daemon, jobs), timeout=20, what="jobs terminal")
    dead = DeadLetterStore(state)
    wait_until(
        lambda: {e.event_id for e in dead.read("hook")} == {r[1] for r in recorded(state)},
        timeout=15,
        what="every event dead-lettered",
    )
    log = recorded(state)
    _, ready, _ = http("GET", f"{daemon.url}/readyz")
    assert ready["sinks"]["hook"]["dead_lettered"] == len(log)
    assert ready["sinks"]["hook"]["position"] == log[-1][0], "dead letters count as handled"
    lines = [r for r in daemon.log_records() if r.get("event") == "webhook.dead_lettered"]
    assert len(lines) == len(log) and all(r["status"] == 400 for r in lines)

    listed = cli(daemon, "dead-letters", "--json")
    assert listed.returncode == 0, listed.stderr
    entries = orjson.loads(listed.stdout)
    assert sorted(entry["event_id"] for entry in entries) == sorted(e for _, e, _ in log)
    assert all(entry["reason"].startswith("HTTP 400") for entry in entries)

    still_refused = cli(daemon, "redeliver", "--all")
    assert still_refused.returncode == 1
    remaining = dead.read("hook")
    assert len(remaining) == len(log)
    assert all(entry.redelivery_attempts == 1 for entry in remaining)
    assert any("HTTP 400" in (entry.last_redelivery_error or "") for entry in remaining)

    receiver.answer = always(204)
    first_id = log[0][1]
    one = cli(daemon, "redeliver", "--sink", "hook", first_id)
    assert one.returncode == 0, one.stderr
    assert first_id in receiver.accepted_ids()
    assert first_id not in {entry.event_id for entry in dead.read("hook")}
    rest = cli(daemon, "redeliver", "--all")
    assert rest.returncode == 0, rest.stderr
    assert dead.read("hook") == []
    assert receiver.accepted_ids() == {event_id for _, event_id, _ in log}
    for request in receiver.accepted():
        assert verify(request)["id"] == request.webhook_id
    assert cli(daemon, "redeliver", first_id).returncode == 1, "no longer a dead letter"
    assert daemon.stop() == 0
