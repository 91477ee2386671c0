"""Tests of the built-in simulated cloud (jobwatchd.cloud.simulator), over real sockets."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import pytest
from yarl import URL

from jobwatchd.cloud.signing import sign
from jobwatchd.cloud.simulator import (
    DEFAULT_PROJECT_ID,
    JOB_TYPES,
    Faults,
    Simulator,
    Transition,
    format_time,
    start_simulator,
)
from tests.helpers.clock import FakeClock
from tests.helpers.vendor import VENDOR_EXAMPLE

T0 = 1461614674.604  # the vendor example's begin_time
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HEX32_RE = re.compile(r"^[0-9a-f]{32}$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

# job type -> (sub-job type or None, entity key)
EXPECTED_TYPES: dict[str, tuple[str | None, str]] = {
    "createServer": ("createSingleServer", "server_id"),
    "deleteServer": ("deleteSingleServer", "server_id"),
    "batchStartServer": ("startSingleServer", "server_id"),
    "batchStopServer": ("stopSingleServer", "server_id"),
    "batchRebootServer": ("rebootSingleServer", "server_id"),
    "addNics": ("addSingleNic", "nic_id"),
    "deleteNics": ("deleteSingleNic", "nic_id"),
    "resizeServer": (None, "server_id"),
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def sim(clock: FakeClock) -> Simulator:
    return Simulator(seed=1234, clock=clock)


Serve = Callable[[Simulator], Coroutine[Any, Any, aiohttp.ClientSession]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start a simulator on 127.0.0.1 and return a session bound to it."""
    runners: list[aiohttp.web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(simulator: Simulator) -> aiohttp.ClientSession:
        runner, port = await start_simulator(simulator)
        runners.append(runner)
        session = aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}")
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        await session.close()
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def http(sim: Simulator, serve: Serve) -> aiohttp.ClientSession:
    return await serve(sim)


def job_url(job_id: str, project_id: str = DEFAULT_PROJECT_ID) -> str:
    return f"/v1/{project_id}/jobs/{job_id}"


async def get_job(
    http: aiohttp.ClientSession, job_id: str, **headers: str
) -> tuple[int, dict[str, Any]]:
    async with http.get(job_url(job_id), headers=headers) as resp:
        body = await resp.json()
        assert isinstance(body, dict)
        return resp.status, body


def timeline(sim: Simulator, clock: FakeClock, job_id: str) -> list[Transition]:
    """All transitions of a job, read by looking far ahead, with the clock restored."""
    saved = clock.now
    clock.now = saved + 10**6
    try:
        return sim.transitions(job_id)
    finally:
        clock.now = saved


def at(transitions: list[Transition], job_id: str, to: str) -> float:
    return next(t.at for t in transitions if t.job_id == job_id and t.to == to)


# ------------------------------------------------------------ response format


async def test_response_shape_and_key_order_match_vendor_example(
    sim: Simulator, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    job_id = sim.create_job("createServer", count=1, duration=240)
    clock.now = T0 + 240
    async with http.get(job_url(job_id)) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        raw = await resp.read()
    body = orjson.loads(raw)
    assert list(body) == list(VENDOR_EXAMPLE)
    assert list(body["entities"]) == list(VENDOR_EXAMPLE["entities"])
    sub = body["entities"]["sub_jobs"][0]
    vendor_sub = VENDOR_EXAMPLE["entities"]["sub_jobs"][0]
    assert list(sub) == list(vendor_sub)
    assert list(sub["entities"]) == list(vendor_sub["entities"])
    # Same JSON types as the vendor, nulls included.
    for ours, theirs in ((body, VENDOR_EXAMPLE), (sub, vendor_sub)):
        assert {k: type(v) for k, v in ours.items()} == {k: type(v) for k, v in theirs.items()}
    assert body["status"] == "SUCCESS"
    assert body["job_type"] == "createServer"
    assert HEX32_RE.match(body["job_id"])
    assert HEX32_RE.match(sub["job_id"])
    assert UUID_RE.match(sub["entities"]["server_id"])
    assert body["entities"]["sub_jobs_total"] == 1
    # The raw bytes carry JSON nulls for the absent error fields.
    assert b'"error_code":null' in raw
    assert b'"fail_reason":null' in raw


async def test_timestamps_use_vendor_format_in_utc_with_milliseconds(
    sim: Simulator, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    job_id = sim.create_job("createServer", count=2, duration=100)
    clock.now = T0 + 100
    status, body = await get_job(http, job_id)
    assert status == 200
    assert body["begin_time"] == "2016-04-25T20:04:34.604Z"
    assert body["end_time"] == "2016-04-25T20:06:14.604Z"
    for sub in body["entities"]["sub_jobs"]:
        assert TIME_RE.match(sub["begin_time"])
        assert TIME_RE.match(sub["end_time"])
        assert body["begin_time"] <= sub["begin_time"] <= sub["end_time"] <= body["end_time"]
    assert format_time(0) == "1970-01-01T00:00:00.000Z"
    assert format_time(1461615001.3279) == "2016-04-25T20:10:01.328Z"


# ------------------------------------------------------------------ lifecycle


async def test_lifecycle_init_running_success_with_fake_clock(
    sim: Simulator, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    job_id = sim.create_job("createServer", count=2, duration=100)
    line = timeline(sim, clock, job_id)
    subs = [t.job_id for t in line if t.parent_job_id == job_id and t.to == "INIT"]
    assert len(subs) == 2

    # INIT: sub-jobs not created yet, but their total is known.
    status, body = await get_job(http, job_id)
    assert status == 200
    assert body["status"] == "INIT"
    assert body["entities"] == {"sub_jobs_total": 2, "sub_jobs": []}
    assert body["end_time"] is None

    # RUNNING, first sub-job created but not running: no server yet.
    clock.now = at(line, subs[0], "INIT")
    _, body = await get_job(http, job_id)
    assert body["status"] == "RUNNING"
    first = next(s for s in body["entities"]["sub_jobs"] if s["job_id"] == subs[0])
    assert first["status"] == "INIT"
    assert first["entities"] == {}

    # Both sub-jobs RUNNING: each already carries its server_id.
    clock.now = max(at(line, s, "RUNNING") for s in subs)
    _, body = await get_job(http, job_id)
    assert body["status"] == "RUNNING"
    assert [s["status"] for s in body["entities"]["sub_jobs"]] == ["RUNNING", "RUNNING"]
    server_ids = [s["entities"]["server_id"] for s in body["entities"]["sub_jobs"]]
    assert all(UUID_RE.match(s) for s in server_ids)
    assert all(s["end_time"] is None for s in body["entities"]["sub_jobs"])

    # Just before the end: sub-jobs done, parent still running.
    clock.now = T0 + 99.9
    _, body = await get_job(http, job_id)
    assert body["status"] == "RUNNING"
    assert [s["status"] for s in body["entities"]["sub_jobs"]] == ["SUCCESS", "SUCCESS"]

    clock.now = T0 + 100
    _, body = await get_job(http, job_id)
    assert body["status"] == "SUCCESS"
    assert body["end_time"] is not None
    assert body["error_code"] is None
    assert body["fail_reason"] is None
    assert [s["entities"]["server_id"] for s in body["entities"]["sub_jobs"]] == server_ids


async def test_failing_job_has_one_failed_sub_job_and_failed_parent(
    sim: Simulator, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    job_id = sim.create_job("createServer", count=3, fail=True, duration=120)
    clock.now = T0 + 120
    status, body = await get_job(http, job_id)
    assert status == 200
    assert body["status"] == "FAIL"
    assert re.match(r"^Ecs\.\d{4}$", body["error_code"])
    assert body["fail_reason"]
    subs = body["entities"]["sub_jobs"]
    failed = [s for s in subs if s["status"] == "FAIL"]
    assert len(failed) == 1
    assert failed[0]["error_code"] == body["error_code"]
    assert failed[0]["fail_reason"]
    assert failed[0]["entities"]["errorcode_message"] == failed[0]["fail_reason"]
    assert "server_id" in failed[0]["entities"]
    for ok in (s for s in subs if s["status"] != "FAIL"):
        assert ok["status"] == "SUCCESS"
        assert ok["error_code"] is None
        assert ok["fail_reason"] is None
        assert "errorcode_message" not in ok["entities"]


async def test_failure_details_appear_only_once_terminal(
    sim: Simulator, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    job_id = sim.create_job("resizeServer", fail=True, duration=50)
    clock.now = T0 + 49
    _, body = await get_job(http, job_id)
    assert (body["status"], body["error_code"], body["fail_reason"]) == ("RUNNING", None, None)
    clock.now = T0 + 50
    _, body = await get_job(http, job_id)
    assert body["status"] == "FAIL"
    assert body["error_code"] is not None
    assert body["fail_reason"] is not None
    assert list(body["entities"]) == ["server_id"]


@pytest.mark.parametrize("job_type", JOB_TYPES)
async def test_job_types_have_their_sub_jobs_and_entities(
    job_type: str, sim: Simulator, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    sub_type, key = EXPECTED_TYPES[job_type]
    count = 1 if sub_type is None else 3
    job_id = sim.create_job(job_type, count=count, duration=30)
    clock.now = T0 + 30
    _, body = await get_job(http, job_id)
    assert body["job_type"] == job_type
    assert body["status"] == "SUCCESS"
    if sub_type is None:
        assert list(body["entities"]) == [key]
        assert UUID_RE.match(body["entities"][key])
    else:
        assert body["entities"]["sub_jobs_total"] == 3
        subs = body["entities"]["sub_jobs"]
        assert [s["job_type"] for s in subs] == [sub_type] * 3
        assert all(UUID_RE.match(s["entities"][key]) for s in subs)
        assert len({s["job_id"] for s in subs} | {job_id}) == 4


def test_job_types_match_the_documented_list() -> None:
    assert set(JOB_TYPES) == set(EXPECTED_TYPES)


async def test_unknown_job_and_foreign_project_get_400_common_0011(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    job_id = sim.create_job()
    for url in (job_url("0" * 32), job_url(job_id, project_id="another-project")):
        async with http.get(url) as resp:
            assert resp.status == 400
            body = await resp.json()
        assert body["error"]["code"] == "Common.0011"
        assert body["error"]["message"]
    assert sim.stats["unknown_job"] == 2
    assert sim.stats["ok"] == 0


async def test_token_is_required_when_configured(clock: FakeClock, serve: Serve) -> None:
    sim = Simulator(token="s3cret", seed=1, clock=clock)
    http = await serve(sim)
    job_id = sim.create_job()
    status, body = await get_job(http, job_id)
    assert status == 401
    assert body["error"]["code"] == "Common.0013"
    status, _ = await get_job(http, job_id, **{"X-Auth-Token": "wrong"})
    assert status == 401
    status, body = await get_job(http, job_id, **{"X-Auth-Token": "s3cret"})
    assert status == 200
    assert body["job_id"] == job_id
    assert sim.stats["unauthorized"] == 2
    assert sim.stats["ok"] == 1


# --------------------------------------------------------------------- faults


async def test_throttle_fault_gives_429_with_retry_after_and_apig_body(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    job_id = sim.create_job()
    sim.faults.throttle = 1.0
    sim.faults.retry_after = 1.5
    async with http.get(job_url(job_id)) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "2"  # whole seconds, rounded up
        body = await resp.json()
    assert list(body) == ["error_code", "error_msg", "request_id"]
    assert body["error_code"] == "APIGW.0308"
    assert body["error_msg"].startswith("The throttling threshold has been reached")
    assert HEX32_RE.match(body["request_id"])
    assert sim.stats["429"] == 1


async def test_5xx_fault_gives_server_error_with_vendor_body(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    job_id = sim.create_job()
    sim.faults.error_5xx = 1.0
    seen = set()
    for _ in range(20):
        async with http.get(job_url(job_id)) as resp:
            seen.add(resp.status)
            body = await resp.json()
        assert set(body["error"]) == {"code", "message"}
    assert seen <= {500, 502, 503}
    assert len(seen) > 1
    assert sim.stats["5xx"] == 20


async def test_malformed_fault_gives_200_with_invalid_json(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    job_id = sim.create_job()
    sim.faults.malformed = 1.0
    async with http.get(job_url(job_id)) as resp:
        assert resp.status == 200
        raw = await resp.read()
    assert raw.startswith(b'{"status":')
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)
    assert sim.stats["malformed"] == 1


async def test_no_status_fault_gives_200_without_status(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    job_id = sim.create_job()
    sim.faults.no_status = 1.0
    status, body = await get_job(http, job_id)
    assert status == 200
    assert "status" not in body
    assert body["code"]
    assert body["message"]
    assert sim.stats["no_status"] == 1


async def test_not_found_fault_gives_404_with_vendor_body(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    job_id = sim.create_job()
    sim.faults.not_found = 1.0
    status, body = await get_job(http, job_id)
    assert status == 404
    assert body["error"]["code"] == "Common.0011"
    assert sim.stats["404"] == 1


async def test_rejected_fault_gives_400_with_another_vendor_code(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    job_id = sim.create_job()
    sim.faults.rejected = 1.0
    status, body = await get_job(http, job_id)
    assert status == 400
    assert body["error"]["code"] not in ("Common.0011", "APIGW.0308")
    assert sim.stats["400"] == 1


async def test_latency_fault_delays_job_queries(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    job_id = sim.create_job()
    sim.faults.latency = 0.15
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, _ = await get_job(http, job_id)
    assert status == 200
    assert loop.time() - started >= 0.15


async def test_fault_probabilities_are_drawn_per_request(clock: FakeClock, serve: Serve) -> None:
    sim = Simulator(seed=7, clock=clock, faults=Faults(throttle=0.5))
    http = await serve(sim)
    job_id = sim.create_job()
    statuses = []
    for _ in range(100):
        async with http.get(job_url(job_id)) as resp:
            statuses.append(resp.status)
    assert set(statuses) == {200, 429}
    assert 25 <= statuses.count(429) <= 75
    assert sim.stats["ok"] + sim.stats["429"] == 100


def test_faults_are_validated() -> None:
    with pytest.raises(ValueError, match="error_5xx"):
        Faults(error_5xx=1.5)
    with pytest.raises(ValueError, match="latency"):
        Faults(latency=-1)
    faults = Faults()
    with pytest.raises(ValueError, match="throttle"):
        faults.update({"latency": 0.5, "throttle": 2})
    assert faults.latency == 0.0  # all or nothing
    with pytest.raises(ValueError, match="unknown fault"):
        faults.update({"bogus": 0.1})


# ---------------------------------------------------------- control endpoints


async def test_control_create_single_and_batch(
    sim: Simulator, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    async with http.post("/_sim/jobs", json={"job_type": "addNics", "count": 2}) as resp:
        assert resp.status == 201
        single = await resp.json()
    assert HEX32_RE.match(single["job_id"])
    batch_body = {"jobs": [{}, {"job_type": "resizeServer", "fail": True, "duration": 10}]}
    async with http.post("/_sim/jobs", json=batch_body) as resp:
        assert resp.status == 201
        batch = await resp.json()
    ids = [j["job_id"] for j in batch["jobs"]]
    assert sim.job_ids() == [single["job_id"], *ids]
    async with http.get("/_sim/jobs") as resp:
        assert (await resp.json()) == {"job_ids": sim.job_ids()}
    clock.now = T0 + 10
    _, body = await get_job(http, ids[1])
    assert (body["job_type"], body["status"]) == ("resizeServer", "FAIL")
    _, body = await get_job(http, single["job_id"])
    assert body["entities"]["sub_jobs_total"] == 2


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"not json", "JSON"),
        (b"[1, 2]", "object"),
        (b'{"job_type": "launchRocket"}', "job_type"),
        (b'{"count": 0}', "count"),
        (b'{"count": "2"}', "count"),
        (b'{"count": 1001}', "count"),
        (b'{"job_type": "resizeServer", "count": 2}', "count"),
        (b'{"fail": "yes"}', "fail"),
        (b'{"duration": -1}', "duration"),
        (b'{"project_id": "a/b"}', "project_id"),
        (b'{"colour": "red"}', "colour"),
        (b'{"jobs": []}', "jobs"),
        (b'{"jobs": [{}], "count": 2}', "jobs"),
        (b'{"jobs": [{}, {"count": -3}]}', "jobs[1]"),
    ],
)
async def test_control_create_rejects_bad_input(
    payload: bytes, needle: str, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    async with http.post("/_sim/jobs", data=payload) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert needle in body["message"]
    assert sim.job_ids() == []  # nothing of a bad request is created


async def test_control_transitions_endpoint(
    sim: Simulator, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    job_id = sim.create_job("batchRebootServer", count=2, duration=60)
    clock.now = T0 + 60
    async with http.get(f"/_sim/jobs/{job_id}/transitions") as resp:
        assert resp.status == 200
        listed = await resp.json()
    assert listed == [
        {"job_id": t.job_id, "parent_job_id": t.parent_job_id, "to": t.to, "at": t.at}
        for t in sim.transitions(job_id)
    ]
    assert len(listed) == 2 + 2 * 3 + 1
    async with http.get(f"/_sim/jobs/{'f' * 32}/transitions") as resp:
        assert resp.status == 404


async def test_control_faults_get_and_partial_put(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    async with http.get("/_sim/faults") as resp:
        assert (await resp.json()) == Faults().to_dict()
    async with http.put("/_sim/faults", json={"throttle": 0.25, "retry_after": 3}) as resp:
        assert resp.status == 200
        current = await resp.json()
    assert current["throttle"] == 0.25
    assert current["retry_after"] == 3
    assert current["error_5xx"] == 0.0
    assert sim.faults.throttle == 0.25
    for bad in ({"malformed": 1.5}, {"latency": "slow"}, {"nope": 1}, [1]):
        async with http.put("/_sim/faults", json=bad) as resp:
            assert resp.status == 400
            assert (await resp.json())["message"]
    assert sim.faults.malformed == 0.0


async def test_control_stats_counts_outcomes(sim: Simulator, http: aiohttp.ClientSession) -> None:
    job_id = sim.create_job()
    await get_job(http, job_id)
    await get_job(http, "0" * 32)
    sim.faults.not_found = 1.0
    await get_job(http, job_id)
    async with http.get("/_sim/stats") as resp:
        stats = await resp.json()
    assert stats["ok"] == 1
    assert stats["unknown_job"] == 1
    assert stats["404"] == 1
    assert stats["429"] == 0  # every outcome is listed


# ----------------------------------------------------------------- timelines


def test_transitions_are_ordered_and_sub_jobs_end_before_parent(
    sim: Simulator, clock: FakeClock
) -> None:
    job_id = sim.create_job("createServer", count=5, fail=True, duration=200)
    clock.now = T0 + 200
    line = sim.transitions(job_id)
    assert [t.at for t in line] == sorted(t.at for t in line)
    assert (line[0].job_id, line[0].to) == (job_id, "INIT")
    assert (line[-1].job_id, line[-1].to) == (job_id, "FAIL")
    parent_running = at(line, job_id, "RUNNING")
    subs = {t.job_id for t in line if t.parent_job_id == job_id}
    assert len(subs) == 5
    for sub in subs:
        states = [t.to for t in line if t.job_id == sub]
        assert states[:2] == ["INIT", "RUNNING"]
        assert states[2] in {"SUCCESS", "FAIL"}
        assert at(line, sub, "INIT") >= parent_running
    assert sum(1 for t in line if t.parent_job_id and t.to == "FAIL") == 1


def test_transitions_only_include_those_reached(sim: Simulator, clock: FakeClock) -> None:
    job_id = sim.create_job("deleteServer", count=2, duration=100)
    assert [t.to for t in sim.transitions(job_id)] == ["INIT"]
    clock.now = T0 + 50
    reached = sim.transitions(job_id)
    assert all(t.at <= clock.now for t in reached)
    assert {t.to for t in reached} == {"INIT", "RUNNING"}
    with pytest.raises(KeyError):
        sim.transitions("0" * 32)


def test_zero_duration_keeps_causal_order(sim: Simulator) -> None:
    job_id = sim.create_job("createServer", count=2, duration=0)
    line = sim.transitions(job_id)
    assert len({t.at for t in line}) == 1
    assert line[-1].job_id == job_id
    assert line[-1].to == "SUCCESS"
    assert line[0].job_id == job_id
    assert sim.job_body(job_id)["status"] == "SUCCESS"


async def test_speed_compresses_time(clock: FakeClock, serve: Serve) -> None:
    sim = Simulator(speed=10, seed=3, clock=clock)
    http = await serve(sim)
    job_id = sim.create_job("createServer", count=2, duration=60)
    line = timeline(sim, clock, job_id)
    assert line[-1].at == pytest.approx(T0 + 6.0)
    assert max(t.at for t in line) == pytest.approx(T0 + 6.0)
    clock.now = T0 + 5.9
    _, body = await get_job(http, job_id)
    assert body["status"] == "RUNNING"
    clock.now = T0 + 6.0
    _, body = await get_job(http, job_id)
    assert body["status"] == "SUCCESS"
    assert body["end_time"] == format_time(T0 + 6.0)


def test_default_durations_are_realistic_and_seeded(clock: FakeClock) -> None:
    def durations(seed: int) -> tuple[list[str], list[float]]:
        sim = Simulator(seed=seed, clock=clock)
        ids = [sim.create_job("createServer") for _ in range(300)]
        ends = [timeline(sim, clock, j)[-1].at - T0 for j in ids]
        return ids, ends

    ids, ends = durations(42)
    assert durations(42) == (ids, ends)  # reproducible
    assert durations(43)[0] != ids
    ends.sort()
    median = ends[len(ends) // 2]
    assert 60 <= median <= 120
    assert min(ends) >= 5
    assert max(ends) > 2 * median  # a tail exists


def test_create_job_validates_arguments(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="job_type"):
        sim.create_job("launchRocket")
    with pytest.raises(ValueError, match="count"):
        sim.create_job("resizeServer", count=2)
    with pytest.raises(ValueError, match="count"):
        sim.create_job("createServer", count=0)
    with pytest.raises(ValueError, match="duration"):
        sim.create_job(duration=float("nan"))
    with pytest.raises(ValueError, match="speed"):
        Simulator(speed=0)
    assert sim.job_ids() == []


# ----------------------------------------------------------------- standalone


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_run_standalone_serves_demo_jobs_and_stops_on_sigterm() -> None:
    code = (
        "from jobwatchd.cloud.simulator import Faults, run_standalone\n"
        "run_standalone(host='127.0.0.1', port=0, speed=50.0, token=None,"
        " faults=Faults(), demo_jobs=4, seed=5)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        lines = []
        url = None
        while url is None:
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
            assert line, "simulator exited early"
            lines.append(line)
            found = re.search(r"listening on (http://\S+)", line)
            url = found.group(1) if found else None
        demo = [ln.split()[2] for ln in lines if ln.startswith("demo job ")]
        assert len(demo) == 4
        assert any("FAIL" in ln for ln in lines if ln.startswith("demo job "))
        async with (
            aiohttp.ClientSession(base_url=url) as http,
            http.get(job_url(demo[0])) as resp,
        ):
            assert resp.status == 200
            assert (await resp.json())["job_id"] == demo[0]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# ------------------------------------------------------------ authentication

AK, SK = "SIMTESTAK", "sim-test-secret-key"


def signed(
    clock: FakeClock,
    path: str,
    *,
    sk: str = SK,
    ak: str = AK,
    skew: float = 0.0,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Headers of a request to ``path`` signed like jobwatchd signs it."""
    headers = dict(extra or {})
    when = datetime.fromtimestamp(clock.now + skew, UTC)
    url = URL("http://sim.test") / path.lstrip("/")
    headers |= sign(method="GET", url=url, headers=headers, ak=ak, sk=sk, now=when)
    return headers


async def test_signatures_are_verified_and_refused_with_the_gateway_body(
    clock: FakeClock, serve: Serve
) -> None:
    sim = Simulator(seed=2, clock=clock, credentials={AK: SK})
    http = await serve(sim)
    job_id = sim.create_job()
    path = job_url(job_id)
    project = {"X-Project-Id": DEFAULT_PROJECT_ID}
    status, body = await get_job(http, job_id, **signed(clock, path, extra=project))
    assert status == 200
    assert body["job_id"] == job_id

    other_path = signed(clock, job_url("0" * 32))  # signed for another URL
    refusals = {
        "wrong secret key": signed(clock, path, sk="guess"),
        "unknown access key": signed(clock, path, ak="NOBODY"),
        "signature for another path": other_path,
        "x-sdk-date 16 minutes old": signed(clock, path, skew=-16 * 60),
        "x-sdk-date 16 minutes ahead": signed(clock, path, skew=16 * 60),
        "project header for another project": signed(
            clock, path, extra={"X-Project-Id": "another"}
        ),
        "host not signed": {
            **signed(clock, path),
            "Authorization": signed(clock, path)["Authorization"].replace("host;", ""),
        },
        "no credentials at all": {},
        "not an SDK signature": {"Authorization": "Bearer something"},
    }
    for reason, headers in refusals.items():
        status, body = await get_job(http, job_id, **headers)
        assert status == 401, reason
        assert body["error_code"] == "APIGW.0301", reason
        assert body["error_msg"].startswith("Incorrect IAM authentication information"), reason
        assert SK not in body["error_msg"]
    assert sim.stats["unauthorized"] == len(refusals)
    assert sim.stats["ok"] == 1
    # Within the 15 minutes either way is fine.
    status, _ = await get_job(http, job_id, **signed(clock, path, skew=-14 * 60))
    assert status == 200


async def iam_token(
    http: aiohttp.ClientSession, user: str, password: str, project_id: str = DEFAULT_PROJECT_ID
) -> tuple[int, str | None, dict[str, Any]]:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": user, "password": password, "domain": {"name": "acme"}}
                },
            },
            "scope": {"project": {"id": project_id}},
        }
    }
    async with http.post("/v3/auth/tokens?nocatalog=true", json=body) as resp:
        answer = await resp.json()
        assert isinstance(answer, dict)
        return resp.status, resp.headers.get("X-Subject-Token"), answer


async def test_iam_issues_short_lived_project_scoped_tokens(clock: FakeClock, serve: Serve) -> None:
    sim = Simulator(seed=3, clock=clock, iam_users={("acme", "bot"): "pa55word"}, token_lifetime=30)
    http = await serve(sim)
    job_id = sim.create_job(duration=10_000)
    status, token, body = await iam_token(http, "bot", "pa55word")
    assert status == 201
    assert token and token in sim.issued_tokens()
    assert body["token"]["issued_at"] == "2016-04-25T20:04:34.604000Z"
    assert body["token"]["expires_at"] == "2016-04-25T20:05:04.604000Z"
    assert body["token"]["project"]["id"] == DEFAULT_PROJECT_ID
    assert sim.stats["iam_tokens"] == 1

    status, _ = await get_job(http, job_id, **{"X-Auth-Token": token})
    assert status == 200
    clock.now += 29.9
    status, _ = await get_job(http, job_id, **{"X-Auth-Token": token})
    assert status == 200
    clock.now += 0.1
    status, refused = await get_job(http, job_id, **{"X-Auth-Token": token})
    assert status == 401
    assert refused["error_code"] == "APIGW.0307"

    _, other, _ = await iam_token(http, "bot", "pa55word", project_id="another-project")
    assert other is not None
    status, refused = await get_job(http, job_id, **{"X-Auth-Token": other})
    assert (status, refused["error_code"]) == (401, "APIGW.0301")
    status, refused = await get_job(http, job_id, **{"X-Auth-Token": "made-up"})
    assert (status, refused["error_code"]) == (401, "APIGW.0301")

    sim.revoke_tokens()
    _, fresh, _ = await iam_token(http, "bot", "pa55word")
    assert fresh is not None
    status, _ = await get_job(http, job_id, **{"X-Auth-Token": other})
    assert status == 401
    status, _ = await get_job(http, job_id, **{"X-Auth-Token": fresh})
    assert status == 200


async def test_iam_refuses_wrong_passwords_and_bad_requests(clock: FakeClock, serve: Serve) -> None:
    sim = Simulator(seed=4, clock=clock, iam_users={("acme", "bot"): "pa55word"})
    http = await serve(sim)
    for user, password in (("bot", "wrong"), ("nobody", "pa55word")):
        status, token, body = await iam_token(http, user, password)
        assert (status, token) == (401, None)
        assert body["error"] == {
            "code": 401,
            "message": "The username or password is wrong.",
            "title": "Unauthorized",
        }
    bad_bodies: list[object] = [{"auth": {}}, [1], {"auth": {"identity": {"methods": ["token"]}}}]
    for bad in bad_bodies:
        async with http.post("/v3/auth/tokens", json=bad) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["code"] == 400
    status, _, _ = await iam_token(http, "bot", "pa55word", project_id="../x")
    assert status == 400
    assert sim.stats["iam_refused"] == 6
    assert sim.stats["iam_tokens"] == 0


async def test_one_project_can_be_throttled_alone(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    calm = sim.create_job()
    busy = sim.create_job(project_id="busy-project")
    sim.faults.retry_after = 2.5
    sim.throttle_project("busy-project", status=403)
    async with http.get(job_url(busy, "busy-project")) as resp:
        assert resp.status == 403
        assert resp.headers["Retry-After"] == "3"
        body = await resp.json()
    assert body["error_code"] == "APIGW.0308"
    status, _ = await get_job(http, calm)
    assert status == 200
    sim.throttle_project("busy-project")  # 429 by default
    async with http.get(job_url(busy, "busy-project")) as resp:
        assert resp.status == 429
    sim.unthrottle_project("busy-project")
    async with http.get(job_url(busy, "busy-project")) as resp:
        assert resp.status == 200
    assert sim.project_stats["busy-project"] == {"throttled": 2, "ok": 1}
    assert sim.project_stats[DEFAULT_PROJECT_ID] == {"ok": 1}
    assert sim.stats["throttled"] == 2
    with pytest.raises(ValueError, match="429 or 403"):
        sim.throttle_project("busy-project", status=500)
