"""The client for the vendor's job status API, and the classification of its answers.

:func:`classify` is pure: it maps an HTTP status, headers and body to an
:class:`Outcome`: observed, not found, rejected, unauthorized, throttled or
transient (docs/statuses-and-events.md; the bounds on answers: docs/security.md).
:class:`UpstreamClient` does the I/O:
one pooled aiohttp session per account, credentials from an
:class:`Authenticator`.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from yarl import URL

from jobwatchd.cloud.auth import Authenticator
from jobwatchd.cloud.ecs import (
    MAX_SUB_JOBS,
    MalformedResponse,
    TooManySubJobs,
    parse_response,
)
from jobwatchd.cloud.errors import MAX_RESPONSE_SIZE, vendor_error
from jobwatchd.models import MAX_TEXT_LENGTH, bounded_text
from jobwatchd.net import USER_AGENT, location_origin, parse_retry_after, proxy_for, read_bounded
from jobwatchd.outcome import (
    JOB_ID_MISMATCH_CODE,
    REDIRECT_CODE,
    TOO_LARGE_CODE,
    Outcome,
    OutcomeKind,
    UpstreamError,
    too_large,
)
from jobwatchd.validation import is_valid_id

# Gateway codes that mean "slow down", whatever the HTTP status says.
THROTTLE_CODES = frozenset({"APIGW.0308", "Common.1503"})
# The vendor's "Invalid job ID": the job does not exist (for this project).
NOT_FOUND_CODES = frozenset({"Common.0011"})
MAX_CODE_LENGTH = 64
"""Vendor error codes are cut to this many characters."""


def _optional(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) else None


def _decode(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def classify(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    job_id: str | None = None,
    max_sub_jobs: int = MAX_SUB_JOBS,
) -> Outcome:
    """Map one HTTP answer to an :class:`Outcome`. Pure.

    With ``job_id``, a job document naming another job is an upstream error.
    A redirect is an error too (it is never followed), reported with the
    origin of its ``Location`` only.
    """
    if 300 <= status < 400:
        origin = location_origin(headers.get("Location"))
        return _failed(
            OutcomeKind.TRANSIENT,
            status,
            REDIRECT_CODE,
            f"HTTP {status} redirect to {origin} not followed (credentials stay with the endpoint)",
            "",
        )
    decoded = _decode(body)
    if (
        status == 200
        and isinstance(decoded, Mapping)
        and "status" in decoded
        and not isinstance(decoded.get("error"), Mapping)
    ):
        # A job document: its error_code/fail_reason describe the job, not the
        # query. Only top-level code/message report a query problem.
        if job_id is not None and (mismatch := _other_job(decoded, job_id)) is not None:
            return mismatch
        code, message = _optional(decoded, "code"), _optional(decoded, "message")
        if code is None and message is None:  # the common case: a plain job document
            try:
                response = parse_response(decoded, max_sub_jobs=max_sub_jobs)
            except TooManySubJobs as exc:
                return _failed(OutcomeKind.REJECTED, status, TOO_LARGE_CODE, str(exc), "")
            except MalformedResponse as exc:
                return _failed(OutcomeKind.TRANSIENT, status, None, None, str(exc))
            return Outcome(kind=OutcomeKind.OBSERVED, response=response)
    else:
        code, message = vendor_error(decoded)

    if status == 429 or code in THROTTLE_CODES:
        return _failed(
            OutcomeKind.THROTTLED,
            status,
            code,
            message,
            "throttled",
            retry_after=parse_retry_after(headers.get("Retry-After"), now),
        )
    if status == 200:
        if decoded is None:
            return _failed(OutcomeKind.TRANSIENT, status, code, message, "malformed JSON body")
        try:
            response = parse_response(decoded, max_sub_jobs=max_sub_jobs)
        except TooManySubJobs as exc:
            return _failed(OutcomeKind.REJECTED, status, TOO_LARGE_CODE, str(exc), "")
        except MalformedResponse as exc:
            return _failed(OutcomeKind.TRANSIENT, status, code, message, str(exc))
        kept = _error(code, message or "", status)
        return Outcome(kind=OutcomeKind.OBSERVED, response=response, error=kept)
    if status == 404 or (status == 400 and code in NOT_FOUND_CODES):
        return _failed(OutcomeKind.NOT_FOUND, status, code, message, "job not found")
    if status in (401, 403):
        return _failed(OutcomeKind.UNAUTHORIZED, status, code, message, "not authorized")
    if status == 408 or status >= 500 or status < 400:
        return _failed(OutcomeKind.TRANSIENT, status, code, message, f"HTTP {status}")
    return _failed(OutcomeKind.REJECTED, status, code, message, f"HTTP {status}")


def _failed(
    kind: OutcomeKind,
    status: int,
    code: str | None,
    message: str | None,
    default: str,
    *,
    retry_after: float | None = None,
) -> Outcome:
    return Outcome(
        kind=kind, error=_error(code, message or default, status), retry_after=retry_after
    )


def _error(code: str | None, message: str, status: int | None) -> UpstreamError:
    """An :class:`UpstreamError` with upstream's strings bounded."""
    if code is not None and len(code) > MAX_CODE_LENGTH:
        code = bounded_text(code, MAX_CODE_LENGTH)
    if len(message) > MAX_TEXT_LENGTH:
        message = bounded_text(message)
    return UpstreamError(code=code, message=message, http_status=status)


def _other_job(document: Mapping[str, Any], job_id: str) -> Outcome | None:
    """An error outcome when ``document`` names a job other than ``job_id``."""
    reported = document.get("job_id")
    if reported is None or reported == job_id:
        return None
    shown = bounded_text(reported, 80) if isinstance(reported, str) else type(reported).__name__
    return _failed(
        OutcomeKind.TRANSIENT,
        200,
        JOB_ID_MISMATCH_CODE,
        f"answer is about job {shown!r}, not the job asked for; ignored",
        "",
    )


class UpstreamClient:
    """Queries one account's endpoint with a pooled keep-alive session."""

    def __init__(
        self,
        *,
        endpoint: str,
        auth: Authenticator,
        pool_size: int,
        request_timeout: float,
        ca_file: Path | None = None,
        max_response_size: int = MAX_RESPONSE_SIZE,
        max_sub_jobs: int = MAX_SUB_JOBS,
    ) -> None:
        self.endpoint = URL(endpoint)
        self.max_response_size = max_response_size
        self.max_sub_jobs = max_sub_jobs
        self.auth = auth
        self._pool_size = pool_size
        self.request_timeout = request_timeout
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._ca_file = ca_file
        self._session: aiohttp.ClientSession | None = None
        self.proxy = proxy_for(self.endpoint)
        self._base = str(self.endpoint).rstrip("/")

    async def start(self) -> None:
        """Open the connection pool."""
        ssl_context = ssl.create_default_context(
            cafile=str(self._ca_file) if self._ca_file else None
        )
        connector = aiohttp.TCPConnector(limit=self._pool_size, ssl=ssl_context)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            trust_env=False,  # the proxy is resolved once, in proxy_for
            raise_for_status=False,
        )

    async def close(self) -> None:
        """Close the pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def job_url(self, project_id: str, job_id: str) -> URL:
        """The status URL; refuses ids that could escape the path."""
        if not is_valid_id(project_id) or not is_valid_id(job_id):
            raise ValueError("invalid project or job id")
        # Validated ids need no quoting: one string join instead of four yarl joins.
        return URL(f"{self._base}/v1/{project_id}/jobs/{job_id}", encoded=True)

    async def query(self, project_id: str, job_id: str) -> Outcome:
        """Poll one job once (retrying immediately only after a refreshed credential)."""
        if self._session is None:
            raise RuntimeError("client is not started")
        url = self.job_url(project_id, job_id)
        for attempt in range(2):
            headers: dict[str, str] = {}
            try:
                await self.auth.apply("GET", url, headers)
                # Never follow a redirect: it would carry the credentials elsewhere.
                async with self._session.get(
                    url, headers=headers, proxy=self.proxy, allow_redirects=False
                ) as resp:
                    outcome = await self._classify(resp, job_id)
            except (TimeoutError, aiohttp.ClientError) as exc:
                name = type(exc).__name__
                detail = str(exc) or name
                return Outcome(
                    kind=OutcomeKind.TRANSIENT,
                    error=UpstreamError(code=name, message=detail, http_status=None),
                )
            if (
                outcome.kind is OutcomeKind.UNAUTHORIZED
                and attempt == 0
                and await self.auth.invalidate()
            ):
                continue
            return outcome
        return outcome

    async def _classify(self, resp: aiohttp.ClientResponse, job_id: str) -> Outcome:
        status = resp.status
        if 300 <= status < 400:  # the body of a redirect is of no use
            resp.close()
            return classify(status, resp.headers, b"", now=time.time())
        body = await read_bounded(resp, self.max_response_size)
        if body is None:
            error = too_large(status, self.max_response_size)
            if status == 200:  # refused: three in a row end the job as ERROR
                return Outcome(kind=OutcomeKind.REJECTED, error=error)
            # An error page that big: what its status says, without the body.
            outcome = classify(status, resp.headers, b"", now=time.time())
            return replace(outcome, error=error)
        return classify(
            status,
            resp.headers,
            body,
            now=time.time(),
            job_id=job_id,
            max_sub_jobs=self.max_sub_jobs,
        )
