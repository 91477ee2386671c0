"""The simulator serves every service's job API (jobwatchd.services) in the
service's own format, over real sockets: what it answers parses, with the
daemon's own parsers (jobwatchd.cloud.formats), into the statuses and sub-jobs
of the job's true timeline."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import pytest
from yarl import URL

from jobwatchd import services
from jobwatchd.cloud.formats import MalformedResponse, parse_answer
from jobwatchd.cloud.signing import sign
from jobwatchd.cloud.simulated_formats import SERVICE_SPECS
from jobwatchd.cloud.simulator import (
    DEFAULT_PROJECT_ID,
    DEMO_SERVICES,
    MAX_ARRIVALS,
    OUTCOMES,
    SERVICE_JOB_TYPES,
    Faults,
    Simulator,
    Transition,
    create_demo_jobs,
    max_in_window,
    start_simulator,
)
from tests.helpers.clock import FakeClock
from tests.helpers.signing import AK, NOW, SK, sdk_sign

T0 = 1_700_000_000.0
NO_INIT = {"rds", "taurusdb", "dds", "geminidb", "sfs-turbo"}


class Served:
    """A simulator on a real socket of 127.0.0.1, and a session to it."""

    def __init__(self, sim: Simulator, clock: FakeClock, port: int, http: aiohttp.ClientSession):
        self.sim, self.clock, self.port, self.http = sim, clock, port, http
        self.base = f"http://127.0.0.1:{port}"

    def url(self, service: str, job_id: str, project_id: str = DEFAULT_PROJECT_ID) -> URL:
        """The URL the daemon queries: the catalogue's path under ``/{service}``."""
        return services.job_url(service, f"{self.base}/{service}", project_id, job_id)

    async def get(self, url: URL | str, **headers: str) -> tuple[int, bytes]:
        async with self.http.get(url, headers=headers) as resp:
            return resp.status, await resp.read()

    async def answer(self, service: str, job_id: str) -> Any:
        status, raw = await self.get(self.url(service, job_id))
        assert status == 200, raw
        return orjson.loads(raw)


@pytest.fixture
async def served() -> AsyncIterator[Any]:
    started: list[tuple[aiohttp.web.AppRunner, aiohttp.ClientSession]] = []

    async def start(**options: Any) -> Served:
        clock = options.pop("clock", None) or FakeClock(T0)
        sim = Simulator(seed=options.pop("seed", 11), clock=clock, **options)
        runner, port = await start_simulator(sim)
        http = aiohttp.ClientSession()
        started.append((runner, http))
        return Served(sim, clock, port, http)

    yield start
    for runner, http in started:
        await http.close()
        await runner.cleanup()


def has_subs(service: str, job_type: str) -> bool:
    return SERVICE_SPECS[service][job_type].sub_job_type is not None


CASES = [
    (service, job_type, fail)
    for service in services.SERVICES
    for job_type in SERVICE_JOB_TYPES[service]
    for fail in (False, True)
]


def state_at(line: list[Transition], job_id: str, now: float) -> str | None:
    """The (sub-)job's true status at ``now``: its latest transition reached."""
    reached = [t.to for t in line if t.job_id == job_id and t.at <= now]
    return reached[-1] if reached else None


# ------------------------------------------------------------ the round trip


@pytest.mark.parametrize(("service", "job_type", "fail"), CASES)
async def test_every_service_answers_what_its_parser_maps_to_the_true_timeline(
    service: str, job_type: str, fail: bool, served: Any
) -> None:
    s: Served = await served()
    count = 3 if has_subs(service, job_type) else 1
    item = {"service": service, "job_type": job_type, "count": count, "fail": fail}
    async with s.http.post(f"{s.base}/_sim/jobs", json={**item, "duration": 100}) as resp:
        assert resp.status == 201
        job_id = (await resp.json())["job_id"]
    assert s.sim.service_of(job_id) == service
    s.clock.now = T0 + 10**6
    line = s.sim.transitions(job_id)
    s.clock.now = T0
    answer_format = services.SERVICES[service].answer_format
    readings = sorted({T0, *(t.at for t in line), *(t.at + 0.5 for t in line)})
    seen: list[str] = []
    for now in readings:
        s.clock.now = now
        answer = parse_answer(answer_format, await s.answer(service, job_id), job_id=job_id)
        assert answer.job_id == job_id
        assert answer.job_type == job_type
        assert answer.status == state_at(line, job_id, now), now
        for sub in answer.sub_jobs:
            assert sub.status == state_at(line, sub.job_id, now), (now, sub.job_id)
        started = {t.job_id for t in line if t.parent_job_id == job_id and t.at <= now}
        assert {sub.job_id for sub in answer.sub_jobs} == started
        if not seen or seen[-1] != answer.status:
            seen.append(answer.status)
    terminal = "FAIL" if fail else "SUCCESS"
    expected = ["RUNNING", terminal] if service in NO_INIT else ["INIT", "RUNNING", terminal]
    assert seen == expected
    assert [t.to for t in line if t.parent_job_id is None] == expected
    assert answer.terminal
    if count > 1:
        assert len(answer.sub_jobs) == count
        failed = [sub for sub in answer.sub_jobs if sub.status == "FAIL"]
        assert len(failed) == (1 if fail else 0)
        assert all(sub.job_type for sub in answer.sub_jobs)
    else:
        assert answer.sub_jobs == ()
    if fail:
        assert answer.fail_reason


# ------------------------------------------------------- the vendors' fields

# The keys of the notes' example answers (shared/vendor/job-apis.md), per format.
EXAMPLE_KEYS: dict[str, set[str]] = {
    # §2b EVS (a volume job without sub-jobs)
    "evs": {"begin_time", "end_time", "entities", "error_code", "fail_reason", "job_id"}
    | {"job_type", "status"},
    # §5b CCE
    "cce": {"apiVersion", "kind", "metadata", "spec", "status"},
    # §6b ELB
    "elb": {"job", "request_id"},
    # §7.3 GeminiDB
    "geminidb": {"jobs", "total_count"},
    # §8b DCS (the schema's fail_reason for the example's fail_resson)
    "dcs": {"begin_time", "end_time", "fail_reason", "job_id", "job_type", "status"},
}


async def test_answers_carry_the_vendor_examples_fields(served: Any) -> None:
    s: Served = await served()
    ids = {
        "evs": s.sim.create_job("createVolume", service="evs", duration=100),
        "cce": s.sim.create_job("CreateCluster", service="cce", count=2, duration=100),
        "elb": s.sim.create_job("UPGRADE", service="elb", count=3, duration=100),
        "geminidb": s.sim.create_job(service="geminidb", duration=100),
        "dcs": s.sim.create_job(service="dcs", duration=100),
        "rds": s.sim.create_job(service="rds", duration=100),
        "dds": s.sim.create_job(service="dds", duration=100),
        "sfs-turbo": s.sim.create_job(
            "batch_bind_ldap", service="sfs-turbo", count=2, duration=100
        ),
    }
    s.clock.now = T0 + 50
    bodies = {name: await s.answer(name, job_id) for name, job_id in ids.items()}
    for name, keys in EXAMPLE_KEYS.items():
        assert set(bodies[name]) == keys, name
    evs = bodies["evs"]
    assert evs["status"] == "RUNNING"
    assert evs["end_time"] == ""  # as the example while running
    assert set(evs["entities"]) == {"volume_id"}
    cce = bodies["cce"]
    assert cce["kind"] == "Job"
    assert cce["metadata"]["uid"] == ids["cce"]
    assert cce["spec"]["type"] == "CreateCluster"
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{9} \+0000 UTC", cce["metadata"]["creationTimestamp"]
    )
    assert {sub["spec"]["type"] for sub in cce["spec"]["subJobs"]} == {
        "CreatePSMCert",
        "InstallMaster",
    }
    assert cce["status"] == {"phase": "Running", "reason": ""}
    elb = bodies["elb"]["job"]
    assert {
        "begin_time",
        "end_time",
        "error_code",
        "error_msg",
        "job_id",
        "job_type",
        "project_id",
        "resource_id",
        "status",
        "sub_jobs",
    } == set(elb)
    assert elb["project_id"] == DEFAULT_PROJECT_ID
    assert [sub["job_type"] for sub in elb["sub_jobs"]] == [
        "UPGRADE_INIT",
        "UPGRADE_TRAFFIC_SWITCH",
        "UPGRADE_COMPLETE",
    ]
    assert elb["sub_jobs"][0]["entities"] == [
        {"resource_id": elb["resource_id"], "resource_type": "loadbalancer"}
    ]
    rds = bodies["rds"]["job"]
    assert list(rds) == [
        "id",
        "name",
        "status",
        "created",
        "ended",
        "process",
        "instance",
        "entities",
        "fail_reason",
    ]
    assert rds["status"] == "Running"
    assert re.fullmatch(r"\d{1,2}%", rds["process"])
    assert rds["instance"]["id"].endswith("in01")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000", rds["created"])
    dds = bodies["dds"]["job"]
    assert "progress" in dds and "process" not in dds and "entities" not in dds
    (gemini,) = bodies["geminidb"]["jobs"]
    assert set(gemini) == {
        "end_time",
        "fail_reason",
        "id",
        "instance",
        "name",
        "progress",
        "start_time",
        "status",
    }
    assert bodies["geminidb"]["total_count"] == 1
    assert re.fullmatch(r"\d{13}", bodies["dcs"]["begin_time"])
    assert bodies["dcs"]["end_time"] == ""
    sfs = bodies["sfs-turbo"]
    assert sfs["status"] == "running"
    assert {sub["status"] for sub in sfs["sub_jobs"]} <= {"running", "success", "failed"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", sfs["begin_time"])
    s.clock.now = T0 + 10**6
    done = await s.answer("elb", ids["elb"])
    assert done["job"]["status"] == "COMPLETE"
    assert {sub["status"] for sub in done["job"]["sub_jobs"]} == {"SUCCESS"}
    assert (await s.answer("rds", ids["rds"]))["job"]["process"] == ""


async def test_ims_progress_rises_with_time_and_sub_jobs_are_listed(served: Any) -> None:
    s: Served = await served()
    job_id = s.sim.create_job("imsImportOvaImageJob", service="ims", count=2, duration=100)
    progress: list[float] = []
    for t in range(0, 101, 5):
        s.clock.now = T0 + t
        body = await s.answer("ims", job_id)
        entities = body["entities"]
        assert set(entities) == {"sub_jobs_result", "sub_jobs_list", "process_percent"}
        assert len(entities["sub_jobs_list"]) == 2
        percent = parse_answer("ims", body).progress
        assert percent is not None
        progress.append(percent)
    assert progress == sorted(progress)
    assert progress[0] == 0.0
    assert progress[-1] == 100.0
    assert len(set(progress)) > 5
    result = body["entities"]["sub_jobs_result"][0]
    assert set(result["entities"]) == {"image_name", "image_id"}


# -------------------------------------------------------------- which routes


async def test_a_job_is_found_only_under_its_own_service(served: Any) -> None:
    s: Served = await served()
    ecs = s.sim.create_job()
    evs = s.sim.create_job(service="evs")
    cce = s.sim.create_job(service="cce")
    rds = s.sim.create_job(service="rds")
    sfs = s.sim.create_job(service="sfs-turbo")
    root = f"{s.base}/v1/{DEFAULT_PROJECT_ID}/jobs"
    # The root serves ECS only, as the /ecs prefix does, byte for byte.
    status, raw = await s.get(f"{root}/{ecs}")
    assert (status, raw) == (200, (await s.get(s.url("ecs", ecs)))[1])
    status, raw = await s.get(f"{root}/{evs}")
    assert status == 400
    assert orjson.loads(raw) == {
        "error": {"code": "Common.0011", "message": "Failed to obtain the job."}
    }
    refusals = {
        ("evs", ecs): (400, {"error"}),
        ("ims", evs): (400, {"error"}),
        ("cce", evs): (404, {"error_code", "error_msg"}),
        ("elb", cce): (404, {"error_code", "error_msg", "request_id"}),
        ("dds", rds): (404, {"error_code", "error_msg"}),
        ("rds", "0" * 32): (404, {"error_code", "error_msg"}),
        ("dcs", sfs): (404, {"error_code", "error_msg"}),
        ("sfs-turbo", cce): (404, {"errCode", "errMsg"}),
    }
    for (service, job_id), (expected, keys) in refusals.items():
        status, raw = await s.get(s.url(service, job_id))
        assert status == expected, service
        assert set(orjson.loads(raw)) == keys, service
    # An RDS-style query without its id is not found either.
    status, raw = await s.get(f"{s.base}/rds/v3/{DEFAULT_PROJECT_ID}/jobs")
    assert status == 404
    assert orjson.loads(raw)["error_code"]
    # Another project's job is not found under the right service.
    status, _ = await s.get(s.url("cce", cce, project_id="another"))
    assert status == 404
    for service, job_id in {"evs": evs, "cce": cce, "rds": rds, "sfs-turbo": sfs}.items():
        assert (await s.get(s.url(service, job_id)))[0] == 200
    assert s.sim.service_stats["ecs"]["unknown_job"] == 1
    assert s.sim.service_stats["rds"]["unknown_job"] == 2
    assert s.sim.stats["unknown_job"] == len(refusals) + 3


async def test_unknown_service_and_non_ecs_payment_are_refused(served: Any) -> None:
    s: Served = await served()
    with pytest.raises(ValueError, match="service must be one of"):
        s.sim.create_job(service="nova")
    with pytest.raises(ValueError, match="job_type must be one of for service evs"):
        s.sim.create_job("createServer", service="evs")
    with pytest.raises(ValueError, match="ecs jobs only"):
        s.sim.create_job(service="rds", payment=60)
    bad_bodies: list[tuple[object, str]] = [
        ({"service": "nova"}, "service"),
        ({"service": ["evs"]}, "service"),
        ({"service": "cce", "job_type": "createServer"}, "job_type"),
        ({"jobs": [{"service": "evs"}, {"service": "nope"}]}, "jobs[1]"),
    ]
    for body, needle in bad_bodies:
        async with s.http.post(f"{s.base}/_sim/jobs", json=body) as resp:
            assert resp.status == 400
            assert needle in (await resp.json())["message"]
    assert s.sim.job_ids() == []
    async with s.http.post(f"{s.base}/_sim/jobs", json={"service": "dcs"}) as resp:
        assert resp.status == 201
        job_id = (await resp.json())["job_id"]
    assert s.sim.service_of(job_id) == "dcs"
    assert (await s.answer("dcs", job_id))["job_type"] == "masterStandbySwapJob"


# --------------------------------------------------------------------- faults

FAULT_SERVICES = ["evs", "ims", "cce", "elb", "rds", "geminidb", "dcs", "sfs-turbo"]


@pytest.mark.parametrize("service", FAULT_SERVICES)
async def test_every_fault_kind_on_a_service_route(service: str, served: Any) -> None:
    s: Served = await served()
    job_id = s.sim.create_job(service=service, duration=100)
    s.clock.now = T0 + 50
    url = s.url(service, job_id)
    answer_format = services.SERVICES[service].answer_format
    ok_keys = set(await s.answer(service, job_id))
    error_keys = {
        "evs": {"error"},
        "ims": {"error"},
        "elb": {"error_code", "error_msg", "request_id"},
        "sfs-turbo": {"errCode", "errMsg"},
    }.get(service, {"error_code", "error_msg"})

    async def with_fault(**fault: float) -> tuple[int, bytes, Mapping[str, str]]:
        s.sim.faults = Faults(**fault)
        async with s.http.get(url) as resp:
            return resp.status, await resp.read(), dict(resp.headers)

    status, raw, headers = await with_fault(throttle=1.0, retry_after=2)
    assert (status, orjson.loads(raw)["error_code"]) == (429, "APIGW.0308")
    assert headers["Retry-After"] == "2"
    status, raw, _ = await with_fault(error_5xx=1.0)
    assert status in (500, 502, 503)
    assert set(orjson.loads(raw)) == error_keys
    status, raw, _ = await with_fault(not_found=1.0)
    assert status == 404
    assert set(orjson.loads(raw)) == error_keys
    status, raw, _ = await with_fault(rejected=1.0)
    assert status == 400
    assert set(orjson.loads(raw)) == error_keys
    status, raw, _ = await with_fault(malformed=1.0)
    assert status == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)
    status, raw, _ = await with_fault(no_status=1.0)
    assert status == 200
    body = orjson.loads(raw)
    # A flat record loses its status; a nested format keeps its envelope and
    # loses the status inside it.
    flat = service in {"evs", "ims", "dcs", "sfs-turbo"}
    assert set(body) == (ok_keys - {"status"} if flat else ok_keys)
    with pytest.raises(MalformedResponse, match="status"):
        parse_answer(answer_format, body, job_id=job_id)
    loop = asyncio.get_running_loop()
    began = loop.time()
    status, _, _ = await with_fault(latency=0.1)
    assert status == 200
    assert loop.time() - began >= 0.1
    assert dict(s.sim.service_stats[service]) == {
        "ok": 2,
        "429": 1,
        "5xx": 1,
        "404": 1,
        "400": 1,
        "malformed": 1,
        "no_status": 1,
    }
    s.sim.faults = Faults()
    s.sim.throttle_project(DEFAULT_PROJECT_ID, status=403)
    status, raw, _ = await with_fault()
    assert (status, orjson.loads(raw)["error_code"]) == (403, "APIGW.0308")
    assert s.sim.service_stats[service]["throttled"] == 1


# ----------------------------------------------------- counting, per service


async def test_queries_are_counted_and_timed_per_service(served: Any) -> None:
    s: Served = await served()
    evs = s.sim.create_job(service="evs")
    cce = s.sim.create_job(service="cce")
    ecs = s.sim.create_job()
    for _ in range(3):
        await s.answer("evs", evs)
    await s.answer("cce", cce)
    await s.get(s.url("cce", evs))
    await s.get(f"{s.base}/v1/{DEFAULT_PROJECT_ID}/jobs/{ecs}")
    async with s.http.get(f"{s.base}/_sim/stats") as resp:
        stats = await resp.json()
    assert stats["ok"] == 5
    assert set(stats["services"]) == set(services.SERVICES)
    assert stats["services"]["evs"]["ok"] == 3
    assert stats["services"]["cce"] == {
        **dict.fromkeys(OUTCOMES, 0),
        "ok": 1,
        "unknown_job": 1,
    }
    assert stats["services"]["ecs"]["ok"] == 1
    assert stats["services"]["rds"]["ok"] == 0
    assert [len(s.sim.arrivals[name]) for name in ("evs", "cce", "ecs")] == [3, 2, 1]
    times = list(s.sim.arrivals["evs"])
    assert times == sorted(times)
    assert 1 <= max_in_window(times) <= 3
    assert s.sim.arrivals["evs"].maxlen == MAX_ARRIVALS


# ------------------------------------------------------------ authentication


async def test_a_signed_rds_style_query_is_verified_over_path_and_query(served: Any) -> None:
    s: Served = await served(clock=FakeClock(NOW.timestamp()), credentials={AK: SK})
    job_id = s.sim.create_job(service="rds")
    url = s.url("rds", job_id)
    assert url.query_string == f"id={job_id}"
    ours = sign(method="GET", url=url, headers={}, ak=AK, sk=SK, now=NOW)
    theirs = sdk_sign("GET", url, {}, b"")
    assert ours["Authorization"] == theirs["Authorization"]
    for headers in (ours, theirs):
        status, raw = await s.get(url, **headers)
        assert status == 200, raw
        assert orjson.loads(raw)["job"]["id"] == job_id
    # Signed for another id (the query is part of what is signed), or for the
    # path without the service prefix: refused.
    other = s.sim.create_job(service="rds")
    for signed_url in (
        url.with_query({"id": other}),
        URL(f"{s.base}/v3/{DEFAULT_PROJECT_ID}/jobs").with_query({"id": job_id}),
    ):
        forged = sign(method="GET", url=signed_url, headers={}, ak=AK, sk=SK, now=NOW)
        status, raw = await s.get(url, **forged)
        assert status == 401
        assert orjson.loads(raw)["error_code"] == "APIGW.0301"
    # Every other service's route demands the signature too.
    cce = s.sim.create_job(service="cce")
    status, _ = await s.get(s.url("cce", cce))
    assert status == 401
    when = datetime.fromtimestamp(s.clock.now, UTC)
    headers = sign(method="GET", url=s.url("cce", cce), headers={}, ak=AK, sk=SK, now=when)
    status, _ = await s.get(s.url("cce", cce), **headers)
    assert status == 200
    assert s.sim.service_stats["rds"] == {"ok": 2, "unauthorized": 2}
    assert s.sim.service_stats["cce"] == {"ok": 1, "unauthorized": 1}


async def test_a_token_is_demanded_on_every_service_route(served: Any) -> None:
    s: Served = await served(token="s3cret")
    for service in services.SERVICES:
        job_id = s.sim.create_job(service=service)
        assert (await s.get(s.url(service, job_id)))[0] == 401
        assert (await s.get(s.url(service, job_id), **{"X-Auth-Token": "s3cret"}))[0] == 200


# ------------------------------------------------------------------ demo jobs


def test_demo_jobs_span_the_services() -> None:
    sim = Simulator(seed=2, clock=FakeClock(T0))
    three = create_demo_jobs(sim, 3)
    assert [job["service"] for job in three] == ["ecs", "evs", "cce"]
    assert [sim.service_of(str(job["job_id"])) for job in three] == ["ecs", "evs", "cce"]
    more = create_demo_jobs(sim, 2 * len(DEMO_SERVICES))
    assert {job["service"] for job in more} == set(services.SERVICES)
    # Each service's job types in turn: the second round brings other types.
    assert {job["job_type"] for job in more if job["service"] == "evs"} == {
        "createVolume",
        "batchCreateVolume",
    }


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_standalone_prints_a_query_per_service_that_answers() -> None:
    code = (
        "from jobwatchd.cloud.simulator import Faults, run_standalone\n"
        "run_standalone(host='127.0.0.1', port=0, speed=50.0, token=None,"
        " faults=Faults(), demo_jobs=3, seed=5)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        tries: dict[str, str] = {}
        demo: dict[str, str] = {}
        while len(tries) < 3:
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
            assert line, "simulator exited early"
            if line.startswith("demo job "):
                _, _, job_id, service, *_ = line.split()
                demo[service] = job_id
            found = re.match(r"try \((\S+)\): curl '(\S+)'", line)
            if found:
                tries[found[1]] = found[2]
        assert set(tries) == set(demo) == {"ecs", "evs", "cce"}
        async with aiohttp.ClientSession() as http:
            for service, url in tries.items():
                async with http.get(url) as resp:
                    assert resp.status == 200
                    body = await resp.json()
                answer = parse_answer(services.SERVICES[service].answer_format, body)
                assert answer.job_id == demo[service]
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_iam_tokens_are_scoped_on_every_service_route(served: Any) -> None:
    s: Served = await served(iam_users={("acme", "bot"): "pa55word"})
    request = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": "bot", "password": "pa55word", "domain": {"name": "acme"}}
                },
            },
            "scope": {"project": {"id": DEFAULT_PROJECT_ID}},
        }
    }
    async with s.http.post(f"{s.base}/v3/auth/tokens", json=request) as resp:
        assert resp.status == 201
        token = resp.headers["X-Subject-Token"]
    for service in ("cce", "geminidb", "sfs-turbo"):
        mine = s.sim.create_job(service=service)
        theirs = s.sim.create_job(service=service, project_id="another-project")
        assert (await s.get(s.url(service, mine), **{"X-Auth-Token": token}))[0] == 200
        status, raw = await s.get(
            s.url(service, theirs, project_id="another-project"), **{"X-Auth-Token": token}
        )
        assert (status, orjson.loads(raw)["error_code"]) == (401, "APIGW.0301")
