"""gRPC load: 1, 100 and 1,000 ScaledObjects (distinct names, one shared source) under KEDA's calls.

For each size: saturation (closed loop, concurrency 8, from a separate process) against an empty grpc.aio
handler of the same stack measured in the same run; at 1,000 ScaledObjects also KEDA's real pace (each polled
every 30 s and queried by the HPA every 15 s, three calls each: ~300 calls/s); resident memory at each size.

    python bench/grpc_load.py [--seconds 5] [--policy capacity|threshold]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import grpc
import nats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Served, load, rss_mib
from tests.conftest import make_queue
from tests.servers import NatsServer

SIZES = (1, 100, 1000)
KEDA_CALLS_PER_OBJECT_PER_S = 3 * (1 / 30 + 1 / 15)  # GetMetricSpec + GetMetrics + IsActive, polling + HPA


async def prepare(url: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await make_queue(js)
    for _ in range(3):
        await js.publish("dynamo_prefill_queue.queue", b"{}")
    await nc.close()


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args.add_argument("--seconds", type=float, default=5.0, help="length of each measurement")
    args.add_argument(
        "--policy",
        choices=("capacity", "threshold"),
        default="capacity",
        help="the triggers' policy (default capacity)",
    )
    parsed = args.parse_args()
    seconds = parsed.seconds
    with tempfile.TemporaryDirectory() as tmp:
        nats_server = NatsServer(Path(tmp))
        nats_server.start()
        asyncio.run(prepare(nats_server.url))
        metadata = {"role": "prefill", "natsServer": nats_server.url, "policy": parsed.policy}
        empty, scaler = Served(empty=True), Served()
        try:
            grpc.channel_ready_future(grpc.insecure_channel(empty.address)).result(timeout=10)
            print(f"baseline: empty grpc.aio handler, closed loop, concurrency 8, {seconds:g} s", file=sys.stderr)
            base = load(empty.address, metadata, 1, seconds=seconds)
            rows = []
            for n in SIZES:
                print(f"pd-scaler, {n} ScaledObjects …", file=sys.stderr)
                sat = load(scaler.address, metadata, n, seconds=seconds)
                rows.append((n, sat, rss_mib(scaler.proc.pid)))
            pace = KEDA_CALLS_PER_OBJECT_PER_S * SIZES[-1]
            keda = load(scaler.address, metadata, SIZES[-1], seconds=2 * seconds, rate=pace)
            rss_end = rss_mib(scaler.proc.pid)
        finally:
            scaler.stop()
            empty.stop()
            nats_server.stop()

    def p(result: dict[str, object], q: str) -> float:
        return float(result[q]["GetMetrics"])  # type: ignore[index]

    print(f"\n{'':28}{'calls/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'thru ratio':>12}{'p99 ratio':>11}{'RSS MiB':>9}")
    print(
        f"{'empty handler (baseline)':28}{base['calls_per_s']:>10.0f}{p(base, 'p50_ms'):>9.2f}{p(base, 'p99_ms'):>9.2f}"
    )
    for n, sat, rss in rows:
        thru = float(sat["calls_per_s"]) / float(base["calls_per_s"])  # type: ignore[arg-type]
        print(
            f"{f'pd-scaler, {n} ScaledObjects':28}{sat['calls_per_s']:>10.0f}{p(sat, 'p50_ms'):>9.2f}"
            f"{p(sat, 'p99_ms'):>9.2f}{thru:>12.2f}{p(sat, 'p99_ms') / p(base, 'p99_ms'):>11.2f}{rss:>9.1f}"
        )
    print(
        f"\nKEDA's pace at {SIZES[-1]} ScaledObjects ({pace:.0f} calls/s, open loop): GetMetrics p50 "
        f"{p(keda, 'p50_ms'):.2f} ms, p99 {p(keda, 'p99_ms'):.2f} ms; errors {keda['errors']}"
    )
    worst = rows[-1][1]
    thru = float(worst["calls_per_s"]) / float(base["calls_per_s"])  # type: ignore[arg-type]
    p99 = p(worst, "p99_ms") / p(base, "p99_ms")
    print("targets: GetMetrics p99 <= 5 ms at KEDA's pace: " + ("met" if p(keda, "p99_ms") <= 5 else "MISSED"))
    print(f"         saturation throughput >= 0.8x baseline: {'met' if thru >= 0.8 else 'MISSED'} ({thru:.2f}x)")
    print(f"         saturation p99 <= 1.5x baseline: {'met' if p99 <= 1.5 else 'MISSED'} ({p99:.2f}x)")
    print(
        f"         RSS <= 150 MiB at {SIZES[-1]} ScaledObjects: {'met' if rss_end <= 150 else 'MISSED'} ({rss_end:.1f})"
    )


if __name__ == "__main__":
    main()
