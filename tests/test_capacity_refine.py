"""`refineCapacity` end to end: a real nats-server queue worked at a known rate, the prefill role's ready pods from
the API-faithful Kubernetes server, KEDA's gRPC calls."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import grpc
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.server import Server
from tests import kubeapi
from tests.conftest import CONSUMER, STREAM, eventually
from tests.servers import NatsServer
from tests.test_capacity_nats import METRIC, remote_prefill, value
from tests.test_status import by_name, status_json

NAMESPACE = "dynamo"
Stub = pb_grpc.ExternalScalerStub


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[tuple[kubeapi.KubeAPI, kubeapi.DynamoPD, Path]]:
    """RBG dynamo-pd with two ready prefill pods."""
    with kubeapi.KubeAPI() as api:
        pd = kubeapi.install_dynamo_pd(api, NAMESPACE)
        yield api, pd, api.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
async def scaler(
    kube: tuple[kubeapi.KubeAPI, kubeapi.DynamoPD, Path], make_scaler: Callable[..., Awaitable[Server]]
) -> AsyncIterator[tuple[Server, Stub]]:
    server = await make_scaler(kubeconfig=kube[2], kube_refresh_interval=0.1)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        yield server, Stub(channel)


def refined_ref(nats_server: NatsServer, name: str) -> pb.ScaledObjectRef:
    meta = {"role": "prefill", "natsServer": nats_server.url, "refineCapacity": "true", "window": "5s"}
    return pb.ScaledObjectRef(name=name, namespace=NAMESPACE, scalerMetadata=meta)


async def target(stub: Stub, ref: pb.ScaledObjectRef) -> float:
    spec = (await stub.GetMetricSpec(ref)).metricSpecs[0]
    assert spec.metricName == METRIC
    return spec.targetSizeFloat


async def work(js: JetStreamContext, per_second: float, messages: int) -> None:
    """Dynamo's prefill workers: take one request at a time and ack it on receipt, `per_second` of them a second,
    paced against the clock so the rate does not drift."""
    worker = await js.pull_subscribe_bind(CONSUMER, STREAM)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for k in range(messages):
        await asyncio.sleep(max(0.0, start + k / per_second - loop.time()))  # the time prefilling takes
        for msg in await worker.fetch(1):
            await msg.ack()


async def test_the_target_becomes_the_rate_each_ready_replica_delivers_while_requests_wait(
    scaler: tuple[Server, Stub],
    kube: tuple[kubeapi.KubeAPI, kubeapi.DynamoPD, Path],
    nc: NatsClient,
    js: JetStreamContext,
    nats_server: NatsServer,
) -> None:
    server, stub = scaler
    ref = refined_ref(nats_server, kube[1].prefill)
    assert await target(stub, ref) == 9000.0  # nothing measured yet: the configured figure
    await value(stub, ref)
    reason = by_name(await status_json(server))[kube[1].prefill]["reason"]
    assert "; capacity configured 9000 tokens/s per replica, not measured: no request waited over the last" in reason
    # Published at once (without waiting for each ack), so that requests wait no longer before the worker starts
    # than the window the rate is measured over allows for.
    for i in range(300):
        await nc.publish(f"{STREAM}.queue", remote_prefill(i, 100))
    await nc.flush()
    # 40 requests of 100 tokens a second, taken off the queue by the role's 2 ready pods: 2,000 tokens/s each.
    worker = asyncio.create_task(work(js, 40.0, 300))
    try:

        async def measured() -> None:
            await value(stub, ref)  # KEDA's polling: each call decides, and the decision sets the target
            assert await target(stub, ref) != 9000.0

        await eventually(measured, timeout=15.0)
        got = await target(stub, ref)
        # Measured over 5 s of 0.1 s samples taken while the worker keeps its pace on a shared event loop: within a
        # few messages (10 tokens/s per pod each) of it.
        assert abs(got - 2000.0) <= 100.0
        reason = by_name(await status_json(server))[kube[1].prefill]["reason"]
        assert f" against {got:.0f} per replica " in reason
        assert f"; capacity measured {got:.0f} tokens/s per replica over 5" in reason
        assert "s busy with 2 ready replicas, " in reason
        assert reason.endswith("; configured 9000")
    finally:
        worker.cancel()


async def test_two_scalers_on_the_same_queue_and_pods_measure_the_same_capacity(
    kube: tuple[kubeapi.KubeAPI, kubeapi.DynamoPD, Path],
    nc: NatsClient,
    js: JetStreamContext,
    nats_server: NatsServer,
    make_scaler: Callable[..., Awaitable[Server]],
) -> None:
    # Two replicas of the scaler behind KEDA's round-robin: each its own sources, sampling the queue and listing the
    # pods on its own schedule.
    servers = [await make_scaler(kubeconfig=kube[2], kube_refresh_interval=0.1) for _ in range(2)]
    ref = refined_ref(nats_server, kube[1].prefill)
    async with contextlib.AsyncExitStack() as stack:
        stubs = [
            Stub(await stack.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{s.grpc_port}")))
            for s in servers
        ]
        for stub in stubs:
            assert await target(stub, ref) == 9000.0
            await value(stub, ref)
        # Published at once (without waiting for each ack), so that no replica's first 5 s of requests waiting
        # starts long before the worker.
        for i in range(600):
            await nc.publish(f"{STREAM}.queue", remote_prefill(i, 50))
        await nc.flush()
        # 80 requests of 50 tokens a second over 2 ready pods: 2,000 tokens/s each. Small requests, so that one
        # more or less in a replica's 5 s window moves its figure by 0.25 % only.
        worker = asyncio.create_task(work(js, 80.0, 600))
        try:

            async def measured() -> list[float]:
                targets = []
                for stub in stubs:
                    await value(stub, ref)  # KEDA's polling: each call decides, and the decision sets the target
                    targets.append(await target(stub, ref))
                assert 9000.0 not in targets
                return targets

            # Each measures the last 5 s of requests waiting up to its own newest sample: once both have, and again
            # as the queue empties.
            while_busy = await eventually(measured, timeout=15.0)
            await worker
            for a, b in (while_busy, await measured()):
                assert abs(a - b) <= 0.01 * max(a, b), (while_busy, a, b)
                assert abs(a - 2000.0) <= 100.0, (a, b)
                assert abs(b - 2000.0) <= 100.0, (a, b)
        finally:
            worker.cancel()


async def test_discovery_down_leaves_the_configured_target_and_the_reason_says_why(
    scaler: tuple[Server, Stub],
    kube: tuple[kubeapi.KubeAPI, kubeapi.DynamoPD, Path],
    js: JetStreamContext,
    nats_server: NatsServer,
) -> None:
    server, stub = scaler
    kube[0].forbid("pods", "list")
    ref = refined_ref(nats_server, kube[1].prefill)
    await js.publish(f"{STREAM}.queue", remote_prefill(0, 100))

    async def explained() -> None:
        assert await value(stub, ref) > 0.0  # the prefill answer itself does not depend on Kubernetes
        reason = by_name(await status_json(server))[kube[1].prefill]["reason"]
        assert (
            "; capacity configured 9000 tokens/s per replica, not measured: ready replicas unknown: kubernetes "
            f"scaledobject {NAMESPACE}/{kube[1].prefill}: no sample yet; last error: kubernetes: forbidden: "
            'pd-scaler\'s service account needs "list" on "pods" in namespace "dynamo"'
        ) in reason

    await eventually(explained)
    assert await target(stub, ref) == 9000.0
