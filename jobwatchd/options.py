"""Config values: the error type, scalar parsers, secrets and redaction.

Shared by :mod:`jobwatchd.config` and the sinks, which parse their own
options with these helpers; it imports neither. Everything here is pure apart
from :func:`read_secret` and :class:`ParseContext`, which read secret files.
A bad value raises :class:`ConfigError` naming the offending key as a dotted
path (``sinks[0].timeout``); a message never contains a secret.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Final, TypeVar, cast
from urllib.parse import urlsplit

from jobwatchd.logs import get_logger

__all__ = [
    "CREDENTIALS_ROOT",
    "MAX_DURATION",
    "SECRET_MASK",
    "ConfigError",
    "CredentialSources",
    "ParseContext",
    "Secret",
    "check_keys",
    "expect_bool",
    "expect_choice",
    "expect_int",
    "expect_number",
    "expect_str",
    "expect_str_list",
    "expect_table",
    "expect_url",
    "field_defaults",
    "join_key",
    "mask_options",
    "parse_duration",
    "parse_size",
    "read_secret",
    "redact_url",
    "required",
    "toml_duration",
    "toml_number",
    "toml_size",
    "type_error",
]

MAX_DURATION: Final = 3650 * 86400.0
"""Ten years: longer durations are refused (event loops overflow on huge timeouts)."""
SECRET_MASK: Final = "***"
"""How ``check-config`` shows a secret."""


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
        return f"Secret({SECRET_MASK!r})"


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


def type_error(key: str, expected: str, value: object) -> ConfigError:
    return ConfigError(key, f"must be {expected}, not {_kind(value)}")


def parse_duration(value: object, key: str) -> float:
    """Seconds from ``"250ms"``, ``"2s"``, ``"5m"``, ``"24h"``, ``"7d"``, ``"1.5s"``,
    ``"1h30m"`` or a non-negative number of seconds; :class:`ConfigError` naming
    ``key`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise type_error(key, _DURATION_HINT, value)
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
        raise type_error(key, _SIZE_HINT, value)
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


def expect_str(value: object, key: str) -> str:
    """A non-blank string."""
    if not isinstance(value, str):
        raise type_error(key, "a string", value)
    if not value.strip():
        raise ConfigError(key, "must not be empty")
    return value


def expect_bool(value: object, key: str) -> bool:
    """``true`` or ``false``."""
    if not isinstance(value, bool):
        raise type_error(key, "true or false", value)
    return value


def expect_int(value: object, key: str, low: int, high: int) -> int:
    """An integer from ``low`` to ``high`` (a boolean is not one)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise type_error(key, "an integer", value)
    if not low <= value <= high:
        raise ConfigError(key, f"must be between {low} and {high}, not {value}")
    return value


def expect_number(value: object, key: str) -> float:
    """A finite integer or float, as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise type_error(key, "a number", value)
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(key, "must be a finite number")
    return number


def expect_choice(value: object, key: str, choices: tuple[_T, ...]) -> _T:
    """One of ``choices`` (compared case-insensitively)."""
    text = expect_str(value, key).lower()
    for choice in choices:
        if text == choice:
            return choice
    expected = ", ".join(f'"{choice}"' for choice in choices)
    raise ConfigError(key, f"must be one of {expected}, not {value!r}")


def expect_str_list(value: object, key: str) -> list[str]:
    """A non-empty array of strings (filters: an absent key means no restriction)."""
    if not isinstance(value, list | tuple):
        raise type_error(key, "an array of strings", value)
    if not value:
        raise ConfigError(key, "must not be empty (leave the key out for no restriction)")
    return [expect_str(item, f"{key}[{index}]") for index, item in enumerate(value)]


def expect_url(value: object, key: str, *, endpoint: bool) -> str:
    """An absolute http(s) URL without credentials or fragment.

    Endpoints also refuse a query string and lose their trailing slash. The URL
    itself is never quoted in messages: a webhook URL may embed a token.
    """
    text = expect_str(value, key)
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


def field_defaults(cls: type[object]) -> Mapping[str, object]:
    """The field defaults of dataclass ``cls`` by name (fields without one are left out).

    A slotted dataclass keeps no defaults as class attributes, so parsers read
    them here instead of writing them a second time.
    """
    return {
        item.name: item.default
        for item in dataclasses.fields(cls)  # type: ignore[arg-type]
        if item.default is not dataclasses.MISSING
    }


# ---------------------------------------------------------------------------
# Tables


def expect_table(value: object, key: str) -> Mapping[str, object]:
    """A TOML table."""
    if not isinstance(value, Mapping):
        raise type_error(key, "a table", value)
    return cast(Mapping[str, object], value)


def join_key(prefix: str, name: str) -> str:
    """``prefix.name``, or ``name`` at the top level."""
    return f"{prefix}.{name}" if prefix else name


def check_keys(table: Mapping[str, object], prefix: str, allowed: Sequence[str]) -> None:
    """Refuse a key not in ``allowed``, suggesting the closest allowed one."""
    for name in table:
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(join_key(prefix, name), f"unknown key{hint}")


def required(table: Mapping[str, object], name: str, prefix: str) -> object:
    """``table[name]``, or a "required" error naming ``prefix.name``."""
    if name not in table:
        raise ConfigError(join_key(prefix, name), "required")
    return table[name]


# ---------------------------------------------------------------------------
# Secrets


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
class ParseContext:
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
        """An absolute path; a relative one starts at ``base`` (default: the config's directory)."""
        text = expect_str(value, key)
        if "\0" in text:
            raise ConfigError(key, "must not contain NUL bytes")
        return Path(os.path.abspath((base or self.base_dir) / text))

    def secret_file(self, value: object, key: str) -> Path:
        """A path (as :meth:`path`) whose file is checked for readability after validation."""
        path = self.path(value, key)
        self.check(lambda: self.read_secret(path, key))
        return path


# ---------------------------------------------------------------------------
# Rendering


def toml_duration(seconds: float) -> str | float:
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


def toml_size(size: int) -> str | int:
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        count, rest = divmod(size, _SIZE_UNITS[unit])
        if count and not rest:
            return f"{count}{unit}"
    return size


def toml_number(value: float) -> int | float:
    return int(value) if value.is_integer() else value


def redact_url(url: str) -> str:
    """``url`` for display: scheme, host, port and path kept, the userinfo and
    every query value (and a fragment) shown as ``***``, query names kept.

    ``https://u:p@h:8443/hook?token=abc&v`` reads ``https://***@h:8443/hook?token=***&***``.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return SECRET_MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{SECRET_MASK}@{netloc.rpartition('@')[2]}"
    query = "&".join(_mask_query_item(item) for item in parts.query.split("&"))
    fragment = SECRET_MASK if parts.fragment else ""
    return parts._replace(netloc=netloc, query=query, fragment=fragment).geturl()


def _mask_query_item(item: str) -> str:
    """``name=***``; a bare item (which may be the token itself) as ``***``."""
    if not item:
        return item
    name, equals, _ = item.partition("=")
    return f"{name}={SECRET_MASK}" if equals else SECRET_MASK


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


def mask_options(value: object) -> object:
    """Third-party options: hide values under secret-looking keys (``*_file`` paths
    stay), and the credentials and query values of URLs."""
    if isinstance(value, Mapping):
        return {
            key: (
                SECRET_MASK
                if _SECRET_OPTION.search(key) and not key.endswith(("_file", "_files"))
                else mask_options(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask_options(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return _redact_text(value)
    return value


_PASSWORD_PARAMETER = re.compile(r"([?&](?:ssl)?password=)[^&#]*", re.IGNORECASE)


_PASSWORD_PAIR = re.compile(r"(\b(?:ssl)?password\s*=\s*)(?:'[^']*'|\S+)", re.IGNORECASE)


def redact_dsn(dsn: str) -> str:
    """``dsn`` with every password in it shown as ``***``: the URL's
    ``user:password@``, ``password=`` query parameters, or libpq
    ``password=`` pairs. Anything else is left as it is."""
    try:
        netloc = urlsplit(dsn).netloc
    except ValueError:
        netloc = ""
    if not netloc:
        return _PASSWORD_PAIR.sub(rf"\1{SECRET_MASK}", dsn)
    userinfo, at, hostinfo = netloc.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.partition(":")[0]
        dsn = dsn.replace(f"//{netloc}", f"//{user}:{SECRET_MASK}@{hostinfo}", 1)
    return _PASSWORD_PARAMETER.sub(rf"\1{SECRET_MASK}", dsn)
