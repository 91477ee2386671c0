"""The API's HTTP server: aiohttp's, with a bound on connections."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiohttp import web


class _Refused(asyncio.Protocol):
    """A connection over ``api.max_connections``: told so, and closed at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(
                b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                b"Retry-After: 1\r\nContent-Length: 0\r\n\r\n"
            )
        transport.close()


class BoundedServer(web.Server):
    """At the bound, a new connection takes the place of the oldest one that is
    waiting for a request (idle keep-alive, or headers still arriving), so held
    connections cannot lock out a health check; only when every connection is
    serving a request is the new one refused."""

    def __init__(self, handler: Any, *args: Any, max_connections: int, **kwargs: Any) -> None:
        self._busy: set[asyncio.BaseTransport] = set()

        async def serve(request: web.BaseRequest) -> web.StreamResponse:
            transport = request.transport
            if transport is None:
                return cast(web.StreamResponse, await handler(request))
            self._busy.add(transport)
            try:
                return cast(web.StreamResponse, await handler(request))
            finally:
                self._busy.discard(transport)

        super().__init__(serve, *args, **kwargs)
        self.max_connections = max_connections
        self.evicted = 0

    def __call__(self) -> Any:
        if len(self.connections) >= self.max_connections and not self._evict_one_waiting():
            return _Refused()
        return super().__call__()

    def stats(self) -> dict[str, int]:
        """Open connections, those serving a request, and those displaced so far."""
        return {
            "connections": len(self.connections),
            "serving": len(self._busy),
            "displaced": self.evicted,
            "max": self.max_connections,
        }

    def _evict_one_waiting(self) -> bool:
        for connection in self.connections:  # oldest first
            transport = connection.transport
            if transport is None or transport.is_closing() or transport in self._busy:
                continue
            transport.close()
            self.evicted += 1
            return True
        return False


class BoundedRunner(web.AppRunner):
    """An AppRunner whose server takes at most ``max_connections`` connections at once."""

    def __init__(self, app: web.Application, *, max_connections: int, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._max_connections = max_connections

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        # the same server, with the bound: rebuilt from what AppRunner chose
        return BoundedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            max_connections=self._max_connections,
            **plain._kwargs,
        )
