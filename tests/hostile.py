"""A source that answers as an attacker would: a small aiohttp server on loopback with the handlers a test gives,
recording every request it gets. Bodies are generated while they are sent, never held in memory."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CHUNK = b"0" * 65536


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


@dataclass
class HostileServer:
    routes: dict[str, Handler]
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> HostileServer:
        async def handle(request: web.Request) -> web.StreamResponse:
            self.seen.append(Seen(request.path, dict(request.headers)))
            handler = self.routes.get(request.path)
            return await handler(request) if handler else web.Response(status=404)

        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    @property
    def address(self) -> str:
        return self.url.removeprefix("http://")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@contextlib.asynccontextmanager
async def hostile(routes: dict[str, Handler]) -> AsyncIterator[HostileServer]:
    server = await HostileServer(routes).start()
    try:
        yield server
    finally:
        await server.stop()


def huge(size: int | None, limit: int = 2**31) -> Handler:
    """A body of `size` bytes announced in Content-Length, or (None) an endless chunked one; either way sent until the
    client hangs up, and never more than `limit` bytes (the test stays bounded if the client does not)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if size is not None:
            response.content_length = size
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        sent = 0
        with contextlib.suppress(ConnectionError):
            await response.write(b'{"account_details": "')
            while sent < min(size or limit, limit):
                await response.write(CHUNK)
                sent += len(CHUNK)
        return response

    return handler


def raw(text: str, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(text=text, status=status, headers=headers or {"Content-Type": "application/json"})

    return handler


def jsz(num_pending: str, num_ack_pending: str = "0") -> str:
    """A /jsz answer for the default account, stream and consumer, with the numbers written verbatim."""
    consumer = f'{{"name": "worker-group", "num_pending": {num_pending}, "num_ack_pending": {num_ack_pending}}}'
    stream = f'{{"name": "dynamo_prefill_queue", "consumer_detail": [{consumer}]}}'
    return json.dumps({"account_details": [{"name": "$G", "id": "$G", "stream_detail": ["STREAM"]}]}).replace(
        '"STREAM"', stream
    )


class FakeNats:
    """Enough of the NATS client protocol to answer JetStream API requests with the raw replies given (by subject
    prefix): a server that speaks NATS but reports what no nats-server would."""

    def __init__(self, replies: dict[str, bytes]) -> None:
        self.replies = replies
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> FakeNats:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        info = {"server_id": "hostile", "version": "2.10.0", "proto": 1, "headers": True, "max_payload": 1 << 20}
        writer.write(b"INFO " + json.dumps(info).encode() + b"\r\n")
        inboxes: dict[bytes, bytes] = {}  # subscription subject (may end in *) -> sid
        with contextlib.suppress(ConnectionError):
            while line := await reader.readline():
                op, *args = line.split()
                if op.upper() == b"PING":
                    writer.write(b"PONG\r\n")
                elif op.upper() == b"SUB":
                    inboxes[args[0]] = args[-1]
                elif op.upper() in (b"PUB", b"HPUB"):
                    await reader.readexactly(int(args[-1]) + 2)  # the payload and its CRLF
                    reply = self._reply(args[0].decode())
                    sid = next((sid for sub, sid in inboxes.items() if args[1].startswith(sub.rstrip(b"*"))), None)
                    if reply is not None and len(args) > 2 and sid is not None:
                        writer.write(b"MSG %s %s %d\r\n%s\r\n" % (args[1], sid, len(reply), reply))
                await writer.drain()
        writer.close()

    def _reply(self, subject: str) -> bytes | None:
        return next((reply for prefix, reply in self.replies.items() if subject.startswith(prefix)), None)


@contextlib.asynccontextmanager
async def fake_nats(replies: dict[str, bytes]) -> AsyncIterator[FakeNats]:
    server = await FakeNats(replies).start()
    try:
        yield server
    finally:
        await server.stop()
