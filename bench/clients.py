"""The reference clients the daemon is measured against, each run as its own process.

- ``raw``: the stack's ceiling. ``concurrency`` aiohttp workers (on uvloop, as
  the daemon) GET job after job over keep-alive connections and read the body;
  no parsing, no bookkeeping.
- ``sdk``: the official vendor SDK, ``huaweicloudsdkecs`` ``EcsClient.show_job``
  from ``concurrency`` threads sharing one client (requests' pool sized to
  match), AK/SK signing every request as it does against the real cloud.
- ``fixed``: the common hand-written loop: query, and while the job is not
  finished, sleep a fixed interval and query again.
- ``expo``: the waiter of the major SDKs (smithy/AWS SDK v2 defaults: min 2 s,
  max 120 s): query at once, then wait ``min * 2**(attempt-1)`` capped at
  ``max``, each wait drawn uniformly between ``min`` and that.

``raw`` and ``sdk`` loop over the given job ids until ``--max-seconds`` (the
suite measures them from the simulator's counters and /proc). ``fixed`` and
``expo`` read job ids from stdin, one a line, start tracking each at once,
and when stdin closes and every job ended write one JSON object per job to
``--out``: ``job_id``, ``calls`` and ``seen`` (``[status, unix time]`` of
each status change observed).

Usage: python -m bench.clients {raw,sdk,fixed,expo} --url URL [options]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.common import BENCH_AK, BENCH_SK, PROJECT_ID
from jobwatchd.daemon import install_event_loop

TERMINAL = frozenset({"SUCCESS", "FAIL"})


def read_ids(path: Path) -> list[str]:
    """Job ids from a file, one a line."""
    return [line for line in path.read_text().split() if line]


# ----------------------------------------------------------- throughput loops


def wait_for_go(go_file: Path | None, deadline: float) -> None:
    """Block until ``go_file`` exists (at once when None), at most until ``deadline``."""
    while go_file is not None and not go_file.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


async def raw_loop(url: str, ids: list[str], concurrency: int, max_seconds: float) -> None:
    """GET job after job with ``concurrency`` workers until ``max_seconds`` pass."""
    deadline = time.monotonic() + max_seconds
    cycle: Iterator[str] = itertools.cycle(ids)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while time.monotonic() < deadline:
                try:
                    async with session.get(f"{url}/v1/{PROJECT_ID}/jobs/{next(cycle)}") as resp:
                        await resp.read()
                except (aiohttp.ClientError, OSError):
                    # A keep-alive connection the server closed while we were frozen.
                    await asyncio.sleep(0.01)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def sdk_loop(
    url: str, ids: list[str], concurrency: int, max_seconds: float, go_file: Path | None = None
) -> None:
    """``ShowJob`` job after job from ``concurrency`` threads until ``max_seconds`` pass."""
    from huaweicloudsdkcore.auth.credentials import (  # type: ignore[import-untyped]  # noqa: PLC0415
        BasicCredentials,
    )
    from huaweicloudsdkcore.http.http_config import (  # type: ignore[import-untyped]  # noqa: PLC0415
        HttpConfig,
    )
    from huaweicloudsdkecs.v2 import (  # type: ignore[import-untyped]  # noqa: PLC0415
        EcsClient,
        ShowJobRequest,
    )

    config = HttpConfig.get_default_config()
    config.retry_times = 0
    config.pool_connections = 1
    config.pool_maxsize = concurrency
    config.timeout = (10, 30)
    client = (
        EcsClient.new_builder()
        .with_http_config(config)
        .with_credentials(BasicCredentials(BENCH_AK, BENCH_SK, PROJECT_ID))
        .with_endpoints([url])
        .build()
    )
    deadline = time.monotonic() + max_seconds
    wait_for_go(go_file, deadline)
    cycle: Iterator[str] = itertools.cycle(ids)
    lock = threading.Lock()
    failures: list[BaseException] = []

    def worker() -> None:
        while time.monotonic() < deadline and len(failures) < 1000:
            with lock:
                job_id = next(cycle)
            try:
                client.show_job(ShowJobRequest(job_id=job_id))
            except Exception as exc:  # a connection closed while frozen: go on
                failures.append(exc)
                time.sleep(0.01)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if len(failures) >= 1000:
        raise SystemExit(f"sdk: too many failures, first {failures[0]!r}")


# --------------------------------------------------------- tracking strategies


def fixed_delays(interval: float) -> Iterator[float]:
    """The hand-written loop: the same wait every time."""
    while True:
        yield interval


def waiter_delays(low: float, high: float, rng: random.Random) -> Iterator[float]:
    """smithy-go ``waiter.ComputeDelay``: attempt 1 waits ``low``; later ones a uniform
    draw in ``[low, min(high, low * 2**(attempt-1))]``."""
    for attempt in itertools.count(1):
        ceiling = min(high, low * 2.0 ** min(attempt - 1, 60))
        yield low if ceiling <= low else rng.uniform(low, ceiling)


async def track_jobs(
    url: str, mode: str, interval: float, low: float, high: float, max_seconds: float
) -> list[dict[str, Any]]:
    """Track every job id read from stdin with the ``mode`` strategy; return what each saw."""
    deadline = time.monotonic() + max_seconds
    rng = random.Random(7)
    results: list[dict[str, Any]] = []
    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def track(job_id: str) -> None:
            delays = fixed_delays(interval) if mode == "fixed" else waiter_delays(low, high, rng)
            calls, last, seen = 0, None, []
            while time.monotonic() < deadline:
                try:
                    async with session.get(f"{url}/v1/{PROJECT_ID}/jobs/{job_id}") as resp:
                        body = await resp.read()
                        ok = resp.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                now = time.time()
                calls += 1
                if ok:
                    status = orjson.loads(body).get("status")
                    if status != last:
                        seen.append([status, now])
                        last = status
                    if status in TERMINAL:
                        break
                await asyncio.sleep(next(delays))
            results.append({"job_id": job_id, "calls": calls, "seen": seen})

        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        tasks: list[asyncio.Task[None]] = []
        while time.monotonic() < deadline:
            line = await reader.readline()
            if not line:
                break
            job_id = line.decode().strip()
            if job_id:
                tasks.append(asyncio.create_task(track(job_id)))
        await asyncio.gather(*tasks)
    return results


def main() -> None:
    """Run one client until its bound."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("raw", "sdk", "fixed", "expo"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--ids", type=Path, help="raw, sdk: file of job ids")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--interval", type=float, default=10.0, help="fixed: the wait")
    parser.add_argument("--min-delay", type=float, default=2.0, help="expo: first wait")
    parser.add_argument("--max-delay", type=float, default=120.0, help="expo: longest wait")
    parser.add_argument("--out", type=Path, help="fixed, expo: results file")
    parser.add_argument("--go-file", type=Path, help="raw, sdk: start once this file exists")
    args = parser.parse_args()
    if not args.url.startswith("http://127.0.0.1:"):
        parser.error("--url must be on 127.0.0.1")
    install_event_loop()
    if args.mode == "raw":
        ids = read_ids(args.ids)
        wait_for_go(args.go_file, time.monotonic() + args.max_seconds)
        asyncio.run(raw_loop(args.url, ids, args.concurrency, args.max_seconds))
    elif args.mode == "sdk":
        sdk_loop(args.url, read_ids(args.ids), args.concurrency, args.max_seconds, args.go_file)
    else:
        if args.out is None:
            parser.error("--out is required")
        results = asyncio.run(
            track_jobs(
                args.url, args.mode, args.interval, args.min_delay, args.max_delay, args.max_seconds
            )
        )
        args.out.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in results))


if __name__ == "__main__":
    main()
