"""The decode role end to end: a real Prometheus scraping dcgm-exporter and engine metrics, the role's pods found
through the RBG scaling adapter on an API-faithful Kubernetes API, and KEDA's gRPC calls."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.server import Server
from tests import kubeapi
from tests.conftest import eventually, rpc_error
from tests.exporters import NAMESPACE, cluster
from tests.servers import PrometheusServer
from tests.test_prefill import scrape

DECODER = "dynamo-pd-decoder"
ADAPTERS = "rolebasedgroupscalingadapters.workloads.x-k8s.io"


def start_prometheus(workdir: Path) -> tuple[PrometheusServer, Callable[[], None]]:
    exporters, jobs = cluster()
    server = PrometheusServer(workdir, jobs)
    server.start()
    server.wait_for_series("DCGM_FI_DEV_FB_USED", 9)
    server.wait_for_series('{job="engines", __name__!~"up|scrape_.+"}', 9)  # every engine target scraped

    def close() -> None:
        server.stop()
        for exporter in exporters:
            exporter.close()

    return server, close


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    server, close = start_prometheus(tmp_path_factory.mktemp("prometheus"))
    yield server
    close()


@pytest.fixture
def kube(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[kubeapi.KubeAPI, Path]]:
    """RBG dynamo-pd (prefill x2, decoder x2); its API version and label style: v1alpha2 unless parametrized."""
    with kubeapi.KubeAPI() as api:
        kubeapi.install_dynamo_pd(api, NAMESPACE, version=getattr(request, "param", "v1alpha2"))
        yield api, api.write_kubeconfig(tmp_path / "kubeconfig")


@dataclass
class Scaler:
    server: Server
    stub: pb_grpc.ExternalScalerStub


@pytest.fixture
async def scaler(
    kube: tuple[kubeapi.KubeAPI, Path], make_scaler: Callable[..., Awaitable[Server]]
) -> AsyncIterator[Scaler]:
    server = await make_scaler(kubeconfig=kube[1], kube_refresh_interval=0.1)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        yield Scaler(server, pb_grpc.ExternalScalerStub(channel))


def decode_ref(prometheus: PrometheusServer, name: str = DECODER, **metadata: str) -> pb.ScaledObjectRef:
    meta = {"scalerAddress": "pd-scaler.keda:9090", "role": "decode", "prometheusAddress": prometheus.url}
    meta |= {"threshold": "0.8"} if "policy" not in metadata else {}
    meta |= metadata
    return pb.ScaledObjectRef(name=name, namespace=NAMESPACE, scalerMetadata=meta)


async def value(stub: pb_grpc.ExternalScalerStub, ref: pb.ScaledObjectRef) -> float:
    response = await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName="decode"))
    assert len(response.metricValues) == 1
    return response.metricValues[0].metricValueFloat


async def error_of(stub: pb_grpc.ExternalScalerStub, ref: pb.ScaledObjectRef) -> grpc.aio.AioRpcError:
    error = await rpc_error(stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref)))
    assert error is not None, "answered with a value"
    return error


@pytest.mark.parametrize("kube", ["v1alpha2", "v1alpha1"], indirect=True)
@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        # Two decode pods at 0.5 and 0.7 of GPU memory (mean over each pod's two GPUs); prefill pods at 0.9 on the
        # same nodes do not count, nor does an unallocated GPU.
        ({}, 1.2),
        ({"metric": "gpu-util"}, 0.875),  # (50 + 75)/2 % and (25 + 25)/2 %
        ({"metric": "kv-cache"}, 0.75),  # vLLM: kv_cache_usage_perc 0.25, the older gpu_cache_usage_perc 0.5
        ({"metric": "kv-cache", "engine": "sglang"}, 0.625),  # max over TP ranks: 0.375 and 0.25
        ({"metric": "kv-cache", "engine": "dynamo"}, 0.5),
    ],
)
async def test_the_value_is_the_sum_over_the_role_s_pods(
    scaler: Scaler, prometheus: PrometheusServer, metadata: dict[str, str], expected: float
):
    ref = decode_ref(prometheus, **metadata)
    assert await value(scaler.stub, ref) == expected
    spec = (await scaler.stub.GetMetricSpec(ref)).metricSpecs
    assert [(s.metricName, s.targetSizeFloat, s.targetSize) for s in spec] == [
        (f"decode-{metadata.get('metric', 'gpu-memory')}", 0.8, 1)
    ]
    assert (await scaler.stub.IsActive(ref)).result is True
    at_threshold = decode_ref(prometheus, activationThreshold=str(expected), **metadata)
    assert (await scaler.stub.IsActive(at_threshold)).result is False


async def test_pods_without_series_are_left_out_and_counted(
    scaler: Scaler, prometheus: PrometheusServer, kube: tuple[kubeapi.KubeAPI, Path]
):
    api, _ = kube
    labels = kubeapi.role_labels("dynamo-pd", "decoder")
    api.put(kubeapi.pod("dynamo-pd-decoder-2", NAMESPACE, labels, node="gpu-node-2"))  # just scheduled: no series
    ref = decode_ref(prometheus)
    key = (
        "pd_scaler_scaledobject_pods_without_series",
        (("namespace", NAMESPACE), ("role", "decode"), ("scaledobject", DECODER)),
    )

    async def counted() -> None:
        assert await value(scaler.stub, ref) == 1.2
        assert (await scrape(scaler.server))[key] == 1.0

    await eventually(counted)


async def test_no_series_for_any_pod_is_unavailable_never_zero(
    scaler: Scaler, prometheus: PrometheusServer, kube: tuple[kubeapi.KubeAPI, Path]
):
    api, _ = kube
    api.put(kubeapi.pod("batch-0", NAMESPACE, {"app": "batch"}))
    error = await error_of(scaler.stub, decode_ref(prometheus, name="batch", podSelector="app=batch"))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details() == (
        f"no gpu-memory series for any of the role's 1 pods (batch-0) in prometheus {prometheus.url} "
        'query={__name__=~"DCGM_FI_DEV_FB_USED|DCGM_FI_DEV_FB_FREE|DCGM_FI_DEV_FB_RESERVED"}; '
        "check that the engine or exporter is scraped and that its series carry the pods' names"
    )


async def test_pod_selector_overrides_discovery(scaler: Scaler, prometheus: PrometheusServer):
    selector = kubeapi.role_selector("dynamo-pd", "decoder")
    # No ScaledObject of these names exists: with a podSelector none is looked up, and one pod list serves both.
    for name in ("decode-by-selector", "another-by-selector"):
        assert await value(scaler.stub, decode_ref(prometheus, name=name, podSelector=selector)) == 1.2
    assert (await scrape(scaler.server))[("pd_scaler_sources", (("kind", "kubernetes"),))] == 1.0


async def test_adapter_not_bound_is_unavailable(
    scaler: Scaler, prometheus: PrometheusServer, kube: tuple[kubeapi.KubeAPI, Path]
):
    kube[0].patch_status(ADAPTERS, NAMESPACE, DECODER, phase="NotBound")
    error = await error_of(scaler.stub, decode_ref(prometheus))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details() == (
        f"RoleBasedGroupScalingAdapter {NAMESPACE}/{DECODER} is NotBound, not Bound: the RBG controller binds only "
        "the adapters it creates itself, for roles with scalingAdapter.enable: true "
        "(RoleBasedGroup 'dynamo-pd', role 'decoder')"
    )


async def test_missing_scaledobject_or_adapter_is_not_found(
    scaler: Scaler, prometheus: PrometheusServer, kube: tuple[kubeapi.KubeAPI, Path]
):
    error = await error_of(scaler.stub, decode_ref(prometheus, name="ghost"))
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, f"ScaledObject {NAMESPACE}/ghost not found")

    kube[0].delete(ADAPTERS, NAMESPACE, DECODER)
    error = await error_of(scaler.stub, decode_ref(prometheus))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.NOT_FOUND,
        f"RoleBasedGroupScalingAdapter {NAMESPACE}/{DECODER} not found",
    )


async def test_forbidden_is_unavailable_naming_the_missing_rbac(
    scaler: Scaler, prometheus: PrometheusServer, kube: tuple[kubeapi.KubeAPI, Path]
):
    kube[0].forbid("pods", "list")
    error = await error_of(scaler.stub, decode_ref(prometheus))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert (error.details() or "").endswith(
        'kubernetes: forbidden: pd-scaler\'s service account needs "list" on "pods" in namespace "llm" '
        '(pods is forbidden: User "system:serviceaccount:keda:pd-scaler" cannot list resource "pods" in API group "" '
        'in the namespace "llm")'
    )


async def test_prometheus_down_is_unavailable_once_stale_and_correct_again_after_restart(
    scaler: Scaler, tmp_path: Path
):
    prometheus, close = start_prometheus(tmp_path)
    try:
        ref = decode_ref(prometheus, maxStaleness="1s")
        assert await value(scaler.stub, ref) == 1.2
        prometheus.stop()

        async def unavailable() -> grpc.aio.AioRpcError:
            error = await error_of(scaler.stub, ref)
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            return error

        error = await eventually(unavailable, timeout=10)
        assert (error.details() or "").startswith(
            f'prometheus {prometheus.url} query={{__name__=~"DCGM_FI_DEV_FB_USED|DCGM_FI_DEV_FB_FREE|'
            'DCGM_FI_DEV_FB_RESERVED"}: newest sample is '
        )

        prometheus.start()

        async def back() -> None:
            assert await value(scaler.stub, ref) == 1.2

        await eventually(back, timeout=10)
    finally:
        close()
