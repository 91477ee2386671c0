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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from yarl import URL

from jobwatchd.cloud.auth import Authenticator
from jobwatchd.cloud.ecs import MAX_SUB_JOBS, JobResponse, MalformedResponse, TooManySubJobs
from jobwatchd.cloud.errors import MAX_RESPONSE_SIZE, vendor_error
from jobwatchd.cloud.formats import DOCUMENT_KEYS, JobNotListed, poll_parser
from jobwatchd.models import DEFAULT_SERVICE, MAX_TEXT_LENGTH, bounded_text
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
from jobwatchd.services import Service, ServiceError, service, url_pieces
from jobwatchd.validation import is_valid_id

DEFAULT_FORMAT = "ecs"

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
    answer_format: str = DEFAULT_FORMAT,
) -> Outcome:
    """Map one HTTP answer, in ``answer_format`` (:mod:`jobwatchd.cloud.formats`),
    to an :class:`Outcome`. Pure.

    With ``job_id``, a job document naming another job is an upstream error,
    and a list-style answer that does not hold it means the job is not found.
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
        and DOCUMENT_KEYS[answer_format] in decoded
        and not isinstance(decoded.get("error"), Mapping)
    ):
        # A job document: its error_code/fail_reason describe the job, not the
        # query. Only top-level code/message report a query problem.
        code, message = _optional(decoded, "code"), _optional(decoded, "message")
        if code is None and message is None:  # the common case: a plain job document
            return _observed(decoded, answer_format, job_id, max_sub_jobs, None)
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
        kept = _error(code, message or "", status) if code or message else None
        return _observed(decoded, answer_format, job_id, max_sub_jobs, kept)
    if status == 404 or (status == 400 and code in NOT_FOUND_CODES):
        return _failed(OutcomeKind.NOT_FOUND, status, code, message, "job not found")
    if status in (401, 403):
        return _failed(OutcomeKind.UNAUTHORIZED, status, code, message, "not authorized")
    if status == 408 or status >= 500 or status < 400:
        return _failed(OutcomeKind.TRANSIENT, status, code, message, f"HTTP {status}")
    return _failed(OutcomeKind.REJECTED, status, code, message, f"HTTP {status}")


def _observed(
    decoded: object,
    answer_format: str,
    job_id: str | None,
    max_sub_jobs: int,
    kept: UpstreamError | None,
) -> Outcome:
    """The outcome of a 200 answer read as a job document; ``kept`` is a
    query problem reported beside it."""
    try:
        answer = poll_parser(answer_format)(decoded, job_id=job_id, max_sub_jobs=max_sub_jobs)
    except TooManySubJobs as exc:
        return _failed(OutcomeKind.REJECTED, 200, TOO_LARGE_CODE, str(exc), "")
    except JobNotListed as exc:
        return _failed(OutcomeKind.NOT_FOUND, 200, None, str(exc), "")
    except MalformedResponse as exc:
        code, message = (None, None) if kept is None else (kept.code, kept.message)
        return _failed(OutcomeKind.TRANSIENT, 200, code, message or None, str(exc))
    # The ECS document's own job_id, even when it is not a string.
    reported = answer.body.get("job_id") if isinstance(answer, JobResponse) else answer.job_id
    if job_id is not None and (mismatch := _other_job(reported, job_id)) is not None:
        return mismatch
    return Outcome(kind=OutcomeKind.OBSERVED, response=answer, error=kept)


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


def _other_job(reported: object, job_id: str) -> Outcome | None:
    """An error outcome when the document is about a job other than ``job_id``."""
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


@dataclass(frozen=True, slots=True)
class _Target:
    """Where one service's jobs are queried, and how its answers read."""

    service: Service
    base: str
    proxy: str | None
    answer_format: str
    pieces: tuple[str, str, str]
    """The query path around the ids (:func:`jobwatchd.services.url_pieces`)."""


class UpstreamClient:
    """Queries one account's services with one pooled keep-alive session.

    ``endpoint`` is the ECS job API's base URL (None: the account polls no
    ECS jobs); ``endpoints`` adds or overrides any service's, by name
    (:mod:`jobwatchd.services`).
    """

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        endpoints: Mapping[str, str] | None = None,
        auth: Authenticator,
        pool_size: int,
        request_timeout: float,
        ca_file: Path | None = None,
        max_response_size: int = MAX_RESPONSE_SIZE,
        max_sub_jobs: int = MAX_SUB_JOBS,
    ) -> None:
        every = dict(endpoints or {})
        if endpoint is not None:
            every.setdefault(DEFAULT_SERVICE, endpoint)
        self.endpoints: Mapping[str, URL] = {name: URL(url) for name, url in every.items()}
        self.endpoint: URL | None = self.endpoints.get(DEFAULT_SERVICE)
        self.max_response_size = max_response_size
        self.max_sub_jobs = max_sub_jobs
        self.auth = auth
        self._pool_size = pool_size
        self.request_timeout = request_timeout
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._ca_file = ca_file
        self._session: aiohttp.ClientSession | None = None
        self._targets = {
            name: _Target(
                service=service(name),
                base=str(url).rstrip("/"),
                proxy=proxy_for(url),
                answer_format=service(name).answer_format,
                pieces=url_pieces(service(name)),
            )
            for name, url in self.endpoints.items()
        }
        ecs = self._targets.get(DEFAULT_SERVICE)
        self.proxy = None if ecs is None else ecs.proxy

    @property
    def services(self) -> frozenset[str]:
        """The services this client can query."""
        return frozenset(self._targets)

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

    def _target(self, name: str) -> _Target:
        target = self._targets.get(name)
        if target is None:
            raise ServiceError(f"this account has no endpoint for the {name} job API")
        return target

    def job_url(self, project_id: str, job_id: str, service: str = DEFAULT_SERVICE) -> URL:
        """The status URL of ``service``; refuses ids that could escape the path."""
        if not is_valid_id(project_id) or not is_valid_id(job_id):
            raise ValueError("invalid project or job id")
        target = self._target(service)
        before, between, after = target.pieces
        # Validated ids need no quoting (in a path or a query): one string join
        # instead of several yarl joins.
        return URL(f"{target.base}{before}{project_id}{between}{job_id}{after}", encoded=True)

    async def query(self, project_id: str, job_id: str, service: str = DEFAULT_SERVICE) -> Outcome:
        """Poll one job of ``service`` once (retrying immediately only after a
        refreshed credential)."""
        if self._session is None:
            raise RuntimeError("client is not started")
        target = self._target(service)
        url = self.job_url(project_id, job_id, service)
        for attempt in range(2):
            headers: dict[str, str] = {}
            try:
                await self.auth.apply("GET", url, headers)
                # Never follow a redirect: it would carry the credentials elsewhere.
                async with self._session.get(
                    url, headers=headers, proxy=target.proxy, allow_redirects=False
                ) as resp:
                    outcome = await self._classify(resp, job_id, target.answer_format)
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

    async def _classify(
        self, resp: aiohttp.ClientResponse, job_id: str, answer_format: str
    ) -> Outcome:
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
            answer_format=answer_format,
        )
