"""The one way the HTTP API answers: JSON bodies and RFC 9457 problem documents."""

from __future__ import annotations

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
