"""Webhook throughput: events per second from the event log to a local receiver.

Records ``--events`` events over ``--jobs`` jobs in a fresh SQLite store,
then runs a real :class:`SinkRunner` + :class:`WebhookSink` (signed, keep-alive)
until the sink's position reaches the end of the log: once one event per
request, once with ``batch_max = --batch``. The receiver is an aiohttp server
in its own process (this script with ``--serve``), answering 204 after reading
the body, so sender and receiver do not share a CPU.

Usage: python bench/webhook_throughput.py [--events 20000] [--jobs 2000]
       [--concurrency 8] [--batch 50]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from aiohttp import web

from jobwatchd.config import Secret, SinkConfig, SinkFilter
from jobwatchd.daemon import install_event_loop
from jobwatchd.engine.delivery import SinkRunner
from jobwatchd.models import JOB_TRANSITION, NewEvent, NewJob
from jobwatchd.sinks import SinkContext
from jobwatchd.sinks.webhook import WebhookOptions, WebhookSink
from jobwatchd.store.sqlite import SQLiteStore

SECRET = "whsec_" + base64.b64encode(b"benchmark-signing-key").decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve(port: int) -> None:
    """The receiver: read the body, answer 204."""

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    install_event_loop()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


async def fill(store: SQLiteStore, events: int, jobs: int) -> int:
    """Record ``events`` realistic events round-robin over ``jobs``; returns the last seq."""
    job_ids = [uuid.uuid4().hex for _ in range(jobs)]
    registered = await store.register(
        [NewJob(job_id=job, project_id="p", account="default", labels={}) for job in job_ids],
        now=time.time(),
    )
    records = {result.job.job_id: result.job for result in registered}
    last = 0
    for n in range(events):
        job = job_ids[n % jobs]
        event_id = str(uuid.uuid4())
        event = {
            "specversion": "1.0",
            "id": event_id,
            "source": "/jobwatchd/default",
            "type": JOB_TRANSITION,
            "subject": job,
            "time": "2026-11-28T23:52:29.618Z",
            "datacontenttype": "application/json",
            "data": {
                "job_id": job,
                "project_id": "0123456789abcdef0123456789abcdef",
                "account": "default",
                "job_type": "createServer",
                "from": "INIT",
                "to": "RUNNING",
                "terminal": False,
                "entities": {"sub_jobs_total": 2, "sub_jobs": []},
                "labels": {"team": "bench"},
                "observed_at": "2026-11-28T23:52:29.618Z",
            },
        }
        stored = await store.record(
            records[job],
            [
                NewEvent(
                    event_id=event_id,
                    job_id=job,
                    type=JOB_TRANSITION,
                    payload=orjson.dumps(event),
                )
            ],
        )
        last = stored[-1].seq
    return last


async def measure(
    store: SQLiteStore, state_dir: Path, url: str, last: int, *, concurrency: int, batch: int
) -> float:
    """Seconds for a fresh sink to deliver the whole log."""
    options = WebhookOptions(
        url=url,
        secrets=(Secret(SECRET),),
        max_retry_age=60.0,
        concurrency=concurrency,
        batch_max=batch,
    )
    sink = WebhookSink(
        SinkConfig(type="webhook", name=f"bench-{batch}", options=options),
        SinkContext(state_dir=state_dir),
    )
    await sink.start()
    runner = SinkRunner(sink, SinkFilter(), store)
    started = time.perf_counter()
    task = asyncio.create_task(runner.run())
    try:
        while runner.position < last:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sink.close()
    if sink.dead_lettered or sink.failed_attempts:
        raise RuntimeError(f"failures during the run: {sink.stats()}")
    return elapsed


async def main(args: argparse.Namespace, url: str) -> None:
    with tempfile.TemporaryDirectory(prefix="jobwatchd-bench-") as tmp:
        state_dir = Path(tmp)
        store = SQLiteStore(state_dir / "jobwatchd.db")
        await store.open()
        try:
            last = await fill(store, args.events, args.jobs)
            print(f"{args.events} events over {args.jobs} jobs, concurrency {args.concurrency}")
            rates = {}
            for batch in (1, args.batch):
                seconds = await measure(
                    store, state_dir, url, last, concurrency=args.concurrency, batch=batch
                )
                rates[batch] = args.events / seconds
                print(f"batch_max={batch:<4} {seconds:7.2f} s  {rates[batch]:9.0f} events/s")
            print(f"batching x{rates[args.batch] / rates[1]:.1f}")
        finally:
            await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--jobs", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.serve:
        serve(parsed.serve)
        sys.exit(0)
    port = free_port()
    receiver = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    try:
        wait_for_port(port)
        install_event_loop()
        asyncio.run(main(parsed, f"http://127.0.0.1:{port}/hook"))
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)
