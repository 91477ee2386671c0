"""The one way the HTTP API answers: JSON bodies and RFC 9457 problem documents."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from jobwatchd.validation import ValidationError

PROBLEM_TYPE = "application/problem+json"


def json_response(body: Any, status: int = 200) -> web.Response:
    """A JSON response rendered with orjson."""
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


# Seconds a client is asked to wait when the store refuses work.
STORE_RETRY_AFTER = 5


def problem(status: int, title: str, detail: str, **extra: Any) -> web.Response:
    """An RFC 9457 problem document."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return web.Response(body=orjson.dumps(body), status=status, content_type=PROBLEM_TYPE)


def invalid(error: ValidationError) -> web.Response:
    """400 naming the invalid field."""
    return problem(400, "Invalid request", str(error), field=error.field)


async def read_body(request: web.Request, timeout: float) -> bytes:
    """The request's body, read within ``timeout`` seconds (``api.body_timeout``);
    a slower one is answered 408 and nothing is done with it."""
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except TimeoutError:
        raise web.HTTPRequestTimeout(
            reason="Request timeout",
            text=f"the body took longer than {timeout:g} s (api.body_timeout)",
        ) from None


def json_object(raw: bytes) -> dict[str, Any]:
    """``raw`` parsed as a JSON object, else a :class:`ValidationError` on ``body``."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationError("body", f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValidationError("body", "must be a JSON object")
    return body
