"""Which browser-sent requests the API refuses: a pure decision, case by case."""

from __future__ import annotations

import pytest

from jobwatchd.config import ApiConfig, ConfigError, parse_config
from jobwatchd.http.origin import OriginPolicy, browser_refusal

LOOPBACK = OriginPolicy.for_api(ApiConfig(listen="127.0.0.1:8787"))
WILDCARD = OriginPolicy.for_api(ApiConfig(listen="0.0.0.0:8787"))
PROXIED = OriginPolicy.for_api(
    ApiConfig(listen="0.0.0.0:8787", allowed_hosts=("jobs.example", "10.0.0.5"))
)
UNIX = OriginPolicy.for_api(ApiConfig(listen="unix:/run/jobwatchd/api.sock"))


def _status(
    policy: OriginPolicy,
    host: str = "127.0.0.1:8787",
    *,
    method: str = "GET",
    origin: str | None = None,
    fetch_site: str | None = None,
    content_type: str | None = None,
) -> int:
    refusal = browser_refusal(
        policy,
        method=method,
        host=host,
        origin=origin,
        fetch_site=fetch_site,
        content_type=content_type,
    )
    return 200 if refusal is None else refusal[0]


@pytest.mark.parametrize(
    ("policy", "host", "status"),
    [
        (LOOPBACK, "127.0.0.1:8787", 200),
        (LOOPBACK, "localhost:8787", 200),
        (LOOPBACK, "[::1]:8787", 200),
        (LOOPBACK, "evil.example", 421),
        (LOOPBACK, "evil.example:8787", 421),
        (LOOPBACK, "127.0.0.1.evil.example", 421),
        (LOOPBACK, "", 421),
        (LOOPBACK, "[not-an-address", 421),
        (WILDCARD, "203.0.113.7:8787", 200),
        (WILDCARD, "any.name", 200),
        (PROXIED, "jobs.example", 200),
        (PROXIED, "10.0.0.5:8787", 200),
        (PROXIED, "127.0.0.1:8787", 200),
        (PROXIED, "203.0.113.7:8787", 421),
        (UNIX, "anything", 200),
    ],
)
def test_host_must_name_this_daemon(policy: OriginPolicy, host: str, status: int) -> None:
    assert _status(policy, host) == status


@pytest.mark.parametrize(
    ("policy", "host", "origin", "fetch_site", "status"),
    [
        (LOOPBACK, "127.0.0.1:8787", "http://127.0.0.1:8787", "same-origin", 200),
        (LOOPBACK, "localhost:8787", "http://localhost:8787", None, 200),
        (LOOPBACK, "127.0.0.1:8787", "http://evil.example", None, 403),
        (LOOPBACK, "127.0.0.1:8787", "http://127.0.0.1:3000", "same-site", 403),
        (LOOPBACK, "127.0.0.1:8787", "null", None, 403),
        (LOOPBACK, "127.0.0.1:8787", "file://", None, 403),
        (LOOPBACK, "127.0.0.1:8787", None, "cross-site", 403),
        (LOOPBACK, "127.0.0.1:8787", None, "none", 200),
        (WILDCARD, "203.0.113.7:8787", "http://203.0.113.7:8787", None, 200),
        (WILDCARD, "203.0.113.7:8787", "http://evil.example", None, 403),
        (PROXIED, "jobs.example", "https://jobs.example", None, 200),
        (PROXIED, "10.0.0.5:8787", "https://jobs.example", None, 200),
        (PROXIED, "jobs.example", "https://evil.example", None, 403),
    ],
)
def test_only_this_daemons_own_pages_may_call(
    policy: OriginPolicy, host: str, origin: str | None, fetch_site: str | None, status: int
) -> None:
    assert _status(policy, host, origin=origin, fetch_site=fetch_site) == status


@pytest.mark.parametrize(
    ("method", "content_type", "status"),
    [
        ("POST", "text/plain", 415),
        ("POST", "text/plain;charset=UTF-8", 415),
        ("POST", " Text/Plain ", 415),
        ("POST", "multipart/form-data; boundary=x", 415),
        ("DELETE", "text/plain", 415),
        ("POST", "application/json", 200),
        ("POST", "application/json; charset=utf-8", 200),
        # curl -d sends this; a form cannot make a JSON body out of it.
        ("POST", "application/x-www-form-urlencoded", 200),
        ("POST", None, 200),
        ("GET", "text/plain", 200),
    ],
)
def test_form_only_bodies_are_refused(method: str, content_type: str | None, status: int) -> None:
    assert _status(LOOPBACK, method=method, content_type=content_type) == status


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            ["Jobs.Example", "10.0.0.5", "[::1]", "jobwatchd"],
            ("jobs.example", "10.0.0.5", "::1", "jobwatchd"),
        ),
        ([], ()),
    ],
)
def test_allowed_hosts_are_normalised(value: list[str], expected: tuple[str, ...]) -> None:
    config = parse_config({"api": {"allowed_hosts": value}, "accounts": [_ACCOUNT]})
    assert config.api.allowed_hosts == expected


_ACCOUNT = {"name": "a", "endpoint": "https://ecs.example", "project_id": "p", "auth": "none"}


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("jobs.example", "api.allowed_hosts"),
        ([1], "api.allowed_hosts[0]"),
        (["http://jobs.example"], "api.allowed_hosts[0]"),
        (["jobs.example:8787"], "api.allowed_hosts[0]"),
        (["*.example"], "api.allowed_hosts[0]"),
        (["ok.example", "bad name"], "api.allowed_hosts[1]"),
        (["a" * 254], "api.allowed_hosts[0]"),
    ],
)
def test_bad_allowed_hosts_name_the_entry(value: object, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"api": {"allowed_hosts": value}, "accounts": [_ACCOUNT]})
    assert caught.value.key == key
