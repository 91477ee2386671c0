"""The asynchronous client: :class:`AsyncClient`."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final

import aiohttp
import orjson

from jobwatchd.client.errors import (
    ApiError,
    ClientError,
    ConnectionFailed,
    JobFailed,
    JobUnresolved,
    NotTracked,
    PartialFailure,
    UnexpectedAnswer,
    UsageError,
    WaitTimeout,
)
from jobwatchd.client.progress import JobProgress
from jobwatchd.client.sse import SseMessage, SseParser
from jobwatchd.client.types import (
    CANCELLED,
    FAILED,
    PARTIAL,
    PENDING,
    UNRESOLVED,
    Event,
    Job,
    JobSpec,
    Registration,
    WaitResult,
    job_outcome,
    parse_jobs,
)

CLOSED_EVENT: Final = "jobwatchd.stream.closed"
LONG_POLL_SECONDS = 30.0
"""One ``?wait=`` long-poll lasts at most this long (the daemon allows up to 3600)."""
STREAM_READ_TIMEOUT = 60.0
"""Seconds without a byte (the daemon pings every 15 s) before a stream is deemed dead."""
RECONNECT_MIN = 0.2
RECONNECT_MAX = 5.0
WAIT_RECONNECT_GRACE = 30.0
"""Without a timeout, ``wait`` gives up on a daemon gone for this long."""
MAX_SERVER_JOB_FILTER = 100
"""Up to this many jobs are filtered by the daemon; more would make the URL too long."""
MAX_LONG_POLLS = 64
"""At most this many long-polls are open at once; more jobs take turns, with
shorter long-polls so each job is asked again within :data:`LONG_POLL_SECONDS`."""
PAGE_SIZE = 1000


def base_url(address: str) -> tuple[str, str | None]:
    """(HTTP base URL, Unix socket path or None) for an address: ``http(s)://...``,
    ``host:port`` (an ``api.listen`` value; a wildcard means loopback) or ``unix:/path``."""
    if address.startswith(("http://", "https://")):
        return address.rstrip("/"), None
    if address.startswith("unix:"):
        return "http://localhost", address[len("unix:") :]
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "", "[::]"):  # a wildcard listen is reachable on loopback
        host = "127.0.0.1"
    return f"http://{host}:{port}", None


def _closed_reason(data: str | None) -> str:
    try:
        reason = orjson.loads(data or "")["reason"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "closed"
    return str(reason)


class AsyncClient:
    """The daemon's HTTP API, asynchronously::

        async with AsyncClient("127.0.0.1:8787", token=token) as client:
            await client.register(["JOB_ID"], labels={"team": "db"})
            result = await client.wait(["JOB_ID"], timeout=1800)

    ``url`` is ``http(s)://host:port``, ``host:port`` or ``unix:/path``; ``token``
    the API bearer token (``api.token_file``). One client holds one connection
    pool; use it as an async context manager (or call :meth:`close`).
    """

    def __init__(
        self, url: str, token: str | None = None, *, request_timeout: float = 30.0
    ) -> None:
        self.url, self._unix_path = base_url(url)
        self._token = token
        self._request_timeout = request_timeout
        self._session: aiohttp.ClientSession | None = None

    # -- life cycle ---------------------------------------------------------------

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector: aiohttp.BaseConnector = (
                aiohttp.UnixConnector(path=self._unix_path)
                if self._unix_path
                else aiohttp.TCPConnector()
            )
            headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
            self._session = aiohttp.ClientSession(connector=connector, headers=headers)
        return self._session

    async def __aenter__(self) -> AsyncClient:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- requests -----------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        timeout: float | None = None,
        ok: Iterable[int] = (200, 201, 204),
    ) -> tuple[int, Any]:
        """Send a request; (status, decoded JSON or None) for an ``ok`` status.

        Raises :class:`ConnectionFailed`, :class:`UnexpectedAnswer` (not JSON)
        or :class:`ApiError` (another status).
        """
        session = self._open()
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": "application/json"} if data is not None else {}
        query = list(params.items()) if isinstance(params, Mapping) else params
        try:
            async with session.request(
                method,
                self.url + path,
                data=data,
                params=query,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout or self._request_timeout),
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ConnectionFailed(
                f"cannot reach jobwatchd at {self.url}: {exc or type(exc).__name__}"
            ) from None
        try:
            decoded = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            if status == 401:
                raise ApiError.from_answer(status, None) from None
            raise UnexpectedAnswer(
                f"jobwatchd answered {status} with a body that is not JSON"
            ) from None
        if status not in ok:
            raise ApiError.from_answer(status, decoded)
        return status, decoded

    async def register(
        self,
        jobs: str | JobSpec | Iterable[str | JobSpec],
        *,
        service: str | None = None,
        project_id: str | None = None,
        account: str | None = None,
        labels: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Registration:
        """Start tracking one job or a batch (atomically: all or none).

        ``jobs`` are job ids or :class:`JobSpec`; the keyword options apply to
        the plain ids. Registering a job tracked already (same project) is fine.
        """
        items = [jobs] if isinstance(jobs, str | JobSpec) else list(jobs)
        if not items:
            raise UsageError("register: no job ids given")
        specs = [
            item
            if isinstance(item, JobSpec)
            else JobSpec(
                job_id=item,
                service=service,
                project_id=project_id,
                account=account,
                labels=labels,
                timeout=timeout,
            )
            for item in items
        ]
        _, body = await self.request(
            "POST", "/v1/jobs", body={"jobs": [spec.to_body() for spec in specs]}
        )
        created = body.get("created") if isinstance(body, dict) else None
        return Registration(parse_jobs(body), created if isinstance(created, int) else 0)

    async def get(self, job_id: str, *, wait: float = 0.0) -> Job:
        """One job; with ``wait``, long-poll up to that many seconds (at most 3600)
        for it to end. :class:`NotTracked` when the daemon does not track it."""
        params = {"wait": f"{wait:.3f}"} if wait > 0 else None
        _, body = await self.request(
            "GET", f"/v1/jobs/{job_id}", params=params, timeout=wait + self._request_timeout
        )
        return Job.from_dict(body)

    async def list(
        self,
        *,
        status: str | None = None,
        labels: Mapping[str, str] | None = None,
        service: str | None = None,
        page_size: int = PAGE_SIZE,
    ) -> AsyncGenerator[Job, None]:
        """Every tracked job (with this ``status`` and ``service``, having all
        these ``labels``), page by page as it is iterated."""
        after: str | None = None
        while True:
            params = [("limit", str(page_size))]
            if status:
                params.append(("status", status))
            if service:
                params.append(("service", service))
            params.extend(("label", f"{key}={value}") for key, value in (labels or {}).items())
            if after:
                params.append(("after", after))
            _, body = await self.request("GET", "/v1/jobs", params=params)
            for job in parse_jobs(body):
                yield job
            cursor = body.get("next")
            if cursor is None:
                return
            after = str(cursor)

    async def cancel(self, job_id: str) -> None:
        """Stop tracking a job (its recorded events are still delivered);
        :class:`NotTracked` when it was not tracked."""
        await self.request("DELETE", f"/v1/jobs/{job_id}")

    # -- the event stream -----------------------------------------------------------

    async def stream(
        self,
        params: Sequence[tuple[str, str]] = (),
        *,
        last_event_id: int | None = None,
        read_timeout: float = STREAM_READ_TIMEOUT,
    ) -> AsyncGenerator[SseMessage, None]:
        """One connection to ``GET /v1/events``: its raw messages until it ends.

        Raises :class:`ApiError` for an error answer and :class:`ConnectionFailed`
        when the daemon cannot be reached or the connection breaks.
        """
        session = self._open()
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=read_timeout)
        connected = False
        try:
            async with session.get(
                self.url + "/v1/events", params=list(params), headers=headers, timeout=timeout
            ) as resp:
                connected = True
                if resp.status != 200:
                    raw = await resp.read()
                    try:
                        body = orjson.loads(raw) if raw else None
                    except orjson.JSONDecodeError:
                        body = None
                    raise ApiError.from_answer(resp.status, body)
                parser = SseParser()
                async for chunk in resp.content.iter_any():
                    for message in parser.feed(chunk):
                        yield message
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            what = "lost the event stream of" if connected else "cannot reach"
            raise ConnectionFailed(
                f"{what} jobwatchd at {self.url}: {exc or type(exc).__name__}"
            ) from None

    async def follow(
        self,
        params: Sequence[tuple[str, str]] = (),
        *,
        since: int | None = None,
        follow: bool = True,
        give_up_after: float | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> AsyncGenerator[SseMessage, None]:
        """The raw messages after event ``since`` (None: from now on), reconnecting
        and resuming from the last id seen whenever the stream ends early.

        Without ``follow`` it ends once the events recorded so far were read.
        The first connection must succeed; later failures are retried with
        backoff, for ever or for ``give_up_after`` seconds of outage.
        """
        cursor = since
        query = [*params, ("follow", "true" if follow else "false")]
        connected_once = False
        outage_since: float | None = None
        delay = RECONNECT_MIN
        while True:
            failure: ClientError
            try:
                async with contextlib.aclosing(
                    self.stream(query, last_event_id=cursor)
                ) as messages:
                    opened = False
                    closed_reason: str | None = None
                    async for message in messages:
                        if message.id is not None and message.id.isdigit():
                            cursor = int(message.id)
                        if not opened:
                            opened = connected_once = True
                            outage_since, delay = None, RECONNECT_MIN
                        if message.event == CLOSED_EVENT:
                            closed_reason = _closed_reason(message.data)
                        elif message.data is not None:
                            yield message
                if closed_reason is None and not follow:
                    return
                failure = ConnectionFailed(
                    f"jobwatchd closed the event stream ({closed_reason or 'no reason given'})"
                )
            except ApiError as exc:
                if exc.status < 500 or not connected_once:
                    raise
                failure = exc
            except ConnectionFailed as exc:
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

    async def events(
        self,
        *,
        since: int | None = None,
        jobs: Iterable[str] = (),
        types: Iterable[str] = (),
        labels: Mapping[str, str] | None = None,
        follow: bool = True,
        give_up_after: float | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> AsyncGenerator[Event, None]:
        """The events after event ``since`` (its :attr:`Event.seq`; None: from now
        on; 0: every recorded event), filtered by job (a job and its sub-jobs),
        type and labels.

        When the stream breaks (a restart, a slow reader cut off) it reconnects
        with ``Last-Event-ID`` and resumes exactly after the last event seen:
        nothing is missed or repeated. Without ``follow`` it ends after the
        events recorded so far. Save :attr:`Event.seq` to resume later.
        """
        params = [("job", job_id) for job_id in jobs]
        params.extend(("type", event_type) for event_type in types)
        params.extend(("label", f"{key}={value}") for key, value in (labels or {}).items())
        async with contextlib.aclosing(
            self.follow(
                params, since=since, follow=follow, give_up_after=give_up_after, on_retry=on_retry
            )
        ) as messages:
            async for message in messages:
                yield Event.parse(message.id, message.event, message.data or "")

    # -- waiting --------------------------------------------------------------------

    async def wait(
        self,
        job_ids: str | Iterable[str],
        *,
        timeout: float | None = None,
        raise_on_failure: bool = True,
        reconnect_for: float | None = None,
        on_update: Callable[[JobProgress], None] | None = None,
        on_final: Callable[[JobProgress], None] | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> WaitResult:
        """Wait until the jobs end; every one must be tracked (registered now or earlier).

        Each unfinished job is long-polled (the daemon answers the moment the
        job ends or is cancelled), and the event stream feeds ``on_update``
        with sub-job progress. If the daemon goes away, the wait reconnects
        until ``timeout`` passes (without a timeout, for ``reconnect_for``
        seconds of outage, default 30), so it rides out a restart; it can also
        be started again later from the same job ids.

        Raises :class:`JobFailed` (:class:`PartialFailure` for a job that
        ended ``SUCCESS`` with failed sub-jobs), :class:`JobUnresolved`
        (``NOT_FOUND``, ``ERROR``, cancelled) or :class:`WaitTimeout`, unless
        ``raise_on_failure`` is false; always :class:`NotTracked` for a job not
        tracked at the start and
        :class:`ConnectionFailed` when the daemon cannot be reached.
        """
        ids = [job_ids] if isinstance(job_ids, str) else list(dict.fromkeys(job_ids))
        if not ids:
            raise UsageError("wait: no job ids given")
        if timeout is not None and not timeout >= 0:
            raise UsageError("wait: timeout must be a number of seconds, not negative")
        waiter = JobWaiter(
            self,
            ids,
            timeout=timeout,
            reconnect_for=reconnect_for,
            on_update=on_update,
            on_final=on_final,
            on_retry=on_retry,
        )
        result = await waiter.run()
        if raise_on_failure:
            raise_for_result(result)
        return result


def raise_for_result(result: WaitResult) -> None:
    """Raise the exception for a wait that did not end in success."""
    outcome = result.outcome
    if outcome in (FAILED, PARTIAL):
        failed = result.of(FAILED) or result.of(PARTIAL)
        kind = JobFailed if result.of(FAILED) else PartialFailure
        job = failed[0]
        subs = len(job.failed_sub_jobs)
        raise kind(
            f"job {job.job_id} ended {job.status}"
            + (f" ({subs} sub-job(s) failed)" if subs else "")
            + (f": {job.fail_reason}" if job.fail_reason else ""),
            result,
            failed,
        )
    if outcome in (UNRESOLVED, CANCELLED):
        lost = result.of(UNRESOLVED) + result.of(CANCELLED)
        what = (
            "stopped being tracked"
            if lost[0] in result.of(CANCELLED)
            else f"ended {lost[0].status}"
        )
        raise JobUnresolved(f"job {lost[0].job_id} {what}", result, lost)
    if outcome == PENDING:
        unfinished = result.of(PENDING)
        raise WaitTimeout(
            f"{len(unfinished)} job(s) had not ended when the wait timed out", result, unfinished
        )


class JobWaiter:
    """One wait: per unfinished job a long-poll (which the daemon answers when
    the job ends or is cancelled), plus the event stream for live progress when
    ``follow_events`` (by default: when there is an ``on_update``)."""

    def __init__(
        self,
        client: AsyncClient,
        job_ids: Sequence[str],
        *,
        timeout: float | None = None,
        reconnect_for: float | None = None,
        on_update: Callable[[JobProgress], None] | None = None,
        on_final: Callable[[JobProgress], None] | None = None,
        on_retry: Callable[[str], None] | None = None,
        follow_events: bool | None = None,
    ) -> None:
        self.client = client
        # The event stream only feeds progress between a job's start and end
        # (the long-polls decide the outcome): opened when someone looks at it.
        self._follow_events = on_update is not None if follow_events is None else follow_events
        started = time.monotonic()
        endless = timeout is not None and math.isinf(timeout)
        self.deadline = None if timeout is None or endless else started + timeout
        if reconnect_for is None:
            reconnect_for = math.inf if endless else WAIT_RECONNECT_GRACE
        self.reconnect_for = reconnect_for
        self.progress = {job_id: JobProgress(job_id, started) for job_id in job_ids}
        self._on_update = on_update
        self._on_final = on_final
        self._on_retry = on_retry
        self._polls = asyncio.Semaphore(MAX_LONG_POLLS)
        self._last_retry: tuple[str, float] = ("", 0.0)

    def _remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    async def run(self) -> WaitResult:
        """Wait; the result holds the jobs in the order given."""
        # Every job is read once first: a job that is not tracked, or a daemon
        # that cannot be reached, is an error of the call, not an outcome.
        reads = await asyncio.gather(
            *(self._first_read(job_id) for job_id in self.progress), return_exceptions=True
        )
        for failure in reads:
            if isinstance(failure, BaseException):
                raise failure
        stream = asyncio.create_task(self._consume()) if self._follow_events else None
        try:
            watchers = [
                asyncio.create_task(self._watch(progress))
                for progress in self.progress.values()
                if not progress.final
            ]
            if watchers:
                try:
                    async with asyncio.timeout(self._remaining()):
                        await asyncio.gather(*watchers)
                except TimeoutError:
                    pass
                finally:
                    for watcher in watchers:
                        watcher.cancel()
                    await asyncio.gather(*watchers, return_exceptions=True)
            await self._last_read()
        finally:
            if stream is not None:
                stream.cancel()
                with contextlib.suppress(asyncio.CancelledError, ClientError):
                    await stream
        jobs: list[Job] = []
        outcomes: list[str] = []
        for progress in self.progress.values():
            assert progress.job is not None
            jobs.append(progress.job)
            outcomes.append(job_outcome(progress.job, tracked=not progress.cancelled))
        return WaitResult(tuple(jobs), tuple(outcomes))

    async def _first_read(self, job_id: str) -> None:
        async with self._polls:
            job = await self.client.get(job_id)
        self._take(self.progress[job_id], job)

    def _take(self, progress: JobProgress, job: Job) -> None:
        progress.update_job(job)
        if job.terminal:
            self._finish(progress)
        elif self._on_update is not None:
            self._on_update(progress)

    def _finish(self, progress: JobProgress) -> None:
        progress.final = True
        if self._on_final is not None:
            self._on_final(progress)

    async def _watch(self, progress: JobProgress) -> None:
        """Long-poll one job until it ends or stops being tracked; ride out outages."""
        outage_since: float | None = None
        delay = RECONNECT_MIN
        while not progress.final:
            poll = self._poll_seconds()
            answered_in = poll
            try:
                async with self._polls:
                    asked = time.monotonic()
                    job = await self.client.get(progress.job_id, wait=poll)
                    answered_in = time.monotonic() - asked
            except NotTracked:
                progress.cancelled = True
                progress.mark_ended()
                self._finish(progress)
                return
            except (ConnectionFailed, ApiError) as exc:
                if isinstance(exc, ApiError) and exc.status < 500 and exc.status != 429:
                    raise
                now = time.monotonic()
                outage_since = outage_since or now
                if self.deadline is None and now - outage_since > self.reconnect_for:
                    raise
                self._retry(f"{exc}; reconnecting")
                await asyncio.sleep(delay)
                delay = min(RECONNECT_MAX, delay * 2)
                continue
            outage_since = None
            self._take(progress, job)
            if not progress.final and answered_in < min(1.0, poll / 2):
                # Answered at once without the job ending (a daemon draining, or
                # one that ignores ?wait=): back off rather than spin.
                await asyncio.sleep(delay)
                delay = min(RECONNECT_MAX, delay * 2)
            else:
                delay = RECONNECT_MIN

    def _poll_seconds(self) -> float:
        """How long one long-poll asks the daemon to hold: the longest allowed
        while every unfinished job has a long-poll open; shorter with more
        jobs, so that each is asked again (and a cancel seen) within that time."""
        unfinished = sum(1 for progress in self.progress.values() if not progress.final)
        if unfinished <= MAX_LONG_POLLS:
            return LONG_POLL_SECONDS
        return max(1.0, LONG_POLL_SECONDS * MAX_LONG_POLLS / unfinished)

    def _retry(self, message: str) -> None:
        """Pass a reconnect notice on, once per message and period (every
        long-poll of an outage says the same)."""
        now = time.monotonic()
        if self._on_retry is None:
            return
        if message == self._last_retry[0] and now - self._last_retry[1] < RECONNECT_MAX:
            return
        self._last_retry = (message, now)
        self._on_retry(message)

    async def _last_read(self) -> None:
        """Read once more the jobs that did not end (a best effort: the daemon may be gone)."""
        for progress in self.progress.values():
            if progress.final:
                continue
            try:
                job = await self.client.get(progress.job_id)
            except NotTracked:
                progress.cancelled = True
            except ClientError:
                pass
            else:
                progress.update_job(job)
            self._finish(progress)

    async def _consume(self) -> None:
        wanted = self.progress
        params: list[tuple[str, str]] = []
        if len(wanted) <= MAX_SERVER_JOB_FILTER:
            params = [("job", job_id) for job_id in wanted]
        async for message in self.client.follow(params, give_up_after=None, on_retry=self._retry):
            try:
                event = orjson.loads(message.data or "")
                data = event["data"]
                job_id = data.get("parent_job_id") or data["job_id"]
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                continue
            progress = wanted.get(job_id) if isinstance(job_id, str) else None
            if progress is None or progress.final:
                continue
            progress.update_event(message.event, data)
            if self._on_update is not None:
                self._on_update(progress)
