"""What jobwatchd takes from a hostile upstream (the job API, IAM) and a hostile
webhook receiver: real aiohttp servers on 127.0.0.1 (:mod:`tests.hostile_upstream`)
answering with redirects, huge, compressed and slow bodies, spoofed job ids and
statuses, unbounded strings."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import urllib3
from yarl import URL

from jobwatchd.cloud.auth import AuthError, IamPasswordAuth, NoAuth, TokenAuth
from jobwatchd.cloud.client import UpstreamClient
from jobwatchd.cloud.errors import MAX_RESPONSE_SIZE
from jobwatchd.cloud.simulator import Simulator
from jobwatchd.config import Secret, SinkConfig
from jobwatchd.metrics import OTHER, CodeLabels, status_label
from jobwatchd.models import (
    ERROR,
    JOB_TRANSITION,
    NOT_FOUND,
    PENDING,
    PENDING_PAYMENT,
    TIMEOUT,
    StoredEvent,
    is_terminal,
)
from jobwatchd.outcome import (
    JOB_ID_MISMATCH_CODE,
    NOT_FOUND_HINT,
    REDIRECT_CODE,
    TOO_LARGE_CODE,
    Outcome,
    OutcomeKind,
)
from jobwatchd.sinks import Delivery, SinkContext
from jobwatchd.sinks.webhook import WebhookOptions, WebhookSink, scrub_answer
from jobwatchd.statemachine import Snapshot, observe
from tests.helpers.config import LOG_SINK, write_config
from tests.helpers.hostile_upstream import Hostile, serve_in_thread
from tests.helpers.waiting import wait_until

PROJECT = "0123456789abcdef0123456789abcdef"
TOKEN = "tok-canary-0123456789"
SECRET = "whsec_" + base64.b64encode(b"hostile-test-signing-key-000001").decode()


@pytest.fixture
async def hostile() -> AsyncIterator[Hostile]:
    server = Hostile()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def client(hostile: Hostile, tmp_path: Path) -> AsyncIterator[UpstreamClient]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    upstream = UpstreamClient(
        endpoint=hostile.url,
        auth=TokenAuth(token_file),
        pool_size=4,
        request_timeout=2.0,
        max_sub_jobs=100,
    )
    await upstream.start()
    yield upstream
    await upstream.close()


def error_of(outcome: Outcome) -> tuple[str | None, str, int | None]:
    assert outcome.error is not None, outcome
    return outcome.error.code, outcome.error.message, outcome.error.http_status


# -- 1. redirects ----------------------------------------------------------------------


@pytest.mark.parametrize("job_id", ["redirect302-a", "redirect307-a"])
async def test_a_redirected_job_query_is_an_error_and_sends_nothing_elsewhere(
    hostile: Hostile, client: UpstreamClient, job_id: str
) -> None:
    outcome = await client.query(PROJECT, job_id)
    assert outcome.kind is OutcomeKind.TRANSIENT
    assert outcome.response is None
    code, message, status = error_of(outcome)
    assert code == REDIRECT_CODE
    assert status in (302, 307)
    assert hostile.capture.url in message  # the origin, and nothing of the path or query
    assert "stolen" not in message and "token" not in message
    assert hostile.capture.requests == []


async def test_an_iam_redirect_is_refused_and_the_password_goes_nowhere(hostile: Hostile) -> None:
    auth = IamPasswordAuth(
        iam_endpoint=hostile.url,
        domain="domain",
        user="user",
        password=lambda: "pw-canary-9876",
        project_id=PROJECT,
    )
    with pytest.raises(AuthError, match=r"HTTP 307 with a redirect to http://127\.0\.0\.1:\d+;"):
        await auth.apply("GET", URL(hostile.url), {})
    assert hostile.capture.requests == []


# -- 6. bounded answers ----------------------------------------------------------------


@pytest.mark.parametrize("job_id", ["bigdeclared-a", "bigchunked-a", "gzipbomb-a"])
async def test_an_answer_over_the_size_bound_is_refused_unread(
    hostile: Hostile, client: UpstreamClient, job_id: str
) -> None:
    outcome = await client.query(PROJECT, job_id)
    assert outcome.kind is OutcomeKind.REJECTED
    code, message, status = error_of(outcome)
    assert (code, status) == (TOO_LARGE_CODE, 200)
    assert f"over {MAX_RESPONSE_SIZE} bytes" in message
    # The connection was dropped, not drained: the pool still answers.
    assert (await client.query(PROJECT, "plain-a")).kind is OutcomeKind.OBSERVED


async def test_a_huge_error_page_keeps_its_status_meaning(client: UpstreamClient) -> None:
    outcome = await client.query(PROJECT, "bigerror-a")
    assert outcome.kind is OutcomeKind.TRANSIENT
    assert error_of(outcome)[0] == TOO_LARGE_CODE
    assert error_of(outcome)[2] == 503


async def test_a_small_compressed_answer_is_read(client: UpstreamClient) -> None:
    outcome = await client.query(PROJECT, "deflated-a")
    assert outcome.kind is OutcomeKind.OBSERVED
    assert outcome.response is not None and outcome.response.status == "SUCCESS"


async def test_a_dripping_body_times_out(hostile: Hostile) -> None:
    upstream = UpstreamClient(endpoint=hostile.url, auth=NoAuth(), pool_size=1, request_timeout=1)
    await upstream.start()
    try:
        started = time.monotonic()
        outcome = await upstream.query(PROJECT, "drip-a")
    finally:
        await upstream.close()
    assert outcome.kind is OutcomeKind.TRANSIENT
    assert error_of(outcome)[0] == "TimeoutError"
    assert time.monotonic() - started < 10


async def test_more_sub_jobs_than_the_bound_are_refused(client: UpstreamClient) -> None:
    assert (await client.query(PROJECT, "subs100-a")).kind is OutcomeKind.OBSERVED
    outcome = await client.query(PROJECT, "subs101-a")
    assert outcome.kind is OutcomeKind.REJECTED
    code, message, _ = error_of(outcome)
    assert code == TOO_LARGE_CODE
    assert "101 sub-jobs" in message and "max_sub_jobs (100)" in message


# -- 11. bounded strings ---------------------------------------------------------------


async def test_an_overlong_or_unprintable_status_is_malformed(client: UpstreamClient) -> None:
    for job_id in ("longstatus-a", "escstatus-a"):
        outcome = await client.query(PROJECT, job_id)
        assert outcome.kind is OutcomeKind.TRANSIENT, job_id
        assert "printable ASCII" in error_of(outcome)[1]


async def test_upstream_messages_and_reasons_are_cut(client: UpstreamClient) -> None:
    rejected = await client.query(PROJECT, "longmessage-a")
    assert rejected.kind is OutcomeKind.REJECTED
    assert len(error_of(rejected)[1]) == 1024
    failed = await client.query(PROJECT, "longfail-a")
    assert failed.response is not None
    assert failed.response.fail_reason is not None and len(failed.response.fail_reason) == 1024
    assert failed.response.error_code is not None and len(failed.response.error_code) == 1024


def test_metric_labels_are_bounded() -> None:
    labels = CodeLabels(limit=3)
    assert [labels(code) for code in ("Ecs.0001", "APIGW.0308", "Ecs.0001")] == [
        "Ecs.0001",
        "APIGW.0308",
        "Ecs.0001",
    ]
    assert labels("has spaces and <html>") == OTHER
    assert labels("X" * 100) == OTHER
    assert labels("Common.0011") == "Common.0011"
    assert labels("Ecs.0002") == OTHER  # the budget is spent
    assert labels(None) == ""
    assert [status_label(s) for s in ("RUNNING", PENDING_PAYMENT, TIMEOUT, "ST0001")] == [
        "RUNNING",
        PENDING_PAYMENT,
        TIMEOUT,
        OTHER,
    ]


# -- 13. spoofing ----------------------------------------------------------------------


async def test_an_answer_about_another_job_is_an_error(client: UpstreamClient) -> None:
    outcome = await client.query(PROJECT, "other-a")
    assert outcome.kind is OutcomeKind.TRANSIENT
    assert outcome.response is None
    code, message, _ = error_of(outcome)
    assert code == JOB_ID_MISMATCH_CODE and "someotherjob999" in message


@pytest.mark.parametrize(
    ("job_id", "own"),
    [
        ("statustimeout-a", TIMEOUT),
        ("statusnotfound-a", NOT_FOUND),
        ("statuserror-a", ERROR),
        ("statuspending-a", PENDING),
    ],
)
async def test_upstream_saying_one_of_our_own_statuses_is_not_terminal(
    client: UpstreamClient, job_id: str, own: str
) -> None:
    outcome = await client.query(PROJECT, job_id)
    assert outcome.kind is OutcomeKind.OBSERVED and outcome.response is not None
    assert outcome.response.status == f"upstream:{own}"
    transitions, snapshot = observe(Snapshot(), outcome.response)
    assert [(t.kind, t.to_status, t.terminal) for t in transitions] == [
        ("subjob", f"upstream:{own}", False),
        ("job", f"upstream:{own}", False),
    ]
    assert not is_terminal(snapshot.status)
    assert outcome.response.unexpected_statuses == {f"upstream:{own}"}


async def test_pending_payment_is_a_known_status(client: UpstreamClient) -> None:
    outcome = await client.query(PROJECT, "payment-a")
    assert outcome.response is not None
    assert outcome.response.status == PENDING_PAYMENT
    assert outcome.response.unexpected_statuses == frozenset()
    assert not is_terminal(PENDING_PAYMENT)


# -- 1 and 14. the webhook receiver ----------------------------------------------------


def _delivery(job_id: str) -> Delivery:
    event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, job_id))
    cloud_event = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/jobwatchd/default/ecs",
        "type": JOB_TRANSITION,
        "subject": job_id,
        "time": "2026-01-01T00:00:00.000Z",
        "data": {"job_id": job_id, "to": "SUCCESS", "terminal": True},
    }
    stored = StoredEvent(
        seq=1,
        event_id=event_id,
        job_id=job_id,
        type=JOB_TRANSITION,
        payload=orjson.dumps(cloud_event),
    )
    return Delivery(event=stored, cloud_event=cloud_event)


async def _dead_letter_reason(hostile: Hostile, tmp_path: Path, behaviour: str) -> str:
    options = WebhookOptions(
        url=f"{hostile.url}/hook/{behaviour}", secrets=(Secret(SECRET),), timeout=5.0
    )
    sink = WebhookSink(
        SinkConfig(type="webhook", name="hook", options=options),
        SinkContext(state_dir=tmp_path),
    )
    await sink.start()
    try:
        await sink.deliver([_delivery("job-a")])
    finally:
        await sink.close()
    (entry,) = sink.dead_letters.read("hook")
    return entry.reason


async def test_a_redirecting_receiver_dead_letters_at_once(
    hostile: Hostile, tmp_path: Path
) -> None:
    reason = await _dead_letter_reason(hostile, tmp_path, "redirect")
    assert reason.startswith(f"HTTP 307 redirect to {hostile.capture.url} not followed")
    assert "stolen" not in reason and "token" not in reason
    assert hostile.capture.requests == []


async def test_a_receivers_echoed_credentials_are_scrubbed(
    hostile: Hostile, tmp_path: Path
) -> None:
    reason = await _dead_letter_reason(hostile, tmp_path, "echo")
    assert reason.startswith("HTTP 400: ")
    assert len(reason) <= len("HTTP 400: ") + 200
    assert "\x1b" not in reason and "\x07" not in reason and "\r" not in reason
    assert "abcdefghijklmnop0123" not in reason
    assert "v1," not in reason.replace("v1,***", "")
    assert "webhook-signature: ***" in reason


async def test_a_huge_receiver_answer_is_not_read(hostile: Hostile, tmp_path: Path) -> None:
    reason = await _dead_letter_reason(hostile, tmp_path, "huge")
    assert reason == "HTTP 400"  # over 64 KiB: dropped, not kept


def test_scrub_keeps_plain_text_and_removes_credentials() -> None:
    text = scrub_answer(
        b'{"error":"bad","token":"abc123xyz","key":"mine-secret"} ok', ["mine-secret"]
    )
    assert text == '{"error":"bad","token":"***","key":"***"} ok'


# -- the daemon, end to end ------------------------------------------------------------


@pytest.fixture
def upstream_thread() -> Iterator[Hostile]:
    with serve_in_thread() as hostile:
        yield hostile


def _config(path: Path, endpoint: str, state_dir: Path, max_interval: str = "300ms") -> Path:
    return write_config(
        path,
        endpoint=endpoint,
        state_dir=state_dir,
        project_id=PROJECT,
        extra_account="max_sub_jobs = 100",
        max_interval=max_interval,
        sinks=LOG_SINK,
    )


def _get(url: str) -> Any:
    response = urllib3.request("GET", url, timeout=5)
    assert response.status == 200, response.data
    if response.headers.get("Content-Type", "").startswith("application/json"):
        return orjson.loads(response.data)
    return response.data.decode()


def _register(api: str, job_ids: list[str]) -> None:
    body = orjson.dumps({"jobs": [{"job_id": job_id} for job_id in job_ids]})
    response = urllib3.request("POST", f"{api}/v1/jobs", body=body, timeout=5)
    assert response.status == 201, response.data


def test_the_daemon_keeps_hostile_answers_out_of_its_jobs_metrics_and_logs(
    upstream_thread: Hostile,
    tmp_path: Path,
    daemon_factory: Callable[[Path], Any],
) -> None:
    config = _config(tmp_path / "hostile.toml", upstream_thread.url, tmp_path / "state")
    daemon = daemon_factory(config)
    daemon.start()
    api = daemon.url
    jobs = [
        "redirect307-e2e",
        "bigchunked-e2e",
        "statustimeout-e2e",
        "queued-e2e",
        "randstatus-e2e",
        "gone-e2e",
        *(f"randcode-e2e-{n}" for n in range(8)),
    ]
    _register(api, jobs)

    def view(job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = _get(f"{api}/v1/jobs/{job_id}")
        return result

    # An answer always over the bound ends the job as ERROR after three, backing off.
    big = wait_until(
        lambda: (v := view("bigchunked-e2e"))["status"] == ERROR and v, timeout=30, what="ERROR"
    )
    assert big["last_error"]["code"] == TOO_LARGE_CODE
    assert upstream_thread.polls["bigchunked-e2e"] == 3
    # A late 404 ends as NOT_FOUND with the likely reason.
    gone = wait_until(
        lambda: (v := view("gone-e2e"))["status"] == NOT_FOUND and v, timeout=30, what="NOT_FOUND"
    )
    assert NOT_FOUND_HINT in gone["last_error"]["message"]
    assert gone["last_error"]["message"].startswith("The job does not exist.")
    wait_until(
        lambda: (
            sum(n for job, n in upstream_thread.polls.items() if job.startswith("randcode")) > 80
        ),
        timeout=60,
        what="random error codes",
    )

    redirected = view("redirect307-e2e")
    assert redirected["status"] == PENDING and not redirected["terminal"]
    assert redirected["last_error"]["code"] == REDIRECT_CODE
    assert upstream_thread.capture.requests == []
    spoofed = view("statustimeout-e2e")
    assert spoofed["status"] == "upstream:TIMEOUT" and spoofed["terminal"] is False
    assert spoofed["history"] == [
        {"from": None, "to": "upstream:TIMEOUT", "at": spoofed["history"][0]["at"]}
    ]

    metrics = _get(f"{api}/metrics")
    series = [line for line in metrics.splitlines() if line and not line.startswith("#")]
    code_series = [line for line in series if line.startswith("jobwatchd_upstream_errors_total")]
    status_series = [line for line in series if line.startswith("jobwatchd_transitions_total")]
    assert 'code="other"' in metrics
    assert len(code_series) <= 64 + 8, code_series
    assert not [line for line in status_series if 'to="ST' in line]
    assert not [
        line for line in series if line.startswith("jobwatchd_jobs{") and 'status="ST' in line
    ]
    assert 'jobwatchd_transitions_total{to="other",type="jobwatchd.job.transition"}' in metrics, [
        line for line in series if "transitions" in line
    ]

    unexpected = [r for r in daemon.log_records() if r.get("event") == "poll.unexpected_status"]
    queued = [r for r in unexpected if r.get("job_id") == "queued-e2e"]
    assert upstream_thread.polls["queued-e2e"] > 3
    assert len(queued) == 1, queued  # logged when it appeared, not on every poll
    assert daemon.stop() == 0


# -- PENDING_PAYMENT -------------------------------------------------------------------


def test_the_simulator_keeps_a_prepaid_job_pending_payment_until_paid() -> None:
    now = [1_000_000.0]
    sim = Simulator(speed=1.0, seed=3, clock=lambda: now[0])
    job_id = sim.create_job("createServer", count=2, payment=600, duration=60)
    waiting = sim.job_body(job_id)
    assert waiting["status"] == PENDING_PAYMENT
    assert waiting["entities"] == {}
    now[0] += 601
    assert sim.job_body(job_id)["status"] in ("INIT", "RUNNING")
    now[0] += 120
    assert sim.job_body(job_id)["status"] == "SUCCESS"
    assert [t.to for t in sim.transitions(job_id) if t.parent_job_id is None] == [
        PENDING_PAYMENT,
        "INIT",
        "RUNNING",
        "SUCCESS",
    ]
    with pytest.raises(ValueError, match="payment"):
        sim.create_job(payment=-1)


def test_a_job_pending_payment_is_polled_at_the_slowest_interval(
    threaded_simulator: Any, tmp_path: Path, daemon_factory: Callable[[Path], Any]
) -> None:
    sim = threaded_simulator.sim
    prepaid = sim.create_job("createServer", count=1, payment=5 * 86400.0)
    config = _config(
        tmp_path / "pay.toml", threaded_simulator.url, tmp_path / "state", max_interval="30s"
    )
    daemon = daemon_factory(config)
    daemon.start()
    _register(daemon.url, [prepaid])

    def spacing(job_id: str, status: str) -> float | None:
        job = _get(f"{daemon.url}/v1/jobs/{job_id}")
        if job["status"] != status or job["next_poll_at"] is None:
            return None
        return _seconds(job["next_poll_at"]) - _seconds(job["updated_at"])

    # Seen once, it is polled next at max_interval (30 s, less jitter), not at
    # min_interval (100 ms) as backoff would start.
    assert wait_until(lambda: spacing(prepaid, PENDING_PAYMENT), timeout=30, what="payment") > 20
    assert not [r for r in daemon.log_records() if r.get("event") == "poll.unexpected_status"]
    assert daemon.stop() == 0


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()
