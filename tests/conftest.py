from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar

import grpc
import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy
from nats.js.errors import NotFoundError

from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.server import Server, Settings
from tests.servers import NatsServer

T = TypeVar("T")

STREAM, CONSUMER = "dynamo_prefill_queue", "worker-group"


async def eventually(probe: Callable[[], Awaitable[T]], timeout: float = 5.0, interval: float = 0.02) -> T:
    """Poll `probe` until it returns without raising AssertionError, or fail at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await probe()
        except (AssertionError, grpc.aio.AioRpcError):
            if loop.time() > deadline:
                raise
        await asyncio.sleep(interval)


async def rpc_error(call: Awaitable[object]) -> grpc.aio.AioRpcError | None:
    """The error a call ended with, or None if it answered."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error
    return None


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[NatsClient]:
    client = await nats.connect(nats_server.url)
    yield client
    await client.close()


async def make_queue(js: JetStreamContext, stream: str = STREAM, consumer: str = CONSUMER) -> None:
    """Dynamo's prefill queue: a work-queue stream `<stream>.*` and the workers' durable pull consumer."""
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(stream)
    await js.add_stream(name=stream, subjects=[f"{stream}.*"], retention=RetentionPolicy.WORK_QUEUE, max_age=600)
    await js.add_consumer(stream, ConsumerConfig(durable_name=consumer, ack_policy=AckPolicy.EXPLICIT))


@pytest.fixture
async def js(nc: NatsClient) -> JetStreamContext:
    context = nc.jetstream()
    await make_queue(context)
    return context


def settings(**overrides: object) -> Settings:
    base = {"bind_address": "127.0.0.1", "grpc_port": 0, "http_port": 0, "refresh_interval": 0.1}
    return Settings(**{**base, **overrides})  # type: ignore[arg-type]


@pytest.fixture
async def make_scaler() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    """Start in-process pd-scalers on free ports; each one is stopped after the test."""
    started: list[Server] = []

    async def start(**overrides: object) -> Server:
        server = Server(settings(**overrides))
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
async def scaler(nats_server: NatsServer, make_scaler: Callable[..., Awaitable[Server]]) -> Server:
    return await make_scaler()


@pytest.fixture
async def stub(scaler: Server) -> AsyncIterator[pb_grpc.ExternalScalerStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{scaler.grpc_port}") as channel:
        yield pb_grpc.ExternalScalerStub(channel)


def prefill_ref(nats_server: NatsServer, name: str = "prefill", **metadata: str) -> pb.ScaledObjectRef:
    meta = {"role": "prefill", "natsServer": nats_server.url, "scalerAddress": "pd-scaler.keda:9090"}
    meta |= {"lagThreshold": "5"} if "policy" not in metadata else {}
    meta |= metadata
    return pb.ScaledObjectRef(name=name, namespace="dynamo", scalerMetadata=meta)


def metrics_request(ref: pb.ScaledObjectRef) -> pb.GetMetricsRequest:
    return pb.GetMetricsRequest(scaledObjectRef=ref, metricName="prefill-lag-dynamo-prefill-queue-worker-group")
