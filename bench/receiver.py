"""A local webhook receiver for the end-to-end scenario, run as its own process.

``POST /hook`` reads the body, notes the time and answers 204 at once (the
acknowledgement); the bodies are parsed only when ``GET /results`` asks for
``[[ack unix time, event], ...]``. ``GET /count`` answers the number of
requests so far.

Usage: python -m bench.receiver --port PORT
"""

from __future__ import annotations

import argparse
import time

import orjson
from aiohttp import web

from jobwatchd.daemon import install_event_loop


def app() -> web.Application:
    """The receiver's application."""
    received: list[tuple[float, bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        received.append((time.time(), body))
        return web.Response(status=204)

    async def count(request: web.Request) -> web.Response:
        return web.json_response({"requests": len(received)})

    async def results(request: web.Request) -> web.Response:
        out: list[object] = []
        for at, body in received:
            parsed = orjson.loads(body)
            for event in parsed if isinstance(parsed, list) else [parsed]:
                out.append([at, event])
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    application = web.Application(client_max_size=64 * 1024**2)
    application.router.add_post("/hook", hook)
    application.router.add_get("/count", count)
    application.router.add_get("/results", results)
    return application


def main() -> None:
    """Serve until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    install_event_loop()
    web.run_app(app(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
