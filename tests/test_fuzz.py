"""Fuzzing the running server with random trigger metadata and ScaledObjectRefs (hypothesis).

Every answer must be a valid response or INVALID_ARGUMENT / NOT_FOUND / UNAVAILABLE / RESOURCE_EXHAUSTED with a
message under 1 kB; never UNKNOWN or INTERNAL; and the server keeps serving. Values run up to 1 MB, key counts past
the limit, keys in any script. Source addresses are only ever loopback ones (or garbage that cannot
validate): a fuzzer must not send traffic anywhere else. `make fuzz` runs many more examples.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.triggers import MAX_KEYS, DecodeTrigger, PrefillTrigger
from tests.servers import NatsServer, wait_http
from tests.test_server import Process

EXAMPLES = int(os.environ.get("PD_SCALER_FUZZ_EXAMPLES", "2000"))
ANSWERED_WITH_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
SOURCE_KEYS = {"natsServer", "natsServerMonitoringEndpoint", "prometheusAddress"}
KEYS = sorted(
    {f.alias or n for model in (PrefillTrigger, DecodeTrigger) for n, f in model.model_fields.items()}
    | {"scalerAddress", "enableTLS", "unsafeSsl"}
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, nats_server: NatsServer) -> Iterator[tuple[Process, NatsServer]]:
    process = Process(tmp_path_factory.mktemp("fuzz"), "--log-level", "warning")
    wait_http(f"http://127.0.0.1:{process.http_port}/readyz")
    yield process, nats_server
    process.proc.kill()
    process.proc.wait()


def _values(nats: NatsServer) -> dict[str, st.SearchStrategy[str]]:
    garbage = st.text(max_size=40).map(lambda s: "!" + s)  # a leading "!" never validates as an address
    loopback = {
        "natsServer": st.sampled_from([nats.url, "nats://127.0.0.1:1", f"{nats.url},tls://127.0.0.1:1"]),
        "natsServerMonitoringEndpoint": st.sampled_from([nats.monitoring, "127.0.0.1:1"]),
        "prometheusAddress": st.sampled_from(["http://127.0.0.1:1", "https://127.0.0.1:1/prom"]),
    }
    anything = st.one_of(
        st.text(max_size=30),
        st.text(min_size=5000, max_size=20000),
        st.integers(10_000, 1_000_000).map(lambda n: "9" * n),  # huge, and a number
        st.sampled_from(["", "0", "-1", "1e309", "nan", "inf", "-0", "1e-320", "5", "0.8", "true", "30s", "-5m"]),
        st.sampled_from(["prefill", "decode", "gpu-memory", "kv-cache", "sglang", "dynamo_prefill_queue"]),
        st.integers().map(str),
        st.floats().map(str),
    )
    return {key: st.one_of(loopback[key], garbage) if key in SOURCE_KEYS else anything for key in KEYS}


def _metadata(nats: NatsServer) -> st.SearchStrategy[dict[str, str]]:
    values = _values(nats)
    known = st.sampled_from(KEYS).flatmap(lambda k: st.tuples(st.just(k), values[k]))
    from_env = st.sampled_from([k for k in KEYS if k not in SOURCE_KEYS]).flatmap(
        lambda k: st.tuples(st.just(k + "FromEnv"), values[k])
    )
    unknown_key = st.one_of(
        st.text(max_size=40), st.text(st.characters(min_codepoint=0x80, codec="utf-8"), min_size=1, max_size=200)
    )
    unknown = st.tuples(unknown_key.filter(lambda k: k not in KEYS and not k.endswith("FromEnv")), st.text(max_size=40))
    role = st.dictionaries(st.just("role"), st.sampled_from(["prefill", "decode"]), max_size=1)
    pairs = st.lists(st.one_of(known, known, from_env, unknown), max_size=8)
    counts = st.one_of(st.just(0), st.just(0), st.just(0), st.integers(MAX_KEYS - 8, 2000))  # mostly none
    many = counts.map(lambda n: {f"k{i}": "v" for i in range(n)})
    return st.tuples(role, pairs, many).map(lambda rpm: {**rpm[2], **rpm[0], **dict(rpm[1])})


def _outcome(call: Callable[[], object]) -> tuple[object, grpc.RpcError | None]:
    try:
        return call(), None
    except grpc.RpcError as error:
        return None, error


def test_every_answer_is_valid_or_a_named_error(server: tuple[Process, NatsServer]) -> None:
    process, nats = server
    with grpc.insecure_channel(f"127.0.0.1:{process.grpc_port}") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        health = health_pb2_grpc.HealthStub(channel)

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(
            metadata=_metadata(nats),
            name=st.one_of(st.text(max_size=60), st.text(min_size=1000, max_size=5000)),
            namespace=st.text(max_size=60),
        )
        def answers(metadata: dict[str, str], name: str, namespace: str) -> None:
            ref = pb.ScaledObjectRef(name=name, namespace=namespace, scalerMetadata=metadata)
            calls = (
                lambda: stub.GetMetricSpec(ref, timeout=10),
                lambda: stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName="x"), timeout=10),
                lambda: stub.IsActive(ref, timeout=10),
            )
            for call in calls:
                response, error = _outcome(call)
                if error is not None:
                    assert error.code() in ANSWERED_WITH_ERRORS, (error.code(), error.details(), metadata)
                    assert error.details(), metadata
                    assert len(error.details().encode()) < 1024, error.details()
                else:
                    items = getattr(response, "metricSpecs", None) or getattr(response, "metricValues", None)
                    assert items is None or len(items) == 1

        answers()
        check = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert check.status == health_pb2.HealthCheckResponse.SERVING
    assert process.proc.poll() is None, "the server died"
    assert "Traceback" not in Path(process.log).read_text()
