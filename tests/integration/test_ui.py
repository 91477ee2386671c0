"""The web view (/ui) in a real headless Chromium (Debian's ``chromium``, driven
by Playwright) against an in-process daemon polling the simulator or a hostile
upstream; and its pure parts."""

from __future__ import annotations

import contextlib
import html
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from jobwatchd.cloud.simulator import DEFAULT_PROJECT_ID, Simulator, start_simulator
from jobwatchd.http.ui import CONTENT_SECURITY_POLICY, jobs_body, render_page, sink_lag
from tests.helpers.clock import FakeClock
from tests.helpers.config import simulator_endpoints
from tests.helpers.daemon import InProcessDaemon, running_daemon
from tests.helpers.hostile_upstream import job_document
from tests.helpers.servers import RunningSimulator

CHROMIUM = "/usr/bin/chromium"
TOKEN = "ui-test-token-0123456789abcdef"
HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_REASON = '<script>alert("r")</script><b onmouseover=alert(2)>boom</b>'

playwright_api = pytest.importorskip("playwright.async_api")
needs_chromium = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="chromium is missing (make system-tools)"
)
expect = playwright_api.expect
# A condition the page reaches, waited on with a deadline: generous, as the
# browser shares the machine with the daemon and the rest of the suite.
expect.set_options(timeout=15_000)


# -- pure parts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "label", "prefix", "service"),
    [
        ('"><script>alert(1)</script>', "", "", ""),
        ("", "k=<img src=x onerror=alert(1)>", "", ""),
        ("", "", "' onfocus='alert(1)", ""),
        ("", "", "", '"><svg onload=alert(1)>'),
    ],
)
def test_reflected_filters_are_escaped(status: str, label: str, prefix: str, service: str) -> None:
    page = render_page(
        page="jobs",
        title="Jobs",
        body=jobs_body(status, label, prefix, service),
        token_required=False,
    )
    for value in (status, label, prefix, service):
        if value:
            assert value not in page
            assert html.escape(value) in page
    assert "<script>" not in page.replace('<script src="/ui/static/app.js" defer></script>', "")


def test_no_inline_script_or_style_in_a_shell() -> None:
    page = render_page(page="job", title="Job <x>", body="", token_required=True, job_id="a")
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/ui/static/app.js" defer>']
    assert "<style" not in page and " style=" not in page and " on" not in page.lower()
    assert "Job &lt;x&gt;" in page


@pytest.mark.parametrize(
    ("position", "last_seq", "pending_at", "expected"),
    [
        (10, 10, None, {"position": 10, "backlog": 0, "lag_seconds": 0.0}),
        (7, 10, 95.0, {"position": 7, "backlog": 3, "lag_seconds": 5.0}),
        (0, 4, 100.5, {"position": 0, "backlog": 4, "lag_seconds": 0.0}),  # clock skew
    ],
)
def test_sink_lag(
    position: int, last_seq: int, pending_at: float | None, expected: dict[str, Any]
) -> None:
    lag = sink_lag({"s": {"position": position}}, last_seq, {"s": pending_at}, now=100.0)
    assert lag == {"s": expected}


# -- in the browser -----------------------------------------------------------------


def Clock() -> FakeClock:
    """The simulator's clock, moved by the test."""
    return FakeClock(1_800_000_000.0)


@dataclass
class Browser:
    """A page in headless Chromium that records every request and dialog."""

    page: Any
    requests: list[Any] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def browser() -> AsyncIterator[Browser]:
    async with playwright_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            context = await chromium.new_context(viewport={"width": 1280, "height": 800})
            page = await context.new_page()
            recorded = Browser(page)

            # A bound list.append cannot carry Playwright's handler mark: wrap it.
            def record(request: Any) -> None:
                recorded.requests.append(request)

            page.on("request", record)
            page.on("pageerror", lambda error: recorded.errors.append(str(error)))

            async def dismiss(dialog: Any) -> None:
                recorded.dialogs.append(dialog.message)
                await dialog.dismiss()

            page.on("dialog", dismiss)
            yield recorded
        finally:
            await chromium.close()


@contextlib.asynccontextmanager
async def simulator(clock: FakeClock) -> AsyncIterator[RunningSimulator]:
    sim = Simulator(speed=1.0, seed=3, clock=clock)
    runner, port = await start_simulator(sim, "127.0.0.1", 0)
    try:
        yield RunningSimulator(sim, f"http://127.0.0.1:{port}", port)
    finally:
        await runner.cleanup()


async def register(api: InProcessDaemon, job_id: str, **fields: Any) -> None:
    status, body, _ = await api.call("POST", "/v1/jobs", {"job_id": job_id, **fields})
    assert status == 201, body


def rows(view: Browser) -> Any:
    return view.page.locator("#jobs tbody tr")


@needs_chromium
async def test_each_jobs_service_is_shown_and_filters_the_list(tmp_path: Path) -> None:
    clock = Clock()
    async with (
        simulator(clock) as sim,
        running_daemon(
            tmp_path, sim, extra_account=simulator_endpoints(sim.url, ["cce", "rds"])
        ) as api,
        browser() as view,
    ):
        ecs = sim.sim.create_job("createServer", count=1, duration=100)
        cce = sim.sim.create_job(service="cce", count=2, duration=100)
        rds = sim.sim.create_job(service="rds", duration=1000)
        await register(api, ecs)
        await register(api, cce, service="cce")
        await register(api, rds, service="rds")
        clock.now += 500  # the ECS and CCE jobs end; the RDS job is half done
        await view.page.goto(f"{api.url}/ui")
        await expect(rows(view)).to_have_count(3)
        for job_id, service in ((ecs, "ecs"), (cce, "cce"), (rds, "rds")):
            row = view.page.locator(f'tr[data-job-id="{job_id}"]')
            await expect(row.locator("td.service")).to_have_text(service)
        cce_row = view.page.locator(f'tr[data-job-id="{cce}"]')
        await expect(cce_row).to_have_attribute("data-status", "SUCCESS")
        await expect(cce_row.locator("td").nth(6)).to_have_text("2/2")
        rds_row = view.page.locator(f'tr[data-job-id="{rds}"]')
        await expect(rds_row.locator("td").nth(6)).to_have_text(re.compile(r"^\d+(\.\d+)?%$"))
        await view.page.goto(f"{api.url}/ui?service=cce")
        await expect(view.page.locator("body")).to_have_attribute("data-refreshed", "1")
        await expect(rows(view)).to_have_count(1)
        await expect(view.page.locator('input[name="service"]')).to_have_value("cce")
        await view.page.goto(f"{api.url}/ui/jobs/{rds}")
        await expect(view.page.locator("#job-summary")).to_contain_text("rds")
        assert view.errors == []


@needs_chromium
async def test_jobs_appear_and_change_status_live_and_filters_work(tmp_path: Path) -> None:
    clock = Clock()
    async with simulator(clock) as sim, running_daemon(tmp_path, sim) as api, browser() as view:
        first = sim.sim.create_job("createServer", count=2, duration=100)
        await register(api, first, labels={"team": "db"})
        await view.page.goto(f"{api.url}/ui")
        await expect(rows(view)).to_have_count(1)
        row = view.page.locator(f'tr[data-job-id="{first}"]')
        await expect(row).to_have_attribute("data-status", "INIT")
        clock.now += 20  # past the start of any createServer job of 100 s
        await expect(row).to_have_attribute("data-status", "RUNNING")
        # Registered while the page is open: it appears without a reload.
        second = sim.sim.create_job("createServer", count=1, duration=100, fail=True)
        third = sim.sim.create_job("createServer", count=1, duration=500)
        await register(api, second, labels={"team": "db"})
        await register(api, third, labels={"team": "web"})
        await expect(rows(view)).to_have_count(3)
        clock.now += 150  # the first two end, the third runs
        await expect(view.page.locator(f'tr[data-job-id="{first}"]')).to_have_attribute(
            "data-status", "SUCCESS"
        )
        await expect(view.page.locator(f'tr[data-job-id="{second}"]')).to_have_attribute(
            "data-status", "FAIL"
        )
        await expect(view.page.locator(f'tr[data-job-id="{first}"] td').nth(6)).to_have_text("2/2")
        await expect(view.page.locator('#counts b[data-status="SUCCESS"]')).to_have_text("1")
        await expect(view.page.locator('#counts b[data-status="RUNNING"]')).to_have_text("1")
        await view.page.screenshot(path=tmp_path / "jobs.png")
        assert view.errors == []

        async def listed(query: str) -> set[str]:
            await view.page.goto(f"{api.url}/ui?{query}")
            await expect(view.page.locator("body")).to_have_attribute("data-refreshed", "1")
            ids = await rows(view).evaluate_all("rows => rows.map(r => r.dataset.jobId)")
            return set(ids)

        assert await listed("label=team%3Ddb") == {first, second}
        assert await listed("status=SUCCESS") == {first}
        assert await listed("status=RUNNING&label=team%3Dweb") == {third}
        assert await listed("label=team%3Ddb&status=RUNNING") == set()
        for job_id in (first, second, third):
            assert await listed(f"q={job_id}") == {job_id}  # the whole id is a prefix too
            unique = next(
                job_id[:n]
                for n in range(1, 33)
                if not any(
                    other.startswith(job_id[:n]) for other in {first, second, third} - {job_id}
                )
            )
            assert await listed(f"q={unique}") == {job_id}

        # The job page: timeline, sub-jobs with their error, progress.
        await view.page.goto(f"{api.url}/ui/jobs/{second}")
        await expect(view.page.locator("#job-summary dl")).to_have_attribute("data-status", "FAIL")
        await expect(view.page.locator("#progress")).to_contain_text(
            "1 of 1 sub-jobs done, 1 failed"
        )
        await expect(view.page.locator("#timeline tbody tr").last).to_contain_text("FAIL")
        await expect(view.page.locator("#subjobs tbody tr")).to_have_count(1)
        await expect(view.page.locator("#subjobs td.error")).not_to_have_text("—")
        assert view.errors == []


@needs_chromium
async def test_jobs_list_pages_with_the_cursor(tmp_path: Path) -> None:
    clock = Clock()
    async with simulator(clock) as sim, running_daemon(tmp_path, sim) as api, browser() as view:
        ids = [f"page-{index:03d}" for index in range(130)]
        status, _, _ = await api.call("POST", "/v1/jobs", {"jobs": [{"job_id": i} for i in ids]})
        assert status == 201
        await view.page.goto(f"{api.url}/ui")
        await expect(rows(view)).to_have_count(100)
        await expect(view.page.locator("#counts")).to_contain_text("all 130")
        await view.page.locator("#next-page").click()
        await expect(rows(view)).to_have_count(30)
        first = await rows(view).first.get_attribute("data-job-id")
        assert first == ids[100]
        assert view.page.url.endswith(f"after={ids[99]}")
        await expect(view.page.locator("#next-page")).to_have_count(0)


@needs_chromium
async def test_id_prefix_search_at_the_edges_of_the_id_alphabet(tmp_path: Path) -> None:
    ids = ["-", "-x", "0", "A", "Z", "Z-", "Z-0", "Z0", "Za", "_", "a", "a-", "a-b", "a0", "z"]
    expected = {
        "-": {"-", "-x"},
        "Z": {"Z", "Z-", "Z-0", "Z0", "Za"},
        "Z-": {"Z-", "Z-0"},
        "a-": {"a-", "a-b"},
        "a": {"a", "a-", "a-b", "a0"},
        "_": {"_"},
        "z": {"z"},
        "y": set(),
    }
    clock = Clock()
    async with simulator(clock) as sim, running_daemon(tmp_path, sim) as api, browser() as view:
        status, _, _ = await api.call("POST", "/v1/jobs", {"jobs": [{"job_id": i} for i in ids]})
        assert status == 201
        for prefix, matching in expected.items():
            await view.page.goto(f"{api.url}/ui?q={prefix}")
            await expect(view.page.locator("body")).to_have_attribute("data-refreshed", "1")
            found = await rows(view).evaluate_all("rows => rows.map(r => r.dataset.jobId)")
            assert set(found) == matching, prefix
        assert view.errors == []


@contextlib.asynccontextmanager
async def hostile_upstream(job_id: str) -> AsyncIterator[str]:
    """An upstream answering FAIL for ``job_id`` with markup in every string."""
    sub = {
        "status": "FAIL",
        "entities": {"server_id": HOSTILE, "errorcode_message": HOSTILE_REASON},
        "job_id": "sub-1",
        "job_type": "createSingleServer",
        "begin_time": "2026-01-01T00:00:00.000Z",
        "end_time": "2026-01-01T00:01:00.000Z",
        "error_code": "Ecs.0001",
        "fail_reason": HOSTILE_REASON,
    }
    document = job_document(
        job_id,
        "FAIL",
        fail_reason=HOSTILE_REASON,
        error_code=HOSTILE,
        end_time="2026-01-01T00:01:00.000Z",
        entities={"sub_jobs_total": 1, "sub_jobs": [sub]},
    )

    async def answer(request: web.Request) -> web.Response:
        return web.json_response(document)

    app = web.Application()
    app.router.add_get("/v1/{project}/jobs/{job_id}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@needs_chromium
async def test_hostile_labels_and_fail_reasons_render_as_text(tmp_path: Path) -> None:
    job_id = "hostile-1"
    async with hostile_upstream(job_id) as url:
        upstream = RunningSimulator(Simulator(), url, 0)
        async with running_daemon(tmp_path, upstream) as api, browser() as view:
            await register(api, job_id, labels={"x": HOSTILE, HOSTILE: "y"})
            await view.page.goto(f"{api.url}/ui")
            row = view.page.locator(f'tr[data-job-id="{job_id}"]')
            await expect(row).to_have_attribute("data-status", "FAIL")
            await expect(row.locator("td.labels")).to_have_text(f"x={HOSTILE}, {HOSTILE}=y")
            await expect(row.locator("td.error")).to_have_text(HOSTILE_REASON)

            await view.page.goto(f"{api.url}/ui/jobs/{job_id}")
            await expect(view.page.locator("#job-summary dl")).to_have_attribute(
                "data-status", "FAIL"
            )
            await expect(view.page.locator("#job-summary")).to_contain_text(HOSTILE_REASON)
            await expect(view.page.locator("#subjobs td.error")).to_have_text(
                f"Ecs.0001 — {HOSTILE_REASON}"
            )
            await expect(view.page.locator("#subjobs td.entities")).to_contain_text(HOSTILE)

            # A filter value in the URL is reflected into the server-rendered form.
            await view.page.goto(f"{api.url}/ui?label=x%3D{HOSTILE}&q=%22%3E%3Cscript%3Ealert(3)")
            assert await view.page.locator('input[name="label"]').input_value() == f"x={HOSTILE}"
            await expect(view.page.locator("#status")).to_contain_text("A-Z")

            for path in ("/ui", f"/ui/jobs/{job_id}"):
                await view.page.goto(f"{api.url}{path}")
                await expect(view.page.locator("body")).to_have_attribute("data-refreshed", "1")
                assert (
                    await view.page.locator(
                        "main img, main script, main [onerror], main [onmouseover]"
                    ).count()
                    == 0
                )
            assert view.dialogs == []
            assert view.errors == []


@needs_chromium
async def test_token_flow(tmp_path: Path) -> None:
    clock = Clock()
    async with (
        simulator(clock) as sim,
        running_daemon(tmp_path, sim, token=TOKEN) as api,
        browser() as view,
    ):
        job_id = sim.sim.create_job("createServer", count=1, duration=100)
        async with api.session.post(
            f"{api.url}/v1/jobs",
            json={"job_id": job_id},
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as resp:
            assert resp.status == 201
        # The shell and its files are served without the token; the data is not.
        for path in ("/ui", "/ui/sinks", "/ui/static/app.js"):
            async with api.session.get(api.url + path) as resp:
                assert resp.status == 200, path
        async with api.session.get(api.url + "/ui/data/summary") as resp:
            assert resp.status == 401

        await view.page.goto(f"{api.url}/ui")
        await expect(view.page.locator("#login")).to_be_visible()
        await expect(view.page.locator("#content")).to_be_hidden()
        await view.page.fill('input[name="token"]', "wrong-token")
        await view.page.click('#login button[type="submit"]')
        await expect(view.page.locator("#login-error")).to_have_text("wrong token")
        assert await rows(view).count() == 0

        await view.page.fill('input[name="token"]', TOKEN)
        await view.page.click('#login button[type="submit"]')
        row = view.page.locator(f'tr[data-job-id="{job_id}"]')
        await expect(row).to_have_attribute("data-status", "INIT")
        # Live through the fetch()-read stream, which carries the header.
        clock.now += 20
        await expect(row).to_have_attribute("data-status", "RUNNING")
        clock.now += 150
        await expect(row).to_have_attribute("data-status", "SUCCESS")
        # Kept for this tab: another page of the view needs no second sign-in.
        await view.page.goto(f"{api.url}/ui/jobs/{job_id}")
        await expect(view.page.locator("#job-summary dl")).to_have_attribute(
            "data-status", "SUCCESS"
        )
        stored = await view.page.evaluate("sessionStorage.getItem('jobwatchd.token')")
        local = await view.page.evaluate("localStorage.length")
        assert (stored, local) == (TOKEN, 0)
        cookies = await view.page.context.cookies()
        assert cookies == []

        assert view.requests, "no request was recorded"
        assert all(TOKEN not in request.url for request in view.requests)
        streams = [r for r in view.requests if r.url.startswith(f"{api.url}/v1/events")]
        assert streams, "the page did not open the event stream"
        assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in streams)
        data = [r for r in view.requests if "/v1/" in r.url or "/ui/data/" in r.url]
        signed = [r for r in data if r.headers.get("authorization") == f"Bearer {TOKEN}"]
        wrong = [r for r in data if r.headers.get("authorization") == "Bearer wrong-token"]
        assert len(signed) + len(wrong) == len(data)
        assert view.errors == []

        await view.page.click("#logout")
        await expect(view.page.locator("#login")).to_be_visible()
        assert await view.page.evaluate("sessionStorage.getItem('jobwatchd.token')") is None


@needs_chromium
async def test_sinks_and_accounts_pages(tmp_path: Path) -> None:
    clock = Clock()
    async with simulator(clock) as sim, running_daemon(tmp_path, sim) as api, browser() as view:
        job_id = sim.sim.create_job("createServer", count=1, duration=100)
        await register(api, job_id)
        await view.page.goto(f"{api.url}/ui/sinks")
        sink = view.page.locator("#sinks tbody tr").first
        await expect(sink).to_have_attribute("data-sink", re.compile("file"))
        await expect(sink.locator("td.backlog")).to_have_text("0")
        await view.page.screenshot(path=tmp_path / "sinks.png")

        sim.sim.throttle_project(DEFAULT_PROJECT_ID)
        clock.now += 10
        await view.page.goto(f"{api.url}/ui/accounts")
        account = view.page.locator('#accounts tr[data-account="default"]')
        await expect(account.locator("td.throttled")).not_to_have_text("no")
        await expect(account.locator("td.last-poll")).to_have_text("throttled")
        await expect(account.locator("td.health")).to_have_text("reachable")
        await view.page.screenshot(path=tmp_path / "accounts.png")
        assert view.errors == []


async def test_security_headers_and_browser_rules(
    simulator: RunningSimulator, tmp_path: Path
) -> None:
    async with running_daemon(tmp_path, simulator) as api:
        for path in ("/ui", "/ui/jobs/abc", "/ui/sinks", "/ui/accounts", "/ui/static/app.js"):
            async with api.session.get(api.url + path) as resp:
                assert resp.status == 200, path
                assert resp.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
                assert "script-src 'self'" in CONTENT_SECURITY_POLICY
                assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
        async with api.session.get(api.url + "/ui/static/app.css") as resp:
            assert resp.content_type == "text/css"
        # Error answers under /ui carry the headers too.
        for path, status in (("/ui/static/..%2Fjobs.py", 404), ("/ui/jobs/bad%20id", 400)):
            async with api.session.get(api.url + path) as resp:
                assert resp.status == status
                assert resp.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
        async with api.session.get(api.url + "/v1/jobs") as resp:
            assert "Content-Security-Policy" not in resp.headers
        # Another site's page cannot load or frame the view (the API's Origin rules).
        headers = {"Sec-Fetch-Site": "cross-site"}
        async with api.session.get(api.url + "/ui", headers=headers) as resp:
            assert resp.status == 403
        async with api.session.get(api.url + "/ui", headers={"Host": "evil.example"}) as resp:
            assert resp.status == 421


@dataclass
class Hook:
    """A webhook receiver that refuses (400, markup in the answer) until ``accept``."""

    accept: bool = False
    accepted: list[bytes] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self.accept:
            return web.Response(status=400, text=HOSTILE)
        self.accepted.append(body)
        return web.Response(status=204)


@contextlib.asynccontextmanager
async def hook_receiver(hook: Hook) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    finally:
        await runner.cleanup()


@needs_chromium
async def test_dead_letters_are_listed_as_text_and_redelivered_with_the_token(
    tmp_path: Path,
) -> None:
    clock = Clock()
    hook = Hook()
    async with simulator(clock) as sim, hook_receiver(hook) as url:
        sinks = f'[[sinks]]\ntype = "webhook"\nname = "hook"\nurl = "{url}"\n'
        async with (
            running_daemon(tmp_path, sim, token=TOKEN, sinks=sinks) as api,
            browser() as view,
        ):
            job_id = sim.sim.create_job("resizeServer", duration=100)
            async with api.session.post(
                f"{api.url}/v1/jobs",
                json={"job_id": job_id},
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as resp:
                assert resp.status == 201
            await view.page.goto(f"{api.url}/ui/sinks")
            await view.page.fill('input[name="token"]', TOKEN)
            await view.page.click('#login button[type="submit"]')
            letter = view.page.locator("#dead-letters tbody tr").first
            await expect(letter.locator("td.error")).to_contain_text(HOSTILE)
            await expect(view.page.locator('#sinks tr[data-sink="hook"]')).to_be_visible()
            await view.page.screenshot(path=tmp_path / "dead-letters.png")

            hook.accept = True
            await letter.locator("button").click()
            await expect(view.page.locator("#status")).to_contain_text("redelivered 1")
            assert len(hook.accepted) == 1
            posts = [r for r in view.requests if r.method == "POST"]
            assert [r.url for r in posts] == [f"{api.url}/v1/dead-letters/redeliver"]
            assert posts[0].headers["authorization"] == f"Bearer {TOKEN}"
            assert posts[0].headers["x-requested-by"] == "jobwatchd-ui"
            assert posts[0].headers["content-type"] == "application/json"
            assert view.dialogs == [] and view.errors == []
            assert await view.page.locator("main img").count() == 0
