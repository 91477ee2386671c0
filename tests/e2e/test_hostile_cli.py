"""The CLI against a daemon that answers with hostile strings: nothing from the
daemon may drive the terminal, in any output mode, and nothing crashes.

The CLI runs as a subprocess, on a pseudo-terminal for the rich path and on
pipes for plain and ``--json`` output, against a real aiohttp server standing
in for the daemon (serving job objects, events and errors full of escapes and
markup) and against the real daemon (labels are the caller's strings)."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from jobwatchd.config import redact_url
from jobwatchd.safetext import printable, terminal_json
from tests.helpers.servers import app_in_thread

JOBWATCHD = [sys.executable, "-m", "jobwatchd"]

CLEAR_SCREEN = "\x1b[2J\x1b[H"
FAKE_GREEN = "\x1b[38;5;46mSUCCESS\x1b[0m"
HYPERLINK = "\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\"
TITLE = "\x1b]0;owned\x07"
C1_CSI = "\x9b31m"
C1_OSC = "\x9d0;owned\x9c"
BIDI = "\u202etxt.exe\u202c\u2066x\u2069"
MARKUP_CLOSE = "[/]"
MARKUP_LINK = "[link=http://evil.example/]here[/link]"
NEWLINE = "line1\r\nFAKE line\u2028"

HOSTILE = (
    CLEAR_SCREEN
    + FAKE_GREEN
    + HYPERLINK
    + TITLE
    + C1_CSI
    + C1_OSC
    + BIDI
    + NEWLINE
    + MARKUP_CLOSE
    + "\x7f\x08"
)
"""Every kind of control a terminal may act on."""

JOB_ID = "job" + MARKUP_CLOSE + CLEAR_SCREEN
STATUS = FAKE_GREEN + C1_CSI
LABELS = {"team": MARKUP_CLOSE, "link": MARKUP_LINK, "esc": HOSTILE}


def hostile_job() -> dict[str, Any]:
    """A job object as a hostile (or compromised) daemon might send it."""
    return {
        "job_id": JOB_ID,
        "status": STATUS,
        "terminal": True,
        "project_id": "p" + BIDI,
        "account": MARKUP_LINK,
        "job_type": "createServer" + TITLE,
        "begin_time": CLEAR_SCREEN,
        "end_time": None,
        "error_code": "Ecs.0001" + C1_OSC,
        "fail_reason": HOSTILE,
        "entities": {
            "sub_jobs_total": "2" + CLEAR_SCREEN,
            "sub_jobs": [{"job_id": "sub" + TITLE, "status": "SUCCESS"}],
        },
        "labels": LABELS,
        "registered_at": HYPERLINK,
        "updated_at": MARKUP_CLOSE,
        "polls": 3,
        "next_poll_at": None,
        "last_error": {"code": C1_CSI, "message": HOSTILE, "at": MARKUP_LINK},
        "history": [
            {"at": TITLE, "from": None, "to": STATUS},
            {"at": "t", "from": HOSTILE, "to": "X"},
        ],
    }


def hostile_event() -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": "e" + HOSTILE,
        "type": "jobwatchd.job.transition",
        "subject": JOB_ID,
        "time": HYPERLINK,
        "data": {
            "job_id": JOB_ID,
            "from": TITLE,
            "to": STATUS,
            "terminal": True,
            "error_code": C1_OSC,
            "fail_reason": HOSTILE,
        },
    }


def dead_letter() -> dict[str, Any]:
    return {
        "sink": "hook" + TITLE,
        "event_id": HOSTILE,
        "job_id": JOB_ID,
        "reason": "HTTP 400: " + HOSTILE,
        "attempts": 1,
        "dead_lettered_at": CLEAR_SCREEN,
        "event": hostile_event(),
    }


# -- the stand-in daemon -----------------------------------------------------------


async def _job(request: web.Request) -> web.Response:
    if request.match_info["job_id"] == "shapeless":
        return web.json_response({"jobs": HOSTILE})
    if request.match_info["job_id"] == "html":
        return web.Response(status=502, text="<html>\x1b[2J" + HOSTILE, content_type="text/html")
    if request.match_info["job_id"] == "running":  # the live progress redraws it
        job = hostile_job() | {"terminal": False}
        return web.Response(body=orjson.dumps(job), content_type="application/json")
    if request.match_info["job_id"] == "broken":
        return web.json_response({"title": "boom", "status": 500, "detail": HOSTILE}, status=500)
    return web.Response(body=orjson.dumps(hostile_job()), content_type="application/json")


async def _jobs(request: web.Request) -> web.Response:
    return web.Response(
        body=orjson.dumps({"jobs": [hostile_job()], "next": None}), content_type="application/json"
    )


async def _register(request: web.Request) -> web.Response:
    return web.Response(
        status=201, body=orjson.dumps({"jobs": [hostile_job()]}), content_type="application/json"
    )


async def _cancel(request: web.Request) -> web.Response:
    return web.json_response({"title": "no", "status": 409, "detail": HOSTILE}, status=409)


async def _redeliver(request: web.Request) -> web.Response:
    report = {
        "redelivered": [HOSTILE],
        "failed": [{"event_id": JOB_ID, "sink": TITLE, "reason": HOSTILE}],
        "not_found": [C1_OSC],
    }
    return web.Response(body=orjson.dumps(report), content_type="application/json")


async def _dead_letters(request: web.Request) -> web.Response:
    return web.Response(
        body=orjson.dumps({"dead_letters": [dead_letter()]}), content_type="application/json"
    )


async def _events(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    payload = orjson.dumps(hostile_event())
    await resp.write(b"id: 1\nevent: jobwatchd.job.transition\ndata: " + payload + b"\n\n")
    if request.query.get("follow") == "true":
        # A followed stream stays open (``wait`` ignores the event of another job).
        while True:
            await resp.write(b": ping\n\n")
            await asyncio.sleep(0.2)
    # Not JSON, and raw escapes on the wire.
    await resp.write(b"id: 2\ndata: " + HOSTILE.replace("\n", "").encode() + b"\n\n")
    await resp.write_eof()
    return resp


@dataclass(frozen=True, slots=True)
class StandIn:
    """The stand-in daemon's address, for ``--api``."""

    address: str


@pytest.fixture(scope="module")
def hostile_daemon() -> Iterator[StandIn]:
    """A real aiohttp server on a free port, in its own thread, answering like
    the daemon's API but with hostile strings everywhere."""
    app = web.Application()
    app.router.add_get("/v1/jobs/{job_id}", _job)
    app.router.add_get("/v1/jobs", _jobs)
    app.router.add_get("/v1/events", _events)
    app.router.add_get("/v1/dead-letters", _dead_letters)
    app.router.add_post("/v1/jobs", _register)
    app.router.add_delete("/v1/jobs/{job_id}", _cancel)
    app.router.add_post("/v1/dead-letters/redeliver", _redeliver)
    with app_in_thread(app, name="hostile-daemon", handler_cancellation=True) as port:
        yield StandIn(f"127.0.0.1:{port}")


# -- running the CLI ----------------------------------------------------------------


def _cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "JOBWATCHD_CONFIG")}
    # No config is found (the CLI then needs --api); rich sees a colour terminal.
    env.update(JOBWATCHD_CONFIG=str(tmp_path / "absent.toml"), TERM="xterm-256color")
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    return env


def run_in_terminal(args: list[str], env: dict[str, str], timeout: float = 60.0) -> tuple[int, str]:
    """Run the CLI on a pseudo-terminal (stdout and stderr); (exit code, what the
    terminal received, decoded)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 2000, 0, 0))
    proc = subprocess.Popen(
        [*JOBWATCHD, *args], stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
    )
    os.close(slave)
    received = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{args} did not finish in {timeout}s: {bytes(received)!r}")
            readable, _, _ = select.select([master], [], [], remaining)
            if not readable:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError as error:  # EIO: every writer closed the terminal
                if error.errno != errno.EIO:
                    raise
                break
            if not chunk:
                break
            received += chunk
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, received.decode("utf-8")


def run_piped(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*JOBWATCHD, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def first_lines(args: list[str], env: dict[str, str], count: int) -> tuple[list[str], str]:
    """The first ``count`` lines a never-ending command (``events --follow``)
    prints, and its stderr, once it is stopped."""
    proc = subprocess.Popen(
        [*JOBWATCHD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None and proc.stderr is not None
    received = b""
    deadline = time.monotonic() + 60
    try:
        while received.count(b"\n") < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{args} printed only {received!r}"
            readable, _, _ = select.select([proc.stdout], [], [], remaining)
            if readable:
                chunk = os.read(proc.stdout.fileno(), 65536)
                assert chunk, f"{args} ended after {received!r}: {proc.stderr.read()!r}"
                received += chunk
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    return received.decode().splitlines()[:count], err.decode()


RICH_OWN = re.compile(r"\x1b\[(?:[0-9;]*m|\?25[lh]|2K|[0-9]*[AG])")
"""What rich itself writes: colours (SGR), cursor show/hide, line erase and up."""
DRIVING = re.compile(
    "[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]"
)
"""Characters a terminal acts on (LF and CR are the terminal's own line ends)."""


def assert_cannot_drive_terminal(output: str) -> None:
    """Nothing but rich's own colour and cursor sequences reached the terminal,
    and the hostile sequences show as their escaped text."""
    assert "Traceback" not in output and "MarkupError" not in output, output
    assert "\x1b[38;5;46m" not in output  # the fake green, as a live sequence
    left = DRIVING.findall(RICH_OWN.sub("", output))
    assert left == [], f"controls reached the terminal: {left!r} in {output!r}"


def assert_plain(text: str) -> None:
    """Piped output: no control characters but line ends at all."""
    assert "Traceback" not in text, text
    assert "\r" not in text, text
    left = DRIVING.findall(text)
    assert left == [], f"controls in output: {left!r} in {text!r}"


# -- the sanitiser ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain RUNNING", "plain RUNNING"),
        ("", ""),
        ("ünïcödé 日本 ✓", "ünïcödé 日本 ✓"),
        ("[/] [link=http://x]y[/link]", "[/] [link=http://x]y[/link]"),
        ("\x1b[2J", "\\x1b[2J"),
        ("\x1b]8;;http://e/\x1b\\", "\\x1b]8;;http://e/\\x1b\\"),
        ("bell\x07", "bell\\x07"),
        ("a\nb\rc\td", "a\\x0ab\\x0dc\\x09d"),
        ("\x00\x7f", "\\x00\\x7f"),
        ("\x9b31m\x9d\x85", "\\x9b31m\\x9d\\x85"),
        ("\u202eexe.txt\u202c", "\\u202eexe.txt\\u202c"),
        (
            "\u2066\u2067\u2068\u2069\u200e\u200f\u061c",
            "\\u2066\\u2067\\u2068\\u2069\\u200e\\u200f\\u061c",
        ),
        ("x\u2028y\u2029", "x\\u2028y\\u2029"),
        (42, "42"),
        (None, "None"),
    ],
)
def test_printable_escapes_every_control(raw: object, shown: str) -> None:
    assert printable(raw) == shown
    assert DRIVING.search(printable(raw)) is None


@pytest.mark.parametrize(
    "value",
    [
        {"reason": HOSTILE},
        ["\x9b", "\u202e", "\u2028", "\x7f", "plain", "ü"],
        {"k\x9d": {"nested": [BIDI, 1, None, True]}},
        "\x1b[2J",
    ],
)
def test_terminal_json_stays_the_same_json_without_controls(value: Any) -> None:
    encoded = terminal_json(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())
    assert orjson.loads(encoded) == value
    assert DRIVING.search(encoded.replace("\n", "")) is None


# -- the CLI against the stand-in daemon ---------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected_code"),
    [
        (["status", "some-job"], 0),
        (["list"], 0),
        (["wait", "some-job", "--timeout", "20"], 1),
        (["wait", "running", "--timeout", "1"], 124),
    ],
    ids=["status", "list", "wait", "wait-live"],
)
def test_terminal_tables_show_hostile_strings_literally(
    hostile_daemon: StandIn, tmp_path: Path, command: list[str], expected_code: int
) -> None:
    code, output = run_in_terminal([*command, "--api", hostile_daemon.address], _cli_env(tmp_path))
    assert code == expected_code, output
    assert_cannot_drive_terminal(output)
    assert "\\x1b[2J" in output and "\\x1b[38;5;46mSUCCESS" in output
    assert MARKUP_CLOSE in output
    if command[0] != "wait":
        assert MARKUP_LINK in output or "[link=http://evil.example/]" in output
        assert "\\x9b31m" in output


@pytest.mark.parametrize(
    "command",
    [
        ["status", "some-job"],
        ["list"],
        ["wait", "some-job", "--timeout", "20"],
        ["events"],
        ["dead-letters"],
        ["register", "some-job"],
        ["redeliver", "--all"],
    ],
    ids=["status", "list", "wait", "events", "dead-letters", "register", "redeliver"],
)
def test_plain_output_has_no_controls(
    hostile_daemon: StandIn, tmp_path: Path, command: list[str]
) -> None:
    result = run_piped([*command, "--api", hostile_daemon.address], _cli_env(tmp_path))
    assert result.returncode == (1 if command[0] in ("wait", "redeliver") else 0), result.stderr
    assert result.stdout.strip()
    assert_plain(result.stdout)
    assert_plain(result.stderr)
    assert "\\x1b[2J" in result.stdout


def _wait_jobs(summary: Any) -> Any:
    """The whole job objects in a ``wait --json`` summary."""
    return [entry["job"] for entry in summary["jobs"]]


@pytest.mark.parametrize(
    ("command", "expected", "read"),
    [
        (["status", "some-job", "--json"], hostile_job(), None),
        (["list", "--json"], [hostile_job()], None),
        (["wait", "some-job", "--json", "--timeout", "20"], [hostile_job()], _wait_jobs),
        (["dead-letters", "--json"], [dead_letter()], None),
    ],
    ids=["status", "list", "wait", "dead-letters"],
)
def test_json_output_round_trips_without_raw_controls(
    hostile_daemon: StandIn,
    tmp_path: Path,
    command: list[str],
    expected: Any,
    read: Callable[[Any], Any] | None,
) -> None:
    result = run_piped([*command, "--api", hostile_daemon.address], _cli_env(tmp_path))
    assert result.returncode == (1 if command[0] == "wait" else 0), result.stderr
    output = orjson.loads(result.stdout)
    assert (output if read is None else read(output)) == expected
    assert_plain(result.stdout)


def test_events_json_is_one_valid_line_per_event_without_raw_controls(
    hostile_daemon: StandIn, tmp_path: Path
) -> None:
    result = run_piped(["events", "--json", "--api", hostile_daemon.address], _cli_env(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2, lines
    assert orjson.loads(lines[0]) == hostile_event()
    assert "\\x1b[2J" in lines[1]  # the line that was not JSON, escaped
    assert_plain(result.stdout)


def test_events_follow_prints_escaped_lines(hostile_daemon: StandIn, tmp_path: Path) -> None:
    env = _cli_env(tmp_path)
    for extra in ([], ["--json"]):
        lines, err = first_lines(
            ["events", "--follow", *extra, "--api", hostile_daemon.address], env, 1
        )
        assert_plain("\n".join(lines) + err)
        if extra:
            assert orjson.loads(lines[0]) == hostile_event()
        else:
            assert "\\x1b[2J" in lines[0] and MARKUP_CLOSE in lines[0]


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (["status", "broken"], 2),
        (["cancel", "some-job"], 1),
        (["status", "html"], 2),
        (["status", "shapeless"], 2),
        (["list"], 0),
    ],
    ids=["problem", "cancel", "not-json", "shapeless", "ok"],
)
def test_errors_are_one_escaped_line_on_stderr(
    hostile_daemon: StandIn, tmp_path: Path, command: list[str], code: int
) -> None:
    result = run_piped([*command, "--api", hostile_daemon.address], _cli_env(tmp_path))
    assert result.returncode == code, result.stdout + result.stderr
    if code:
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("jobwatchd: jobwatchd ")
    assert_plain(result.stderr)


def test_an_error_from_the_daemon_is_one_escaped_line(
    hostile_daemon: StandIn, tmp_path: Path
) -> None:
    env = _cli_env(tmp_path)
    piped = run_piped(["status", "broken", "--api", hostile_daemon.address], env)
    assert piped.returncode == 2
    assert piped.stderr.count("\n") == 1 and "jobwatchd answered 500" in piped.stderr
    assert_plain(piped.stderr)
    code, output = run_in_terminal(["status", "broken", "--api", hostile_daemon.address], env)
    assert code == 2
    assert_cannot_drive_terminal(output)


# -- the CLI against the real daemon --------------------------------------------------


def test_real_daemon_labels_with_markup_and_escapes_print_literally(
    tmp_path: Path, threaded_simulator: Any, daemon_factory: Callable[[Path], Any]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f"""
[daemon]
state_dir = "{tmp_path / "state"}"
[api]
listen = "127.0.0.1:0"
[[accounts]]
name = "default"
endpoint = "{threaded_simulator.url}"
project_id = "p1"
auth = "none"
[[sinks]]
type = "log"
"""
    )
    daemon = daemon_factory(config)
    address = daemon.start()
    job_id = threaded_simulator.sim.create_job("createServer", count=1, duration=5000)
    body = orjson.dumps({"job_id": job_id, "labels": LABELS})
    request = urllib.request.Request(
        f"http://{address}/v1/jobs",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 201
    env = _cli_env(tmp_path)
    for command in (["list"], ["status", job_id]):
        code, output = run_in_terminal([*command, "--api", address], env)
        assert code == 0, output
        assert_cannot_drive_terminal(output)
        assert "team=[/]" in output and "link=[link=http://evil.example/]here[/link]" in output
        assert "\\x1b[2J" in output
    listed = run_piped(["list", "--json", "--api", address], env)
    assert orjson.loads(listed.stdout)[0]["labels"] == LABELS
    assert_plain(listed.stdout)


# -- check-config redaction -----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.example.com/x", "https://hooks.example.com/x"),
        ("https://h:8443/p/TOKENPATH?token=abc", "https://h:8443/p/TOKENPATH?token=***"),
        ("https://h/p?a=1&b=2&c", "https://h/p?a=***&b=***&***"),
        ("https://h/p?abcdef", "https://h/p?***"),
        ("https://user:pw@h:1/p", "https://***@h:1/p"),
        ("https://user@h/p", "https://***@h/p"),
        ("http://[::1]:9/p?t=1#frag", "http://[::1]:9/p?t=***#***"),
        ("https://h/p?", "https://h/p"),
        ("https://h/p?a=1&&b=", "https://h/p?a=***&&b=***"),
        ("http://[::1/unclosed?t=1", "***"),
    ],
)
def test_redact_url_keeps_where_it_goes_and_masks_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_check_config_shows_no_secret(tmp_path: Path) -> None:
    secret = "whsec_" + "Q0FOQVJZLXdlYmhvb2stc2VjcmV0LTEyMzQ1Njc4"
    config = tmp_path / "c.toml"
    config.write_text(
        f"""
[daemon]
state_dir = "{tmp_path}"
store = "postgresql://jobwatchd:PGCANARY1@db.example.com:5432/jw?sslmode=require&password=PGCANARY2"

[[accounts]]
name = "default"
endpoint = "http://127.0.0.1:1"
project_id = "p1"
auth = "none"

[[sinks]]
type = "webhook"
name = "hook"
url = "https://hooks.example.com:8443/hook/PATHPART?token=URLCANARY1&sig=URLCANARY2"
secret = "{secret}"

[[sinks]]
type = "acme.sink"
endpoint = "https://svc:SVCCANARY1@acme.example.com/in?apikey=SVCCANARY2"
api_key = "SVCCANARY3"
dsn = "host=db user=u password=SVCCANARY4"
proxy = "http://proxyuser:PROXYCANARY1@proxy.example.com:3128"
region = "eu-west-1"

[sinks.auth]
client_secret = "SVCCANARY5"
"""
    )
    result = run_piped(["check-config", "-c", str(config)], _cli_env(tmp_path))
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "CANARY" not in output.replace("PATHPART", ""), output
    assert secret[6:] not in output
    assert "https://hooks.example.com:8443/hook/PATHPART?token=***&sig=***" in result.stdout
    assert "https://***@acme.example.com/in?apikey=***" in result.stdout
    assert "http://***@proxy.example.com:3128" in result.stdout
    assert "postgresql://jobwatchd:***@db.example.com:5432/jw" in result.stdout
    assert 'region = "eu-west-1"' in result.stdout
