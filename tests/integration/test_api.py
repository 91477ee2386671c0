"""The HTTP API on a real socket, served by an in-process daemon against the simulator.

Bad input must get a clear problem+json naming the field, and store nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from jobwatchd.cloud.simulator import DEFAULT_PROJECT_ID
from tests.helpers.config import simulator_endpoints
from tests.helpers.daemon import InProcessDaemon as Api
from tests.helpers.daemon import running_daemon
from tests.helpers.http import PROBLEM
from tests.helpers.servers import RunningSimulator


@pytest.fixture
async def api(tmp_path: Path, simulator: RunningSimulator) -> AsyncIterator[Api]:
    async with running_daemon(tmp_path, simulator) as running:
        yield running


async def test_register_get_list_delete(api: Api) -> None:
    job_id = api.sim.sim.create_job("createServer", count=2, duration=60)
    status, job, ctype = await api.call(
        "POST", "/v1/jobs", {"job_id": job_id, "labels": {"team": "a"}}
    )
    assert (status, ctype) == (201, "application/json")
    expected_keys = {
        "job_id",
        "project_id",
        "account",
        "service",
        "status",
        "terminal",
        "job_type",
        "begin_time",
        "end_time",
        "error_code",
        "fail_reason",
        "entities",
        "labels",
        "registered_at",
        "updated_at",
        "polls",
        "next_poll_at",
        "last_error",
        "progress",
        "history",
    }
    assert set(job) == expected_keys
    assert job["status"] == "PENDING" and job["project_id"] == DEFAULT_PROJECT_ID
    assert job["service"] == "ecs"
    assert job["progress"] == {"percent": None, "sub_jobs_done": 0, "sub_jobs_total": None}
    status, again, _ = await api.call("POST", "/v1/jobs", {"job_id": job_id})
    assert status == 200 and again["job_id"] == job_id
    status, done, _ = await api.call("GET", f"/v1/jobs/{job_id}?wait=10")
    assert status == 200 and done["status"] == "SUCCESS" and done["terminal"] is True
    assert done["polls"] >= 1 and done["next_poll_at"] is None
    assert [step["to"] for step in done["history"]][-1] == "SUCCESS"
    assert done["history"][0]["from"] is None
    assert done["progress"] == {"percent": None, "sub_jobs_done": 2, "sub_jobs_total": 2}
    status, listing, _ = await api.call("GET", "/v1/jobs?label=team=a")
    assert status == 200 and [j["job_id"] for j in listing["jobs"]] == [job_id]
    assert listing["next"] is None
    status, listing, _ = await api.call("GET", "/v1/jobs?status=RUNNING")
    assert listing["jobs"] == []
    status, _, _ = await api.call("DELETE", f"/v1/jobs/{job_id}")
    assert status == 204
    status, problem, ctype = await api.call("GET", f"/v1/jobs/{job_id}")
    assert (status, ctype) == (404, PROBLEM)
    assert problem["status"] == 404 and job_id in problem["detail"]
    status, _, _ = await api.call("DELETE", f"/v1/jobs/{job_id}")
    assert status == 404


async def test_list_paginates_with_cursor(api: Api) -> None:
    ids = sorted(f"job-{n:03d}" for n in range(7))
    status, body, _ = await api.call("POST", "/v1/jobs", {"jobs": [{"job_id": i} for i in ids]})
    assert status == 201 and body["created"] == 7
    seen: list[str] = []
    after = ""
    while True:
        status, page, _ = await api.call("GET", f"/v1/jobs?limit=3{after}")
        assert status == 200
        seen.extend(job["job_id"] for job in page["jobs"])
        if page["next"] is None:
            break
        after = f"&after={page['next']}"
    assert seen == ids


async def test_wait_returns_current_state_when_the_wait_elapses(api: Api) -> None:
    job_id = api.sim.sim.create_job("createServer", duration=5000)
    await api.call("POST", "/v1/jobs", {"job_id": job_id})
    status, job, _ = await api.call("GET", f"/v1/jobs/{job_id}?wait=0.3")
    assert status == 200 and job["terminal"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"job_id": "../../v2/secrets"}, "job_id"),
        ({"job_id": "a/b"}, "job_id"),
        ({"job_id": "a%2Fb"}, "job_id"),
        ({"job_id": "a b"}, "job_id"),
        ({"job_id": "x" * 65}, "job_id"),
        ({"job_id": ""}, "job_id"),
        ({"job_id": 12}, "job_id"),
        ({"project_id": "p"}, "job_id"),
        ({"job_id": "ok", "project_id": "p/../q"}, "project_id"),
        ({"job_id": "ok", "account": "nobody"}, "account"),
        ({"job_id": "ok", "labels": {"k": 1}}, "labels.k"),
        ({"job_id": "ok", "labels": {str(n): "v" for n in range(33)}}, "labels"),
        ({"job_id": "ok", "labels": {"k": "v" * 257}}, "labels.k"),
        ({"job_id": "ok", "labels": ["a"]}, "labels"),
        ({"job_id": "ok", "timeout": -1}, "timeout"),
        ({"job_id": "ok", "timeout": "soon"}, "timeout"),
        ({"job_id": "ok", "endpoint": "http://evil.example"}, "endpoint"),
        ({"jobs": []}, "jobs"),
        ({"jobs": "a"}, "jobs"),
        ({"jobs": [{"job_id": "ok"}, {"job_id": "bad/id"}]}, "jobs[1].job_id"),
        ({"jobs": [{"job_id": "ok"}], "extra": 1}, "extra"),
        ([1, 2], "body"),
    ],
)
async def test_bad_registrations_are_rejected_and_store_nothing(
    api: Api, body: Any, field: str
) -> None:
    status, problem, ctype = await api.call("POST", "/v1/jobs", body)
    assert (status, ctype) == (400, PROBLEM), problem
    assert problem["field"] == field
    assert problem["status"] == 400 and field in problem["detail"]
    _, listing, _ = await api.call("GET", "/v1/jobs")
    assert listing["jobs"] == []


async def test_bad_json_and_oversize_bodies(api: Api) -> None:
    status, problem, ctype = await api.call("POST", "/v1/jobs", raw=b'{"job_id": ')
    assert (status, ctype, problem["field"]) == (400, PROBLEM, "body")
    big = orjson.dumps(
        {"jobs": [{"job_id": f"j{n}", "labels": {"k": "v" * 200}} for n in range(6000)]}
    )
    assert len(big) > 1024 * 1024
    status, problem, ctype = await api.call("POST", "/v1/jobs", raw=big)
    assert (status, ctype) == (413, PROBLEM)
    assert "api.max_body" in problem["detail"]
    _, listing, _ = await api.call("GET", "/v1/jobs")
    assert listing["jobs"] == []


async def test_batch_over_max_batch_is_refused(api: Api) -> None:
    too_many = {"jobs": [{"job_id": f"j{n}"} for n in range(1001)]}
    status, problem, _ = await api.call("POST", "/v1/jobs", too_many)
    assert status == 400 and "api.max_batch" in problem["detail"]


async def test_conflicting_project_is_409_and_batch_is_atomic(api: Api) -> None:
    status, _, _ = await api.call("POST", "/v1/jobs", {"job_id": "shared", "project_id": "projA"})
    assert status == 201
    batch = {"jobs": [{"job_id": "fresh"}, {"job_id": "shared", "project_id": "projB"}]}
    status, problem, ctype = await api.call("POST", "/v1/jobs", batch)
    assert (status, ctype) == (409, PROBLEM)
    assert problem["job_id"] == "shared"
    status, _, _ = await api.call("GET", "/v1/jobs/fresh")
    assert status == 404, "nothing of a refused batch is stored"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/jobs/a.b", "job_id"),
        ("/v1/jobs/ok?wait=abc", "wait"),
        ("/v1/jobs/ok?wait=-1", "wait"),
        ("/v1/jobs/ok?wait=nan", "wait"),
        ("/v1/jobs?limit=0", "limit"),
        ("/v1/jobs?limit=x", "limit"),
        ("/v1/jobs?label=novalue", "label"),
        ("/v1/jobs?after=../x", "after"),
    ],
)
async def test_bad_query_parameters(api: Api, path: str, field: str) -> None:
    status, problem, ctype = await api.call("GET", path)
    assert (status, ctype) == (400, PROBLEM)
    assert problem["field"] == field


async def test_unknown_route_and_method_are_problems(api: Api) -> None:
    status, problem, ctype = await api.call("GET", "/v2/nothing")
    assert (status, ctype, problem["status"]) == (404, PROBLEM, 404)
    status, problem, ctype = await api.call("PUT", "/v1/jobs")
    assert (status, ctype) == (405, PROBLEM)


async def test_health_and_readiness(api: Api) -> None:
    status, health, _ = await api.call("GET", "/healthz")
    assert status == 200 and health["status"] == "ok"
    status, ready, _ = await api.call("GET", "/readyz")
    assert status == 200 and ready["status"] == "ready"
    assert "default" in ready["accounts"]


async def test_bearer_token_when_configured(tmp_path: Path, simulator: RunningSimulator) -> None:
    async with running_daemon(tmp_path, simulator, token="s3cret-token") as running:
        url, session = running.url, running.session
        async with session.get(f"{url}/v1/jobs") as resp:
            assert resp.status == 401
            assert resp.content_type == PROBLEM
        async with session.get(f"{url}/v1/jobs", headers={"Authorization": "Bearer wrong"}) as resp:
            assert resp.status == 401
        async with session.get(
            f"{url}/v1/jobs", headers={"Authorization": "Bearer s3cret-token"}
        ) as resp:
            assert resp.status == 200
        async with session.get(f"{url}/healthz") as resp:
            assert resp.status == 200


# -- services ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "detail"),
    [
        ("k8s", "unknown service 'k8s': known are ecs, evs"),
        (12, "unknown service 12"),
        ("evs", "account 'default' has no endpoint for evs: give the account a region"),
        ("evs", "a region, or endpoints.evs, in the config"),
        ("sfs-turbo", 'endpoints."sfs-turbo"'),
    ],
)
async def test_a_service_the_account_cannot_reach_is_refused(
    api: Api, service: object, detail: str
) -> None:
    status, problem, ctype = await api.call(
        "POST", "/v1/jobs", {"jobs": [{"job_id": "ok"}, {"job_id": "x", "service": service}]}
    )
    assert (status, ctype, problem["field"]) == (400, PROBLEM, "jobs[1].service")
    assert detail in problem["detail"]
    _, listing, _ = await api.call("GET", "/v1/jobs")
    assert listing["jobs"] == []


async def test_services_on_registration_listing_and_conflicts(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    endpoints = simulator_endpoints(simulator.url, ["evs", "cce"])
    async with running_daemon(tmp_path, simulator, extra_account=endpoints) as api:
        batch = {
            "jobs": [
                {"job_id": "plain"},
                {"job_id": "disk", "service": "evs"},
                {"job_id": "cluster", "service": "cce", "labels": {"team": "k8s"}},
            ]
        }
        status, body, _ = await api.call("POST", "/v1/jobs", batch)
        assert status == 201 and body["created"] == 3
        assert [job["service"] for job in body["jobs"]] == ["ecs", "evs", "cce"]
        status, again, _ = await api.call("POST", "/v1/jobs", {"job_id": "disk", "service": "evs"})
        assert (status, again["service"]) == (200, "evs")
        status, problem, _ = await api.call("POST", "/v1/jobs", {"job_id": "disk"})
        assert status == 409 and "another service" in problem["detail"]
        status, problem, _ = await api.call(
            "POST", "/v1/jobs", {"job_id": "disk", "service": "ims"}
        )
        assert status == 400 and problem["field"] == "service"
        for service, expected in (("evs", ["disk"]), ("cce", ["cluster"]), ("ecs", ["plain"])):
            status, listing, _ = await api.call("GET", f"/v1/jobs?service={service}")
            assert status == 200 and [j["job_id"] for j in listing["jobs"]] == expected
        status, listing, _ = await api.call("GET", "/v1/jobs?service=cce&label=team=k8s")
        assert [j["job_id"] for j in listing["jobs"]] == ["cluster"]
        status, problem, _ = await api.call("GET", "/v1/jobs?service=nope")
        assert (status, problem["field"]) == (400, "service")
        status, document, _ = await api.call("GET", "/openapi.json")
        registration = document["components"]["schemas"]["Registration"]["properties"]
        assert "cce" in registration["service"]["enum"]
