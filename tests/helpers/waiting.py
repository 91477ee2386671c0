"""Waiting on a condition with a deadline: the only synchronisation the tests use."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


def _check(predicate: Callable[[], Any], deadline: float, timeout: float, what: str) -> Any:
    """``predicate()``; fails once it is still falsy past ``deadline``."""
    value = predicate()
    if not value and time.monotonic() > deadline:
        raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
    return value


def wait_until(
    predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns a truthy value (which is returned);
    fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if value := _check(predicate, deadline, timeout, what):
            return value
        time.sleep(interval)


async def async_wait_until(
    predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Like :func:`wait_until`, yielding to the event loop between checks."""
    deadline = time.monotonic() + timeout
    while True:
        if value := _check(predicate, deadline, timeout, what):
            return value
        await asyncio.sleep(interval)
