"""Running the ``jobwatchd`` command line as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
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
