"""Sources that answer as an attacker would (issue: hostile input and sources), each reproduced on loopback by a
small server the test starts: bodies past the cap, redirects to another origin, numbers no NATS server sends,
JSON nested without end, credentials in a profile's URL. Each answer is a source error naming what was wrong
(gRPC UNAVAILABLE), never a value, never INTERNAL, never a secret."""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable

import grpc
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from scaler.connections import PrometheusProfile
from scaler.errors import SourceUnavailable
from scaler.metrics import Metrics
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.server import Server
from scaler.sources.bounded import DEFAULT_MAX_BODY_BYTES, BadAnswer
from scaler.sources.pods import parse
from scaler.sources.prometheus import PrometheusSource
from tests.conftest import CONSUMER, STREAM, metrics_request, rpc_error
from tests.hostile import HostileServer, fake_nats, hostile, huge, jsz, raw

SECRET = "pd-s3cret-planted"
MB = 2**20


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


@pytest.fixture
def peak_growth() -> Callable[[], float]:
    """Peak resident memory since the fixture began, over what was resident then, in MB (Linux: clear_refs 5
    resets the peak)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    start = _status_kib("VmRSS")
    return lambda: (_status_kib("VmHWM") - start) / 1024


def jsz_ref(server: HostileServer) -> pb.ScaledObjectRef:
    meta = {"role": "prefill", "natsServerMonitoringEndpoint": server.address}
    return pb.ScaledObjectRef(name="prefill", namespace="dynamo", scalerMetadata=meta)


async def source_error(
    make_scaler: Callable[..., Awaitable[Server]], ref: pb.ScaledObjectRef, **settings: object
) -> grpc.aio.AioRpcError:
    scaler = await make_scaler(**settings)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{scaler.grpc_port}") as channel:
        error = await rpc_error(pb_grpc.ExternalScalerStub(channel).GetMetrics(metrics_request(ref)))
    assert error is not None
    return error


def jsz_error(server: HostileServer, detail: str) -> str:
    name = f"nats-monitoring {server.url} account=$G"
    return f"{name}: no sample yet; last error: {name}: {detail}"


@pytest.mark.parametrize(
    ("size", "detail"),
    [
        (500 * MB, f"answer of {500 * MB} bytes is over the limit of {DEFAULT_MAX_BODY_BYTES} bytes"),
        (None, f"answer is over the limit of {DEFAULT_MAX_BODY_BYTES} bytes"),
    ],
    ids=["500MB-content-length", "endless-chunked"],
)
async def test_a_huge_jsz_body_is_refused_at_the_cap_in_little_memory(
    make_scaler: Callable[..., Awaitable[Server]], peak_growth: Callable[[], float], size: int | None, detail: str
):
    async with hostile({"/jsz": huge(size)}) as server:
        error = await source_error(make_scaler, jsz_ref(server))
    assert (error.code(), error.details()) == (grpc.StatusCode.UNAVAILABLE, jsz_error(server, detail))
    assert peak_growth() < 50


async def prometheus_error(server: HostileServer, profile: PrometheusProfile, **kw: int) -> str:
    source = PrometheusSource("monitoring", profile, "up", 1.0, Metrics(), **kw)
    try:
        await source.refresh()
        with pytest.raises(SourceUnavailable) as refused:
            source.read(30.0)
        return refused.value.message
    finally:
        await source.close()


@pytest.mark.parametrize("size", [500 * MB, None], ids=["500MB-content-length", "endless-chunked"])
async def test_a_huge_prometheus_body_is_refused_at_the_cap_in_little_memory(
    peak_growth: Callable[[], float], size: int | None
):
    async with hostile({"/api/v1/query": huge(size)}) as server:
        message = await prometheus_error(server, PrometheusProfile(url=server.url), max_body_bytes=4 * MB)
    over = f"answer of {size} bytes is over" if size else "answer is over"
    name = "prometheus monitoring query=up"
    assert message == f"{name}: no sample yet; last error: {name}: {over} the limit of {4 * MB} bytes"
    assert peak_growth() < 50


async def test_max_source_body_bytes_sets_the_cap(make_scaler: Callable[..., Awaitable[Server]]):
    async with hostile({"/jsz": raw(jsz("1") + " " * 2048)}) as server:
        error = await source_error(make_scaler, jsz_ref(server), max_source_body_bytes=1024)
        length = len(jsz("1")) + 2048
    assert error.details() == jsz_error(server, f"answer of {length} bytes is over the limit of 1024 bytes")


async def test_a_redirect_to_another_origin_is_not_followed_and_gets_no_credentials():
    async with hostile({}) as elsewhere:
        target = f"{elsewhere.url}/api/v1/query?query=up"
        async with hostile({"/api/v1/query": raw("", 302, {"Location": target})}) as server:
            basic = {"username": "scaler", "password": SECRET}
            profile = PrometheusProfile.model_validate({"url": server.url, "basicAuth": basic})
            message = await prometheus_error(server, profile)
    assert message.endswith(f"prometheus monitoring query=up: HTTP 302 redirect to {elsewhere.url} not followed")
    credentials = base64.b64encode(f"scaler:{SECRET}".encode()).decode()
    assert [s.headers["Authorization"] for s in server.seen] == [f"Basic {credentials}"]
    assert elsewhere.seen == []


async def test_credentials_in_a_profile_url_are_sent_as_basic_auth_and_never_shown():
    async with hostile({"/api/v1/query": raw('{"status": "error", "error": "' + "x" * 5000 + '"}', 400)}) as server:
        profile = PrometheusProfile.model_validate({"url": server.url.replace("//", f"//scaler:{SECRET}@")})
        assert profile.url == server.url
        message = await prometheus_error(server, profile)
    credentials = base64.b64encode(f"scaler:{SECRET}".encode()).decode()
    assert [s.headers["Authorization"] for s in server.seen] == [f"Basic {credentials}"]
    assert SECRET not in message
    # The remote error text is cut, so the message stays short.
    assert message.endswith("prometheus monitoring query=up: HTTP 400: " + "x" * 199 + "…")


@pytest.mark.parametrize(
    ("pending", "ack_pending", "detail"),
    [
        ("1e29", "0", "consumer_detail 'worker-group' num_pending is out of range (0 to 2^53): 1e+29"),
        ("-3", "0", "consumer_detail 'worker-group' num_pending is out of range (0 to 2^53): -3"),
        (str(2**53 + 1), "0", f"consumer_detail 'worker-group' num_pending is out of range (0 to 2^53): {2**53 + 1}"),
        ("NaN", "0", "consumer_detail 'worker-group' num_pending is not a whole number: nan"),
        ("1", "Infinity", "consumer_detail 'worker-group' num_ack_pending is not a whole number: inf"),
        ("1e400", "0", "consumer_detail 'worker-group' num_pending is not a whole number: inf"),
        ("2.5", "0", "consumer_detail 'worker-group' num_pending is not a whole number: 2.5"),
        ('"7"', "0", "consumer_detail 'worker-group' num_pending is not a number: '7'"),
    ],
    ids=["1e29", "negative", "2^53+1", "NaN", "Infinity", "1e400", "fraction", "string"],
)
async def test_a_jsz_number_no_nats_server_sends_is_a_source_error_naming_the_field(
    make_scaler: Callable[..., Awaitable[Server]], pending: str, ack_pending: str, detail: str
):
    async with hostile({"/jsz": raw(jsz(pending, ack_pending))}) as server:
        error = await source_error(make_scaler, jsz_ref(server))
    assert (error.code(), error.details()) == (grpc.StatusCode.UNAVAILABLE, jsz_error(server, detail))


async def test_the_largest_exact_jsz_number_is_answered(make_scaler: Callable[..., Awaitable[Server]]):
    async with hostile({"/jsz": raw(jsz(str(2**53 - 5), "5"))}) as server:
        scaler = await make_scaler()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{scaler.grpc_port}") as channel:
            answer = await pb_grpc.ExternalScalerStub(channel).GetMetrics(metrics_request(jsz_ref(server)))
    assert answer.metricValues[0].metricValueFloat == 2**53


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ("[" * 100_000, "answer is JSON nested 100000 deep, over the limit of 64"),
        ('{"account_details": {"name": "$G"}}', "account_details is not a list of objects"),
        ("[]", "answer is not a /jsz object"),
        ("<html>", "answer is not JSON: Expecting value: line 1 column 1 (char 0)"),
    ],
    ids=["deep", "wrong-shape", "not-an-object", "not-json"],
)
async def test_a_jsz_answer_of_the_wrong_shape_is_a_source_error(
    make_scaler: Callable[..., Awaitable[Server]], body: str, detail: str
):
    async with hostile({"/jsz": raw(body)}) as server:
        error = await source_error(make_scaler, jsz_ref(server))
    assert (error.code(), error.details()) == (grpc.StatusCode.UNAVAILABLE, jsz_error(server, detail))


@pytest.mark.parametrize(
    ("pending", "detail"),
    [
        ("1e29", "consumer info num_pending is out of range (0 to 2^53): 1e+29"),
        ("-5", "consumer info num_pending is out of range (0 to 2^53): -5"),
        (str(2**53 + 1), f"consumer info num_pending is out of range (0 to 2^53): {2**53 + 1}"),
        ("NaN", "consumer info num_pending is not a whole number: nan"),
    ],
    ids=["1e29", "negative", "2^53+1", "NaN"],
)
async def test_a_consumer_info_number_no_nats_server_sends_is_a_source_error_naming_the_field(
    make_scaler: Callable[..., Awaitable[Server]], nc: NatsClient, js: JetStreamContext, pending: str, detail: str
):
    # What nats-server itself answers, with one number changed.
    consumer = (await nc.request(f"$JS.API.CONSUMER.INFO.{STREAM}.{CONSUMER}", b"")).data
    stream = (await nc.request(f"$JS.API.STREAM.INFO.{STREAM}", b"")).data
    assert re.search(rb'"num_pending":0\b', consumer)
    replies = {
        "$JS.API.CONSUMER.INFO.": re.sub(rb'"num_pending":0\b', b'"num_pending":' + pending.encode(), consumer),
        "$JS.API.STREAM.INFO.": stream,
    }
    async with fake_nats(replies) as server:
        ref = pb.ScaledObjectRef(
            name="prefill", namespace="dynamo", scalerMetadata={"role": "prefill", "natsServer": server.url}
        )
        error = await source_error(make_scaler, ref)
    name = f"nats {server.url} stream={STREAM} consumer={CONSUMER}"
    assert (error.code(), error.details()) == (
        grpc.StatusCode.UNAVAILABLE,
        f"{name}: no sample yet; last error: {name}: {detail}",
    )


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ('"-3"', "is out of range (0 to 2^53): -3.0"),
        (f'"{2**53 * 4}"', f"is out of range (0 to 2^53): {float(2**53 * 4)!r}"),
        ('"+Inf"', "is not a finite number: inf"),
        ('"NaN"', "is not a finite number: nan"),
        ('"seven"', "has no number: [1700000000, 'seven']"),
    ],
    ids=["negative", "over-2^53", "Inf", "NaN", "string"],
)
async def test_a_prometheus_value_no_engine_exports_is_a_source_error_naming_the_series(value: str, detail: str):
    series = '{"metric": {"__name__": "vllm:num_requests_waiting", "pod": "vllm-0"}, "value": [1700000000, VALUE]}'
    answer = '{"status": "success", "data": {"resultType": "vector", "result": [SERIES]}}'
    body = answer.replace("SERIES", series.replace("VALUE", value))
    async with hostile({"/api/v1/query": raw(body)}) as server:
        message = await prometheus_error(server, PrometheusProfile(url=server.url))
    name = "prometheus monitoring query=up"
    assert message == (
        f'{name}: no sample yet; last error: {name}: value of vllm:num_requests_waiting{{pod="vllm-0"}} {detail}'
    )


@pytest.mark.parametrize(
    ("value", "detail"), [("-1", "is out of range (0 to 2^53): -1.0"), ("+Inf", "is not a finite number: inf")]
)
def test_a_scraped_value_no_engine_exports_fails_its_pod_naming_the_series(value: str, detail: str):
    page = f'vllm:num_requests_waiting{{model_name="qwen"}} 3\nvllm:num_requests_running{{model_name="qwen"}} {value}\n'
    with pytest.raises(BadAnswer) as refused:
        parse(page, frozenset({"vllm:num_requests_waiting", "vllm:num_requests_running"}), "vllm-0", "dynamo")
    assert str(refused.value) == f'value of vllm:num_requests_running{{model_name="qwen"}} {detail}'
