"""gRPC load: 1, 100 and 1,000 ScaledObjects (distinct names, one shared source) under KEDA's calls.

Saturation (closed loop, concurrency 8, from a separate process) against an empty grpc.aio handler of the same
stack measured in the same run. At 1,000 ScaledObjects — the target — baseline and pd-scaler alternate for
`--rounds` rounds, so load from elsewhere on the machine hits both alike; each round's ratios and their spread
are printed. Also KEDA's real
pace at 1,000 ScaledObjects (each polled every 30 s and queried by the HPA every 15 s, three calls each: ~300
calls/s) and resident memory at each size.

    python bench/grpc_load.py [--seconds 5] [--rounds 3] [--policy capacity|threshold]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
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
THROUGHPUT_TARGET, P99_TARGET = 0.85, 1.3  # at saturation, against the empty handler


async def prepare(url: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await make_queue(js)
    for _ in range(3):
        await js.publish("dynamo_prefill_queue.queue", b"{}")
    await nc.close()


def p(result: dict[str, object], q: str) -> float:
    return float(result[q]["GetMetrics"])  # type: ignore[index]


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args.add_argument("--seconds", type=float, default=5.0, help="length of each measurement")
    args.add_argument("--rounds", type=int, default=3, help="alternating baseline/pd-scaler rounds at 1,000")
    args.add_argument(
        "--policy",
        choices=("capacity", "threshold"),
        default="capacity",
        help="the triggers' policy (default capacity)",
    )
    opts = args.parse_args()
    seconds, top = opts.seconds, SIZES[-1]
    with tempfile.TemporaryDirectory() as tmp:
        nats_server = NatsServer(Path(tmp))
        nats_server.start()
        asyncio.run(prepare(nats_server.url))
        metadata = {"role": "prefill", "natsServer": nats_server.url, "policy": opts.policy}
        empty, scaler = Served(empty=True), Served()
        try:
            grpc.channel_ready_future(grpc.insecure_channel(empty.address)).result(timeout=10)
            print(f"saturation: closed loop, concurrency 8, {seconds:g} s per measurement", file=sys.stderr)
            rows = []
            for n in SIZES[:-1]:
                print(f"pd-scaler, {n} ScaledObjects …", file=sys.stderr)
                rows.append((n, load(scaler.address, metadata, n, seconds=seconds)))
            rounds = []
            for i in range(opts.rounds):
                print(f"round {i + 1}/{opts.rounds} at {top}: baseline, pd-scaler …", file=sys.stderr)
                base = load(empty.address, metadata, top, seconds=seconds)
                ours = load(scaler.address, metadata, top, seconds=seconds)
                rounds.append((base, ours))
            rss_top = rss_mib(scaler.proc.pid)
            pace = KEDA_CALLS_PER_OBJECT_PER_S * top
            keda = load(scaler.address, metadata, top, seconds=2 * seconds, rate=pace)
            rss_end = rss_mib(scaler.proc.pid)
        finally:
            scaler.stop()
            empty.stop()
            nats_server.stop()

    def row(label: str, r: dict[str, object], base: dict[str, object] | None = None, rss: str = "") -> str:
        ratios = ""
        if base is not None:
            thru = float(r["calls_per_s"]) / float(base["calls_per_s"])  # type: ignore[arg-type]
            ratios = f"{thru:>8.2f}{p(r, 'p99_ms') / p(base, 'p99_ms'):>8.2f}"
        else:
            ratios = f"{'':>16}"
        return f"{label:30}{r['calls_per_s']:>9.0f}{p(r, 'p50_ms'):>8.2f}{p(r, 'p99_ms'):>8.2f}{ratios}{rss:>9}"

    print(f"\n{'':30}{'calls/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'thru':>8}{'p99':>8}{'RSS MiB':>9}")
    print(f"{'':30}{'':>9}{'':>8}{'':>8}{'ratio':>8}{'ratio':>8}")
    base0 = rounds[0][0]
    print(row("empty handler (round 1)", base0))
    for n, r in rows:
        print(row(f"pd-scaler, {n} ScaledObjects", r, base0))
    thru_ratios, p99_ratios = [], []
    for i, (base, ours) in enumerate(rounds):
        print(row(f"round {i + 1}: empty handler", base))
        print(row(f"round {i + 1}: pd-scaler, {top}", ours, base, f"{rss_top:.1f}" if i == len(rounds) - 1 else ""))
        thru_ratios.append(float(ours["calls_per_s"]) / float(base["calls_per_s"]))  # type: ignore[arg-type]
        p99_ratios.append(p(ours, "p99_ms") / p(base, "p99_ms"))
    thru, p99 = statistics.median(thru_ratios), statistics.median(p99_ratios)
    print(
        f"\nat {top} ScaledObjects over {len(rounds)} rounds: throughput ratio median {thru:.2f} "
        f"(range {min(thru_ratios):.2f} to {max(thru_ratios):.2f}), p99 ratio median {p99:.2f} "
        f"(range {min(p99_ratios):.2f} to {max(p99_ratios):.2f})"
    )
    print(
        f"KEDA's pace at {top} ScaledObjects ({pace:.0f} calls/s, open loop): GetMetrics p50 "
        f"{p(keda, 'p50_ms'):.2f} ms, p99 {p(keda, 'p99_ms'):.2f} ms; errors {keda['errors']}"
    )
    print("targets: GetMetrics p99 <= 5 ms at KEDA's pace: " + ("met" if p(keda, "p99_ms") <= 5 else "MISSED"))
    print(
        f"         saturation throughput >= {THROUGHPUT_TARGET}x baseline (median): "
        f"{'met' if thru >= THROUGHPUT_TARGET else 'MISSED'} ({thru:.2f}x)"
    )
    print(
        f"         saturation p99 <= {P99_TARGET}x baseline (median): {'met' if p99 <= P99_TARGET else 'MISSED'} "
        f"({p99:.2f}x)"
    )
    print(f"         RSS <= 150 MiB at {top} ScaledObjects: {'met' if rss_end <= 150 else 'MISSED'} ({rss_end:.1f})")


if __name__ == "__main__":
    main()
