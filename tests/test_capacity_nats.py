"""The capacity policy end to end: Dynamo's remote-prefill requests on a real nats-server, KEDA's gRPC calls."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace

import grpc
import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from scaler.connections import Connections, NatsProfile
from scaler.metrics import Metrics
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.server import Server
from scaler.sources import backlog as backlog_reader
from scaler.sources.backlog import MAX_READ_BYTES, MAX_READ_SECONDS, MAX_READS
from scaler.sources.history import MAX_PAYLOAD, prompt_tokens
from scaler.sources.nats import JetStreamLagSource, NatsConnections
from tests.conftest import CONSUMER, STREAM, eventually, make_queue, prefill_ref
from tests.servers import NatsServer
from tests.test_status import by_name, status_json

Stub = pb_grpc.ExternalScalerStub
METRIC = "prefill-tokens-dynamo-prefill-queue-worker-group"


def remote_prefill(i: int, tokens: int | None) -> bytes:
    """vLLM's RemotePrefillRequest as Dynamo publishes it to `<stream>.queue`."""
    body: dict[str, object] = {
        "engine_id": "decode-0",
        "request_id": f"req-{i}",
        "sampling_params": {"max_tokens": 64, "temperature": 0.0},
        "block_ids": [7, 8, 9],
        "computed_block_ids": [],
    }
    if tokens is not None:
        body["prompt_token_ids"] = [(i * 7919 + k) % 151_000 for k in range(tokens)]
    return json.dumps(body).encode()


def test_prompt_tokens_are_counted_without_decoding_the_payload() -> None:
    assert prompt_tokens(remote_prefill(1, 30_000), "prompt_token_ids") == 30_000
    assert prompt_tokens(b'{"prompt_token_ids": [ ]}', "prompt_token_ids") == 0
    assert prompt_tokens(b'{"request": {"token_ids" : [5]}}', "token_ids") == 1
    assert prompt_tokens(remote_prefill(1, None), "prompt_token_ids") is None
    assert prompt_tokens(b'{"prompt_token_ids": [1, 2', "prompt_token_ids") is None
    assert prompt_tokens(b" " * (MAX_PAYLOAD + 1), "prompt_token_ids") is None


async def value(stub: Stub, ref: pb.ScaledObjectRef, metric: str = METRIC) -> float:
    response = await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName=metric))
    assert [v.metricName for v in response.metricValues] == [metric]
    return response.metricValues[0].metricValueFloat


async def test_demand_is_the_backlog_s_prompt_tokens_to_drain_within_the_ttft_slo(
    stub: Stub, js: JetStreamContext, nats_server: NatsServer
) -> None:
    # Rates over 5 s, forecast 2 s ahead, bursts remembered 1 s: once the arrivals are older than the window, only
    # the backlog is left.
    ref = prefill_ref(nats_server, policy="capacity", window="5s", startupDelay="2s", ttft="2s", burstMemory="1s")
    spec = (await stub.GetMetricSpec(ref)).metricSpecs[0]
    assert (spec.metricName, spec.targetSizeFloat) == (METRIC, 9000.0)
    assert await value(stub, ref) == 0.0
    # Mixed prompts, one without prompt_token_ids (counted at meanPromptTokens, 1,000).
    for i, tokens in enumerate([200, 30_000, 800, 1500, 4000, None]):
        await js.publish(f"{STREAM}.queue", remote_prefill(i, tokens))
    worker = await js.pull_subscribe_bind(CONSUMER, STREAM)
    for msg in await worker.fetch(2):  # Dynamo's workers ack on receipt: 200 and 30,000 tokens are taken
        await msg.ack()

    async def arrivals_counted() -> None:
        # Backlog 800 + 1,500 + 4,000 + 1,000 = 7,300 tokens to drain within the start-up delay and the TTFT
        # SLO (4 s), plus the rate of the 37,500 arrived tokens.
        assert await value(stub, ref) > 1825.0

    await eventually(arrivals_counted)

    async def backlog_only() -> None:
        assert await value(stub, ref) == 1825.0

    await eventually(backlog_only, timeout=15.0)


async def test_two_scalers_on_the_same_queue_agree(
    stub: Stub,
    js: JetStreamContext,
    nats_server: NatsServer,
    make_scaler: Callable[..., Awaitable[Server]],
) -> None:
    other = await make_scaler()
    ref = prefill_ref(nats_server, policy="capacity", window="5s", startupDelay="1s", burstMemory="1s")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{other.grpc_port}") as channel:
        stub2 = Stub(channel)
        assert (await value(stub, ref), await value(stub2, ref)) == (0.0, 0.0)
        for i in range(100):
            await js.publish(f"{STREAM}.queue", remote_prefill(i, 1000 + 40 * i))

        async def agree() -> None:
            a, b = await value(stub, ref), await value(stub2, ref)
            # Both heard every arrival and read the same consumer: once the arrivals have left the 5 s window,
            # the backlog (100 prompts, 298,000 tokens) to drain within 2 s is the whole demand.
            assert (a, b) == (149_000.0, 149_000.0)

        await eventually(agree, timeout=15.0)


async def test_the_backlog_s_tokens_are_read_from_its_messages_after_the_ack_floor(
    js: JetStreamContext, nats_server: NatsServer, make_scaler: Callable[..., Awaitable[Server]]
) -> None:
    # Queued before the scaler starts, so it never saw them arrive: only reading them tells their sizes.
    for i, tokens in enumerate([200, 30_000, 800, 1500, 4000, None, 12_345, 7]):
        await js.publish(f"{STREAM}.queue", remote_prefill(i, tokens))
    worker = await js.pull_subscribe_bind(CONSUMER, STREAM)
    taken = await worker.fetch(4)
    # Acknowledged out of order: sequence 1 (200 tokens) and 3 (800, which the work queue deletes); 2 (30,000)
    # and 4 (1,500) stay delivered and unacknowledged, so the ack floor is 1.
    await taken[0].ack()
    await taken[2].ack()
    scaler = await make_scaler()
    ref = prefill_ref(nats_server, policy="capacity", startupDelay="2s", ttft="2s")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{scaler.grpc_port}") as channel:
        stub = Stub(channel)
        # No arrival seen, so demand is the backlog drained within start-up delay + TTFT (4 s): 30,000 + 1,500
        # delivered, 4,000 + 1,000 (no prompt_token_ids: meanPromptTokens) + 12,345 + 7 pending = 48,852 tokens.
        assert await value(stub, ref) == 48_852 / 4
        reason = by_name(await status_json(scaler))["prefill"]["reason"]
        assert "backlog 6 messages / 48852 tokens (1 without prompt_token_ids" in reason

        await taken[3].ack()  # out of order again: 1,500 tokens gone, the floor stays at 1

        async def out_of_order() -> None:
            assert await value(stub, ref) == 47_352 / 4

        await eventually(out_of_order)
        await taken[1].ack()  # the floor passes 4: 4,000 + 1,000 + 12,345 + 7 are left

        async def floor_moved() -> None:
            assert await value(stub, ref) == 17_352 / 4

        await eventually(floor_moved)


async def test_a_backlog_longer_than_one_refresh_reads_counts_the_rest_at_the_mean_read(
    js: JetStreamContext, nats_server: NatsServer, make_scaler: Callable[..., Awaitable[Server]]
) -> None:
    sizes = [100 + 1000 * (i % 3) for i in range(MAX_READS + 44)]  # 100, 1,100, 2,100, ...
    for i, tokens in enumerate(sizes):
        await js.publish(f"{STREAM}.queue", remote_prefill(i, tokens))
    scaler = await make_scaler(refresh_interval=60.0)  # one refresh: no arrival wakes it either
    ref = prefill_ref(nats_server, policy="capacity", startupDelay="2s", ttft="2s")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{scaler.grpc_port}") as channel:
        read = sizes[:MAX_READS]
        backlog = sum(read) + 44 * sum(read) / len(read)
        assert await value(Stub(channel), ref) == backlog / 4
        reason = by_name(await status_json(scaler))["prefill"]["reason"]
        assert f"(44 of {len(sizes)} messages not read yet, at the mean of the {MAX_READS} read)" in reason


async def test_a_backlog_bigger_than_a_refresh_s_byte_budget_reads_up_to_it_and_counts_the_rest_at_the_mean(
    js: JetStreamContext, nats_server: NatsServer, make_scaler: Callable[..., Awaitable[Server]]
) -> None:
    payloads = [remote_prefill(i, 30_000 if i % 2 else 20_000) for i in range(60)]  # ~0.15-0.2 MB each
    for payload in payloads:
        await js.publish(f"{STREAM}.queue", payload)
    # Gets go on while less than the budget has been read: the one that crosses it is the last.
    spent, read = 0, 0
    while spent < MAX_READ_BYTES:
        spent, read = spent + len(payloads[read]), read + 1
    assert read < MAX_READS  # the bytes bind, not the count
    tokens = [30_000 if i % 2 else 20_000 for i in range(read)]
    scaler = await make_scaler(refresh_interval=60.0)  # one refresh: no arrival wakes it either
    ref = prefill_ref(nats_server, policy="capacity", startupDelay="2s", ttft="2s")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{scaler.grpc_port}") as channel:
        backlog = sum(tokens) + (60 - read) * sum(tokens) / read
        assert await value(Stub(channel), ref) == pytest.approx(backlog / 4)
        reason = by_name(await status_json(scaler))["prefill"]["reason"]
        assert f"({60 - read} of 60 messages not read yet, at the mean of the {read} read)" in reason


async def test_a_refresh_reads_for_at_most_its_time_budget_and_counts_the_rest_at_the_mean(
    js: JetStreamContext,
    nats_server: NatsServer,
    make_scaler: Callable[..., Awaitable[Server]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sizes = [300 + 900 * i for i in range(10)]  # 300, 1,200, 2,100, ...: few and small, neither count nor bytes bind
    for i, tokens in enumerate(sizes):
        await js.publish(f"{STREAM}.queue", remote_prefill(i, tokens))

    # A server that takes 0.25 s to answer each get, on the reader's own clock: it reads the clock once as the
    # refresh starts and once before each get, and each reading finds 0.25 s more gone. Gets start 0.25, 0.5 and
    # 0.75 s into the budget; at 1 s it is spent, whatever the wall clock did meanwhile.
    readings = iter(range(1 << 20))
    monkeypatch.setattr(backlog_reader, "time", SimpleNamespace(monotonic=lambda: next(readings) * 0.25))
    read = math.ceil(MAX_READ_SECONDS / 0.25) - 1
    assert read == 3
    scaler = await make_scaler(refresh_interval=60.0)  # one refresh: no arrival wakes it either
    ref = prefill_ref(nats_server, policy="capacity", startupDelay="2s", ttft="2s")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{scaler.grpc_port}") as channel:
        # 300 + 1,200 + 2,100 read; the 7 unread at their mean, 1,200: 12,000 tokens drained within 4 s.
        assert await value(Stub(channel), ref) == (3600 + 7 * 1200) / 4
        reason = by_name(await status_json(scaler))["prefill"]["reason"]
        assert "backlog 10 messages / 12000 tokens (7 of 10 messages not read yet, at the mean of the 3 read)" in reason


async def test_a_sample_is_stamped_when_its_consumer_info_was_taken_not_after_its_backlog_was_read(
    js: JetStreamContext, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i, tokens in enumerate([200, 800, 1500, 4000]):
        await js.publish(f"{STREAM}.queue", remote_prefill(i, tokens))
    # A server that takes 0.25 s to answer each get, on the source's clock: stamped after reading the 4 messages,
    # the sample would be a second late, and a rate measured from it over 5 s 25 % high.
    now = 100.0
    get_msg = JetStreamContext.get_msg

    async def slow_get_msg(self: JetStreamContext, *args: object, **kwargs: object) -> object:
        nonlocal now
        msg = await get_msg(self, *args, **kwargs)
        now += 0.25
        return msg

    monkeypatch.setattr(JetStreamContext, "get_msg", slow_get_msg)
    metrics = Metrics()
    profile = NatsProfile(servers=(nats_server.url,))
    source = JetStreamLagSource(
        NatsConnections(metrics), "queue", "queue", profile, STREAM, CONSUMER, 60.0, metrics, clock=lambda: now
    )
    source.reads_backlog = True
    source.open()
    try:
        await source.refresh()
        sample = source.queue.snapshot().last
        assert (sample.t, sample.backlog, sample.backlog_tokens) == (100.0, 4, 6500.0)
        assert now == 101.0  # the 4 messages were read, after the sample's time
    finally:
        await source.close()


async def test_messages_it_may_not_read_leave_the_backlog_at_the_estimate_and_the_reason_says_why(
    tmp_path: Path, make_scaler: Callable[..., Awaitable[Server]]
) -> None:
    # A least-privilege user for the scaler that was not granted the get-message API.
    config = tmp_path / "nats.conf"
    config.write_text(
        "authorization { users = [\n"
        "  {user: admin, password: admin}\n"
        '  {user: scaler, password: scaler, permissions: {publish: {deny: ["$JS.API.STREAM.MSG.GET.>"]}}}\n'
        "] }\n"
    )
    server = NatsServer(tmp_path, "-c", str(config))
    server.start()
    try:
        admin = await nats.connect(server.url, user="admin", password="admin")
        js = admin.jetstream()
        await make_queue(js)
        for i, tokens in enumerate([200, 30_000, 800]):
            await js.publish(f"{STREAM}.queue", remote_prefill(i, tokens))
        await admin.close()
        profile = {"servers": [server.url], "user": "scaler", "password": "scaler"}
        scaler = await make_scaler(connections=Connections.model_validate({"nats": {"queue": profile}}))
        meta = {"role": "prefill", "natsConnection": "queue", "policy": "capacity", "startupDelay": "2s", "ttft": "2s"}
        ref = pb.ScaledObjectRef(name="prefill", namespace="dynamo", scalerMetadata=meta)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{scaler.grpc_port}") as channel:
            stub = Stub(channel)

            async def estimated() -> None:
                # Queued before the scaler started and unreadable: 3 at meanPromptTokens (1,000), drained in 4 s.
                assert await value(stub, ref) == 3 * 1000 / 4

            await eventually(estimated)
            reason = by_name(await status_json(scaler))["prefill"]["reason"]
            assert (
                "backlog 3 messages / 3000 tokens (counted as the newest arrivals seen, at meanPromptTokens beyond "
                "them: reading its messages failed: no answer within 0.5s (the NATS user needs to publish to "
                f"$JS.API.STREAM.MSG.GET.{STREAM}); next try in 30s)"
            ) in reason
    finally:
        server.stop()


async def test_on_a_limits_stream_messages_acked_out_of_order_count_at_the_delivered_ones_mean(
    js: JetStreamContext, nats_server: NatsServer, make_scaler: Callable[..., Awaitable[Server]]
) -> None:
    # Limits retention keeps acknowledged messages, and consumer info does not tell which of the delivered ones are.
    await js.add_stream(name="kept", subjects=["kept.*"])
    await js.add_consumer("kept", ConsumerConfig(durable_name="workers", ack_policy=AckPolicy.EXPLICIT))
    for i, tokens in enumerate([300, 3000, 600, 5000]):
        await js.publish("kept.queue", remote_prefill(i, tokens))
    worker = await js.pull_subscribe_bind("workers", "kept")
    taken = await worker.fetch(3)
    await taken[1].ack()  # 3,000 done; 300 and 600 still delivered, the floor stays at 0
    scaler = await make_scaler()
    ref = prefill_ref(nats_server, policy="capacity", stream="kept", consumer="workers", startupDelay="2s", ttft="2s")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{scaler.grpc_port}") as channel:
        # Two of the three delivered at their mean, (300 + 3,000 + 600) / 3, and the pending 5,000.
        assert await value(Stub(channel), ref, "prefill-tokens-kept-workers") == (3900 / 3 * 2 + 5000) / 4
        reason = by_name(await status_json(scaler))["prefill"]["reason"]
        assert "backlog 3 messages / 7600 tokens (1 of 3 delivered were acknowledged out of order)" in reason
