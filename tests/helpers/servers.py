"""aiohttp servers on 127.0.0.1 on a thread with an event loop of their own, so
that a test blocking on a daemon subprocess does not starve them: the
simulator, hostile upstreams, webhook receivers, stand-in APIs."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from jobwatchd.cloud.simulator import Simulator, start_simulator

T = TypeVar("T")


@contextmanager
def in_thread(
    start: Callable[[], Awaitable[T]],
    stop: Callable[[T], Awaitable[object]],
    *,
    name: str,
    timeout: float = 10.0,
) -> Iterator[T]:
    """Run ``start()`` on a new thread's event loop and yield what it returns;
    on exit, ``stop(started)`` on that loop, then the thread ends."""
    loop = asyncio.new_event_loop()
    started: list[T] = []
    failed: list[BaseException] = []
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            started.append(loop.run_until_complete(start()))
        except BaseException as error:  # reported in the test's thread
            failed.append(error)
            ready.set()
            loop.close()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(stop(started[0]))
        loop.close()

    thread = threading.Thread(target=serve, name=name, daemon=True)
    thread.start()
    assert ready.wait(timeout), f"{name} did not start within {timeout}s"
    if failed:
        raise AssertionError(f"{name} did not start") from failed[0]
    try:
        yield started[0]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)


@contextmanager
def started_in_thread(
    server: T,
    start: Callable[[T], Awaitable[object]],
    stop: Callable[[T], Awaitable[object]],
    *,
    name: str,
) -> Iterator[T]:
    """``server`` started with ``start(server)`` on its own thread and loop,
    stopped with ``stop(server)`` on exit."""

    async def started() -> T:
        await start(server)
        return server

    with in_thread(started, stop, name=name) as running:
        yield running


async def serve_app(app: web.Application, port: int = 0, **runner_options: Any) -> web.AppRunner:
    """Serve ``app`` on ``port`` of 127.0.0.1 (a free one by default) in this event loop; the caller
    stops it with ``await runner.cleanup()`` (see :func:`port_of`)."""
    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def port_of(runner: web.AppRunner) -> int:
    """The port a runner from :func:`serve_app` is bound to."""
    return int(runner.addresses[0][1])


@contextmanager
def app_in_thread(app: web.Application, *, name: str, **runner_options: Any) -> Iterator[int]:
    """``app`` on a free port of 127.0.0.1 on its own thread; yields the port.
    ``runner_options`` go to :class:`aiohttp.web.AppRunner`."""
    with in_thread(
        lambda: serve_app(app, **runner_options), web.AppRunner.cleanup, name=name
    ) as runner:
        yield port_of(runner)


@dataclass
class RunningSimulator:
    """A simulator serving on 127.0.0.1."""

    sim: Simulator
    url: str
    port: int


@contextmanager
def simulator_in_thread(
    sim: Simulator, *, ssl_context: ssl.SSLContext | None = None
) -> Iterator[RunningSimulator]:
    """``sim`` on a free port on its own thread (HTTPS with ``ssl_context``)."""
    with in_thread(
        lambda: start_simulator(sim, "127.0.0.1", 0, ssl_context=ssl_context),
        lambda started: started[0].cleanup(),
        name="simulator",
    ) as (_, port):
        scheme = "https" if ssl_context is not None else "http"
        yield RunningSimulator(sim, f"{scheme}://127.0.0.1:{port}", port)
