"""The HTTP API against hostile and careless clients: bad bodies, odd names, odd listen paths."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.helpers.config import write_config
from tests.helpers.daemon import InProcessDaemon as Api
from tests.helpers.daemon import running_daemon
from tests.helpers.http import PROBLEM
from tests.helpers.servers import RunningSimulator
from tests.helpers.waiting import async_wait_until, wait_until


@pytest.fixture
async def api(tmp_path: Path, simulator: RunningSimulator) -> AsyncIterator[Api]:
    async with running_daemon(tmp_path, simulator) as running:
        yield running


async def test_a_corrupt_gzip_body_is_a_400_problem(api: Api) -> None:
    good = zlib.compressobj(9, zlib.DEFLATED, 31)
    compressed = good.compress(b'{"job_id": "' + b"a" * 5000 + b'"}') + good.flush()
    corrupt = compressed[:10] + bytes(b ^ 0x5A for b in compressed[10:-8]) + compressed[-8:]
    async with api.session.post(
        api.url + "/v1/jobs",
        data=corrupt,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    ) as resp:
        assert resp.status == 400
        assert resp.content_type == PROBLEM
        assert (await resp.json(content_type=PROBLEM))["status"] == 400
    status, body, _ = await api.call("GET", "/v1/jobs")
    assert status == 200
    assert body["jobs"] == []


async def test_dead_letters_of_an_unknown_sink_are_404_and_create_no_file(api: Api) -> None:
    state_dir = api.daemon.config.daemon.state_dir
    status, body, content_type = await api.call("GET", "/v1/dead-letters?sink=nosuchsink")
    assert (status, content_type) == (404, PROBLEM)
    assert body["status"] == 404
    dead_letters = state_dir / "dead-letters"
    created = sorted(p.name for p in dead_letters.iterdir()) if dead_letters.exists() else []
    assert not [name for name in created if name.startswith("nosuchsink")]
    status, body, _ = await api.call("GET", "/v1/dead-letters?sink=file")
    assert status == 200
    assert body == {"dead_letters": []}


@pytest.mark.parametrize("kind", ["file", "socket"])
def test_unix_listen_replaces_only_a_stale_socket(
    tmp_path: Path, simulator: RunningSimulator, kind: str
) -> None:
    target = tmp_path / "api.sock"
    if kind == "file":
        target.write_text("precious\n")
    else:
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(target))
        stale.close()
    config = write_config(
        tmp_path / "c.toml",
        endpoint=simulator.url,
        state_dir=tmp_path / "state",
        listen=f"unix:{target}",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobwatchd", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    if kind == "file":
        try:
            _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
        assert proc.returncode == 2
        lines = stderr.decode().strip().splitlines()
        assert len(lines) == 1, lines
        assert "not a socket" in lines[0] and str(target) in lines[0]
        assert target.read_text() == "precious\n"
        return
    try:

        def serving() -> bool:
            probe = socket.socket(socket.AF_UNIX)
            try:
                probe.connect(str(target))
            except OSError:
                return False
            finally:
                probe.close()
            return True

        wait_until(serving, timeout=30, what="the daemon listening on the unix socket")
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    assert proc.returncode == 0


async def test_concurrent_stream_opens_never_pass_the_stream_cap(api: Api) -> None:
    hub = api.daemon.stream_hub
    hub.settings = dataclasses.replace(hub.settings, max_streams=4)
    connector = aiohttp.TCPConnector(limit=0)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        contextlib.AsyncExitStack() as opened,
    ):

        async def open_stream() -> int:
            resp = await opened.enter_async_context(session.get(api.url + "/v1/events"))
            return resp.status

        statuses = await asyncio.gather(*(open_stream() for _ in range(40)))
        assert statuses.count(200) == 4, statuses
        assert statuses.count(503) == 36, statuses
        assert hub.open_streams == 4


async def test_a_pending_long_poll_is_answered_when_the_daemon_drains(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    async with running_daemon(tmp_path, simulator) as running:
        daemon, session, url = running.daemon, running.session, running.url
        job_id = simulator.sim.create_job("createServer", duration=3600)
        async with session.post(url + "/v1/jobs", json={"job_id": job_id}) as resp:
            assert resp.status in (200, 201)
        long_poll = asyncio.create_task(session.get(f"{url}/v1/jobs/{job_id}?wait=3600"))
        await async_wait_until(
            lambda: job_id in daemon.tracker._terminal_waiters if daemon.tracker else False,
            timeout=10,
            what="the long-poll waiting",
        )
        daemon.stop_requested.set()
        async with asyncio.timeout(30):
            resp = await long_poll
            assert resp.status == 200
            body = await resp.json()
            resp.release()
            assert body["job_id"] == job_id and body["terminal"] is False


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "evil.example"}, 421),
        ({"Host": "evil.example:80"}, 421),
        ({"Origin": "http://evil.example"}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Origin": "http://127.0.0.1:1"}, 403),
        ({"Origin": "null"}, 403),
        ({"Host": "localhost"}, 200),
    ],
)
async def test_other_sites_and_rebound_names_are_refused(
    api: Api, headers: dict[str, str], status: int
) -> None:
    async with api.session.get(api.url + "/v1/jobs", headers=headers) as resp:
        assert resp.status == status
        if status != 200:
            assert resp.content_type == PROBLEM


async def test_the_daemons_own_origin_may_call(api: Api) -> None:
    async with api.session.get(api.url + "/v1/jobs", headers={"Origin": api.url}) as resp:
        assert resp.status == 200


async def test_a_text_plain_form_post_registers_nothing(api: Api) -> None:
    # <form enctype="text/plain"> in an old browser: no Origin, no Sec-Fetch-*, a JSON body.
    job_id = api.sim.sim.create_job("createServer")
    body = '{"job_id": "' + job_id + '"}'
    for content_type in ("text/plain", "multipart/form-data; boundary=x"):
        async with api.session.post(
            api.url + "/v1/jobs", data=body, headers={"Content-Type": content_type}
        ) as resp:
            assert resp.status == 415
            assert (await resp.json(content_type=PROBLEM))["status"] == 415
    assert (await api.call("GET", "/v1/jobs"))[1]["jobs"] == []
    # What `curl -d` sends is still taken.
    async with api.session.post(
        api.url + "/v1/jobs",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ) as resp:
        assert resp.status == 201


async def test_allowed_hosts_admit_a_proxys_name(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    async with running_daemon(
        tmp_path, simulator, extra_api='allowed_hosts = ["jobs.example"]'
    ) as running:
        for host, status in (
            ("jobs.example", 200),
            ("jobs.example:443", 200),
            ("evil.example", 421),
        ):
            async with running.session.get(
                running.url + "/v1/jobs", headers={"Host": host}
            ) as resp:
                assert (host, resp.status) == (host, status)


async def test_a_wildcard_listener_takes_any_host_with_its_token(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    async with running_daemon(
        tmp_path, simulator, listen="0.0.0.0:0", token="s3cret-token"
    ) as running:
        assert running.daemon.address is not None
        port = running.daemon.address.rsplit(":", 1)[1]
        async with running.session.get(
            f"http://127.0.0.1:{port}/v1/jobs",
            headers={"Host": f"203.0.113.7:{port}", "Authorization": "Bearer s3cret-token"},
        ) as resp:
            assert resp.status == 200
        async with running.session.get(
            f"http://127.0.0.1:{port}/v1/jobs", headers={"Host": f"203.0.113.7:{port}"}
        ) as resp:
            assert resp.status == 401


# -- 3. connections: idle, slow headers, slow bodies, too many ----------------------------

BOUNDS = 'max_connections = 8\nheader_timeout = "1s"\nbody_timeout = "1s"'


@pytest.fixture
async def bounded(tmp_path: Path, simulator: RunningSimulator) -> AsyncIterator[Api]:
    async with running_daemon(tmp_path, simulator, extra_api=BOUNDS) as running:
        yield running


async def _connect(api: Api) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = api.url.removeprefix("http://").rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


@pytest.mark.parametrize(
    "sent", [b"", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "], ids=["idle", "slow"]
)
async def test_idle_and_slow_header_connections_are_closed(bounded: Api, sent: bytes) -> None:
    reader, writer = await _connect(bounded)
    writer.write(sent)
    await writer.drain()
    async with asyncio.timeout(10):  # header_timeout is 1 s
        assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()


@pytest.mark.parametrize("path", [b"/v1/jobs", b"/v1/dead-letters/redeliver"])
async def test_a_slow_body_gets_408(bounded: Api, path: bytes) -> None:
    reader, writer = await _connect(bounded)
    writer.write(
        b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"job_id"'
    )
    await writer.drain()
    async with asyncio.timeout(10):  # body_timeout is 1 s
        answer = await reader.readline()
    writer.close()
    await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    status, body, _ = await bounded.call("GET", "/v1/jobs")
    assert status == 200 and body["jobs"] == []


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


async def _ask(api: Api, request: bytes) -> bytes:
    reader, writer = await _connect(api)
    writer.write(request)
    await writer.drain()
    async with asyncio.timeout(10):
        answer = await reader.read()
    writer.close()
    return answer


async def test_at_the_bound_a_health_check_displaces_the_oldest_idle_connection(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    patient = 'max_connections = 8\nheader_timeout = "60s"'
    async with running_daemon(tmp_path, simulator, extra_api=patient) as api:
        held = [await _connect(api) for _ in range(8)]
        answer = await _ask(api, HEALTHZ)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
        # The oldest idle connection made room, long before header_timeout.
        async with asyncio.timeout(10):
            assert await held[0][0].read() == b""
        assert api.daemon.health.readiness()["api"]["displaced"] == 1
        newest_reader, newest_writer = held[-1]  # the younger ones are still served
        newest_writer.write(HEALTHZ)
        async with asyncio.timeout(10):
            assert (await newest_reader.read()).startswith(b"HTTP/1.1 200")
        for _, writer in held:
            writer.close()


async def test_when_every_connection_is_serving_a_new_one_is_refused_then_capacity_comes_back(
    bounded: Api,
) -> None:
    job_id = bounded.sim.sim.create_job("createServer", duration=600)
    assert (await bounded.call("POST", "/v1/jobs", {"job_id": job_id}))[0] == 201
    await bounded.session.close()  # its pooled connection would count
    long_poll = f"GET /v1/jobs/{job_id}?wait=60 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    busy = [await _connect(bounded) for _ in range(8)]
    for _, writer in busy:
        writer.write(long_poll)
        await writer.drain()
    await async_wait_until(
        lambda: bounded.daemon.health.readiness()["api"]["serving"] == 8, 10, what="8 long-polls"
    )
    refused = await _ask(bounded, HEALTHZ)
    assert refused.startswith(b"HTTP/1.1 503"), refused[:100]
    assert bounded.daemon.health.readiness()["api"]["displaced"] == 0
    for _, writer in busy:
        writer.close()
    await async_wait_until(
        lambda: bounded.daemon.health.readiness()["api"]["connections"] == 0,
        10,
        what="them to close",
    )
    assert (await _ask(bounded, HEALTHZ)).startswith(b"HTTP/1.1 200")
