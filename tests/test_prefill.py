"""The prefill role end to end: KEDA's gRPC calls against a real nats-server with Dynamo's prefill queue."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import grpc
import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from prometheus_client.parser import text_string_to_metric_families

from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.server import Server
from tests.conftest import CONSUMER, STREAM, eventually, make_queue, metrics_request, prefill_ref, rpc_error
from tests.servers import NatsServer

Stub = pb_grpc.ExternalScalerStub


async def publish(js: JetStreamContext, n: int, stream: str = STREAM) -> None:
    for i in range(n):
        await js.publish(f"{stream}.queue", b'{"request_id": "%d", "prompt_token_ids": [1, 2, 3]}' % i)


async def lag(stub: Stub, ref: pb.ScaledObjectRef) -> pb.MetricValue:
    response = await stub.GetMetrics(metrics_request(ref))
    assert len(response.metricValues) == 1
    return response.metricValues[0]


async def lag_becomes(stub: Stub, ref: pb.ScaledObjectRef, expected: float) -> pb.MetricValue:
    async def probe() -> pb.MetricValue:
        value = await lag(stub, ref)
        assert value.metricValueFloat == expected
        return value

    return await eventually(probe)


async def scrape(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{server.http_port}/metrics") as r:
        text = await r.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_lag_counts_pending_and_ack_pending_messages(stub: Stub, js: JetStreamContext, nats_server: NatsServer):
    await publish(js, 7)
    worker = await js.pull_subscribe_bind(CONSUMER, STREAM)
    in_flight = await worker.fetch(2)  # a prefill worker took two and has not acked them yet
    ref = prefill_ref(nats_server)

    value = await lag_becomes(stub, ref, 7.0)
    assert (value.metricName, value.metricValue) == ("prefill-lag-dynamo-prefill-queue-worker-group", 7)

    for msg in in_flight:
        await msg.ack()
    value = await lag_becomes(stub, ref, 5.0)
    assert value.metricValue == 5


async def test_metric_spec_is_one_spec_with_the_lag_per_replica_target(stub: Stub, nats_server: NatsServer):
    response = await stub.GetMetricSpec(prefill_ref(nats_server, lagThreshold="2.5"))
    assert len(response.metricSpecs) == 1
    spec = response.metricSpecs[0]
    assert (spec.metricName, spec.targetSizeFloat, spec.targetSize) == (
        "prefill-lag-dynamo-prefill-queue-worker-group",
        2.5,
        3,
    )


async def test_active_only_above_the_activation_threshold(stub: Stub, js: JetStreamContext, nats_server: NatsServer):
    ref = prefill_ref(nats_server, activationLagThreshold="3")
    await publish(js, 3)
    await lag_becomes(stub, ref, 3.0)
    assert (await stub.IsActive(ref)).result is False
    await publish(js, 1)
    await lag_becomes(stub, ref, 4.0)
    assert (await stub.IsActive(ref)).result is True

    default = prefill_ref(nats_server, name="default-activation")
    worker = await js.pull_subscribe_bind(CONSUMER, STREAM)
    for msg in await worker.fetch(4):
        await msg.ack()
    await lag_becomes(stub, default, 0.0)
    assert (await stub.IsActive(default)).result is False


async def test_stream_says_true_on_open_when_active_then_only_on_each_activation(
    stub: Stub, js: JetStreamContext, nats_server: NatsServer
):
    ref = prefill_ref(nats_server)
    await lag_becomes(stub, ref, 0.0)
    stream = stub.StreamIsActive(ref)
    received: asyncio.Queue[bool] = asyncio.Queue()

    async def read() -> None:
        async for response in stream:
            await received.put(response.result)

    reader = asyncio.create_task(read())
    worker = await js.pull_subscribe_bind(CONSUMER, STREAM)
    try:
        for _ in range(2):
            await publish(js, 1)
            assert await asyncio.wait_for(received.get(), 5) is True
            await publish(js, 1)  # still active: no second "true"
            await lag_becomes(stub, ref, 2.0)
            for msg in await worker.fetch(2):
                await msg.ack()
            await lag_becomes(stub, ref, 0.0)
        assert received.empty()

        await publish(js, 1)
        assert await asyncio.wait_for(received.get(), 5) is True
        late = stub.StreamIsActive(prefill_ref(nats_server, name="opened-while-active"))
        first = await asyncio.wait_for(late.read(), 5)
        assert first.result is True
        late.cancel()
    finally:
        stream.cancel()
        reader.cancel()


async def test_missing_stream_or_consumer_is_not_found(stub: Stub, js: JetStreamContext, nats_server: NatsServer):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetMetrics(metrics_request(prefill_ref(nats_server, consumer="workers")))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == f"nats {nats_server.url}: consumer 'workers' not found on stream '{STREAM}'"

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.IsActive(prefill_ref(nats_server, stream="prefill_queue"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == f"nats {nats_server.url}: stream 'prefill_queue' not found"


@pytest.mark.parametrize("method", ["GetMetricSpec", "GetMetrics", "IsActive", "StreamIsActive"])
async def test_bad_metadata_is_invalid_argument_on_every_call(stub: Stub, nats_server: NatsServer, method: str):
    ref = prefill_ref(nats_server, lagThreshold="-1")
    calls = {
        "GetMetricSpec": lambda: stub.GetMetricSpec(ref),
        "GetMetrics": lambda: stub.GetMetrics(metrics_request(ref)),
        "IsActive": lambda: stub.IsActive(ref),
        "StreamIsActive": lambda: stub.StreamIsActive(ref).read(),
    }
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await calls[method]()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "key 'lagThreshold': invalid value '-1': Input should be greater than 0"


async def test_unknown_connection_profile_is_invalid_argument(stub: Stub):
    ref = pb.ScaledObjectRef(
        name="p", namespace="d", scalerMetadata={"role": "prefill", "natsConnection": "prod", "lagThreshold": "5"}
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetMetricSpec(ref)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == (
        "key 'natsConnection': invalid value 'prod': no such NATS profile; "
        "known profiles: none (no --connections file or no 'nats' section)"
    )


async def test_two_hundred_scaledobjects_on_one_consumer_share_one_loop(
    scaler: Server, stub: Stub, js: JetStreamContext, nats_server: NatsServer
):
    await publish(js, 3)
    refs = [prefill_ref(nats_server, name=f"so-{i}") for i in range(200)]
    values = await asyncio.gather(*(lag_becomes(stub, ref, 3.0) for ref in refs))
    assert {v.metricValueFloat for v in values} == {3.0}

    metrics = await scrape(scaler)
    assert metrics[("pd_scaler_sources", (("kind", "nats"),))] == 1.0
    refreshes = [k for k in metrics if k[0] == "pd_scaler_source_refreshes_total"]
    assert [dict(labels)["source"] for _, labels in refreshes] == [
        f"nats {nats_server.url} stream={STREAM} consumer={CONSUMER}"
    ]
    so = (("namespace", "dynamo"), ("role", "prefill"), ("scaledobject", "so-7"))
    assert metrics[("pd_scaler_scaledobject_metric_value", so)] == 3.0
    assert metrics[("pd_scaler_scaledobject_metric_target", so)] == 5.0
    assert metrics[("pd_scaler_scaledobject_active", so)] == 1.0
    assert metrics[("pd_scaler_grpc_requests_total", (("code", "OK"), ("method", "GetMetrics")))] >= 200


async def test_idle_sources_stop(make_scaler: Callable[..., Awaitable[Server]], js: JetStreamContext, nats_server):
    scaler = await make_scaler(source_idle_timeout=0.2)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{scaler.grpc_port}") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        await lag_becomes(stub, prefill_ref(nats_server), 0.0)
        assert len(scaler.engine.sources.pool) == 1

        async def stopped() -> None:
            assert len(scaler.engine.sources.pool) == 0

        await eventually(stopped)


async def test_jsz_source_reads_the_monitoring_endpoint_like_keda(
    stub: Stub, js: JetStreamContext, nats_server: NatsServer
):
    await publish(js, 4)
    meta = {"role": "prefill", "natsServerMonitoringEndpoint": nats_server.monitoring, "account": "$G"}
    ref = pb.ScaledObjectRef(name="migrated", namespace="dynamo", scalerMetadata=meta | {"useHttps": "false"})
    await lag_becomes(stub, ref, 4.0)
    missing = pb.ScaledObjectRef(name="m", namespace="dynamo", scalerMetadata=meta | {"consumer": "nope"})
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetMetrics(metrics_request(missing))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == (
        f"nats-monitoring http://{nats_server.monitoring} account=$G: consumer 'nope' not found on stream '{STREAM}'"
    )


async def test_nats_down_is_unavailable_once_stale_and_correct_again_after_restart(
    make_scaler: Callable[..., Awaitable[Server]], tmp_path
):
    nats_server = NatsServer(tmp_path)
    nats_server.start()
    try:
        scaler = await make_scaler()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{scaler.grpc_port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            nc: NatsClient = await nats.connect(nats_server.url)
            js = nc.jetstream()
            await make_queue(js)
            await publish(js, 2)
            await nc.close()

            ref = prefill_ref(nats_server, maxStaleness="1s")
            other = prefill_ref(nats_server, name="other", maxStaleness="1m")
            await lag_becomes(stub, ref, 2.0)

            nats_server.stop()

            async def unavailable() -> grpc.aio.AioRpcError:
                error = await rpc_error(stub.GetMetrics(metrics_request(ref)))
                assert error is not None, "still answered with a value"
                assert error.code() == grpc.StatusCode.UNAVAILABLE
                return error

            error = await eventually(unavailable, timeout=10)
            details = error.details() or ""
            assert details.startswith(f"nats {nats_server.url} stream={STREAM} consumer={CONSUMER}: newest sample is ")
            assert "s old, over maxStaleness 1s" in details
            # A ScaledObject that tolerates older samples still gets the last measurement, not a made-up one.
            assert (await lag(stub, other)).metricValueFloat == 2.0

            nats_server.start()  # same port and store: the stream and its messages survive
            await lag_becomes(stub, ref, 2.0)
    finally:
        nats_server.stop()


async def test_nats_unreachable_from_the_start_is_unavailable_naming_server_and_stream(stub: Stub):
    meta = {"role": "prefill", "natsServer": "nats://127.0.0.1:1", "lagThreshold": "5"}
    ref = pb.ScaledObjectRef(name="p", namespace="d", scalerMetadata=meta)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetMetrics(metrics_request(ref))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == (
        f"nats nats://127.0.0.1:1 stream={STREAM} consumer={CONSUMER}: no sample yet; "
        "last error: nats nats://127.0.0.1:1: cannot connect: "
        "ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 1)"
    )


async def test_a_closed_stream_is_counted_and_its_open_time_observed(
    scaler: Server, stub: Stub, nats_server: NatsServer, js: JetStreamContext
):
    ref = prefill_ref(nats_server)
    await publish(js, 1)  # active, so both streams answer on open
    for method in (stub.StreamIsActive, stub.StreamMetricSpec):
        stream = method(ref)
        await stream.read()  # its handler runs: a stream cancelled before that is never served, nor counted
        stream.cancel()

    async def observed() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        metrics = await scrape(scaler)
        for method in ("StreamIsActive", "StreamMetricSpec"):
            assert metrics.get(("pd_scaler_grpc_requests_total", (("code", "CANCELLED"), ("method", method)))) == 1
            assert metrics.get(("pd_scaler_grpc_stream_duration_seconds_count", (("method", method),))) == 1
        return metrics

    metrics = await eventually(observed)
    assert not [k for k in metrics if k[0].startswith("pd_scaler_grpc_request_duration") and "Stream" in str(k[1])]


async def test_metrics_have_process_series_and_no_decode_series_for_prefill(
    scaler: Server, stub: Stub, js: JetStreamContext, nats_server: NatsServer
):
    await lag_becomes(stub, prefill_ref(nats_server), 0.0)
    metrics = await scrape(scaler)
    names = {name for name, _ in metrics}
    assert metrics[("process_resident_memory_bytes", ())] > 0
    assert {"process_cpu_seconds_total", "process_open_fds", "python_gc_collections_total", "python_info"} <= names
    so = (("namespace", "dynamo"), ("role", "prefill"), ("scaledobject", "prefill"))
    assert metrics[("pd_scaler_scaledobject_metric_value", so)] == 0.0
    assert not [labels for name, labels in metrics if name == "pd_scaler_scaledobject_pods_without_series"]
