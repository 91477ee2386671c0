"""How fast the web view's pages load with many jobs tracked (not part of the suite).

    python -m bench.ui_load                       # 100,000 jobs
    python -m bench.ui_load --jobs 1000 --screenshots docs/images

A simulator process creates ``--jobs`` long-running jobs (``resizeServer``, a
day each) and three ``createServer`` jobs of three sub-jobs (one fails; the
job page shows it), a daemon process (file sink, 20 polls/s) tracks them, a tenth of
them labelled ``team=t0`` … ``team=t9``. Headless Chromium (Debian's
``/usr/bin/chromium``, driven by Playwright) then opens each page ``--repeat``
times, from navigation start until the page has rendered its data (``<body
data-refreshed="1">``), and prints the median and the slowest. The API calls a
page makes are timed on their own too. With ``--screenshots DIR`` each page is
saved there as PNG (the images of docs/ui.md).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from playwright.async_api import async_playwright

from bench.common import Daemon, Http, Procs, start_simulator, write_daemon

CHROMIUM = "/usr/bin/chromium"
BATCH = 10_000


async def _fill(http: Http, daemon: Daemon, sim_url: str, jobs: int) -> list[str]:
    ids: list[str] = []
    for offset in range(0, jobs, BATCH):
        size = min(BATCH, jobs - offset)
        spec = {"job_type": "resizeServer", "duration": 86_400}
        answer = await http.post(f"{sim_url}/_sim/jobs", raw=orjson.dumps({"jobs": [spec] * size}))
        batch = [job["job_id"] for job in answer["jobs"]]
        body = [
            {"job_id": job_id, "labels": {"team": f"t{(offset + i) % 10}"}}
            for i, job_id in enumerate(batch)
        ]
        await http.post(f"{daemon.url}/v1/jobs", raw=orjson.dumps({"jobs": body}))
        ids.extend(batch)
    return ids


async def _time_api(http: Http, url: str, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await http.get(url)
        times.append(time.perf_counter() - started)
    return times


async def _time_pages(
    pages: dict[str, str], repeat: int, screenshots: Path | None
) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 800})
            page = await context.new_page()
            for name, url in pages.items():
                times = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    await page.goto(url)
                    await page.wait_for_selector('body[data-refreshed="1"]', timeout=30_000)
                    times.append(time.perf_counter() - started)
                results[name] = times
                if screenshots is not None:
                    await page.screenshot(path=screenshots / f"ui-{name}.png", full_page=False)
        finally:
            await browser.close()
    return results


def _row(name: str, times: list[float]) -> str:
    median = statistics.median(times) * 1000
    return f"  {name:<28} median {median:7.1f} ms   slowest {max(times) * 1000:7.1f} ms"


async def run(jobs: int, repeat: int, screenshots: Path | None) -> int:
    """Fill a daemon with ``jobs`` jobs and time the pages; 0 when all loaded."""
    with (
        tempfile.TemporaryDirectory(prefix="jobwatchd-ui-bench-") as work,
        Procs(Path(work)) as procs,
    ):
        http = Http.create()
        try:
            sim = await start_simulator(procs, http)
            daemon = write_daemon(
                procs, "daemon", sim=sim, polling={"concurrency": 8}, rate_limit=20.0
            )
            daemon.start()
            await daemon.wait_ready(http)
            # A few jobs with sub-jobs (one failing) for the job page.
            specs = [
                {"job_type": "createServer", "count": 3, "duration": 20, "fail": fail}
                for fail in (True, False, False)
            ]
            shown = [
                job["job_id"]
                for job in (await http.post(f"{sim.url}/_sim/jobs", {"jobs": specs}))["jobs"]
            ]
            await http.post(
                f"{daemon.url}/v1/jobs",
                {
                    "jobs": [
                        {"job_id": job_id, "labels": {"team": "t0", "env": "prod"}}
                        for job_id in shown
                    ]
                },
            )
            started = time.perf_counter()
            ids = await _fill(http, daemon, sim.url, jobs)
            print(f"{jobs} jobs registered in {time.perf_counter() - started:.1f} s")
            middle = sorted(ids)[len(ids) // 2]
            base = daemon.url
            api: dict[str, str] = {
                "GET /v1/jobs?limit=100": f"{base}/v1/jobs?limit=100",
                "GET /v1/jobs label, status": (
                    f"{base}/v1/jobs?limit=100&label=team%3Dt3&status=RUNNING"
                ),
                "GET /ui/data/summary": f"{base}/ui/data/summary",
            }
            pages = {
                "jobs": f"{base}/ui",
                "jobs-label-filter": f"{base}/ui?label=team%3Dt3",
                "jobs-prefix-search": f"{base}/ui?q={middle[:4]}",
                "jobs-middle-page": f"{base}/ui?after={middle}",
                "job": f"{base}/ui/jobs/{shown[0]}",
                "sinks": f"{base}/ui/sinks",
                "accounts": f"{base}/ui/accounts",
            }
            print("API (one request each):")
            for name, url in api.items():
                print(_row(name, await _time_api(http, url, repeat)))
            timed = await _time_pages(pages, repeat, screenshots)
            print(f"pages in headless Chromium, navigation to data rendered ({repeat} loads):")
            for name, times in timed.items():
                print(_row(name, times))
            readiness: dict[str, Any] = await http.get(f"{base}/readyz")
            print(f"daemon: {readiness['active_jobs']} active jobs, {readiness['polls']} polls")
        finally:
            await http.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.ui_load``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--screenshots", type=Path, default=None)
    options = parser.parse_args(argv)
    if options.screenshots is not None:
        options.screenshots.mkdir(parents=True, exist_ok=True)
    return asyncio.run(run(options.jobs, options.repeat, options.screenshots))


if __name__ == "__main__":
    sys.exit(main())
