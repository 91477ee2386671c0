"""The synchronous client: :class:`Client`, for plain scripts.

It runs an :class:`~jobwatchd.client.aio.AsyncClient` on a private event loop
in a background thread, and every method hands its call to that loop and
blocks for the answer. That design (rather than ``asyncio.run`` per call)
keeps one connection pool across calls, lets :meth:`Client.events` and
:meth:`Client.list` be ordinary iterators over a stream that stays open
between items, and works even where the calling thread already runs an event
loop (a notebook), where ``asyncio.run`` would refuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

from jobwatchd.client.aio import AsyncClient
from jobwatchd.client.progress import JobProgress
from jobwatchd.client.types import Event, Job, JobSpec, Registration, WaitResult

T = TypeVar("T")


class Client:
    """The daemon's HTTP API, synchronously::

        with Client("127.0.0.1:8787") as client:
            client.register(job_ids, labels={"pipeline": "42"})
            client.wait(job_ids, timeout=1800)  # raises JobFailed, WaitTimeout...

    The arguments are those of :class:`~jobwatchd.client.aio.AsyncClient`; so are
    the methods, which block. Close it (or use ``with``) to stop its thread.
    """

    def __init__(
        self, url: str, token: str | None = None, *, request_timeout: float = 30.0
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="jobwatchd-client", daemon=True
        )
        self._thread.start()
        self._async = AsyncClient(url, token, request_timeout=request_timeout)
        self.url = self._async.url

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt: stop the call on the loop too
            raise

    def _iterate(self, items: AsyncIterator[T]) -> Iterator[T]:
        async def step() -> tuple[bool, T | None]:
            try:
                return True, await anext(items)
            except StopAsyncIteration:
                return False, None

        async def close() -> None:
            closer = getattr(items, "aclose", None)
            if closer is not None:
                await closer()

        try:
            while True:
                more, item = self._call(step())
                if not more:
                    return
                yield item  # type: ignore[misc]
        finally:
            if self._loop.is_running():
                self._call(close())

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool and stop the client's thread."""
        if not self._loop.is_running():
            return
        with contextlib.suppress(Exception):
            self._call(self._async.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def register(
        self,
        jobs: str | JobSpec | Iterable[str | JobSpec],
        *,
        service: str | None = None,
        project_id: str | None = None,
        account: str | None = None,
        labels: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Registration:
        """See :meth:`AsyncClient.register`."""
        if not isinstance(jobs, str | JobSpec):
            jobs = list(jobs)
        return self._call(
            self._async.register(
                jobs,
                service=service,
                project_id=project_id,
                account=account,
                labels=labels,
                timeout=timeout,
            )
        )

    def get(self, job_id: str, *, wait: float = 0.0) -> Job:
        """See :meth:`AsyncClient.get`."""
        return self._call(self._async.get(job_id, wait=wait))

    def list(
        self,
        *,
        status: str | None = None,
        labels: Mapping[str, str] | None = None,
        service: str | None = None,
        page_size: int = 1000,
    ) -> Iterator[Job]:
        """See :meth:`AsyncClient.list`."""
        return self._iterate(
            self._async.list(status=status, labels=labels, service=service, page_size=page_size)
        )

    def cancel(self, job_id: str) -> None:
        """See :meth:`AsyncClient.cancel`."""
        self._call(self._async.cancel(job_id))

    def events(
        self,
        *,
        since: int | None = None,
        jobs: Iterable[str] = (),
        types: Iterable[str] = (),
        labels: Mapping[str, str] | None = None,
        follow: bool = True,
        give_up_after: float | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> Iterator[Event]:
        """See :meth:`AsyncClient.events`."""
        return self._iterate(
            self._async.events(
                since=since,
                jobs=list(jobs),
                types=list(types),
                labels=labels,
                follow=follow,
                give_up_after=give_up_after,
                on_retry=on_retry,
            )
        )

    def wait(
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
        """See :meth:`AsyncClient.wait` (callbacks run on the client's thread)."""
        if not isinstance(job_ids, str):
            job_ids = list(job_ids)
        return self._call(
            self._async.wait(
                job_ids,
                timeout=timeout,
                raise_on_failure=raise_on_failure,
                reconnect_for=reconnect_for,
                on_update=on_update,
                on_final=on_final,
                on_retry=on_retry,
            )
        )
