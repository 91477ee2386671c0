"""Log lines on stdout: JSON objects, and syslog priorities when stdout is the journal."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from jobwatchd.logs import configure_logging, get_logger, is_journal_stream

EMIT = """
from jobwatchd.logs import configure_logging, get_logger
configure_logging("debug")
log = get_logger("jobwatchd.test")
log.debug("d"); log.info("i"); log.warning("w"); log.error("e")
"""


def _emit(stdout: Path, journal_stream: str | None) -> list[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    if journal_stream is not None:
        env["JOURNAL_STREAM"] = journal_stream
    with stdout.open("wb") as out:
        subprocess.run([sys.executable, "-c", EMIT], stdout=out, env=env, timeout=60, check=True)
    return stdout.read_bytes().splitlines()


def _stream_id(path: Path) -> str:
    st = path.stat()
    return f"{st.st_dev}:{st.st_ino}"


def test_lines_to_the_journal_carry_their_priority(tmp_path: Path) -> None:
    out = tmp_path / "stdout"
    out.touch()
    lines = _emit(out, _stream_id(out))
    prefixes = [line[:3] for line in lines]
    assert prefixes == [b"<7>", b"<6>", b"<4>", b"<3>"]
    events = [orjson.loads(line[3:]) for line in lines]
    assert [(e["level"], e["event"]) for e in events] == [
        ("debug", "d"),
        ("info", "i"),
        ("warning", "w"),
        ("error", "e"),
    ]


@pytest.mark.parametrize("journal_stream", [None, "1:2", "garbage", ""])
def test_lines_elsewhere_are_plain_json(tmp_path: Path, journal_stream: str | None) -> None:
    # an inherited $JOURNAL_STREAM that names another stream must not add prefixes
    lines = _emit(tmp_path / "stdout", journal_stream)
    assert len(lines) == 4
    assert all(orjson.loads(line)["event"] for line in lines)


def test_is_journal_stream_compares_the_descriptor(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.touch()
    with path.open("rb") as handle:
        assert is_journal_stream(handle.fileno(), {"JOURNAL_STREAM": _stream_id(path)})
        assert not is_journal_stream(handle.fileno(), {"JOURNAL_STREAM": "0:0"})
        assert not is_journal_stream(handle.fileno(), {})


def test_a_startup_failure_to_the_journal_is_an_error(tmp_path: Path) -> None:
    """The one line a failed start prints on stderr carries priority err in the journal."""
    config = tmp_path / "bad.toml"
    config.write_text("[daemon]\nno_such_key = 1\n")
    stderr = tmp_path / "stderr"
    stderr.touch()
    for journal_stream, prefix in ((_stream_id(stderr), b"<3>jobwatchd: "), (None, b"jobwatchd: ")):
        env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
        if journal_stream is not None:
            env["JOURNAL_STREAM"] = journal_stream
        with stderr.open("wb") as err:
            result = subprocess.run(
                [sys.executable, "-m", "jobwatchd", "run", "-c", str(config)],
                stderr=err,
                stdout=subprocess.DEVNULL,
                env=env,
                timeout=60,
                check=False,
            )
        lines = stderr.read_bytes().splitlines()
        assert result.returncode == 2
        assert len(lines) == 1 and lines[0].startswith(prefix), lines
        assert b"no_such_key" in lines[0]


@pytest.mark.parametrize(
    "hostile",
    ["\x1b[2J\x1b[32mSUCCESS", "\x1b]8;;http://evil\x07link\x1b]8;;\x07", "\u202eevil", "\x9b31m"],
)
def test_the_console_view_escapes_what_upstream_chose(
    hostile: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(token: str) -> None:
        raise ValueError(hostile)

    configure_logging("info", console=True)
    try:
        log = get_logger("jobwatchd.test")
        log.warning("poll.unexpected_status", job_id="j", status=hostile)
        try:
            fail("-".join(["SECRET", "local"]))  # a traceback must not show locals
        except ValueError:
            log.exception("api.error")
        out = capsys.readouterr().out
    finally:
        configure_logging("info", console=False, journal=False)
    assert "\x1b]" not in out and "\x9b" not in out and "\u202e" not in out
    assert "\x1b[2J" not in out and "\x07" not in out
    assert "SECRET-local" not in out
    assert "ValueError" in out and "Traceback" in out


def test_a_stream_without_a_descriptor_is_not_the_journal() -> None:
    assert not is_journal_stream(io.StringIO(), {"JOURNAL_STREAM": "1:1"})
