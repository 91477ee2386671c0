"""A hostile ECS job API, IAM endpoint and webhook receiver on 127.0.0.1, for the
tests of what jobwatchd accepts from upstream.

:class:`Hostile` serves the job API (``GET /v1/{project}/jobs/{job_id}``), IAM
(``POST /v3/auth/tokens``) and a webhook receiver (``POST /hook``); what a job
answers is chosen by the prefix of its id (see :func:`_job`). A second server,
:class:`Capture`, is "another origin": the redirects point there, and it
records every request that reaches it, so a test can show that no credential
ever does. Both run on free ports, in the test's loop (:meth:`Hostile.start`)
or on a thread of their own (:func:`serve_in_thread`) for daemon subprocesses.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.helpers.servers import port_of, serve_app, started_in_thread

MiB = 1024 * 1024


def job_document(job_id: str, status: str = "RUNNING", **fields: Any) -> dict[str, Any]:
    """A job status document in the vendor's format."""
    document: dict[str, Any] = {
        "job_id": job_id,
        "job_type": "createServer",
        "status": status,
        "begin_time": "2026-01-01T00:00:00.000Z",
        "end_time": "",
        "error_code": None,
        "fail_reason": None,
        "entities": {},
    }
    document.update(fields)
    return document


@dataclass
class Capture:
    """The "other origin": records every request that reaches it."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            {
                "method": request.method,
                "path": request.path_qs,
                "headers": dict(request.headers),
                "body": await request.read(),
            }
        )
        return web.json_response(job_document("stolen", "SUCCESS"))


@dataclass
class Hostile:
    """The hostile upstream; ``polls`` counts the queries of each job id."""

    capture: Capture = field(default_factory=Capture)
    polls: dict[str, int] = field(default_factory=dict)
    url: str = ""
    aborted_bodies: int = 0
    """Streamed bodies whose reader went away before the end."""
    _runners: list[web.AppRunner] = field(default_factory=list)
    _counter: Iterator[int] = field(default_factory=itertools.count)

    async def start(self) -> None:
        """Serve the hostile upstream and the capture origin on free ports."""
        capture_app = web.Application()
        capture_app.router.add_route("*", "/{tail:.*}", self.capture.handle)
        self.capture.url = await self._serve(capture_app)
        app = web.Application()
        app.router.add_get("/v1/{project_id}/jobs/{job_id}", self._job)
        app.router.add_post("/v3/auth/tokens", self._iam)
        app.router.add_post("/hook/{behaviour}", self._hook)
        self.url = await self._serve(app)

    async def _serve(self, app: web.Application) -> str:
        runner = await serve_app(app, handle_signals=False)
        self._runners.append(runner)
        return f"http://127.0.0.1:{port_of(runner)}"

    async def close(self) -> None:
        """Stop both servers."""
        for runner in reversed(self._runners):
            await runner.cleanup()

    def redirect_target(self, name: str) -> str:
        return f"{self.capture.url}/stolen/{name}?token=in-the-query"

    async def _stream(
        self, request: web.Request, head: bytes, size: int, *, declare: bool
    ) -> web.StreamResponse:
        """A JSON body of about ``size`` bytes, written 1 MiB at a time."""
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        tail = b'"}'
        if declare:
            response.content_length = len(head) + size + len(tail)
        await response.prepare(request)
        block = b"A" * MiB
        try:
            await response.write(head)
            for _ in range(size // MiB):
                await response.write(block)
            await response.write(tail)
        except ConnectionError:  # the reader gave up: what the tests want
            self.aborted_bodies += 1
        return response

    async def _write_blocks(self, response: web.StreamResponse, byte: bytes, count: int) -> None:
        """``count`` MiB of ``byte``, until the reader goes away."""
        block = byte * MiB
        try:
            for _ in range(count):
                await response.write(block)
        except ConnectionError:
            self.aborted_bodies += 1

    async def _job(self, request: web.Request) -> web.StreamResponse:
        job_id = request.match_info["job_id"]
        self.polls[job_id] = self.polls.get(job_id, 0) + 1
        head = b'{"status":"RUNNING","job_id":"%s","pad":"' % job_id.encode()
        if job_id.startswith("redirect307"):
            raise web.HTTPTemporaryRedirect(self.redirect_target(job_id))
        if job_id.startswith("redirect"):
            raise web.HTTPFound(self.redirect_target(job_id))
        if job_id.startswith("bigdeclared"):  # 100 MiB, announced by Content-Length
            return await self._stream(request, head, 100 * MiB, declare=True)
        if job_id.startswith("bigchunked"):  # 100 MiB, chunked: no length known up front
            return await self._stream(request, head, 100 * MiB, declare=False)
        if job_id.startswith("bigerror"):  # a 503 with a 100 MiB page
            response = web.StreamResponse(status=503, headers={"Content-Type": "text/html"})
            await response.prepare(request)
            await self._write_blocks(response, b"x", 100)
            return response
        if job_id.startswith("gzipbomb"):  # 50 KiB on the wire, 50 MiB decompressed
            raw = head + b"A" * (50 * MiB) + b'"}'
            return web.Response(
                body=gzip.compress(raw, 9),
                headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            )
        if job_id.startswith("deflated"):  # a small compressed document: fine
            body = zlib.compress(orjson.dumps(job_document(job_id, "SUCCESS")))
            return web.Response(
                body=body,
                headers={"Content-Type": "application/json", "Content-Encoding": "deflate"},
            )
        if job_id.startswith("drip"):  # one byte every 0.2 s
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            body = orjson.dumps(job_document(job_id))
            response.content_length = len(body)
            await response.prepare(request)
            for byte in body:
                await response.write(bytes([byte]))
                await asyncio.sleep(0.2)
            return response
        if job_id.startswith("subs"):  # subs<N>-...: N sub-jobs
            count = int(job_id[4:].split("-", 1)[0])
            subs = [{"job_id": f"s{i}", "status": "RUNNING"} for i in range(count)]
            return web.json_response(job_document(job_id, entities={"sub_jobs": subs}))
        if job_id.startswith("other"):
            return web.json_response(job_document("someotherjob999", "SUCCESS"))
        for prefix, status in (
            ("statustimeout", "TIMEOUT"),
            ("statusnotfound", "NOT_FOUND"),
            ("statuserror", "ERROR"),
            ("statuspending", "PENDING"),
            ("payment", "PENDING_PAYMENT"),
            ("queued", "QUEUED"),
        ):
            if job_id.startswith(prefix):
                subs = [{"job_id": f"{job_id}-sub", "status": status}]
                return web.json_response(job_document(job_id, status, entities={"sub_jobs": subs}))
        if job_id.startswith("longstatus"):
            return web.json_response(job_document(job_id, "S" * 100_000))
        if job_id.startswith("escstatus"):
            return web.json_response(job_document(job_id, "\x1b[31mSUCCESS\x1b[0m"))
        if job_id.startswith("longmessage"):
            error = {"code": "Ecs.0000", "message": "M" * 500_000}
            return web.json_response({"error": error}, status=400)
        if job_id.startswith("longfail"):
            return web.json_response(
                job_document(job_id, "FAIL", fail_reason="F" * 500_000, error_code="E" * 5000)
            )
        if job_id.startswith("randstatus"):
            return web.json_response(job_document(job_id, f"ST{next(self._counter):08x}"))
        if job_id.startswith("randcode"):
            error = {"code": f"X{next(self._counter):08x}", "message": "m"}
            return web.json_response({"error": error}, status=500)
        if job_id.startswith("gone"):
            error = {"code": "Ecs.0114", "message": "The job does not exist."}
            return web.json_response({"error": error}, status=404)
        return web.json_response(job_document(job_id, "SUCCESS"))

    async def _iam(self, request: web.Request) -> web.Response:
        await request.read()
        raise web.HTTPTemporaryRedirect(self.redirect_target("iam"))

    async def _hook(self, request: web.Request) -> web.StreamResponse:
        behaviour = request.match_info["behaviour"]
        await request.read()
        if behaviour == "redirect":
            raise web.HTTPTemporaryRedirect(self.redirect_target("hook"))
        if behaviour == "echo":  # echoes the request's credentials back, with escapes
            signature = request.headers.get("webhook-signature", "")
            text = (
                f"\x1b[2J\x1b]0;title\x07bad request; got webhook-signature: {signature}"
                f" Authorization: Bearer abcdefghijklmnop0123 secret={signature[3:]}\r\n"
                + "z"
                * 10_000
            )
            return web.Response(status=400, text=text)
        if behaviour == "huge":  # a 400 with a 100 MiB answer
            response = web.StreamResponse(status=400)
            await response.prepare(request)
            await self._write_blocks(response, b"y", 100)
            return response
        return web.Response(status=204)


@contextmanager
def serve_in_thread() -> Iterator[Hostile]:
    """:class:`Hostile` on a thread with its own event loop (for daemon subprocesses)."""
    with started_in_thread(
        Hostile(), Hostile.start, Hostile.close, name="hostile upstream"
    ) as hostile:
        yield hostile
