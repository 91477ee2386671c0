"""A blocking HTTP call, for tests that drive a daemon subprocess."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import orjson

PROBLEM = "application/problem+json"
"""The content type of the API's errors."""


def http(
    method: str,
    url: str,
    body: Any = None,
    *,
    timeout: float = 30.0,
) -> tuple[int, Any, dict[str, str]]:
    """``method url`` with a JSON ``body`` (or raw bytes): (status, decoded
    body, headers)."""
    data = None if body is None else (body if isinstance(body, bytes) else orjson.dumps(body))
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            raw, status, headers = resp.read(), resp.status, dict(resp.headers)
    except urllib.error.HTTPError as err:
        raw, status, headers = err.read(), err.code, dict(err.headers)
    return status, (orjson.loads(raw) if raw else None), headers
