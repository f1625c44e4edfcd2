"""What a scaler's operator lets callers do: `--namespaces`, `--allowed-sources`, `--connections-only`, and
`--http-local-only` on the HTTP port. A refused call starts no source and names the flag that refused it."""

from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable

import grpc
import pytest
from nats.js import JetStreamContext

from scaler.admission import Admission, origin
from scaler.cli import parser
from scaler.connections import Connections
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.server import Server
from tests.conftest import metrics_request, prefill_ref, rpc_error
from tests.servers import NatsServer
from tests.test_prefill import publish


async def answer(scaler: Server, ref: pb.ScaledObjectRef) -> float | tuple[grpc.StatusCode, str]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{scaler.grpc_port}") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        error = await rpc_error(stub.GetMetrics(metrics_request(ref)))
        if error is not None:
            return error.code(), error.details()
        return (await stub.GetMetrics(metrics_request(ref))).metricValues[0].metricValueFloat


def decode_ref(address: str, namespace: str = "dynamo") -> pb.ScaledObjectRef:
    meta = {"role": "decode", "prometheusAddress": address, "podSelector": "app=decode"}
    return pb.ScaledObjectRef(name="decode", namespace=namespace, scalerMetadata=meta)


async def test_namespaces_outside_the_list_are_refused_before_anything_is_read(
    make_scaler: Callable[..., Awaitable[Server]], nats_server: NatsServer, js: JetStreamContext
):
    await publish(js, 2)
    scaler = await make_scaler(admission=Admission(namespaces=frozenset({"dynamo", "sglang"})))
    assert await answer(scaler, prefill_ref(nats_server)) == 2.0
    refused = pb.ScaledObjectRef(name="probe", namespace="kube-system", scalerMetadata={"role": "decode"})
    assert await answer(scaler, refused) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "namespace 'kube-system' is not served by this scaler (--namespaces dynamo,sglang)",
    )
    assert await answer(scaler, decode_ref("http://127.0.0.1:1", namespace="other")) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "namespace 'other' is not served by this scaler (--namespaces dynamo,sglang)",
    )
    assert [s.kind for s in scaler.engine.sources.pool] == ["nats"]


async def test_allowed_sources_refuse_every_other_address_a_trigger_names(
    make_scaler: Callable[..., Awaitable[Server]], nats_server: NatsServer, js: JetStreamContext
):
    await publish(js, 3)
    patterns = ("nats://127.0.0.1:*", "http://prometheus.monitoring.svc:9090")
    scaler = await make_scaler(admission=Admission(allowed_sources=patterns))
    assert await answer(scaler, prefill_ref(nats_server)) == 3.0
    listed = "nats://127.0.0.1:*,http://prometheus.monitoring.svc:9090"
    elsewhere = prefill_ref(nats_server, name="elsewhere", natsServer=f"{nats_server.url},nats://evil.example")
    assert await answer(scaler, elsewhere) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        f"key 'natsServer': nats://evil.example:4222 is not an allowed source (--allowed-sources {listed})",
    )
    monitoring = pb.ScaledObjectRef(
        name="jsz", namespace="dynamo", scalerMetadata={"role": "prefill", "natsServerMonitoringEndpoint": "10.0.0.1"}
    )
    assert await answer(scaler, monitoring) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        f"key 'natsServerMonitoringEndpoint': http://10.0.0.1:80 is not an allowed source (--allowed-sources {listed})",
    )
    assert await answer(scaler, decode_ref("https://prometheus.monitoring.svc:9090")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "key 'prometheusAddress': https://prometheus.monitoring.svc:9090 is not an allowed source"
        f" (--allowed-sources {listed})",
    )
    assert [s.kind for s in scaler.engine.sources.pool] == ["nats"]


async def test_connections_only_accepts_profiles_and_no_address(
    make_scaler: Callable[..., Awaitable[Server]], nats_server: NatsServer, js: JetStreamContext
):
    await publish(js, 1)
    connections = Connections.model_validate({"nats": {"dynamo": {"servers": [nats_server.url]}}})
    scaler = await make_scaler(connections=connections, admission=Admission(connections_only=True))
    by_profile = pb.ScaledObjectRef(
        name="prefill",
        namespace="dynamo",
        scalerMetadata={"role": "prefill", "natsConnection": "dynamo", "lagThreshold": "5"},
    )
    assert await answer(scaler, by_profile) == 1.0
    assert await answer(scaler, prefill_ref(nats_server, name="by-address")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "key 'natsServer': this scaler only reaches sources through named connection profiles (--connections-only);"
        " use natsConnection",
    )
    assert await answer(scaler, decode_ref("http://127.0.0.1:1")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "key 'prometheusAddress': this scaler only reaches sources through named connection profiles"
        " (--connections-only); use prometheusConnection",
    )
    # Prefill on engine metrics names a Prometheus too.
    engine_queue = pb.ScaledObjectRef(
        name="engine-queue",
        namespace="dynamo",
        scalerMetadata={"role": "prefill", "metric": "engine-queue", "threshold": "4",
                        "prometheusAddress": "http://127.0.0.1:1"},
    )  # fmt: skip
    assert await answer(scaler, engine_queue) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "key 'prometheusAddress': this scaler only reaches sources through named connection profiles"
        " (--connections-only); use prometheusConnection",
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("nats://NATS.Dynamo.svc:4222", "nats://nats.dynamo.svc:4222"),
        ("tls://nats", "tls://nats:4222"),
        ("https://prometheus/prefix", "https://prometheus:443"),
        ("http://[fd00::1]:9090", "http://[fd00::1]:9090"),
    ],
)
def test_patterns_match_the_origin_with_the_port_always_written(url: str, expected: str) -> None:
    assert origin(url) == expected


def test_the_flags_and_their_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    args = parser().parse_args(["serve", "--namespaces", "dynamo, sglang", "--connections-only"])
    assert (args.namespaces, args.connections_only, args.allowed_sources, args.http_local_only) == (
        ("dynamo", "sglang"),
        True,
        (),
        False,
    )
    monkeypatch.setenv("PD_SCALER_ALLOWED_SOURCES", "nats://*.svc.cluster.local:4222,http://prometheus.monitoring:*")
    monkeypatch.setenv("PD_SCALER_HTTP_LOCAL_ONLY", "true")
    monkeypatch.setenv("PD_SCALER_CONNECTIONS_ONLY", "false")
    args = parser().parse_args(["serve"])
    assert args.allowed_sources == ("nats://*.svc.cluster.local:4222", "http://prometheus.monitoring:*")
    assert (args.http_local_only, args.connections_only) == (True, False)


def _outward_address() -> str:
    """This machine's address on its network (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.255.255.255", 9))
        return str(s.getsockname()[0])


def _get(host: str, port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


async def test_http_local_only_answers_pages_on_loopback_and_probes_everywhere(
    make_scaler: Callable[..., Awaitable[Server]],
):
    scaler = await make_scaler(bind_address="0.0.0.0", http_local_only=True)
    outward = _outward_address()
    assert outward != "127.0.0.1"
    for path in ("/metrics", "/status"):
        assert await asyncio.to_thread(_get, "127.0.0.1", scaler.http_port, path) == 200
        assert await asyncio.to_thread(_get, outward, scaler.http_port, path) == 403
    for path in ("/healthz", "/readyz"):
        assert await asyncio.to_thread(_get, outward, scaler.http_port, path) == 200
