"""Running the ``jobwatchd`` command line as a subprocess."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

JOBWATCHD = [sys.executable, "-m", "jobwatchd"]
"""The command line, from the package of this interpreter."""

_SCRIPT = Path(sys.executable).with_name("jobwatchd")
INSTALLED = [str(_SCRIPT)] if _SCRIPT.exists() else JOBWATCHD
"""The installed console script next to this interpreter (else :data:`JOBWATCHD`)."""


def cli(
    *args: str,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    command: list[str] = JOBWATCHD,
) -> subprocess.CompletedProcess[str]:
    """``jobwatchd args...`` to completion, output captured as text; ``env``
    adds to this process's environment."""
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
    )


class Terminal:
    """A subprocess on a pseudo-terminal (160x40), its output collected."""

    def __init__(self, args: list[str]) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "40"}
        env.pop("NO_COLOR", None)
        self.proc = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
        )
        os.close(slave)
        self._master = master
        self._data = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self._data += chunk

    @property
    def output(self) -> str:
        with self._lock:
            return self._data.decode("utf-8", "replace")

    def wait(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self._thread.join(timeout=10)
        os.close(self._master)
        return code
