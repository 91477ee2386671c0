"""The shipped unit under a real systemd, installed the way the docs say.

One container boot for the module (systemd 252 as PID 1 of an nspawn
container, see tests/system/box.py). The "Running as a service" commands are
read from docs/operations.md and run as written, so a page that stops
working fails here. The daemon polls the built-in simulator, which runs in
the container as a transient unit.

Skipped, with one line saying why, only on a machine that cannot boot a
container at all (no root, no systemd-nspawn or mmdebstrap after
`make system-tools`); anything else that goes wrong fails.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jobwatchd.daemon import DRAIN_TIMEOUT
from tests.system.box import Box, booted_box, missing_requirement, wait_for

REPO = Path(__file__).resolve().parents[2]
OPERATIONS = REPO / "docs" / "operations.md"
UNIT = "jobwatchd.service"
CONFIG = "/etc/jobwatchd/jobwatchd.toml"
STATE = "/var/lib/private/jobwatchd"  # StateDirectory= with DynamicUser=yes
API = "http://127.0.0.1:8787"
SIM = "http://127.0.0.1:8788"
HOOK_PORT = 8790
WORKDIR = "/root/systest/src"  # the checkout's copy: the docs' paths are relative to it
RUNTIME_DROPINS = f"/run/systemd/system/{UNIT}.d"

_reason = missing_requirement()
pytestmark = pytest.mark.skipif(_reason is not None, reason=f"system test: {_reason}")


# -- docs/operations.md, as the commands to run ----------------------------------------


def doc_section(title: str) -> str:
    """docs/operations.md from the heading ``title`` to the next heading of its level."""
    text = OPERATIONS.read_text()
    level = title.split(" ", 1)[0]
    start = text.index(title + "\n")
    following = re.search(rf"^{level} ", text[start + len(title) :], re.MULTILINE)
    end = start + len(title) + following.start() if following else len(text)
    return text[start:end]


def code_blocks(section: str, language: str) -> list[list[str]]:
    """The lines of every fenced ``language`` block in ``section``."""
    pattern = rf"^```{language}\n(.*?)^```"
    return [block.splitlines() for block in re.findall(pattern, section, re.M | re.S)]


def as_root(line: str) -> str:
    """A documented command line without its ``sudo`` and its trailing comment."""
    line = re.split(r"\s+#\s", line, maxsplit=1)[0].strip()
    return line.removeprefix("sudo ").strip()


def install_commands() -> list[str]:
    """The documented install block, with the wheel directory for the package path.

    ``sudoedit`` (where the operator writes the accounts and sinks) becomes
    writing the test's config over the installed example, keeping its mode.
    """
    block = code_blocks(doc_section("## Running as a service"), "sh")[0]
    commands = []
    for line in block:
        command = as_root(line)
        if command.startswith("sudoedit "):
            path = command.split()[-1]
            command = f"cat /root/systest/jobwatchd.toml > {path}"
        command = command.replace(
            "/path/to/jobwatchd", "--no-index --find-links /root/systest/wheels jobwatchd"
        )
        if command:
            commands.append(command)
    return commands


@dataclass(frozen=True)
class SecretSteps:
    """How the docs hand a secret over: the install line, the drop-in, the config key."""

    install: str
    dropin: str
    credentials: dict[str, str]
    secret_file_line: str


def secret_steps() -> SecretSteps:
    """The documented secret steps: ``install -m 0600 ...``, the ``LoadCredential=`` drop-in
    and the ``secret_file`` line pointing at the credentials directory."""
    section = doc_section("## Running as a service")
    install = next(
        as_root(line)
        for block in code_blocks(section, "sh")
        for line in block
        if "install -m 0600" in line
    )
    dropin = next(b for b in code_blocks(section, "ini") if any("LoadCredential=" in x for x in b))
    credentials = dict(
        line.split("=", 1)[1].split(":", 1) for line in dropin if line.startswith("LoadCredential=")
    )
    secret_file = next(
        line for block in code_blocks(section, "toml") for line in block if "secret_file" in line
    )
    return SecretSteps(install, "\n".join(dropin) + "\n", credentials, secret_file)


def journal_pipelines() -> list[str]:
    """The documented ``journalctl -u jobwatchd ... | jq`` lines, without ``-f``."""
    section = doc_section("### Logs")
    lines = [line for block in code_blocks(section, "sh") for line in block]
    return [
        re.sub(r" -f( |$)", r"\1", line)
        for line in lines
        if line.startswith("journalctl -u jobwatchd") and "| jq" in line
    ]


def logrotate_install() -> str:
    """The documented line installing the logrotate snippet."""
    section = doc_section("### Rotating the file sink")
    return next(
        as_root(line)
        for block in code_blocks(section, "sh")
        for line in block
        if "logrotate" in line
    )


# -- the daemon's config and the container's helpers -----------------------------------


def service_config(extra: str = "") -> str:
    """A config polling the simulator, with a log sink and a file sink (plus ``extra``)."""
    return f"""\
[daemon]
state_dir = "/var/lib/jobwatchd"
log_level = "info"

[api]
listen = "127.0.0.1:8787"

[[accounts]]
name = "default"
endpoint = "{SIM}"
project_id = "0123456789abcdef0123456789abcdef"
auth = "none"
rate_limit = 50
request_timeout = "5s"

[polling]
concurrency = 8
initial_delay = "500ms"
min_interval = "1s"
max_interval = "2s"
timeout = "1h"
not_found_grace = "30s"

[[sinks]]
type = "log"

[[sinks]]
type = "file"
path = "transitions.jsonl"
fsync = "always"
{extra}"""


EXTRA_FILE_SINK = """
[[sinks]]
type = "file"
name = "extra"
path = "extra.jsonl"
fsync = "always"
"""


class Service:
    """The jobwatchd unit in a booted container, with the simulator beside it."""

    def __init__(self, box: Box) -> None:
        self.box = box
        self.install_log: list[tuple[str, int, str]] = []
        self.first_job = ""  # a job that reached SUCCESS early on

    def prop(self, name: str) -> str:
        return self.box.run(["systemctl", "show", "-p", name, "--value", UNIT]).stdout.strip()

    def main_pid(self) -> int:
        return int(self.prop("MainPID") or 0)

    def active(self) -> bool:
        return self.box.run(["systemctl", "is-active", "-q", UNIT]).returncode == 0

    def systemctl(self, *argv: str, timeout: float = 90) -> int:
        return self.box.run(
            ["timeout", str(int(timeout)), "systemctl", *argv], timeout=timeout + 5
        ).returncode

    def cursor(self) -> str:
        """The cursor of the unit's newest journal entry (journalctl 252 with
        ``-u`` and ``--after-cursor`` of an entry ``-u`` does not match skips one)."""
        out = self.box.run(["journalctl", "-u", UNIT, "-n", "1", "-o", "json", "--no-pager"]).stdout
        return str(json.loads(out)["__CURSOR"]) if out.strip() else ""

    def log(self, cursor: str = "", *extra: str) -> str:
        argv = ["journalctl", "--no-pager", "-u", UNIT, "-o", "cat", *extra]
        if cursor:
            argv.append(f"--after-cursor={cursor}")
        return self.box.run(argv).stdout

    def notifications(self, cursor: str, pid: int) -> list[str]:
        """The sd_notify messages systemd got from ``pid`` since ``cursor``, in order
        (PID 1 logs them at debug level)."""
        found = re.findall(
            rf"Got notification message from PID {pid} \(([^)]*)\)", self.log(cursor)
        )
        return [message.split(",")[0] for message in found]

    def write_config(self, extra: str = "") -> None:
        self.box.write("/root/systest/jobwatchd.toml", service_config(extra))
        self.box.sh(f"cat /root/systest/jobwatchd.toml > {CONFIG}", check=True)

    def start_simulator(self) -> None:
        self.box.run(["systemctl", "stop", "jobwatchd-sim.service"])
        self.box.run(["systemctl", "reset-failed", "jobwatchd-sim.service"])
        self.box.run(
            [
                "systemd-run",
                "--quiet",
                "--unit=jobwatchd-sim",
                "-p",
                "DynamicUser=yes",
                "/opt/jobwatchd/bin/jobwatchd",
                "simulate",
                "--host",
                "127.0.0.1",
                "--port",
                "8788",
                "--demo",
                "0",
            ],
            check=True,
        )
        wait_for(
            lambda: self.box.run(["curl", "-fsS", "-m", "2", f"{SIM}/_sim/jobs"]).returncode == 0,
            30,
            "the simulator answers",
        )

    def start_hook(self, secret_path: str) -> None:
        self.box.write(
            "/root/systest/hook.py", (Path(__file__).parent / "hook_receiver.py").read_text()
        )
        self.box.run(["systemctl", "stop", "jobwatchd-hook.service"])
        self.box.run(["systemctl", "reset-failed", "jobwatchd-hook.service"])
        self.box.run(
            [
                "systemd-run",
                "--quiet",
                "--unit=jobwatchd-hook",
                "/usr/bin/python3",
                "/root/systest/hook.py",
                secret_path,
                "/run/systest-hook.jsonl",
                str(HOOK_PORT),
            ],
            check=True,
        )
        wait_for(
            lambda: (
                self.box.run(
                    ["curl", "-fsS", "-m", "2", f"http://127.0.0.1:{HOOK_PORT}/"]
                ).returncode
                == 0
            ),
            20,
            "the webhook receiver answers",
        )

    def sim_job(self, duration: float, count: int) -> str:
        created = self.box.curl_json(
            "POST",
            f"{SIM}/_sim/jobs",
            {"job_type": "createServer", "count": count, "duration": duration},
        )
        assert isinstance(created, dict)
        return str(created["job_id"])

    def register(self, job_id: str) -> None:
        self.box.curl_json("POST", f"{API}/v1/jobs", {"job_id": job_id})

    def job(self, job_id: str) -> dict[str, object]:
        job = self.box.curl_json("GET", f"{API}/v1/jobs/{job_id}")
        assert isinstance(job, dict)
        return job

    def job_is(self, job_id: str, status: str) -> bool:
        return self.job(job_id).get("status") == status

    def ready(self) -> bool:
        return (
            self.box.run(["curl", "-fsS", "-m", "3", "-o", "/dev/null", f"{API}/readyz"]).returncode
            == 0
        )

    def events_in(self, path: str) -> list[dict[str, object]]:
        text = self.box.run(["cat", path]).stdout
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def restart(self) -> None:
        """``systemctl restart``, clearing the start limit (the tests restart often)."""
        self.box.run(["systemctl", "reset-failed", UNIT])
        assert self.systemctl("restart", UNIT) == 0, self.log()[-3000:]
        wait_for(self.ready, 30, "the API is ready after a restart")

    def recorded_event_ids(self, job_id: str) -> set[str]:
        """The ids of every event the daemon recorded for a job, from its event log."""
        url = f"{API}/v1/events?after=0&follow=false&job={job_id}"
        stream = self.box.run(["curl", "-fsS", "-m", "10", url], timeout=20).stdout
        events = [json.loads(line[5:]) for line in stream.splitlines() if line.startswith("data:")]
        return {str(e["id"]) for e in events if "id" in e}


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    """Boot the container and install jobwatchd with the documented commands."""
    with booted_box(REPO) as box:
        service = Service(box)
        box.write("/root/systest/jobwatchd.toml", service_config())
        # PID 1 logs every sd_notify message it gets at debug level
        box.run(["systemd-analyze", "log-level", "debug"], check=True)
        for command in install_commands():
            result = box.sh(f"cd {WORKDIR} && {command}", timeout=300)
            service.install_log.append((command, result.returncode, result.stdout + result.stderr))
        service.start_simulator()
        yield service


# -- the checks -------------------------------------------------------------------------


@pytest.mark.timeout(900)  # the first run builds the rootfs and the wheels
def test_documented_install_steps_start_the_service(service: Service) -> None:
    failed = [(cmd, out[-800:]) for cmd, rc, out in service.install_log if rc != 0]
    assert not failed, failed
    assert any("check-config" in cmd for cmd, _, _ in service.install_log)
    mode = service.box.run(["stat", "-c", "%a %U", CONFIG]).stdout.split()
    assert mode == ["644", "root"]  # readable by the dynamic user, owned by root
    assert service.active(), service.log()
    assert service.prop("UnitFileState") == "enabled"
    # Type=notify: systemd marks the unit active only after READY=1 from the main PID
    assert "READY=1" in service.notifications("", service.main_pid())
    assert service.prop("StatusText").startswith("tracking ")
    status = service.box.run(["systemctl", "status", UNIT, "--no-pager"]).stdout
    assert re.search(r'^\s*Status: "tracking \d+ jobs', status, re.M), status


@pytest.mark.timeout(120)
def test_a_job_reaches_success_and_the_file_sink(service: Service) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/v1/jobs"):
        assert (
            service.box.run(["curl", "-fsS", "-m", "5", "-o", "/dev/null", API + path]).returncode
            == 0
        ), path
    job = service.sim_job(duration=4, count=2)
    service.register(job)
    wait_for(lambda: service.job_is(job, "SUCCESS"), 60, f"job {job} reaches SUCCESS")
    assert service.box.run(["readlink", "/var/lib/jobwatchd"]).stdout.strip() == "private/jobwatchd"
    events = [e for e in service.events_in(f"{STATE}/transitions.jsonl") if e.get("subject") == job]
    data = [e["data"] for e in events if isinstance(e.get("data"), dict)]
    assert any(d.get("to") == "SUCCESS" for d in data if isinstance(d, dict)), events
    owner = service.box.run(["stat", "-c", "%U %a", f"{STATE}/transitions.jsonl"]).stdout.split()
    assert owner == ["jobwatchd", "600"]  # the dynamic user's, under UMask=0077
    service.first_job = job


@pytest.mark.timeout(120)
def test_journal_lines_are_json_and_the_documented_pipelines_work(service: Service) -> None:
    out = service.box.run(["journalctl", "--no-pager", "-u", UNIT, "-o", "json"]).stdout
    own = []
    for line in out.splitlines():
        entry = json.loads(line)
        if entry.get("_SYSTEMD_UNIT") == UNIT and entry.get("_TRANSPORT") == "stdout":
            own.append(entry)
    assert len(own) >= 3
    for entry in own:
        record = json.loads(entry["MESSAGE"])
        assert {"timestamp", "level", "logger", "event"} <= record.keys(), record
        # each line carries its level as the journal priority (<N> prefix)
        expected = {"debug": "7", "info": "6", "warning": "4", "error": "3", "critical": "2"}
        assert entry["PRIORITY"] == expected[record["level"]], entry
    pipelines = journal_pipelines()
    assert len(pipelines) >= 2
    job = service.first_job
    for pipeline in pipelines:
        result = service.box.sh(pipeline)
        assert result.returncode == 0, (pipeline, result.stderr)
        if "job.transition" in pipeline:
            assert job in result.stdout, (pipeline, result.stdout[-500:])


@pytest.mark.timeout(180)
def test_reload_applies_a_good_config_and_refuses_a_bad_one(service: Service) -> None:
    pid = service.main_pid()
    cursor = service.cursor()
    service.write_config(EXTRA_FILE_SINK)
    assert service.systemctl("reload", UNIT, timeout=60) == 0
    wait_for(lambda: "config.reloaded" in service.log(cursor), 20, "config.reloaded is logged")
    notes = service.notifications(cursor, pid)
    assert "RELOADING=1" in notes and "READY=1" in notes[notes.index("RELOADING=1") :], notes
    assert service.box.run(["test", "-f", f"{STATE}/extra.jsonl"]).returncode == 0
    assert service.main_pid() == pid

    cursor = service.cursor()
    service.write_config(EXTRA_FILE_SINK + '\n[[sinks]]\ntype = "no-such-sink"\n')
    service.systemctl("reload", UNIT, timeout=60)
    wait_for(
        lambda: "config.reload_rejected" in service.log(cursor), 20, "the bad config is refused"
    )
    assert service.active() and service.main_pid() == pid
    # an error reaches the journal as an error: journalctl -p err shows it (no
    # --after-cursor here: with -p the cursor's entry does not match, and
    # journalctl 252 then skips the first entry that does)
    errors = service.log("", "-p", "err")
    assert "config.reload_rejected" in errors, errors
    service.write_config(EXTRA_FILE_SINK)
    assert service.systemctl("reload", UNIT, timeout=60) == 0


@pytest.mark.timeout(180)
def test_a_webhook_secret_reaches_the_service_through_load_credential(service: Service) -> None:
    steps = secret_steps()
    box = service.box
    secret = "whsec_" + base64.b64encode(b"systest-webhook-secret-0123456789").decode()
    for name in steps.credentials:
        # the documented install line, for every credential its drop-in names
        source = f"/root/systest/secrets/{name}"
        box.write(source, secret + "\n" if name == "webhook-secret" else "not-used\n", mode=0o600)
        install = steps.install.replace("webhook-secret", name)
        box.sh(f"cd /root/systest/secrets && {install}", check=True)
    for name, path in steps.credentials.items():
        assert box.run(["stat", "-c", "%a %U", path]).stdout.split() == ["600", "root"], name
    # what `systemctl edit jobwatchd` writes
    box.write(f"/etc/systemd/system/{UNIT}.d/override.conf", steps.dropin)
    box.run(["systemctl", "daemon-reload"], check=True)
    hook_sink = f"""
[[sinks]]
type = "webhook"
name = "hook"
url = "http://127.0.0.1:{HOOK_PORT}/hook"
{steps.secret_file_line}
timeout = "5s"
"""
    service.write_config(EXTRA_FILE_SINK + hook_sink)
    service.start_hook(steps.credentials["webhook-secret"])
    check = box.run(
        [
            "/opt/jobwatchd/bin/jobwatchd",
            "check-config",
            "-c",
            CONFIG,
            "--credentials-dir",
            "/etc/jobwatchd",
        ]
    )
    assert check.returncode == 0, check.stderr
    cursor = service.cursor()
    service.restart()
    job = service.sim_job(duration=2, count=1)
    service.register(job)
    wait_for(lambda: service.job_is(job, "SUCCESS"), 60, f"job {job} reaches SUCCESS")

    def delivered() -> list[dict[str, Any]]:
        text = box.run(["cat", "/run/systest-hook.jsonl"]).stdout
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    wait_for(
        lambda: any(job in d["subjects"] for d in delivered()),
        30,
        "the job's events reach the hook",
    )
    assert all(d["signed_ok"] for d in delivered()), delivered()
    assert "secret_file_permissions" not in service.log(cursor)


@pytest.mark.timeout(180)
def test_logrotate_then_reload_loses_nothing(service: Service) -> None:
    box = service.box
    install = logrotate_install()
    box.sh(f"cd {WORKDIR} && {install}", check=True)
    before = service.sim_job(duration=3, count=1)
    service.register(before)
    wait_for(lambda: service.job_is(before, "SUCCESS"), 60, f"job {before} reaches SUCCESS")
    rotated = box.run(["logrotate", "-f", "/etc/logrotate.d/jobwatchd"], timeout=120)
    assert rotated.returncode == 0, rotated.stderr
    assert box.run(["test", "-f", f"{STATE}/transitions.jsonl.1"]).returncode == 0
    # the reload in postrotate re-created the file as the service's user
    wait_for(
        lambda: (
            box.run(["stat", "-c", "%U", f"{STATE}/transitions.jsonl"]).stdout.strip()
            == "jobwatchd"
        ),
        20,
        "the file sink re-creates its file",
    )
    after = service.sim_job(duration=2, count=1)
    service.register(after)
    wait_for(lambda: service.job_is(after, "SUCCESS"), 60, f"job {after} reaches SUCCESS")
    wait_for(
        lambda: any(
            e.get("subject") == after for e in service.events_in(f"{STATE}/transitions.jsonl")
        ),
        20,
        "the new job's events land in the new file",
    )
    old = service.events_in(f"{STATE}/transitions.jsonl.1")
    new = service.events_in(f"{STATE}/transitions.jsonl")
    ids = [e["id"] for e in old + new]
    assert len(ids) == len(set(ids))
    # every event the daemon recorded for both jobs is in one of the two files
    for job in (before, after):
        wanted = service.recorded_event_ids(job)
        assert wanted and wanted <= set(ids), (job, wanted - set(ids))


@pytest.mark.timeout(120)
def test_restart_keeps_the_jobs(service: Service) -> None:
    pid = service.main_pid()
    service.restart()
    assert service.main_pid() != pid
    assert service.job_is(service.first_job, "SUCCESS")


@pytest.mark.timeout(180)
def test_watchdog_keeps_a_live_daemon_and_restarts_a_hung_one(service: Service) -> None:
    box = service.box
    box.write(f"{RUNTIME_DROPINS}/zz-watchdog.conf", "[Service]\nWatchdogSec=4s\n")
    box.run(["systemctl", "daemon-reload"], check=True)
    service.restart()
    pid = service.main_pid()
    cursor = service.cursor()
    job = service.sim_job(duration=60, count=2)  # keeps it busy meanwhile
    service.register(job)
    started = time.monotonic()
    while time.monotonic() - started < 2 * 4 + 2:  # longer than twice WatchdogSec
        assert service.active() and service.main_pid() == pid, service.log(cursor)
        time.sleep(1)
    assert service.notifications(cursor, pid).count("WATCHDOG=1") >= 4
    assert "Watchdog timeout" not in service.log(cursor)

    restarts = int(service.prop("NRestarts"))
    box.run(["kill", "-STOP", str(pid)], check=True)
    try:
        wait_for(lambda: "Watchdog timeout" in service.log(cursor), 4 + 15, "the watchdog fires")
    finally:
        box.run(["kill", "-CONT", str(pid)])
    wait_for(
        lambda: service.active() and service.main_pid() not in (0, pid), 60, "systemd restarts it"
    )
    assert int(service.prop("NRestarts")) == restarts + 1
    wait_for(service.ready, 30, "the restarted daemon is ready")
    box.run(["rm", "-f", f"{RUNTIME_DROPINS}/zz-watchdog.conf"], check=True)
    box.run(["systemctl", "daemon-reload"], check=True)
    service.restart()


@pytest.mark.timeout(120)
def test_stop_with_a_job_in_flight_stays_within_the_drain_bound(service: Service) -> None:
    job = service.sim_job(duration=120, count=3)
    service.register(job)
    wait_for(lambda: service.job_is(job, "RUNNING"), 30, f"job {job} is being polled")
    pid = service.main_pid()
    cursor = service.cursor()
    started = time.monotonic()
    assert service.systemctl("stop", UNIT, timeout=60) == 0
    took = time.monotonic() - started
    assert took <= DRAIN_TIMEOUT + 3, took
    assert service.prop("ActiveState") == "inactive"
    assert service.prop("Result") == "success"
    assert service.prop("ExecMainStatus") == "0"
    assert "STOPPING=1" in service.notifications(cursor, pid)
    log = service.log(cursor)
    assert '"event":"daemon.stopped"' in log and "timed out. Killing" not in log
    service.box.run(["systemctl", "reset-failed", UNIT])
    assert service.systemctl("start", UNIT) == 0
    wait_for(service.ready, 30, "ready again")
    assert service.job(job)["status"] in ("RUNNING", "SUCCESS")  # picked up again


@pytest.mark.timeout(120)
def test_a_config_error_exits_2_and_is_not_restarted(service: Service) -> None:
    box = service.box
    service.write_config("\n[daemon]\nno_such_key = 1\n")
    cursor = service.cursor()
    box.run(["systemctl", "reset-failed", UNIT])
    assert service.systemctl("restart", UNIT) != 0
    # RestartPreventExitStatus=2: failed at once, no "activating (auto-restart)"
    wait_for(lambda: service.prop("SubState") == "failed", 20, "the unit is failed")
    assert service.prop("ExecMainStatus") == "2"
    assert service.prop("Result") == "exit-code"
    errors = service.log("", "-p", "err")
    assert "jobwatchd: config error" in errors and "Traceback" not in service.log(cursor), errors
    service.write_config(EXTRA_FILE_SINK)
    service.restart()


@pytest.mark.timeout(180)
def test_the_enabled_unit_comes_back_after_a_reboot(service: Service) -> None:
    box = service.box
    box.shutdown()
    box.boot()
    wait_for(service.active, 60, "the unit is active after the reboot")
    wait_for(service.ready, 30, "the API is ready after the reboot")
    assert service.job_is(service.first_job, "SUCCESS")
    service.start_simulator()


@pytest.mark.timeout(120)
def test_no_sandbox_denial_and_the_exposure_score(service: Service) -> None:
    journal = service.box.run(
        ["journalctl", "--no-pager", "-p", "info", "-o", "cat", "-u", UNIT]
    ).stdout
    denial = re.compile(
        r"SIGSYS|Bad system call|status=31/SYS|Operation not permitted|Permission denied|"
        r"Errno 1\]|Errno 13\]|Read-only file system|Address family not supported"
    )
    assert not [line for line in journal.splitlines() if denial.search(line)]
    box = service.box
    box.run(["rm", "-f", f"/etc/systemd/system/{UNIT}.d/override.conf"], check=True)
    box.run(["systemctl", "daemon-reload"], check=True)
    report = box.run(["systemd-analyze", "security", UNIT, "--no-pager"]).stdout
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", report)
    assert score is not None, report
    assert float(score.group(1)) <= 1.5, report
