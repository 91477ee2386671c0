"""A small client for the daemon's HTTP API, used by the CLI."""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import aiohttp
import orjson

from jobwatchd.models import SUCCESS

LONG_POLL_SECONDS = 30.0


class ClientFailure(Exception):
    """The daemon could not be reached, or answered with an error."""


class NotTracked(ClientFailure):
    """The daemon does not track this job."""


def base_url(address: str) -> tuple[str, str | None]:
    """(HTTP base URL, Unix socket path or None) for an ``api.listen``-style address."""
    if address.startswith(("http://", "https://")):
        return address.rstrip("/"), None
    if address.startswith("unix:"):
        return "http://localhost", address[len("unix:") :]
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "", "[::]"):  # a wildcard listen is reachable on loopback
        host = "127.0.0.1"
    return f"http://{host}:{port}", None


class ApiClient:
    """``async with ApiClient(address) as client: await client.get_job(...)``."""

    def __init__(self, address: str, *, token: str | None = None) -> None:
        self.url, self._unix_path = base_url(address)
        self._token = token
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiClient:
        connector: aiohttp.BaseConnector = (
            aiohttp.UnixConnector(path=self._unix_path)
            if self._unix_path
            else aiohttp.TCPConnector()
        )
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        self._session = aiohttp.ClientSession(connector=connector, headers=headers)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | list[tuple[str, str]] | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, Any]:
        """Send a request; returns (status, decoded JSON or None)."""
        assert self._session is not None, "use 'async with'"
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            async with self._session.request(
                method,
                self.url + path,
                data=data,
                params=params,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ClientFailure(
                f"cannot reach jobwatchd at {self.url}: {exc or type(exc).__name__}"
            ) from None
        decoded = orjson.loads(raw) if raw else None
        if status == 401:
            raise ClientFailure("jobwatchd refused the request: a valid API token is required")
        return status, decoded

    async def register(self, jobs: list[dict[str, Any]]) -> tuple[int, Any]:
        """``POST /v1/jobs`` as a batch."""
        return await self.request("POST", "/v1/jobs", body={"jobs": jobs})

    async def get_job(self, job_id: str, *, wait: float = 0.0) -> dict[str, Any]:
        """One job object, long-polling up to ``wait`` seconds."""
        params = {"wait": f"{wait:.3f}"} if wait > 0 else None
        status, body = await self.request(
            "GET", f"/v1/jobs/{job_id}", params=params, timeout=wait + 30.0
        )
        if status == 404:
            raise NotTracked(f"job {job_id} is not tracked")
        if status != 200 or not isinstance(body, dict):
            raise ClientFailure(problem_text(status, body))
        return body

    async def wait_terminal(self, job_id: str, deadline: float | None) -> dict[str, Any]:
        """Long-poll until the job is terminal or ``deadline`` (monotonic) passes."""
        while True:
            remaining = LONG_POLL_SECONDS if deadline is None else deadline - time.monotonic()
            job = await self.get_job(job_id, wait=max(0.0, min(LONG_POLL_SECONDS, remaining)))
            if job.get("terminal") or (deadline is not None and time.monotonic() >= deadline):
                return job


def problem_text(status: int, body: Any) -> str:
    """A one-line description of an error answer."""
    if isinstance(body, dict) and "detail" in body:
        return f"jobwatchd answered {status}: {body['detail']}"
    return f"jobwatchd answered {status}"


def wait_exit_code(jobs: list[dict[str, Any]]) -> int:
    """PRODUCT §6: 0 all SUCCESS, 1 any ended otherwise, 124 the wait timed out."""
    if any(job.get("terminal") and job.get("status") != SUCCESS for job in jobs):
        return 1
    if all(job.get("status") == SUCCESS for job in jobs):
        return 0
    return 124
