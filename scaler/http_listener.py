"""The HTTP port's listener: aiohttp's server behind a connection cap and a deadline for request headers.

aiohttp bounds the size of a request's headers but not the time they take, nor the number of connections: 1,100
clients sending headers a byte at a time would hold every file descriptor, and the probes and gRPC with them.
Here a connection must deliver its first request's headers within `header_timeout` (aiohttp's keep-alive timeout,
set to the same value, closes a connection idle that long between requests), and at most `max_connections` are
open: a new one evicts the oldest connection not serving a request, so a flood of slow clients cannot lock out a
probe that sends its request at once.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

DEFAULT_HEADER_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS = 256
PROBES = frozenset({"/healthz", "/readyz"})  # the kubelet calls these on the pod's address


def _loopback(request: web.Request) -> bool:
    try:
        return request.remote is not None and ipaddress.ip_address(request.remote).is_loopback
    except ValueError:
        return False


class _Refused(asyncio.Protocol):
    """A connection over the cap with nothing to evict: closed at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class HttpListener:
    def __init__(
        self,
        application: web.Application,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
        public_paths: frozenset[str] | None = None,
    ) -> None:
        """`public_paths`: when given, every other path answers only clients on the pod's loopback address (e.g.
        through `kubectl port-forward`), 403 to anyone else."""
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.public_paths = public_paths
        self.port = 0
        self._runner = web.AppRunner(application, access_log=None, keepalive_timeout=header_timeout)
        self._listener: asyncio.Server | None = None
        self._busy: set[RequestHandler] = set()  # connections serving a request now
        self._served: set[RequestHandler] = set()  # connections whose first request arrived before its deadline
        application.middlewares.append(self._track)

    @web.middleware
    async def _track(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        protocol = request.protocol
        self._served.add(protocol)
        self._busy.add(protocol)
        try:
            if self.public_paths is not None and request.path not in self.public_paths and not _loopback(request):
                return web.Response(status=403, text=f"{request.path} answers only on localhost (--http-local-only)\n")
            return await handler(request)
        finally:
            self._busy.discard(protocol)

    async def start(self, host: str, port: int) -> None:
        await self._runner.setup()
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(self._connection, host, port)
        self.port = self._listener.sockets[0].getsockname()[1]

    def _connection(self) -> asyncio.BaseProtocol:
        server = self._runner.server
        assert server is not None  # set up in start()
        open_ = [h for h in server.connections if h.transport is not None]  # oldest first
        if len(open_) >= self.max_connections:
            idle = next((h for h in open_ if h not in self._busy), None)
            if idle is None:
                return _Refused()
            idle.force_close()
        handler = server()
        asyncio.get_running_loop().call_later(self.header_timeout, self._deadline, handler)
        return handler

    def _deadline(self, handler: RequestHandler) -> None:
        if handler in self._served:
            self._served.discard(handler)  # later requests are aiohttp's keep-alive timeout's to bound
        else:
            handler.force_close()

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        await self._runner.cleanup()
