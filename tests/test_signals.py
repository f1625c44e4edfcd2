"""Prefill and decode signals from the engines of current PD stacks (vLLM V1, SGLang PD with TP=2, Dynamo's
frontend), read through a real Prometheus scraping exporters with the engines' exact names and labels, and
straight from the pods' /metrics (`scrape: pods`), through KEDA's gRPC calls."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
from nats.js import JetStreamContext

from scaler import signals
from scaler.engine import Ref
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.server import Server
from scaler.simulate.cluster import DECODE, PREFILL, Cluster
from scaler.simulate.policies import Settings, parse_policy, pd_scaler_metadata
from scaler.simulate.trace import Request
from tests import kubeapi
from tests.conftest import STREAM, eventually, prefill_ref
from tests.exporters import ENGINE_PODS, NAMESPACE, EngineCluster, engine_cluster
from tests.servers import NatsServer, PrometheusServer, wait_http
from tests.test_prefill import scrape
from tests.test_server import Process
from tests.test_simulate_policies import PROFILE, decide, engine_over

VLLM_PREFILL, VLLM_DECODE = "app=vllm,role=prefill", "app=vllm,role=decode"
SGLANG_PREFILL, SGLANG_DECODE = "app=sglang,role=prefill", "app=sglang,role=decode"
FRONTENDS = "role=frontend"
LLM_DYNAMO = 'dynamo_namespace="llm-dynamo"'

# (metadata, expected total, metric name): the sums of tests/exporters.py's ENGINE_PODS.
CASES = [
    pytest.param(
        {"role": "prefill", "metric": "engine-queue", "threshold": "4", "podSelector": VLLM_PREFILL},
        9.0,
        "prefill-engine-queue",
        id="vllm-prefill-engine-queue",
    ),
    pytest.param(
        {
            "role": "prefill",
            "metric": "engine-queue",
            "engine": "sglang",
            "threshold": "4",
            "podSelector": SGLANG_PREFILL,
        },
        8.0,
        "prefill-engine-queue",
        id="sglang-prefill-engine-queue",
    ),
    pytest.param(
        {"role": "decode", "metric": "seats", "maxNumSeqs": "256", "podSelector": VLLM_DECODE},
        0.6640625,
        "decode-seats",
        id="vllm-decode-seats",
    ),
    pytest.param(
        {"role": "decode", "metric": "seats", "engine": "sglang", "maxNumSeqs": "64", "podSelector": SGLANG_DECODE},
        0.875,
        "decode-seats",
        id="sglang-decode-seats",
    ),
    pytest.param(
        {"role": "decode", "metric": "kv-cache", "podSelector": VLLM_DECODE},
        0.75,
        "decode-kv-cache",
        id="vllm-decode-kv-cache",
    ),
    pytest.param(
        {
            "role": "prefill",
            "metric": "prefill-tokens",
            "threshold": "4096",
            "seriesSelector": LLM_DYNAMO,
            "podSelector": FRONTENDS,
        },
        8096.0,
        "prefill-prefill-tokens",
        id="dynamo-prefill-tokens-one-deployment",
    ),
    pytest.param(
        {"role": "prefill", "metric": "prefill-tokens", "threshold": "4096", "podSelector": FRONTENDS},
        108096.0,
        "prefill-prefill-tokens",
        id="dynamo-prefill-tokens-every-deployment",
    ),
]


class Garbage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><body>Service Unavailable</body></html>\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def engines() -> Iterator[EngineCluster]:
    cluster = engine_cluster()
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def prometheus(engines: EngineCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus-engines"), engines.jobs)
    server.start()
    server.wait_for_series('up{job="engines-pd"} == 1', len(ENGINE_PODS))  # every engine scraped
    yield server
    server.stop()


@pytest.fixture
def kube(engines: EngineCluster, tmp_path: Path) -> Iterator[tuple[kubeapi.KubeAPI, Path]]:
    with kubeapi.KubeAPI() as api:
        for pod in ENGINE_PODS:
            api.put(kubeapi.pod(pod, NAMESPACE, engines.labels(pod), ip=engines.ips[pod]))
        yield api, api.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
async def scaler(
    kube: tuple[kubeapi.KubeAPI, Path], make_scaler: Callable[..., Awaitable[Server]]
) -> AsyncIterator[tuple[Server, pb_grpc.ExternalScalerStub]]:
    server = await make_scaler(kubeconfig=kube[1], kube_refresh_interval=0.1)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        yield server, pb_grpc.ExternalScalerStub(channel)


def ref(metadata: dict[str, str], name: str = "engines") -> pb.ScaledObjectRef:
    meta = {"scalerAddress": "pd-scaler.keda:9090", **metadata}
    return pb.ScaledObjectRef(name=name, namespace=NAMESPACE, scalerMetadata=meta)


def through(
    source: str, metadata: dict[str, str], prometheus: PrometheusServer, engines: EngineCluster
) -> dict[str, str]:
    if source == "prometheus":
        return {**metadata, "prometheusAddress": prometheus.url}
    return {**metadata, "scrape": "pods", "metricsPort": str(engines.port)}


async def value(stub: pb_grpc.ExternalScalerStub, so: pb.ScaledObjectRef) -> float:
    response = await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=so))
    [metric] = response.metricValues
    return metric.metricValueFloat


async def error_of(stub: pb_grpc.ExternalScalerStub, so: pb.ScaledObjectRef) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=so))
    return caught.value


@pytest.mark.parametrize("source", ["prometheus", "pods"])
@pytest.mark.parametrize(("metadata", "expected", "metric_name"), CASES)
async def test_the_value_is_the_exact_total_over_the_role(
    scaler: tuple[Server, pb_grpc.ExternalScalerStub],
    prometheus: PrometheusServer,
    engines: EngineCluster,
    source: str,
    metadata: dict[str, str],
    expected: float,
    metric_name: str,
):
    _, stub = scaler
    so = ref(through(source, metadata, prometheus, engines))
    assert await value(stub, so) == expected
    [spec] = (await stub.GetMetricSpec(so)).metricSpecs
    target = float(metadata.get("threshold", "0.8"))
    assert (spec.metricName, spec.targetSizeFloat) == (metric_name, target)
    assert (await stub.IsActive(so)).result is True
    at_total = ref(through(source, {**metadata, "activationThreshold": str(expected)}, prometheus, engines))
    assert (await stub.IsActive(at_total)).result is False


async def test_no_series_is_unavailable_naming_the_query_never_zero(
    scaler: tuple[Server, pb_grpc.ExternalScalerStub], prometheus: PrometheusServer
):
    _, stub = scaler
    # SGLang's queue asked of vLLM's pods: they have none of its series.
    wrong = {"role": "prefill", "metric": "engine-queue", "engine": "sglang", "threshold": "4",
             "podSelector": VLLM_PREFILL, "prometheusAddress": prometheus.url}  # fmt: skip
    error = await error_of(stub, ref(wrong))
    query = (
        '{__name__=~"sglang:num_queue_reqs|sglang_num_queue_reqs|sglang:num_prefill_prealloc_queue_reqs|'
        "sglang_num_prefill_prealloc_queue_reqs|sglang:num_prefill_inflight_queue_reqs|"
        'sglang_num_prefill_inflight_queue_reqs", engine_type!="decode"}'
    )
    assert (error.code(), error.details()) == (
        grpc.StatusCode.UNAVAILABLE,
        f"no engine-queue series for any of the role's 2 pods (vllm-prefill-0, vllm-prefill-1) in prometheus "
        f"{prometheus.url} query={query}; check that the engine or exporter is scraped and that its series carry "
        "the pods' names",
    )
    # The frontend's counts of a deployment that is not there.
    nobody = {"role": "prefill", "metric": "prefill-tokens", "threshold": "4096",
              "seriesSelector": 'dynamo_namespace="nobody"', "prometheusAddress": prometheus.url}  # fmt: skip
    error = await error_of(stub, ref(nobody, name="nobody"))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.UNAVAILABLE,
        f"no prefill-tokens series in prometheus {prometheus.url} query="
        '{__name__=~"dynamo_frontend_worker_active_prefill_tokens|dynamo_frontend_router_queue_pending_isl_tokens", '
        'worker_type="prefill", dynamo_namespace="nobody"}; check the engine setting and seriesSelector',
    )


@pytest.fixture
def garbage(engines: EngineCluster) -> Iterator[str]:
    """A pod IP whose metrics port answers 200 with HTML."""
    ip = "127.0.0.201"
    server = ThreadingHTTPServer((ip, engines.port), Garbage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ip
    server.shutdown()
    server.server_close()


async def test_a_pod_that_does_not_answer_or_answers_garbage_is_named_and_left_out(
    scaler: tuple[Server, pb_grpc.ExternalScalerStub],
    kube: tuple[kubeapi.KubeAPI, Path],
    engines: EngineCluster,
    garbage: str,
):
    server, stub = scaler
    labels = engines.labels("vllm-prefill-0")
    kube[0].put(
        kubeapi.pod("vllm-prefill-2", NAMESPACE, labels, ip="127.0.0.200"),  # nothing listens there
        kubeapi.pod("vllm-prefill-3", NAMESPACE, labels, ip=garbage),
    )
    metadata = {"role": "prefill", "metric": "engine-queue", "threshold": "4", "podSelector": VLLM_PREFILL,
                "scrape": "pods", "metricsPort": str(engines.port)}  # fmt: skip

    async def both_left_out() -> str:
        assert await value(stub, ref(metadata)) == 9.0
        decision = await server.engine.decide(Ref(NAMESPACE, "engines", {"scalerAddress": "x", **metadata}))
        assert decision.unmeasured == 2
        return decision.reason

    reason = await eventually(both_left_out)
    assert reason.startswith(
        "engine-queue sum 9.000 over 2 pods > activation 0; left out: vllm-prefill-2 (ClientConnectorError: "
    )
    assert reason.endswith(
        "vllm-prefill-3 (not Prometheus text at line 1: '<html><body>Service Unavailable</body></html>')"
    )
    key = ("pd_scaler_scaledobject_pods_without_series",
           (("namespace", NAMESPACE), ("role", "prefill"), ("scaledobject", "engines")))  # fmt: skip
    assert (await scrape(server))[key] == 2.0


async def test_every_pod_failing_is_unavailable_naming_each_reason(
    scaler: tuple[Server, pb_grpc.ExternalScalerStub], kube: tuple[kubeapi.KubeAPI, Path], engines: EngineCluster
):
    _, stub = scaler
    kube[0].put(kubeapi.pod("lonely-0", NAMESPACE, {"app": "lonely"}, ip="127.0.0.202"))
    metadata = {"role": "decode", "metric": "seats", "maxNumSeqs": "8", "podSelector": "app=lonely",
                "scrape": "pods", "metricsPort": str(engines.port)}  # fmt: skip

    async def unavailable() -> grpc.aio.AioRpcError:
        error = await error_of(stub, ref(metadata, name="lonely"))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "ClientConnectorError" in (error.details() or "")
        return error

    error = await eventually(unavailable)
    assert (error.details() or "").startswith(
        "no seats series for any of the role's 1 pods (lonely-0: ClientConnectorError: "
    )
    assert f"in scrape :{engines.port}/metrics of kubernetes pods {NAMESPACE} podSelector='app=lonely';" in (
        error.details() or ""
    )


async def test_scaled_objects_on_one_pod_set_share_one_scraper(
    scaler: tuple[Server, pb_grpc.ExternalScalerStub], engines: EngineCluster
):
    server, stub = scaler
    port = str(engines.port)
    seats = {"role": "decode", "metric": "seats", "maxNumSeqs": "256", "podSelector": VLLM_DECODE,
             "scrape": "pods", "metricsPort": port}  # fmt: skip
    kv = {"role": "decode", "metric": "kv-cache", "podSelector": VLLM_DECODE, "scrape": "pods", "metricsPort": port}
    for i in range(3):
        assert await value(stub, ref(seats, name=f"seats-{i}")) == 0.6640625
    assert await value(stub, ref(kv, name="kv")) == 0.75
    assert (await scrape(server))[("pd_scaler_sources", (("kind", "pods"),))] == 1.0


async def test_the_simulator_drives_the_engine_signals_from_its_model() -> None:
    """`simulate` reads the new prefill and decode metrics through the real engine: the model's waiting and
    running counts, exported as vLLM and Dynamo's frontend name them."""
    cluster = Cluster([Request(0.0, 1000 + i, 50) for i in range(40)], PROFILE, startup=60.0)
    cluster.preload(2, 2)
    cluster.advance(1.0)
    cluster.decode_tick(1.0, 0.05)
    engine, sources, _ = await engine_over(cluster)
    settings = Settings(prefill_metadata={"metric": "engine-queue", "threshold": "4"})
    metadata = pd_scaler_metadata(parse_policy("pd-scaler:seats@0.8"), settings, max_num_seqs=256)
    assert metadata[DECODE]["maxNumSeqs"] == "256"
    assert "natsServer" not in metadata[PREFILL]

    queue = await decide(engine, metadata[PREFILL])
    assert (queue.value, queue.target, queue.unmeasured) == (float(len(cluster.prefill_queue)), 4.0, 0)
    assert queue.value > 0

    tokens = await decide(
        engine,
        {"role": "prefill", "metric": "prefill-tokens", "threshold": "8192", "prometheusAddress": "http://sim:9090"},
    )
    busy = [p.busy.prompt for p in cluster.prefill if p.busy is not None]
    assert tokens.value == sum(r.prompt for r in cluster.prefill_queue) + sum(busy)
    assert busy

    seats = await decide(engine, metadata[DECODE])
    ready = [d for d in cluster.decode if d.ready_at <= cluster.now]
    sequences = sum(d.running + d.n_waiting + d.remote for d in ready)  # running (incl. recomputing) + waiting
    assert seats.value == pytest.approx(sequences / 256)
    assert sequences > 0  # requests routed to decode wait there for their prefill (vLLM counts them waiting)
    assert (seats.target, seats.unmeasured) == (0.8, 0)
    await sources.close()


async def test_scraping_finds_the_pods_through_the_rbg_adapter(
    scaler: tuple[Server, pb_grpc.ExternalScalerStub], kube: tuple[kubeapi.KubeAPI, Path], engines: EngineCluster
):
    """No podSelector: ScaledObject → RoleBasedGroupScalingAdapter → status.selector → the pods and their IPs."""
    _, stub = scaler
    api, _ = kube
    pd = kubeapi.install_dynamo_pd(api, NAMESPACE)
    labels = kubeapi.role_labels(pd.group, "decoder")
    for pod, engine_pod in zip(pd.decode_pods, ("vllm-decode-0", "vllm-decode-1"), strict=True):
        api.put(kubeapi.pod(pod, NAMESPACE, labels, ip=engines.ips[engine_pod]))
    metadata = {"role": "decode", "metric": "seats", "maxNumSeqs": "256", "scrape": "pods",
                "metricsPort": str(engines.port)}  # fmt: skip
    assert await value(stub, ref(metadata, name=pd.decoder)) == 0.6640625


def test_series_of_the_other_role_other_spellings_and_ranks_count_once() -> None:
    """Pure: SGLang's engine_type, Prometheus 2's underscore spelling, TP ranks (max) and DP ranks (sum)."""

    def s(name: str, value: float, **labels: str) -> signals.Series:
        return signals.Series({"__name__": name, "pod": "p", "namespace": "llm", **labels}, value)

    queue = signals.signal("prefill", "engine-queue", "sglang")
    series = [
        s("sglang_num_queue_reqs", 3, engine_type="prefill", tp_rank="0", dp_rank="0"),  # stored by Prometheus 2
        s("sglang_num_queue_reqs", 3, engine_type="prefill", tp_rank="1", dp_rank="0"),  # same queue, other rank
        s("sglang_num_queue_reqs", 2, engine_type="prefill", tp_rank="0", dp_rank="1"),  # another DP engine
        s("sglang_num_queue_reqs", 50, engine_type="decode", tp_rank="0", dp_rank="0"),  # a decode server's queue
        s("sglang:num_prefill_inflight_queue_reqs", 1, engine_type="unified", tp_rank="0"),  # an older build
    ]
    assert signals.evaluate(queue, series).values == {("llm", "p"): 6.0}
    # The same series with the colon as well (Prometheus 3 next to 2): the colon's are read, never both.
    both = [*series, s("sglang:num_queue_reqs", 7, engine_type="prefill", tp_rank="0")]
    assert signals.evaluate(queue, both).values == {("llm", "p"): 8.0}


async def test_a_pod_s_answer_is_bounded_like_every_source_s(
    kube: tuple[kubeapi.KubeAPI, Path], engines: EngineCluster, make_scaler: Callable[..., Awaitable[Server]]
):
    server = await make_scaler(kubeconfig=kube[1], kube_refresh_interval=0.1, max_source_body_bytes=64)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        metadata = {"role": "prefill", "metric": "engine-queue", "threshold": "4", "podSelector": VLLM_PREFILL,
                    "scrape": "pods", "metricsPort": str(engines.port)}  # fmt: skip

        async def refused() -> str:
            error = await error_of(stub, ref(metadata))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert "over the limit of 64 bytes" in (error.details() or "")
            return error.details() or ""

        details = await eventually(refused)
    assert details.startswith("no engine-queue series for any of the role's 2 pods (vllm-prefill-0: answer ")


@pytest.mark.parametrize("source", ["prometheus", "pods"])
@pytest.mark.parametrize(
    ("metadata", "expected", "seats"),
    [
        # vLLM: 100 running + 20 waiting (by reason) and 50 running hold 170 sequences; their KV (0.5 + 0.25,
        # full at 0.9) is worth 83.3 of 100-seat replicas: the sequences bind.
        ({"engine": "vllm", "seats": "100", "podSelector": VLLM_DECODE}, 170.0, 100.0),
        # SGLang: 40 + 16 sequences, but 0.5 of one pod's KV (max over TP ranks) at 200 seats is worth 111.1.
        ({"engine": "sglang", "seats": "200", "podSelector": SGLANG_DECODE}, 0.5 / 0.9 * 200, 200.0),
        # Seats from the replica's profile at the ITL SLO: the ACK guide's H200 engine runs 52 sequences within
        # 30 ms a token; their KV is worth 0.75 / 0.9 x 52 = 43.3, so the 170 sequences bind.
        ({"engine": "vllm", "profile": "ack-dynamo-guide", "itl": "30ms", "podSelector": VLLM_DECODE}, 170.0, 52.0),
    ],
)
async def test_decode_capacity_is_the_sequences_held_or_their_kv_worth_against_seats(
    scaler: tuple[Server, pb_grpc.ExternalScalerStub],
    prometheus: PrometheusServer,
    engines: EngineCluster,
    source: str,
    metadata: dict[str, str],
    expected: float,
    seats: float,
):
    _, stub = scaler
    so = ref(through(source, {"role": "decode", **metadata}, prometheus, engines))
    assert await value(stub, so) == pytest.approx(expected)
    [spec] = (await stub.GetMetricSpec(so)).metricSpecs
    assert (spec.metricName, spec.targetSizeFloat) == ("decode-sequences", seats)


async def test_an_itl_without_a_profile_to_derive_seats_from_is_invalid_argument_naming_the_key(
    scaler: tuple[Server, pb_grpc.ExternalScalerStub], prometheus: PrometheusServer
):
    _, stub = scaler
    so = ref({"role": "decode", "prometheusAddress": prometheus.url, "podSelector": VLLM_DECODE, "itl": "30ms"})
    error = await error_of(stub, so)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("key 'itl' needs key 'profile' (the decode replica's bundled ")


async def test_two_scaler_processes_on_the_same_nats_and_prometheus_agree_on_coupled_roles(
    kube: tuple[kubeapi.KubeAPI, Path],
    prometheus: PrometheusServer,
    nats_server: NatsServer,
    js: JetStreamContext,
    tmp_path: Path,
):
    # Two replicas of the scaler behind KEDA's round-robin: separate processes, connections and histories.
    flags = ("--kubeconfig", str(kube[1]), "--kube-refresh-interval", "100ms", "--refresh-interval", "200ms")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    replicas = [Process(tmp_path / name, *flags) for name in ("a", "b")]
    try:
        for replica in replicas:
            wait_http(f"http://127.0.0.1:{replica.http_port}/readyz")
        prefill = prefill_ref(nats_server, policy="capacity", window="5s", startupDelay="1s", burstMemory="1s")
        decode = ref({"role": "decode", "prometheusAddress": prometheus.url, "podSelector": VLLM_DECODE,
                      "seats": "100", "prefillScaledObject": prefill.name})  # fmt: skip
        prefill = pb.ScaledObjectRef(name=prefill.name, namespace=NAMESPACE, scalerMetadata=prefill.scalerMetadata)
        async with contextlib.AsyncExitStack() as stack:
            channels = [
                await stack.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{r.grpc_port}")) for r in replicas
            ]
            stubs = [pb_grpc.ExternalScalerStub(channel) for channel in channels]
            for stub in stubs:
                assert await value(stub, prefill) == 0.0
            for i in range(40):
                await js.publish(f"{STREAM}.queue", b'{"prompt_token_ids": [%s]}' % b", ".join([b"7"] * (100 + i)))

            async def agree() -> None:
                answers = [(await value(stub, prefill), await value(stub, decode)) for stub in stubs]
                # 40 prompts of 100..139 tokens (4,780) waiting, to drain within 2 s; decode holds 170 sequences.
                assert answers == [(2390.0, 170.0), (2390.0, 170.0)]

            await eventually(agree, timeout=20.0)
    finally:
        for replica in replicas:
            replica.proc.kill()
            replica.proc.wait()


async def test_prefill_counts_the_requests_decode_holds_beyond_the_queue_s_backlog(
    scaler: tuple[Server, pb_grpc.ExternalScalerStub],
    prometheus: PrometheusServer,
    nats_server: NatsServer,
    js: JetStreamContext,
):
    server, stub = scaler
    decode = ref({"role": "decode", "prometheusAddress": prometheus.url, "podSelector": VLLM_DECODE,
                  "seats": "100"}, name="decode")  # fmt: skip
    metadata = {"policy": "capacity", "window": "5s", "startupDelay": "1s", "burstMemory": "1s"}
    prefill, unknown = (
        ref(dict(prefill_ref(nats_server, decodeScaledObject=coupled, **metadata).scalerMetadata), name=name)
        for name, coupled in (("prefill", "decode"), ("prefill-unknown", "nowhere"))
    )
    assert await value(stub, decode) == 170.0
    for _ in range(10):
        await js.publish(f"{STREAM}.queue", b'{"prompt_token_ids": [%s]}' % b", ".join([b"7"] * 120))

    async def held_counted() -> None:
        # 10 prompts of 120 tokens queued; decode's engines hold 20 waiting, 10 of them not yet published, counted
        # at the mean prompt: 2,400 tokens to drain within the start-up delay and the TTFT SLO (2 s).
        assert await value(stub, prefill) == 1200.0
        # Coupled to a ScaledObject never asked about: the queue's backlog alone.
        assert await value(stub, unknown) == 600.0

    await eventually(held_counted, timeout=15.0)
    reason = (await server.engine.decide(Ref(NAMESPACE, "prefill", dict(prefill.scalerMetadata)))).reason
    assert "backlog 10 messages / 1200 tokens + 10 requests held at decode (20 waiting there less the backlog) / " in (
        reason
    )
    reason = (await server.engine.decide(Ref(NAMESPACE, "prefill-unknown", dict(unknown.scalerMetadata)))).reason
    assert reason.endswith(f"; decode not coupled: ScaledObject {NAMESPACE}/nowhere has not been asked about here yet")
    # Decided once per sample, coupled or not: asked again before the sources refresh, the same decision.
    for name, so in (("prefill", prefill), ("prefill-unknown", unknown)):
        evaluator = server.engine.evaluator(Ref(NAMESPACE, name, dict(so.scalerMetadata)))
        assert evaluator.decide() is evaluator.decide()


async def test_decode_per_prefill_auto_holds_the_decode_the_prompt_output_mix_needs(
    scaler: tuple[Server, pb_grpc.ExternalScalerStub],
    prometheus: PrometheusServer,
    nats_server: NatsServer,
    js: JetStreamContext,
):
    _, stub = scaler
    prefill = prefill_ref(nats_server, policy="capacity", window="5s", startupDelay="1s", burstMemory="1s")
    auto = {"prefillScaledObject": prefill.name, "decodePerPrefill": "auto", "meanOutputTokens": "400"}
    decode = ref({"role": "decode", "prometheusAddress": prometheus.url, "podSelector": VLLM_DECODE, "seats": "100",
                  **auto})  # fmt: skip
    prefill = pb.ScaledObjectRef(name=prefill.name, namespace=NAMESPACE, scalerMetadata=prefill.scalerMetadata)
    assert await value(stub, prefill) == 0.0
    for _ in range(40):
        await js.publish(f"{STREAM}.queue", b'{"prompt_token_ids": [%s]}' % b", ".join([b"7"] * 120))

    async def mix_binds() -> None:
        # 40 prompts of 120 tokens waiting: one prefill replica of 9,000 tokens/s. Their 400-token answers at
        # 50 ms a token on 100 seats need 400 x 0.05 / 100 decode to 120 / 9000 prefill: 15 decode per prefill,
        # above the 170 sequences held.
        assert (await value(stub, prefill), await value(stub, decode)) == (2400.0, 1500.0)

    await eventually(mix_binds, timeout=15.0)
