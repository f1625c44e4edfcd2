"""Load as KEDA makes it: for random ScaledObjects, GetMetricSpec + GetMetrics + IsActive.

    load_client.py ADDRESS METADATA_JSON OBJECTS SECONDS CONCURRENCY RATE

RATE 0: closed loop (each of CONCURRENCY workers calls again as soon as answered: saturation). RATE > 0: open
loop at RATE calls/s in all (KEDA's own pace). Prints JSON: calls/s, errors, and per-method p50/p99 in ms.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import percentile
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc


async def run(address: str, metadata: dict[str, str], objects: int, seconds: float, concurrency: int, rate: float):
    refs = [pb.ScaledObjectRef(name=f"so-{i}", namespace="bench", scalerMetadata=metadata) for i in range(objects)]
    latencies: dict[str, list[float]] = {"GetMetricSpec": [], "GetMetrics": [], "IsActive": []}
    errors = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        for ref in refs:  # warm up: every ScaledObject asked once, as KEDA does when it starts
            await stub.GetMetricSpec(ref)

        async def one(method: str, ref: pb.ScaledObjectRef) -> None:
            nonlocal errors
            request = pb.GetMetricsRequest(scaledObjectRef=ref) if method == "GetMetrics" else ref
            started = time.perf_counter()
            try:
                await getattr(stub, method)(request)
            except grpc.aio.AioRpcError:
                errors += 1
            latencies[method].append(time.perf_counter() - started)

        deadline = time.monotonic() + seconds
        if rate > 0:
            pending: set[asyncio.Task[None]] = set()
            interval, next_at, i = 1.0 / rate, time.monotonic(), 0
            while next_at < deadline:
                method = ("GetMetricSpec", "GetMetrics", "IsActive")[i % 3]
                task = asyncio.create_task(one(method, refs[random.randrange(objects)]))
                pending.add(task)
                task.add_done_callback(pending.discard)
                i += 1
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            await asyncio.gather(*pending)
        else:

            async def worker() -> None:
                while time.monotonic() < deadline:
                    ref = refs[random.randrange(objects)]
                    for method in ("GetMetricSpec", "GetMetrics", "IsActive"):
                        await one(method, ref)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
    calls = sum(len(v) for v in latencies.values())
    ms = 1000.0
    return {
        "calls_per_s": calls / seconds,
        "errors": errors,
        "p50_ms": {m: percentile(v, 0.5) * ms for m, v in latencies.items()},
        "p99_ms": {m: percentile(v, 0.99) * ms for m, v in latencies.items()},
    }


if __name__ == "__main__":
    address, metadata, objects, seconds, concurrency, rate = sys.argv[1:7]
    result = asyncio.run(
        run(address, json.loads(metadata), int(objects), float(seconds), int(concurrency), float(rate))
    )
    print(json.dumps(result))
