"""The one route table of the HTTP API: every path the daemon serves, and its handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from jobwatchd.http.deadletters import DeadLetterHandlers
from jobwatchd.http.events import EventHub
from jobwatchd.http.jobs import Api
from jobwatchd.http.ui import WebUi

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def build_app(
    jobs: Api,
    events: EventHub,
    dead_letters: DeadLetterHandlers,
    metrics: Callable[[], Awaitable[bytes]],
) -> web.Application:
    """The application: ``jobs``' middlewares in front of every route below.

    ``metrics`` renders the Prometheus text; the event streams end (reason
    ``shutdown``) when the application shuts down. ``/ui`` is the read-only web
    view over these routes (jobwatchd/http/ui).
    """

    async def metrics_handler(request: web.Request) -> web.Response:
        return web.Response(body=await metrics(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    app = web.Application(client_max_size=jobs.config.api.max_body, middlewares=jobs.middlewares)
    app.add_routes(
        [
            web.post("/v1/jobs", jobs.register),
            web.get("/v1/jobs", jobs.list_jobs),
            web.get("/v1/jobs/{job_id}", jobs.get_job),
            web.delete("/v1/jobs/{job_id}", jobs.delete_job),
            web.get("/v1/events", events.handle, allow_head=False),
            web.get("/v1/dead-letters", dead_letters.listing),
            web.post("/v1/dead-letters/redeliver", dead_letters.redeliver),
            web.get("/healthz", jobs.healthz),
            web.get("/readyz", jobs.readyz),
            web.get("/metrics", metrics_handler),
            web.get("/openapi.json", jobs.openapi),
            *WebUi(jobs).routes(),
        ]
    )
    app.on_response_prepare.append(WebUi.secure)
    app.on_shutdown.append(events.close)
    return app
