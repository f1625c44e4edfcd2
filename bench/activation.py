"""Publish → StreamIsActive latency: how fast a new prefill request wakes a role that has no backlog.

Runs a real nats-server and `pd-scaler serve` (a separate process), opens one StreamIsActive stream as KEDA's
`external-push` trigger does, and times ≥ 200 activations: publish one request, wait for `true`, drain it,
wait until the scaler sees the queue empty again. Two baselines from the same run: the physical floor (the same
publish reaching a plain NATS subscriber in this process), and KEDA's polling at its default 30 s
pollingInterval (a request arriving at a uniformly random moment waits for the next poll, plus an IsActive call
whose latency is measured here).

    python bench/activation.py [--activations 200] [--refresh-interval 250ms]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import nats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from tests.conftest import CONSUMER, STREAM, make_queue
from tests.servers import NatsServer, free_port, wait_http


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


KEDA_POLLING_INTERVAL = 30.0
is_active_latencies: list[float] = []


async def until_inactive(stub: pb_grpc.ExternalScalerStub, ref: pb.ScaledObjectRef) -> None:
    while True:
        started = time.perf_counter()
        active = (await stub.IsActive(ref)).result
        is_active_latencies.append(time.perf_counter() - started)
        if not active:
            return
        await asyncio.sleep(0.005)


async def measure(nats_url: str, grpc_port: int, activations: int) -> tuple[list[float], list[float]]:
    """Latencies publish → StreamIsActive `true`, and publish → a plain subscriber (the baseline)."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await make_queue(js)
    worker = await js.pull_subscribe_bind(CONSUMER, STREAM)
    floor_seen: asyncio.Queue[float] = asyncio.Queue()

    async def observed(_msg: object) -> None:
        floor_seen.put_nowait(time.perf_counter())

    await nc.subscribe(f"{STREAM}.*", cb=observed)
    latencies, floors = [], []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        ref = pb.ScaledObjectRef(
            name="prefill", namespace="bench", scalerMetadata={"role": "prefill", "natsServer": nats_url}
        )
        await until_inactive(stub, ref)
        stream = stub.StreamIsActive(ref)
        await stub.GetMetricSpec(ref)  # the stream is being served once a later call has been answered
        for i in range(activations):
            sent = time.perf_counter()
            await js.publish(f"{STREAM}.queue", b'{"prompt_token_ids": [1, 2, 3]}')
            response = await asyncio.wait_for(stream.read(), 10)
            latencies.append(time.perf_counter() - sent)
            floors.append(await floor_seen.get() - sent)
            assert response.result is True
            for msg in await worker.fetch(1):
                await msg.ack()
            await until_inactive(stub, ref)
            if (i + 1) % 50 == 0:
                print(f"  {i + 1}/{activations} activations", file=sys.stderr)
        stream.cancel()
    await nc.close()
    return latencies, floors


def run(activations: int, refresh_interval: str, workdir: Path) -> None:
    nats_server = NatsServer(workdir)
    nats_server.start()
    grpc_port, http_port = free_port(), free_port()
    scaler = subprocess.Popen(
        [sys.executable, "-m", "scaler", "serve", "--bind-address", "127.0.0.1", "--grpc-port", str(grpc_port),
         "--http-port", str(http_port), "--refresh-interval", refresh_interval, "--log-level", "warning"],
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{http_port}/readyz")
        latencies, floors = asyncio.run(measure(nats_server.url, grpc_port, activations))
    finally:
        scaler.terminate()
        scaler.wait(15)
        nats_server.stop()

    rng = random.Random(7)
    polling = [rng.uniform(0, KEDA_POLLING_INTERVAL) + rng.choice(is_active_latencies) for _ in latencies]
    ms = 1000.0
    print(f"\nactivation latency over {activations} activations (refresh interval {refresh_interval})")
    print(f"{'':36}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for label, values in (
        ("publish → StreamIsActive true", latencies),
        ("baseline: publish → subscriber", floors),
        ("baseline: KEDA polling every 30 s", polling),
    ):
        print(
            f"{label:36}{statistics.median(values) * ms:>10.2f}{percentile(values, 0.99) * ms:>10.2f}"
            f"{max(values) * ms:>10.2f}"
        )
    print(f"push vs polling: p50 {statistics.median(polling) / statistics.median(latencies):.0f}x faster")
    p99 = percentile(latencies, 0.99)
    print(f"ratio to baseline: p50 {statistics.median(latencies) / statistics.median(floors):.1f}x, "
          f"p99 {p99 / percentile(floors, 0.99):.1f}x")  # fmt: skip
    print(f"targets: p99 < 100 ms (issue 2) {'met' if p99 < 0.1 else 'MISSED'}, p99 <= 50 ms (issue 6) "
          f"{'met' if p99 <= 0.05 else 'MISSED'} ({p99 * ms:.2f} ms)")  # fmt: skip


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args.add_argument("--activations", type=int, default=200)
    args.add_argument("--refresh-interval", default="250ms", help="the scaler's polling interval")
    opts = args.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        run(opts.activations, opts.refresh_interval, Path(workdir))


if __name__ == "__main__":
    main()
