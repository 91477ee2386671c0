"""The read-only web view under ``/ui`` (docs/ui.md).

The pages are HTML shells rendered here from :data:`PAGE` (``string.Template``,
every value through :func:`html.escape`); they hold no data, so they are
served without the token. The data comes from the API itself, fetched by
``static/app.js`` with the token the user typed (kept in ``sessionStorage``),
which inserts it with ``textContent`` only. Every ``/ui`` response carries a
strict Content-Security-Policy: no inline script or style, nothing from
another origin, no framing.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Any

from aiohttp import web

from jobwatchd.engine.tracker import Tracker
from jobwatchd.http.jobs import TOKENLESS_ROUTE_PREFIX, Api
from jobwatchd.http.responses import json_response
from jobwatchd.models import iso_time
from jobwatchd.validation import validate_id

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STATIC_TYPES = {"app.js": "text/javascript", "app.css": "text/css"}
MAX_FILTER_LENGTH = 512

PAGE = Template(
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title · jobwatchd</title>
<link rel="stylesheet" href="/ui/static/app.css">
<script src="/ui/static/app.js" defer></script>
</head>
<body data-page="$page" data-token-required="$token_required" data-job-id="$job_id">
<header>
<strong>jobwatchd</strong>
<nav>
<a href="/ui">Jobs</a>
<a href="/ui/sinks">Sinks</a>
<a href="/ui/accounts">Accounts</a>
</nav>
<button type="button" id="logout" hidden>Forget token</button>
</header>
<form id="login" hidden>
<label>API token <input type="password" name="token" autocomplete="off" required></label>
<button type="submit">Sign in</button>
<output id="login-error"></output>
</form>
<main id="content">
<h1>$heading</h1>
$body
</main>
<footer><output id="status"></output> <output id="stream"></output></footer>
</body>
</html>
"""
)

JOBS_BODY = Template(
    """<form id="filters" method="get" action="/ui">
<label>Status <input name="status" value="$status" placeholder="RUNNING"></label>
<label>Labels <input name="label" value="$label" placeholder="team=db,env=prod"></label>
<label>Service <input name="service" value="$service" placeholder="evs"></label>
<label>Job id starts with <input name="q" value="$q" placeholder="4010b39b"></label>
<button type="submit">Filter</button>
<a href="/ui">Clear</a>
</form>
<section id="counts" aria-label="Jobs by status"></section>
<table id="jobs">
<thead><tr><th>Job</th><th>Status</th><th>Type</th><th>Account</th><th>Service</th><th>Labels</th>
<th>Progress</th><th>Updated</th><th>Error</th></tr></thead>
<tbody></tbody>
</table>
<nav id="pager"></nav>"""
)

JOB_BODY = """<section id="job-summary"></section>
<h2>Progress</h2>
<section id="progress"></section>
<h2>Timeline</h2>
<table id="timeline"><thead><tr><th>At</th><th>From</th><th>To</th></tr></thead>
<tbody></tbody></table>
<h2>Sub-jobs</h2>
<table id="subjobs"><thead><tr><th>Sub-job</th><th>Status</th><th>Type</th><th>Begin</th>
<th>End</th><th>Error</th><th>Entities</th></tr></thead><tbody></tbody></table>"""

SINKS_BODY = """<table id="sinks"><thead><tr><th>Sink</th><th>Position</th><th>Backlog</th>
<th>Lag</th><th>Delivered</th><th>Failures</th><th>In flight</th><th>Dead-lettered</th></tr>
</thead><tbody></tbody></table>
<h2>Dead letters</h2>
<table id="dead-letters"><thead><tr><th>Sink</th><th>Event</th><th>Type</th><th>Subject</th>
<th>Reason</th><th>At</th><th></th></tr></thead><tbody></tbody></table>"""

ACCOUNTS_BODY = """<table id="accounts"><thead><tr><th>Account</th><th>Upstream</th>
<th>Last poll</th><th>Last poll at</th><th>Throttled for</th><th>Last error</th></tr></thead>
<tbody></tbody></table>"""


def render_page(
    *,
    page: str,
    title: str,
    body: str,
    token_required: bool,
    job_id: str = "",
) -> str:
    """One HTML shell: ``title`` and ``job_id`` are escaped here, ``body`` is
    markup already built from escaped values."""
    return PAGE.substitute(
        title=html.escape(title),
        heading=html.escape(title),
        page=html.escape(page),
        token_required="true" if token_required else "false",
        job_id=html.escape(job_id),
        body=body,
    )


def jobs_body(status: str, label: str, prefix: str, service: str = "") -> str:
    """The jobs page's filter form, showing the filters of the request (escaped:
    they come from the URL)."""
    return JOBS_BODY.substitute(
        status=html.escape(status[:MAX_FILTER_LENGTH]),
        label=html.escape(label[:MAX_FILTER_LENGTH]),
        q=html.escape(prefix[:MAX_FILTER_LENGTH]),
        service=html.escape(service[:MAX_FILTER_LENGTH]),
    )


def sink_lag(
    sinks: dict[str, Any], last_seq: int, first_pending_at: dict[str, float | None], now: float
) -> dict[str, dict[str, Any]]:
    """Each sink's backlog (events recorded, not yet acknowledged) and lag (age of
    the oldest of them, seconds), from its position. Pure."""
    lag: dict[str, dict[str, Any]] = {}
    for name, stats in sinks.items():
        position = int(stats.get("position", 0))
        backlog = max(0, last_seq - position)
        pending_at = first_pending_at.get(name)
        seconds = round(max(0.0, now - pending_at), 3) if backlog and pending_at else 0.0
        lag[name] = {"position": position, "backlog": backlog, "lag_seconds": seconds}
    return lag


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    content_type: str


class WebUi:
    """The ``/ui`` handlers: page shells, their static files, and the one
    summary the API has no route for (counts by status, sink lag)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        package = resources.files(__package__).joinpath("static")
        self._assets = {
            name: _Asset(package.joinpath(name).read_bytes(), content_type)
            for name, content_type in STATIC_TYPES.items()
        }

    @property
    def tracker(self) -> Tracker:
        """The tracker the API serves from."""
        return self.api.tracker

    @staticmethod
    async def secure(request: web.BaseRequest, response: web.StreamResponse) -> None:
        """Every ``/ui`` answer, errors included, carries :data:`SECURITY_HEADERS`
        (an application's ``on_response_prepare`` hook)."""
        if request.path == "/ui" or request.path.startswith("/ui/"):
            response.headers.update(SECURITY_HEADERS)

    def routes(self) -> list[web.RouteDef]:
        """The ``/ui`` routes (shells and static files named as tokenless)."""
        shell = TOKENLESS_ROUTE_PREFIX
        return [
            web.get("/ui", self.jobs_page, name=f"{shell}_jobs"),
            web.get("/ui/jobs/{job_id}", self.job_page, name=f"{shell}_job"),
            web.get("/ui/sinks", self.sinks_page, name=f"{shell}_sinks"),
            web.get("/ui/accounts", self.accounts_page, name=f"{shell}_accounts"),
            web.get("/ui/static/{name}", self.static, name=f"{shell}_static"),
            web.get("/ui/data/summary", self.summary),
        ]

    def _html(self, **page: Any) -> web.Response:
        text = render_page(token_required=self.api.token is not None, **page)
        return web.Response(text=text, content_type="text/html", charset="utf-8")

    async def jobs_page(self, request: web.Request) -> web.Response:
        """``GET /ui``: the jobs list."""
        query = request.query
        body = jobs_body(
            query.get("status", ""),
            query.get("label", ""),
            query.get("q", ""),
            query.get("service", ""),
        )
        return self._html(page="jobs", title="Jobs", body=body)

    async def job_page(self, request: web.Request) -> web.Response:
        """``GET /ui/jobs/{job_id}``: one job, its timeline and sub-jobs."""
        job_id = validate_id(request.match_info["job_id"], "job_id")
        return self._html(page="job", title=f"Job {job_id}", body=JOB_BODY, job_id=job_id)

    async def sinks_page(self, request: web.Request) -> web.Response:
        """``GET /ui/sinks``: delivery backlog, lag and dead letters."""
        return self._html(page="sinks", title="Sinks", body=SINKS_BODY)

    async def accounts_page(self, request: web.Request) -> web.Response:
        """``GET /ui/accounts``: upstream health and throttling per account."""
        return self._html(page="accounts", title="Accounts", body=ACCOUNTS_BODY)

    async def static(self, request: web.Request) -> web.Response:
        """``GET /ui/static/{name}``: the page's script and style sheet."""
        asset = self._assets.get(request.match_info["name"])
        if asset is None:
            raise web.HTTPNotFound(text="no such file")
        return web.Response(
            body=asset.body,
            content_type=asset.content_type,
            charset="utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    async def summary(self, request: web.Request) -> web.Response:
        """``GET /ui/data/summary`` (token required): jobs by status, the event
        log's newest id, each sink's backlog and lag."""
        counts = await self.tracker.count_by_status()
        sinks = self.api.readiness().get("sinks", {})
        positions = {name: int(stats.get("position", 0)) for name, stats in sinks.items()}
        last_seq, first_pending_at = await self.tracker.event_log_lag(positions)
        return json_response(
            {
                "counts": counts,
                "total": sum(counts.values()),
                "last_event_id": last_seq,
                "sinks": sink_lag(sinks, last_seq, first_pending_at, time.time()),
                "at": iso_time(time.time()),
            }
        )
