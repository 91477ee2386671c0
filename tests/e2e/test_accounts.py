"""End to end with real credentials: the daemon as a subprocess against the
simulator verifying AK/SK signatures (over HTTPS with a private CA) and issuing
short-lived IAM tokens; several accounts, one of them throttled; and no secret
in any output."""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from jobwatchd.cloud.simulator import DEFAULT_PROJECT_ID, Simulator
from tests.helpers.cli import cli
from tests.helpers.config import secret_file, write_accounts_config
from tests.helpers.daemon import DaemonProcess
from tests.helpers.events import (
    TERMINAL_STATUSES,
    all_terminal,
    check_against_simulator,
    job_statuses,
    read_events,
)
from tests.helpers.http import http
from tests.helpers.servers import simulator_in_thread
from tests.helpers.waiting import wait_until

SECOND_PROJECT = "second-project-0002"
DOMAIN, USER = "acme", "jobwatch-bot"

AK, SK = "AKFILEACCOUNT0001", "sk-file-Qm81-never-logged"
AK_ENV, SK_ENV = "AKENVACCOUNT00002", "sk-env-Yt42-never-logged"
SECURITY_TOKEN = "st-file-8Hc-temporary-never-logged"
SECURITY_TOKEN_ENV = "st-env-3Kd-temporary-never-logged"
PASSWORD = "pw-iam-Lr6-never-logged"


def create_jobs(sim: Simulator, project_id: str, durations: list[float]) -> list[str]:
    return [
        sim.create_job("createServer", project_id=project_id, count=2, duration=d)
        for d in durations
    ]


def register(daemon: DaemonProcess, item: dict[str, Any]) -> dict[str, Any]:
    status, body, _ = http("POST", f"{daemon.url}/v1/jobs", item)
    assert status == 201, body
    assert isinstance(body, dict)
    return body


def job(daemon: DaemonProcess, job_id: str) -> dict[str, Any]:
    status, body, _ = http("GET", f"{daemon.url}/v1/jobs/{job_id}")
    assert status == 200, body
    assert isinstance(body, dict)
    return body


@pytest.fixture
def private_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon under test talks to 127.0.0.1 directly, whatever the environment."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.mark.usefixtures("no_proxy")
def test_aksk_accounts_over_https_with_ca_file_and_registration_routing(
    tmp_path: Path,
    private_ca: trustme.CA,
    daemon_factory: Callable[[Path], DaemonProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two AK/SK accounts (credential files; the SDK's environment variables,
    with temporary credentials) against a simulator that verifies every
    signature, over HTTPS trusted only through ``ca_file``. Registration
    picks the account by name, by project, or the first one."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    private_ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    private_ca.cert_pem.write_to_path(str(ca_file))
    sim = Simulator(speed=100, seed=21, credentials={AK: SK, AK_ENV: SK_ENV})
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", AK_ENV)
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", SK_ENV)
    monkeypatch.setenv("HUAWEICLOUD_SDK_SECURITY_TOKEN", SECURITY_TOKEN_ENV)
    with simulator_in_thread(sim, ssl_context=context) as cloud:
        config = write_accounts_config(
            tmp_path / "c.toml",
            tmp_path / "state",
            [
                {
                    "name": "files",
                    "endpoint": cloud.url,
                    "project_id": DEFAULT_PROJECT_ID,
                    "auth": "aksk",
                    "ak_file": secret_file(tmp_path / "ak", AK),
                    "sk_file": secret_file(tmp_path / "sk", SK),
                    "security_token_file": secret_file(tmp_path / "st", SECURITY_TOKEN),
                    "ca_file": str(ca_file),
                },
                {
                    "name": "env",
                    "endpoint": cloud.url,
                    "project_id": SECOND_PROJECT,
                    "auth": "aksk",
                    "ca_file": str(ca_file),
                },
            ],
        )
        daemon = daemon_factory(config)
        daemon.start()
        first = create_jobs(sim, DEFAULT_PROJECT_ID, [80, 120, 160, 200])
        second = create_jobs(sim, SECOND_PROJECT, [80, 120, 160, 200])

        status, problem, _ = http(
            "POST", f"{daemon.url}/v1/jobs", {"job_id": first[0], "account": "nope"}
        )
        assert status == 400
        assert problem["field"] == "account"
        for job_id in first:  # no account, no project: the first account
            assert register(daemon, {"job_id": job_id})["account"] == "files"
        for job_id in second[:2]:  # by name: its project too
            body = register(daemon, {"job_id": job_id, "account": "env"})
            assert (body["account"], body["project_id"]) == ("env", SECOND_PROJECT)
        for job_id in second[2:]:  # by project
            assert register(daemon, {"job_id": job_id, "project_id": SECOND_PROJECT})[
                "account"
            ] == ("env")
        jobs = first + second
        wait_until(lambda: all_terminal(daemon, jobs), timeout=30, what="all jobs terminal")
        assert daemon.stop() == 0

    assert sim.stats["unauthorized"] == 0, "every signature verified"
    assert sim.project_stats[DEFAULT_PROJECT_ID]["ok"] > 0
    assert sim.project_stats[SECOND_PROJECT]["ok"] > 0
    check_against_simulator(read_events(tmp_path / "state" / "events.jsonl"), sim, jobs)
    log = daemon.log_path.read_text()
    for secret in (SK, SK_ENV, SECURITY_TOKEN, SECURITY_TOKEN_ENV):
        assert secret not in log


@pytest.mark.usefixtures("no_proxy")
def test_iam_tokens_expire_during_the_run_without_a_failed_poll(
    tmp_path: Path, daemon_factory: Callable[[Path], DaemonProcess]
) -> None:
    """IAM tokens living 3 s, jobs running 4-7 s: the daemon refreshes ahead of
    expiry, so not one poll is refused."""
    sim = Simulator(speed=100, seed=22, iam_users={(DOMAIN, USER): PASSWORD}, token_lifetime=3.0)
    with simulator_in_thread(sim) as cloud:
        config = write_accounts_config(
            tmp_path / "c.toml",
            tmp_path / "state",
            [
                {
                    "name": "iam",
                    "endpoint": cloud.url,
                    "project_id": DEFAULT_PROJECT_ID,
                    "auth": "iam-password",
                    "iam_endpoint": cloud.url,
                    "domain": DOMAIN,
                    "user": USER,
                    "password_file": secret_file(tmp_path / "password", PASSWORD),
                }
            ],
        )
        daemon = daemon_factory(config)
        daemon.start()
        jobs = create_jobs(sim, DEFAULT_PROJECT_ID, [400, 450, 500, 550, 600, 650, 700])
        status, body, _ = http(
            "POST", f"{daemon.url}/v1/jobs", {"jobs": [{"job_id": j} for j in jobs]}
        )
        assert status == 201, body
        wait_until(lambda: all_terminal(daemon, jobs), timeout=30, what="all jobs terminal")
        assert daemon.stop() == 0

    records = daemon.log_records()
    refreshes = [r for r in records if r.get("event") == "iam.token_refreshed"]
    assert sim.stats["iam_tokens"] >= 3, "tokens expired during the run"
    assert len(refreshes) == sim.stats["iam_tokens"]
    assert {r["reason"] for r in refreshes} <= {"initial", "expiring"}
    assert sim.stats["unauthorized"] == 0
    assert sim.stats["ok"] > 50
    print(f"iam: {sim.stats['iam_tokens']} tokens, {sim.stats['ok']} polls, none refused")
    failed = [r for r in records if r.get("event") in {"poll.failed", "poll.unauthorized"}]
    assert failed == []
    check_against_simulator(read_events(tmp_path / "state" / "events.jsonl"), sim, jobs)
    log = daemon.log_path.read_text()
    for secret in (PASSWORD, *sim.issued_tokens()):
        assert secret not in log


@pytest.mark.usefixtures("no_proxy")
def test_a_throttled_account_pauses_alone(
    tmp_path: Path, daemon_factory: Callable[[Path], DaemonProcess]
) -> None:
    """One account's project answers 403 APIGW.0308 with Retry-After 5: that
    account pauses, keeps the gateway's error as its jobs' last_error, and the
    other account's jobs are seen to end as fast as without throttling."""
    sim = Simulator(speed=100, seed=23)
    sim.faults.retry_after = 5.0
    sim.throttle_project(SECOND_PROJECT, status=403)
    with simulator_in_thread(sim) as cloud:
        config = write_accounts_config(
            tmp_path / "c.toml",
            tmp_path / "state",
            [
                {
                    "name": "calm",
                    "endpoint": cloud.url,
                    "project_id": DEFAULT_PROJECT_ID,
                    "auth": "none",
                },
                {
                    "name": "busy",
                    "endpoint": cloud.url,
                    "project_id": SECOND_PROJECT,
                    "auth": "none",
                },
            ],
        )
        daemon = daemon_factory(config)
        daemon.start()
        calm = create_jobs(sim, DEFAULT_PROJECT_ID, [100, 130, 160, 190, 220, 250])
        busy = create_jobs(sim, SECOND_PROJECT, [100, 130, 160, 190, 220, 250])
        throttled_from = time.monotonic()
        status, body, _ = http(
            "POST",
            f"{daemon.url}/v1/jobs",
            {
                "jobs": [{"job_id": j} for j in calm]
                + [{"job_id": j, "account": "busy"} for j in busy]
            },
        )
        assert status == 201, body
        wait_until(lambda: all_terminal(daemon, calm), timeout=30, what="calm jobs terminal")

        def busy_paused() -> bool:
            _, ready, _ = http("GET", f"{daemon.url}/readyz")
            accounts = ready["accounts"]
            return bool(accounts["busy"]["paused_for"] > 0 and accounts["calm"]["paused_for"] == 0)

        wait_until(busy_paused, timeout=10, what="busy paused, calm not")
        current = job_statuses(daemon)
        assert not any(current[j] in TERMINAL_STATUSES for j in busy)
        for job_id in busy:
            error = job(daemon, job_id)["last_error"]
            assert error is not None
            assert (error["code"], error["http_status"]) == ("APIGW.0308", 403)
            assert error["message"].startswith("The throttling threshold has been reached")
        throttled_for = time.monotonic() - throttled_from
        refused = sim.project_stats[SECOND_PROJECT]["throttled"]

        sim.unthrottle_project(SECOND_PROJECT)
        wait_until(lambda: all_terminal(daemon, busy), timeout=30, what="busy jobs terminal")
        assert daemon.stop() == 0

    # At most one query per job per Retry-After while throttled, and never faster.
    assert 0 < refused <= len(busy) * (throttled_for / 5.0 + 1)
    events = read_events(tmp_path / "state" / "events.jsonl")
    check_against_simulator(events, sim, calm + busy)
    # Only "busy" was ever paused: "calm" polled on while "busy" waited.
    pauses = [r for r in daemon.log_records() if r.get("event") == "account.throttled"]
    assert pauses and {r["account"] for r in pauses} == {"busy"}
    assert all(r["error_code"] == "APIGW.0308" for r in pauses)


def raw_get(url: str) -> str:
    """Status, headers and body of a GET, as text, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return f"{resp.status} {dict(resp.headers)} {resp.read().decode()}"
    except urllib.error.HTTPError as err:
        return f"{err.code} {dict(err.headers)} {err.read().decode()}"


@pytest.mark.usefixtures("no_proxy")
def test_no_secret_appears_in_any_output(
    tmp_path: Path, daemon_factory: Callable[[Path], DaemonProcess]
) -> None:
    """Good and bad AK/SK, security token, IAM password (right and wrong),
    issued IAM tokens and a token file: none of them in the daemon's log, the
    API's answers (job objects with their last_error, /readyz, /metrics), the
    events, or check-config; while the failures behind them are reported."""
    static_token = "tok-static-Jw5-never-logged"
    bad_sk = "sk-wrong-Pe2-never-logged"
    bad_password = "pw-wrong-Zs9-never-logged"
    sim = Simulator(
        speed=100,
        seed=24,
        token=static_token,
        credentials={AK: SK, AK_ENV: SK_ENV},
        iam_users={(DOMAIN, USER): PASSWORD},
        token_lifetime=1.5,
    )
    secrets = [SK, SECURITY_TOKEN, bad_sk, PASSWORD, bad_password, static_token]
    projects = [f"project-{n}" for n in range(5)]
    with simulator_in_thread(sim) as cloud:

        def account(name: str, project: str, auth: str, **more: str) -> dict[str, Any]:
            return {"name": name, "endpoint": cloud.url, "project_id": project, "auth": auth} | more

        iam = {"iam_endpoint": cloud.url, "domain": DOMAIN, "user": USER}
        config = write_accounts_config(
            tmp_path / "c.toml",
            tmp_path / "state",
            [
                account(
                    "aksk",
                    projects[0],
                    "aksk",
                    ak_file=secret_file(tmp_path / "ak", AK),
                    sk_file=secret_file(tmp_path / "sk", SK),
                    security_token_file=secret_file(tmp_path / "st", SECURITY_TOKEN),
                ),
                account(
                    "aksk-bad",
                    projects[1],
                    "aksk",
                    ak_file=secret_file(tmp_path / "ak-bad", AK_ENV),
                    sk_file=secret_file(tmp_path / "sk-bad", bad_sk),
                ),
                account(
                    "iam",
                    projects[2],
                    "iam-password",
                    password_file=secret_file(tmp_path / "pw", PASSWORD),
                    **iam,
                ),
                account(
                    "iam-bad",
                    projects[3],
                    "iam-password",
                    password_file=secret_file(tmp_path / "pw-bad", bad_password),
                    **iam,
                ),
                account(
                    "token",
                    projects[4],
                    "token",
                    token_file=secret_file(tmp_path / "token", static_token),
                ),
            ],
        )
        daemon = daemon_factory(config)
        daemon.start()
        jobs = {project: create_jobs(sim, project, [60, 250]) for project in projects}
        status, body, _ = http(
            "POST",
            f"{daemon.url}/v1/jobs",
            {"jobs": [{"job_id": j, "project_id": p} for p, ids in jobs.items() for j in ids]},
        )
        assert status == 201, body
        good = jobs[projects[0]] + jobs[projects[2]] + jobs[projects[4]]
        wait_until(lambda: all_terminal(daemon, good), timeout=30, what="good accounts done")
        wait_until(lambda: sim.stats["iam_tokens"] >= 2, timeout=10, what="a token refresh")

        def failing(project: str) -> list[dict[str, Any]]:
            errors = [job(daemon, j)["last_error"] for j in jobs[project]]
            return errors if all(errors) else []

        aksk_errors = wait_until(lambda: failing(projects[1]), timeout=10, what="401s")
        assert {(e["code"], e["http_status"]) for e in aksk_errors} == {("APIGW.0301", 401)}
        iam_errors = wait_until(lambda: failing(projects[3]), timeout=10, what="IAM refusals")
        assert all(e["code"] == "AuthError" for e in iam_errors)
        assert all("username or password is wrong" in e["message"] for e in iam_errors)

        outputs = [daemon.log_path.read_text(), (tmp_path / "state" / "events.jsonl").read_text()]
        for path in ("/v1/jobs?limit=1000", "/readyz", "/metrics", "/healthz"):
            outputs.append(raw_get(f"{daemon.url}{path}"))
        assert "APIGW.0301" in outputs[2], "job objects carry their last_error"
        outputs += [repr(job(daemon, j)) for ids in jobs.values() for j in ids]
        assert daemon.stop() == 0
        outputs.append(daemon.log_path.read_text())

    checked = cli("check-config", "-c", str(config), timeout=30)
    assert checked.returncode == 0, checked.stderr
    assert str(tmp_path / "sk") in checked.stdout  # secrets are shown by path
    outputs += [checked.stdout, checked.stderr]

    logged = {r.get("event") for r in daemon.log_records()}
    assert {"iam.token_refreshed", "iam.token_failed", "poll.unauthorized"} <= logged
    issued = sim.issued_tokens()
    assert len(issued) >= 2
    everything = "\n".join(outputs)
    for secret in [*secrets, *issued]:
        assert secret not in everything, "a secret leaked"


@pytest.mark.usefixtures("no_proxy")
def test_error_matrix_end_to_end(
    tmp_path: Path, daemon_factory: Callable[[Path], DaemonProcess]
) -> None:
    """One job through every kind of upstream failure: each is
    kept as its last_error with the vendor's code and message and logged with
    them, none is a transition, and only a lasting 404 ends the job."""
    sim = Simulator(speed=100, seed=25)
    sim.faults.retry_after = 0.2  # Retry-After: 1
    with simulator_in_thread(sim) as cloud:
        config = write_accounts_config(
            tmp_path / "c.toml",
            tmp_path / "state",
            [
                {
                    "name": "main",
                    "endpoint": cloud.url,
                    "project_id": DEFAULT_PROJECT_ID,
                    "auth": "none",
                }
            ],
        )
        daemon = daemon_factory(config)
        daemon.start()
        job_id = sim.create_job(duration=100_000)
        sim.faults.no_status = 1.0
        register(daemon, {"job_id": job_id})

        def failed_with(code: str | None, http_status: int | set[int], message: str) -> None:
            expected = {http_status} if isinstance(http_status, int) else http_status

            def seen() -> dict[str, Any] | None:
                current = job(daemon, job_id)
                error = current["last_error"]
                if error and error["code"] == code and error["http_status"] in expected:
                    return current
                return None

            current = wait_until(seen, timeout=10, what=f"last_error {code} {http_status}")
            assert message in current["last_error"]["message"]
            assert (current["status"], current["history"]) == ("PENDING", [])

        # Each switch sets the next fault before clearing the last (faults are
        # drawn in a fixed order, authentication first), so no clean answer slips in.
        failed_with("Common.0021", 200, "Failed to obtain the job.")  # code/message, no status
        sim.faults.error_5xx = 1.0
        sim.faults.no_status = 0.0
        failed_with("Common.0001", {500, 502, 503}, "System error.")
        sim.faults.malformed = 1.0
        sim.faults.error_5xx = 0.0
        failed_with(None, 200, "malformed JSON body")
        sim.token = "now-required"
        sim.faults.malformed = 0.0
        failed_with("Common.0013", 401, "Invalid token.")
        sim.faults.throttle = 1.0
        sim.token = None
        failed_with("APIGW.0308", 429, "The throttling threshold has been reached")
        sim.faults.not_found = 1.0
        sim.faults.throttle = 0.0
        final = job(daemon, job_id)
        if final["status"] != "NOT_FOUND":
            status, final, _ = http("GET", f"{daemon.url}/v1/jobs/{job_id}?wait=10")
            assert status == 200
        assert (final["status"], final["terminal"]) == ("NOT_FOUND", True)
        assert final["last_error"]["code"] == "Common.0011"
        assert final["last_error"]["http_status"] == 404
        wait_until(
            lambda: read_events(tmp_path / "state" / "events.jsonl"), timeout=10, what="event"
        )
        assert daemon.stop() == 0

    events = read_events(tmp_path / "state" / "events.jsonl")
    assert [(e["data"]["from"], e["data"]["to"]) for e in events] == [(None, "NOT_FOUND")]
    logged = {
        (r["event"], r.get("error_code"))
        for r in daemon.log_records()
        if r.get("job_id") == job_id and "error_code" in r
    }
    assert {
        ("poll.failed", "Common.0021"),
        ("poll.failed", "Common.0001"),
        ("poll.failed", None),
        ("poll.unauthorized", "Common.0013"),
        ("account.throttled", "APIGW.0308"),
        ("poll.not_found", "Common.0011"),
    } <= logged
