"""The upstream client against the simulator on a real socket."""

from __future__ import annotations

from pathlib import Path

import pytest
from yarl import URL

from jobwatchd.cloud.auth import NoAuth, TokenAuth
from jobwatchd.cloud.client import UpstreamClient
from jobwatchd.cloud.simulator import DEFAULT_PROJECT_ID, Simulator, start_simulator
from jobwatchd.net import proxy_for
from jobwatchd.outcome import OutcomeKind
from jobwatchd.services import SERVICES, job_url
from tests.helpers.servers import RunningSimulator


async def test_observes_a_job(simulator: RunningSimulator) -> None:
    job_id = simulator.sim.create_job("createServer", count=2)
    client = UpstreamClient(endpoint=simulator.url, auth=NoAuth(), pool_size=4, request_timeout=5)
    await client.start()
    try:
        outcome = await client.query(DEFAULT_PROJECT_ID, job_id)
    finally:
        await client.close()
    assert outcome.kind is OutcomeKind.OBSERVED
    assert outcome.response is not None
    assert outcome.response.job_type == "createServer"


@pytest.mark.parametrize("bad", ["../x", "a/b", "a?b=1", "a#b", "", "x" * 65, "a%2Fb", "é"])
def test_ids_that_could_escape_the_path_never_reach_a_url(bad: str) -> None:
    client = UpstreamClient(
        endpoint="https://ecs.example.com", auth=NoAuth(), pool_size=1, request_timeout=1
    )
    with pytest.raises(ValueError, match="invalid"):
        client.job_url(bad, "job")
    with pytest.raises(ValueError, match="invalid"):
        client.job_url("project", bad)


def test_url_is_built_under_the_configured_endpoint() -> None:
    client = UpstreamClient(
        endpoint="https://ecs.example.com/prefix", auth=NoAuth(), pool_size=1, request_timeout=1
    )
    assert str(client.job_url("p1", "j1")) == "https://ecs.example.com/prefix/v1/p1/jobs/j1"


@pytest.mark.parametrize("name", list(SERVICES))
def test_polls_query_each_service_where_its_catalogue_entry_says(name: str) -> None:
    base = f"https://{name}.example.com/prefix"
    client = UpstreamClient(endpoints={name: base}, auth=NoAuth(), pool_size=1, request_timeout=1)
    polled = client.job_url("p-1", "job_2", name)
    assert polled == job_url(name, base, "p-1", "job_2")
    assert str(polled) == str(job_url(name, base, "p-1", "job_2"))


async def test_token_file_is_reread_after_a_401(tmp_path: Path) -> None:
    sim = Simulator(speed=100, token="new-token")
    runner, port = await start_simulator(sim)
    token_file = tmp_path / "token"
    token_file.write_text("old-token\n")
    token_file.chmod(0o600)
    auth = TokenAuth(token_file)
    client = UpstreamClient(
        endpoint=f"http://127.0.0.1:{port}", auth=auth, pool_size=2, request_timeout=5
    )
    await client.start()
    try:
        job_id = sim.create_job()
        refused = await client.query(DEFAULT_PROJECT_ID, job_id)
        assert refused.kind is OutcomeKind.UNAUTHORIZED
        assert refused.error is not None and refused.error.http_status == 401
        token_file.write_text("new-token\n")  # the token was rotated on disk
        accepted = await client.query(DEFAULT_PROJECT_ID, job_id)
        assert accepted.kind is OutcomeKind.OBSERVED
        assert sim.stats["unauthorized"] == 2  # the stale token, then the one retry
    finally:
        await client.close()
        await runner.cleanup()


async def test_connection_errors_are_transient() -> None:
    client = UpstreamClient(
        endpoint="http://127.0.0.1:9", auth=NoAuth(), pool_size=1, request_timeout=2
    )
    await client.start()
    try:
        outcome = await client.query("p", "j")
    finally:
        await client.close()
    assert outcome.kind is OutcomeKind.TRANSIENT
    assert outcome.error is not None and outcome.error.http_status is None


@pytest.mark.parametrize(
    ("environ", "url", "expected"),
    [
        ({}, "https://ecs.example.com", None),
        ({"https_proxy": "http://proxy:3128"}, "https://ecs.example.com", "http://proxy:3128"),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://ecs.example.com", None),
        (
            {"https_proxy": "http://proxy:3128", "no_proxy": "example.com"},
            "https://ecs.example.com",
            None,
        ),
    ],
)
def test_proxy_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], url: str, expected: str | None
) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert proxy_for(URL(url)) == expected
