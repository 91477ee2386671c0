"""``GET /v1/events``: Server-Sent Events served from the durable event log.

Every stream follows the event log from its own cursor. :class:`EventHub` reads
the newest part of the log once, whatever the number of streams: when the
tracker records events it reads what is new into a bounded in-memory tail, then
wakes the streams, which serve it from memory. A stream behind the tail (a
client catching up on history) reads the log itself, a page at a time, until it
reaches the tail. So a burst of events costs one store read per page, not one
per stream, and registrations and polls never queue behind streams. Nothing the
daemon does waits on a stream, so a slow or stalled reader only stalls itself.

Wire format, one SSE event per recorded CloudEvent::

    id: 42                                   <- the event's ``seq``: the resume cursor
    event: jobwatchd.job.transition          <- the CloudEvent ``type``
    data: {"specversion": "1.0", ...}        <- the CloudEvent, one JSON line

A stream opens with ``retry:`` and an ``id:``-only block carrying the cursor it
starts after (an SSE client records the id without dispatching an event), so a
client that reconnects with ``Last-Event-ID`` resumes exactly there even when it
was handed no event yet. Heartbeats are comments (``: ping``) sent while idle;
when filters skipped events they also carry the advanced cursor.

Bounded buffer: before each write the stream looks at what the connection has
not sent yet; above ``max_buffer`` it waits for the client to read, and if that
does not happen within ``stall_timeout`` the client is not keeping up: the
stream ends with a ``jobwatchd.stream.closed`` event naming the reason (a client
then reconnects with ``Last-Event-ID`` and loses nothing). The same event, with
reason ``shutdown``, ends every stream when the daemon stops.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import orjson
from aiohttp import web

from jobwatchd.logs import get_logger
from jobwatchd.models import EVENT_TYPES, StoredEvent
from jobwatchd.store import Store
from jobwatchd.validation import ValidationError, parse_label_selector, validate_id

log = get_logger("jobwatchd.stream")

CLOSED_EVENT: Final = "jobwatchd.stream.closed"
CONTENT_TYPE: Final = "text/event-stream"
MAX_CURSOR: Final = 2**63 - 1
_CHUNK: Final = 64 * 1024
_DRAIN_POLL: Final = 0.05
_UNBOUNDED: Final = 2**30  # transport high-water mark: our own check bounds the buffer


@dataclass(slots=True)
class StreamSettings:
    """Tunables of ``/v1/events`` (the defaults suit production; tests shrink them)."""

    heartbeat: float = 15.0
    """Seconds of silence before a ``: ping`` comment."""
    max_buffer: int = 1024 * 1024
    """Bytes a connection may hold unsent; a stream waits for it to drain below."""
    stall_timeout: float = 5.0
    """Seconds it waits for that before the client is deemed too slow and cut off."""
    socket_buffer: int | None = 256 * 1024
    """SO_SNDBUF of a stream's socket, so the kernel's share of the buffer is bounded too."""
    page: int = 500
    """Events read from the log per query."""
    retry_ms: int = 2000
    """The reconnection delay advised to clients (SSE ``retry:``)."""
    close_grace: float = 30.0
    """Seconds a closed slow stream may take to flush before the connection is dropped."""
    max_streams: int = 256
    """Concurrent streams; more get 503."""
    tail: int = 4096
    """Newest events kept in memory for the streams that are caught up."""


@dataclass(frozen=True, slots=True)
class StreamFilter:
    """Which events a stream carries: every given criterion must match."""

    jobs: frozenset[str] = frozenset()
    """Job ids (a sub-job event belongs to its parent job); any of them."""
    types: frozenset[str] = frozenset()
    """CloudEvent types; any of them."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Labels of the (parent) job; all of them."""

    def matches(self, item: FramedEvent) -> bool:
        """Whether the event passes."""
        event = item.event
        if self.jobs and event.job_id not in self.jobs:
            return False
        if self.types and event.type not in self.types:
            return False
        if self.labels:
            labels = item.labels()
            if labels is None:
                return False
            return all(labels.get(key) == value for key, value in self.labels.items())
        return True


@dataclass(slots=True)
class FramedEvent:
    """A stored event with its SSE frame, made once however many streams send it."""

    event: StoredEvent
    frame: bytes
    _labels: Mapping[str, object] | None = None
    _parsed: bool = False

    @classmethod
    def of(cls, event: StoredEvent) -> FramedEvent:
        """Frame ``event``."""
        return cls(event, frame(event))

    def labels(self) -> Mapping[str, object] | None:
        """The (parent) job's labels from the payload, parsed on first use."""
        if not self._parsed:
            self._parsed = True
            try:
                labels = orjson.loads(self.event.payload)["data"]["labels"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                labels = None
            self._labels = labels if isinstance(labels, dict) else None
        return self._labels


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """A parsed ``GET /v1/events``."""

    filter: StreamFilter
    cursor: int | None
    """Serve events after this ``seq``; None: from the newest event on."""
    follow: bool


class _SlowReader(Exception):
    """The client does not read fast enough."""


class _Gone(Exception):
    """The client went away."""


def parse_cursor(value: str, field_name: str) -> int:
    """A stream cursor: a non-negative decimal integer."""
    if not value.isascii() or not value.isdigit() or len(value) > 19 or int(value) > MAX_CURSOR:
        raise ValidationError(field_name, "must be an event id (a non-negative integer)")
    return int(value)


def parse_request(request: web.Request) -> StreamRequest:
    """Validate the query and headers of ``GET /v1/events``."""
    query = request.query
    jobs = frozenset(validate_id(value, "job") for value in query.getall("job", []))
    types = frozenset(query.getall("type", []))
    unknown = sorted(types - EVENT_TYPES)
    if unknown:
        raise ValidationError("type", f"unknown event type {unknown[0]!r}")
    labels = dict(parse_label_selector(value) for value in query.getall("label", []))
    follow_text = query.get("follow", "true")
    if follow_text not in ("true", "false"):
        raise ValidationError("follow", "must be true or false")
    cursor = None
    after = query.get("after")
    if after is not None:
        cursor = parse_cursor(after, "after")
    # A reconnecting EventSource repeats the URL and adds the header: the header wins.
    last_event_id = request.headers.get("Last-Event-ID")
    if last_event_id:  # EventSource sends none, or a non-empty one
        cursor = parse_cursor(last_event_id, "Last-Event-ID")
    return StreamRequest(
        filter=StreamFilter(jobs=jobs, types=types, labels=labels),
        cursor=cursor,
        follow=follow_text == "true",
    )


def frame(event: StoredEvent) -> bytes:
    """One SSE event for a stored event."""
    payload = event.payload
    if b"\n" in payload or b"\r" in payload:  # never from orjson, but a data line must be one line
        payload = orjson.dumps(orjson.loads(payload))
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.seq, event.type.encode(), payload)


def closed_frame(reason: str, detail: str, last_id: int) -> bytes:
    """The ``jobwatchd.stream.closed`` event that ends a stream early."""
    data = orjson.dumps({"reason": reason, "detail": detail, "last_id": last_id})
    return b"event: %s\ndata: %s\n\n" % (CLOSED_EVENT.encode(), data)


class EventHub:
    """Serves ``/v1/events`` and wakes its streams when events are recorded."""

    def __init__(self, store: Store, settings: StreamSettings | None = None) -> None:
        self.store = store
        self.settings = settings or StreamSettings()
        self._wake = asyncio.Event()
        self._closed = False
        self._tail: list[FramedEvent] = []
        self._tail_base: int | None = None
        """Every event after this seq up to the newest read is in ``_tail``."""
        self._tail_end = 0
        self._refresh_task: asyncio.Task[None] | None = None
        self._stale = False
        self.open_streams = 0
        self.streams_served = 0
        self.events_sent = 0
        self.slow_closed = 0
        self.store_reads = 0
        """Log reads made for the streams: by the hub for the tail, and by streams behind it."""

    @property
    def closed(self) -> bool:
        """Whether the hub was closed (the daemon is stopping)."""
        return self._closed

    @property
    def wake_event(self) -> asyncio.Event:
        """Set at the next :meth:`notify`; take it before reading the log."""
        return self._wake

    def notify(self) -> None:
        """New events were recorded: read them into the tail, then wake the streams.
        With no stream open nothing is read (the next stream starts the tail again)."""
        if self.open_streams == 0:
            self._tail, self._tail_base = [], None
            return
        self._stale = True
        if self._refresh_task is None or self._refresh_task.done():
            self._refresh_task = asyncio.get_running_loop().create_task(self._refresh())

    def _wake_streams(self) -> None:
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    async def _refresh(self) -> None:
        try:
            while self._stale and not self._closed:
                self._stale = False
                await self._read_new()
                self._wake_streams()
        except Exception as exc:  # the store is failing: streams read it themselves
            log.warning("stream.tail_read_failed", error=str(exc))
            self._tail, self._tail_base = [], None
            self._wake_streams()

    async def _read_new(self) -> None:
        if self._tail_base is None:
            self.store_reads += 1
            self._tail_end = self._tail_base = await self.store.last_seq()
            return
        page = self.settings.page
        while True:
            self.store_reads += 1
            events = await self.store.events_after(self._tail_end, page)
            if events:
                self._tail.extend(FramedEvent.of(event) for event in events)
                self._tail_end = events[-1].seq
                self._trim()
            if len(events) < page:
                return

    def _trim(self) -> None:
        excess = len(self._tail) - self.settings.tail
        if excess > 0:
            self._tail_base = self._tail[excess - 1].event.seq
            del self._tail[:excess]

    async def read_after(self, cursor: int, limit: int) -> list[FramedEvent]:
        """Up to ``limit`` events after ``cursor``: from the tail when it covers the
        cursor, else from the log (a client catching up on history)."""
        base = self._tail_base
        if base is not None and base <= cursor:
            start = bisect.bisect_right(self._tail, cursor, key=lambda item: item.event.seq)
            return self._tail[start : start + limit]
        self.store_reads += 1
        return [FramedEvent.of(event) for event in await self.store.events_after(cursor, limit)]

    async def close(self, app: web.Application | None = None) -> None:
        """End every stream (with reason ``shutdown``) and refuse new ones."""
        self._closed = True
        self._wake_streams()
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh_task

    def stats(self) -> dict[str, int]:
        """Counters, for readiness and tests."""
        return {
            "open": self.open_streams,
            "served": self.streams_served,
            "events_sent": self.events_sent,
            "closed_slow": self.slow_closed,
            "store_reads": self.store_reads,
        }

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/events``."""
        parsed = parse_request(request)
        if self._closed:
            raise web.HTTPServiceUnavailable(text="the daemon is shutting down")
        if self.open_streams >= self.settings.max_streams:
            raise web.HTTPServiceUnavailable(
                text=f"at most {self.settings.max_streams} event streams at once"
            )
        # The slot is taken before the first await, so concurrent opens cannot
        # all pass the check above; every path out gives it back.
        self.open_streams += 1
        if self._tail_base is None:
            self.notify()  # start the tail, so this stream is served from it once caught up
        try:
            return await self._serve(request, parsed)
        finally:
            self.open_streams -= 1

    async def _serve(self, request: web.Request, parsed: StreamRequest) -> web.StreamResponse:
        transport = request.transport
        if transport is None:
            raise web.HTTPBadRequest(text="the connection is gone")
        cursor = parsed.cursor
        if cursor is None:
            cursor = await self.store.last_seq()
        response = web.StreamResponse(
            headers={
                "Content-Type": f"{CONTENT_TYPE}; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # nginx: pass events through unbuffered
            }
        )
        response.force_close()
        self._bound_buffers(transport)
        await response.prepare(request)
        self.streams_served += 1
        stream = _Stream(self, response, transport, parsed, cursor)
        try:
            await stream.run()
        except _SlowReader:
            self.slow_closed += 1
            log.warning(
                "stream.slow_reader",
                last_id=stream.last_sent,
                unsent_bytes=transport.get_write_buffer_size(),
                max_buffer=self.settings.max_buffer,
            )
            # The reason goes behind what the client has still to read; if it
            # never reads again the connection is dropped after close_grace.
            with contextlib.suppress(ConnectionError, _Gone):
                await stream.write(
                    closed_frame(
                        "slow_reader",
                        "the client did not keep up; reconnect with Last-Event-ID to resume",
                        stream.last_sent,
                    ),
                    check=False,
                )
            asyncio.get_running_loop().call_later(self.settings.close_grace, transport.abort)
        except (_Gone, ConnectionError):
            pass
        return response

    def _bound_buffers(self, transport: asyncio.Transport) -> None:
        # aiohttp would otherwise wait for the client to drain; the stream checks
        # the unsent bytes itself and closes instead of waiting.
        transport.set_write_buffer_limits(high=_UNBOUNDED)
        sock = transport.get_extra_info("socket")
        if sock is not None and self.settings.socket_buffer:
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.settings.socket_buffer)


class _Stream:
    """One open stream."""

    def __init__(
        self,
        hub: EventHub,
        response: web.StreamResponse,
        transport: asyncio.Transport,
        parsed: StreamRequest,
        cursor: int,
    ) -> None:
        self.hub = hub
        self.response = response
        self.transport = transport
        self.filter = parsed.filter
        self.follow = parsed.follow
        self.cursor = cursor
        """The newest event examined."""
        self.last_sent = cursor
        """The newest id the client was given."""

    async def write(self, data: bytes, *, check: bool = True) -> None:
        if self.transport.is_closing():
            raise _Gone
        if check and self.transport.get_write_buffer_size() > self.hub.settings.max_buffer:
            await self._drained()
        await self.response.write(data)

    async def _drained(self) -> None:
        """Wait (briefly) for the client to catch up, else give up on it."""
        settings = self.hub.settings
        deadline = time.monotonic() + settings.stall_timeout
        while self.transport.get_write_buffer_size() > settings.max_buffer:
            if self.transport.is_closing():
                raise _Gone
            if time.monotonic() >= deadline:
                raise _SlowReader
            await asyncio.sleep(_DRAIN_POLL)

    async def run(self) -> None:
        settings = self.hub.settings
        await self.write(b"retry: %d\nid: %d\n\n" % (settings.retry_ms, self.cursor))
        end = None if self.follow else await self.hub.store.last_seq()
        while True:
            wake = self.hub.wake_event  # taken before reading, so no notification is missed
            if self.hub.closed:
                await self._finish("shutdown", "the daemon is shutting down; reconnect to resume")
                return
            if end is not None and self.cursor >= end:
                await self._send_cursor()
                return
            events = await self.hub.read_after(self.cursor, settings.page)
            if end is not None:
                events = [item for item in events if item.event.seq <= end]
            if events:
                await self._send(events)
                if len(events) == settings.page:
                    continue
            if end is not None:
                await self._send_cursor()
                return
            try:
                async with asyncio.timeout(settings.heartbeat):
                    await wake.wait()
            except TimeoutError:
                await self._heartbeat()

    async def _send(self, events: list[FramedEvent]) -> None:
        buffer = bytearray()
        count = 0
        newest = self.last_sent
        for item in events:
            self.cursor = item.event.seq
            if not self.filter.matches(item):
                continue
            buffer += item.frame
            count += 1
            newest = item.event.seq
            if len(buffer) >= _CHUNK:
                await self._flush(buffer, count, newest)
                buffer.clear()
                count = 0
        if buffer:
            await self._flush(buffer, count, newest)

    async def _flush(self, buffer: bytearray, count: int, newest: int) -> None:
        await self.write(bytes(buffer))
        self.last_sent = newest
        self.hub.events_sent += count

    async def _heartbeat(self) -> None:
        if self.cursor > self.last_sent:
            await self.write(b": ping\nid: %d\n\n" % self.cursor)
            self.last_sent = self.cursor
        else:
            await self.write(b": ping\n\n")

    async def _send_cursor(self) -> None:
        # Events the filters skipped still move the client's resume point.
        if self.cursor > self.last_sent:
            await self.write(b"id: %d\n\n" % self.cursor)
            self.last_sent = self.cursor

    async def _finish(self, reason: str, detail: str) -> None:
        await self._send_cursor()
        await self.write(closed_frame(reason, detail, self.last_sent), check=False)
