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

import base64
import binascii
import contextlib
import dataclasses
import difflib
import ipaddress
import math
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from decimal import Decimal
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal, TypeVar, cast, get_args
from urllib.parse import urlsplit

import tomli_w

from jobwatchd.logs import get_logger
from jobwatchd.models import EVENT_TYPES
from jobwatchd.store import redact_dsn
from jobwatchd.validation import ValidationError, is_valid_id, validate_labels

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ENV_AK",
    "ENV_SK",
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
    "parse_webhook_secret",
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
MAX_DURATION: Final = 3650 * 86400.0
"""Ten years: longer durations are refused (event loops overflow on huge timeouts)."""

AuthMode = Literal["none", "aksk", "token", "iam-password"]
LogLevel = Literal["debug", "info", "warning", "error"]
FsyncPolicy = Literal["always", "batch", "never"]

_SECRET_MASK: Final = "***"
_STORE_SCHEMES: Final = ("postgresql", "postgres")
_WEBHOOK_SECRET_PREFIX: Final = "whsec_"
_UNIX_PREFIX: Final = "unix:"
_MAX_UNIX_PATH: Final = 107  # sun_path is 108 bytes including the terminating NUL

_SINK_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SINK_TYPE = re.compile(r"[a-z0-9_.-]{1,64}")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?")
_PORT = re.compile(r"[0-9]{1,5}")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)\s*")
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]+)")
_SECRET_OPTION = re.compile(r"secret|passw|token|api_?key|credential|private_?key", re.IGNORECASE)

_DURATION_UNITS: Final[Mapping[str, Decimal]] = {
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
    "d": Decimal(86400),
}
_SIZE_UNITS: Final[Mapping[str, int]] = {
    "B": 1,
    "kB": 1000,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}
_T = TypeVar("_T", bound=str)

_DURATION_HINT: Final = 'a duration such as "250ms", "2s", "5m", "24h", "7d" or a number of seconds'
_SIZE_HINT: Final = 'a size such as "1MiB", "512KiB", "10kB", "100B" or a number of bytes'


class ConfigError(Exception):
    """A config problem, naming the key (``str(e) == f"{key}: {message}"``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(key, message)
        self.key = key
        self.message = message

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class Secret(str):
    """An inline secret: a plain ``str`` whose ``repr`` does not reveal it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Secret({_SECRET_MASK!r})"


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


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountConfig:
    """One ``[[accounts]]`` entry: an endpoint, a project and how to authenticate.

    Only paths to credentials are kept here, never their contents. With
    ``auth = "aksk"`` a missing ``ak_file``/``sk_file`` means "read
    ``$HUAWEICLOUD_SDK_AK``/``$HUAWEICLOUD_SDK_SK``".
    """

    name: str
    endpoint: str
    project_id: str
    auth: AuthMode = "aksk"
    rate_limit: float = 20.0
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


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkFilter:
    """Which events a sink receives; ``None`` / empty means "no restriction".

    Applied by :func:`jobwatchd.sinks.matches`.
    """

    types: frozenset[str] | None = None
    statuses: frozenset[str] | None = None
    terminal_only: bool = False
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkConfig:
    """One ``[[sinks]]`` entry.

    ``name`` keys the sink's durable delivery position. ``options`` holds the
    type-specific keys, validated and normalised for the built-in types:

    - ``file``: ``path`` (absolute :class:`Path`), ``fsync`` (``"always"``,
      ``"batch"`` or ``"never"``);
    - ``webhook``: ``url``, ``secrets`` (tuple of inline :class:`Secret`, from
      ``secret`` then ``secrets``), ``secret_files`` (tuple of :class:`Path`, from
      ``secret_file`` then ``secret_files``), ``timeout`` and ``max_retry_age``
      (seconds), ``concurrency``, ``batch_max``;
    - third-party types: the remaining keys, unvalidated.
    """

    type: str
    name: str
    filter: SinkFilter = field(default_factory=SinkFilter)
    options: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}), hash=False)


def _default_sinks() -> tuple[SinkConfig, ...]:
    return (SinkConfig(type="log", name="log"),)


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


def _kind(value: object) -> str:
    """How a value is described in messages: its TOML type, never its content."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    return type(value).__name__


def _type_error(key: str, expected: str, value: object) -> ConfigError:
    return ConfigError(key, f"must be {expected}, not {_kind(value)}")


def parse_duration(value: object, key: str) -> float:
    """Seconds from ``"250ms"``, ``"2s"``, ``"5m"``, ``"24h"``, ``"7d"``, ``"1.5s"``,
    ``"1h30m"`` or a non-negative number of seconds; :class:`ConfigError` naming
    ``key`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _type_error(key, _DURATION_HINT, value)
    if isinstance(value, str):
        text = value.strip()
        total = Decimal(0)
        position = 0
        while position < len(text):
            match = _DURATION_PART.match(text, position)
            if match is None:
                break
            total += Decimal(match[1]) * _DURATION_UNITS[match[2]]
            position = match.end()
        if not text or position < len(text):
            raise ConfigError(key, f"invalid duration {value!r}: expected {_DURATION_HINT}")
        seconds = float(min(total, Decimal(MAX_DURATION + 1)))
    elif isinstance(value, int):
        seconds = float(min(value, int(MAX_DURATION) + 1))
    else:
        seconds = value
    if math.isnan(seconds):
        raise ConfigError(key, "must be a number of seconds, not NaN")
    if seconds < 0:
        raise ConfigError(key, "must not be negative")
    if seconds > MAX_DURATION:
        raise ConfigError(key, "must be at most 3650d")
    return seconds


def parse_size(value: object, key: str) -> int:
    """Bytes from ``"1MiB"``, ``"512KiB"``, ``"1GiB"``, ``"1MB"``, ``"10kB"``, ``"100B"``
    or a non-negative integer number of bytes; :class:`ConfigError` naming ``key``
    otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _type_error(key, _SIZE_HINT, value)
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.fullmatch(value.strip())
        if match is None or match[2] not in _SIZE_UNITS:
            raise ConfigError(key, f"invalid size {value!r}: expected {_SIZE_HINT}")
        exact = Decimal(match[1]) * _SIZE_UNITS[match[2]]
        if exact != exact.to_integral_value():
            raise ConfigError(key, f"invalid size {value!r}: not a whole number of bytes")
        size = int(exact)
    if size < 0:
        raise ConfigError(key, "must not be negative")
    return size


def _string(value: object, key: str) -> str:
    if not isinstance(value, str):
        raise _type_error(key, "a string", value)
    if not value.strip():
        raise ConfigError(key, "must not be empty")
    return value


def _boolean(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise _type_error(key, "true or false", value)
    return value


def _integer(value: object, key: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error(key, "an integer", value)
    if not low <= value <= high:
        raise ConfigError(key, f"must be between {low} and {high}, not {value}")
    return value


def _number(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_error(key, "a number", value)
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(key, "must be a finite number")
    return number


def _choice(value: object, key: str, choices: tuple[_T, ...]) -> _T:
    text = _string(value, key).lower()
    for choice in choices:
        if text == choice:
            return choice
    expected = ", ".join(f'"{choice}"' for choice in choices)
    raise ConfigError(key, f"must be one of {expected}, not {value!r}")


def _identifier(value: object, key: str) -> str:
    """A name or project id: ``[A-Za-z0-9_-]{1,64}`` (it ends up in URLs and metrics)."""
    text = _string(value, key)
    if not is_valid_id(text):
        raise ConfigError(
            key, f"must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-', not {text!r}"
        )
    return text


def _string_list(value: object, key: str) -> list[str]:
    if not isinstance(value, list | tuple):
        raise _type_error(key, "an array of strings", value)
    if not value:
        raise ConfigError(key, "must not be empty (leave the key out for no restriction)")
    return [_string(item, f"{key}[{index}]") for index, item in enumerate(value)]


def _url(value: object, key: str, *, endpoint: bool) -> str:
    """An absolute http(s) URL without credentials or fragment.

    Endpoints also refuse a query string and lose their trailing slash. The URL
    itself is never quoted in messages: a webhook URL may embed a token.
    """
    text = _string(value, key)
    if any(char.isspace() or ord(char) < 32 for char in text):
        raise ConfigError(key, "must not contain whitespace or control characters")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - validates the port
    except ValueError as error:
        raise ConfigError(key, f"invalid URL: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(key, "must be an absolute http:// or https:// URL")
    if not parts.hostname:
        raise ConfigError(key, "must name a host")
    if "@" in parts.netloc:
        raise ConfigError(key, "must not carry credentials (user:password@host)")
    if "#" in text:
        raise ConfigError(key, "must not have a fragment")
    if endpoint and "?" in text:
        raise ConfigError(key, "must not have a query string")
    return text.rstrip("/") if endpoint else text


def _store_url(value: object, key: str) -> str:
    """``"sqlite"``, or a ``postgresql://`` / ``postgres://`` URL (never quoted
    in messages: it may hold a password)."""
    text = _string(value, key)
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


def parse_webhook_secret(value: str, key: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (``whsec_`` + base64)."""
    if not value.startswith(_WEBHOOK_SECRET_PREFIX):
        raise ConfigError(key, 'must be "whsec_" followed by base64')
    try:
        raw = base64.b64decode(value[len(_WEBHOOK_SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(key, 'must be "whsec_" followed by valid base64') from None
    if not raw:
        raise ConfigError(key, 'must have key material after "whsec_"')
    return raw


# ---------------------------------------------------------------------------
# Files


def read_secret(path: Path, key: str) -> str:
    """The content of secret file ``path``, surrounding whitespace stripped.

    :class:`ConfigError` naming ``key`` when it cannot be read or is empty; a
    warning is logged when the file is readable by group or others.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the open
            raise ConfigError(key, f"cannot read {path}: not a regular file")
        with open(path, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            content = handle.read().decode("utf-8").strip()
    except OSError as error:
        raise ConfigError(key, f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ConfigError(key, f"cannot read {path}: not valid UTF-8") from None
    except ValueError as error:  # e.g. an embedded NUL byte in the path
        raise ConfigError(key, f"cannot read {path}: {error}") from None
    if mode & 0o077:
        get_logger("jobwatchd.config").warning(
            "secret_file_permissions",
            key=key,
            path=str(path),
            mode=f"{stat.S_IMODE(mode):04o}",
            hint="readable by group or others; chmod 600 it",
        )
    if not content:
        raise ConfigError(key, f"cannot read {path}: the file is empty")
    return content


def _check_readable(path: Path, key: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise ConfigError(key, f"cannot read {path}: {error.strerror or error}") from None


CREDENTIALS_ROOT = Path("/run/credentials")


@dataclass(frozen=True, slots=True)
class CredentialSources:
    """Where ``check-config`` finds secrets that systemd hands over with ``LoadCredential=``.

    A path under ``/run/credentials/UNIT/`` exists only inside the running
    service. Outside it, such a secret is read from ``directory`` under its
    credential name (the ``LoadCredential=NAME:PATH`` sources, e.g.
    ``/etc/jobwatchd``), or, without a directory, left unchecked and listed.
    """

    directory: Path | None = None

    def source(self, path: Path) -> Path | None:
        """The file to read for ``path``; None when it cannot be read from here."""
        if path.parent.parent != CREDENTIALS_ROOT or path.exists():
            return path
        if self.directory is None:
            return None
        return self.directory / path.name


@dataclass(frozen=True, slots=True)
class _Context:
    """What parsing needs beyond the data: where relative paths start, env, checks.

    Checks of secret files and credentials are deferred until the whole config
    has been validated, so a typo is reported before a missing secret.
    """

    base_dir: Path
    environ: Mapping[str, str]
    verify: bool
    credentials: CredentialSources | None = None
    checks: list[Callable[[], object]] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    def check(self, check: Callable[[], object]) -> None:
        """Run ``check`` after validation, when secrets are verified."""
        if self.verify:
            self.checks.append(check)

    def read_secret(self, path: Path, key: str) -> str | None:
        """The secret at ``path``, or None when only the running service can read it."""
        source = path if self.credentials is None else self.credentials.source(path)
        if source is None:
            self.unchecked.append(f"{key}: {path}")
            return None
        return read_secret(source, key)

    def path(self, value: object, key: str, base: Path | None = None) -> Path:
        text = _string(value, key)
        if "\0" in text:
            raise ConfigError(key, "must not contain NUL bytes")
        return Path(os.path.abspath((base or self.base_dir) / text))

    def secret_file(self, value: object, key: str) -> Path:
        path = self.path(value, key)
        self.check(lambda: self.read_secret(path, key))
        return path


# ---------------------------------------------------------------------------
# Sections


def _table(value: object, key: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise _type_error(key, "a table", value)
    return cast(Mapping[str, object], value)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _check_keys(table: Mapping[str, object], prefix: str, allowed: Sequence[str]) -> None:
    for name in table:
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(_join(prefix, name), f"unknown key{hint}")


def _section(data: Mapping[str, object], name: str, allowed: Sequence[str]) -> Mapping[str, object]:
    table = _table(data.get(name, {}), name)
    _check_keys(table, name, allowed)
    return table


def _array_of_tables(value: object, key: str) -> list[Mapping[str, object]]:
    if not isinstance(value, list | tuple):
        raise _type_error(key, f"an array of tables ([[{key}]])", value)
    return [_table(item, f"{key}[{index}]") for index, item in enumerate(value)]


def _required(table: Mapping[str, object], name: str, prefix: str) -> object:
    if name not in table:
        raise ConfigError(_join(prefix, name), "required")
    return table[name]


def _parse_daemon(data: Mapping[str, object], ctx: _Context) -> DaemonConfig:
    table = _section(
        data, "daemon", ("state_dir", "log_level", "store", "store_password_file", "lease")
    )
    state_dir = DEFAULT_STATE_DIR
    if "state_dir" in table:
        state_dir = ctx.path(table["state_dir"], "daemon.state_dir", Path.cwd())
    from_systemd = ctx.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if from_systemd:
        state_dir = Path(os.path.abspath(from_systemd))
    log_level = _choice(table.get("log_level", "info"), "daemon.log_level", get_args(LogLevel))
    store = _store_url(table.get("store", "sqlite"), "daemon.store")
    password_file = None
    if "store_password_file" in table:
        if store == "sqlite":
            raise ConfigError("daemon.store_password_file", "only used with a postgresql:// store")
        password_file = ctx.secret_file(table["store_password_file"], "daemon.store_password_file")
    lease = parse_duration(table.get("lease", DaemonConfig().lease), "daemon.lease")
    if lease < 1:
        raise ConfigError("daemon.lease", "must be at least 1s")
    return DaemonConfig(
        state_dir=state_dir,
        log_level=log_level,
        store=store,
        store_password_file=password_file,
        lease=lease,
    )


def _parse_api(data: Mapping[str, object], ctx: _Context) -> ApiConfig:
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
    listen = _string(table.get("listen", DEFAULT_LISTEN), "api.listen")
    target = _parse_listen(listen, "api.listen")
    token_file = None
    if "token_file" in table:
        token_file = ctx.secret_file(table["token_file"], "api.token_file")
    if token_file is None and not isinstance(target, Path) and not _is_loopback(target[0]):
        raise ConfigError(
            "api.token_file",
            f"required when api.listen ({listen!r}) is not a loopback address or a Unix socket",
        )
    max_batch = _integer(table.get("max_batch", 1000), "api.max_batch", 1, 100_000)
    max_body = parse_size(table.get("max_body", 1024**2), "api.max_body")
    if max_body < 1:
        raise ConfigError("api.max_body", "must be at least 1B")
    max_connections = _integer(
        table.get("max_connections", 1024), "api.max_connections", 8, 1_000_000
    )
    timeouts = {}
    for name, default in (("header_timeout", "10s"), ("body_timeout", "30s")):
        seconds = parse_duration(table.get(name, default), f"api.{name}")
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
    "project_id",
    "auth",
    "rate_limit",
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


def _parse_account(table: Mapping[str, object], prefix: str, ctx: _Context) -> AccountConfig:
    _check_keys(table, prefix, _ACCOUNT_KEYS)
    name = _identifier(_required(table, "name", prefix), f"{prefix}.name")
    endpoint = _url(_required(table, "endpoint", prefix), f"{prefix}.endpoint", endpoint=True)
    project_id = _identifier(_required(table, "project_id", prefix), f"{prefix}.project_id")
    auth = _choice(table.get("auth", "aksk"), f"{prefix}.auth", get_args(AuthMode))
    for key, mode in _AUTH_ONLY_KEYS.items():
        if key in table and mode != auth:
            raise ConfigError(
                f"{prefix}.{key}", f'only used with auth = "{mode}" (this account has "{auth}")'
            )
    rate_limit = _number(table.get("rate_limit", 20), f"{prefix}.rate_limit")
    if rate_limit <= 0:
        raise ConfigError(f"{prefix}.rate_limit", "must be greater than 0")
    request_timeout = parse_duration(table.get("request_timeout", 10), f"{prefix}.request_timeout")
    if request_timeout <= 0:
        raise ConfigError(f"{prefix}.request_timeout", "must be greater than 0")

    def secret(key: str, *, required: bool = False) -> Path | None:
        if key not in table and not required:
            return None
        return ctx.secret_file(_required(table, key, prefix), f"{prefix}.{key}")

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
        table.get("max_response_size", 1024**2), f"{prefix}.max_response_size"
    )
    if not 1024 <= max_response_size <= 256 * 1024**2:
        raise ConfigError(f"{prefix}.max_response_size", "must be between 1KiB and 256MiB")
    max_sub_jobs = _integer(table.get("max_sub_jobs", 5000), f"{prefix}.max_sub_jobs", 1, 1_000_000)
    return AccountConfig(
        name=name,
        max_response_size=max_response_size,
        max_sub_jobs=max_sub_jobs,
        endpoint=endpoint,
        project_id=project_id,
        auth=auth,
        rate_limit=rate_limit,
        request_timeout=request_timeout,
        token_file=secret("token_file", required=auth == "token"),
        ak_file=secret("ak_file"),
        sk_file=secret("sk_file"),
        security_token_file=secret("security_token_file"),
        iam_endpoint=(
            _url(_required(table, "iam_endpoint", prefix), f"{prefix}.iam_endpoint", endpoint=True)
            if iam
            else None
        ),
        domain=_string(_required(table, "domain", prefix), f"{prefix}.domain") if iam else None,
        user=_string(_required(table, "user", prefix), f"{prefix}.user") if iam else None,
        password_file=secret("password_file", required=iam),
        ca_file=ca_file,
    )


def _parse_accounts(data: Mapping[str, object], ctx: _Context) -> tuple[AccountConfig, ...]:
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

    concurrency = _integer(
        table.get("concurrency", defaults.concurrency), "polling.concurrency", 1, 10_000
    )
    min_interval = duration("min_interval", positive=True)
    max_interval = duration("max_interval", positive=True)
    if max_interval < min_interval:
        raise ConfigError("polling.max_interval", "must not be less than polling.min_interval")
    multiplier = _number(table.get("multiplier", defaults.multiplier), "polling.multiplier")
    if multiplier < 1:
        raise ConfigError("polling.multiplier", "must be at least 1")
    jitter = _number(table.get("jitter", defaults.jitter), "polling.jitter")
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
        adaptive=_boolean(table.get("adaptive", defaults.adaptive), "polling.adaptive"),
        target_lag=duration("target_lag", positive=True),
    )


_FILTER_KEYS: Final = ("types", "statuses", "terminal_only", "labels")
_SINK_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "log": (),
    "file": ("path", "fsync"),
    "webhook": (
        "url",
        "secret",
        "secrets",
        "secret_file",
        "secret_files",
        "timeout",
        "max_retry_age",
        "concurrency",
        "batch_max",
    ),
}


def _parse_filter(table: Mapping[str, object], prefix: str) -> SinkFilter:
    types = None
    if "types" in table:
        names = _string_list(table["types"], f"{prefix}.types")
        for index, name in enumerate(names):
            if name not in EVENT_TYPES:
                expected = ", ".join(f'"{known}"' for known in sorted(EVENT_TYPES))
                raise ConfigError(
                    f"{prefix}.types[{index}]", f"must be one of {expected}, not {name!r}"
                )
        types = frozenset(names)
    statuses = None
    if "statuses" in table:
        statuses = frozenset(_string_list(table["statuses"], f"{prefix}.statuses"))
    terminal_only = _boolean(table.get("terminal_only", False), f"{prefix}.terminal_only")
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


def _parse_webhook(table: Mapping[str, object], prefix: str, ctx: _Context) -> dict[str, object]:
    def inline(value: object, key: str) -> Secret:
        text = _string(value, key).strip()
        parse_webhook_secret(text, key)
        return Secret(text)

    def from_file(value: object, key: str) -> Path:
        path = ctx.path(value, key)

        def verify() -> None:
            secret = ctx.read_secret(path, key)
            if secret is not None:
                parse_webhook_secret(secret, key)

        ctx.check(verify)
        return path

    def many(name: str) -> list[object]:
        if name not in table:
            return []
        value = table[name]
        if not isinstance(value, list | tuple):
            raise _type_error(f"{prefix}.{name}", "an array of strings", value)
        return list(value)

    secrets = [inline(table["secret"], f"{prefix}.secret")] if "secret" in table else []
    secrets += [inline(v, f"{prefix}.secrets[{i}]") for i, v in enumerate(many("secrets"))]
    files = (
        [from_file(table["secret_file"], f"{prefix}.secret_file")] if "secret_file" in table else []
    )
    files += [
        from_file(v, f"{prefix}.secret_files[{i}]") for i, v in enumerate(many("secret_files"))
    ]

    timeout = parse_duration(table.get("timeout", 10), f"{prefix}.timeout")
    if timeout <= 0:
        raise ConfigError(f"{prefix}.timeout", "must be greater than 0")
    return {
        "url": _url(_required(table, "url", prefix), f"{prefix}.url", endpoint=False),
        "secrets": tuple(secrets),
        "secret_files": tuple(files),
        "timeout": timeout,
        "max_retry_age": parse_duration(
            table.get("max_retry_age", 86400), f"{prefix}.max_retry_age"
        ),
        "concurrency": _integer(table.get("concurrency", 8), f"{prefix}.concurrency", 1, 1000),
        "batch_max": _integer(table.get("batch_max", 1), f"{prefix}.batch_max", 1, 10_000),
    }


def _parse_sink(
    table: Mapping[str, object], prefix: str, ordinal: int, state_dir: Path, ctx: _Context
) -> SinkConfig:
    sink_type = _string(_required(table, "type", prefix), f"{prefix}.type")
    if not _SINK_TYPE.fullmatch(sink_type):
        raise ConfigError(
            f"{prefix}.type",
            f"must be 1-64 characters of a-z, 0-9, '_', '.' or '-', not {sink_type!r}",
        )
    common = ("type", "name", *_FILTER_KEYS)
    if sink_type in _SINK_KEYS:
        _check_keys(table, prefix, (*common, *_SINK_KEYS[sink_type]))
    if "name" in table:
        name = _string(table["name"], f"{prefix}.name")
    else:
        name = sink_type if ordinal == 1 else f"{sink_type}-{ordinal}"
    if not _SINK_NAME.fullmatch(name):
        raise ConfigError(
            f"{prefix}.name",
            f"must be 1-64 characters of A-Z, a-z, 0-9, '_', '.' or '-', not {name!r}",
        )
    options: dict[str, object]
    if sink_type == "log":
        options = {}
    elif sink_type == "file":
        options = {
            "path": ctx.path(_required(table, "path", prefix), f"{prefix}.path", state_dir),
            "fsync": _choice(table.get("fsync", "batch"), f"{prefix}.fsync", get_args(FsyncPolicy)),
        }
    elif sink_type == "webhook":
        options = _parse_webhook(table, prefix, ctx)
    else:
        options = {key: value for key, value in table.items() if key not in common}
    return SinkConfig(
        type=sink_type,
        name=name,
        filter=_parse_filter(table, prefix),
        options=MappingProxyType(options),
    )


def _parse_sinks(
    data: Mapping[str, object], state_dir: Path, ctx: _Context
) -> tuple[SinkConfig, ...]:
    if "sinks" not in data:
        return _default_sinks()
    sinks: list[SinkConfig] = []
    for index, table in enumerate(_array_of_tables(data["sinks"], "sinks")):
        prefix = f"sinks[{index}]"
        ordinal = 1 + sum(1 for other in sinks if other.type == table.get("type"))
        sink = _parse_sink(table, prefix, ordinal, state_dir, ctx)
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
    ctx = _Context(
        base_dir=source.parent if source is not None else Path.cwd(),
        environ=environ,
        verify=verify,
        credentials=credentials,
    )
    _check_keys(data, "", ("daemon", "api", "accounts", "polling", "sinks"))
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


def _toml_duration(seconds: float) -> str | float:
    """``"7d"``, ``"2m"``, ``"250ms"``, ``"1.5s"`` when exact, else the number itself."""
    candidates: list[str] = []
    for unit in ("d", "h", "m", "s"):
        count = seconds / float(_DURATION_UNITS[unit])
        if count.is_integer():
            candidates.append(f"{int(count)}{unit}")
    millis = seconds * 1000
    if millis.is_integer():
        candidates.append(f"{int(millis)}ms")
    candidates.append(f"{seconds!r}s")
    for candidate in candidates:
        if _DURATION_PART.fullmatch(candidate) and parse_duration(candidate, "") == seconds:
            return candidate
    return seconds


def _toml_size(size: int) -> str | int:
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        count, rest = divmod(size, _SIZE_UNITS[unit])
        if count and not rest:
            return f"{count}{unit}"
    return size


def _toml_number(value: float) -> int | float:
    return int(value) if value.is_integer() else value


def redact_url(url: str) -> str:
    """``url`` for display: scheme, host, port and path kept, the userinfo and
    every query value (and a fragment) shown as ``***``, query names kept.

    ``https://u:p@h:8443/hook?token=abc&v`` reads ``https://***@h:8443/hook?token=***&***``.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return _SECRET_MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{_SECRET_MASK}@{netloc.rpartition('@')[2]}"
    query = "&".join(_mask_query_item(item) for item in parts.query.split("&"))
    fragment = _SECRET_MASK if parts.fragment else ""
    return parts._replace(netloc=netloc, query=query, fragment=fragment).geturl()


def _mask_query_item(item: str) -> str:
    """``name=***``; a bare item (which may be the token itself) as ``***``."""
    if not item:
        return item
    name, equals, _ = item.partition("=")
    return f"{name}={_SECRET_MASK}" if equals else _SECRET_MASK


def _redact_text(text: str) -> str:
    """A third-party option's string: URLs as by :func:`redact_url`, and any
    libpq-style ``password=`` pair masked."""
    try:
        parts = urlsplit(text)
    except ValueError:
        return redact_dsn(text)
    if parts.scheme and parts.netloc:
        return redact_url(text)
    return redact_dsn(text)


def _mask(value: object) -> object:
    """Third-party options: hide values under secret-looking keys (``*_file`` paths
    stay), and the credentials and query values of URLs."""
    if isinstance(value, Mapping):
        return {
            key: (
                _SECRET_MASK
                if _SECRET_OPTION.search(key) and not key.endswith(("_file", "_files"))
                else _mask(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_mask(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return _redact_text(value)
    return value


def _drop_none(table: Mapping[str, object]) -> dict[str, object]:
    return {key: value for key, value in table.items() if value is not None}


def _render_account(account: AccountConfig) -> dict[str, object]:
    def text(path: Path | None) -> str | None:
        return None if path is None else str(path)

    return _drop_none(
        {
            "name": account.name,
            "endpoint": account.endpoint,
            "project_id": account.project_id,
            "auth": account.auth,
            "rate_limit": _toml_number(account.rate_limit),
            "request_timeout": _toml_duration(account.request_timeout),
            "token_file": text(account.token_file),
            "ak_file": text(account.ak_file),
            "sk_file": text(account.sk_file),
            "security_token_file": text(account.security_token_file),
            "iam_endpoint": account.iam_endpoint,
            "domain": account.domain,
            "user": account.user,
            "password_file": text(account.password_file),
            "ca_file": text(account.ca_file),
            "max_response_size": _toml_size(account.max_response_size),
            "max_sub_jobs": account.max_sub_jobs,
        }
    )


def _render_sink(sink: SinkConfig) -> dict[str, object]:
    rendered: dict[str, object] = {"type": sink.type, "name": sink.name}
    options = dict(sink.options)
    if sink.type == "file":
        rendered |= {"path": str(options["path"]), "fsync": options["fsync"]}
    elif sink.type == "webhook":
        rendered["url"] = redact_url(cast(str, options["url"]))
        secrets = cast(tuple[Secret, ...], options["secrets"])
        files = cast(tuple[Path, ...], options["secret_files"])
        if secrets:
            rendered["secrets"] = [_SECRET_MASK for _ in secrets]
        if files:
            rendered["secret_files"] = [str(path) for path in files]
        rendered |= {
            "timeout": _toml_duration(cast(float, options["timeout"])),
            "max_retry_age": _toml_duration(cast(float, options["max_retry_age"])),
            "concurrency": options["concurrency"],
            "batch_max": options["batch_max"],
        }
    else:
        rendered |= cast(dict[str, object], _mask(options))
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
            "lease": _toml_duration(config.daemon.lease),
        }
    )
    api = _drop_none(
        {
            "listen": config.api.listen,
            "token_file": None if config.api.token_file is None else str(config.api.token_file),
            "max_batch": config.api.max_batch,
            "max_body": _toml_size(config.api.max_body),
            "max_connections": config.api.max_connections,
            "header_timeout": _toml_duration(config.api.header_timeout),
            "body_timeout": _toml_duration(config.api.body_timeout),
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
                "initial_delay": _toml_duration(polling.initial_delay),
                "min_interval": _toml_duration(polling.min_interval),
                "max_interval": _toml_duration(polling.max_interval),
                "multiplier": polling.multiplier,
                "jitter": polling.jitter,
                "timeout": _toml_duration(polling.timeout),
                "not_found_grace": _toml_duration(polling.not_found_grace),
                "retention": _toml_duration(polling.retention),
                "adaptive": polling.adaptive,
                "target_lag": _toml_duration(polling.target_lag),
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
