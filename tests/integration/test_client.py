"""The client library against the real daemon (in-process, or a subprocess for
the synchronous client) and the simulator: every call, typed errors, events
resuming exactly after a restart, and waits that survive one."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from jobwatchd.client import (
    CANCELLED,
    FAILED,
    SUCCEEDED,
    ApiError,
    AsyncClient,
    Client,
    Conflict,
    ConnectionFailed,
    Event,
    JobFailed,
    JobProgress,
    JobSpec,
    JobUnresolved,
    NotTracked,
    Unauthorized,
    UsageError,
    WaitTimeout,
)
from jobwatchd.cloud.simulator import DEFAULT_PROJECT_ID
from tests.helpers.config import write_config
from tests.helpers.daemon import DaemonProcess, InProcessDaemon, running_daemon
from tests.helpers.servers import RunningSimulator
from tests.helpers.waiting import async_wait_until


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory for a Unix socket (its path is limited to ~100 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="jwc-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@asynccontextmanager
async def daemon_on(
    tmp_path: Path, sim: RunningSimulator, sock: Path
) -> AsyncIterator[InProcessDaemon]:
    """The in-process daemon on a Unix socket, so that a restart (the same
    state directory) answers at the same address."""
    async with running_daemon(tmp_path, sim, listen=f"unix:{sock}") as daemon:
        yield daemon


async def test_register_get_list_cancel_and_typed_errors(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    async with running_daemon(tmp_path, simulator) as daemon, AsyncClient(daemon.url) as client:
        one = await client.register("single-job")
        assert one.created == 1 and [job.job_id for job in one.jobs] == ["single-job"]

        ids = [f"batch-{n}" for n in range(5)]
        batch = await client.register(
            ids,
            labels={"team": "db"},
            account="default",
            project_id=DEFAULT_PROJECT_ID,
            timeout=600,
        )
        assert batch.created == 5 and [job.job_id for job in batch.jobs] == ids
        assert all(job.labels == {"team": "db"} for job in batch.jobs)
        again = await client.register([JobSpec(job_id="batch-0", labels={"team": "db"})])
        assert again.created == 0

        job = await client.get("batch-3")
        assert (job.job_id, job.project_id, job.account) == (
            "batch-3",
            DEFAULT_PROJECT_ID,
            "default",
        )
        assert job.raw["labels"] == {"team": "db"}

        listed = [job.job_id async for job in client.list(labels={"team": "db"}, page_size=2)]
        assert sorted(listed) == ids  # three pages, nothing twice
        assert [job.job_id async for job in client.list(labels={"team": "none"})] == []

        await client.cancel("batch-3")
        with pytest.raises(NotTracked) as gone:
            await client.get("batch-3")
        assert gone.value.status == 404 and "not tracked" in (gone.value.detail or "")
        with pytest.raises(NotTracked):
            await client.cancel("batch-3")

        with pytest.raises(ApiError) as invalid:
            await client.register(["ok-id", "not an id!"])
        assert (invalid.value.status, invalid.value.field) == (400, "jobs[1].job_id")
        assert invalid.value.title == "Invalid request"
        with pytest.raises(ApiError) as unknown_account:
            await client.register("x", account="nobody")
        assert unknown_account.value.field == "jobs[0].account"
        with pytest.raises(Conflict):
            await client.register("single-job", project_id="another-project")
        with pytest.raises(UsageError):
            await client.register([])
        with pytest.raises(NotTracked):  # the refused batch stored nothing
            await client.get("ok-id")


async def test_a_token_is_sent_and_its_absence_is_typed(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    async with running_daemon(tmp_path, simulator, token="s3cret-token") as daemon:
        async with AsyncClient(daemon.url) as anonymous:
            with pytest.raises(Unauthorized) as refused:
                await anonymous.get("any")
            assert refused.value.status == 401
        async with AsyncClient(daemon.url, token="s3cret-token") as client:
            assert (await client.register("with-token")).created == 1
    async with AsyncClient("127.0.0.1:9") as nowhere:
        with pytest.raises(ConnectionFailed):
            await nowhere.get("any")


async def test_wait_outcomes_and_errors(tmp_path: Path, simulator: RunningSimulator) -> None:
    sim = simulator.sim
    ok = sim.create_job("createServer", count=2, duration=50)
    failing = sim.create_job("createServer", count=2, fail=True, duration=50)
    slow = sim.create_job("deleteServer", duration=50_000)
    unknown = "0" * 32  # the cloud never heard of it: NOT_FOUND after the grace
    async with running_daemon(tmp_path, simulator) as daemon, AsyncClient(daemon.url) as client:
        await client.register([ok, failing, slow, unknown])

        result = await client.wait([ok], timeout=30)
        assert result.ok and result.outcomes == (SUCCEEDED,)
        assert result.jobs[0].status == "SUCCESS" and len(result.jobs[0].sub_jobs) == 2

        with pytest.raises(JobFailed) as failed:
            await client.wait([ok, failing], timeout=30)
        assert failed.value.job.job_id == failing and failed.value.job.status == "FAIL"
        assert [sub.status for sub in failed.value.failed_sub_jobs] == ["FAIL"]
        assert failed.value.result.outcomes == (SUCCEEDED, FAILED)

        with pytest.raises(JobUnresolved) as unresolved:
            await client.wait(unknown, timeout=30)
        assert unresolved.value.job.status == "NOT_FOUND"

        with pytest.raises(WaitTimeout) as timed_out:
            await client.wait([ok, slow], timeout=0.3)
        assert [job.job_id for job in timed_out.value.unfinished] == [slow]

        quiet = await client.wait([ok, failing], timeout=30, raise_on_failure=False)
        assert quiet.exit_code == 1

        with pytest.raises(NotTracked):
            await client.wait(["never-registered"])
        with pytest.raises(UsageError):
            await client.wait([])


async def test_wait_notices_a_cancel_at_once(tmp_path: Path, simulator: RunningSimulator) -> None:
    slow = simulator.sim.create_job("deleteServer", duration=50_000)
    async with running_daemon(tmp_path, simulator) as daemon, AsyncClient(daemon.url) as client:
        await client.register(slow)
        read = asyncio.Event()
        waiting = asyncio.create_task(
            client.wait(slow, timeout=100, on_update=lambda _progress: read.set())
        )
        await asyncio.wait_for(read.wait(), 10)
        await client.cancel(slow)
        # Well below the 30 s a re-check would take: only a long-poll sees it this soon.
        with pytest.raises(JobUnresolved) as cancelled:
            await asyncio.wait_for(waiting, 10)
        assert cancelled.value.result.outcomes == (CANCELLED,)
        assert cancelled.value.result.exit_code == 4


async def test_events_resume_exactly_across_a_restart(
    tmp_path: Path, simulator: RunningSimulator, short_dir: Path
) -> None:
    sock = short_dir / "api.sock"
    sim = simulator.sim
    first = sim.create_job("createServer", count=2, duration=30)
    received: list[Event] = []
    retries: list[str] = []

    def ended(job_id: str) -> bool:
        return any(e.job_id == job_id and e.sub_job_id is None and e.terminal for e in received)

    async with AsyncClient(f"unix:{sock}") as client:

        async def collect() -> None:
            async for event in client.events(since=0, on_retry=retries.append):
                received.append(event)

        async with daemon_on(tmp_path, simulator, sock):
            await client.register(first)
            collecting = asyncio.create_task(collect())
            await async_wait_until(lambda: ended(first), 20, what="first job's last event")
        # The daemon is gone; the stream reconnects until it is back.
        await async_wait_until(lambda: retries, 20, what="a reconnect attempt")
        second = sim.create_job("addNics", count=3, duration=30)
        async with daemon_on(tmp_path, simulator, sock):
            await client.register(second)
            await async_wait_until(lambda: ended(second), 30, what="second job's last event")
            collecting.cancel()
            recorded = [event async for event in client.events(since=0, follow=False)]
    seqs = [event.seq for event in received]
    assert len(set(seqs)) == len(seqs), "an event was repeated"
    assert [(e.seq, e.id) for e in received] == [(e.seq, e.id) for e in recorded], "lost one"
    assert {e.job_id for e in received} == {first, second}


async def test_wait_survives_a_restart_and_starts_again_from_saved_ids(
    tmp_path: Path, simulator: RunningSimulator, short_dir: Path
) -> None:
    sock = short_dir / "api.sock"
    job = simulator.sim.create_job("createServer", count=2, duration=600)
    other = simulator.sim.create_job("createServer", count=1, duration=600)
    seen: list[JobProgress] = []
    retries: list[str] = []
    async with AsyncClient(f"unix:{sock}") as client:
        async with daemon_on(tmp_path, simulator, sock):
            await client.register([job, other])
            waiting = asyncio.create_task(
                client.wait(job, timeout=60, on_update=seen.append, on_retry=retries.append)
            )
            await async_wait_until(lambda: seen, 10, what="the wait's first read")
        await async_wait_until(lambda: retries, 20, what="the wait reconnecting")
        assert not waiting.done()
        async with daemon_on(tmp_path, simulator, sock):
            result = await asyncio.wait_for(waiting, 40)
            assert result.ok and result.jobs[0].job_id == job
            # Another process, knowing only the saved id, attaches to the tracked job.
            async with AsyncClient(f"unix:{sock}") as later:
                again = await later.wait(other, timeout=40)
            assert again.ok


def test_the_sync_client_from_a_plain_script(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    daemon_factory: Callable[[Path], DaemonProcess],
) -> None:
    config = write_config(
        tmp_path / "c.toml", endpoint=threaded_simulator.url, state_dir=tmp_path / "state"
    )
    daemon = daemon_factory(config)
    address = daemon.start()
    sim = threaded_simulator.sim
    ok = sim.create_job("createServer", count=2, duration=30)
    failing = sim.create_job("createServer", count=1, fail=True, duration=30)
    with Client(address) as client:
        registration = client.register([ok, failing], labels={"run": "sync"})
        assert registration.created == 2
        assert client.wait(ok, timeout=30).ok
        with pytest.raises(JobFailed) as failed:
            client.wait([ok, failing], timeout=30)
        assert failed.value.job.job_id == failing
        assert client.get(ok).status == "SUCCESS"
        first = next(iter(client.list(labels={"run": "sync"}, page_size=1)))  # closed early
        assert first.job_id in (ok, failing)
        assert sorted(job.job_id for job in client.list(labels={"run": "sync"})) == sorted(
            [ok, failing]
        )
        events = list(client.events(since=0, jobs=[ok], follow=False))
        assert events and all(event.job_id == ok for event in events)
        assert events[-1].terminal and events[-1].to_status == "SUCCESS"
        client.cancel(ok)
        with pytest.raises(NotTracked):
            client.get(ok)

        async def from_a_running_loop() -> str:  # as in a notebook: asyncio.run would refuse
            return client.get(failing).status

        assert asyncio.run(from_a_running_loop()) == "FAIL"
