"""``/openapi.json`` is the contract, and the handlers are held to it.

- the document is valid OpenAPI 3.1 and names every route the daemon serves;
- a tour of every route validates every request and response (problem+json
  included, and every SSE event's data) with ``openapi-core``;
- ``schemathesis`` fuzzes the live daemon (a subprocess) from the document:
  no 5xx, no response outside the schema;
- hypothesis drives hostile identifiers through the HTTP API and checks, at
  a recording upstream, that nothing outside ``[A-Za-z0-9_-]{1,64}`` ever
  reaches an upstream URL.
"""

from __future__ import annotations

import asyncio
import io
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from jsonschema import Draft202012Validator
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from werkzeug.datastructures import ImmutableMultiDict

from jobwatchd.client import SseParser
from jobwatchd.config import load_config
from jobwatchd.daemon import Daemon
from jobwatchd.daemon import lifecycle as daemon_module
from jobwatchd.http import jobs as api_module
from jobwatchd.http import openapi
from jobwatchd.http.events import CLOSED_EVENT
from jobwatchd.http.openapi import build_document
from jobwatchd.http.server import BoundedRunner
from jobwatchd.sinks import deadletters
from jobwatchd.validation import is_valid_id
from tests.helpers.config import write_config, write_token
from tests.helpers.daemon import DaemonProcess, running_daemon
from tests.helpers.servers import RunningSimulator, app_in_thread
from tests.helpers.waiting import wait_until

TOKEN = "fuzz-token-0123456789"
UPSTREAM_PATH = re.compile(r"/v1/[A-Za-z0-9_-]{1,64}/jobs/[A-Za-z0-9_-]{1,64}")


def test_the_document_is_valid_openapi_3_1(tmp_path: Path) -> None:
    config = load_config(None)
    for token in (False, True):
        document = build_document(config, token=token)
        validate_spec(document)
        assert document["openapi"].startswith("3.1")
    # The limits it states are the ones the handlers enforce.
    assert openapi.MAX_WAIT_SECONDS == api_module.MAX_WAIT_SECONDS
    assert openapi.MAX_LIST_LIMIT == api_module.MAX_LIST_LIMIT
    assert openapi.MAX_REDELIVER_IDS == deadletters.MAX_REDELIVER_IDS
    sink_pattern = f"^{deadletters._SINK_NAME.pattern}$"
    assert sink_pattern == openapi.SINK_PATTERN
    registration = build_document(config, token=True)["components"]["schemas"]["Batch"]
    assert registration["properties"]["jobs"]["maxItems"] == config.api.max_batch


# -- in-process: every route, every response --------------------------------------------


@dataclass
class Contract:
    """Sends requests and validates each request and response against the document."""

    document: dict[str, Any]
    session: aiohttp.ClientSession
    base: str
    seen: set[tuple[str, str, int]] = field(default_factory=set)

    def __post_init__(self) -> None:
        # An event stream is checked one event at a time (its schema describes one event).
        json_types = ("application/problem+json", "text/event-stream")
        self.spec = OpenAPI.from_dict(
            self.document,
            config=Config(extra_media_type_deserializers=dict.fromkeys(json_types, orjson.loads)),
        )
        self.templates = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path)
            for path in self.document["paths"]
        ]
        registry: Registry[Any] = Registry().with_resource(
            "urn:jobwatchd", Resource.from_contents(self.document, DRAFT202012)
        )

        def validator(ref: str) -> Draft202012Validator:
            return Draft202012Validator(
                {"$ref": "urn:jobwatchd" + ref},
                registry=registry,
                format_checker=Draft202012Validator.FORMAT_CHECKER,
            )

        stream = self.document["components"]["schemas"]["StreamEvent"]
        self.stream_event = validator("#/components/schemas/StreamEvent")
        self.event_data = {}
        for branch in stream["oneOf"]:
            names = branch["properties"]["event"].get("enum") or [
                branch["properties"]["event"]["const"]
            ]
            data = validator(branch["properties"]["data"]["contentSchema"]["$ref"])
            self.event_data.update(dict.fromkeys(names, data))

    def template(self, path: str) -> str:
        for pattern, template in self.templates:
            if pattern.match(path):
                return str(template)
        raise AssertionError(f"{path} is not in the document")

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str]] = (),
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        token: bool = True,
        valid: bool = True,
    ) -> tuple[int, bytes]:
        data = raw if raw is not None else (None if body is None else orjson.dumps(body))
        sent = {"Content-Type": "application/json"} if data is not None else {}
        sent.update(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {TOKEN}"
        async with self.session.request(
            method,
            self.base + path,
            params=list(params),
            data=None if data is None else io.BytesIO(data),
            headers=sent,
        ) as resp:
            content = await resp.read()
            status, content_type, resp_headers = resp.status, resp.content_type, resp.headers
        request = MockRequest(
            self.base,
            method,
            path,
            args=ImmutableMultiDict(list(params)),
            headers=sent,
            data=data,
        )
        bodies = [content]
        if content_type == "text/event-stream":
            bodies = []
            for message in SseParser().feed(content):
                if message.data is not None:
                    item = {"event": message.event, "data": message.data, "id": message.id}
                    self.stream_event.validate(item)
                    self.event_data[message.event].validate(orjson.loads(message.data))
                    bodies.append(orjson.dumps(item))
            assert bodies, "an event stream without events proves nothing"
        for each in bodies:
            response = MockResponse(
                each, status_code=status, headers=dict(resp_headers), content_type=content_type
            )
            self.spec.validate_response(request, response)
        if valid and status < 400:
            self.spec.validate_request(request)
        self.seen.add((self.template(path), method.lower(), status))
        return status, content


class CapturingRunner(BoundedRunner):
    """Keeps the application the daemon serves, to compare its routes with the document."""

    apps: list[web.Application] = []  # noqa: RUF012 - a test's scratch list

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        CapturingRunner.apps.append(app)
        super().__init__(app, **kwargs)


async def test_every_route_is_documented_and_every_response_validates(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    CapturingRunner.apps.clear()
    # what the daemon builds its runner with
    monkeypatch.setattr(daemon_module, "BoundedRunner", CapturingRunner)
    async with running_daemon(tmp_path, simulator, token=TOKEN) as running:
        daemon, session, base = running.daemon, running.session, running.url
        (app,) = CapturingRunner.apps
        async with session.get(
            f"{base}/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as resp:
            document = orjson.loads(await resp.read())
        assert document == build_document(daemon.config, token=True)

        served = {
            (route.resource.canonical, route.method.lower())
            for route in app.router.routes()
            if route.method != "HEAD"
            and route.resource is not None
            # The web view's pages and its summary are for a browser, not the API contract.
            and not route.resource.canonical.startswith("/ui")
        }
        documented = {(path, method) for path, item in document["paths"].items() for method in item}
        assert served == documented

        contract = Contract(document, session, base)
        await _tour(contract, daemon, simulator)

    expected = {
        (path, method, int(status))
        for path, item in document["paths"].items()
        for method, operation in item.items()
        for status in operation["responses"]
    }
    # Not reachable from outside: internal errors, and registration while draining.
    unreachable = {entry for entry in expected if entry[2] == 500}
    unreachable.add(("/v1/jobs", "post", 503))
    # A body slower than api.body_timeout: tests/integration/test_hostile_api.py sends one.
    unreachable.add(("/v1/jobs", "post", 408))
    unreachable.add(("/v1/dead-letters/redeliver", "post", 408))
    assert expected - unreachable <= contract.seen, sorted(expected - unreachable - contract.seen)
    assert contract.seen <= expected, sorted(contract.seen - expected)


async def _tour(contract: Contract, daemon: Daemon, simulator: RunningSimulator) -> None:
    call = contract.call
    sim = simulator.sim
    ok = sim.create_job("createServer", count=3, duration=30)
    bad = sim.create_job("createServer", count=2, fail=True, duration=30)
    plain = sim.create_job("resizeServer", duration=30)

    assert (await call("POST", "/v1/jobs", body={"job_id": ok, "labels": {"t": "a"}}))[0] == 201
    assert (await call("POST", "/v1/jobs", body={"job_id": ok}))[0] == 200
    batch = {"jobs": [{"job_id": bad, "timeout": "1h"}, {"job_id": plain, "timeout": 600}]}
    assert (await call("POST", "/v1/jobs", body=batch))[0] == 201
    assert (await call("POST", "/v1/jobs", body=batch))[0] == 200
    conflict = {"job_id": ok, "project_id": "another"}
    assert (await call("POST", "/v1/jobs", body=conflict))[0] == 409
    status, _ = await call("POST", "/v1/jobs", body={"job_id": "a/b"}, valid=False)
    assert status == 400
    huge = b'{"jobs": [' + b",".join([b'{"job_id": "x"}'] * 80_000) + b"]}"
    assert (await call("POST", "/v1/jobs", raw=huge, valid=False))[0] == 413
    assert (await call("POST", "/v1/jobs", body={"job_id": "x"}, token=False))[0] == 401

    # An upstream that fails for a while leaves a last_error on a job.
    sim.faults.update({"error_5xx": 1.0})
    flaky = sim.create_job("createServer", count=1, duration=30)
    await call("POST", "/v1/jobs", body={"job_id": flaky})
    for _ in range(200):
        _, content = await call("GET", f"/v1/jobs/{flaky}")
        if orjson.loads(content)["last_error"] is not None:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("no last_error recorded")
    sim.faults.update({"error_5xx": 0.0})

    for job_id in (ok, bad, plain, flaky):
        status, content = await call("GET", f"/v1/jobs/{job_id}", params=[("wait", "20")])
        assert status == 200 and orjson.loads(content)["terminal"], content
    assert (await call("GET", "/v1/jobs/nobody"))[0] == 404
    assert (await call("GET", "/v1/jobs/a.b", valid=False))[0] == 400
    assert (await call("GET", f"/v1/jobs/{ok}", token=False))[0] == 401

    listing = [("label", "t=a"), ("limit", "2"), ("status", "SUCCESS")]
    status, content = await call("GET", "/v1/jobs", params=listing)
    assert status == 200 and [job["job_id"] for job in orjson.loads(content)["jobs"]] == [ok]
    status, content = await call("GET", "/v1/jobs", params=[("limit", "1")])
    assert status == 200 and orjson.loads(content)["next"] is not None
    assert (await call("GET", "/v1/jobs", params=[("limit", "0")], valid=False))[0] == 400
    assert (await call("GET", "/v1/jobs", token=False))[0] == 401

    status, content = await call("GET", "/v1/events", params=[("after", "0"), ("follow", "false")])
    assert status == 200 and content.count(b"\nevent: jobwatchd.") >= 10
    labelled = [("after", "0"), ("follow", "false"), ("label", "t=a"), ("job", ok)]
    assert (await call("GET", "/v1/events", params=labelled))[0] == 200
    assert (await call("GET", "/v1/events", params=[("after", "x")], valid=False))[0] == 400
    assert (await call("GET", "/v1/events", token=False))[0] == 401

    assert (await call("DELETE", f"/v1/jobs/{plain}"))[0] == 204
    assert (await call("DELETE", f"/v1/jobs/{plain}"))[0] == 404
    assert (await call("DELETE", "/v1/jobs/a.b", valid=False))[0] == 400
    assert (await call("DELETE", f"/v1/jobs/{ok}", token=False))[0] == 401

    assert (await call("GET", "/v1/dead-letters"))[0] == 200
    assert (await call("GET", "/v1/dead-letters", params=[("sink", "file")]))[0] == 200
    assert (await call("GET", "/v1/dead-letters", params=[("sink", "a b")], valid=False))[0] == 400
    assert (await call("GET", "/v1/dead-letters", params=[("sink", "nosuch")]))[0] == 404
    assert (await call("GET", "/v1/dead-letters", token=False))[0] == 401
    redeliver = "/v1/dead-letters/redeliver"
    assert (await call("POST", redeliver, body={"all": True}))[0] == 200
    status, content = await call("POST", redeliver, body={"event_ids": ["nope"]})
    assert status == 200 and orjson.loads(content)["not_found"] == ["nope"]
    both = {"all": True, "event_ids": ["x"]}
    assert (await call("POST", redeliver, body=both, valid=False))[0] == 400
    assert (await call("POST", redeliver, raw=b"[" + b"1," * 600_000 + b"1]", valid=False))[
        0
    ] == 413
    assert (await call("POST", redeliver, body={"all": True}, token=False))[0] == 401

    assert (await call("GET", "/healthz", token=False))[0] == 200
    assert (await call("GET", "/readyz", token=False))[0] == 200
    status, content = await call("GET", "/metrics")
    assert status == 200 and b"jobwatchd_" in content
    assert (await call("GET", "/metrics", token=False))[0] == 401
    assert (await call("GET", "/openapi.json"))[0] == 200
    assert (await call("GET", "/openapi.json", token=False))[0] == 401

    # Browser-page refusals come before routing and apply to every operation.
    for template, operations in contract.document["paths"].items():
        path = re.sub(r"\{[^}]+\}", "x", template)
        for method in operations:
            verb = method.upper()
            rebound = await call(verb, path, headers={"Host": "evil.example"}, valid=False)
            assert rebound[0] == 421
            other_site = await call(verb, path, headers={"Origin": "http://evil.example"})
            assert other_site[0] == 403
            if method != "get":
                form = {"Content-Type": "text/plain"}
                assert (await call(verb, path, raw=b"{}", headers=form, valid=False))[0] == 415

    await daemon.stream_hub.close()  # as when the daemon stops
    assert (await call("GET", "/v1/events"))[0] == 503


# -- against the live daemon: schemathesis, and hostile identifiers -------------------------


class Recorder:
    """An upstream that records the raw path of every request and knows no job."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.lock = threading.Lock()

    async def handle(self, request: web.Request) -> web.Response:
        with self.lock:
            self.paths.append(request.raw_path)
        body = {"error": {"code": "Common.0011", "message": "Failed to obtain the job."}}
        return web.json_response(body, status=400)

    def snapshot(self) -> list[str]:
        with self.lock:
            return list(self.paths)


@dataclass
class Live:
    url: str
    recorder: Recorder
    document: dict[str, Any]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A daemon subprocess with a token, polling a recording upstream."""
    tmp = tmp_path_factory.mktemp("live")
    recorder = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    with app_in_thread(app, name="upstream", access_log=None) as port:
        config = write_config(
            tmp / "c.toml",
            endpoint=f"http://127.0.0.1:{port}",
            state_dir=tmp / "state",
            token_file=write_token(tmp / "token", TOKEN),
            not_found_grace="200ms",
        )
        daemon = DaemonProcess(config, tmp)
        daemon.start()
        try:
            status, document = call("GET", f"{daemon.url}/openapi.json")
            assert status == 200
            yield Live(daemon.url, recorder, document)
        finally:
            assert daemon.stop() == 0


def call(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {TOKEN}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            raw, status = resp.read(), resp.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    try:
        return status, orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return status, raw


def assert_upstream_paths_safe(recorder: Recorder) -> None:
    paths = recorder.snapshot()
    unsafe = [path for path in paths if not UPSTREAM_PATH.fullmatch(path)]
    assert not unsafe, unsafe[:5]


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
NO_INPUT = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}


def _fuzz(operation: Any, mode: GenerationMode, url: str) -> int:
    """Run one operation's examples of ``mode``; returns how many were sent."""
    checks = CHECKS if mode.is_positive else [*CHECKS, negative_data_rejection]
    if operation.path == "/v1/events":
        # The stream is made finite below by forcing follow=false, which can undo
        # the very mutation that made a negative case invalid.
        checks = CHECKS
    sent = 0

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES[mode],
        deadline=None,
        database=None,
        derandomize=True,  # the same cases on every run: CI is not a lottery
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        nonlocal sent
        if case.path == "/v1/events":
            case.query = {**(case.query or {}), "follow": "false"}  # a finite stream
        case.call_and_validate(
            base_url=url,
            headers={"Authorization": f"Bearer {TOKEN}"},
            checks=checks,
            timeout=30,
        )
        sent += 1

    try:
        run()
    except Unsatisfiable:
        # Nothing to make invalid in an operation without parameters or body.
        if mode.is_positive or operation.method.upper() != "GET" or operation.path not in NO_INPUT:
            raise
    return sent


def test_schemathesis_against_the_live_daemon(live: Live) -> None:
    schema = schemathesis.openapi.from_dict(live.document)
    # Unknown query parameters are ignored, as on most of the web; the token is
    # sent with every request below rather than fuzzed.
    schema.config.generation.update(allow_extra_parameters=False, with_security_parameters=False)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    assert len(operations) == sum(len(item) for item in live.document["paths"].values())
    sent = sum(_fuzz(operation, mode, live.url) for operation in operations for mode in EXAMPLES)
    assert sent >= len(operations) * 10
    assert_upstream_paths_safe(live.recorder)


SAFE = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
HOSTILE = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["../x", "a/b", "a%2Fb", "a b", "a.b", "x" * 65, "", "é", "a\n", "%00"]),
    SAFE.map(lambda value: value + "/../../v2"),
)


@given(job_id=st.one_of(SAFE, HOSTILE), project_id=st.one_of(st.none(), SAFE, HOSTILE))
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
def test_only_safe_ids_are_accepted_through_the_api(
    live: Live, job_id: str, project_id: str | None
) -> None:
    body: dict[str, Any] = {"job_id": job_id}
    if project_id is not None:
        body["project_id"] = project_id
    status, answer = call("POST", f"{live.url}/v1/jobs", body)
    safe = is_valid_id(job_id) and (project_id is None or is_valid_id(project_id))
    if safe:
        assert status in (200, 201, 409), answer
    else:
        assert status == 400, answer
        assert answer["field"] in ("job_id", "project_id")
    quoted = urllib.parse.quote(job_id, safe="")
    status, _ = call("GET", f"{live.url}/v1/jobs/{quoted}")
    assert status in ((200, 404) if is_valid_id(job_id) else (400, 404))
    status, _ = call("GET", f"{live.url}/v1/events?follow=false&job={quoted}")
    assert status == (200 if is_valid_id(job_id) else 400)


def test_no_unsafe_identifier_ever_reached_an_upstream_url(live: Live) -> None:
    hostile = ["../../v3/auth", "a%2F..", "x y", "a.b", "\u2028", "j" * 65]
    for job_id in hostile:
        status, _ = call("POST", f"{live.url}/v1/jobs", {"job_id": job_id})
        assert status == 400
    status, _ = call("POST", f"{live.url}/v1/jobs", {"job_id": "canary-job"})
    assert status in (200, 201)
    wait_until(
        lambda: any(path.endswith("/jobs/canary-job") for path in live.recorder.snapshot()),
        timeout=20,
        what="the canary job polled upstream",
    )
    assert_upstream_paths_safe(live.recorder)
    assert len(live.recorder.snapshot()) > 0
    # Every event in the log names an upstream-safe job.
    status, raw = call("GET", f"{live.url}/v1/events?after=0&follow=false")
    assert status == 200
    for message in SseParser().feed(raw if isinstance(raw, bytes) else b""):
        if message.data is not None and message.event != CLOSED_EVENT:
            assert is_valid_id(orjson.loads(message.data)["data"]["job_id"])
