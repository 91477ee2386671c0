"""The local HTTP API (docs/http-api.md): JSON in and out, RFC 9457 problems on error."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

from jobwatchd import __version__
from jobwatchd.config import AccountConfig, Config, ConfigError, parse_duration
from jobwatchd.engine.tracker import Tracker, gc_paused
from jobwatchd.http.openapi import build_document
from jobwatchd.http.origin import OriginPolicy, browser_refusal
from jobwatchd.http.responses import (
    STORE_RETRY_AFTER,
    invalid,
    json_object,
    json_response,
    problem,
    read_body,
)
from jobwatchd.logs import get_logger
from jobwatchd.models import DEFAULT_SERVICE, JobRecord, NewJob
from jobwatchd.services import SERVICES
from jobwatchd.store import ConflictError, StoreUnavailableError
from jobwatchd.validation import (
    ValidationError,
    parse_label_selector,
    validate_id,
    validate_labels,
    validate_timeout,
)

log = get_logger("jobwatchd.api")

MAX_WAIT_SECONDS = 3600.0
TOKENLESS_ROUTE_PREFIX = "ui_shell"
"""Routes whose name starts with this are served without the token."""
MAX_LIST_LIMIT = 1000
_REGISTRATION_KEYS = frozenset({"job_id", "service", "project_id", "account", "labels", "timeout"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Api:
    """Handlers bound to a tracker and the daemon's config."""

    def __init__(
        self,
        tracker: Tracker,
        config: Config,
        *,
        token: str | None = None,
        readiness: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self.tracker = tracker
        self.config = config
        self.token = token
        self.readiness = readiness or (lambda: {})
        self._draining = asyncio.Event()
        self._openapi: bytes | None = None
        self._origin_policy = OriginPolicy.for_api(config.api)
        self._services = _services_by_account(config)

    @property
    def accepting(self) -> bool:
        """Whether registrations are taken; set False when the daemon drains.

        Draining also ends every ``?wait=`` long-poll at once with the job's
        current state, so none holds the shutdown up.
        """
        return not self._draining.is_set()

    @accepting.setter
    def accepting(self, value: bool) -> None:
        if value:
            self._draining.clear()
        else:
            self._draining.set()

    @property
    def middlewares(self) -> list[Middleware]:
        """Errors as problems, then browser-page refusals, then the token check."""
        return [self._errors, self._same_origin, self._auth]

    # -- middlewares ----------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ValidationError as error:
            return invalid(error)
        except web.HTTPRequestEntityTooLarge:
            return problem(
                413,
                "Payload too large",
                f"request bodies are limited to {self.config.api.max_body} bytes (api.max_body)",
            )
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return problem(exc.status, exc.reason, exc.text or exc.reason)
        except web.RequestPayloadError as exc:
            # A body that cannot be decoded (a corrupt gzip/deflate stream, a bad chunk)
            # surfaces while the handler reads it: the client's fault, not ours.
            detail = str(exc).partition("message:")[2].strip() or "malformed"
            return problem(400, "Invalid request body", f"the body cannot be read: {detail}")
        except StoreUnavailableError as exc:
            # Logged (rate-limited) by the tracker; nothing was stored.
            self.tracker.note_store_failure(exc)
            response = problem(503, "Store unavailable", f"{exc}; nothing was changed, retry later")
            response.headers["Retry-After"] = str(STORE_RETRY_AFTER)
            return response
        except Exception:
            log.exception("api.error", method=request.method, path=request.path)
            return problem(500, "Internal error", "the request failed; see the daemon's log")

    @web.middleware
    async def _same_origin(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        refusal = browser_refusal(
            self._origin_policy,
            method=request.method,
            host=request.host,
            origin=request.headers.get("Origin"),
            fetch_site=request.headers.get("Sec-Fetch-Site"),
            content_type=request.headers.get("Content-Type"),
        )
        if refusal is not None:
            return problem(*refusal)
        return await handler(request)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.token is not None and not _tokenless(request):
            header = request.headers.get("Authorization", "")
            scheme, _, presented = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                presented.strip().encode(), self.token.encode()
            ):
                response = problem(401, "Unauthorized", "a valid bearer token is required")
                response.headers["WWW-Authenticate"] = 'Bearer realm="jobwatchd"'
                return response
        return await handler(request)

    # -- handlers -------------------------------------------------------------------

    async def register(self, request: web.Request) -> web.Response:
        """``POST /v1/jobs``: one job or ``{"jobs": [...]}``, atomically."""
        if not self.accepting:
            return problem(503, "Shutting down", "the daemon is draining; retry on another")
        raw = await read_body(request, self.config.api.body_timeout)
        with gc_paused():  # a batch builds several objects per job
            return await self._register(raw)

    async def _register(self, raw: bytes) -> web.Response:
        body = json_object(raw)
        batch = "jobs" in body
        if batch:
            if set(body) != {"jobs"}:
                extra = sorted(set(body) - {"jobs"})[0]
                raise ValidationError(extra, "unknown field (a batch holds only 'jobs')")
            items = body["jobs"]
            if not isinstance(items, list) or not items:
                raise ValidationError("jobs", "must be a non-empty array")
            if len(items) > self.config.api.max_batch:
                raise ValidationError(
                    "jobs", f"at most {self.config.api.max_batch} jobs per batch (api.max_batch)"
                )
            jobs = [self._parse_job(item, f"jobs[{index}].") for index, item in enumerate(items)]
        else:
            jobs = [self._parse_job(body, "")]
        try:
            results = await self.tracker.register(jobs)
        except ConflictError as exc:
            what = "project" if exc.field == "project_id" else exc.field
            return problem(
                409,
                "Conflict",
                f"job {exc.job_id} is already tracked under another {what}",
                job_id=exc.job_id,
            )
        created = sum(1 for result in results if result.created)
        status = 201 if created else 200
        if batch:
            return json_response(
                {
                    "jobs": [self.tracker.view(result.job) for result in results],
                    "created": created,
                },
                status,
            )
        return json_response(self.tracker.view(results[0].job), status)

    def _parse_job(self, item: object, prefix: str) -> NewJob:
        if not isinstance(item, dict):
            raise ValidationError(prefix.rstrip(".") or "body", "must be a JSON object")
        if not _REGISTRATION_KEYS.issuperset(item):
            unknown = sorted(set(item) - _REGISTRATION_KEYS)
            raise ValidationError(f"{prefix}{unknown[0]}", "unknown field")
        if "job_id" not in item:
            raise ValidationError(f"{prefix}job_id", "is required")
        job_id = validate_id(item["job_id"], f"{prefix}job_id")
        if len(item) == 1 and DEFAULT_SERVICE in self._services[self.config.default_account.name]:
            # The common case: a bare id, everything else defaults.
            default = self.config.default_account
            return NewJob(job_id=job_id, project_id=default.project_id, account=default.name)
        project_id = None
        if item.get("project_id") is not None:
            project_id = validate_id(item["project_id"], f"{prefix}project_id")
        account = None
        if item.get("account") is not None:
            name = item["account"]
            account = self.config.account(name) if isinstance(name, str) else None
            if account is None:
                raise ValidationError(f"{prefix}account", f"unknown account {name!r}")
        elif project_id is not None:
            account = next(
                (acc for acc in self.config.accounts if acc.project_id == project_id), None
            )
        if account is None:
            account = self.config.default_account
        service = self._service(item.get("service"), account, f"{prefix}service")
        labels = validate_labels(item.get("labels"), f"{prefix}labels")
        raw_timeout = item.get("timeout")
        if isinstance(raw_timeout, str):
            try:
                raw_timeout = parse_duration(raw_timeout, f"{prefix}timeout")
            except ConfigError as exc:
                raise ValidationError(exc.key, exc.message) from None
        timeout = validate_timeout(raw_timeout, f"{prefix}timeout")
        return NewJob(
            job_id=job_id,
            project_id=project_id or account.project_id,
            account=account.name,
            service=service,
            labels=labels,
            timeout=timeout,
        )

    def _service(self, name: object, account: AccountConfig, key: str) -> str:
        """``name`` (ECS when None) if it is a known service ``account`` has an endpoint for."""
        if name is None:
            name = DEFAULT_SERVICE
        elif not isinstance(name, str) or name not in SERVICES:
            shown = repr(name)[:80]
            raise ValidationError(key, f"unknown service {shown}: known are {', '.join(SERVICES)}")
        if name not in self._services[account.name]:
            raise ValidationError(
                key,
                f"account {account.name!r} has no endpoint for {name}: give the account a"
                f" region, or endpoints.{_toml_key(name)}, in the config",
            )
        return name

    async def get_job(self, request: web.Request) -> web.Response:
        """``GET /v1/jobs/{job_id}``, long-polling with ``?wait=SECONDS``."""
        job_id = validate_id(request.match_info["job_id"], "job_id")
        wait = _number_param(request, "wait", 0.0, MAX_WAIT_SECONDS)
        if wait:
            record = await self._wait_unless_draining(job_id, wait)
        else:
            record = await self.tracker.get(job_id)
        if record is None:
            return problem(404, "Not found", f"job {job_id} is not tracked", job_id=job_id)
        return json_response(self.tracker.view(record))

    async def _wait_unless_draining(self, job_id: str, wait: float) -> JobRecord | None:
        waiting = asyncio.ensure_future(self.tracker.wait_terminal(job_id, wait))
        draining = asyncio.ensure_future(self._draining.wait())
        try:
            await asyncio.wait({waiting, draining}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            draining.cancel()
            if not waiting.done():
                waiting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiting
        if not waiting.cancelled():
            return waiting.result()
        return await self.tracker.get(job_id)

    async def list_jobs(self, request: web.Request) -> web.Response:
        """``GET /v1/jobs`` with status, label, limit and cursor."""
        query = request.query
        status = query.get("status")
        if status is not None and not (1 <= len(status) <= 64 and status.isascii()):
            raise ValidationError("status", "must be a status name")
        service = query.get("service")
        if service is not None and service not in SERVICES:
            raise ValidationError("service", f"unknown service: known are {', '.join(SERVICES)}")
        labels = dict(parse_label_selector(value) for value in query.getall("label", []))
        limit = int(_number_param(request, "limit", 1, MAX_LIST_LIMIT, default=100, integer=True))
        after = query.get("after")
        if after is not None:
            validate_id(after, "after")
        records = await self.tracker.list_jobs(
            status=status, labels=labels, limit=limit, after=after, service=service
        )
        views = [self.tracker.view(record) for record in records]
        next_cursor = records[-1].job_id if len(records) == limit else None
        return json_response({"jobs": views, "next": next_cursor})

    async def delete_job(self, request: web.Request) -> web.Response:
        """``DELETE /v1/jobs/{job_id}``: stop tracking."""
        job_id = validate_id(request.match_info["job_id"], "job_id")
        if not await self.tracker.delete(job_id):
            return problem(404, "Not found", f"job {job_id} is not tracked", job_id=job_id)
        return web.Response(status=204)

    async def healthz(self, request: web.Request) -> web.Response:
        """Liveness."""
        return json_response({"status": "ok", "version": __version__})

    async def readyz(self, request: web.Request) -> web.Response:
        """Readiness: the store is open and the API bound (upstream is informational)."""
        body = self.readiness()
        if self.tracker.store_failing:
            # Poll outcomes are not being recorded: take this instance out of rotation.
            return json_response({"status": "store failing", **body}, status=503)
        return json_response({"status": "ready", **body})

    def reconfigure(self, config: Config) -> None:
        """Use a reloaded config (accounts, limits) from now on."""
        self.config = config
        self._openapi = None
        self._origin_policy = OriginPolicy.for_api(config.api)
        self._services = _services_by_account(config)

    async def openapi(self, request: web.Request) -> web.Response:
        """``GET /openapi.json``: the OpenAPI 3.1 description of this API."""
        if self._openapi is None:
            self._openapi = orjson.dumps(build_document(self.config, token=self.token is not None))
        return web.Response(body=self._openapi, content_type="application/json")


def _tokenless(request: web.Request) -> bool:
    """Health checks, and the web view's page shells and static files (routes
    named ``ui_shell*``: they hold no data; the data they fetch needs the token)."""
    if request.path in ("/healthz", "/readyz"):
        return True
    name = request.match_info.route.name
    return name is not None and name.startswith(TOKENLESS_ROUTE_PREFIX)


def _number_param(
    request: web.Request,
    name: str,
    low: float,
    high: float,
    *,
    default: float = 0.0,
    integer: bool = False,
) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ValidationError(name, f"must be {kind}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ValidationError(name, f"must be between {low:g} and {high:g}")
    return value


def _toml_key(name: str) -> str:
    """``name`` as a TOML key (quoted when it has a '-')."""
    return name if name.isidentifier() else f'"{name}"'


def _services_by_account(config: Config) -> dict[str, frozenset[str]]:
    """The services each account has an endpoint for."""
    return {account.name: frozenset(account.services) for account in config.accounts}
