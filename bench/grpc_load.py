"""gRPC load: 1, 100 and 1,000 ScaledObjects (distinct names, shared sources) under KEDA's calls.

Saturation (closed loop, concurrency 8, from a separate process) against an empty grpc.aio handler of the same
stack measured in the same run. At 1,000 ScaledObjects — the target — baseline and pd-scaler alternate for
`--rounds` rounds, so load from elsewhere on the machine hits both alike; each round's ratios and their spread
are printed. Also KEDA's real
pace at 1,000 ScaledObjects (each polled every 30 s and queried by the HPA every 15 s, three calls each: ~300
calls/s) and resident memory at each size. A call that does not answer OK stops the bench, naming it (as does a
coupled pair whose reasons say it was answered uncoupled).

`--policy capacity` and `threshold`: prefill triggers on one NATS queue. `--policy coupled`: pairs of capacity
triggers, a prefill one with `decodeScaledObject` naming its pair's decode one and a decode one with
`prefillScaledObject` naming its pair's prefill one (vLLM engines' /metrics scraped by Prometheus, pods found with
`podSelector` in the Kubernetes API); 2 (one pair), 100 and 1,000 ScaledObjects on one queue and one query.

A capacity decision runs once per sample of its sources (1 s) per ScaledObject that shares none, over their
history: `--history` lets that grow first, as in a scaler that has run for a while.

    python bench/grpc_load.py [--seconds 5] [--rounds 3] [--policy capacity|threshold|coupled] [--history 0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import nats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Kinds, Served, kinds, load, rss_mib
from tests import kubeapi
from tests.conftest import make_queue
from tests.exporters import ENGINE_PODS, Exporter
from tests.servers import NatsServer, PrometheusServer

SIZES = (1, 100, 1000)
KEDA_CALLS_PER_OBJECT_PER_S = 3 * (1 / 30 + 1 / 15)  # GetMetricSpec + GetMetrics + IsActive, polling + HPA
THROUGHPUT_TARGET, P99_TARGET = 0.85, 1.3  # at saturation, against the empty handler
DECODE_PODS = ("vllm-decode-0", "vllm-decode-1")  # vLLM engines holding 120 and 50 sequences

Setup = tuple[Kinds, tuple[str, ...], tuple[int, ...]]  # the ScaledObjects, pd-scaler's flags, the sizes


async def prepare(url: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await make_queue(js)
    for _ in range(3):
        await js.publish("dynamo_prefill_queue.queue", b"{}")
    await nc.close()


@contextlib.contextmanager
def prefill_only(tmp: Path, policy: str) -> Iterator[Setup]:
    """Prefill triggers of one policy on one NATS queue."""
    nats_server = NatsServer(tmp)
    nats_server.start()
    try:
        asyncio.run(prepare(nats_server.url))
        yield kinds({"role": "prefill", "natsServer": nats_server.url, "policy": policy}), (), SIZES
    finally:
        nats_server.stop()


@contextlib.contextmanager
def coupled(tmp: Path) -> Iterator[Setup]:
    """Pairs of coupled capacity triggers: prefill on one NATS queue; decode on vLLM engines' /metrics scraped by
    Prometheus, their pods listed in the Kubernetes API."""
    with contextlib.ExitStack() as stack:
        api = stack.enter_context(kubeapi.KubeAPI())
        targets = []
        for pod in DECODE_PODS:
            api.put(kubeapi.pod(pod, "bench", {"role": "decode"}))
            engine = Exporter(ENGINE_PODS[pod][2])
            stack.callback(engine.close)
            targets.append({"targets": [engine.target], "labels": {"pod": pod, "namespace": "bench"}})
        nats_server = NatsServer(tmp)
        nats_server.start()
        stack.callback(nats_server.stop)
        prometheus = PrometheusServer(tmp, [{"job_name": "decode", "static_configs": targets}])
        prometheus.start()
        stack.callback(prometheus.stop)
        asyncio.run(prepare(nats_server.url))
        prometheus.wait_for_series('up{job="decode"} == 1', len(DECODE_PODS))
        prefill = {"role": "prefill", "natsServer": nats_server.url, "policy": "capacity",
                   "decodeScaledObject": "decode-{group}"}  # fmt: skip
        decode = {"role": "decode", "prometheusAddress": prometheus.url, "podSelector": "role=decode",
                  "policy": "capacity", "seats": "100", "prefillScaledObject": "prefill-{group}"}  # fmt: skip
        pair: Kinds = [{"name": "prefill-{group}", "metadata": prefill}, {"name": "decode-{group}", "metadata": decode}]
        yield pair, ("--kubeconfig", str(api.write_kubeconfig(tmp / "kubeconfig"))), (2, *SIZES[1:])


def check_coupled(scaler: Served) -> int:
    """Every ScaledObject answered was answered coupled (a coupled trigger whose other role is unknown, down or
    stale answers OK all the same, uncoupled, and its reason says so): the figures measure the coupled path.
    Returns how many were answered."""
    with urllib.request.urlopen(f"http://127.0.0.1:{scaler.http_port}/status?format=json", timeout=30) as r:
        board = json.load(r)["scaledobjects"]
    answered = [so for so in board if so["reason"] is not None]
    uncoupled = [so for so in answered if " not coupled: " in so["reason"]]
    if uncoupled or {so["role"] for so in answered} != {"prefill", "decode"}:
        raise SystemExit(f"{len(uncoupled)} of {len(answered)} answered uncoupled, e.g. {(uncoupled or board)[:1]}")
    return len(answered)


def p(result: dict[str, object], q: str) -> float:
    return float(result[q]["GetMetrics"])  # type: ignore[index]


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args.add_argument("--seconds", type=float, default=5.0, help="length of each measurement")
    args.add_argument("--rounds", type=int, default=3, help="alternating baseline/pd-scaler rounds at 1,000")
    args.add_argument(
        "--policy",
        choices=("capacity", "threshold", "coupled"),
        default="capacity",
        help="the triggers' policy (default capacity); coupled: pairs of capacity prefill and decode triggers",
    )
    args.add_argument(
        "--history",
        type=float,
        default=0.0,
        help="seconds the sources' histories grow at KEDA's pace before measuring (the capacity policy reads up to "
        "20 minutes of them, and its cost grows with them; default 0: a history as young as the bench)",
    )
    opts = args.parse_args()
    seconds = opts.seconds
    with tempfile.TemporaryDirectory() as tmp:
        setup = coupled(Path(tmp)) if opts.policy == "coupled" else prefill_only(Path(tmp), opts.policy)
        with setup as (objects, flags, sizes):
            top = sizes[-1]
            empty, scaler = Served(empty=True), Served(*flags)
            try:
                grpc.channel_ready_future(grpc.insecure_channel(empty.address)).result(timeout=10)
                pace = KEDA_CALLS_PER_OBJECT_PER_S * top
                if opts.history > 0:
                    print(f"histories growing for {opts.history:g} s at KEDA's pace …", file=sys.stderr)
                    load(scaler.address, objects, top, seconds=opts.history, rate=pace)
                print(f"saturation: closed loop, concurrency 8, {seconds:g} s per measurement", file=sys.stderr)
                rows = []
                for n in sizes[:-1]:
                    print(f"pd-scaler, {n} ScaledObjects …", file=sys.stderr)
                    rows.append((n, load(scaler.address, objects, n, seconds=seconds)))
                rounds = []
                for i in range(opts.rounds):
                    print(f"round {i + 1}/{opts.rounds} at {top}: baseline, pd-scaler …", file=sys.stderr)
                    base = load(empty.address, objects, top, seconds=seconds)
                    ours = load(scaler.address, objects, top, seconds=seconds)
                    rounds.append((base, ours))
                rss_top = rss_mib(scaler.proc.pid)
                keda = load(scaler.address, objects, top, seconds=2 * seconds, rate=pace)
                rss_end = rss_mib(scaler.proc.pid)
                coupled_answers = check_coupled(scaler) if opts.policy == "coupled" else 0
            finally:
                scaler.stop()
                empty.stop()

    def row(label: str, r: dict[str, object], base: dict[str, object] | None = None, rss: str = "") -> str:
        ratios = ""
        if base is not None:
            thru = float(r["calls_per_s"]) / float(base["calls_per_s"])  # type: ignore[arg-type]
            ratios = f"{thru:>8.2f}{p(r, 'p99_ms') / p(base, 'p99_ms'):>8.2f}"
        else:
            ratios = f"{'':>16}"
        return f"{label:30}{r['calls_per_s']:>9.0f}{p(r, 'p50_ms'):>8.2f}{p(r, 'p99_ms'):>8.2f}{ratios}{rss:>9}"

    coupling = f"; all {coupled_answers} ScaledObjects answered were answered coupled" if coupled_answers else ""
    grown = f", after {opts.history:g} s of history" if opts.history > 0 else ""
    print(f"\npolicy {opts.policy}{grown}; every call answered OK{coupling}")
    print(f"{'':30}{'calls/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'thru':>8}{'p99':>8}{'RSS MiB':>9}")
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
        f"{p(keda, 'p50_ms'):.2f} ms, p99 {p(keda, 'p99_ms'):.2f} ms"
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
