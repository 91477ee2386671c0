"""``jobwatchd wait`` for pipelines, against the real daemon (a subprocess), the
simulator and a stand-in cloud account: every exit code, the JSON summary,
attaching to tracked jobs, a cancel noticed at once and a deadline that
outlasts the daemon."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from tests.helpers.cli import INSTALLED as JOBWATCHD
from tests.helpers.cli import Terminal
from tests.helpers.config import simulator_endpoints, write_config
from tests.helpers.daemon import DaemonProcess
from tests.helpers.hostile_upstream import job_document
from tests.helpers.servers import RunningSimulator, app_in_thread
from tests.helpers.waiting import wait_until

PARTIAL_JOB = "partial-job"
REJECTED_JOB = "rejected-job"


def cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "JOBWATCHD_CONFIG"}
    return subprocess.run(
        [*JOBWATCHD, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


async def _standin_job(request: web.Request) -> web.Response:
    """A cloud whose ``partial-*`` jobs end SUCCESS with one failed sub-job and
    whose ``rejected-*`` queries are refused (the daemon ends them ERROR)."""
    job_id = request.match_info["job_id"]
    if job_id.startswith("rejected"):
        return web.json_response({"error": {"code": "Ecs.0005", "message": "bad"}}, status=400)
    subs = [
        {"job_id": "sub-ok", "status": "SUCCESS", "job_type": "createSingleServer",
         "entities": {"server_id": "s-1"}, "error_code": None, "fail_reason": None},
        {"job_id": "sub-bad", "status": "FAIL", "job_type": "createSingleServer",
         "entities": {"errorcode_message": "quota"}, "error_code": "Ecs.0001",
         "fail_reason": "The number of ECSs is beyond the quota limit."},
    ]  # fmt: skip
    document = job_document(
        job_id,
        "SUCCESS",
        end_time="2026-01-01T00:01:00.000Z",
        entities={"sub_jobs_total": 2, "sub_jobs": subs},
    )
    return web.json_response(document)


@pytest.fixture
def standin_cloud() -> Iterator[str]:
    """The stand-in cloud's URL (a real aiohttp server on its own thread)."""
    app = web.Application()
    app.router.add_get("/v1/{project_id}/jobs/{job_id}", _standin_job)
    with app_in_thread(app, name="standin-cloud") as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def daemon(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    standin_cloud: str,
    daemon_factory: Callable[[Path], DaemonProcess],
) -> DaemonProcess:
    """A daemon polling the simulator (account ``default``) and the stand-in
    cloud (account ``standin``)."""
    standin = f"""
[[accounts]]
name = "standin"
endpoint = "{standin_cloud}"
project_id = "standin-project"
auth = "none"
request_timeout = "2s"
"""
    config = write_config(
        tmp_path / "c.toml",
        endpoint=threaded_simulator.url,
        state_dir=tmp_path / "state",
        extra=standin,
    )
    process = daemon_factory(config)
    process.start()
    return process


def test_every_exit_code(daemon: DaemonProcess, threaded_simulator: RunningSimulator) -> None:
    sim = threaded_simulator.sim
    ok = sim.create_job("createServer", count=2, duration=50)
    failing = sim.create_job("createServer", count=2, fail=True, duration=50)
    slow = sim.create_job("deleteServer", duration=50_000)
    unknown = "0" * 32  # the simulator never heard of it: NOT_FOUND after the grace
    api = ["--api", str(daemon.address)]
    assert cli("register", ok, failing, slow, unknown, *api).returncode == 0
    standin = cli("register", PARTIAL_JOB, REJECTED_JOB, "--account", "standin", *api)
    assert standin.returncode == 0, standin.stderr

    success = cli("wait", "--attach", ok, *api, "--timeout", "inf")
    assert success.returncode == 0, success.stdout + success.stderr
    assert f"{ok} SUCCESS" in success.stdout

    failed = cli("wait", ok, failing, *api, "--timeout", "30")
    assert failed.returncode == 1, failed.stdout + failed.stderr

    partial = cli("wait", ok, PARTIAL_JOB, *api, "--timeout", "30", "--json")
    assert partial.returncode == 3, partial.stdout + partial.stderr
    summary = orjson.loads(partial.stdout)
    assert (summary["outcome"], summary["exit_code"]) == ("partial", 3)
    by_id = {job["job_id"]: job for job in summary["jobs"]}
    assert by_id[ok]["outcome"] == "succeeded"
    assert by_id[PARTIAL_JOB]["status"] == "SUCCESS"
    assert [sub["job_id"] for sub in by_id[PARTIAL_JOB]["failed_sub_jobs"]] == ["sub-bad"]

    # A FAIL outranks a partial success.
    assert cli("wait", PARTIAL_JOB, failing, *api, "--timeout", "30").returncode == 1

    not_found = cli("wait", unknown, *api, "--timeout", "30", "--json")
    assert not_found.returncode == 4, not_found.stdout + not_found.stderr
    (entry,) = orjson.loads(not_found.stdout)["jobs"]
    assert (entry["status"], entry["outcome"]) == ("NOT_FOUND", "unresolved")
    assert entry["job"]["status"] == "NOT_FOUND"
    error = cli("wait", REJECTED_JOB, *api, "--timeout", "30")
    assert error.returncode == 4, error.stdout + error.stderr
    assert f"{REJECTED_JOB} ERROR" in error.stdout

    timed_out = cli("wait", ok, slow, *api, "--timeout", "0.5", "--json")
    assert timed_out.returncode == 124
    assert orjson.loads(timed_out.stdout)["outcome"] == "pending"

    for usage in (
        ["wait", "never-registered", *api],  # not tracked
        ["wait", ok, "--api", "127.0.0.1:9", "--timeout", "5"],  # unreachable
        ["wait", "not an id", *api],
        ["wait", ok, "--timeout", "-1", *api],
        ["wait", ok, "--timeout", "nan", *api],
    ):
        refused = cli(*usage)
        assert refused.returncode == 2, (usage, refused.stdout, refused.stderr)
        assert refused.stderr.strip(), usage


def test_wait_notices_a_cancel_at_once(
    daemon: DaemonProcess, threaded_simulator: RunningSimulator
) -> None:
    slow = threaded_simulator.sim.create_job("deleteServer", duration=50_000)
    api = ["--api", str(daemon.address)]
    assert cli("register", slow, *api).returncode == 0
    waiting = Terminal([*JOBWATCHD, "wait", slow, "--timeout", "100", *api])
    # The live line shows a status once the job was read: the wait is under way.
    wait_until(lambda: "RUNNING" in waiting.output or "INIT" in waiting.output, 20, what="live")
    assert cli("cancel", slow, *api).returncode == 0
    # Far sooner than a 30 s re-check: the long-poll answers when the job goes.
    assert waiting.wait(timeout=10) == 4, waiting.output
    assert "no longer tracked" in waiting.output


def test_a_deadline_outlasts_a_daemon_that_went_away(
    daemon: DaemonProcess, threaded_simulator: RunningSimulator
) -> None:
    slow = threaded_simulator.sim.create_job("deleteServer", duration=50_000)
    api = ["--api", str(daemon.address)]
    assert cli("register", slow, *api).returncode == 0
    waiting = Terminal([*JOBWATCHD, "wait", slow, "--timeout", "4", *api])
    wait_until(lambda: "RUNNING" in waiting.output or "INIT" in waiting.output, 20, what="live")
    assert daemon.stop() == 0
    # It keeps reconnecting until its deadline, then reports a timeout, not an error.
    assert waiting.wait(timeout=30) == 124, waiting.output
    assert "reconnecting" in waiting.output and "timed out" in waiting.output


def free_port() -> int:
    """A port nothing listens on now (the daemon binds it, and binds it again after a restart)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_wait_completes_across_a_daemon_restart_on_the_same_port(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    daemon_factory: Callable[[Path], DaemonProcess],
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    config = write_config(
        tmp_path / "c.toml",
        endpoint=threaded_simulator.url,
        state_dir=tmp_path / "state",
        listen=listen,
    )
    daemon = daemon_factory(config)
    daemon.start()
    job = threaded_simulator.sim.create_job("createServer", count=2, duration=500)
    assert cli("register", job, "--api", listen).returncode == 0
    waiting = Terminal([*JOBWATCHD, "wait", job, "--timeout", "60", "--api", listen])
    wait_until(lambda: "RUNNING" in waiting.output or "INIT" in waiting.output, 20, what="live")
    assert daemon.stop() == 0  # mid-wait: the job has seconds to go
    assert daemon.start() == listen  # the same state directory and port
    assert waiting.wait(timeout=60) == 0, waiting.output
    assert "reconnecting" in waiting.output and "SUCCESS" in waiting.output


def test_wait_shows_each_jobs_service_and_reported_progress(
    tmp_path: Path,
    threaded_simulator: RunningSimulator,
    daemon_factory: Callable[[Path], DaemonProcess],
) -> None:
    """An IMS job reports a percentage done: the live view shows it beside the
    job's service, and the plain line at the end too."""
    config = write_config(
        tmp_path / "c.toml",
        endpoint=threaded_simulator.url,
        state_dir=tmp_path / "state",
        extra_account=simulator_endpoints(threaded_simulator.url, ["ims"]),
    )
    daemon = daemon_factory(config)
    api = ["--api", daemon.start()]
    sim = threaded_simulator.sim
    image = sim.create_job(service="ims", duration=50_000)
    assert cli("register", image, "--service", "ims", *api).returncode == 0
    waiting = Terminal([*JOBWATCHD, "wait", image, "--timeout", "100", *api])
    wait_until(
        lambda: re.search(r"\[ims\].*(INIT|RUNNING).* \d+%", waiting.output) is not None,
        20,
        what="the live line with the service and a percentage",
    )
    assert "DONE" in waiting.output
    assert cli("cancel", image, *api).returncode == 0
    assert waiting.wait(timeout=10) == 4, waiting.output
    quick = sim.create_job(service="ims", duration=20)
    plain = cli("register", quick, "--service", "ims", "--wait", "--timeout", "60", *api)
    assert plain.returncode == 0, plain.stderr
    assert re.search(rf"^{quick} \[ims\] SUCCESS", plain.stdout, re.MULTILINE), plain.stdout
