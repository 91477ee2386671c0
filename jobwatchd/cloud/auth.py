"""Credentials for the vendor's APIs: an :class:`Authenticator` per account
(:func:`authenticator_for`): none, a token file, AK/SK request signing
(:mod:`jobwatchd.cloud.signing`) or IAM password tokens.

:class:`AkSkAuth` and :class:`IamPasswordAuth` Neither ever puts a secret (SK,
security token, password, IAM token) in a log line, an exception message or a
``repr``.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import hmac
import itertools
import os
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Protocol

import aiohttp
import orjson
from yarl import URL

from jobwatchd.cloud.errors import MAX_RESPONSE_SIZE, vendor_error
from jobwatchd.cloud.signing import (
    ALGORITHM,
    EMPTY_BODY_SHA256,
    ENV_SECURITY_TOKEN,
    HEADER_DATE,
    format_sdk_date,
    sign,
)
from jobwatchd.config import ENV_AK, ENV_SK, AccountConfig, ConfigError
from jobwatchd.logs import get_logger
from jobwatchd.net import USER_AGENT, location_origin, proxy_for, read_bounded
from jobwatchd.options import read_secret

log = get_logger("jobwatchd.auth")

# Paths and header values that the canonical form leaves as they are: no
# percent-encoding to undo or apply, nothing to strip.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/_.~-]*")
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.~-]+")


def _project_in_plain_path(path: str) -> str | None:
    """:func:`_project_in_path` for a path with nothing percent-encoded."""
    parts = path.split("/")
    if len(parts) >= 5 and parts[-4] == "v1" and parts[-2] == "jobs":
        return parts[-3]
    return None


def _sign_plain_get(
    url: URL, project_id: str, credentials: AkSkCredentials, sdk_date: str, keyed: hmac.HMAC
) -> dict[str, str]:
    """:func:`sign` specialised for the poll: a GET with no body, no query and
    only the headers :class:`AkSkAuth` adds, on a path that needs no encoding.
    The same result without the general canonicalisation (the tests check both
    against the official SDK). ``keyed`` is an HMAC-SHA256 keyed with the SK."""
    host = url.host_port_subcomponent
    if host is None:
        raise ValueError("the URL must be absolute")
    token = credentials.security_token
    path = url.raw_path
    if not path.endswith("/"):
        path += "/"
    if token:
        canonical_headers = (
            f"host:{host}\nx-project-id:{project_id}\nx-sdk-date:{sdk_date}\n"
            f"x-security-token:{token.strip()}\n"
        )
        names = "host;x-project-id;x-sdk-date;x-security-token"
    else:
        canonical_headers = f"host:{host}\nx-project-id:{project_id}\nx-sdk-date:{sdk_date}\n"
        names = "host;x-project-id;x-sdk-date"
    canonical = f"GET\n{path}\n\n{canonical_headers}\n{names}\n{EMPTY_BODY_SHA256}"
    to_sign = f"{ALGORITHM}\n{sdk_date}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    mac = keyed.copy()
    mac.update(to_sign.encode())
    added = {"X-Project-Id": project_id}
    if token:
        added["X-Security-Token"] = token
    added[HEADER_DATE] = sdk_date
    added["Host"] = host
    added["Authorization"] = (
        f"{ALGORITHM} Access={credentials.ak}, SignedHeaders={names}, Signature={mac.hexdigest()}"
    )
    return added


# ---------------------------------------------------------------------------
# Authenticators


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


class AuthError(aiohttp.ClientError):
    """Credentials could not be obtained (IAM refused, unreachable, or a secret unreadable).

    A :class:`aiohttp.ClientError`, so the upstream client treats it like any
    failed request: a transient poll error, retried with backoff. The message
    never contains a secret.
    """


@dataclass(frozen=True, slots=True)
class AkSkCredentials:
    """An access key, its secret key and, for temporary credentials, a security token.

    The ``repr`` shows the access key ID only.
    """

    ak: str
    sk: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _project_in_path(url: URL) -> str | None:
    """The ``{project_id}`` of a ``.../v1/{project_id}/jobs/{job_id}`` URL."""
    parts = url.parts
    if len(parts) >= 5 and parts[-4] == "v1" and parts[-2] == "jobs":
        return parts[-3]
    return None


class AkSkAuth:
    """Signs every request with AK/SK (``SDK-HMAC-SHA256``), adding ``X-Project-Id``
    and, for temporary credentials, ``X-Security-Token``.

    ``X-Project-Id`` is the project of the job URL (a job may be registered
    under another project than its account's: AK/SK are not project-bound),
    else ``project_id``. ``load`` returns the credentials; it is called on
    first use and again on a 401, so rotated credential files are picked up.
    """

    def __init__(
        self,
        load: Callable[[], AkSkCredentials],
        *,
        project_id: str | None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self._load = load
        self._project_id = project_id
        self._now = now
        self._credentials: AkSkCredentials | None = None
        self._date_second = -1
        self._date = ""
        self._keyed_for: tuple[AkSkCredentials, hmac.HMAC] | None = None

    def __repr__(self) -> str:
        return f"AkSkAuth(project_id={self._project_id!r})"

    @classmethod
    def for_account(
        cls, account: AccountConfig, key: str, environ: Mapping[str, str] | None = None
    ) -> AkSkAuth:
        """The signer of an ``auth = "aksk"`` account; ``key`` (``accounts[0]``)
        names it in errors. AK and SK come from ``ak_file``/``sk_file``, else
        ``$HUAWEICLOUD_SDK_AK``/``$HUAWEICLOUD_SDK_SK``; the security token from
        ``security_token_file``, else ``$HUAWEICLOUD_SDK_SECURITY_TOKEN`` when
        the AK comes from the environment too. Reads them once now, so a
        missing one refuses the start with a :class:`ConfigError`."""
        env = dict(os.environ if environ is None else environ)

        def one(path: Path | None, variable: str, name: str) -> str:
            if path is not None:
                return read_secret(path, f"{key}.{name}")
            value = env.get(variable, "").strip()
            if not value:
                raise ConfigError(
                    f"{key}.{name}", f'required with auth = "aksk" unless ${variable} is set'
                )
            return value

        def load() -> AkSkCredentials:
            token: str | None = None
            if account.security_token_file is not None:
                token = read_secret(account.security_token_file, f"{key}.security_token_file")
            elif account.ak_file is None:
                token = env.get(ENV_SECURITY_TOKEN, "").strip() or None
            return AkSkCredentials(
                ak=one(account.ak_file, ENV_AK, "ak_file"),
                sk=one(account.sk_file, ENV_SK, "sk_file"),
                security_token=token,
            )

        auth = cls(load, project_id=account.project_id)
        auth._credentials = load()
        return auth

    def _current(self) -> AkSkCredentials:
        if self._credentials is None:
            try:
                self._credentials = self._load()
            except ConfigError as error:
                raise AuthError(str(error)) from None
        return self._credentials

    async def apply(self, method: str, url: URL, headers: dict[str, str]) -> None:
        """Add ``X-Project-Id``, ``X-Security-Token``, ``Host``, ``X-Sdk-Date`` and
        ``Authorization`` (GET: empty body)."""
        credentials = self._current()
        path = url.raw_path
        if (
            method == "GET"
            and not headers
            and not url.raw_query_string
            and _PLAIN_PATH.fullmatch(path) is not None
        ):
            project_id = _project_in_plain_path(path) or self._project_id
            if project_id and _PLAIN_VALUE.fullmatch(project_id) is not None:
                keyed = self._keyed(credentials)
                headers.update(
                    _sign_plain_get(url, project_id, credentials, self._sdk_date(), keyed)
                )
                return
        project_id = _project_in_path(url) or self._project_id
        if project_id:
            headers["X-Project-Id"] = project_id
        if credentials.security_token:
            headers["X-Security-Token"] = credentials.security_token
        headers.update(
            sign(
                method=method,
                url=url,
                headers=headers,
                ak=credentials.ak,
                sk=credentials.sk,
                now=self._now() if self._now is not None else _utc_now(),
            )
        )

    def _keyed(self, credentials: AkSkCredentials) -> hmac.HMAC:
        """An HMAC-SHA256 keyed with ``credentials``' SK, made once per credentials."""
        if self._keyed_for is None or self._keyed_for[0] is not credentials:
            self._keyed_for = (credentials, hmac.new(credentials.sk.encode(), None, "sha256"))
        return self._keyed_for[1]

    def _sdk_date(self) -> str:
        """``X-Sdk-Date`` now, formatted once per second on the system clock."""
        if self._now is not None:
            return format_sdk_date(self._now())
        second = int(time.time())
        if second != self._date_second:
            self._date = format_sdk_date(datetime.fromtimestamp(second, UTC))
            self._date_second = second
        return self._date

    async def invalidate(self) -> bool:
        """Reload the credentials (a rotated file); True when they changed."""
        old = self._credentials
        try:
            self._credentials = self._load()
        except ConfigError as error:
            log.error("aksk.reload_failed", error=str(error))
            return False
        return self._credentials != old


@dataclass(frozen=True, slots=True)
class _Token:
    value: str = field(repr=False)
    generation: int
    obtained_at: float  # monotonic
    refresh_at: float  # monotonic
    expires_at: float  # monotonic
    expires_at_text: str


REFRESH_FRACTION: Final = 0.25
"""A token is refreshed once this fraction of its lifetime is left..."""
MAX_REFRESH_MARGIN: Final = 3600.0
"""... or this many seconds, whichever is less (IAM tokens last 24 h)."""
_RETRY_MIN, _RETRY_MAX = 1.0, 60.0
_MAX_MESSAGE = 300
_generations = itertools.count(1)


def _parse_iam_time(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class IamPasswordAuth:
    """``X-Auth-Token`` from IAM (``POST /v3/auth/tokens``, password, project-scoped).

    The token is cached and refreshed well before its ``expires_at`` (with a
    quarter of its lifetime, at most an hour, left) and once on a 401. All
    pollers share one refresh in flight. A failed refresh keeps a token that
    is still valid and is retried with backoff, never more than one request at
    a time. The password is read from ``password`` (a callable, so a rotated
    file is picked up) at each refresh and never kept.
    """

    def __init__(
        self,
        *,
        iam_endpoint: str,
        domain: str,
        user: str,
        password: Callable[[], str],
        project_id: str,
        account: str = "default",
        ca_file: Path | None = None,
        request_timeout: float = 10.0,
        min_reauth_interval: float = 10.0,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        # nocatalog: the service catalogue is large and of no use here.
        self.token_url = (URL(iam_endpoint) / "v3" / "auth" / "tokens").with_query(nocatalog="true")
        self.account = account
        self._domain = domain
        self._user = user
        self._password = password
        self._project_id = project_id
        self._ca_file = ca_file
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._min_reauth = min_reauth_interval
        self._session = session
        self._clock = clock
        self._wall_clock = wall_clock
        self._proxy = proxy_for(self.token_url)
        self._token: _Token | None = None
        self._inflight: asyncio.Future[_Token] | None = None
        self._retry_at = 0.0
        self._retry_delay = _RETRY_MIN
        self._last_error: AuthError | None = None
        # The token generation each task's last request carried, for invalidate().
        self._used: contextvars.ContextVar[int] = contextvars.ContextVar(
            f"iam_token_used_{id(self)}", default=0
        )
        self.refreshes = 0
        """Tokens obtained so far."""

    def __repr__(self) -> str:
        return f"IamPasswordAuth(account={self.account!r}, user={self._user!r})"

    @classmethod
    def for_account(cls, account: AccountConfig, key: str) -> IamPasswordAuth:
        """The token provider of an ``auth = "iam-password"`` account."""
        if (
            account.iam_endpoint is None
            or account.domain is None
            or account.user is None
            or account.password_file is None
        ):
            raise ConfigError(key, "iam-password needs iam_endpoint, domain, user, password_file")
        password_file = account.password_file

        def password() -> str:
            return read_secret(password_file, f"{key}.password_file")

        password()  # unreadable: refuse the start, naming the key
        return cls(
            iam_endpoint=account.iam_endpoint,
            domain=account.domain,
            user=account.user,
            password=password,
            project_id=account.project_id,
            account=account.name,
            ca_file=account.ca_file,
            request_timeout=account.request_timeout,
        )

    async def apply(self, method: str, url: URL, headers: dict[str, str]) -> None:
        """Set ``X-Auth-Token``, obtaining or refreshing the token first when due."""
        token = await self._valid_token()
        self._used.set(token.generation)
        headers["X-Auth-Token"] = token.value

    async def invalidate(self) -> bool:
        """The token was refused: True when a newer one is there to retry with.

        A token newer than the refused request's is used as is; a token
        obtained less than ``min_reauth_interval`` ago that is refused is not
        replaced (a new one would be refused too), nor is one while a failed
        refresh backs off; otherwise one shared refresh.
        """
        token = self._token
        if token is not None and token.generation != self._used.get():
            return True
        now = self._clock()
        if token is not None and now - token.obtained_at < self._min_reauth:
            return False
        if now < self._retry_at and self._inflight is None:
            return False  # IAM refused moments ago: wait for the backoff
        try:
            await self._refresh("unauthorized")
        except AuthError:
            return False
        return True

    async def _valid_token(self) -> _Token:
        token = self._token
        now = self._clock()
        if token is not None and now < token.refresh_at:
            return token
        still_valid = token is not None and now < token.expires_at
        if now < self._retry_at and self._inflight is None:
            if token is not None and still_valid:
                return token
            assert self._last_error is not None
            raise AuthError(str(self._last_error))
        try:
            return await self._refresh("initial" if token is None else "expiring")
        except AuthError:
            if token is not None and self._clock() < token.expires_at:
                return token
            raise

    async def _refresh(self, reason: str) -> _Token:
        if self._inflight is None:
            future = asyncio.ensure_future(self._fetch(reason))
            self._inflight = future
            future.add_done_callback(self._fetched)
        # Shielded: a poll cancelled while waiting must not cancel everyone's refresh.
        return await asyncio.shield(self._inflight)

    def _fetched(self, future: asyncio.Future[_Token]) -> None:
        self._inflight = None
        if not future.cancelled():
            future.exception()  # retrieved here, so an unawaited failure is not reported

    async def _fetch(self, reason: str) -> _Token:
        started = self._clock()
        sent_at = self._wall_clock()
        try:
            token = await self._request(started, sent_at)
        except AuthError as error:
            self._last_error = error
            self._retry_at = self._clock() + self._retry_delay
            log.warning(
                "iam.token_failed",
                account=self.account,
                reason=reason,
                error=str(error),
                retry_in=round(self._retry_delay, 3),
            )
            self._retry_delay = min(self._retry_delay * 2, _RETRY_MAX)
            raise
        self._token = token
        self._retry_at = 0.0
        self._retry_delay = _RETRY_MIN
        self._last_error = None
        self.refreshes += 1
        log.info(
            "iam.token_refreshed",
            account=self.account,
            reason=reason,
            expires_at=token.expires_at_text,
            lifetime=round(token.expires_at - token.obtained_at, 3),
            refresh_in=round(token.refresh_at - self._clock(), 3),
        )
        return token

    def _body(self) -> bytes:
        try:
            password = self._password()
        except ConfigError as error:
            raise AuthError(str(error)) from None
        return orjson.dumps(
            {
                "auth": {
                    "identity": {
                        "methods": ["password"],
                        "password": {
                            "user": {
                                "name": self._user,
                                "password": password,
                                "domain": {"name": self._domain},
                            }
                        },
                    },
                    "scope": {"project": {"id": self._project_id}},
                }
            }
        )

    async def _post(self, session: aiohttp.ClientSession) -> tuple[int, str | None, bytes]:
        async with session.post(
            self.token_url,
            data=self._body(),
            headers={
                "Content-Type": "application/json;charset=UTF-8",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
            proxy=self._proxy,
            timeout=self._timeout,
            # A redirect would re-POST the password (307) to wherever it points.
            allow_redirects=False,
        ) as response:
            status = response.status
            if 300 <= status < 400:
                origin = location_origin(response.headers.get("Location"))
                response.close()
                raise AuthError(
                    f"IAM answered HTTP {status} with a redirect to {origin}; not followed"
                )
            raw = await read_bounded(response, MAX_RESPONSE_SIZE)
            if raw is None:
                raise AuthError(
                    f"IAM answered HTTP {status} with a body over {MAX_RESPONSE_SIZE} bytes"
                )
            return status, response.headers.get("X-Subject-Token"), raw

    async def _request(self, started: float, sent_at: float) -> _Token:
        try:
            if self._session is not None:
                status, value, raw = await self._post(self._session)
            else:
                # Tokens are fetched rarely: a short-lived session needs no closing by anyone.
                ssl_context = ssl.create_default_context(
                    cafile=str(self._ca_file) if self._ca_file else None
                )
                connector = aiohttp.TCPConnector(ssl=ssl_context, limit=1)
                async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
                    status, value, raw = await self._post(session)
        except AuthError:
            raise
        except (TimeoutError, aiohttp.ClientError) as error:
            detail = str(error) or type(error).__name__
            raise AuthError(f"IAM token request failed: {type(error).__name__}: {detail}") from None
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        if status not in (200, 201):
            code, message = vendor_error(body)
            text = f"IAM refused the token request: HTTP {status}"
            if code:
                text += f" {code}"
            if message:
                text += f": {message[:_MAX_MESSAGE]}"
            raise AuthError(text)
        if not value:
            raise AuthError("IAM answered without X-Subject-Token")
        token_info = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token_info, dict):
            raise AuthError("IAM answered without a token object")
        expires = _parse_iam_time(token_info.get("expires_at"))
        if expires is None:
            raise AuthError("IAM answered without a valid token.expires_at")
        issued = _parse_iam_time(token_info.get("issued_at"))
        # Lifetime by IAM's own clock when it says when it issued the token, so
        # a skewed local clock does not matter; counted from before the request.
        lifetime = expires - (issued if issued is not None else sent_at)
        if lifetime <= 0:
            raise AuthError("IAM issued a token that has already expired")
        margin = min(lifetime * REFRESH_FRACTION, MAX_REFRESH_MARGIN)
        return _Token(
            value=value,
            generation=next(_generations),
            obtained_at=started,
            refresh_at=started + lifetime - margin,
            expires_at=started + lifetime,
            expires_at_text=str(token_info["expires_at"]),
        )


def authenticator_for(account: AccountConfig, index: int) -> Authenticator:
    """The credential provider for ``account`` (the ``index``-th in the config)."""
    if account.auth == "none":
        return NoAuth()
    if account.auth == "token":
        assert account.token_file is not None, "config validation requires token_file"
        return TokenAuth(account.token_file)
    if account.auth == "aksk":
        return AkSkAuth.for_account(account, f"accounts[{index}]", os.environ)
    if account.auth == "iam-password":
        return IamPasswordAuth.for_account(account, f"accounts[{index}]")
    raise ConfigError(f"accounts[{index}].auth", f"unknown auth mode {account.auth!r}")
