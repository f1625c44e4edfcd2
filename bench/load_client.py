"""Load as KEDA makes it: for random ScaledObjects, GetMetricSpec + GetMetrics + IsActive.

    load_client.py ADDRESS KINDS_JSON OBJECTS SECONDS CONCURRENCY RATE

KINDS_JSON: a list of {"name": ..., "metadata": {...}}; ScaledObject i is kind i % len(kinds), with "{group}" in
its name and metadata values replaced by i // len(kinds) (so a group's objects can name each other). RATE 0: closed
loop (each of CONCURRENCY workers calls again as soon as answered: saturation). RATE > 0: open loop at RATE calls/s
in all (KEDA's own pace). Prints JSON: calls/s, errors by gRPC code, and per-method p50/p99 in ms.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import percentile
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc


def scaledobjects(kinds: list[dict[str, Any]], objects: int) -> list[pb.ScaledObjectRef]:
    refs = []
    for i in range(objects):
        kind, group = kinds[i % len(kinds)], str(i // len(kinds))
        metadata = {k: v.replace("{group}", group) for k, v in kind["metadata"].items()}
        refs.append(pb.ScaledObjectRef(name=kind["name"].replace("{group}", group), namespace="bench",
                                       scalerMetadata=metadata))  # fmt: skip
    return refs


async def run(address: str, kinds: list[dict[str, Any]], objects: int, seconds: float, concurrency: int, rate: float):
    refs = scaledobjects(kinds, objects)
    latencies: dict[str, list[float]] = {"GetMetricSpec": [], "GetMetrics": [], "IsActive": []}
    errors: Counter[str] = Counter()  # "method code: details" of every call that did not answer OK
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        for ref in refs:  # warm up: every ScaledObject asked once, as KEDA does when it starts
            await stub.GetMetricSpec(ref)

        async def one(method: str, ref: pb.ScaledObjectRef) -> None:
            request = pb.GetMetricsRequest(scaledObjectRef=ref) if method == "GetMetrics" else ref
            started = time.perf_counter()
            try:
                await getattr(stub, method)(request)
            except grpc.aio.AioRpcError as error:
                errors[f"{method} {error.code().name}: {error.details()}"] += 1
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
        "errors": dict(errors),
        "p50_ms": {m: percentile(v, 0.5) * ms for m, v in latencies.items()},
        "p99_ms": {m: percentile(v, 0.99) * ms for m, v in latencies.items()},
    }


if __name__ == "__main__":
    address, kinds, objects, seconds, concurrency, rate = sys.argv[1:7]
    result = asyncio.run(run(address, json.loads(kinds), int(objects), float(seconds), int(concurrency), float(rate)))
    print(json.dumps(result))
