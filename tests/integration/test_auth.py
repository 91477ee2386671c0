"""AK/SK signing against the official SDK, and both authenticators against the
simulator on real sockets (plain HTTP, and HTTPS with a private CA)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import trustme
from huaweicloudsdkcore.auth.credentials import (  # type: ignore[import-untyped]
    BasicCredentials,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from jobwatchd.cloud.auth import AkSkAuth, AkSkCredentials, AuthError, IamPasswordAuth
from jobwatchd.cloud.client import UpstreamClient
from jobwatchd.cloud.signing import format_sdk_date, parse_authorization, sign
from jobwatchd.cloud.simulator import DEFAULT_PROJECT_ID, Simulator, start_simulator
from jobwatchd.config import AccountConfig, ConfigError
from jobwatchd.outcome import OutcomeKind
from tests.helpers.signing import AK, DATE, NOW, SK, ours, sdk_sign

SECURITY_TOKEN = "st-gQ2Ew-temporary-credential-token-77c1"
PASSWORD = "pw-Vf93-iam-password-never-logged"
DOMAIN, USER = "acme", "jobwatch-bot"


# ------------------------------------------------------------ signing vs SDK


JSON = {"Content-Type": "application/json;charset=UTF-8"}
MATRIX: list[tuple[str, str, list[tuple[str, str]], dict[str, str], bytes]] = [
    ("GET", f"/v1/{DEFAULT_PROJECT_ID}/jobs/{'a' * 32}", [], {}, b""),
    ("GET", "/", [], {}, b""),
    ("get", "/v1/p/jobs/j/", [], {}, b""),  # trailing slash, lower-case method
    ("GET", "/v1/p/servers", [("limit", "10"), ("marker", "abc"), ("flavor", "s6")], {}, b""),
    ("GET", "/v1/p/servers", [("tag", "b"), ("tag", "a"), ("tag", "a b")], {}, b""),
    (
        "GET",
        "/v1/p/x",
        [("q", "a+b c/d?e=f&g"), ("é", "中文"), ("e", ""), ("~t", "*!'()")],
        {},
        b"",
    ),
    ("GET", "/v1/a%2Fb/c", [], {}, b""),  # an encoded slash splits, as in the SDK
    ("GET", "/v1/%E4%B8%AD/x~y;z,w@v:u", [], {}, b""),
    ("DELETE", "/v1/p/cloudservers/s1", [("delete_publicip", "true")], {}, b""),
    ("HEAD", "/v1/p/jobs/j", [], {"X-Request-Id": "  padded value  "}, b""),
    ("POST", "/v1/p/cloudservers", [], JSON, b'{"server": {"name": "x"}}'),
    ("PUT", "/v1/p/cloudservers/s1", [], {**JSON, "X-Language": "en-us"}, b'{"a":1}'),
    ("PATCH", "/v1/p/x", [], {"Content-Type": "text/plain"}, b"raw text body"),  # unsigned
    ("POST", "/v1/p/x", [], {"Content-Type": "application/octet-stream"}, b"\x00\x01"),
    ("POST", "/v1/p/x", [], {}, b"no content type"),
    ("GET", "/v1/p/x", [], {"X_Not_Signed": "1", "X-Auth-Ok": "2", "accept": "*/*"}, b""),
    ("GET", "/v1/p/x", [], {"Host": "other.example.com:8443"}, b""),  # explicit Host wins
    ("GET", "/v1/p/x", [], {"X-Unicode": "naïve ☃"}, b""),
]


@pytest.mark.parametrize(("method", "path", "query", "headers", "body"), MATRIX)
@pytest.mark.parametrize("authority", ["ecs.ap-southeast-1.myhuaweicloud.com", "127.0.0.1:8788"])
def test_authorization_equals_the_official_sdk(
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    body: bytes,
    authority: str,
) -> None:
    url = URL(f"https://{authority}{path}").with_query(query)
    mine = ours(method, url, headers, body)
    theirs = sdk_sign(method, url, headers, body)
    assert mine["Authorization"] == theirs["Authorization"]
    assert mine["Authorization"].startswith(f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=")
    # Every header the SDK added, we add, with the same value.
    for name, value in mine.items():
        assert theirs[name] == value, name
    assert set(theirs) == set(headers) | set(mine)


header_names = st.text(
    alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789-_"), min_size=1
).filter(lambda name: name.lower() not in {"host", "x-sdk-date", "content-type"})
header_values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)


@settings(max_examples=150, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    segments=st.lists(st.text(min_size=1, max_size=8), max_size=4),
    query=st.lists(st.tuples(st.text(max_size=6), st.text(max_size=6)), max_size=4),
    headers=st.dictionaries(header_names, header_values, max_size=4).filter(
        lambda h: len({name.lower() for name in h}) == len(h)
    ),
    body=st.binary(max_size=40),
)
def test_authorization_equals_the_sdk_for_any_request(
    method: str,
    segments: list[str],
    query: list[tuple[str, str]],
    headers: dict[str, str],
    body: bytes,
) -> None:
    url = URL.build(scheme="https", host="ecs.example.com", path="/" + "/".join(segments))
    url = url.with_query(query)
    assert (
        ours(method, url, headers, body)["Authorization"]
        == (sdk_sign(method, url, headers, body)["Authorization"])
    )


@pytest.mark.parametrize("security_token", [None, SECURITY_TOKEN])
async def test_aksk_auth_adds_what_the_sdk_credentials_add(security_token: str | None) -> None:
    url = URL(f"https://ecs.example.com/v1/{DEFAULT_PROJECT_ID}/jobs/{'b' * 32}")
    credentials = AkSkCredentials(AK, SK, security_token)
    auth = AkSkAuth(lambda: credentials, project_id=DEFAULT_PROJECT_ID, now=lambda: NOW)
    headers: dict[str, str] = {}
    await auth.apply("GET", url, headers)
    sdk = BasicCredentials(AK, SK, DEFAULT_PROJECT_ID)
    if security_token is not None:
        sdk = sdk.with_security_token(security_token)
    assert headers == sdk_sign("GET", url, {}, b"", sdk)
    assert headers["X-Project-Id"] == DEFAULT_PROJECT_ID
    assert headers.get("X-Security-Token") == security_token
    if security_token is not None:
        assert "x-security-token" in headers["Authorization"]


def signed_get(auth: AkSkAuth, url: URL, headers: dict[str, str] | None = None) -> dict[str, str]:
    """The headers ``auth.apply`` adds for a GET (it never suspends)."""
    headers = {} if headers is None else headers
    with pytest.raises(StopIteration):
        auth.apply("GET", url, headers).send(None)
    return headers


PLAIN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
plain_ids = st.text(alphabet=st.sampled_from(PLAIN), min_size=1, max_size=64)


@settings(max_examples=150, deadline=None)
@given(
    project=plain_ids,
    job=plain_ids,
    token=st.none() | st.text(alphabet=st.sampled_from(PLAIN + "+/="), min_size=1, max_size=40),
    authority=st.sampled_from(["ecs.ap-southeast-1.myhuaweicloud.com", "127.0.0.1:8788"]),
    trailing_slash=st.booleans(),
)
def test_poll_signing_equals_the_sdk_for_any_job_url(
    project: str, job: str, token: str | None, authority: str, trailing_slash: bool
) -> None:
    # Polls take a shortcut past the general canonicalisation: it must agree.
    url = URL(f"https://{authority}/v1/{project}/jobs/{job}" + "/" * trailing_slash)
    credentials = AkSkCredentials(AK, SK, token)
    auth = AkSkAuth(lambda: credentials, project_id="fallback", now=lambda: NOW)
    # The project comes from a .../v1/{project}/jobs/{job} path, else the account's.
    sdk = BasicCredentials(AK, SK, "fallback" if trailing_slash else project)
    if token is not None:
        sdk = sdk.with_security_token(token)
    assert signed_get(auth, url) == sdk_sign("GET", url, {}, b"", sdk)


def test_polls_skip_the_general_signer_and_other_requests_use_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    def counting_sign(**kwargs: Any) -> dict[str, str]:
        calls.append(kwargs["url"].raw_path)
        return sign(**kwargs)

    monkeypatch.setattr("jobwatchd.cloud.auth.sign", counting_sign)
    auth = AkSkAuth(lambda: AkSkCredentials(AK, SK), project_id=DEFAULT_PROJECT_ID)
    job_url = URL(f"https://ecs.example.com/v1/{DEFAULT_PROJECT_ID}/jobs/{'c' * 32}")
    polled = signed_get(auth, job_url)
    assert calls == []
    # On the system clock: X-Sdk-Date is this second (or the one before, at a boundary).
    dated = datetime.strptime(polled["X-Sdk-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - dated).total_seconds()) < 5
    encoded = URL("https://ecs.example.com/v1/p/jobs/a%2Fb", encoded=True)
    signed_get(auth, encoded)
    signed_get(auth, job_url.with_query(limit="1"))
    signed_get(auth, job_url, {"X-Request-Id": "r1"})
    assert calls == ["/v1/p/jobs/a%2Fb", job_url.raw_path, job_url.raw_path]


def test_signing_is_pure_and_dated_by_the_caller() -> None:
    url = URL("https://ecs.example.com/v1/p/jobs/j")
    first = ours("GET", url, {}, b"")
    assert first == ours("GET", url, {}, b"")
    assert first["X-Sdk-Date"] == DATE
    assert first["Host"] == "ecs.example.com"
    same_instant = NOW.astimezone(timezone(timedelta(hours=8)))
    assert sign(method="GET", url=url, headers={}, ak=AK, sk=SK, now=same_instant) == first
    later = sign(method="GET", url=url, headers={}, ak=AK, sk=SK, now=NOW + timedelta(seconds=1))
    assert later["Authorization"] != first["Authorization"]
    other_key = sign(method="GET", url=url, headers={}, ak=AK, sk=SK + "x", now=NOW)
    assert other_key["Authorization"] != first["Authorization"]
    assert format_sdk_date(datetime(2026, 1, 2, 3, 4, 5)) == "20260102T030405Z"
    parsed = parse_authorization(first["Authorization"])
    assert parsed is not None
    assert parsed[0] == AK
    assert parsed[1] == ["host", "x-sdk-date"]
    assert parse_authorization("Bearer abc") is None
    with pytest.raises(ValueError, match="X-Sdk-Date"):
        sign(method="GET", url=url, headers={"x-sdk-date": DATE}, ak=AK, sk=SK, now=NOW)
    with pytest.raises(ValueError, match="twice"):
        sign(method="GET", url=url, headers={"X-A": "1", "x-a": "2"}, ak=AK, sk=SK, now=NOW)


def test_no_repr_shows_a_secret() -> None:
    credentials = AkSkCredentials(AK, SK, SECURITY_TOKEN)
    iam = IamPasswordAuth(
        iam_endpoint="https://iam.example.com",
        domain=DOMAIN,
        user=USER,
        password=lambda: PASSWORD,
        project_id=DEFAULT_PROJECT_ID,
    )
    texts = [
        repr(credentials),
        str(credentials),
        repr(AkSkAuth(lambda: credentials, project_id="p")),
    ]
    texts.append(repr(iam))
    for text in texts:
        for secret in (SK, SECURITY_TOKEN, PASSWORD):
            assert secret not in text
    assert AK in repr(credentials)  # the key ID is not a secret, and helps


# -------------------------------------------------------- credential sources


def secret_file(path: Path, content: str) -> Path:
    path.write_text(content + "\n")
    path.chmod(0o600)
    return path


def aksk_account(**changes: Any) -> AccountConfig:
    return AccountConfig(
        name="a", endpoint="https://ecs.example.com", project_id="p1", auth="aksk", **changes
    )


async def applied(auth: AkSkAuth) -> dict[str, str]:
    headers: dict[str, str] = {}
    await auth.apply("GET", URL("https://ecs.example.com/v1/p1/jobs/j"), headers)
    return headers


async def test_aksk_from_the_sdk_environment_variables() -> None:
    environ = {
        "HUAWEICLOUD_SDK_AK": AK,
        "HUAWEICLOUD_SDK_SK": SK,
        "HUAWEICLOUD_SDK_SECURITY_TOKEN": SECURITY_TOKEN,
    }
    headers = await applied(AkSkAuth.for_account(aksk_account(), "accounts[0]", environ))
    assert f"Access={AK}," in headers["Authorization"]
    assert headers["X-Security-Token"] == SECURITY_TOKEN
    assert headers["X-Project-Id"] == "p1"


async def test_aksk_files_win_and_ignore_the_environment_token(tmp_path: Path) -> None:
    account = aksk_account(
        ak_file=secret_file(tmp_path / "ak", "AKFROMFILE"),
        sk_file=secret_file(tmp_path / "sk", SK),
    )
    environ = {"HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SECURITY_TOKEN": SECURITY_TOKEN}
    headers = await applied(AkSkAuth.for_account(account, "accounts[0]", environ))
    assert "Access=AKFROMFILE," in headers["Authorization"]
    assert "X-Security-Token" not in headers  # that token belongs to the environment's AK
    with_token = aksk_account(
        ak_file=account.ak_file,
        sk_file=account.sk_file,
        security_token_file=secret_file(tmp_path / "st", SECURITY_TOKEN),
    )
    headers = await applied(AkSkAuth.for_account(with_token, "accounts[0]", {}))
    assert headers["X-Security-Token"] == SECURITY_TOKEN


def test_missing_aksk_refuses_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        AkSkAuth.for_account(aksk_account(), "accounts[2]", {"HUAWEICLOUD_SDK_AK": AK})
    assert error.value.key == "accounts[2].sk_file"
    with pytest.raises(ConfigError) as error:
        AkSkAuth.for_account(aksk_account(ak_file=tmp_path / "nope"), "accounts[1]", {})
    assert error.value.key == "accounts[1].ak_file"


# ------------------------------------------------ AK/SK against the simulator


@pytest.fixture
async def served() -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """Serve simulators on 127.0.0.1 (optionally HTTPS); returns their base URL."""
    runners = []

    async def serve(sim: Simulator, ssl_context: ssl.SSLContext | None = None) -> str:
        runner, port = await start_simulator(sim, ssl_context=ssl_context)
        runners.append(runner)
        return f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"

    yield serve
    for runner in runners:
        await runner.cleanup()


def client(url: str, auth: Any, ca_file: Path | None = None) -> UpstreamClient:
    return UpstreamClient(endpoint=url, auth=auth, pool_size=8, request_timeout=5, ca_file=ca_file)


async def test_signed_queries_pass_the_simulator_and_bad_ones_get_the_gateway_401(
    served: Callable[..., Awaitable[str]], tmp_path: Path
) -> None:
    sim = Simulator(speed=100, seed=3, credentials={AK: SK})
    url = await served(sim)
    job_id = sim.create_job("createServer", count=2)
    sk_file = secret_file(tmp_path / "sk", "not-the-secret-key")

    def load() -> AkSkCredentials:
        return AkSkCredentials(AK, sk_file.read_text().strip())

    upstream = client(url, AkSkAuth(load, project_id=DEFAULT_PROJECT_ID))
    stale = client(
        url,
        AkSkAuth(
            lambda: AkSkCredentials(AK, SK),
            project_id=DEFAULT_PROJECT_ID,
            now=lambda: datetime.now(UTC) - timedelta(minutes=16),
        ),
    )
    await upstream.start()
    await stale.start()
    try:
        refused = await upstream.query(DEFAULT_PROJECT_ID, job_id)
        assert refused.kind is OutcomeKind.UNAUTHORIZED
        assert refused.error is not None
        assert refused.error.code == "APIGW.0301"
        assert refused.error.http_status == 401
        assert "signature" in refused.error.message
        assert SK not in refused.error.message
        assert sim.stats["unauthorized"] == 1  # unchanged file: no retry

        secret_file(sk_file, SK)  # rotated on disk: the 401 reloads it and retries once
        accepted = await upstream.query(DEFAULT_PROJECT_ID, job_id)
        assert accepted.kind is OutcomeKind.OBSERVED
        assert sim.stats["unauthorized"] == 2
        assert sim.stats["ok"] == 1

        expired = await stale.query(DEFAULT_PROJECT_ID, job_id)
        assert expired.kind is OutcomeKind.UNAUTHORIZED
        assert expired.error is not None and "x-sdk-date" in expired.error.message
    finally:
        await upstream.close()
        await stale.close()


# ---------------------------------------------------------- IAM password


class Clocks:
    """One settable time for the simulator (wall) and the authenticator (monotonic)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def iam_auth(url: str, clocks: Clocks, **changes: Any) -> IamPasswordAuth:
    options: dict[str, Any] = {
        "iam_endpoint": url,
        "domain": DOMAIN,
        "user": USER,
        "password": lambda: PASSWORD,
        "project_id": DEFAULT_PROJECT_ID,
        "clock": clocks,
        "wall_clock": clocks,
    }
    return IamPasswordAuth(**(options | changes))


async def test_iam_token_is_shared_refreshed_before_expiry_and_after_a_401(
    served: Callable[..., Awaitable[str]],
) -> None:
    clocks = Clocks()
    sim = Simulator(
        speed=1, seed=4, clock=clocks, iam_users={(DOMAIN, USER): PASSWORD}, token_lifetime=100
    )
    url = await served(sim)
    job_id = sim.create_job(duration=10_000)
    auth = iam_auth(url, clocks)
    upstream = client(url, auth)
    await upstream.start()

    async def poll_all(count: int) -> None:
        outcomes = await asyncio.gather(
            *(upstream.query(DEFAULT_PROJECT_ID, job_id) for _ in range(count))
        )
        assert all(o.kind is OutcomeKind.OBSERVED for o in outcomes), outcomes

    try:
        await poll_all(30)  # 30 pollers start together: one token request
        assert sim.stats["iam_tokens"] == 1
        clocks.now += 70  # 30 of 100 s left: not yet
        await poll_all(5)
        assert sim.stats["iam_tokens"] == 1
        clocks.now += 6  # under a quarter left: one shared refresh
        await poll_all(30)
        assert sim.stats["iam_tokens"] == 2
        assert sim.stats["unauthorized"] == 0

        clocks.now += 20
        sim.revoke_tokens()  # e.g. the password changed: every poll gets a 401 once
        await poll_all(30)
        assert sim.stats["iam_tokens"] == 3, "one refresh for all the refused pollers"
        assert sim.stats["unauthorized"] == 30
        assert auth.refreshes == 3
    finally:
        await upstream.close()


async def test_a_fresh_token_that_is_refused_is_not_refreshed_in_a_loop(
    served: Callable[..., Awaitable[str]],
) -> None:
    clocks = Clocks()
    sim = Simulator(speed=1, seed=5, clock=clocks, iam_users={(DOMAIN, USER): PASSWORD})
    url = await served(sim)
    job_id = sim.create_job(duration=10_000)
    # Scoped to another project: IAM gives a token, the job API refuses it.
    upstream = client(url, iam_auth(url, clocks, project_id="another-project"))
    await upstream.start()
    try:
        for _ in range(3):
            outcome = await upstream.query(DEFAULT_PROJECT_ID, job_id)
            assert outcome.kind is OutcomeKind.UNAUTHORIZED
            assert outcome.error is not None and outcome.error.code == "APIGW.0301"
        assert sim.stats["iam_tokens"] == 1
    finally:
        await upstream.close()


async def test_iam_refusal_is_a_transient_poll_error_backed_off_without_the_password(
    served: Callable[..., Awaitable[str]],
) -> None:
    clocks = Clocks()
    sim = Simulator(speed=1, seed=6, clock=clocks, iam_users={(DOMAIN, USER): "other-password"})
    url = await served(sim)
    job_id = sim.create_job(duration=10_000)
    upstream = client(url, iam_auth(url, clocks))
    await upstream.start()
    try:
        outcomes = await asyncio.gather(
            *(upstream.query(DEFAULT_PROJECT_ID, job_id) for _ in range(10))
        )
        outcomes.append(await upstream.query(DEFAULT_PROJECT_ID, job_id))  # within the backoff
        for outcome in outcomes:
            assert outcome.kind is OutcomeKind.TRANSIENT
            assert outcome.error is not None
            assert outcome.error.code == "AuthError"
            assert "HTTP 401" in outcome.error.message
            assert "The username or password is wrong." in outcome.error.message
            assert PASSWORD not in outcome.error.message
        assert sim.stats["iam_refused"] == 1, "one request, then backoff"
        assert sim.stats["ok"] + sim.stats["unauthorized"] == 0, "no query without a token"

        sim.iam_users[(DOMAIN, USER)] = PASSWORD
        clocks.now += 1.5  # past the first backoff
        assert (await upstream.query(DEFAULT_PROJECT_ID, job_id)).kind is OutcomeKind.OBSERVED
    finally:
        await upstream.close()


async def test_a_failed_refresh_keeps_the_token_while_it_is_valid(
    served: Callable[..., Awaitable[str]],
) -> None:
    clocks = Clocks()
    sim = Simulator(
        speed=1, seed=7, clock=clocks, iam_users={(DOMAIN, USER): PASSWORD}, token_lifetime=100
    )
    url = await served(sim)
    job_id = sim.create_job(duration=10_000)
    auth = iam_auth(url, clocks)
    upstream = client(url, auth)
    await upstream.start()
    try:
        assert (await upstream.query(DEFAULT_PROJECT_ID, job_id)).kind is OutcomeKind.OBSERVED
        sim.iam_users.clear()  # IAM now refuses: refreshing fails
        clocks.now += 80
        for _ in range(3):
            assert (await upstream.query(DEFAULT_PROJECT_ID, job_id)).kind is OutcomeKind.OBSERVED
        assert sim.stats["iam_refused"] == 1, "retried after a backoff, not per poll"
        assert not await auth.invalidate(), "a 401 does not hurry IAM during the backoff"
        assert sim.stats["iam_refused"] == 1
        clocks.now += 25  # the token expired and no new one can be had
        with pytest.raises(AuthError, match="HTTP 401"):
            await auth.apply("GET", URL(url), {})
    finally:
        await upstream.close()


def test_iam_account_with_unreadable_password_file_refuses_naming_the_key(tmp_path: Path) -> None:
    account = AccountConfig(
        name="iam",
        endpoint="https://ecs.example.com",
        project_id="p1",
        auth="iam-password",
        iam_endpoint="https://iam.example.com",
        domain=DOMAIN,
        user=USER,
        password_file=tmp_path / "missing",
    )
    with pytest.raises(ConfigError) as error:
        IamPasswordAuth.for_account(account, "accounts[3]")
    assert error.value.key == "accounts[3].password_file"


# ----------------------------------------------------------------- ca_file


@pytest.fixture(scope="module")
def private_ca() -> trustme.CA:
    return trustme.CA()


def https_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


async def test_ca_file_is_what_lets_tls_verification_pass(
    served: Callable[..., Awaitable[str]], private_ca: trustme.CA, tmp_path: Path
) -> None:
    sim = Simulator(speed=100, seed=8, credentials={AK: SK}, iam_users={(DOMAIN, USER): PASSWORD})
    url = await served(sim, https_context(private_ca))
    ca_file = tmp_path / "ca.pem"
    private_ca.cert_pem.write_to_path(str(ca_file))
    job_id = sim.create_job()
    aksk = AkSkAuth(lambda: AkSkCredentials(AK, SK), project_id=DEFAULT_PROJECT_ID)

    without = client(url, aksk)
    await without.start()
    try:
        refused = await without.query(DEFAULT_PROJECT_ID, job_id)
    finally:
        await without.close()
    assert refused.kind is OutcomeKind.TRANSIENT
    assert refused.error is not None and "certificate" in refused.error.message.lower()
    assert sim.stats["ok"] == 0

    trusted = client(url, aksk, ca_file=ca_file)
    await trusted.start()
    try:
        assert (await trusted.query(DEFAULT_PROJECT_ID, job_id)).kind is OutcomeKind.OBSERVED
    finally:
        await trusted.close()

    # The IAM endpoint is verified the same way.
    def iam(ca: Path | None) -> IamPasswordAuth:
        return IamPasswordAuth(
            iam_endpoint=url,
            domain=DOMAIN,
            user=USER,
            password=lambda: PASSWORD,
            project_id=DEFAULT_PROJECT_ID,
            ca_file=ca,
        )

    with pytest.raises(AuthError, match=r"(?i)certificate"):
        await iam(None).apply("GET", URL(url), {})
    headers: dict[str, str] = {}
    await iam(ca_file).apply("GET", URL(url), headers)
    assert headers["X-Auth-Token"] in sim.issued_tokens()


async def test_project_header_follows_the_job_url() -> None:
    auth = AkSkAuth(lambda: AkSkCredentials(AK, SK), project_id="account-project")
    headers: dict[str, str] = {}
    await auth.apply("GET", URL("https://ecs.example.com/v1/job-project/jobs/j1"), headers)
    assert headers["X-Project-Id"] == "job-project"
    headers = {}
    await auth.apply("GET", URL("https://ecs.example.com/v3/projects"), headers)
    assert headers["X-Project-Id"] == "account-project"
