"""Faults under load, loopback only and bounded in time: NATS killed and restarted, the Kubernetes API answering
500s and hanging. Throughout: no crash, no value that is not a measurement (UNAVAILABLE once stale), other
ScaledObjects keep their answers without waiting on the broken source, correct values within 5 s of recovery.
(Prometheus killed and restarted: tests/test_decode.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import nats
import pytest

from scaler.connections import NatsProfile
from scaler.errors import SourceUnavailable
from scaler.metrics import Metrics
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.server import Server
from scaler.sources.nats import NatsConnection
from tests import kubeapi
from tests.conftest import eventually, make_queue, metrics_request, prefill_ref
from tests.exporters import NAMESPACE
from tests.servers import NatsServer, PrometheusServer
from tests.test_decode import decode_ref, prometheus  # noqa: F401 - the session fixture
from tests.test_prefill import publish

# Far below any source's request timeout (NATS 2 s, Kubernetes 5 s): an answer that waited on a broken source
# could not be this fast.
NOT_WAITING = 0.5


@dataclass
class Load:
    """A closed loop of GetMetrics calls, as KEDA and the HPA make them, recording every outcome."""

    stub: pb_grpc.ExternalScalerStub
    refs: dict[str, pb.ScaledObjectRef]
    outcomes: dict[str, list[tuple[float, float | grpc.StatusCode, float]]] = field(default_factory=dict)
    running: bool = True

    async def _worker(self, key: str) -> None:
        ref = self.refs[key]
        while self.running:
            started = time.monotonic()
            try:
                answer = await self.stub.GetMetrics(metrics_request(ref), timeout=10)
                outcome: float | grpc.StatusCode = answer.metricValues[0].metricValueFloat
            except grpc.aio.AioRpcError as error:
                outcome = error.code()
            self.outcomes.setdefault(key, []).append((started, outcome, time.monotonic() - started))
            await asyncio.sleep(0.01)

    def start(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._worker(key)) for key in self.refs for _ in range(4)]


async def test_nats_killed_and_restarted_under_load(
    make_scaler: Callable[..., Awaitable[Server]], nats_server: NatsServer, tmp_path: Path
):
    broken = NatsServer(tmp_path)
    broken.start()
    try:
        for server, messages in ((broken, 3), (nats_server, 2)):
            nc = await nats.connect(server.url)
            await make_queue(nc.jetstream())
            await publish(nc.jetstream(), messages)
            await nc.close()
        scaler = await make_scaler()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{scaler.grpc_port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            refs = {
                "broken": prefill_ref(broken, name="on-broken-nats", maxStaleness="1s"),
                "healthy": prefill_ref(nats_server, name="on-healthy-nats", maxStaleness="1s"),
            }
            for ref, expected in ((refs["broken"], 3.0), (refs["healthy"], 2.0)):

                async def measured(ref: pb.ScaledObjectRef = ref, expected: float = expected) -> None:
                    answer = await stub.GetMetrics(metrics_request(ref))
                    assert answer.metricValues[0].metricValueFloat == expected

                await eventually(measured)

            load = Load(stub, refs)
            workers = load.start()
            await asyncio.sleep(0.5)
            broken.stop()
            killed = time.monotonic()

            async def stale() -> None:
                assert load.outcomes["broken"][-1][1] == grpc.StatusCode.UNAVAILABLE

            await eventually(stale, timeout=10)
            await asyncio.sleep(0.5)
            broken.start()
            restarted = time.monotonic()

            async def recovered() -> None:
                assert load.outcomes["broken"][-1][1] == 3.0

            await eventually(recovered, timeout=5)
            load.running = False
            await asyncio.gather(*workers)

        assert {o for _, o, _ in load.outcomes["broken"]} == {3.0, grpc.StatusCode.UNAVAILABLE}
        healthy = [(o, latency) for t, o, latency in load.outcomes["healthy"] if killed <= t <= restarted]
        assert healthy
        assert {o for o, _ in healthy} == {2.0}
        assert max(latency for _, latency in healthy) < NOT_WAITING
        assert scaler.grpc_port  # the in-process server is still the one we started
    finally:
        broken.stop()


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[tuple[kubeapi.KubeAPI, Path]]:
    with kubeapi.KubeAPI() as api:
        kubeapi.install_dynamo_pd(api, NAMESPACE)
        yield api, api.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.mark.parametrize("fault", ["500", "hang"])
async def test_kubernetes_api_failing_or_hanging(
    make_scaler: Callable[..., Awaitable[Server]],
    kube: tuple[kubeapi.KubeAPI, Path],
    prometheus: PrometheusServer,  # noqa: F811
    nats_server: NatsServer,
    js: object,
    fault: str,
):
    api, kubeconfig = kube
    scaler = await make_scaler(kubeconfig=kubeconfig, kube_refresh_interval=0.1)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{scaler.grpc_port}") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        refs = {"decode": decode_ref(prometheus, maxStaleness="1s"), "prefill": prefill_ref(nats_server)}

        async def decode_is(expected: float | grpc.StatusCode) -> None:
            outcomes = load.outcomes.get("decode")
            assert outcomes
            assert outcomes[-1][1] == expected

        load = Load(stub, refs)
        workers = load.start()
        await eventually(lambda: decode_is(1.2))
        started = time.monotonic()
        if fault == "500":
            api.fail("pods", 500)
        else:
            api.hang(30.0)
        await eventually(lambda: decode_is(grpc.StatusCode.UNAVAILABLE), timeout=10)
        ended = time.monotonic()
        api.clear_faults()
        api.release()
        await eventually(lambda: decode_is(1.2), timeout=5)
        load.running = False
        await asyncio.gather(*workers)

    assert {o for _, o, _ in load.outcomes["decode"]} == {1.2, grpc.StatusCode.UNAVAILABLE}
    prefill = [(o, latency) for t, o, latency in load.outcomes["prefill"] if started <= t <= ended]
    assert prefill
    assert {o for o, _ in prefill} == {0.0}
    assert max(latency for _, latency in prefill) < NOT_WAITING


async def test_a_connect_cancelled_under_way_leaves_no_client_behind(nats_server: NatsServer) -> None:
    # A source stopped (the scaler shutting down, say) while its first connect is under way: whatever nats-py
    # does with the cancel, the client it was connecting is closed and its reading, pinging and flushing tasks
    # end. The cancel lands at each of the connect's first steps in turn (nats-py went on connecting after some).
    metrics = Metrics()
    for steps in range(16):
        conn = NatsConnection("n", NatsProfile(servers=(nats_server.url,)), metrics)
        connecting = asyncio.create_task(conn.client())
        for _ in range(steps):
            await asyncio.sleep(0)  # one step of the connect
        connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError, SourceUnavailable):
            await connecting

    async def no_client_left() -> None:
        left = [t.get_coro().__qualname__ for t in asyncio.all_tasks() if not t.done()]
        assert [name for name in left if name.startswith("Client.")] == []

    await eventually(no_client_left, timeout=5.0)
