"""A rough scale probe: register N simulated jobs in batches, then report the
daemon's RSS and the polls per second it sustains.

Runs the simulator and the daemon as separate processes on 127.0.0.1.
Usage: python bench/scale_quick.py [--jobs 100000] [--window 10]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def call(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=120) as resp:
        return json.loads(resp.read() or b"null")


def wait_for(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            call("GET", url)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # a start-up poll, not test synchronisation
        else:
            return


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    sim_port, api_port = free_port(), free_port()
    work = Path(tempfile.mkdtemp(prefix="jobwatchd-bench-"))
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jobwatchd",
            "simulate",
            "--port",
            str(sim_port),
            "--demo",
            "0",
            "--speed",
            "1",
        ],
        stdout=subprocess.DEVNULL,
    )
    config = work / "bench.toml"
    config.write_text(
        f"""
[daemon]
state_dir = "{work / "state"}"
log_level = "warning"
[api]
listen = "127.0.0.1:{api_port}"
max_batch = 10000
max_body = "16MiB"
[[accounts]]
name = "default"
endpoint = "http://127.0.0.1:{sim_port}"
project_id = "0123456789abcdef0123456789abcdef"
auth = "none"
rate_limit = 1000000
[polling]
concurrency = {args.concurrency}
initial_delay = "0s"
min_interval = "1ms"
max_interval = "1ms"
multiplier = 1.0
jitter = 0.0
"""
    )
    daemon = None
    try:
        wait_for(f"http://127.0.0.1:{sim_port}/_sim/stats")
        ids: list[str] = []
        while len(ids) < args.jobs:
            count = min(10_000, args.jobs - len(ids))
            body = {"jobs": [{"job_type": "createServer", "duration": 86_000}] * count}
            created = call("POST", f"http://127.0.0.1:{sim_port}/_sim/jobs", body)
            ids.extend(job["job_id"] for job in created["jobs"])
        daemon = subprocess.Popen(
            [sys.executable, "-m", "jobwatchd", "run", "-c", str(config)],
            stdout=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{api_port}"
        wait_for(f"{base}/readyz")
        started = time.monotonic()
        for offset in range(0, len(ids), 10_000):
            batch = [{"job_id": job_id} for job_id in ids[offset : offset + 10_000]]
            call("POST", f"{base}/v1/jobs", {"jobs": batch})
        registration = time.monotonic() - started
        first = call("GET", f"{base}/readyz")["polls"]
        cpu_before, t_before = cpu_seconds(daemon.pid), time.monotonic()
        if os.environ.get("PROFILE"):
            record = ["py-spy", "record", "-d", str(int(args.window)), "-f", "raw"]
            target = ["-o", os.environ["PROFILE"], "-p", str(daemon.pid)]
            subprocess.run([*record, *target], check=False)
        else:
            time.sleep(args.window)
        polls = call("GET", f"{base}/readyz")["polls"] - first
        elapsed = time.monotonic() - t_before
        cpu = cpu_seconds(daemon.pid) - cpu_before
        print(
            json.dumps(
                {
                    "jobs": len(ids),
                    "registration_seconds": round(registration, 2),
                    "registrations_per_second": round(len(ids) / registration),
                    "daemon_rss_mib": round(rss_mib(daemon.pid), 1),
                    "polls_per_second": round(polls / elapsed),
                    "daemon_cpu_seconds_per_1000_polls": round(1000 * cpu / max(polls, 1), 3),
                    "simulator_rss_mib": round(rss_mib(sim.pid), 1),
                },
                indent=2,
            )
        )
    finally:
        for proc in (daemon, sim):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)


if __name__ == "__main__":
    main()
