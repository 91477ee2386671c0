"""``GET /v1/events``: Server-Sent Events from the durable event log, served by
an in-process daemon on a real socket, with the simulator as the cloud.

What the stream promises: every recorded event, in log order, once; resume
after any ``Last-Event-ID`` (also across a restart); filters; heartbeats; a
client that stops reading is cut off with a reason and never holds up polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from jobwatchd.client import SseMessage, SseParser
from jobwatchd.daemon import Daemon
from jobwatchd.http.events import CLOSED_EVENT, EventHub, StreamSettings
from jobwatchd.models import JOB_TRANSITION, SUBJOB_TRANSITION, NewEvent, NewJob, StoredEvent
from jobwatchd.store.sqlite import SQLiteStore
from tests.helpers.daemon import InProcessDaemon, running_daemon
from tests.helpers.http import PROBLEM
from tests.helpers.servers import RunningSimulator
from tests.helpers.waiting import async_wait_until


class Served(InProcessDaemon):
    """The in-process daemon, with what the stream tests ask of it."""

    @property
    def hub(self) -> EventHub:
        return self.daemon.stream_hub

    async def register(self, *job_ids: str, labels: dict[str, str] | None = None) -> None:
        jobs = [{"job_id": job_id, "labels": labels or {}} for job_id in job_ids]
        async with self.session.post(f"{self.url}/v1/jobs", json={"jobs": jobs}) as resp:
            assert resp.status == 201, await resp.text()

    async def wait_terminal(self, job_id: str, timeout: float = 20.0) -> dict[str, Any]:
        async with self.session.get(f"{self.url}/v1/jobs/{job_id}?wait={timeout}") as resp:
            job: dict[str, Any] = await resp.json()
        assert job["terminal"], job
        return job

    async def log(self) -> list[StoredEvent]:
        return await self.daemon.store.events_after(0, 100_000)

    async def metrics(self) -> dict[str, float]:
        """The unlabelled samples of ``/metrics``."""
        async with self.session.get(f"{self.url}/metrics") as resp:
            text = await resp.text()
        return {
            name: float(value)
            for name, _, value in (line.partition(" ") for line in text.splitlines())
            if name and not name.startswith("#") and "{" not in name
        }


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path, sim: RunningSimulator, stream: StreamSettings | None = None
) -> AsyncIterator[Served]:
    """An in-process daemon on 127.0.0.1 (its state in ``tmp_path/state``)."""

    def prepare(daemon: Daemon) -> None:
        if stream is not None:
            daemon.stream_hub.settings = stream

    async with running_daemon(tmp_path, sim, prepare=prepare) as running:
        yield Served(running.daemon, running.session, running.url, running.sim)


@dataclass
class Reader:
    """An open ``/v1/events`` response and what was parsed from it so far."""

    response: aiohttp.ClientResponse
    parser: SseParser = field(default_factory=SseParser)
    messages: list[SseMessage] = field(default_factory=list)
    ended: bool = False

    @property
    def events(self) -> list[SseMessage]:
        return [m for m in self.messages if m.data is not None and m.event != CLOSED_EVENT]

    async def until(
        self, predicate: Callable[[Reader], bool], timeout: float = 20.0, what: str = ""
    ) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not predicate(self):
                    chunk = await self.response.content.readany()
                    if not chunk:
                        self.ended = True
                        assert predicate(self), f"stream ended before {what}"
                        return
                    self.messages.extend(self.parser.feed(chunk))
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}: {self.messages[-3:]}") from None

    async def to_end(self, timeout: float = 20.0) -> None:
        await self.until(lambda r: r.ended, timeout, "the end of the stream")


@contextlib.asynccontextmanager
async def reading(
    served: Served, query: str = "", headers: dict[str, str] | None = None
) -> AsyncIterator[Reader]:
    async with served.session.get(f"{served.url}/v1/events{query}", headers=headers or {}) as resp:
        assert resp.status == 200, await resp.text()
        yield Reader(resp)


def assert_matches_log(messages: list[SseMessage], log: list[StoredEvent]) -> None:
    """The SSE events are exactly these log entries: same ids, types and CloudEvents."""
    assert [int(m.id or -1) for m in messages] == [event.seq for event in log]
    assert [m.event for m in messages] == [event.type for event in log]
    assert [orjson.loads(m.data or "") for m in messages] == [
        orjson.loads(event.payload) for event in log
    ]


async def test_live_events_arrive_in_log_order_with_the_wire_format(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    async with serving(tmp_path, simulator, StreamSettings(heartbeat=0.2)) as served:
        async with reading(served) as reader:
            assert reader.response.headers["Content-Type"].startswith("text/event-stream")
            assert reader.response.headers["Cache-Control"] == "no-cache"
            await reader.until(lambda r: r.parser.last_id is not None, what="the opening id")
            assert reader.parser.last_id == "0" and reader.parser.retry_ms == 2000
            await reader.until(lambda r: r.parser.comments >= 2, what="heartbeats while idle")
            sim = served.sim.sim
            jobs = [sim.create_job("createServer", count=3, duration=30) for _ in range(3)]
            await served.register(*jobs)
            for job_id in jobs:
                await served.wait_terminal(job_id)
            log = await served.log()
            await reader.until(lambda r: len(r.events) >= len(log), what="every event")
            assert_matches_log(reader.events, log)
        terminal = [
            orjson.loads(m.data or "")["subject"]
            for m in reader.events
            if m.event == JOB_TRANSITION and orjson.loads(m.data or "")["data"]["terminal"]
        ]
        assert sorted(terminal) == sorted(jobs)
        assert {m.event for m in reader.events} == {JOB_TRANSITION, SUBJOB_TRANSITION}


async def test_history_resume_and_filters(tmp_path: Path, simulator: RunningSimulator) -> None:
    async with serving(tmp_path, simulator) as served:
        sim = served.sim.sim
        blue = sim.create_job("createServer", count=2, duration=30)
        red = sim.create_job("createServer", count=2, fail=True, duration=30)
        await served.register(blue, labels={"team": "blue"})
        await served.register(red, labels={"team": "red"})
        await served.wait_terminal(blue)
        await served.wait_terminal(red)
        log = await served.log()
        assert len(log) >= 8

        # History: everything recorded, then the stream ends (follow=false).
        async with reading(served, "?after=0&follow=false") as reader:
            await reader.to_end()
        assert_matches_log(reader.events, log)

        # Resume after any id: exactly the rest; the header wins over ?after.
        middle = log[len(log) // 2].seq
        headers = {"Last-Event-ID": str(middle)}
        async with reading(served, "?after=0&follow=false", headers) as reader:
            await reader.to_end()
        assert_matches_log(reader.events, [event for event in log if event.seq > middle])

        # Filters, and the cursor still reaches the end of the log.
        cases: list[tuple[str, Callable[[StoredEvent], bool]]] = [
            (f"job={red}", lambda e: e.job_id == red),
            (f"type={JOB_TRANSITION}", lambda e: e.type == JOB_TRANSITION),
            ("label=team=blue", lambda e: e.job_id == blue),
            (
                f"job={red}&job={blue}&type={SUBJOB_TRANSITION}",
                lambda e: e.type == SUBJOB_TRANSITION,
            ),
            ("label=team=green", lambda e: False),
        ]
        for query, wanted in cases:
            async with reading(served, f"?after=0&follow=false&{query}") as reader:
                await reader.to_end()
            assert_matches_log(reader.events, [event for event in log if wanted(event)])
            assert reader.parser.last_id == str(log[-1].seq), query


async def test_a_stream_resumes_across_a_restart_with_nothing_missed_or_repeated(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    sim = simulator.sim
    received: list[SseMessage] = []
    async with serving(tmp_path, simulator) as served:
        first = sim.create_job("createServer", count=2, duration=30)
        await served.register(first)
        async with reading(served, "?after=0") as reader:
            await served.wait_terminal(first)
            count = len(await served.log())
            await reader.until(lambda r: len(r.events) >= count, what="the first job's events")
            received.extend(reader.events)
            # Stopping the daemon ends open streams with a reason instead of cutting them.
            started = time.monotonic()
            served.daemon.stop_requested.set()
            await reader.to_end()
            assert time.monotonic() - started < 10
        closing = [m for m in reader.messages if m.event == CLOSED_EVENT]
        assert len(closing) == 1
        assert orjson.loads(closing[0].data or "")["reason"] == "shutdown"
    last_id = received[-1].id
    async with serving(tmp_path, simulator) as served:
        second = sim.create_job("addNics", count=3, duration=30)
        await served.register(second)
        await served.wait_terminal(second)
        log = await served.log()
        async with reading(served, "?follow=false", {"Last-Event-ID": str(last_id)}) as reader:
            await reader.to_end()
        assert_matches_log(received + reader.events, log)
        assert len({m.id for m in received + reader.events}) == len(log)


def _stalled_client(port: int, query: str) -> socket.socket:
    """A client that sends its request and then never reads (a tiny receive window)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /v1/events{query} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


def _drain(sock: socket.socket, deadline: float) -> bytes:
    sock.settimeout(1.0)
    data = bytearray()
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            return bytes(data)
        data += chunk
    raise AssertionError("the slow stream was not closed")


async def test_a_stalled_reader_is_cut_off_and_never_stalls_polling(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    small = StreamSettings(
        heartbeat=0.2, max_buffer=32 * 1024, stall_timeout=0.5, socket_buffer=4096, page=50
    )
    async with serving(tmp_path, simulator, small) as served:
        port = int(served.url.rsplit(":", 1)[1])
        stalled = _stalled_client(port, "?after=0")
        try:
            async with reading(served, "?after=0") as fast:
                await async_wait_until(lambda: served.hub.open_streams == 2, 10, what="2 streams")
                sim = served.sim.sim
                jobs = [sim.create_job("createServer", count=10, duration=30) for _ in range(20)]
                await served.register(*jobs)
                await async_wait_until(
                    lambda: served.hub.stats()["closed_slow"] == 1,
                    30,
                    what="the stalled stream cut off",
                )
                # Polling went on while the stalled client held its connection.
                late = sim.create_job("createServer", count=2, duration=30)
                await served.register(late)
                for job_id in [*jobs, late]:
                    await served.wait_terminal(job_id)
                log = await served.log()
                await fast.until(lambda r: len(r.events) >= len(log), what="the fast reader")
                assert_matches_log(fast.events, log)
                metrics = await served.metrics()
                assert metrics["jobwatchd_event_streams_closed_slow_total"] == 1
                assert metrics["jobwatchd_event_streams_open"] == 1
                assert metrics["jobwatchd_event_streams_total"] == 2
                assert metrics["jobwatchd_event_stream_events_total"] >= len(log)
            # What the stalled client gets when it reads again: a prefix of the log,
            # the reason, and the end of the stream.
            raw = await asyncio.to_thread(_drain, stalled, time.monotonic() + 20)
        finally:
            stalled.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head
        messages = SseParser().feed(body)
        got = [m for m in messages if m.data is not None and m.event != CLOSED_EVENT]
        assert 0 < len(got) < len(log)
        assert_matches_log(got, log[: len(got)])
        closing = messages[-1]
        assert closing.event == CLOSED_EVENT
        closed = orjson.loads(closing.data or "")
        assert closed["reason"] == "slow_reader" and closed["last_id"] == int(got[-1].id or 0)
        # Resuming from its last id gives it the rest, nothing twice.
        async with reading(served, "?follow=false", {"Last-Event-ID": str(got[-1].id)}) as rest:
            await rest.to_end()
        assert_matches_log(got + rest.events, log)


BAD_REQUESTS = [
    ("?after=-1", {}, "after"),
    ("?after=x", {}, "after"),
    ("?after=99999999999999999999", {}, "after"),
    ("?after=%201", {}, "after"),
    ("", {"Last-Event-ID": "abc"}, "Last-Event-ID"),
    ("", {"Last-Event-ID": "1.5"}, "Last-Event-ID"),
    ("?type=jobwatchd.nope", {}, "type"),
    ("?job=../etc", {}, "job"),
    ("?job=a%2Fb", {}, "job"),
    ("?label=novalue", {}, "label"),
    ("?follow=maybe", {}, "follow"),
]


async def test_bad_stream_requests_are_problems(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    async with serving(tmp_path, simulator) as served:
        for query, headers, field_name in BAD_REQUESTS:
            url = f"{served.url}/v1/events{query}"
            async with served.session.get(url, headers=headers) as resp:
                assert (resp.status, resp.content_type) == (400, PROBLEM), query
                assert (await resp.json())["field"] == field_name, query
        assert served.hub.streams_served == 0
        # An empty Last-Event-ID is no resume point (EventSource never sends one).
        async with reading(served, "?follow=false", {"Last-Event-ID": ""}) as reader:
            await reader.to_end()
        assert reader.parser.last_id == "0"


# -- the hub on its own: a store, an app, a socket ----------------------------------------


@contextlib.asynccontextmanager
async def hub_app(
    tmp_path: Path, settings: StreamSettings | None = None
) -> AsyncIterator[tuple[CountingStore, EventHub, str]]:
    store = CountingStore(tmp_path / "events.db")
    await store.open()
    hub = EventHub(store, settings)
    app = web.Application()
    app.router.add_get("/v1/events", hub.handle)
    app.on_shutdown.append(hub.close)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield store, hub, f"http://{host}:{port}"
    finally:
        await runner.cleanup()
        await store.close()


class CountingStore(SQLiteStore):
    """The SQLite store, counting the event-log reads made of it."""

    log_reads = 0

    async def events_after(self, seq: int, limit: int) -> list[StoredEvent]:
        self.log_reads += 1
        return await super().events_after(seq, limit)


async def _record(
    store: SQLiteStore, count: int, job_id: str = "bench-job", batch: int = 500
) -> None:
    (registration,) = await store.register(
        [NewJob(job_id=job_id, project_id="p", account="default", labels={"k": "v"})], time.time()
    )
    job = registration.job
    for start in range(0, count, batch):
        events = []
        for n in range(start, min(count, start + batch)):
            payload: dict[str, Any] = {
                "specversion": "1.0",
                "id": f"{job_id}-{n}",
                "type": SUBJOB_TRANSITION,
                "data": {
                    "job_id": job_id,
                    "from": None,
                    "to": f"S{n}",
                    "terminal": False,
                    "labels": {"k": "v"},
                    "entities": {"pad": "x" * 400},
                },
            }
            events.append(
                NewEvent(
                    event_id=f"{job_id}-{n}",
                    job_id=job_id,
                    type=SUBJOB_TRANSITION,
                    payload=orjson.dumps(payload),
                )
            )
        await store.record(job, events)


async def test_history_throughput(tmp_path: Path) -> None:
    """Events per second one client gets from the log (reported, with a generous floor)."""
    count = 5000
    async with hub_app(tmp_path) as (store, _, url):
        await _record(store, count)
        async with aiohttp.ClientSession() as session:
            started = time.perf_counter()
            async with session.get(f"{url}/v1/events?after=0&follow=false") as resp:
                parser = SseParser()
                received = 0
                async for chunk in resp.content.iter_any():
                    received += sum(1 for m in parser.feed(chunk) if m.data is not None)
            elapsed = time.perf_counter() - started
    assert received == count
    print(f"\nSSE history: {count} events in {elapsed:.3f}s = {count / elapsed:.0f} events/s")


async def test_live_notification_reaches_every_waiting_stream(tmp_path: Path) -> None:
    async with hub_app(tmp_path) as (store, hub, url), aiohttp.ClientSession() as session:
        readers = []
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(5):
                resp = await stack.enter_async_context(session.get(f"{url}/v1/events"))
                readers.append(Reader(resp))
            for reader in readers:
                await reader.until(lambda r: r.parser.last_id == "0", what="opening id")
            await _record(store, 3)
            hub.notify()
            for reader in readers:
                await reader.until(lambda r: len(r.events) == 3, 10, what="live events")
                assert [m.id for m in reader.events] == ["1", "2", "3"]


async def test_a_burst_is_read_from_the_log_once_whatever_the_number_of_streams(
    tmp_path: Path,
) -> None:
    streams, bursts, per_burst = 40, 3, 400
    async with (
        hub_app(tmp_path) as (store, hub, url),
        aiohttp.ClientSession() as session,
        contextlib.AsyncExitStack() as stack,
    ):
        readers = []
        for _ in range(streams):
            resp = await stack.enter_async_context(session.get(f"{url}/v1/events"))
            readers.append(Reader(resp))
        for reader in readers:
            await reader.until(lambda r: r.parser.last_id == "0", what="opening id")
        await async_wait_until(lambda: hub._tail_base == 0, 10, what="the tail to start")
        store.log_reads = 0
        for burst in range(bursts):
            await _record(store, per_burst, job_id=f"burst-{burst}", batch=100)
            hub.notify()
        total = bursts * per_burst
        for reader in readers:
            await reader.until(lambda r: len(r.events) == total, 20, what="every event")
            assert [int(m.id or 0) for m in reader.events] == list(range(1, total + 1))
    # One page per burst plus the read that finds nothing new; per stream it was 40x that.
    assert store.log_reads <= 2 * bursts, store.log_reads


async def test_a_stream_behind_the_tail_catches_up_from_the_log(tmp_path: Path) -> None:
    settings = StreamSettings(tail=100, page=50)
    async with (
        hub_app(tmp_path, settings) as (store, hub, url),
        aiohttp.ClientSession() as session,
        session.get(f"{url}/v1/events") as following,  # keeps the hub's tail going
    ):
        await Reader(following).until(lambda r: r.parser.last_id == "0", what="opening id")
        await _record(store, 10, job_id="early")
        hub.notify()
        await async_wait_until(lambda: hub._tail_base is not None, 10, what="the tail to start")
        await _record(store, 990, job_id="late", batch=100)
        hub.notify()
        await async_wait_until(lambda: hub._tail_base == 900, 10, what="the tail to trim")
        async with session.get(f"{url}/v1/events?after=0") as resp:
            reader = Reader(resp)
            await reader.until(lambda r: len(r.events) == 1000, 20, what="history and tail")
            await _record(store, 5, job_id="live")
            hub.notify()
            await reader.until(lambda r: len(r.events) == 1005, 20, what="live events")
        assert [int(m.id or 0) for m in reader.events] == list(range(1, 1006))


async def test_with_no_stream_open_a_burst_reads_nothing(tmp_path: Path) -> None:
    async with hub_app(tmp_path) as (store, hub, _):
        await _record(store, 10)
        store.log_reads = 0
        hub.notify()
        assert hub._refresh_task is None, "no read of the log was started"
        assert store.log_reads == 0 and hub.stats()["store_reads"] == 0


# -- the client's parser ---------------------------------------------------------------------


def test_sse_parser_handles_the_format() -> None:
    wire = (
        b"retry: 1500\nid: 7\n\n"
        b": ping\n\n"
        b'id: 8\r\nevent: a\r\ndata: {"x": 1}\r\n\r\n'
        b"data: line one\ndata: line two\n\n"
        b"event: jobwatchd.stream.closed\ndata: {}\n\n"
        b"id: 12\n\n"
        b"data: partial"
    )
    parser = SseParser()
    messages = parser.feed(wire)
    assert [(m.event, m.data, m.id) for m in messages] == [
        ("message", None, "7"),
        ("a", '{"x": 1}', "8"),
        ("message", "line one\nline two", "8"),
        ("jobwatchd.stream.closed", "{}", "8"),
        ("message", None, "12"),
    ]
    assert parser.retry_ms == 1500 and parser.comments == 1
    assert parser.feed(b"\n\n") == [SseMessage("message", "partial", "12")]


@given(st.lists(st.integers(min_value=1, max_value=300), max_size=20))
@settings(max_examples=100, deadline=None)
def test_sse_parser_is_independent_of_chunk_boundaries(cuts: list[int]) -> None:
    wire = b"".join(
        b'id: %d\nevent: t%d\ndata: {"n": %d, "s": "\xc3\xa9"}\n\n: ping\n\n' % (n, n % 2, n)
        for n in range(1, 30)
    )
    whole = SseParser().feed(wire)
    parser = SseParser()
    pieces: list[SseMessage] = []
    position = 0
    for cut in cuts:
        pieces.extend(parser.feed(wire[position : position + cut]))
        position += cut
    pieces.extend(parser.feed(wire[position:]))
    assert pieces == whole
    assert len(whole) == 29 and whole[-1].data == '{"n": 29, "s": "é"}'
