"""Sampling profile of a running process with py-spy, summarised for the report."""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

_LINE_NO = re.compile(r":\d+\)$")


@dataclass
class Profile:
    """Where the sampled process spent its (non-idle) time."""

    samples: int
    seconds: float
    rate: int
    self_top: list[tuple[str, int]] = field(default_factory=list)
    inclusive_top: list[tuple[str, int]] = field(default_factory=list)
    self_lines: list[tuple[str, int]] = field(default_factory=list)
    by_package: list[tuple[str, int]] = field(default_factory=list)
    raw_path: str = ""
    error: str | None = None


def py_spy() -> str | None:
    """The py-spy executable (next to this interpreter, else on PATH)."""
    beside = Path(sys.executable).with_name("py-spy")
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


def record(pid: int, seconds: float, out: Path, rate: int = 200) -> Profile:
    """Sample ``pid`` for ``seconds`` into ``out`` (collapsed stacks) and summarise."""
    exe = py_spy()
    if exe is None:
        return Profile(0, seconds, rate, error="py-spy is not installed (pip install py-spy)")
    args = [exe, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))]
    args += ["--rate", str(rate), "--format", "raw", "--output", str(out), "--nonblocking"]
    try:
        done = subprocess.run(args, capture_output=True, timeout=seconds + 60, check=False)
    except subprocess.TimeoutExpired:
        return Profile(0, seconds, rate, error="py-spy did not finish")
    if done.returncode != 0 or not out.exists():
        message = done.stderr.decode(errors="replace").strip()[-500:]
        return Profile(0, seconds, rate, error=f"py-spy failed: {message}")
    profile = summarise(out.read_text(), seconds, rate)
    profile.raw_path = str(out)
    return profile


def _package(frame: str) -> str:
    for marker, name in (
        ("jobwatchd/", "jobwatchd"),
        ("aiohttp/", "aiohttp"),
        ("yarl/", "yarl / multidict"),
        ("multidict/", "yarl / multidict"),
        ("asyncio/", "asyncio"),
        ("uvloop/", "uvloop"),
        ("structlog/", "structlog"),
        ("prometheus_client/", "prometheus_client"),
        ("sqlite3/", "sqlite3"),
        ("json/", "json"),
    ):
        if marker in frame:
            return name
    return "other (stdlib, C)"


def _short(frame: str) -> str:
    """``poll (jobwatchd/tracker.py:297)`` without the site-packages prefix."""
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in frame:
            name, _, rest = frame.partition(" (")
            return f"{name} ({rest.split(marker, 1)[1]}"
    return frame


def summarise(collapsed: str, seconds: float, rate: int, top: int = 15) -> Profile:
    """Self and inclusive sample counts per function from py-spy's raw format."""
    self_fn: collections.Counter[str] = collections.Counter()
    self_line: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if f]
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        if frames and frames[0].startswith("thread "):
            frames = frames[1:]
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        self_line[leaf] += count
        self_fn[_LINE_NO.sub(")", leaf)] += count
        packages[_package(leaf)] += count
        for name in {_LINE_NO.sub(")", f) for f in frames}:
            inclusive[name] += count
    return Profile(
        samples=total,
        seconds=seconds,
        rate=rate,
        self_top=self_fn.most_common(top),
        inclusive_top=inclusive.most_common(top + 45),
        self_lines=self_line.most_common(top),
        by_package=packages.most_common(),
    )
