"""Tests for jobwatchd.config: parsing, validation, secrets, rendering, shipped files."""

from __future__ import annotations

import copy
import dataclasses
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from jobwatchd import config as config_module
from jobwatchd.config import (
    DEFAULT_CONFIG_PATH,
    AccountConfig,
    ApiConfig,
    Config,
    ConfigError,
    DaemonConfig,
    PollingConfig,
    Secret,
    load_config,
    parse_config,
    parse_duration,
    parse_size,
    read_secret,
    render_effective,
    resolve_config_path,
)
from jobwatchd.services import SERVICES
from jobwatchd.sinks.file import FileOptions
from jobwatchd.sinks.log import LogOptions
from jobwatchd.sinks.webhook import WebhookOptions, parse_webhook_secret
from tests.helpers import REPO

EXAMPLE = REPO / "config" / "jobwatchd.example.toml"
SIMULATE = REPO / "config" / "simulate.toml"
ENV = {"HUAWEICLOUD_SDK_AK": "AKEXAMPLE", "HUAWEICLOUD_SDK_SK": "SKEXAMPLE"}
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_WEBHOOK_SECRET = "whsec_c2Vjb25kLXNlY3JldC1rZXktbWF0ZXJpYWw="


def account(**changes: Any) -> dict[str, Any]:
    """A valid aksk account table, with ``changes`` applied (None removes a key)."""
    table: dict[str, Any] = {
        "name": "default",
        "endpoint": "https://ecs.example.com",
        "project_id": "p1",
    }
    table.update(changes)
    return {key: value for key, value in table.items() if value is not None}


def data(**sections: Any) -> dict[str, Any]:
    """A valid config document with top-level ``sections`` replaced."""
    document: dict[str, Any] = {"accounts": [account()]}
    document.update(copy.deepcopy(sections))
    return document


def parse(document: Mapping[str, Any], environ: Mapping[str, str] = ENV, **kw: Any) -> Config:
    return parse_config(document, environ=environ, **kw)


def config_error(document: Mapping[str, Any], environ: Mapping[str, str] = ENV) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(document, environ)
    return caught.value


def write_secret(path: Path, content: str, mode: int = 0o600) -> Path:
    path.write_text(content)
    path.chmod(mode)
    return path


# --- ConfigError -------------------------------------------------------------


def test_config_error_names_the_key() -> None:
    error = ConfigError("polling.jitter", "must be between 0 and 1")
    assert (error.key, error.message) == ("polling.jitter", "must be between 0 and 1")
    assert str(error) == "polling.jitter: must be between 0 and 1"


# --- durations and sizes -----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("250ms", 0.25),
        ("2s", 2.0),
        ("5m", 300.0),
        ("24h", 86400.0),
        ("7d", 604800.0),
        ("1.5s", 1.5),
        ("0.1s", 0.1),
        ("1h30m", 5400.0),
        ("1d12h", 129600.0),
        (" 2 s ", 2.0),
        ("0s", 0.0),
        (0, 0.0),
        (3, 3.0),
        (0.5, 0.5),
        (3650 * 86400, 3650 * 86400.0),
    ],
)
def test_parse_duration_accepts(value: object, seconds: float) -> None:
    assert parse_duration(value, "k") == seconds


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "invalid duration"),
        ("2", "invalid duration"),
        ("2x", "invalid duration"),
        ("s", "invalid duration"),
        ("-1s", "invalid duration"),
        ("1.s", "invalid duration"),
        ("2s junk", "invalid duration"),
        ("1e3s", "invalid duration"),
        (-1, "must not be negative"),
        (-0.5, "must not be negative"),
        (math.nan, "NaN"),
        (math.inf, "at most 3650d"),
        ("3651d", "at most 3650d"),
        ("9" * 400 + "d", "at most 3650d"),
        (10**400, "at most 3650d"),
        (True, "not a boolean"),
        (None, "must be a duration"),
        (["2s"], "not an array"),
    ],
)
def test_parse_duration_rejects(value: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_duration(value, "polling.timeout")
    assert caught.value.key == "polling.timeout"
    assert fragment in caught.value.message


UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


@given(count=st.integers(min_value=0, max_value=3650), unit=st.sampled_from(sorted(UNIT_SECONDS)))
def test_parse_duration_integer_units(count: int, unit: str) -> None:
    expected = count / 1000 if unit == "ms" else float(count * UNIT_SECONDS[unit])
    assert parse_duration(f"{count}{unit}", "k") == expected


@given(st.floats(min_value=0, max_value=3650 * 86400))
def test_parse_duration_numbers_are_seconds(seconds: float) -> None:
    assert parse_duration(seconds, "k") == seconds


@given(st.text(alphabet="0123456789.smhd -xe", max_size=12))
def test_parse_duration_returns_a_valid_value_or_config_error(text: str) -> None:
    outcome: float | ConfigError
    try:
        outcome = parse_duration(text, "k")
    except ConfigError as error:
        outcome = error
    if isinstance(outcome, ConfigError):
        assert outcome.key == "k"
    else:
        assert 0 <= outcome <= 3650 * 86400


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("1MiB", 1024**2),
        ("512KiB", 512 * 1024),
        ("1GiB", 1024**3),
        ("1MB", 1_000_000),
        ("10kB", 10_000),
        ("10KB", 10_000),
        ("100B", 100),
        ("1.5KiB", 1536),
        (" 2 MiB ", 2 * 1024**2),
        (0, 0),
        (4096, 4096),
    ],
)
def test_parse_size_accepts(value: object, size: int) -> None:
    assert parse_size(value, "k") == size


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("1", "invalid size"),
        ("1XB", "invalid size"),
        ("1mib", "invalid size"),
        ("MiB", "invalid size"),
        ("", "invalid size"),
        ("1.5B", "whole number of bytes"),
        (-1, "must not be negative"),
        (1.5, "not a number"),
        (True, "not a boolean"),
        (None, "must be a size"),
    ],
)
def test_parse_size_rejects(value: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_size(value, "api.max_body")
    assert caught.value.key == "api.max_body"
    assert fragment in caught.value.message


# --- defaults ------------------------------------------------------------------


def test_builtin_defaults_need_no_credentials() -> None:
    config = load_config(None, environ={})
    assert config.source is None
    assert config.daemon == DaemonConfig(state_dir=Path("/var/lib/jobwatchd"), log_level="info")
    assert config.api == ApiConfig(
        listen="127.0.0.1:8787", token_file=None, max_batch=1000, max_body=1024**2
    )
    assert config.polling == PollingConfig(
        concurrency=64,
        initial_delay=1.0,
        min_interval=2.0,
        max_interval=60.0,
        multiplier=1.6,
        jitter=0.2,
        timeout=86400.0,
        not_found_grace=120.0,
        retention=604800.0,
    )
    assert config.accounts == (
        AccountConfig(
            name="default",
            endpoint="https://ecs.ap-southeast-1.myhuaweicloud.com",
            project_id="0123456789abcdef0123456789abcdef",
            auth="aksk",
            rate_limit=20.0,
            request_timeout=10.0,
        ),
    )
    assert [(sink.type, sink.name, sink.options) for sink in config.sinks] == [
        ("log", "log", LogOptions())
    ]
    assert config == Config(accounts=config.accounts)


def test_explicit_empty_config_checks_aksk_credentials() -> None:
    assert config_error({}, environ={}).key == "accounts[0].ak_file"
    assert parse({}).default_account.name == "default"


# --- unknown keys and wrong shapes -------------------------------------------


@pytest.mark.parametrize(
    ("document", "key", "fragment"),
    [
        (data(polling2={}), "polling2", "unknown key"),
        (data(polling={"min_intervall": "2s"}), "polling.min_intervall", "'min_interval'"),
        (data(daemon={"statedir": "/x"}), "daemon.statedir", "'state_dir'"),
        (data(api={"port": 1}), "api.port", "unknown key"),
        (data(accounts=[account(regoin="eu")]), "accounts[0].regoin", "unknown key"),
        (data(sinks=[{"type": "log", "path": "x"}]), "sinks[0].path", "unknown key"),
        (data(sinks=[{"type": "file", "pth": "x"}]), "sinks[0].pth", "'path'"),
        (
            data(sinks=[{"type": "webhook", "url": "https://h", "secert": "x"}]),
            "sinks[0].secert",
            "'secret'",
        ),
        (data(daemon="x"), "daemon", "must be a table"),
        (data(accounts={"name": "x"}), "accounts", "array of tables"),
        (data(sinks={"type": "log"}), "sinks", "array of tables"),
        (data(sinks=["log"]), "sinks[0]", "must be a table"),
    ],
)
def test_unknown_keys_and_shapes_are_refused(
    document: dict[str, Any], key: str, fragment: str
) -> None:
    error = config_error(document)
    assert error.key == key
    assert fragment in error.message


# --- bad values, each naming its key ---------------------------------------


# (section, section table, key under the section, fragment of the message)
SECTION_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("daemon", {"log_level": "verbose"}, "log_level", "must be one of"),
    ("daemon", {"log_level": 1}, "log_level", "must be a string"),
    ("daemon", {"state_dir": ""}, "state_dir", "must not be empty"),
    ("daemon", {"state_dir": 1}, "state_dir", "must be a string"),
    ("daemon", {"store": "mysql://db/jobs"}, "store", '"sqlite" or a postgresql:// URL'),
    ("daemon", {"store": "/var/lib/jobwatchd.db"}, "store", "postgresql:// URL"),
    ("daemon", {"store": "postgresql://db:99999/jobs"}, "store", "invalid URL"),
    ("daemon", {"store": "postgresql://db/jobs x"}, "store", "whitespace"),
    ("daemon", {"store": ""}, "store", "must not be empty"),
    ("daemon", {"store": 5432}, "store", "must be a string"),
    ("daemon", {"store_password_file": "/x"}, "store_password_file", "postgresql:// store"),
    ("api", {"listen": "localhost"}, "listen", "host:port"),
    ("api", {"listen": "127.0.0.1:70000"}, "listen", "0-65535"),
    ("api", {"listen": "127.0.0.1:http"}, "listen", "0-65535"),
    ("api", {"listen": "::1:8787"}, "listen", "brackets"),
    ("api", {"listen": "[nothost]:1"}, "listen", "not an IPv6"),
    ("api", {"listen": "bad host:1"}, "listen", "host:port"),
    ("api", {"listen": "unix:api.sock"}, "listen", "absolute"),
    ("api", {"listen": "unix:/" + "a" * 120}, "listen", "107 bytes"),
    ("api", {"listen": "0.0.0.0:8787"}, "token_file", "required"),
    ("api", {"listen": "example.com:8787"}, "token_file", "required"),
    ("api", {"max_batch": 0}, "max_batch", "between 1 and 100000"),
    ("api", {"max_batch": 100_001}, "max_batch", "between 1 and 100000"),
    ("api", {"max_batch": True}, "max_batch", "must be an integer"),
    ("api", {"max_body": "1XB"}, "max_body", "invalid size"),
    ("api", {"max_body": 0}, "max_body", "at least 1B"),
    ("polling", {"concurrency": 0}, "concurrency", "between 1 and 10000"),
    ("polling", {"concurrency": 10_001}, "concurrency", "between 1 and 10000"),
    ("polling", {"concurrency": "64"}, "concurrency", "an integer"),
    ("polling", {"initial_delay": "soon"}, "initial_delay", "invalid duration"),
    ("polling", {"min_interval": 0}, "min_interval", "greater than 0"),
    ("polling", {"min_interval": "10s", "max_interval": "5s"}, "max_interval", "min_interval"),
    ("polling", {"multiplier": 0.5}, "multiplier", "at least 1"),
    ("polling", {"multiplier": "fast"}, "multiplier", "a number"),
    ("polling", {"jitter": 1.5}, "jitter", "between 0 and 1"),
    ("polling", {"jitter": -0.1}, "jitter", "between 0 and 1"),
    ("polling", {"timeout": "0s"}, "timeout", "greater than 0"),
    ("polling", {"not_found_grace": -1}, "not_found_grace", "must not be negative"),
    ("polling", {"retention": "forever"}, "retention", "invalid duration"),
]


@pytest.mark.parametrize(("section", "table", "name", "fragment"), SECTION_CASES)
def test_bad_section_values_name_their_key(
    section: str, table: dict[str, Any], name: str, fragment: str
) -> None:
    error = config_error(data(**{section: table}))
    assert error.key == f"{section}.{name}"
    assert fragment in error.message
    assert str(error) == f"{section}.{name}: {error.message}"


IAM = {"auth": "iam-password", "domain": "d", "user": "u", "password_file": "/nonexistent"}

# (changes to a valid account, key under accounts[0], fragment of the message)
ACCOUNT_CASES: list[tuple[dict[str, Any], str, str]] = [
    ({"name": "a b"}, "name", "1-64 characters"),
    ({"name": "a" * 65}, "name", "1-64 characters"),
    ({"name": None}, "name", "required"),
    ({"endpoint": None}, "endpoint", "required unless the account has a region or endpoints"),
    ({"region": "cn north 4"}, "region", "not a region id"),
    ({"region": "CN-NORTH-4"}, "region", "not a region id"),
    ({"region": "cn-north-4.evil.com"}, "region", "not a region id"),
    ({"region": 4}, "region", "a string"),
    ({"domain_suffix": "example.com"}, "domain_suffix", "only used with a region"),
    ({"region": "cn-north-4", "domain_suffix": "x/y"}, "domain_suffix", "not a DNS name"),
    ({"endpoints": {"nope": "https://h"}}, "endpoints", "unknown service 'nope'"),
    ({"endpoints": {"evs": "evs.example.com"}}, "endpoints.evs", "http:// or https://"),
    ({"endpoints": {"evs": "https://u:p@h"}}, "endpoints.evs", "credentials"),
    ({"endpoints": "https://h"}, "endpoints", "a table"),
    ({"rate_limits": {"cce": 0}}, "rate_limits.cce", "greater than 0"),
    ({"rate_limits": {"cce": "fast"}}, "rate_limits.cce", "a number"),
    ({"rate_limits": {"k8s": 1}}, "rate_limits", "unknown service 'k8s'"),
    ({"endpoint": "ftp://h"}, "endpoint", "http:// or https://"),
    ({"endpoint": "ecs.example.com"}, "endpoint", "http:// or https://"),
    ({"endpoint": "https://"}, "endpoint", "must name a host"),
    ({"endpoint": "https://h/?a=1"}, "endpoint", "query string"),
    ({"endpoint": "https://h/#x"}, "endpoint", "fragment"),
    ({"endpoint": "https://u:p@h"}, "endpoint", "credentials"),
    ({"endpoint": "https://h:99999"}, "endpoint", "invalid URL"),
    ({"endpoint": "https://h/a b"}, "endpoint", "whitespace"),
    ({"project_id": "a/b"}, "project_id", "1-64 characters"),
    ({"project_id": None}, "project_id", "required"),
    ({"auth": "ldap"}, "auth", "must be one of"),
    ({"rate_limit": 0}, "rate_limit", "greater than 0"),
    ({"rate_limit": -1.5}, "rate_limit", "greater than 0"),
    ({"rate_limit": "fast"}, "rate_limit", "a number"),
    ({"rate_limit": True}, "rate_limit", "a number"),
    ({"rate_limit": math.inf}, "rate_limit", "finite"),
    ({"request_timeout": "0s"}, "request_timeout", "greater than 0"),
    ({"request_timeout": "soon"}, "request_timeout", "invalid duration"),
    ({"token_file": "t"}, "token_file", 'only used with auth = "token"'),
    ({"auth": "token", "ak_file": "a"}, "ak_file", 'only used with auth = "aksk"'),
    ({"auth": "none", "password_file": "p"}, "password_file", 'auth = "iam-password"'),
    ({"auth": "token"}, "token_file", "required"),
    ({**IAM, "iam_endpoint": "iam"}, "iam_endpoint", "http:// or https://"),
    ({"ca_file": "/nonexistent/ca.pem"}, "ca_file", "cannot read /nonexistent/ca.pem"),
]


@pytest.mark.parametrize(("changes", "name", "fragment"), ACCOUNT_CASES)
def test_bad_account_values_name_their_key(
    changes: dict[str, Any], name: str, fragment: str
) -> None:
    error = config_error(data(accounts=[account(**changes)]))
    assert error.key == f"accounts[0].{name}"
    assert fragment in error.message


HOOK = {"type": "webhook", "url": "https://h"}

# (one sink table, key under sinks[0], fragment of the message)
SINK_CASES: list[tuple[dict[str, Any], str, str]] = [
    ({"name": "x"}, "type", "required"),
    ({"type": "My Sink"}, "type", "a-z"),
    ({"type": "log", "name": "a b"}, "name", "1-64 characters"),
    ({"type": "file"}, "path", "required"),
    ({"type": "file", "path": 1}, "path", "a string"),
    ({"type": "file", "path": "f", "fsync": "sometimes"}, "fsync", "must be one of"),
    ({"type": "webhook"}, "url", "required"),
    ({**HOOK, "url": "ftp://h"}, "url", "http:// or https://"),
    ({**HOOK, "url": "https://u:p@h"}, "url", "credentials"),
    ({**HOOK, "secret": "c2VjcmV0"}, "secret", "whsec_"),
    ({**HOOK, "secret": "whsec_!!"}, "secret", "valid base64"),
    ({**HOOK, "secret": "whsec_"}, "secret", "key material"),
    ({**HOOK, "secrets": [WEBHOOK_SECRET, 1]}, "secrets[1]", "a string"),
    ({**HOOK, "secrets": WEBHOOK_SECRET}, "secrets", "an array"),
    ({**HOOK, "secret_files": ["/nonexistent/s"]}, "secret_files[0]", "cannot read"),
    ({**HOOK, "timeout": 0}, "timeout", "greater than 0"),
    ({**HOOK, "max_retry_age": "1y"}, "max_retry_age", "invalid duration"),
    ({**HOOK, "concurrency": 0}, "concurrency", "between 1 and 1000"),
    ({**HOOK, "batch_max": 0}, "batch_max", "between 1 and 10000"),
    ({"type": "log", "types": ["job"]}, "types[0]", "jobwatchd.job.transition"),
    ({"type": "log", "types": []}, "types", "must not be empty"),
    ({"type": "log", "types": "jobwatchd.job.transition"}, "types", "an array"),
    ({"type": "log", "statuses": ["SUCCESS", 1]}, "statuses[1]", "a string"),
    ({"type": "log", "terminal_only": "yes"}, "terminal_only", "true or false"),
    ({"type": "log", "labels": {"env": 1}}, "labels.env", "string"),
    ({"type": "log", "labels": ["env"]}, "labels", "object"),
    ({"type": "log", "labels": {f"k{i}": "v" for i in range(33)}}, "labels", "at most 32"),
    ({"type": "acme", "terminal_only": 1}, "terminal_only", "true or false"),
]


@pytest.mark.parametrize(("sink", "name", "fragment"), SINK_CASES)
def test_bad_sink_values_name_their_key(sink: dict[str, Any], name: str, fragment: str) -> None:
    error = config_error(data(sinks=[sink]))
    assert error.key == f"sinks[0].{name}"
    assert fragment in error.message


@pytest.mark.parametrize(
    ("document", "key", "fragment"),
    [
        (data(accounts=[]), "accounts", "at least one account"),
        (
            data(accounts=[account(), account(project_id="p2")]),
            "accounts[1].name",
            "duplicate account name 'default'",
        ),
        (
            data(
                sinks=[{"type": "log", "name": "out"}, {"type": "file", "name": "out", "path": "f"}]
            ),
            "sinks[1].name",
            "duplicate sink name 'out'",
        ),
        (
            data(sinks=[{"type": "log", "name": "log-2"}, {"type": "log"}]),
            "sinks[1].name",
            "set `name`",
        ),
    ],
)
def test_duplicates_are_refused(document: dict[str, Any], key: str, fragment: str) -> None:
    error = config_error(document)
    assert error.key == key
    assert fragment in error.message


def test_value_errors_come_before_missing_credentials() -> None:
    document = {"polling": {"min_intervall": "2s"}, "api": {"token_file": "/nonexistent"}}
    assert config_error(document, environ={}).key == "polling.min_intervall"


def test_errors_never_quote_secrets(tmp_path: Path) -> None:
    inline = "whsec_not*base64*topsecret"
    error = config_error(data(sinks=[{"type": "webhook", "url": "https://h", "secret": inline}]))
    assert "topsecret" not in str(error)
    secret_file = write_secret(tmp_path / "hook", "hunter2-in-a-file\n")
    error = config_error(
        data(sinks=[{"type": "webhook", "url": "https://h", "secret_file": str(secret_file)}])
    )
    assert error.key == "sinks[0].secret_file"
    assert "hunter2" not in str(error)


def test_store_errors_never_quote_the_password() -> None:
    # An unescaped "/" ends the host part: urllib would quote "zx" as a bad port.
    error = config_error(data(daemon={"store": "postgresql://jw:zx/qv@db:5432/jobs"}))
    assert error.key == "daemon.store"
    assert "zx" not in str(error)


# --- valid sections ----------------------------------------------------------


def test_full_sections_are_parsed(tmp_path: Path) -> None:
    token = write_secret(tmp_path / "api-token", "tok")
    config = parse(
        data(
            daemon={"state_dir": "/srv/jw", "log_level": "DEBUG"},
            api={"listen": "0.0.0.0:9000", "token_file": str(token), "max_batch": 5},
            polling={"concurrency": 8, "min_interval": "500ms", "max_interval": 30, "jitter": 0},
        )
    )
    assert config.daemon == DaemonConfig(state_dir=Path("/srv/jw"), log_level="debug")
    assert config.api == ApiConfig(
        listen="0.0.0.0:9000", token_file=token, max_batch=5, max_body=1024**2
    )
    assert (config.polling.concurrency, config.polling.min_interval) == (8, 0.5)
    assert (config.polling.max_interval, config.polling.jitter) == (30.0, 0.0)


@pytest.mark.parametrize(
    ("listen", "host", "port", "unix_path"),
    [
        ("127.0.0.1:8787", "127.0.0.1", 8787, None),
        ("localhost:0", "localhost", 0, None),
        ("[::1]:65535", "::1", 65535, None),
        ("unix:/run/jobwatchd/api.sock", None, None, Path("/run/jobwatchd/api.sock")),
    ],
)
def test_listen_forms_need_no_token_on_loopback(
    listen: str, host: str | None, port: int | None, unix_path: Path | None
) -> None:
    api = parse(data(api={"listen": listen})).api
    assert (api.host, api.port, api.unix_path) == (host, port, unix_path)
    assert api.token_file is None


def test_store_is_sqlite_or_a_postgresql_url(tmp_path: Path) -> None:
    assert parse(data()).daemon.store == "sqlite"
    password = write_secret(tmp_path / "pg-password", "hunter2\n")
    daemon = parse(
        data(daemon={"store": "postgres://jw@db:5432/jobs", "store_password_file": "pg-password"}),
        source=tmp_path / "jobwatchd.toml",
    ).daemon
    assert (daemon.store, daemon.store_password_file) == ("postgres://jw@db:5432/jobs", password)
    unix = parse(data(daemon={"store": "postgresql:///jobs?host=/run/postgresql"})).daemon
    assert unix.store == "postgresql:///jobs?host=/run/postgresql"
    missing = config_error(
        data(daemon={"store": "postgresql://db/jobs", "store_password_file": "/nonexistent"})
    )
    assert missing.key == "daemon.store_password_file"


def test_a_password_in_the_store_url_is_warned_about_and_masked() -> None:
    url = "postgresql://jw:hunter2@db:5432/jobs"
    with capture_logs() as logs:
        config = parse(data(daemon={"store": url}))
    assert config.daemon.store == url  # used as given ...
    assert [entry["event"] for entry in logs] == ["store_password_inline"]
    assert "hunter2" not in repr(config)  # ... but never shown
    assert "hunter2" not in str(logs)
    text = render_effective(config)
    assert "hunter2" not in text
    assert tomllib.loads(text)["daemon"]["store"] == "postgresql://jw:***@db:5432/jobs"


def test_state_dir_relative_to_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = parse(data(daemon={"state_dir": "./state"}), source=Path("/etc/jw/jobwatchd.toml"))
    assert config.daemon.state_dir == tmp_path / "state"


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        ("/var/lib/jobwatchd", Path("/var/lib/jobwatchd")),
        ("/var/lib/jobwatchd:/var/lib/other", Path("/var/lib/jobwatchd")),
        ("", Path("/srv/from-config")),
    ],
)
def test_state_directory_env_wins(variable: str, expected: Path) -> None:
    environ = {**ENV, "STATE_DIRECTORY": variable}
    config = parse(
        data(daemon={"state_dir": "/srv/from-config"}, sinks=[{"type": "file", "path": "t.jsonl"}]),
        environ,
    )
    assert config.daemon.state_dir == expected
    file_options = config.sinks[0].options
    assert isinstance(file_options, FileOptions)
    assert file_options.path == expected / "t.jsonl"
    assert load_config(None, environ=environ).daemon.state_dir == (
        expected if variable else Path("/var/lib/jobwatchd")
    )


def test_accounts_by_auth_mode_and_lookup(tmp_path: Path) -> None:
    write_secret(tmp_path / "token", "tok\n")
    write_secret(tmp_path / "password", "pw")
    write_secret(tmp_path / "ak", "AK")
    write_secret(tmp_path / "sk", "SK")
    write_secret(tmp_path / "sts", "STS")
    (tmp_path / "ca.pem").write_text("not checked as PEM here")
    config = parse(
        data(
            accounts=[
                account(name="main", ak_file="ak", sk_file="sk", security_token_file="sts"),
                account(name="tok", auth="token", token_file="token", ca_file="ca.pem"),
                account(
                    name="iam",
                    endpoint="https://ecs.example.com/",
                    auth="iam-password",
                    iam_endpoint="https://iam.example.com/v3/",
                    domain="dom",
                    user="bot",
                    password_file=str(tmp_path / "password"),
                    rate_limit=2.5,
                    request_timeout="1m",
                ),
                account(name="sim", auth="none", endpoint="http://127.0.0.1:8788"),
            ]
        ),
        environ={},
        source=tmp_path / "jobwatchd.toml",
    )
    assert config.default_account.name == "main"
    assert config.account("nope") is None
    main = config.account("main")
    assert main is not None
    assert (main.ak_file, main.sk_file) == (tmp_path / "ak", tmp_path / "sk")
    assert main.security_token_file == tmp_path / "sts"
    assert config.account("tok") == AccountConfig(
        name="tok",
        endpoint="https://ecs.example.com",
        project_id="p1",
        auth="token",
        token_file=tmp_path / "token",
        ca_file=tmp_path / "ca.pem",
    )
    assert config.account("iam") == AccountConfig(
        name="iam",
        endpoint="https://ecs.example.com",
        project_id="p1",
        auth="iam-password",
        rate_limit=2.5,
        request_timeout=60.0,
        iam_endpoint="https://iam.example.com/v3",
        domain="dom",
        user="bot",
        password_file=tmp_path / "password",
    )
    assert config.account("sim") == AccountConfig(
        name="sim", endpoint="http://127.0.0.1:8788", project_id="p1", auth="none"
    )


@pytest.mark.parametrize("missing", ["iam_endpoint", "domain", "user", "password_file"])
def test_iam_password_needs_every_key(tmp_path: Path, missing: str) -> None:
    keys: dict[str, Any] = {
        "auth": "iam-password",
        "iam_endpoint": "https://iam.example.com",
        "domain": "d",
        "user": "u",
        "password_file": str(write_secret(tmp_path / "pw", "pw")),
    }
    keys[missing] = None
    error = config_error(data(accounts=[account(**keys)]))
    assert (error.key, error.message) == (f"accounts[0].{missing}", "required")


@pytest.mark.parametrize(
    ("environ", "files", "key"),
    [
        ({}, {}, "accounts[0].ak_file"),
        ({"HUAWEICLOUD_SDK_AK": "AK"}, {}, "accounts[0].sk_file"),
        ({"HUAWEICLOUD_SDK_SK": "SK"}, {}, "accounts[0].ak_file"),
        ({"HUAWEICLOUD_SDK_AK": "", "HUAWEICLOUD_SDK_SK": "SK"}, {}, "accounts[0].ak_file"),
        ({}, {"ak_file": "ak"}, "accounts[0].sk_file"),
        ({"HUAWEICLOUD_SDK_SK": "SK"}, {"ak_file": "ak"}, None),
        ({}, {"ak_file": "ak", "sk_file": "sk"}, None),
        (ENV, {}, None),
    ],
)
def test_aksk_credentials_from_env_or_files(
    tmp_path: Path, environ: dict[str, str], files: dict[str, str], key: str | None
) -> None:
    for name in files.values():
        write_secret(tmp_path / name, name.upper())
    document = data(accounts=[account(**files)])
    source = tmp_path / "jobwatchd.toml"
    if key is None:
        assert parse(document, environ, source=source).default_account.auth == "aksk"
    else:
        with pytest.raises(ConfigError) as caught:
            parse(document, environ, source=source)
        assert caught.value.key == key
        assert "$HUAWEICLOUD_SDK_" in caught.value.message
    # Without verification (built-in defaults, tooling) credentials are not required.
    assert parse(document, environ, source=source, verify_secrets=False).accounts


def test_endpoint_trailing_slash_is_stripped() -> None:
    config = parse(data(accounts=[account(endpoint="https://ecs.example.com/prefix/")]))
    assert config.default_account.endpoint == "https://ecs.example.com/prefix"


# --- sinks ---------------------------------------------------------------------


def test_sink_names_are_derived_per_type() -> None:
    config = parse(
        data(
            sinks=[
                {"type": "log"},
                {"type": "log"},
                {"type": "file", "path": "a.jsonl"},
                {"type": "log", "name": "audit"},
                {"type": "log"},
                {"type": "file", "path": "b.jsonl"},
            ]
        )
    )
    assert [sink.name for sink in config.sinks] == [
        "log",
        "log-2",
        "file",
        "audit",
        "log-4",
        "file-2",
    ]


def test_sink_filters() -> None:
    config = parse(
        data(
            sinks=[
                {
                    "type": "log",
                    "types": ["jobwatchd.subjob.transition"],
                    "statuses": ["SUCCESS", "FAIL", "SUCCESS"],
                    "terminal_only": True,
                    "labels": {"env": "prod", "team": ""},
                },
                {"type": "log"},
            ]
        )
    )
    selective, everything = (sink.filter for sink in config.sinks)
    assert selective.types == frozenset({"jobwatchd.subjob.transition"})
    assert selective.statuses == frozenset({"SUCCESS", "FAIL"})
    assert selective.terminal_only is True
    assert dict(selective.labels) == {"env": "prod", "team": ""}
    with pytest.raises(TypeError):
        selective.labels["env"] = "dev"  # type: ignore[index]
    assert (everything.types, everything.statuses, everything.terminal_only) == (None, None, False)
    assert dict(everything.labels) == {}
    assert len({hash(config), hash(selective), hash(config.sinks[0])}) == 3


def test_file_sink_path_is_relative_to_state_dir(tmp_path: Path) -> None:
    config = parse(
        data(
            daemon={"state_dir": str(tmp_path)},
            sinks=[
                {"type": "file", "path": "out/t.jsonl"},
                {"type": "file", "path": "/var/log/jw.jsonl", "fsync": "always"},
            ],
        ),
        source=Path("/elsewhere/jobwatchd.toml"),
    )
    assert [sink.options for sink in config.sinks] == [
        FileOptions(path=tmp_path / "out" / "t.jsonl", fsync="batch"),
        FileOptions(path=Path("/var/log/jw.jsonl"), fsync="always"),
    ]


def test_webhook_options_are_normalised(tmp_path: Path) -> None:
    write_secret(tmp_path / "hook1", WEBHOOK_SECRET + "\n")
    write_secret(tmp_path / "hook2", OTHER_WEBHOOK_SECRET)
    config = parse(
        data(
            sinks=[
                {"type": "webhook", "url": "https://h.example.com/x?k=v"},
                {
                    "type": "webhook",
                    "url": "http://h.example.com/",
                    "secret": WEBHOOK_SECRET,
                    "secrets": [OTHER_WEBHOOK_SECRET],
                    "secret_file": "hook1",
                    "secret_files": ["hook2"],
                    "timeout": "2s",
                    "max_retry_age": "1h",
                    "concurrency": 2,
                    "batch_max": 50,
                },
            ]
        ),
        source=tmp_path / "jobwatchd.toml",
    )
    plain, signed = config.sinks
    assert (plain.name, signed.name) == ("webhook", "webhook-2")
    assert plain.options == WebhookOptions(
        url="https://h.example.com/x?k=v",
        secrets=(),
        secret_files=(),
        timeout=10.0,
        max_retry_age=86400.0,
        concurrency=8,
        batch_max=1,
    )
    assert signed.options == WebhookOptions(
        url="http://h.example.com/",
        secrets=(Secret(WEBHOOK_SECRET), Secret(OTHER_WEBHOOK_SECRET)),
        secret_files=(tmp_path / "hook1", tmp_path / "hook2"),
        timeout=2.0,
        max_retry_age=3600.0,
        concurrency=2,
        batch_max=50,
    )
    assert isinstance(signed.options, WebhookOptions)
    secrets = signed.options.secrets
    assert isinstance(secrets, tuple)
    assert all(isinstance(secret, Secret) for secret in secrets)
    assert WEBHOOK_SECRET not in repr(config)


def test_parse_webhook_secret_decodes_the_key() -> None:
    assert parse_webhook_secret("whsec_c2VjcmV0", "k") == b"secret"


def test_third_party_sink_options_pass_through() -> None:
    config = parse(
        data(
            sinks=[
                {
                    "type": "acme.kafka",
                    "topic": "jobs",
                    "brokers": ["a:9092", "b:9092"],
                    "tls": {"verify": False},
                    "terminal_only": True,
                }
            ]
        )
    )
    (sink,) = config.sinks
    assert (sink.type, sink.name, sink.filter.terminal_only) == ("acme.kafka", "acme.kafka", True)
    assert isinstance(sink.options, Mapping)
    assert dict(sink.options) == {
        "topic": "jobs",
        "brokers": ["a:9092", "b:9092"],
        "tls": {"verify": False},
    }


def test_no_sinks_is_allowed() -> None:
    assert parse(data(sinks=[])).sinks == ()


# --- secret files ------------------------------------------------------------


def test_read_secret_strips_whitespace(tmp_path: Path) -> None:
    path = write_secret(tmp_path / "s", "  s3cr3t \n\n")
    with capture_logs() as logs:
        assert read_secret(path, "k") == "s3cr3t"
    assert logs == []


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_read_secret_warns_when_others_can_read(tmp_path: Path, mode: int) -> None:
    path = write_secret(tmp_path / "s", "s3cr3t", mode)
    with capture_logs() as logs:
        assert read_secret(path, "accounts[0].token_file") == "s3cr3t"
    assert len(logs) == 1
    assert logs[0]["log_level"] == "warning"
    assert logs[0]["key"] == "accounts[0].token_file"
    assert logs[0]["path"] == str(path)
    assert logs[0]["mode"] == f"{mode:04o}"
    assert "s3cr3t" not in repr(logs)


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: p, "No such file or directory"),
        (lambda p: write_secret(p, " \n"), "empty"),
        (lambda p: (p.mkdir(), p)[1], "not a regular file"),
        (lambda p: (p.write_bytes(b"\xff\xfe"), p)[1], "not valid UTF-8"),
    ],
    ids=["missing", "empty", "directory", "binary"],
)
def test_read_secret_failures_name_the_key(tmp_path: Path, make: Any, fragment: str) -> None:
    path: Path = make(tmp_path / "s")
    with pytest.raises(ConfigError) as caught:
        read_secret(path, "api.token_file")
    assert caught.value.key == "api.token_file"
    assert caught.value.message.startswith(f"cannot read {path}: ")
    assert fragment in caught.value.message


@pytest.mark.parametrize(
    ("document", "key"),
    [
        (data(api={"token_file": "missing"}), "api.token_file"),
        (data(accounts=[account(auth="token", token_file="missing")]), "accounts[0].token_file"),
        (data(accounts=[account(ak_file="missing")]), "accounts[0].ak_file"),
        (data(accounts=[account(sk_file="missing")]), "accounts[0].sk_file"),
        (
            data(accounts=[account(security_token_file="missing")]),
            "accounts[0].security_token_file",
        ),
        (
            data(
                accounts=[
                    account(
                        auth="iam-password",
                        iam_endpoint="https://iam.example.com",
                        domain="d",
                        user="u",
                        password_file="missing",
                    )
                ]
            ),
            "accounts[0].password_file",
        ),
        (
            data(sinks=[{"type": "webhook", "url": "https://h", "secret_file": "missing"}]),
            "sinks[0].secret_file",
        ),
    ],
)
def test_unreadable_secret_files_name_their_key(
    tmp_path: Path, document: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(document, source=tmp_path / "jobwatchd.toml")
    assert caught.value.key == key
    assert f"cannot read {tmp_path / 'missing'}" in caught.value.message


def test_loading_warns_about_readable_secret_files(tmp_path: Path) -> None:
    write_secret(tmp_path / "token", "tok", 0o644)
    with capture_logs() as logs:
        parse(
            data(accounts=[account(auth="token", token_file="token")]),
            source=tmp_path / "jobwatchd.toml",
        )
    assert [(log["event"], log["key"]) for log in logs] == [
        ("secret_file_permissions", "accounts[0].token_file")
    ]


# --- files, paths and precedence ---------------------------------------------


def test_resolve_config_path_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit, from_env, default = tmp_path / "a.toml", tmp_path / "b.toml", tmp_path / "c.toml"
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", default)
    environ = {"JOBWATCHD_CONFIG": str(from_env)}
    assert resolve_config_path(explicit, environ=environ) == explicit
    assert resolve_config_path(None, environ=environ) == from_env
    assert resolve_config_path(None, environ={}) is None
    assert resolve_config_path(None, environ={"JOBWATCHD_CONFIG": ""}) is None
    default.write_text("")
    assert resolve_config_path(None, environ={}) == default
    monkeypatch.setenv("JOBWATCHD_CONFIG", str(from_env))
    assert resolve_config_path(None) == from_env
    assert Path("/etc/jobwatchd/jobwatchd.toml") == DEFAULT_CONFIG_PATH


def test_load_config_reads_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "conf").mkdir()
    write_secret(tmp_path / "conf" / "token", "tok")
    path = tmp_path / "conf" / "jobwatchd.toml"
    path.write_text(
        '[[accounts]]\nname = "a"\nendpoint = "https://h"\nproject_id = "p"\n'
        'auth = "token"\ntoken_file = "token"\n'
    )
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("conf/jobwatchd.toml"), environ={})
    assert config.source == path
    assert config.default_account.token_file == tmp_path / "conf" / "token"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "cannot read: No such file or directory"),
        (b"[polling\nconcurrency = 1\n", "invalid TOML"),
        (b"[daemon]\nlog_level = \n", "line 2"),
        (b"\xff\xfe", "not valid UTF-8"),
    ],
)
def test_load_config_file_errors(tmp_path: Path, content: bytes | None, fragment: str) -> None:
    path = tmp_path / "jobwatchd.toml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=ENV)
    assert caught.value.key == "config"
    assert caught.value.message.startswith(f"{path}: ")
    assert fragment in caught.value.message


def test_source_is_not_part_of_equality(tmp_path: Path) -> None:
    document = data()
    assert parse(document, source=tmp_path / "a.toml") == parse(document)
    assert hash(parse(document, source=tmp_path / "a.toml")) == hash(parse(document))


# --- render_effective ----------------------------------------------------------


def roundtrip(config: Config, environ: Mapping[str, str] = ENV) -> Config:
    return parse_config(tomllib.loads(render_effective(config)), environ=environ)


def test_render_masks_inline_secrets(tmp_path: Path) -> None:
    write_secret(tmp_path / "hook", OTHER_WEBHOOK_SECRET)
    config = parse(
        data(
            sinks=[
                {
                    "type": "webhook",
                    "url": "https://h",
                    "secret": WEBHOOK_SECRET,
                    "secrets": [WEBHOOK_SECRET],
                    "secret_file": "hook",
                },
                {"type": "acme", "api_key": "plain-key", "password": "pw123", "token_file": "t"},
            ]
        ),
        source=tmp_path / "jobwatchd.toml",
    )
    text = render_effective(config)
    for secret in (WEBHOOK_SECRET, OTHER_WEBHOOK_SECRET, "plain-key", "pw123"):
        assert secret not in text
    rendered = tomllib.loads(text)
    webhook, acme = rendered["sinks"]
    assert webhook["secrets"] == ["***", "***"]
    assert webhook["secret_files"] == [str(tmp_path / "hook")]
    assert (acme["api_key"], acme["password"], acme["token_file"]) == ("***", "***", "t")


def test_render_round_trips_a_rich_config(tmp_path: Path) -> None:
    write_secret(tmp_path / "token", "tok")
    write_secret(tmp_path / "pw", "pw")
    write_secret(tmp_path / "hook", WEBHOOK_SECRET)
    write_secret(tmp_path / "pg", "pg")
    config = parse(
        data(
            daemon={
                "state_dir": str(tmp_path / "state"),
                "log_level": "warning",
                "store": "postgresql://jw@db.example.com:5432/jobs?sslmode=require",
                "store_password_file": "pg",
            },
            api={"listen": "[::]:8787", "token_file": "token", "max_batch": 7, "max_body": 1000},
            accounts=[
                account(rate_limit=0.5, request_timeout=0.001),
                account(name="t", auth="token", token_file="token"),
                account(
                    name="i",
                    auth="iam-password",
                    iam_endpoint="https://iam.example.com",
                    domain="d",
                    user="u",
                    password_file="pw",
                ),
            ],
            polling={
                "initial_delay": 0,
                "min_interval": "250ms",
                "max_interval": "1h30m",
                "multiplier": 1,
                "jitter": 0.123456789,
                "timeout": 1 / 3,
                "not_found_grace": 1e-9,
                "retention": "2d",
            },
            sinks=[
                {"type": "log", "types": ["jobwatchd.job.transition"], "labels": {"a.b": "c"}},
                {"type": "file", "path": "t.jsonl", "fsync": "never", "name": "f"},
                {"type": "webhook", "url": "https://h", "secret_file": "hook", "batch_max": 3},
                {"type": "acme", "topic": "x", "nested": {"k": [1, 2]}, "routes": [{"x": 1}]},
            ],
        ),
        source=tmp_path / "jobwatchd.toml",
    )
    text = render_effective(config)
    assert "[[sinks]]" in text
    assert "[[accounts]]" in text
    assert roundtrip(config) == config


def test_render_round_trips_defaults_and_empty_sinks() -> None:
    assert roundtrip(load_config(None, environ={})) == load_config(None, environ={})
    empty = parse(data(sinks=[]))
    assert roundtrip(empty) == empty


finite_seconds = st.floats(min_value=0, max_value=3650 * 86400, allow_nan=False)


@given(
    initial_delay=finite_seconds,
    min_interval=st.floats(min_value=1e-6, max_value=3650 * 86400),
    timeout=st.floats(min_value=1e-6, max_value=3650 * 86400),
    retention=finite_seconds,
)
def test_render_round_trips_any_duration(
    initial_delay: float, min_interval: float, timeout: float, retention: float
) -> None:
    config = dataclasses.replace(
        parse(data()),
        polling=PollingConfig(
            initial_delay=initial_delay,
            min_interval=min_interval,
            max_interval=max(min_interval, 60.0),
            timeout=timeout,
            retention=retention,
        ),
    )
    assert roundtrip(config).polling == config.polling


def test_render_uses_readable_units() -> None:
    rendered = tomllib.loads(render_effective(parse(data())))
    assert rendered["api"]["max_body"] == "1MiB"
    assert rendered["polling"]["min_interval"] == "2s"
    assert rendered["polling"]["retention"] == "7d"
    assert rendered["accounts"][0]["request_timeout"] == "10s"


# --- the shipped config files --------------------------------------------------


def test_example_config_loads(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace("/etc/jobwatchd/", f"{tmp_path}/")
    path = tmp_path / "jobwatchd.toml"
    path.write_text(text)
    write_secret(tmp_path / "staging-token", "token")
    write_secret(tmp_path / "eu-password", "password")
    write_secret(tmp_path / "webhook-secret", WEBHOOK_SECRET)
    config = load_config(path, environ=ENV)
    assert [(a.name, a.auth) for a in config.accounts] == [
        ("default", "aksk"),
        ("staging", "token"),
        ("eu", "iam-password"),
    ]
    assert [(s.type, s.name) for s in config.sinks] == [
        ("log", "journal"),
        ("file", "file"),
        ("webhook", "ops-hook"),
    ]
    file_options, hook_options = config.sinks[1].options, config.sinks[2].options
    assert isinstance(file_options, FileOptions)
    assert isinstance(hook_options, WebhookOptions)
    assert file_options.path == Path("/var/lib/jobwatchd/transitions.jsonl")
    assert hook_options.secret_files == (tmp_path / "webhook-secret",)
    assert config.sinks[2].filter.terminal_only is True
    assert dict(config.sinks[2].filter.labels) == {"team": "platform"}
    assert config.polling == PollingConfig()
    assert roundtrip(config) == config


def test_example_config_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    keys = {
        "daemon": [f.name for f in dataclasses.fields(DaemonConfig)],
        "api": [f.name for f in dataclasses.fields(ApiConfig)],
        "accounts": [f.name for f in dataclasses.fields(AccountConfig)],
        "polling": [f.name for f in dataclasses.fields(PollingConfig)],
        "sinks": [
            *("type", "name", "types", "statuses", "terminal_only", "labels", "path", "fsync"),
            *("url", "secret", "secrets", "secret_file", "secret_files", "timeout"),
            *("max_retry_age", "concurrency", "batch_max"),
        ],
    }
    missing = [
        f"{section}.{key}"
        for section, names in keys.items()
        for key in names
        if f"\n{key} = " not in text and f"\n# {key} = " not in text
    ]
    assert missing == []
    for mode in ("aksk", "token", "iam-password", "none"):
        assert f'auth = "{mode}"' in text


def test_simulate_config_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(SIMULATE, environ={})
    assert config.daemon.state_dir == tmp_path / "state"
    assert config.default_account == AccountConfig(
        name="default",
        endpoint="http://127.0.0.1:8788",
        project_id="0123456789abcdef0123456789abcdef",
        auth="none",
        rate_limit=50.0,
        request_timeout=5.0,
    )
    assert (config.polling.min_interval, config.polling.max_interval) == (1.0, 10.0)
    assert [s.type for s in config.sinks] == ["log", "file"]
    file_options = config.sinks[1].options
    assert isinstance(file_options, FileOptions)
    assert file_options.path == tmp_path / "state" / "transitions.jsonl"
    assert config.api.listen == "127.0.0.1:8787"


def test_secret_repr_is_masked() -> None:
    secret = Secret(WEBHOOK_SECRET)
    assert secret == WEBHOOK_SECRET
    assert WEBHOOK_SECRET not in repr(secret)


# --- services: region, endpoints, rate limits ------------------------------------


def test_a_region_places_every_service_at_its_own_host() -> None:
    config = parse(data(accounts=[account(endpoint=None, region="cn-north-4")]))
    acct = config.default_account
    assert acct.endpoint_of("ecs") == "https://ecs.cn-north-4.myhuaweicloud.com"
    assert acct.endpoint_of("evs") == "https://evs.cn-north-4.myhuaweicloud.com"
    assert acct.endpoint_of("geminidb") == "https://gaussdb-nosql.cn-north-4.myhuaweicloud.com"
    assert set(acct.services) == set(SERVICES)


def test_endpoint_and_endpoints_override_the_derived_hosts() -> None:
    config = parse(
        data(
            accounts=[
                account(
                    endpoint="https://ecs-proxy.internal",
                    region="eu-west-101",
                    endpoints={"cce": "https://cce.internal/prefix/"},
                )
            ]
        )
    )
    acct = config.default_account
    assert acct.endpoint_of("ecs") == "https://ecs-proxy.internal"
    assert acct.endpoint_of("cce") == "https://cce.internal/prefix"
    assert acct.endpoint_of("evs") == "https://evs.eu-west-101.myhuaweicloud.eu"
    assert acct.endpoint_of("dcs") == "https://dcs.eu-west-101.myhuaweicloud.com"


def test_without_a_region_an_account_polls_only_what_it_names() -> None:
    acct = parse(data()).default_account
    assert acct.services == ("ecs",)
    assert acct.endpoint_of("evs") is None
    only_evs = parse(data(accounts=[account(endpoint=None, endpoints={"evs": "https://e"})]))
    assert only_evs.default_account.services == ("evs",)


def test_open_telekom_cloud_offers_only_some_services() -> None:
    acct = parse(data(accounts=[account(endpoint=None, region="eu-de")])).default_account
    assert acct.endpoint_of("ecs") == "https://ecs.eu-de.otc.t-systems.com"
    assert acct.endpoint_of("cce") is None  # not known there: the account cannot poll it
    assert "cce" not in acct.services and "evs" in acct.services


def test_a_domain_suffix_replaces_the_vendors() -> None:
    acct = parse(
        data(accounts=[account(endpoint=None, region="cn-north-4", domain_suffix="cloud.corp")])
    ).default_account
    assert acct.endpoint_of("rds") == "https://rds.cn-north-4.cloud.corp"


def test_rate_limits_apply_per_service() -> None:
    acct = parse(
        data(accounts=[account(rate_limit=8, rate_limits={"cce": 2, "sfs-turbo": 0.5})])
    ).default_account
    assert (acct.rate_limit_of("ecs"), acct.rate_limit_of("cce")) == (8, 2)
    assert acct.rate_limit_of("sfs-turbo") == 0.5
    by_service = acct.rate_limits_by_service(share=2)
    assert set(by_service) == set(SERVICES)
    assert (by_service["ecs"], by_service["cce"]) == (4, 1)


def test_services_settings_survive_the_effective_config() -> None:
    config = parse(
        data(
            accounts=[
                account(
                    region="cn-north-4",
                    domain_suffix="cloud.corp",
                    endpoints={"sfs-turbo": "https://sfs.internal"},
                    rate_limits={"cce": 2, "sfs-turbo": 1},
                )
            ]
        )
    )
    again = roundtrip(config)
    assert again == config
    assert dict(again.default_account.endpoints) == {"sfs-turbo": "https://sfs.internal"}
    assert dict(again.default_account.rate_limits) == {"cce": 2, "sfs-turbo": 1}
    rendered = render_effective(config)
    assert '[accounts.endpoints]\nsfs-turbo = "https://sfs.internal"' in rendered
    assert "[accounts.rate_limits]\ncce = 2\n" in rendered
