"""Configuration: read the TOML file, validate it, render the effective config.

Everything here is pure apart from reading the config file and the secret files
it names. A bad value raises :class:`ConfigError` naming the offending key as a
dotted path with list indices (``accounts[1].rate_limit``, ``sinks[0].path``);
the message never contains a secret.

Path rules: relative paths are relative to the config file's directory, except
``daemon.state_dir`` (relative to the working directory; ``$STATE_DIRECTORY``
wins when set) and file-sink ``path`` (relative to the state directory). All
paths in a :class:`Config` are absolute.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal, cast, get_args
from urllib.parse import urlsplit

import tomli_w

from jobwatchd.logs import get_logger
from jobwatchd.models import DEFAULT_SERVICE, EVENT_TYPES
from jobwatchd.options import (
    MAX_DURATION,
    ConfigError,
    CredentialSources,
    ParseContext,
    Secret,
    check_keys,
    expect_bool,
    expect_choice,
    expect_int,
    expect_number,
    expect_str,
    expect_str_list,
    expect_table,
    expect_url,
    field_defaults,
    parse_duration,
    parse_size,
    read_secret,
    redact_dsn,
    redact_url,
    required,
    toml_duration,
    toml_number,
    toml_size,
    type_error,
)
from jobwatchd.services import (
    SERVICES,
    ServiceError,
    endpoint_for,
    validate_region,
    validate_suffix,
)
from jobwatchd.sinks import (
    OptionScope,
    SinkConfig,
    SinkFilter,
    SinkRegistry,
    render_sink_options,
)
from jobwatchd.sinks.deadletters import valid_sink_name
from jobwatchd.sinks.log import LogOptions
from jobwatchd.validation import ValidationError, is_valid_id, validate_labels

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ENV_AK",
    "ENV_SK",
    "MAX_DURATION",
    "AccountConfig",
    "ApiConfig",
    "AuthMode",
    "Config",
    "ConfigError",
    "CredentialSources",
    "DaemonConfig",
    "PollingConfig",
    "Secret",
    "SinkConfig",
    "SinkFilter",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_size",
    "read_secret",
    "redact_url",
    "render_effective",
    "resolve_config_path",
]

DEFAULT_CONFIG_PATH: Final = Path("/etc/jobwatchd/jobwatchd.toml")
DEFAULT_STATE_DIR: Final = Path("/var/lib/jobwatchd")
DEFAULT_LISTEN: Final = "127.0.0.1:8787"
DEFAULT_ENDPOINT: Final = "https://ecs.ap-southeast-1.myhuaweicloud.com"
DEFAULT_PROJECT_ID: Final = "0123456789abcdef0123456789abcdef"
ENV_AK: Final = "HUAWEICLOUD_SDK_AK"
ENV_SK: Final = "HUAWEICLOUD_SDK_SK"

AuthMode = Literal["none", "aksk", "token", "iam-password"]
LogLevel = Literal["debug", "info", "warning", "error"]

_STORE_SCHEMES: Final = ("postgresql", "postgres")
_UNIX_PREFIX: Final = "unix:"
_MAX_UNIX_PATH: Final = 107  # sun_path is 108 bytes including the terminating NUL

_SINK_TYPE = re.compile(r"[a-z0-9_.-]{1,64}")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?")
_PORT = re.compile(r"[0-9]{1,5}")


class _StoreUrl(str):
    """A PostgreSQL URL whose ``repr`` masks any password in it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(redact_dsn(self))


# ---------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonConfig:
    """``[daemon]``: where state lives and how much is logged.

    ``store`` is ``"sqlite"`` (a file in ``state_dir``) or a ``postgresql://``
    URL of a database that several instances share; ``store_password_file``
    holds its password (else libpq's ``PGPASSWORD``/``PGPASSFILE`` apply).
    ``lease`` is how long a fleet instance holds its jobs and sinks between
    renewals: a dead instance's work waits that long for a new holder.
    """

    state_dir: Path = DEFAULT_STATE_DIR
    log_level: LogLevel = "info"
    store: str = "sqlite"
    store_password_file: Path | None = None
    lease: float = 15.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiConfig:
    """``[api]``: the local HTTP API."""

    listen: str = DEFAULT_LISTEN
    token_file: Path | None = None
    max_batch: int = 1000
    max_body: int = 1024**2
    max_connections: int = 1024
    """Open API connections at most; more are closed at once (the unit's LimitNOFILE
    is sized for this)."""
    header_timeout: float = 10.0
    """Seconds a connection may take to send a request's headers (from its start or
    the previous response): idle and slow-header connections are closed after it."""
    body_timeout: float = 30.0
    """Seconds a request may take to send its body."""
    allowed_hosts: tuple[str, ...] = ()
    """Host names besides the loopback names and the listen address that requests may
    name in ``Host``/``Origin`` (a reverse proxy's name, an alias)."""

    @property
    def unix_path(self) -> Path | None:
        """The socket path when ``listen`` is ``unix:/path``, else None."""
        target = _parse_listen(self.listen, "api.listen")
        return target if isinstance(target, Path) else None

    @property
    def host(self) -> str | None:
        """The TCP host (IPv6 without brackets), or None for a Unix socket."""
        target = _parse_listen(self.listen, "api.listen")
        return None if isinstance(target, Path) else target[0]

    @property
    def port(self) -> int | None:
        """The TCP port, or None for a Unix socket."""
        target = _parse_listen(self.listen, "api.listen")
        return None if isinstance(target, Path) else target[1]


_NO_ENDPOINTS: Mapping[str, str] = MappingProxyType({})
_NO_RATE_LIMITS: Mapping[str, float] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountConfig:
    """One ``[[accounts]]`` entry: where its services are, a project and how to authenticate.

    Only paths to credentials are kept here, never their contents. With
    ``auth = "aksk"`` a missing ``ak_file``/``sk_file`` means "read
    ``$HUAWEICLOUD_SDK_AK``/``$HUAWEICLOUD_SDK_SK``".

    A service's endpoint is ``endpoints[service]``, else ``endpoint`` for ECS,
    else the host derived from ``region`` (and ``domain_suffix``); see
    :meth:`endpoint_of`. ``rate_limit`` applies to each service on its own
    (the vendor throttles per API), ``rate_limits`` overrides it per service.
    """

    name: str
    endpoint: str | None = None
    project_id: str
    auth: AuthMode = "aksk"
    rate_limit: float = 20.0
    region: str | None = None
    domain_suffix: str | None = None
    endpoints: Mapping[str, str] = field(default_factory=lambda: _NO_ENDPOINTS, hash=False)
    rate_limits: Mapping[str, float] = field(default_factory=lambda: _NO_RATE_LIMITS, hash=False)
    request_timeout: float = 10.0
    token_file: Path | None = None
    ak_file: Path | None = None
    sk_file: Path | None = None
    security_token_file: Path | None = None
    iam_endpoint: str | None = None
    domain: str | None = None
    user: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    max_response_size: int = 1024**2
    """Bytes of an upstream answer's body (after decompression) read at most."""
    max_sub_jobs: int = 5000
    """Sub-jobs in one job document accepted at most."""

    def endpoint_of(self, service: str) -> str | None:
        """The base URL of ``service``'s job API for this account; None when the
        account has none (no override, and no region offering it)."""
        override = self.endpoints.get(service)
        if override is not None:
            return override
        if service == DEFAULT_SERVICE and self.endpoint is not None:
            return self.endpoint
        if self.region is None or service not in SERVICES:
            return None
        try:
            return str(endpoint_for(service, self.region, domain_suffix=self.domain_suffix))
        except ServiceError:  # not offered in this region (Open Telekom Cloud)
            return None

    @property
    def services(self) -> tuple[str, ...]:
        """The services this account can poll, in the catalogue's order."""
        return tuple(self.service_endpoints)

    def rate_limit_of(self, service: str) -> float:
        """Polls per second allowed to ``service``'s API for this account."""
        return self.rate_limits.get(service, self.rate_limit)

    def rate_limits_by_service(self, share: int = 1) -> dict[str, float]:
        """Every service's rate limit, divided by ``share`` (a fleet's live instances)."""
        return {name: self.rate_limit_of(name) / share for name in SERVICES}

    @property
    def service_endpoints(self) -> dict[str, str]:
        """The base URL of each service this account can poll."""
        found = {name: self.endpoint_of(name) for name in SERVICES}
        return {name: url for name, url in found.items() if url is not None}


@dataclass(frozen=True, slots=True, kw_only=True)
class PollingConfig:
    """``[polling]``: poller pool, backoff and the jobwatchd-side deadlines (seconds)."""

    concurrency: int = 64
    initial_delay: float = 1.0
    min_interval: float = 2.0
    max_interval: float = 60.0
    multiplier: float = 1.6
    jitter: float = 0.2
    timeout: float = 24 * 3600.0
    not_found_grace: float = 120.0
    retention: float = 7 * 86400.0
    adaptive: bool = True
    target_lag: float = 8.0


def _default_sinks() -> tuple[SinkConfig, ...]:
    return (SinkConfig(type="log", name="log", options=LogOptions()),)


def _default_accounts() -> tuple[AccountConfig, ...]:
    return (
        AccountConfig(name="default", endpoint=DEFAULT_ENDPOINT, project_id=DEFAULT_PROJECT_ID),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole, validated configuration. ``source`` is not part of equality."""

    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    accounts: tuple[AccountConfig, ...] = field(default_factory=_default_accounts)
    polling: PollingConfig = field(default_factory=PollingConfig)
    sinks: tuple[SinkConfig, ...] = field(default_factory=_default_sinks)
    source: Path | None = field(default=None, compare=False)
    unchecked_secrets: tuple[str, ...] = field(default=(), compare=False)

    def account(self, name: str) -> AccountConfig | None:
        """The account called ``name``, or None."""
        return next((account for account in self.accounts if account.name == name), None)

    @property
    def default_account(self) -> AccountConfig:
        """The first account: used when a registration names none."""
        return self.accounts[0]


# ---------------------------------------------------------------------------
# Scalars


def _identifier(value: object, key: str) -> str:
    """A name or project id: ``[A-Za-z0-9_-]{1,64}`` (it ends up in URLs and metrics)."""
    text = expect_str(value, key)
    if not is_valid_id(text):
        raise ConfigError(
            key, f"must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-', not {text!r}"
        )
    return text


def _store_url(value: object, key: str) -> str:
    """``"sqlite"``, or a ``postgresql://`` / ``postgres://`` URL (never quoted
    in messages: it may hold a password)."""
    text = expect_str(value, key)
    if text == "sqlite":
        return text
    if any(char.isspace() or ord(char) < 32 for char in text):
        raise ConfigError(key, "must not contain whitespace or control characters")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - validates the port
    except ValueError:  # its message may quote part of a mistyped password
        raise ConfigError(
            key, "invalid URL (a bad port, or an unescaped '/', '@' or ':' in the password?)"
        ) from None
    if parts.scheme not in _STORE_SCHEMES:
        raise ConfigError(key, 'must be "sqlite" or a postgresql:// URL')
    if redact_dsn(text) != text:
        get_logger("jobwatchd.config").warning(
            "store_password_inline",
            key=key,
            hint="put it in daemon.store_password_file or PGPASSWORD/PGPASSFILE instead",
        )
    return _StoreUrl(text)


def _parse_listen(value: str, key: str) -> tuple[str, int] | Path:
    """``host:port``, ``[ipv6]:port`` or ``unix:/abs/path``."""
    if value.startswith(_UNIX_PREFIX):
        path = value[len(_UNIX_PREFIX) :]
        if not path.startswith("/"):
            raise ConfigError(key, "a Unix socket path must be absolute (unix:/path)")
        if "\0" in path or len(os.fsencode(path)) > _MAX_UNIX_PATH:
            raise ConfigError(key, f"a Unix socket path must be at most {_MAX_UNIX_PATH} bytes")
        return Path(path)
    host, _, port = value.rpartition(":")
    form = f'must be "host:port", "[ipv6]:port" or "unix:/path", not {value!r}'
    if not host:
        raise ConfigError(key, form)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(key, f"{host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ConfigError(key, "an IPv6 address must be in brackets, e.g. [::1]:8787")
    elif not _HOSTNAME.fullmatch(host):
        raise ConfigError(key, form)
    if not _PORT.fullmatch(port) or int(port) > 65535:
        raise ConfigError(key, f"the port must be 0-65535, not {port!r}")
    return host, int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------
# Files


def _check_readable(path: Path, key: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise ConfigError(key, f"cannot read {path}: {error.strerror or error}") from None


# ---------------------------------------------------------------------------
# Sections


def _section(data: Mapping[str, object], name: str, allowed: Sequence[str]) -> Mapping[str, object]:
    table = expect_table(data.get(name, {}), name)
    check_keys(table, name, allowed)
    return table


def _array_of_tables(value: object, key: str) -> list[Mapping[str, object]]:
    if not isinstance(value, list | tuple):
        raise type_error(key, f"an array of tables ([[{key}]])", value)
    return [expect_table(item, f"{key}[{index}]") for index, item in enumerate(value)]


def _parse_daemon(data: Mapping[str, object], ctx: ParseContext) -> DaemonConfig:
    table = _section(
        data, "daemon", ("state_dir", "log_level", "store", "store_password_file", "lease")
    )
    state_dir = DEFAULT_STATE_DIR
    if "state_dir" in table:
        state_dir = ctx.path(table["state_dir"], "daemon.state_dir", Path.cwd())
    from_systemd = ctx.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if from_systemd:
        state_dir = Path(os.path.abspath(from_systemd))
    defaults = field_defaults(DaemonConfig)
    log_level = expect_choice(
        table.get("log_level", defaults["log_level"]), "daemon.log_level", get_args(LogLevel)
    )
    store = _store_url(table.get("store", defaults["store"]), "daemon.store")
    password_file = None
    if "store_password_file" in table:
        if store == "sqlite":
            raise ConfigError("daemon.store_password_file", "only used with a postgresql:// store")
        password_file = ctx.secret_file(table["store_password_file"], "daemon.store_password_file")
    lease = parse_duration(table.get("lease", defaults["lease"]), "daemon.lease")
    if lease < 1:
        raise ConfigError("daemon.lease", "must be at least 1s")
    return DaemonConfig(
        state_dir=state_dir,
        log_level=log_level,
        store=store,
        store_password_file=password_file,
        lease=lease,
    )


def _parse_api(data: Mapping[str, object], ctx: ParseContext) -> ApiConfig:
    table = _section(
        data,
        "api",
        (
            "listen",
            "token_file",
            "max_batch",
            "max_body",
            "max_connections",
            "header_timeout",
            "body_timeout",
            "allowed_hosts",
        ),
    )
    defaults = field_defaults(ApiConfig)
    listen = expect_str(table.get("listen", defaults["listen"]), "api.listen")
    target = _parse_listen(listen, "api.listen")
    token_file = None
    if "token_file" in table:
        token_file = ctx.secret_file(table["token_file"], "api.token_file")
    if token_file is None and not isinstance(target, Path) and not _is_loopback(target[0]):
        raise ConfigError(
            "api.token_file",
            f"required when api.listen ({listen!r}) is not a loopback address or a Unix socket",
        )
    max_batch = expect_int(
        table.get("max_batch", defaults["max_batch"]), "api.max_batch", 1, 100_000
    )
    max_body = parse_size(table.get("max_body", defaults["max_body"]), "api.max_body")
    if max_body < 1:
        raise ConfigError("api.max_body", "must be at least 1B")
    max_connections = expect_int(
        table.get("max_connections", defaults["max_connections"]),
        "api.max_connections",
        8,
        1_000_000,
    )
    timeouts = {}
    for name in ("header_timeout", "body_timeout"):
        seconds = parse_duration(table.get(name, defaults[name]), f"api.{name}")
        if not 0 < seconds <= 3600:
            raise ConfigError(f"api.{name}", "must be greater than 0 and at most 1h")
        timeouts[name] = seconds
    return ApiConfig(
        listen=listen,
        token_file=token_file,
        max_batch=max_batch,
        max_body=max_body,
        max_connections=max_connections,
        allowed_hosts=_parse_allowed_hosts(table.get("allowed_hosts", [])),
        **timeouts,
    )


_HOST_NAME = re.compile(
    r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)


def _parse_allowed_hosts(value: object) -> tuple[str, ...]:
    """``api.allowed_hosts``: DNS names or IP addresses, without scheme or port."""
    if not isinstance(value, list) or len(value) > 64:
        raise ConfigError("api.allowed_hosts", "must be a list of at most 64 host names")
    hosts = []
    for index, item in enumerate(value):
        key = f"api.allowed_hosts[{index}]"
        if not isinstance(item, str):
            raise ConfigError(key, "must be a string")
        host = item.strip().lower().removeprefix("[").removesuffix("]")
        with contextlib.suppress(ValueError):
            hosts.append(str(ipaddress.ip_address(host)))
            continue
        if not _HOST_NAME.fullmatch(host):
            raise ConfigError(key, "must be a host name or IP address, without scheme or port")
        hosts.append(host)
    return tuple(hosts)


_ACCOUNT_KEYS: Final = (
    "name",
    "endpoint",
    "region",
    "domain_suffix",
    "endpoints",
    "project_id",
    "auth",
    "rate_limit",
    "rate_limits",
    "request_timeout",
    "token_file",
    "ak_file",
    "sk_file",
    "security_token_file",
    "iam_endpoint",
    "domain",
    "user",
    "password_file",
    "ca_file",
    "max_response_size",
    "max_sub_jobs",
)
_AUTH_ONLY_KEYS: Final[Mapping[str, AuthMode]] = {
    "token_file": "token",
    "ak_file": "aksk",
    "sk_file": "aksk",
    "security_token_file": "aksk",
    "iam_endpoint": "iam-password",
    "domain": "iam-password",
    "user": "iam-password",
    "password_file": "iam-password",
}


def _parse_account(table: Mapping[str, object], prefix: str, ctx: ParseContext) -> AccountConfig:
    check_keys(table, prefix, _ACCOUNT_KEYS)
    name = _identifier(required(table, "name", prefix), f"{prefix}.name")
    endpoint, region, domain_suffix, endpoints = _parse_endpoints(table, prefix)
    project_id = _identifier(required(table, "project_id", prefix), f"{prefix}.project_id")
    defaults = field_defaults(AccountConfig)
    auth = expect_choice(table.get("auth", defaults["auth"]), f"{prefix}.auth", get_args(AuthMode))
    for key, mode in _AUTH_ONLY_KEYS.items():
        if key in table and mode != auth:
            raise ConfigError(
                f"{prefix}.{key}", f'only used with auth = "{mode}" (this account has "{auth}")'
            )
    rate_limit = expect_number(
        table.get("rate_limit", defaults["rate_limit"]), f"{prefix}.rate_limit"
    )
    if rate_limit <= 0:
        raise ConfigError(f"{prefix}.rate_limit", "must be greater than 0")
    rate_limits = _parse_rate_limits(table.get("rate_limits", {}), f"{prefix}.rate_limits")
    request_timeout = parse_duration(
        table.get("request_timeout", defaults["request_timeout"]), f"{prefix}.request_timeout"
    )
    if request_timeout <= 0:
        raise ConfigError(f"{prefix}.request_timeout", "must be greater than 0")

    def secret(key: str, *, needed: bool = False) -> Path | None:
        if key not in table and not needed:
            return None
        return ctx.secret_file(required(table, key, prefix), f"{prefix}.{key}")

    def aksk_available() -> None:
        for key, variable in (("ak_file", ENV_AK), ("sk_file", ENV_SK)):
            if key not in table and not ctx.environ.get(variable):
                raise ConfigError(
                    f"{prefix}.{key}", f'required with auth = "aksk" unless ${variable} is set'
                )

    if auth == "aksk":
        ctx.check(aksk_available)
    iam = auth == "iam-password"
    ca_file = None
    if "ca_file" in table:
        ca_file = ctx.path(table["ca_file"], f"{prefix}.ca_file")
        ctx.check(partial(_check_readable, ca_file, f"{prefix}.ca_file"))
    max_response_size = parse_size(
        table.get("max_response_size", defaults["max_response_size"]), f"{prefix}.max_response_size"
    )
    if not 1024 <= max_response_size <= 256 * 1024**2:
        raise ConfigError(f"{prefix}.max_response_size", "must be between 1KiB and 256MiB")
    max_sub_jobs = expect_int(
        table.get("max_sub_jobs", defaults["max_sub_jobs"]), f"{prefix}.max_sub_jobs", 1, 1_000_000
    )
    return AccountConfig(
        name=name,
        max_response_size=max_response_size,
        max_sub_jobs=max_sub_jobs,
        endpoint=endpoint,
        region=region,
        domain_suffix=domain_suffix,
        endpoints=endpoints,
        project_id=project_id,
        auth=auth,
        rate_limit=rate_limit,
        rate_limits=rate_limits,
        request_timeout=request_timeout,
        token_file=secret("token_file", needed=auth == "token"),
        ak_file=secret("ak_file"),
        sk_file=secret("sk_file"),
        security_token_file=secret("security_token_file"),
        iam_endpoint=(
            expect_url(
                required(table, "iam_endpoint", prefix), f"{prefix}.iam_endpoint", endpoint=True
            )
            if iam
            else None
        ),
        domain=expect_str(required(table, "domain", prefix), f"{prefix}.domain") if iam else None,
        user=expect_str(required(table, "user", prefix), f"{prefix}.user") if iam else None,
        password_file=secret("password_file", needed=iam),
        ca_file=ca_file,
    )


def _service_key(service: object, key: str) -> str:
    if not isinstance(service, str) or service not in SERVICES:
        shown = repr(service)[:80]
        raise ConfigError(key, f"unknown service {shown}: known are {', '.join(SERVICES)}")
    return service


def _parse_endpoints(
    table: Mapping[str, object], prefix: str
) -> tuple[str | None, str | None, str | None, Mapping[str, str]]:
    """``endpoint``, ``region``, ``domain_suffix`` and ``endpoints`` of an account:
    at least one of ``endpoint``, ``region`` or ``endpoints`` must place a service."""
    endpoint = None
    if "endpoint" in table:
        endpoint = expect_url(table["endpoint"], f"{prefix}.endpoint", endpoint=True)
    region = None
    if "region" in table:
        try:
            region = validate_region(expect_str(table["region"], f"{prefix}.region"))
        except ServiceError as exc:
            raise ConfigError(f"{prefix}.region", str(exc)) from None
    domain_suffix = None
    if "domain_suffix" in table:
        if region is None:
            raise ConfigError(f"{prefix}.domain_suffix", "only used with a region")
        try:
            domain_suffix = validate_suffix(
                expect_str(table["domain_suffix"], f"{prefix}.domain_suffix")
            )
        except ServiceError as exc:
            raise ConfigError(f"{prefix}.domain_suffix", str(exc)) from None
    raw = expect_table(table.get("endpoints", {}), f"{prefix}.endpoints")
    endpoints = {
        _service_key(service, f"{prefix}.endpoints"): expect_url(
            url, f"{prefix}.endpoints.{service}", endpoint=True
        )
        for service, url in raw.items()
    }
    if endpoint is None and region is None and not endpoints:
        raise ConfigError(
            f"{prefix}.endpoint", "required unless the account has a region or endpoints"
        )
    return endpoint, region, domain_suffix, MappingProxyType(endpoints)


def _parse_rate_limits(value: object, key: str) -> Mapping[str, float]:
    limits: dict[str, float] = {}
    for service, limit in expect_table(value, key).items():
        name = _service_key(service, key)
        number = expect_number(limit, f"{key}.{name}")
        if number <= 0:
            raise ConfigError(f"{key}.{name}", "must be greater than 0")
        limits[name] = number
    return MappingProxyType(limits)


def _parse_accounts(data: Mapping[str, object], ctx: ParseContext) -> tuple[AccountConfig, ...]:
    if "accounts" not in data:
        tables: list[Mapping[str, object]] = [
            {"name": "default", "endpoint": DEFAULT_ENDPOINT, "project_id": DEFAULT_PROJECT_ID}
        ]
    else:
        tables = _array_of_tables(data["accounts"], "accounts")
        if not tables:
            raise ConfigError("accounts", "at least one account is required")
    accounts: list[AccountConfig] = []
    for index, table in enumerate(tables):
        account = _parse_account(table, f"accounts[{index}]", ctx)
        if any(other.name == account.name for other in accounts):
            raise ConfigError(f"accounts[{index}].name", f"duplicate account name {account.name!r}")
        accounts.append(account)
    return tuple(accounts)


def _parse_polling(data: Mapping[str, object]) -> PollingConfig:
    defaults = PollingConfig()
    table = _section(data, "polling", [item.name for item in fields(PollingConfig)])

    def duration(name: str, *, positive: bool = False) -> float:
        seconds = parse_duration(table.get(name, getattr(defaults, name)), f"polling.{name}")
        if positive and seconds <= 0:
            raise ConfigError(f"polling.{name}", "must be greater than 0")
        return seconds

    concurrency = expect_int(
        table.get("concurrency", defaults.concurrency), "polling.concurrency", 1, 10_000
    )
    min_interval = duration("min_interval", positive=True)
    max_interval = duration("max_interval", positive=True)
    if max_interval < min_interval:
        raise ConfigError("polling.max_interval", "must not be less than polling.min_interval")
    multiplier = expect_number(table.get("multiplier", defaults.multiplier), "polling.multiplier")
    if multiplier < 1:
        raise ConfigError("polling.multiplier", "must be at least 1")
    jitter = expect_number(table.get("jitter", defaults.jitter), "polling.jitter")
    if not 0 <= jitter <= 1:
        raise ConfigError("polling.jitter", "must be between 0 and 1")
    return PollingConfig(
        concurrency=concurrency,
        initial_delay=duration("initial_delay"),
        min_interval=min_interval,
        max_interval=max_interval,
        multiplier=multiplier,
        jitter=jitter,
        timeout=duration("timeout", positive=True),
        not_found_grace=duration("not_found_grace"),
        retention=duration("retention"),
        adaptive=expect_bool(table.get("adaptive", defaults.adaptive), "polling.adaptive"),
        target_lag=duration("target_lag", positive=True),
    )


def _parse_filter(table: Mapping[str, object], prefix: str) -> SinkFilter:
    types = None
    if "types" in table:
        names = expect_str_list(table["types"], f"{prefix}.types")
        for index, name in enumerate(names):
            if name not in EVENT_TYPES:
                expected = ", ".join(f'"{known}"' for known in sorted(EVENT_TYPES))
                raise ConfigError(
                    f"{prefix}.types[{index}]", f"must be one of {expected}, not {name!r}"
                )
        types = frozenset(names)
    statuses = None
    if "statuses" in table:
        statuses = frozenset(expect_str_list(table["statuses"], f"{prefix}.statuses"))
    terminal_only = expect_bool(table.get("terminal_only", False), f"{prefix}.terminal_only")
    try:
        labels = validate_labels(table.get("labels", {}), f"{prefix}.labels")
    except ValidationError as error:
        raise ConfigError(error.field, error.message) from None
    return SinkFilter(
        types=types,
        statuses=statuses,
        terminal_only=terminal_only,
        labels=MappingProxyType(labels),
    )


def _parse_sink(
    table: Mapping[str, object],
    prefix: str,
    ordinal: int,
    state_dir: Path,
    ctx: ParseContext,
    registry: SinkRegistry,
) -> SinkConfig:
    sink_type = expect_str(required(table, "type", prefix), f"{prefix}.type")
    if not _SINK_TYPE.fullmatch(sink_type):
        raise ConfigError(
            f"{prefix}.type",
            f"must be 1-64 characters of a-z, 0-9, '_', '.' or '-', not {sink_type!r}",
        )
    scope = OptionScope(prefix=prefix, state_dir=state_dir, context=ctx)
    options = registry.parse_options(sink_type, table, scope)
    if "name" in table:
        name = expect_str(table["name"], f"{prefix}.name")
    else:
        name = sink_type if ordinal == 1 else f"{sink_type}-{ordinal}"
    if not valid_sink_name(name):
        raise ConfigError(
            f"{prefix}.name",
            f"must be 1-64 characters of A-Z, a-z, 0-9, '_', '.' or '-', not {name!r}",
        )
    return SinkConfig(
        type=sink_type, name=name, filter=_parse_filter(table, prefix), options=options
    )


def _parse_sinks(
    data: Mapping[str, object], state_dir: Path, ctx: ParseContext
) -> tuple[SinkConfig, ...]:
    if "sinks" not in data:
        return _default_sinks()
    tables = _array_of_tables(data["sinks"], "sinks")
    registry = SinkRegistry.installed() if tables else SinkRegistry({})
    sinks: list[SinkConfig] = []
    for index, table in enumerate(tables):
        prefix = f"sinks[{index}]"
        ordinal = 1 + sum(1 for other in sinks if other.type == table.get("type"))
        sink = _parse_sink(table, prefix, ordinal, state_dir, ctx, registry)
        if any(other.name == sink.name for other in sinks):
            hint = "" if "name" in table else " (set `name` to tell the sinks apart)"
            raise ConfigError(f"{prefix}.name", f"duplicate sink name {sink.name!r}{hint}")
        sinks.append(sink)
    return tuple(sinks)


def _build(
    data: Mapping[str, object],
    source: Path | None,
    environ: Mapping[str, str],
    verify: bool,
    credentials: CredentialSources | None = None,
) -> Config:
    source = Path(os.path.abspath(source)) if source is not None else None
    ctx = ParseContext(
        base_dir=source.parent if source is not None else Path.cwd(),
        environ=environ,
        verify=verify,
        credentials=credentials,
    )
    check_keys(data, "", ("daemon", "api", "accounts", "polling", "sinks"))
    daemon = _parse_daemon(data, ctx)
    config = Config(
        daemon=daemon,
        api=_parse_api(data, ctx),
        accounts=_parse_accounts(data, ctx),
        polling=_parse_polling(data),
        sinks=_parse_sinks(data, daemon.state_dir, ctx),
        source=source,
    )
    for check in ctx.checks:
        check()
    if ctx.unchecked:
        config = dataclasses.replace(config, unchecked_secrets=tuple(ctx.unchecked))
    return config


# ---------------------------------------------------------------------------
# Entry points


def parse_config(
    data: Mapping[str, object],
    *,
    source: Path | None = None,
    environ: Mapping[str, str] | None = None,
    verify_secrets: bool = True,
) -> Config:
    """Validate already-decoded TOML ``data``.

    ``source`` is the file it came from (relative paths start at its directory;
    without it, at the working directory). ``environ`` defaults to
    :data:`os.environ`. With ``verify_secrets`` (the default) every secret file
    named must be readable and AK/SK must be available for ``aksk`` accounts.
    """
    return _build(data, source, os.environ if environ is None else environ, verify_secrets)


def load_config(
    path: Path | None,
    *,
    environ: Mapping[str, str] | None = None,
    credentials: CredentialSources | None = None,
) -> Config:
    """Read and validate the config file at ``path``; ``None`` gives the built-in defaults.

    The built-in defaults are one ``aksk`` account "default" and one ``log``
    sink; their credentials are not checked at load time. ``credentials``
    (for ``check-config``) says where secrets under ``/run/credentials/`` are
    read from outside the service.
    """
    env = os.environ if environ is None else environ
    if path is None:
        return _build({}, None, env, verify=False)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise ConfigError("config", f"{path}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ConfigError("config", f"{path}: cannot read: not valid UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError("config", f"{path}: invalid TOML: {error}") from None
    return _build(data, path, env, verify=True, credentials=credentials)


def resolve_config_path(
    explicit: Path | None, *, environ: Mapping[str, str] | None = None
) -> Path | None:
    """The config file to use: ``explicit``, else ``$JOBWATCHD_CONFIG``, else
    :data:`DEFAULT_CONFIG_PATH` if it exists, else None (built-in defaults)."""
    if explicit is not None:
        return explicit
    from_env = (os.environ if environ is None else environ).get("JOBWATCHD_CONFIG")
    if from_env:
        return Path(from_env)
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


# ---------------------------------------------------------------------------
# Rendering


def _drop_none(table: Mapping[str, object]) -> dict[str, object]:
    return {key: value for key, value in table.items() if value is not None}


def _render_account(account: AccountConfig) -> dict[str, object]:
    def text(path: Path | None) -> str | None:
        return None if path is None else str(path)

    return _drop_none(
        {
            "name": account.name,
            "endpoint": account.endpoint,
            "region": account.region,
            "domain_suffix": account.domain_suffix,
            "endpoints": dict(account.endpoints) or None,
            "project_id": account.project_id,
            "auth": account.auth,
            "rate_limit": toml_number(account.rate_limit),
            "rate_limits": {
                service: toml_number(limit) for service, limit in account.rate_limits.items()
            }
            or None,
            "request_timeout": toml_duration(account.request_timeout),
            "token_file": text(account.token_file),
            "ak_file": text(account.ak_file),
            "sk_file": text(account.sk_file),
            "security_token_file": text(account.security_token_file),
            "iam_endpoint": account.iam_endpoint,
            "domain": account.domain,
            "user": account.user,
            "password_file": text(account.password_file),
            "ca_file": text(account.ca_file),
            "max_response_size": toml_size(account.max_response_size),
            "max_sub_jobs": account.max_sub_jobs,
        }
    )


def _render_sink(sink: SinkConfig) -> dict[str, object]:
    rendered: dict[str, object] = {"type": sink.type, "name": sink.name}
    rendered |= render_sink_options(sink.options)
    if sink.filter.types is not None:
        rendered["types"] = sorted(sink.filter.types)
    if sink.filter.statuses is not None:
        rendered["statuses"] = sorted(sink.filter.statuses)
    rendered["terminal_only"] = sink.filter.terminal_only
    if sink.filter.labels:
        rendered["labels"] = dict(sink.filter.labels)
    return rendered


def render_effective(config: Config) -> str:
    """The effective config as TOML: every key, paths absolute, secrets masked.

    Inline webhook secrets (and secret-looking third-party options) show as
    ``"***"``, and so does a password in ``daemon.store``; webhook URLs, and
    URLs in third-party options, show their userinfo and query values as
    ``***`` (:func:`redact_url`); secret files are shown by path, never by
    content. Without inline secrets or URL queries,
    ``parse_config(tomllib.loads(render_effective(c))) == c``.
    """
    password_file = config.daemon.store_password_file
    daemon = _drop_none(
        {
            "state_dir": str(config.daemon.state_dir),
            "log_level": config.daemon.log_level,
            "store": redact_dsn(config.daemon.store),
            "store_password_file": None if password_file is None else str(password_file),
            "lease": toml_duration(config.daemon.lease),
        }
    )
    api = _drop_none(
        {
            "listen": config.api.listen,
            "token_file": None if config.api.token_file is None else str(config.api.token_file),
            "max_batch": config.api.max_batch,
            "max_body": toml_size(config.api.max_body),
            "max_connections": config.api.max_connections,
            "header_timeout": toml_duration(config.api.header_timeout),
            "body_timeout": toml_duration(config.api.body_timeout),
            "allowed_hosts": list(config.api.allowed_hosts),
        }
    )
    polling = config.polling
    parts = [] if config.sinks else ["sinks = []\n"]
    parts += [_dump_table("daemon", daemon), _dump_table("api", api)]
    parts += [_dump_table("accounts", _render_account(a), array=True) for a in config.accounts]
    parts.append(
        _dump_table(
            "polling",
            {
                "concurrency": polling.concurrency,
                "initial_delay": toml_duration(polling.initial_delay),
                "min_interval": toml_duration(polling.min_interval),
                "max_interval": toml_duration(polling.max_interval),
                "multiplier": polling.multiplier,
                "jitter": polling.jitter,
                "timeout": toml_duration(polling.timeout),
                "not_found_grace": toml_duration(polling.not_found_grace),
                "retention": toml_duration(polling.retention),
                "adaptive": polling.adaptive,
                "target_lag": toml_duration(polling.target_lag),
            },
        )
    )
    parts += [_dump_table("sinks", _render_sink(sink), array=True) for sink in config.sinks]
    return "\n".join(parts)


def _toml_key(key: str) -> str:
    """``key`` as tomli_w writes it (bare, or quoted when it must be)."""
    return tomli_w.dumps({key: True}).removesuffix(" = true\n")


def _is_array_of_tables(value: object) -> bool:
    return (
        isinstance(value, list | tuple)
        and bool(value)
        and all(isinstance(item, Mapping) for item in value)
    )


def _dump_table(name: str, table: Mapping[str, object], *, array: bool = False) -> str:
    """``[name]`` (or ``[[name]]``) in block form, sub-tables under dotted headers.

    tomli_w alone would write short arrays of tables inline, which reads badly in
    ``check-config`` output.
    """
    flat = {
        key: value
        for key, value in table.items()
        if not isinstance(value, Mapping) and not _is_array_of_tables(value)
    }
    chunks = [f"[[{name}]]\n" if array else f"[{name}]\n", tomli_w.dumps(flat)]
    for key, value in table.items():
        child = f"{name}.{_toml_key(key)}"
        if isinstance(value, Mapping):
            chunks.append("\n" + _dump_table(child, value))
        elif _is_array_of_tables(value):
            items = cast(Sequence[Mapping[str, object]], value)
            chunks += ["\n" + _dump_table(child, item, array=True) for item in items]
    return "".join(chunks)
