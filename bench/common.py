"""Shared plumbing of the benchmark suite: processes, HTTP, configs, statistics.

Every process the suite starts goes through :class:`Procs`, which kills what
is still running when the scenario ends, however it ends. All traffic goes to
127.0.0.1.
"""

from __future__ import annotations

import asyncio
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import aiohttp
import orjson
import tomli_w

ROOT: Final = Path(__file__).resolve().parent.parent
PYTHON: Final = sys.executable
HOST: Final = "127.0.0.1"
PROJECT_ID: Final = "0123456789abcdef0123456789abcdef"
BENCH_AK: Final = "BENCHACCESSKEY0000001"
BENCH_SK: Final = "bench-secret-key-not-a-real-one"


class BenchError(RuntimeError):
    """A scenario could not be carried out (a process died, a deadline passed)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


# ----------------------------------------------------------------- processes


@dataclass
class Proc:
    """A child process of the suite, with its log file and /proc readings."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.popen.poll() is None

    def check_alive(self) -> None:
        """Raise :class:`BenchError` with the log's tail if the process exited."""
        if not self.alive():
            raise BenchError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the process's output."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        """User + system CPU seconds used so far (this process only)."""
        return cpu_seconds(self.pid)

    def rss_mib(self) -> float:
        """Resident set size in MiB."""
        return rss_mib(self.pid)

    def suspend(self) -> None:
        """SIGSTOP: freeze the process (between its measurement windows)."""
        if self.alive():
            os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT."""
        if self.alive():
            os.kill(self.pid, signal.SIGCONT)

    def kill9(self) -> None:
        """SIGKILL and reap, as a crash would."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (after SIGCONT, in case it is frozen); SIGKILL after ``timeout``."""
        if not self.alive():
            return
        try:
            os.kill(self.pid, signal.SIGCONT)
            os.kill(self.pid, signal.SIGTERM)
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
        except ProcessLookupError:
            pass


class Procs:
    """Starts child processes and always stops them on exit (a context manager)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self._procs: list[Proc] = []

    def spawn(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = None,
    ) -> Proc:
        """Start ``args``; output goes to ``work/<name>.log`` (stdout too unless piped)."""
        log_path = self.work / f"{name}.log"
        log_file = log_path.open("ab")
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        try:
            popen = subprocess.Popen(
                list(args),
                stdin=stdin,
                stdout=log_file if stdout is None else stdout,
                stderr=log_file,
                env=full_env,
                cwd=ROOT,
            )
        finally:
            log_file.close()
        proc = Proc(name, popen, log_path)
        self._procs.append(proc)
        return proc

    def stop_all(self) -> None:
        """Stop every process still running, newest first."""
        for proc in reversed(self._procs):
            try:
                proc.stop()
            except Exception as exc:  # keep stopping the others
                print(f"bench: could not stop {proc.name}: {exc!r}", file=sys.stderr)
        self._procs.clear()

    def __enter__(self) -> Procs:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """VmRSS of ``pid`` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


# ---------------------------------------------------------------------- HTTP


class Http:
    """A small JSON client for the control calls of the suite (127.0.0.1 only)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    @classmethod
    def create(cls, limit: int = 64) -> Http:
        """A client with its own connection pool of ``limit`` connections."""
        connector = aiohttp.TCPConnector(limit=limit)
        timeout = aiohttp.ClientTimeout(total=300)
        return cls(aiohttp.ClientSession(connector=connector, timeout=timeout))

    async def close(self) -> None:
        """Close the pool."""
        await self.session.close()

    async def request(
        self, method: str, url: str, body: object = None, *, raw: bytes | None = None
    ) -> Any:
        """Send JSON (or ``raw`` bytes), return the decoded JSON answer; raise on >= 400."""
        data = raw if raw is not None else (None if body is None else orjson.dumps(body))
        headers = {"Content-Type": "application/json"} if data is not None else {}
        async with self.session.request(method, url, data=data, headers=headers) as resp:
            payload = await resp.read()
            if resp.status >= 400:
                raise BenchError(f"{method} {url} -> {resp.status}: {payload[:300]!r}")
            return orjson.loads(payload) if payload else None

    async def get(self, url: str) -> Any:
        """GET ``url`` as JSON."""
        return await self.request("GET", url)

    async def text(self, url: str) -> str:
        """GET ``url`` as text; raise on >= 400."""
        async with self.session.get(url) as resp:
            body = await resp.text()
            if resp.status >= 400:
                raise BenchError(f"GET {url} -> {resp.status}: {body[:300]!r}")
            return body

    async def post(self, url: str, body: object = None, *, raw: bytes | None = None) -> Any:
        """POST JSON to ``url``."""
        return await self.request("POST", url, body, raw=raw)

    async def wait_ok(self, url: str, proc: Proc, timeout: float = 60.0) -> float:
        """Wait until ``url`` answers 200; return the seconds it took. Fails if ``proc`` dies."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            proc.check_alive()
            try:
                async with self.session.get(url) as resp:
                    await resp.read()
                    if resp.status == 200:
                        return time.monotonic() - started
            except (aiohttp.ClientError, OSError):
                pass
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{proc.name}: {url} not ready after {timeout}s\n{proc.log_tail()}"
                )
            await asyncio.sleep(0.02)


# ------------------------------------------------------------------- services


@dataclass
class Simulated:
    """A running simulator process."""

    proc: Proc
    port: int

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://{HOST}:{self.port}"

    async def create(self, http: Http, jobs: Sequence[Mapping[str, object]]) -> list[str]:
        """Create ``jobs`` (``POST /_sim/jobs`` in batches of 10,000); return their ids."""
        ids: list[str] = []
        for offset in range(0, len(jobs), 10_000):
            batch = list(jobs[offset : offset + 10_000])
            answer = await http.post(f"{self.url}/_sim/jobs", {"jobs": batch})
            ids.extend(job["job_id"] for job in answer["jobs"])
        return ids

    async def ok_count(self, http: Http) -> int:
        """Job queries answered with a job so far."""
        stats = await http.get(f"{self.url}/_sim/stats")
        return int(stats["ok"])

    async def transitions(self, http: Http, job_id: str) -> list[dict[str, Any]]:
        """The real transitions of ``job_id`` (and its sub-jobs) so far."""
        result: list[dict[str, Any]] = await http.get(f"{self.url}/_sim/jobs/{job_id}/transitions")
        return result


async def start_simulator(
    procs: Procs, http: Http, *, name: str = "simulator", speed: float = 1.0, seed: int = 1
) -> Simulated:
    """Start ``bench.simserver`` (the product's simulator on uvloop) and wait for it."""
    port = free_port()
    args = [PYTHON, "-m", "bench.simserver", "--port", str(port), "--speed", str(speed)]
    proc = procs.spawn(name, [*args, "--seed", str(seed)])
    sim = Simulated(proc, port)
    await http.wait_ok(f"{sim.url}/_sim/stats", proc)
    return sim


@dataclass
class Daemon:
    """A jobwatchd daemon process and what it needs to be restarted."""

    procs: Procs
    name: str
    config_path: Path
    state_dir: Path
    port: int
    env: dict[str, str]
    proc: Proc | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        """Its API base URL."""
        return f"http://{HOST}:{self.port}"

    def start(self) -> Proc:
        """Start (or restart) the daemon process."""
        self.starts += 1
        suffix = "" if self.starts == 1 else f"-{self.starts}"
        args = [PYTHON, "-m", "jobwatchd", "run", "-c", str(self.config_path)]
        self.proc = self.procs.spawn(self.name + suffix, args, env=self.env)
        return self.proc

    @property
    def running(self) -> Proc:
        """The current process (raises if never started)."""
        if self.proc is None:
            raise BenchError(f"{self.name} is not started")
        return self.proc

    async def wait_ready(self, http: Http, timeout: float = 60.0) -> float:
        """Seconds until ``/readyz`` answered 200."""
        return await http.wait_ok(f"{self.url}/readyz", self.running, timeout)

    async def readiness(self, http: Http) -> dict[str, Any]:
        """The ``/readyz`` body."""
        body: dict[str, Any] = await http.get(f"{self.url}/readyz")
        return body

    async def sink_backlog(self, http: Http) -> int:
        """Events recorded but not yet delivered, summed over the sinks this
        daemon delivers to (``jobwatchd_sink_backlog_events`` from /metrics)."""
        metrics = await http.text(f"{self.url}/metrics")
        return sum(
            round(float(line.rsplit(" ", 1)[1]))
            for line in metrics.splitlines()
            if line.startswith("jobwatchd_sink_backlog_events{")
        )

    async def register(
        self,
        http: Http,
        job_ids: Sequence[str],
        batch: int = 10_000,
        services: Mapping[str, str] | None = None,
    ) -> None:
        """Register ``job_ids`` through the batch API (``services``: a job's service
        when it is not ECS)."""
        of = services or {}
        for offset in range(0, len(job_ids), batch):
            chunk = [
                {"job_id": job_id, **({"service": of[job_id]} if job_id in of else {})}
                for job_id in job_ids[offset : offset + batch]
            ]
            await http.post(f"{self.url}/v1/jobs", raw=orjson.dumps({"jobs": chunk}))

    async def jobs(self, http: Http, status: str | None = None) -> list[dict[str, Any]]:
        """Every tracked job object (paged ``GET /v1/jobs``)."""
        found: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(100_000):  # bounded: 100M jobs
            query = "limit=1000" + (f"&after={after}" if after else "")
            if status:
                query += f"&status={status}"
            page = await http.get(f"{self.url}/v1/jobs?{query}")
            found.extend(page["jobs"])
            after = page["next"]
            if not after:
                break
        return found


def write_daemon(
    procs: Procs,
    name: str,
    *,
    sim: Simulated,
    polling: Mapping[str, object],
    sinks: Sequence[Mapping[str, object]] = (),
    auth: str = "none",
    rate_limit: float = 1_000_000.0,
    max_batch: int = 10_000,
    daemon_extra: Mapping[str, object] | None = None,
    endpoints: Mapping[str, str] | None = None,
) -> Daemon:
    """Write a daemon's config and state directory under the work directory
    (``daemon_extra``: more ``[daemon]`` keys, e.g. a fleet's ``store`` and ``lease``;
    ``endpoints``: other services' base URLs, by name)."""
    base = procs.work / name
    state = base / "state"
    state.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config: dict[str, Any] = {
        "daemon": {"state_dir": str(state), "log_level": "warning", **(daemon_extra or {})},
        "api": {"listen": f"{HOST}:{port}", "max_batch": max_batch, "max_body": "64MiB"},
        "accounts": [
            {
                "name": "default",
                "endpoint": sim.url,
                "project_id": PROJECT_ID,
                "auth": auth,
                "rate_limit": rate_limit,
                "request_timeout": "30s",
                **({"endpoints": dict(endpoints)} if endpoints else {}),
            }
        ],
        "polling": dict(polling),
        "sinks": [dict(sink) for sink in sinks] or [{"type": "file", "path": "transitions.jsonl"}],
    }
    path = base / "jobwatchd.toml"
    path.write_text(tomli_w.dumps(config))
    env = {"HUAWEICLOUD_SDK_AK": BENCH_AK, "HUAWEICLOUD_SDK_SK": BENCH_SK} if auth == "aksk" else {}
    return Daemon(procs, name, path, state, port, env)


# ----------------------------------------------------------------- statistics


def median(values: Iterable[float]) -> float:
    """The median, NaN for no values."""
    items = [v for v in values if not math.isnan(v)]
    return statistics.median(items) if items else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def fmt(value: float, digits: int = 1) -> str:
    """A number for a table: thousands separators, ``n/a`` for NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


# -------------------------------------------------------------------- machine


@dataclass
class Machine:
    """What the numbers were measured on."""

    cpu_model: str
    cores: int
    memory_gib: float
    python: str
    kernel: str
    libraries: dict[str, str] = field(default_factory=dict)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)


def describe_machine() -> Machine:
    """CPU model, cores, memory, Python and library versions, current load."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = math.nan
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) / 1024**2
    except OSError:
        pass
    libraries: dict[str, str] = {}
    from importlib import metadata  # noqa: PLC0415 - only here

    for name in ("jobwatchd", "aiohttp", "uvloop", "orjson", "huaweicloudsdkecs", "matplotlib"):
        try:
            libraries[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libraries[name] = "not installed"
    return Machine(
        cpu_model=model,
        cores=os.cpu_count() or 0,
        memory_gib=memory,
        python=platform.python_version(),
        kernel=platform.release(),
        libraries=libraries,
        load_before=os.getloadavg(),
    )
