"""The real console script against a real daemon and the simulator."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from jobwatchd.store.postgresql import MIGRATIONS as POSTGRES_MIGRATIONS
from jobwatchd.store.sqlite import MIGRATIONS as SQLITE_MIGRATIONS
from tests.helpers.cli import cli
from tests.helpers.daemon import DaemonProcess
from tests.helpers.servers import RunningSimulator


@pytest.fixture
def daemon(start_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    return start_daemon()


def test_register_and_wait_exit_codes(
    daemon: DaemonProcess, threaded_simulator: RunningSimulator
) -> None:
    sim = threaded_simulator.sim
    ok = sim.create_job("createServer", count=2, duration=50)
    failing = sim.create_job("createServer", count=2, fail=True, duration=50)
    slow = sim.create_job("deleteServer", duration=5000)
    api = ["--api", str(daemon.address)]

    registered = cli("register", ok, failing, slow, "--label", "team=ci", *api)
    assert registered.returncode == 0, registered.stderr
    assert f"{ok} tracked" in registered.stdout

    success = cli("wait", ok, *api, "--timeout", "30")
    assert success.returncode == 0, success.stdout + success.stderr
    assert f"{ok} SUCCESS" in success.stdout

    failed = cli("wait", ok, failing, *api, "--timeout", "30")
    assert failed.returncode == 1
    assert f"{failing} FAIL" in failed.stdout

    timed_out = cli("wait", slow, *api, "--timeout", "0.5")
    assert timed_out.returncode == 124
    assert "timed out" in timed_out.stdout

    as_json = cli("status", ok, "--json", *api)
    assert as_json.returncode == 0
    assert orjson.loads(as_json.stdout)["status"] == "SUCCESS"

    listed = cli("list", "--json", "--label", "team=ci", *api)
    assert sorted(job["job_id"] for job in orjson.loads(listed.stdout)) == sorted(
        [ok, failing, slow]
    )

    cancelled = cli("cancel", slow, *api)
    assert cancelled.returncode == 0
    gone = cli("status", slow, *api)
    assert gone.returncode == 2 and "not tracked" in gone.stderr


def test_register_wait_in_one_step(
    daemon: DaemonProcess, threaded_simulator: RunningSimulator
) -> None:
    job = threaded_simulator.sim.create_job("addNics", count=2, duration=40)
    result = cli(
        "register", job, "--wait", "--timeout", "30", "--json", "--api", str(daemon.address)
    )
    assert result.returncode == 0, result.stderr
    summary = orjson.loads(result.stdout)
    assert (summary["outcome"], summary["exit_code"]) == ("succeeded", 0)
    (final,) = summary["jobs"]
    assert final["status"] == final["job"]["status"] == "SUCCESS"


def test_usage_and_connection_errors_exit_2(daemon: DaemonProcess, tmp_path: Path) -> None:
    unknown = cli("wait", "not-tracked-anywhere", "--api", str(daemon.address))
    assert unknown.returncode == 2 and "not tracked" in unknown.stderr
    bad_id = cli("wait", "../etc", "--api", str(daemon.address))
    assert bad_id.returncode == 2 and "JOB_ID" in bad_id.stderr
    nothing_there = cli("wait", "abc", "--api", "127.0.0.1:9", "--timeout", "5")
    assert nothing_there.returncode == 2 and "cannot reach" in nothing_there.stderr
    no_args = cli("wait")
    assert no_args.returncode == 2


def test_check_config_masks_secrets(tmp_path: Path) -> None:
    secret = "whsec_" + "c2VjcmV0LXNpZ25pbmcta2V5LTEyMzQ1Njc4OTA="
    config = tmp_path / "c.toml"
    config.write_text(
        f"""
[daemon]
state_dir = "{tmp_path}"

[[accounts]]
name = "default"
endpoint = "http://127.0.0.1:1"
project_id = "p1"
auth = "none"

[[sinks]]
type = "webhook"
url = "https://hooks.example.com/x"
secret = "{secret}"
"""
    )
    result = cli("check-config", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout and secret[6:] not in result.stdout
    assert "https://hooks.example.com/x" in result.stdout


@pytest.mark.parametrize(
    ("snippet", "key"),
    [
        ('[polling]\nmin_interval = "soon"\n', "polling.min_interval"),
        ("[polling]\nconcurrency = 0\n", "polling.concurrency"),
        ('[api]\nlisten = "nowhere"\n', "api.listen"),
        ('[daemon]\nlog_level = "loud"\n', "daemon.log_level"),
        (
            '[[accounts]]\nname = "a"\nendpoint = "ftp://x"\nproject_id = "p"\nauth = "none"\n',
            "accounts[0].endpoint",
        ),
        (
            '[[accounts]]\nname = "a"\nendpoint = "https://x"\nproject_id = "p"\n'
            'auth = "token"\ntoken_file = "/nonexistent/token"\n',
            "accounts[0].token_file",
        ),
        ('[[sinks]]\ntype = "file"\n', "sinks[0].path"),
        ("[nonsense]\n", "nonsense"),
        ("this is = not toml [", "config"),
    ],
)
@pytest.mark.parametrize("command", ["check-config", "run"])
def test_bad_config_exits_2_with_one_line_naming_the_key(
    tmp_path: Path, snippet: str, key: str, command: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(snippet)
    result = cli(command, "-c", str(config), timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert key in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_migrate_applies_the_schema_and_reports_its_version(
    tmp_path: Path, postgres_database: str
) -> None:
    account = '[[accounts]]\nname = "a"\nendpoint = "http://127.0.0.1:1"\nauth = "none"\n'
    state = tmp_path / "state"
    sqlite = tmp_path / "sqlite.toml"
    sqlite.write_text(f'[daemon]\nstate_dir = "{state}"\n\n{account}project_id = "p"\n')
    postgres = tmp_path / "postgres.toml"
    postgres.write_text(
        f'[daemon]\nstate_dir = "{state}"\nstore = "{postgres_database}"\n\n'
        f'{account}project_id = "p"\n'
    )
    for config, where, version in (
        (sqlite, str(state / "jobwatchd.db"), len(SQLITE_MIGRATIONS)),
        (postgres, postgres_database, len(POSTGRES_MIGRATIONS)),
    ):
        for _ in range(2):  # and again: nothing left to do
            result = cli("migrate", "-c", str(config), timeout=60)
            assert result.returncode == 0, result.stderr
            assert result.stdout == f"{where}: schema version {version}\n"


def test_migrate_says_which_store_it_could_not_reach(tmp_path: Path) -> None:
    config = tmp_path / "unreachable.toml"
    config.write_text(
        '[daemon]\nstore = "postgresql://jw:hunter2@127.0.0.1:1/jobs"\n\n'
        '[[accounts]]\nname = "a"\nendpoint = "http://127.0.0.1:1"\nproject_id = "p"\n'
        'auth = "none"\n'
    )
    result = cli("migrate", "-c", str(config), timeout=60)
    assert result.returncode == 1
    assert "cannot migrate postgresql://jw:***@127.0.0.1:1/jobs" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


CREDENTIAL_CONFIG = """
[daemon]
state_dir = "{state}"

[[accounts]]
name = "default"
endpoint = "http://127.0.0.1:1"
project_id = "p1"
auth = "none"

[[sinks]]
type = "webhook"
url = "https://hooks.example.com/x"
secret_file = "/run/credentials/jobwatchd.service/webhook-secret"
"""


def test_check_config_outside_the_service_lists_credentials_it_cannot_read(
    tmp_path: Path,
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(CREDENTIAL_CONFIG.format(state=tmp_path))
    result = cli("check-config", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert "not checked: sinks[0].secret_file" in result.stderr
    assert "--credentials-dir" in result.stderr


@pytest.mark.parametrize(
    ("content", "exit_code"),
    [("whsec_" + "c2VjcmV0LXNpZ25pbmcta2V5LTEyMzQ1Njc4OTA=", 0), ("not a whsec secret", 2)],
)
def test_check_config_reads_credentials_from_their_sources(
    tmp_path: Path, content: str, exit_code: int
) -> None:
    sources = tmp_path / "etc"
    sources.mkdir()
    (sources / "webhook-secret").write_text(content + "\n")
    (sources / "webhook-secret").chmod(0o600)
    config = tmp_path / "c.toml"
    config.write_text(CREDENTIAL_CONFIG.format(state=tmp_path))
    result = cli("check-config", "-c", str(config), "--credentials-dir", str(sources))
    assert result.returncode == exit_code, result.stderr
    assert "not checked" not in result.stderr
    if exit_code:
        assert "sinks[0].secret_file" in result.stderr.strip().splitlines()[-1]
    assert content not in result.stdout + result.stderr


def test_check_config_credentials_dir_without_the_credential_fails(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(CREDENTIAL_CONFIG.format(state=tmp_path))
    result = cli("check-config", "-c", str(config), "--credentials-dir", str(tmp_path))
    assert result.returncode == 2
    assert "sinks[0].secret_file" in result.stderr
