"""The client for the vendor's job status API, and the classification of its answers.

:func:`classify` is pure: it maps an HTTP status, headers and body to an
:class:`Outcome` per PRODUCT §2 and §9. :class:`UpstreamClient` does the I/O:
one pooled aiohttp session per account, credentials from an
:class:`Authenticator`.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import enum
import math
import ssl
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import orjson
from yarl import URL

from jobwatchd import __version__
from jobwatchd.config import read_secret
from jobwatchd.statemachine import JobResponse, MalformedResponse, parse_response
from jobwatchd.validation import is_valid_id

# Gateway codes that mean "slow down", whatever the HTTP status says.
THROTTLE_CODES = frozenset({"APIGW.0308", "Common.1503"})
# The vendor's "Invalid job ID": the job does not exist (for this project).
NOT_FOUND_CODES = frozenset({"Common.0011"})
USER_AGENT = f"jobwatchd/{__version__}"


class OutcomeKind(enum.Enum):
    """What one poll learned."""

    OBSERVED = "observed"
    NOT_FOUND = "not_found"
    REJECTED = "rejected"
    UNAUTHORIZED = "unauthorized"
    THROTTLED = "throttled"
    TRANSIENT = "transient"


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamError:
    """An error reported by (or about) the upstream API."""

    code: str | None
    message: str
    http_status: int | None

    def to_json(self, at: str) -> dict[str, Any]:
        """The job object's ``last_error`` form."""
        return {
            "code": self.code,
            "message": self.message,
            "http_status": self.http_status,
            "at": at,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """The classified result of one poll."""

    kind: OutcomeKind
    response: JobResponse | None = None
    error: UpstreamError | None = None
    retry_after: float | None = None


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:  # asctime form: RFC 9110 dates are always GMT
            moment = moment.replace(tzinfo=dt.UTC)
        seconds = moment.timestamp() - now
    if math.isnan(seconds):
        return None
    return max(0.0, min(seconds, 3600.0))


def vendor_error(body: object) -> tuple[str | None, str | None]:
    """The (code, message) of a vendor error body, in any of its three shapes:
    ``{"error": {"code", "message"}}``, the gateway's ``{"error_code",
    "error_msg"}``, or ``code``/``message`` at the top level."""
    if not isinstance(body, Mapping):
        return None, None
    nested = body.get("error")
    if isinstance(nested, Mapping):
        body = nested
    for code_key, message_key in (("code", "message"), ("error_code", "error_msg")):
        code, message = body.get(code_key), body.get(message_key)
        if isinstance(code, str) or isinstance(message, str):
            return (
                code if isinstance(code, str) else None,
                message if isinstance(message, str) else None,
            )
    return None, None


def _optional(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) else None


def _decode(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def classify(status: int, headers: Mapping[str, str], body: bytes, *, now: float) -> Outcome:
    """Map one HTTP answer to an :class:`Outcome`. Pure."""
    decoded = _decode(body)
    if (
        status == 200
        and isinstance(decoded, Mapping)
        and "status" in decoded
        and not isinstance(decoded.get("error"), Mapping)
    ):
        # A job document: its error_code/fail_reason describe the job, not the
        # query. Only top-level code/message report a query problem.
        code, message = _optional(decoded, "code"), _optional(decoded, "message")
        if code is None and message is None:  # the common case: a plain job document
            try:
                return Outcome(kind=OutcomeKind.OBSERVED, response=parse_response(decoded))
            except MalformedResponse as exc:
                return _failed(OutcomeKind.TRANSIENT, status, None, None, str(exc))
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
            response = parse_response(decoded)
        except MalformedResponse as exc:
            return _failed(OutcomeKind.TRANSIENT, status, code, message, str(exc))
        kept = UpstreamError(code=code, message=message or "", http_status=status)
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
    error = UpstreamError(code=code, message=message or default, http_status=status)
    return Outcome(kind=kind, error=error, retry_after=retry_after)


class Authenticator(Protocol):
    """Adds credentials to upstream requests."""

    async def apply(self, method: str, url: URL, headers: dict[str, str]) -> None:
        """Add the credential headers for this request."""

    async def invalidate(self) -> bool:
        """The credentials were refused (401): refresh them. True when they changed."""
        ...


class NoAuth:
    """No credentials (the simulator, or a proxy that adds them)."""

    async def apply(self, method: str, url: URL, headers: dict[str, str]) -> None:
        """Nothing to add."""

    async def invalidate(self) -> bool:
        """Nothing to refresh."""
        return False


class TokenAuth:
    """``X-Auth-Token`` from a file, re-read on 401 and on reload."""

    def __init__(self, token_file: Path) -> None:
        self.token_file = token_file
        self._token: str | None = None

    def _read(self) -> str:
        return read_secret(self.token_file, "token_file")

    async def apply(self, method: str, url: URL, headers: dict[str, str]) -> None:
        """Set ``X-Auth-Token``."""
        if self._token is None:
            self._token = self._read()
        headers["X-Auth-Token"] = self._token

    async def invalidate(self) -> bool:
        """Re-read the token file; True if the token changed."""
        old = self._token
        try:
            self._token = self._read()
        except Exception:
            return False
        return self._token != old


def proxy_for(url: URL) -> str | None:
    """The proxy for ``url`` from ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``.

    Resolved once per client rather than per request: aiohttp's ``trust_env``
    re-reads the environment and ``~/.netrc`` on every request, which
    dominated the cost of a poll.
    """
    if url.host is None or urllib.request.proxy_bypass(url.host):
        return None
    return urllib.request.getproxies().get(url.scheme)


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
    ) -> None:
        self.endpoint = URL(endpoint)
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
                async with self._session.get(url, headers=headers, proxy=self.proxy) as resp:
                    body = await resp.read()
                    outcome = classify(resp.status, resp.headers, body, now=time.time())
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
