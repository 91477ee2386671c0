"""A small client for the daemon's HTTP API, used by the CLI: requests, the
``/v1/events`` stream with reconnect-and-resume, and waiting for jobs to end."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

import aiohttp
import orjson

from jobwatchd.models import JOB_TRANSITION, SUBJOB_TRANSITION, SUCCESS, is_terminal

LONG_POLL_SECONDS = 30.0
CLOSED_EVENT: Final = "jobwatchd.stream.closed"
STREAM_READ_TIMEOUT = 60.0
"""Seconds without a byte (the daemon pings every 15 s) before a stream is deemed dead."""
RECONNECT_MIN = 0.2
RECONNECT_MAX = 5.0
WAIT_RECONNECT_GRACE = 30.0
"""How long ``wait`` keeps reconnecting to a daemon that went away before giving up."""
WAIT_RECHECK = 30.0
"""``wait`` re-reads unfinished jobs this often, in case one was cancelled meanwhile."""
MAX_SERVER_JOB_FILTER = 100
"""Up to this many jobs are filtered by the daemon; more would make the URL too long."""
FETCH_CONCURRENCY = 16


class ClientFailure(Exception):
    """The daemon could not be reached, or answered with an error."""


class NotTracked(ClientFailure):
    """The daemon does not track this job."""


class ApiRefused(ClientFailure):
    """The daemon answered a stream request with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def base_url(address: str) -> tuple[str, str | None]:
    """(HTTP base URL, Unix socket path or None) for an ``api.listen``-style address."""
    if address.startswith(("http://", "https://")):
        return address.rstrip("/"), None
    if address.startswith("unix:"):
        return "http://localhost", address[len("unix:") :]
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "", "[::]"):  # a wildcard listen is reachable on loopback
        host = "127.0.0.1"
    return f"http://{host}:{port}", None


class ApiClient:
    """``async with ApiClient(address) as client: await client.get_job(...)``."""

    def __init__(self, address: str, *, token: str | None = None) -> None:
        self.url, self._unix_path = base_url(address)
        self._token = token
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiClient:
        connector: aiohttp.BaseConnector = (
            aiohttp.UnixConnector(path=self._unix_path)
            if self._unix_path
            else aiohttp.TCPConnector()
        )
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        self._session = aiohttp.ClientSession(connector=connector, headers=headers)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | list[tuple[str, str]] | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, Any]:
        """Send a request; returns (status, decoded JSON or None)."""
        assert self._session is not None, "use 'async with'"
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            async with self._session.request(
                method,
                self.url + path,
                data=data,
                params=params,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ClientFailure(
                f"cannot reach jobwatchd at {self.url}: {exc or type(exc).__name__}"
            ) from None
        try:
            decoded = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            raise ClientFailure(
                f"jobwatchd answered {status} with a body that is not JSON"
            ) from None
        if status == 401:
            raise ClientFailure("jobwatchd refused the request: a valid API token is required")
        return status, decoded

    async def register(self, jobs: list[dict[str, Any]]) -> tuple[int, Any]:
        """``POST /v1/jobs`` as a batch."""
        return await self.request("POST", "/v1/jobs", body={"jobs": jobs})

    async def get_job(self, job_id: str, *, wait: float = 0.0) -> dict[str, Any]:
        """One job object, long-polling up to ``wait`` seconds."""
        params = {"wait": f"{wait:.3f}"} if wait > 0 else None
        status, body = await self.request(
            "GET", f"/v1/jobs/{job_id}", params=params, timeout=wait + 30.0
        )
        if status == 404:
            raise NotTracked(f"job {job_id} is not tracked")
        if status != 200 or not isinstance(body, dict):
            raise ClientFailure(problem_text(status, body))
        return body

    async def wait_terminal(self, job_id: str, deadline: float | None) -> dict[str, Any]:
        """Long-poll until the job is terminal or ``deadline`` (monotonic) passes."""
        while True:
            remaining = LONG_POLL_SECONDS if deadline is None else deadline - time.monotonic()
            job = await self.get_job(job_id, wait=max(0.0, min(LONG_POLL_SECONDS, remaining)))
            if job.get("terminal") or (deadline is not None and time.monotonic() >= deadline):
                return job

    async def stream_events(
        self,
        params: Sequence[tuple[str, str]] = (),
        *,
        last_event_id: int | None = None,
        read_timeout: float = STREAM_READ_TIMEOUT,
    ) -> AsyncGenerator[SseMessage, None]:
        """One connection to ``GET /v1/events``: its messages until the daemon ends it.

        Raises :class:`ApiRefused` for an error answer and :class:`ClientFailure`
        when the daemon cannot be reached or the connection breaks.
        """
        assert self._session is not None, "use 'async with'"
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=read_timeout)
        connected = False
        try:
            async with self._session.get(
                self.url + "/v1/events", params=list(params), headers=headers, timeout=timeout
            ) as resp:
                connected = True
                if resp.status != 200:
                    raw = await resp.read()
                    try:
                        body = orjson.loads(raw) if raw else None
                    except orjson.JSONDecodeError:
                        body = None
                    if resp.status == 401:
                        reason = "jobwatchd refused the request: a valid API token is required"
                    else:
                        reason = problem_text(resp.status, body)
                    raise ApiRefused(resp.status, reason)
                parser = SseParser()
                async for chunk in resp.content.iter_any():
                    for message in parser.feed(chunk):
                        yield message
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            what = "lost the event stream of" if connected else "cannot reach"
            raise ClientFailure(
                f"{what} jobwatchd at {self.url}: {exc or type(exc).__name__}"
            ) from None

    async def follow_events(
        self,
        params: Sequence[tuple[str, str]] = (),
        *,
        since: int | None = None,
        follow: bool = True,
        give_up_after: float | None = None,
        on_open: Callable[[int], None] | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> AsyncGenerator[SseMessage, None]:
        """The events after ``since`` (None: from now on), reconnecting and
        resuming from the last id seen whenever the stream ends early.

        Without ``follow`` it ends once the events recorded so far were read.
        The first connection must succeed; later failures are retried with
        backoff, for ever or for ``give_up_after`` seconds of outage.
        ``on_open(cursor)`` is called each time a stream starts.
        """
        cursor = since
        query = [*params, ("follow", "true" if follow else "false")]
        connected_once = False
        outage_since: float | None = None
        delay = RECONNECT_MIN
        while True:
            failure: ClientFailure
            try:
                async with contextlib.aclosing(
                    self.stream_events(query, last_event_id=cursor)
                ) as messages:
                    opened = False
                    closed_reason: str | None = None
                    async for message in messages:
                        if message.id is not None and message.id.isdigit():
                            cursor = int(message.id)
                        if not opened:
                            opened = connected_once = True
                            outage_since, delay = None, RECONNECT_MIN
                            if on_open is not None and cursor is not None:
                                on_open(cursor)
                        if message.event == CLOSED_EVENT:
                            closed_reason = _closed_reason(message.data)
                        elif message.data is not None:
                            yield message
                if closed_reason is None and not follow:
                    return
                failure = ClientFailure(
                    f"jobwatchd closed the event stream ({closed_reason or 'no reason given'})"
                )
            except ApiRefused as exc:
                if exc.status < 500 or not connected_once:
                    raise
                failure = exc
            except ClientFailure as exc:
                if not connected_once:
                    raise
                failure = exc
            now = time.monotonic()
            if outage_since is None:
                outage_since = now
            elif give_up_after is not None and now - outage_since > give_up_after:
                raise failure
            if on_retry is not None:
                on_retry(f"{failure}; reconnecting")
            await asyncio.sleep(delay)
            delay = min(RECONNECT_MAX, delay * 2)


def problem_text(status: int, body: Any) -> str:
    """A one-line description of an error answer."""
    if isinstance(body, dict) and "detail" in body:
        return f"jobwatchd answered {status}: {body['detail']}"
    return f"jobwatchd answered {status}"


def wait_exit_code(jobs: list[dict[str, Any]]) -> int:
    """``wait``'s exit code: 0 all SUCCESS, 1 any ended otherwise, 124 the wait timed out."""
    if any(job.get("terminal") and job.get("status") != SUCCESS for job in jobs):
        return 1
    if all(job.get("status") == SUCCESS for job in jobs):
        return 0
    return 124


def _closed_reason(data: str | None) -> str:
    try:
        reason = orjson.loads(data or "")["reason"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "closed"
    return str(reason)


# -- Server-Sent Events ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SseMessage:
    """One dispatched SSE block."""

    event: str
    """The ``event:`` field (``message`` when absent)."""
    data: str | None
    """The ``data:`` lines joined; None for a block that only moved the id."""
    id: str | None
    """The last event id after this block (it carries over blocks, as in EventSource)."""


class SseParser:
    """Incremental ``text/event-stream`` parser (lines end in LF or CRLF).

    Blocks with data are dispatched, and so are blocks that only set ``id:``
    (with ``data=None``) so a consumer can track its resume point. Comments
    (heartbeats) are counted.
    """

    def __init__(self) -> None:
        self._pending = b""
        self._event = ""
        self._data: list[str] = []
        self._id_seen = False
        self.last_id: str | None = None
        self.retry_ms: int | None = None
        self.comments = 0

    def feed(self, chunk: bytes) -> list[SseMessage]:
        """Consume ``chunk``; return the blocks it completed."""
        data = self._pending + chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()
        messages: list[SseMessage] = []
        for raw in lines:
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if not line:
                message = self._dispatch()
                if message is not None:
                    messages.append(message)
                continue
            if line.startswith(b":"):
                self.comments += 1
                continue
            name, _, value = line.decode("utf-8", "replace").partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                self._data.append(value)
            elif name == "event":
                self._event = value
            elif name == "id" and "\0" not in value:
                self.last_id = value
                self._id_seen = True
            elif name == "retry" and value.isdigit():
                self.retry_ms = int(value)
        return messages

    def _dispatch(self) -> SseMessage | None:
        event, data, id_seen = self._event, self._data, self._id_seen
        self._event, self._data, self._id_seen = "", [], False
        if data:
            return SseMessage(event=event or "message", data="\n".join(data), id=self.last_id)
        if id_seen:
            return SseMessage(event=event or "message", data=None, id=self.last_id)
        return None


# -- waiting for jobs -----------------------------------------------------------------


@dataclass(slots=True)
class JobProgress:
    """What ``wait`` knows about one job while it waits."""

    job_id: str
    started: float
    status: str = "?"
    terminal: bool = False
    sub_total: int | None = None
    sub_status: dict[str, str] = field(default_factory=dict)
    ended: float | None = None
    job: dict[str, Any] | None = None
    """The latest job object read from the daemon."""
    final: bool = False
    """``job`` is terminal (or the wait is over) and will not change any more."""

    @property
    def sub_done(self) -> int:
        """Sub-jobs in a terminal status."""
        return sum(1 for status in self.sub_status.values() if is_terminal(status))

    def elapsed(self, now: float | None = None) -> float:
        """Seconds waited for this job (frozen once it ended)."""
        end = self.ended if self.ended is not None else (now or time.monotonic())
        return max(0.0, end - self.started)

    def _entities(self, entities: object) -> None:
        if not isinstance(entities, dict):
            return
        total = entities.get("sub_jobs_total")
        subs = entities.get("sub_jobs")
        if isinstance(subs, list):
            for index, sub in enumerate(subs):
                if isinstance(sub, dict) and isinstance(sub.get("status"), str):
                    key = str(sub.get("job_id") or f"#{index}")
                    self.sub_status[key] = sub["status"]
            if total is None:
                total = len(subs)
        if isinstance(total, int):
            self.sub_total = total

    def update_job(self, job: dict[str, Any]) -> None:
        """Take a job object read from the daemon."""
        self.job = job
        self.status = str(job.get("status"))
        self._entities(job.get("entities"))
        if job.get("terminal"):
            self._end()

    def update_event(self, event_type: str, data: Mapping[str, Any]) -> None:
        """Take the data of a transition event of this job or of one of its sub-jobs."""
        if event_type == JOB_TRANSITION:
            self.status = str(data.get("to"))
            self._entities(data.get("entities"))
            total = data.get("sub_jobs_total")
            if isinstance(total, int):
                self.sub_total = total
            if data.get("terminal"):
                self._end()
        elif event_type == SUBJOB_TRANSITION:
            self.sub_status[str(data.get("job_id"))] = str(data.get("to"))

    def _end(self) -> None:
        self.terminal = True
        if self.ended is None:
            self.ended = time.monotonic()


class JobWaiter:
    """Wait until jobs end, driven by ``/v1/events`` (no polling loop).

    The stream is opened first (from now on), then every job is read once, so a
    transition is either in that read or on the stream. A terminal event makes
    the waiter read the job's final object. Unfinished jobs are re-read every
    :data:`WAIT_RECHECK` seconds, which notices a job cancelled meanwhile.
    """

    def __init__(
        self,
        client: ApiClient,
        job_ids: Iterable[str],
        *,
        timeout: float | None = None,
        on_update: Callable[[JobProgress], None] | None = None,
        on_final: Callable[[JobProgress], None] | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        started = time.monotonic()
        self.deadline = None if timeout is None else started + timeout
        self.progress = {job_id: JobProgress(job_id, started) for job_id in job_ids}
        self._on_update = on_update
        self._on_final = on_final
        self._on_retry = on_retry
        self._changed = asyncio.Event()
        self._limit = asyncio.Semaphore(FETCH_CONCURRENCY)

    def _remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    async def run(self) -> list[dict[str, Any]]:
        """The final job objects, in the order given (terminal unless the wait timed out)."""
        opened = asyncio.Event()
        events = asyncio.create_task(self._consume(opened))
        try:
            await self._until(opened, events)
            await self._fetch(list(self.progress))
            while not all(progress.final for progress in self.progress.values()):
                remaining = self._remaining()
                if remaining == 0.0:
                    break
                self._changed.clear()
                pending = [p.job_id for p in self.progress.values() if p.terminal and not p.final]
                if pending:
                    await self._fetch(pending)
                    continue
                deadline_first = remaining is not None and remaining <= WAIT_RECHECK
                wait_for = remaining if deadline_first else WAIT_RECHECK
                changed = await self._until(self._changed, events, wait_for)
                if not changed and not deadline_first:
                    await self._fetch([p.job_id for p in self.progress.values() if not p.final])
            await self._fetch([p.job_id for p in self.progress.values() if not p.final], last=True)
        finally:
            events.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await events
        return [progress.job or {"job_id": job_id} for job_id, progress in self.progress.items()]

    async def _until(
        self, flag: asyncio.Event, events: asyncio.Task[None], timeout: float | None = None
    ) -> bool:
        """Wait for ``flag``; False after ``timeout``; the stream's failure is raised."""
        waiter = asyncio.create_task(flag.wait())
        try:
            done, _ = await asyncio.wait(
                {waiter, events}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
        if events in done:
            events.result()  # raises the stream's failure
            raise ClientFailure("the event stream ended unexpectedly")
        return waiter in done

    async def _fetch(self, job_ids: Sequence[str], *, last: bool = False) -> None:
        async def one(job_id: str) -> None:
            async with self._limit:
                job = await self.client.get_job(job_id)
            progress = self.progress[job_id]
            progress.update_job(job)
            if job.get("terminal") or last:
                progress.final = True
                if self._on_final is not None:
                    self._on_final(progress)
            elif self._on_update is not None:
                self._on_update(progress)

        results = await asyncio.gather(*(one(job_id) for job_id in job_ids), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _consume(self, opened: asyncio.Event) -> None:
        wanted = self.progress
        params: list[tuple[str, str]] = []
        if len(wanted) <= MAX_SERVER_JOB_FILTER:
            params = [("job", job_id) for job_id in wanted]
        async for message in self.client.follow_events(
            params,
            give_up_after=WAIT_RECONNECT_GRACE,
            on_open=lambda _cursor: opened.set(),
            on_retry=self._on_retry,
        ):
            try:
                event = orjson.loads(message.data or "")
                data = event["data"]
                job_id = data.get("parent_job_id") or data["job_id"]
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                continue
            progress = wanted.get(job_id)
            if progress is None or progress.final:
                continue
            progress.update_event(message.event, data)
            if self._on_update is not None:
                self._on_update(progress)
            if progress.terminal:
                self._changed.set()
