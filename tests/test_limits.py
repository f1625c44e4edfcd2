"""Hostile requests against a real server on loopback: every one is answered quickly, briefly and with our code.

Each test reproduces an attack (bounded in size and time) and asserts the bound: no event-loop stall over
100 ms, INVALID_ARGUMENT or RESOURCE_EXHAUSTED with a message under 1 kB that names the key or the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest

from scaler.errors import MAX_MESSAGE_BYTES, InvalidTrigger
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.server import MAX_REQUEST_BYTES, Server
from scaler.service import _int64, _Refs
from scaler.triggers import MAX_KEYS
from tests.servers import NatsServer
from tests.test_triggers import PREFILL_KEYS

GET_METRICS = "/externalscaler.ExternalScaler/GetMetrics"


class LoopLag:
    """A loop-lag probe: the longest the event loop was kept from running a 5 ms timer."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._running = asyncio.Event()

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        self._running.set()
        while True:
            started = loop.time()
            await asyncio.sleep(0.005)
            self.worst = max(self.worst, loop.time() - started - 0.005)

    @contextlib.asynccontextmanager
    async def measuring(self) -> AsyncIterator[LoopLag]:
        task = asyncio.create_task(self._probe())
        await self._running.wait()
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def request(nats_server: NatsServer, **metadata: str) -> bytes:
    """A GetMetrics request, serialised up front: the client's own work must not count as the server's."""
    meta = {"role": "prefill", "natsServer": nats_server.url, **metadata}
    ref = pb.ScaledObjectRef(name="prefill", namespace="dynamo", scalerMetadata=meta)
    return pb.GetMetricsRequest(scaledObjectRef=ref, metricName="m").SerializeToString()


def call_in_thread(server: Server, body: bytes) -> Awaitable[grpc.RpcError | None]:
    """Send pre-serialised bytes from another thread (a client outside the server's loop); the error, if any."""

    def call() -> grpc.RpcError | None:
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            method = channel.unary_unary(GET_METRICS)  # no serializer: the bytes go as they are
            try:
                method(body, timeout=30)
            except grpc.RpcError as error:
                return error
        return None

    return asyncio.to_thread(call)


@pytest.fixture
async def server(nats_server: NatsServer, make_scaler: Callable[..., Awaitable[Server]]) -> Server:
    return await make_scaler()


async def refused(server: Server, body: bytes) -> tuple[grpc.StatusCode, str, float]:
    async with LoopLag().measuring() as lag:
        error = await call_in_thread(server, body)
    assert error is not None
    details = error.details() or ""  # type: ignore[attr-defined]
    assert len(details.encode()) < 1024
    return error.code(), details, lag.worst  # type: ignore[attr-defined]


async def test_280000_unknown_keys_are_refused_by_size_without_stalling_the_loop(
    server: Server, nats_server: NatsServer
):
    body = request(nats_server, **{f"k{i}": "v" for i in range(280_000)})
    assert len(body) > 3_000_000
    code, details, worst = await refused(server, body)
    assert (code, details) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"SERVER: Received message larger than max ({len(body)} vs. {MAX_REQUEST_BYTES})",
    )
    assert worst < 0.1


async def test_as_many_keys_as_fit_the_size_limit_are_refused_by_count_without_stalling_the_loop(
    server: Server, nats_server: NatsServer
):
    n = 20_000
    body = request(nats_server, **{f"k{i}": "v" for i in range(n)})
    assert len(body) < MAX_REQUEST_BYTES
    code, details, worst = await refused(server, body)
    assert (code, details) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        f"the trigger metadata has {n + 2} keys; at most {MAX_KEYS} are accepted",
    )
    assert worst < 0.1


async def test_unknown_keys_get_a_few_suggestions_in_one_short_message(server: Server, nats_server: NatsServer):
    body = request(nats_server, lagTreshold="3", **{f"unknown{i}": "v" * 2000 for i in range(50)})
    code, details, _ = await refused(server, body)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == (
        "unknown keys 'lagTreshold' (did you mean 'lagThreshold'?), 'unknown0', 'unknown1' and 48 more; "
        f"prefill triggers accept: {PREFILL_KEYS}"
    )


@pytest.mark.parametrize("size", [10_000, 100_000])
async def test_a_long_value_is_our_invalid_argument_with_a_short_echo(
    server: Server, nats_server: NatsServer, size: int
):
    code, details, _ = await refused(server, request(nats_server, stream="s" * size))
    assert (code, details) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        f"key 'stream': invalid value {'s' * 64!r}… ({size} characters): longer than the 2048 characters accepted",
    )


async def test_a_value_over_the_request_size_is_refused_by_grpc_with_a_short_message(
    server: Server, nats_server: NatsServer
):
    body = request(nats_server, stream="s" * 1_000_000)
    assert await refused(server, body) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"SERVER: Received message larger than max ({len(body)} vs. {MAX_REQUEST_BYTES})",
        pytest.approx(0, abs=0.1),
    )


async def test_every_invalid_value_is_echoed_short_and_the_message_stays_under_1kb(
    server: Server, nats_server: NatsServer
):
    values = {k: "é" * 2000 for k in ("lagThreshold", "activationLagThreshold", "maxStaleness", "stream", "consumer")}
    code, details, _ = await refused(server, request(nats_server, **values))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    echoed = f"invalid value {'é' * 64!r}… (2000 characters)"
    assert details.startswith(
        f"key 'maxStaleness': {echoed}: not a duration; use a number of seconds or units ms, s, m, h (e.g. 30s, "
        f"1m30s); key 'stream': {echoed}: String should have at most 256 characters; key 'consumer': {echoed}"
    )
    assert details.endswith("… (truncated)")
    assert len(details.encode()) <= MAX_MESSAGE_BYTES


async def test_a_target_beyond_the_sane_range_names_the_key(server: Server, nats_server: NatsServer):
    code, details, _ = await refused(server, request(nats_server, lagThreshold="1e19"))
    assert (code, details) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "key 'lagThreshold': invalid value '1e19': Input should be less than or equal to 1000000000",
    )


async def test_an_oversized_name_is_refused_before_anything_else(server: Server, nats_server: NatsServer):
    ref = pb.ScaledObjectRef(name="n" * 254, namespace="dynamo", scalerMetadata={"role": "prefill"})
    body = pb.GetMetricsRequest(scaledObjectRef=ref).SerializeToString()
    code, details, _ = await refused(server, body)
    assert (code, details) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "the ScaledObject name is 254 characters long; at most 253",
    )


def test_int64_fields_hold_any_value_in_range() -> None:
    assert [_int64(v) for v in (2.5, -2.5, 1e19, -1e19, float("inf"), float("-inf"))] == [
        3,
        -2,
        2**63 - 1,
        -(2**63),
        2**63 - 1,
        -(2**63),
    ]


@pytest.mark.parametrize("method", ["StreamIsActive", "StreamMetricSpec"])
async def test_streams_check_the_request_too(server: Server, method: str):
    ref = pb.ScaledObjectRef(name="prefill", namespace="dynamo", scalerMetadata={f"k{i}": "v" for i in range(65)})
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stream = getattr(pb_grpc.ExternalScalerStub(channel), method)(ref)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stream.read()
    assert (caught.value.code(), caught.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "the trigger metadata has 65 keys; at most 64 are accepted",
    )


def test_requests_already_seen_are_remembered_by_their_bytes_within_bounds() -> None:
    refs = _Refs(limit=2, max_request_bytes=200)

    def ref(name: str, **metadata: str) -> pb.ScaledObjectRef:
        return pb.ScaledObjectRef(name=name, namespace="dynamo", scalerMetadata={"role": "prefill", **metadata})

    first = refs(ref("a"))
    assert refs(ref("a")) is first
    assert len(refs) == 1
    assert refs(ref("a", policy="lag")) is not first  # other metadata: another trigger
    for _ in range(2):  # refused every time, never kept
        with pytest.raises(InvalidTrigger, match="254 characters long"):
            refs(ref("n" * 254))
    assert len(refs) == 2
    big = refs(ref("b", seriesSelector="x" * 300))  # answered, but too big to keep
    assert big.metadata["seriesSelector"] == "x" * 300
    assert len(refs) == 2
    refs(ref("c"))  # past the limit it starts over
    assert len(refs) == 1
    assert refs(ref("a")) is not first
