"""Clients that behave as an attacker would, against `pd-scaler serve` as a process on loopback: a flood of
connections sending their headers slowly, failed TLS handshakes. Each bounded in count and time."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scaler.logs import LibraryRateLimit
from tests.servers import wait_http
from tests.test_server import Process
from tests.test_tls import Pki

HEADER_TIMEOUT = 1.0


class Flood:
    """Counts the clients that have connected (or been refused); `on` is set when all of them have."""

    def __init__(self, clients: int) -> None:
        self.left = clients
        self.on = asyncio.Event()

    def opened(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.on.set()


async def _slow_client(port: int, deadline: float, flood: Flood) -> float | None:
    """Connect and send headers a line at a time without ever ending them; the seconds until the server hung up
    (None: it did not before `deadline`)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        flood.opened()
        return 0.0  # refused outright
    flood.opened()
    connected = time.monotonic()
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: pd-scaler\r\n")
        while time.monotonic() < deadline:
            try:
                if await asyncio.wait_for(reader.read(1024), 0.25) == b"":
                    return time.monotonic() - connected
            except asyncio.TimeoutError:
                writer.write(b"X-Slow: 1\r\n")
            except OSError:
                return time.monotonic() - connected
        return None
    finally:
        writer.close()


async def test_slow_header_connections_are_closed_and_the_probes_and_grpc_keep_answering(tmp_path: Path):
    p = Process(tmp_path, "--log-format", "json", "--http-header-timeout", f"{HEADER_TIMEOUT}s", nofile=1024)
    wait_http(f"http://127.0.0.1:{p.http_port}/readyz")
    try:
        deadline = time.monotonic() + 10
        flood = Flood(1100)
        attack = asyncio.gather(*(_slow_client(p.http_port, deadline, flood) for _ in range(1100)))
        await asyncio.wait_for(flood.on.wait(), 10)  # every connection is open (or refused)

        started = time.monotonic()
        assert await asyncio.to_thread(p.http, "/healthz") == (200, "ok\n")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{p.grpc_port}") as channel:
            answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        assert time.monotonic() - started < 2

        held = await attack
        assert None not in held, f"{held.count(None)} slow connections still open after 10 s"
        assert max(held) <= HEADER_TIMEOUT + 1.0
    finally:
        p.proc.send_signal(signal.SIGTERM)
        assert p.proc.wait(10) == 0
    output = p.output()
    assert len(output) < 20_000, output[-2000:]
    assert all(json.loads(line) for line in output.splitlines())


async def test_failed_tls_handshakes_leave_only_json_lines(tmp_path: Path):
    pki = Pki(tmp_path)
    cert, key = pki.server
    p = Process(tmp_path, "--log-format", "json", "--tls-cert", str(cert), "--tls-key", str(key))
    wait_http(f"http://127.0.0.1:{p.http_port}/readyz")
    try:
        for _ in range(10):
            # Plain HTTP, and plaintext gRPC, to the TLS port: each handshake fails.
            _, writer = await asyncio.open_connection("127.0.0.1", p.grpc_port)
            writer.write(b"GET / HTTP/1.1\r\nHost: pd-scaler\r\n\r\n")
            await writer.drain()
            writer.close()
            async with grpc.aio.insecure_channel(f"127.0.0.1:{p.grpc_port}") as channel:
                request = health_pb2.HealthCheckRequest()
                with pytest.raises(grpc.aio.AioRpcError):
                    await health_pb2_grpc.HealthStub(channel).Check(request, timeout=0.5)
    finally:
        p.proc.send_signal(signal.SIGTERM)
        assert p.proc.wait(10) == 0
    lines = p.output().splitlines()
    assert [json.loads(line)["msg"] for line in lines] == ["serving", "shutting down", "stopped"]


def test_a_library_repeating_itself_is_cut_to_a_few_lines_and_a_count():
    now = [0.0]
    limit = LibraryRateLimit(burst=5, window=60.0, clock=lambda: now[0])

    def record(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, None)

    accept = "socket.accept() out of system resource\nsocket: <asyncio.TransportSocket fd=13>"
    assert sum(limit.filter(record("asyncio", accept)) for _ in range(1000)) == 5
    assert limit.filter(record("asyncio", "another message"))
    assert all(limit.filter(record("pd_scaler.sources", "source down")) for _ in range(1000))
    now[0] = 61.0
    after = record("asyncio", accept)
    assert limit.filter(after)
    assert after.fields == {"similar_lines_dropped": 995}  # type: ignore[attr-defined]
